//! What other nodes did, applied to this hub (cluster mode): remote joins and
//! leaves, deliveries to local sessions, session hand-over on resume, and the
//! resume-window timers of away sessions.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::backplane::{
    Backplane, ClaimRequest, LocalSession, MemberRecord, SessionParts, SlotState,
};
use super::outbox::Fate;
use super::resume_token::ResumeToken;
use super::session::{queue_resumed, Attached, Member, RemoteMember, Session};
use super::{Hub, HubInner};
use crate::error::ErrorCode;
use crate::protocol::{close, outbound, Frame, LeaveReason};

impl HubInner {
    /// The backplane, if this hub is part of a cluster.
    pub(crate) fn backplane(&self) -> Option<&Arc<dyn Backplane>> {
        self.backplane.as_ref()
    }
}

impl Hub {
    /// This hub's backplane.
    fn bp(&self) -> Option<&Arc<dyn Backplane>> {
        self.inner.backplane.as_ref()
    }

    /// A peer joined a room on another node (or its session moved to `member.node`).
    /// Local members get `user-joined` unless the peer was already listed.
    ///
    /// One user id per room, cluster-wide: after a partition two nodes may each
    /// have let the same user join. Every node applies the same rule to the
    /// pair — the later join (higher `order`) stays, the other is replaced — so
    /// they agree without talking; the loser's own node ends it (`user-left`
    /// `replaced`, close 4409), the others stop listing it at once.
    pub(crate) fn remote_joined(&self, room_id: &str, member: RemoteMember) {
        loop {
            let room = self.inner.room_get_or_create(room_id);
            let mut rs = room.lock();
            if rs.removed {
                continue;
            }
            // A session that moved away from this node is listed again as remote.
            if let Some(pos) = rs
                .members
                .iter()
                .position(|m| *m.session.id == *member.session_id)
            {
                if !rs.members[pos].session.lock().ended {
                    return; // still ours: a stale event
                }
                rs.members.remove(pos);
            }
            if let Some(existing) = rs
                .remote
                .iter_mut()
                .find(|m| m.session_id == member.session_id)
            {
                existing.node = member.node;
                existing.away = member.away;
                return;
            }
            let same_user = |user: &str| *user == *member.user_id;
            if let Some(pos) = rs.members.iter().position(|m| same_user(&m.user_id)) {
                if rs.members[pos].order > member.order {
                    return; // ours is the later join: its node ends the other
                }
                let loser = rs.members[pos].session.clone();
                drop(rs);
                self.inner.end_session(
                    &loser,
                    LeaveReason::Replaced,
                    Some((close::REPLACED, "replaced")),
                );
                continue;
            }
            if let Some(pos) = rs.remote.iter().position(|m| same_user(&m.user_id)) {
                if rs.remote[pos].order > member.order {
                    return;
                }
                let loser = rs.remote.remove(pos);
                let left = outbound::user_left(&room.id, &loser.user_id, LeaveReason::Replaced);
                for m in &rs.members {
                    m.session.deliver(&left);
                }
            }
            let body_for = |receiver_order: u64| {
                outbound::user_joined(&room.id, member.peer(), receiver_order > member.order)
            };
            for m in &rs.members {
                m.session.deliver(&body_for(m.order));
            }
            let pos = rs.remote.partition_point(|m| m.order <= member.order);
            rs.remote.insert(pos, member);
            return;
        }
    }

    /// Session `session_id` of another node, a member of `rooms`, lost its
    /// connection (`away`) or got one back.
    pub(crate) fn remote_away(&self, rooms: &[Arc<str>], session_id: &str, away: bool) {
        for room_id in rooms {
            let Some(room) = self.inner.rooms.get(room_id) else {
                continue;
            };
            let mut rs = room.lock();
            if let Some(m) = rs.remote.iter_mut().find(|m| &*m.session_id == session_id) {
                m.away = away;
            }
        }
    }

    /// A join on another node took the user id of this node's session over (it
    /// was away, or the joiner proved to be the same user): it ends here as it
    /// would on one node.
    pub(crate) fn replaced_elsewhere(&self, session_id: &str) {
        if let Some(session) = self.inner.sessions.get(session_id) {
            self.inner.end_session(
                &session,
                LeaveReason::Replaced,
                Some((close::REPLACED, "replaced")),
            );
        }
    }

    /// A peer on another node left a room (or its node is gone).
    pub(crate) fn remote_left(&self, room_id: &str, session_id: &str, reason: LeaveReason) {
        let Some(room) = self.inner.rooms.get(room_id) else {
            return;
        };
        let mut rs = room.lock();
        let Some(pos) = rs.remote.iter().position(|m| &*m.session_id == session_id) else {
            return;
        };
        let left = rs.remote.remove(pos);
        let body = outbound::user_left(&room.id, &left.user_id, reason);
        for m in &rs.members {
            m.session.deliver(&body);
        }
        let empty = rs.is_empty();
        if empty {
            rs.removed = true;
        }
        drop(rs);
        if empty {
            self.inner.unlist_room(&room);
        }
    }

    /// Every remote member, by room (for a node snapshot and the reaper).
    pub(crate) fn remote_members(&self) -> Vec<(Arc<str>, RemoteMember)> {
        let mut out = Vec::new();
        for room in self.inner.rooms.values() {
            let rs = room.lock();
            out.extend(rs.remote.iter().map(|m| (room.id.clone(), m.clone())));
        }
        out
    }

    /// Every local membership (for a resync).
    pub(crate) fn local_members(&self) -> Vec<MemberRecord> {
        let mut out = Vec::new();
        for room in self.inner.rooms.values() {
            let rs = room.lock();
            out.extend(rs.members.iter().map(|m| MemberRecord::of(&room.id, m)));
        }
        out
    }

    /// The ids of every live local session.
    pub(crate) fn local_session_ids(&self) -> Vec<Arc<str>> {
        self.inner
            .sessions
            .values()
            .into_iter()
            .filter(|s| !s.lock().ended)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Every live local session with its buffered frames (for a resync).
    pub(crate) fn local_sessions(&self) -> Vec<LocalSession> {
        self.inner
            .sessions
            .values()
            .into_iter()
            .filter_map(|s| {
                let mut st = s.lock();
                (!st.ended).then(|| LocalSession {
                    id: s.id.clone(),
                    resume_token: s.resume_token.to_string().into(),
                    away: st.attached.is_none(),
                    frames: st.frames_for_resync(),
                })
            })
            .collect()
    }

    /// Delivers a message from another node to local session `sid` if it is in
    /// `room_id`: `None` when no live session has that id here, else whether it
    /// took the message. The caller counts what was taken ([`Hub::relayed`]),
    /// once for many.
    pub(crate) fn deliver_remote(&self, room_id: &str, sid: &str, body: &str) -> Option<bool> {
        let session = self.inner.sessions.get(sid)?;
        let mut st = session.lock();
        if st.ended {
            return None;
        }
        Some(st.rooms.iter().any(|r| &*r.id == room_id) && st.deliver(body).is_some())
    }

    /// Counts `n` messages delivered from other nodes as relayed.
    pub(crate) fn relayed(&self, n: u64) {
        if n > 0 {
            self.inner
                .metrics
                .messages_relayed
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Delivers a server message (`ack`, `error`) to a local session, if it is here.
    pub(crate) fn deliver_to_session(&self, session_id: &str, body: &str) -> bool {
        self.inner
            .sessions
            .get(session_id)
            .is_some_and(|s| s.deliver(body).is_some())
    }

    /// Hands a local session over to `node` (it resumes there): its connection, if
    /// any, is closed with 4409, it stops taking messages here, and its rooms list
    /// it as a remote member on `node`; nobody is told anything. Returns its rooms,
    /// or `None` when the session is not here.
    pub(crate) fn release(&self, session_id: &str, node: &Arc<str>) -> Option<Vec<Arc<str>>> {
        let session = self.inner.sessions.get(session_id)?;
        let rooms = {
            let mut st = session.lock();
            if st.ended {
                return None;
            }
            st.ended = true;
            st.uncount_away();
            if let Some(a) = st.attached.take() {
                a.outbox
                    .close(close::REPLACED, "session taken over", Fate::Detached);
            }
            st.take_rooms()
        };
        for room in &rooms {
            let mut rs = room.lock();
            if let Some(pos) = rs.position_of_session(&session) {
                let m = rs.members.remove(pos);
                let remote = RemoteMember {
                    display_name: m.display_name().cloned(),
                    metadata: m.metadata().cloned(),
                    user_id: m.user_id,
                    session_id: session.id.clone(),
                    node: node.clone(),
                    order: m.order,
                    away: false, // it resumes there
                };
                let at = rs.remote.partition_point(|r| r.order <= remote.order);
                rs.remote.insert(at, remote);
            }
        }
        if self.inner.sessions.remove(&session) {
            self.inner.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        }
        Some(rooms.iter().map(|r| r.id.clone()).collect())
    }

    /// Installs a session claimed from the cluster: it becomes a local member of the
    /// rooms that list it as remote, and the waiting connection resumes it (`resumed`
    /// and the replay) — or, if that connection is gone or its `lastSeq` is not
    /// covered, it stays away here for the resume window. Returns its memberships.
    pub(crate) fn adopt(&self, parts: SessionParts, request: &ClaimRequest) -> Vec<MemberRecord> {
        let hub = &self.inner;
        let bounds = hub.replay_bounds();
        let session = Arc::new(Session::new(
            parts.session_id.clone(),
            // A token not written by a Switchboard node can not be shown
            // back: the session takes one that nobody knows.
            ResumeToken::parse(&parts.resume_token).unwrap_or_else(ResumeToken::random),
            bounds,
            Attached {
                conn_id: request.conn_id,
                outbox: request.outbox.clone(),
            },
        ));
        {
            let mut st = session.lock();
            st.restore(parts.next_seq, parts.frames, &parts.seen_ids);
            st.attached = None;
        }
        if let Some(bp) = self.bp() {
            session
                .lock()
                .set_mirror(Arc::downgrade(&session), bp.clone());
        }
        // Its memberships, as the other nodes announced them.
        let mut rooms = Vec::new();
        let mut records: Vec<MemberRecord> = Vec::new();
        let mut user_id = None;
        for room in hub.rooms.values() {
            let mut rs = room.lock();
            let Some(pos) = rs.remote.iter().position(|m| m.session_id == session.id) else {
                continue;
            };
            let r = rs.remote.remove(pos);
            user_id = Some(r.user_id.clone());
            let member = Member::new(
                r.user_id,
                session.clone(),
                r.display_name,
                r.metadata,
                r.order,
            );
            records.push(MemberRecord::of(&room.id, &member));
            let at = rs.members.partition_point(|m| m.order <= member.order);
            rs.members.insert(at, member);
            rooms.push(room.clone());
        }
        {
            let mut st = session.lock();
            st.user_id = user_id;
            st.rooms = rooms.as_slice().into();
        }
        hub.insert_session(&session);
        let replay = session.lock().replay_after(request.last_seq);
        let mut slot = request.slot.lock();
        let outcome = match (&*slot, replay) {
            (SlotState::Waiting, Some(frames)) => {
                let mut st = session.lock();
                st.attached = Some(Attached {
                    conn_id: request.conn_id,
                    outbox: request.outbox.clone(),
                });
                let n = queue_resumed(&request.outbox, &session.id, frames);
                drop(st);
                *slot = SlotState::Ready(session.clone(), n);
                true
            }
            (SlotState::Waiting, None) => {
                let why = format!(
                    "messages after seq {} are no longer buffered",
                    request.last_seq
                );
                self.fail_slot(&mut slot, request, &why);
                false
            }
            _ => false,
        };
        drop(slot);
        if !outcome {
            // Nobody carries it: away here, ending after the resume window, and
            // counted server-wide (its clients' IP is not known on this node).
            let (generation, victims) = {
                let mut st = session.lock();
                let evict = !hub.draining.load(Ordering::Acquire);
                let victims = st.count_away(&session, &hub.away, Vec::new(), evict);
                (st.away_generation, victims)
            };
            hub.schedule_timeout(&session, generation);
            for victim in victims {
                hub.evict(&victim);
            }
        }
        for r in &mut records {
            r.away = !outcome;
        }
        records
    }

    /// A `resume` of a session this node does not have was refused by the cluster.
    pub(crate) fn claim_failed(&self, request: &ClaimRequest, why: &str) {
        let mut slot = request.slot.lock();
        if matches!(*slot, SlotState::Waiting) {
            self.fail_slot(&mut slot, request, why);
        }
    }

    /// Answers the waiting connection `resume-failed`; it keeps its fresh session.
    fn fail_slot(&self, slot: &mut SlotState, request: &ClaimRequest, why: &str) {
        self.inner
            .metrics
            .resume_failures
            .fetch_add(1, Ordering::Relaxed);
        let body = outbound::error(ErrorCode::ResumeFailed.as_str(), why, None);
        request.outbox.push(Frame::from(body));
        *slot = SlotState::Failed;
    }
}

impl HubInner {
    /// Starts the resume-window timer of an away session (generation as of now).
    pub(crate) fn schedule_timeout(self: &Arc<Self>, session: &Arc<Session>, generation: u32) {
        let hub = Arc::clone(self);
        let session = Arc::clone(session);
        let window = self.config.resume_window;
        if let Some(bp) = self.backplane() {
            let rooms = session.lock().rooms.iter().map(|r| r.id.clone()).collect();
            bp.session_away(&session.id, true, rooms);
        }
        // On the hub's runtime: a binding may call in from a thread of its own.
        self.spawn(async move {
            tokio::time::sleep(window).await;
            let expired = {
                let st = session.lock();
                !st.ended && st.attached.is_none() && st.away_generation == generation
            };
            if expired {
                hub.end_session(&session, LeaveReason::Timeout, None);
            }
        });
    }
}
