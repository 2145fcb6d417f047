//! What the hub asks of the cluster: the [`Backplane`] and [`ReplayMirror`]
//! of a node, each call queued for the writer task in call order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::bundle::Record;
use super::{claim, keys, now_millis, wire, Cluster, LeaveReason, Op};
use crate::hub::backplane::{Backplane, ClaimRequest, MemberRecord, NodeTargets, Unavailable};
use crate::hub::{ReplayMirror, Session};

impl ReplayMirror for Cluster {
    fn frames_buffered(&self, session: &Weak<Session>) {
        // Held strongly until written: a session handed over or closed meanwhile
        // must still give up its frames (before `Owner`), or be forgotten (`Close`).
        if let Some(session) = session.upgrade() {
            self.queue(Op::Mirror(session));
        }
    }
}

impl Backplane for Cluster {
    fn available(&self) -> std::result::Result<(), Unavailable> {
        if self.is_up() {
            Ok(())
        } else {
            Err(self.unavailable())
        }
    }

    fn next_order(&self) -> u64 {
        // Microseconds since the epoch with 10 low bits from the node id: unique
        // across nodes, increasing on each, comparable everywhere.
        let salt = u64::from_str_radix(&self.node[..4], 16).unwrap_or(0) & 0x3ff;
        // Real microseconds (not milliseconds × 1000): two joins on two nodes
        // within one millisecond must still be ordered by time, not by salt.
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let now = micros << 10 | salt;
        let mut last = self.last_order.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + (1 << 10));
            match self.last_order.compare_exchange_weak(
                last,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(v) => last = v,
            }
        }
    }

    fn session_opened(&self, session_id: &Arc<str>, resume_token: &str) {
        self.queue(Op::Open {
            sid: session_id.clone(),
            token: resume_token.into(),
        });
    }

    fn session_away(&self, session_id: &Arc<str>, away: bool, rooms: Vec<Arc<str>>) {
        let until = away.then(|| now_millis() + self.settings.resume_window.as_millis() as u64);
        self.queue(Op::Away {
            sid: session_id.clone(),
            until,
            rooms,
        });
    }

    fn session_closed(&self, session_id: &Arc<str>) {
        self.queue(Op::Close {
            sid: session_id.clone(),
        });
    }

    fn joined(&self, member: MemberRecord) {
        self.queue(Op::Join(wire::Member::from_local(&self.node, member)));
    }

    fn left(&self, room_id: &str, user_id: &str, session_id: &Arc<str>, reason: LeaveReason) {
        self.queue(Op::Leave {
            room: room_id.into(),
            user: user_id.into(),
            sid: session_id.clone(),
            reason,
        });
    }

    fn send(
        &self,
        room_id: &str,
        targets: Vec<NodeTargets>,
        body: String,
        unicast: bool,
        reply: Option<(&Arc<str>, &str)>,
    ) -> std::result::Result<(), Unavailable> {
        self.available()?;
        if self.ops.capacity() < targets.len() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Unavailable(
                "cluster unavailable: too many messages waiting for Redis".into(),
            ));
        }
        if let Some((sender, id)) = reply {
            self.expect_answer(sender, id, targets.len());
        }
        let reply = reply.map(|(s, i)| (&**s, i));
        for t in targets {
            let sessions = t.sessions.iter().map(|s| &**s);
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            let queued = self.ops.deliver(&t.node, |out| {
                Record::write(out, &self.node, room_id, sessions, unicast, reply, &body)
            });
            if let (false, Some((sender, id))) = (queued, reply) {
                let why = "cluster: backlog full".into();
                self.answered(sender, id, Some(("internal".into(), why)));
            }
        }
        Ok(())
    }

    fn kick(
        &self,
        node: &Arc<str>,
        room_id: &str,
        session_id: &Arc<str>,
    ) -> std::result::Result<(), Unavailable> {
        self.available()?;
        self.queue(Op::Publish {
            channel: keys::inbox(node),
            payload: wire::encode(&wire::Inbox::Kick {
                r: room_id.into(),
                s: session_id.clone(),
            }),
        });
        Ok(())
    }

    fn replace(&self, node: &Arc<str>, session_id: &Arc<str>) {
        self.queue(Op::Publish {
            channel: keys::inbox(node),
            payload: wire::encode(&wire::Inbox::Replace {
                s: session_id.clone(),
            }),
        });
    }

    fn claim(&self, request: ClaimRequest) {
        let (Some(hub), Some(me)) = (self.hub.upgrade(), self.me.upgrade()) else {
            return;
        };
        tokio::spawn(claim::claim(me, hub, request));
    }
}
