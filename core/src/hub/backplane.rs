//! The hub's side of cluster mode: the [`Backplane`] interface through which the hub
//! tells the cluster (`crate::cluster`) about local members, sessions and sends to
//! peers on other nodes, and the entry points through which the cluster applies what
//! other nodes did (remote joins and leaves, deliveries, session hand-over).
//!
//! Without a backplane (the in-memory default) none of this runs: the hub checks one
//! `Option` where a cluster could be involved and takes the same paths as before.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::outbox::{Fate, Outbox};
use super::room::{Member, RemoteMember};
use super::session::{queue_resumed, Attached, Session};
use super::{user_left_body, Hub, HubInner};
use crate::protocol::{close, Frame, LeaveReason, ObjectWriter};

/// Cross-node operations are refused: the backplane (Redis) is unreachable.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable(pub String);

/// A local membership, as the backplane announces it.
#[derive(Debug, Clone)]
pub(crate) struct MemberRecord {
    pub room_id: Arc<str>,
    pub user_id: Arc<str>,
    pub session_id: Arc<str>,
    pub display_name: Option<Arc<str>>,
    /// Raw JSON.
    pub metadata: Option<Arc<str>>,
    pub order: u64,
}

impl MemberRecord {
    pub(crate) fn of(room_id: &Arc<str>, m: &Member) -> MemberRecord {
        MemberRecord {
            room_id: room_id.clone(),
            user_id: m.user_id.clone(),
            session_id: m.session.id.clone(),
            display_name: m.display_name.clone(),
            metadata: m.metadata.clone(),
            order: m.order,
        }
    }
}

/// Sessions on one node that a message is for.
#[derive(Debug, Clone)]
pub(crate) struct NodeTargets {
    pub node: Arc<str>,
    pub sessions: Vec<Arc<str>>,
}

impl NodeTargets {
    /// The one session of a remote member.
    pub(crate) fn of(m: &RemoteMember) -> NodeTargets {
        NodeTargets {
            node: m.node.clone(),
            sessions: vec![m.session_id.clone()],
        }
    }

    /// Remote members grouped by node (empty without remote members).
    pub(crate) fn group(members: &[RemoteMember]) -> Vec<NodeTargets> {
        let mut out: Vec<NodeTargets> = Vec::new();
        for m in members {
            match out.iter_mut().find(|t| t.node == m.node) {
                Some(t) => t.sessions.push(m.session_id.clone()),
                None => out.push(NodeTargets::of(m)),
            }
        }
        out
    }
}

/// What the hub needs from a cluster backplane. Every method returns at once: the
/// backplane queues the work (in call order, which keeps per-sender order) and
/// carries it out in the background.
pub(crate) trait Backplane: Send + Sync + fmt::Debug {
    /// Whether cross-node operations can be carried out now.
    fn available(&self) -> Result<(), Unavailable>;
    /// A join order comparable across nodes, increasing on this node.
    fn next_order(&self) -> u64;
    /// A new session (its resume credentials become reachable cluster-wide).
    fn session_opened(&self, session_id: &Arc<str>, resume_token: &str);
    /// A frame entered a session's replay buffer (`first_seq`: its oldest kept seq).
    fn mirror(&self, session_id: &Arc<str>, seq: u64, frame: &Frame, first_seq: u64);
    /// The session lost its connection (`true`) or got one back (`false`).
    fn session_away(&self, session_id: &Arc<str>, away: bool);
    /// The session ended for good.
    fn session_closed(&self, session_id: &Arc<str>);
    /// A local session joined a room.
    fn joined(&self, member: MemberRecord);
    /// A local session left a room.
    fn left(&self, room_id: &str, user_id: &str, session_id: &Arc<str>, reason: LeaveReason);
    /// Delivers `body` (a finished object without `seq`) to sessions on other nodes.
    /// With `reply`, the sender's session gets the `ack` (or `error`) for message
    /// `id` once every node has accepted it.
    fn send(
        &self,
        room_id: &str,
        targets: Vec<NodeTargets>,
        body: String,
        unicast: bool,
        reply: Option<(&Arc<str>, &str)>,
    ) -> Result<(), Unavailable>;
    /// Takes a session that is not on this node over for a `resume`; the outcome is
    /// applied with [`Hub::adopt`].
    fn claim(&self, request: ClaimRequest);
}

/// A `resume` of a session held elsewhere, waiting for the cluster.
#[derive(Debug)]
pub(crate) struct ClaimRequest {
    pub session_id: String,
    pub resume_token: String,
    /// The authenticated user asking (auth on): the session must be theirs.
    pub user_id: Option<String>,
    pub last_seq: u64,
    pub conn_id: u64,
    pub outbox: Arc<Outbox>,
    pub slot: Arc<ClaimSlot>,
}

/// Where a claim's outcome meets the connection that asked for it.
#[derive(Debug, Default)]
pub(crate) struct ClaimSlot(Mutex<SlotState>);

#[derive(Debug, Default)]
enum SlotState {
    #[default]
    Waiting,
    /// Resumed: the connection carries this session from its next message on.
    Ready(Arc<Session>, usize),
    /// Refused: the connection keeps its fresh session.
    Failed,
    /// The connection ended first.
    Finished,
}

/// What a connection learns from its claim slot.
#[derive(Debug)]
pub(crate) enum ClaimState {
    Waiting,
    Resumed(Arc<Session>, usize),
    Over,
}

impl ClaimSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the outcome (once), for the connection.
    pub(crate) fn take(&self) -> ClaimState {
        let mut st = self.lock();
        match std::mem::take(&mut *st) {
            SlotState::Waiting => ClaimState::Waiting,
            SlotState::Ready(s, n) => {
                *st = SlotState::Failed;
                ClaimState::Resumed(s, n)
            }
            SlotState::Failed | SlotState::Finished => {
                *st = SlotState::Failed;
                ClaimState::Over
            }
        }
    }

    /// The connection ends: a session resumed but not yet picked up is returned
    /// (to be detached); a claim still running will leave its session away.
    pub(crate) fn finish(&self) -> Option<Arc<Session>> {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, SlotState::Finished) {
            SlotState::Ready(s, _) => Some(s),
            _ => None,
        }
    }
}

/// A session's state read back from the cluster for a resume on this node.
#[derive(Debug)]
pub(crate) struct SessionParts {
    pub session_id: Arc<str>,
    pub resume_token: Arc<str>,
    /// The seq the next frame gets.
    pub next_seq: u64,
    /// The buffered frames, oldest first, each with its seq.
    pub frames: Vec<(u64, Frame)>,
    /// Client message ids already answered (from the buffered `ack` frames).
    pub seen_ids: Vec<String>,
}

/// A local session as a resync writes it to the cluster.
#[derive(Debug)]
pub(crate) struct LocalSession {
    pub id: Arc<str>,
    pub resume_token: Arc<str>,
    /// Without a connection (resumable).
    pub away: bool,
    /// The replay buffer, oldest first, with seqs.
    pub frames: Vec<(u64, Frame)>,
}

/// The result of a remote delivery to one node.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Accepted by at least one target (or a room message, whoever is there).
    Accepted,
    /// A unicast whose target is not a member of the room here.
    NotFound,
}

impl HubInner {
    /// The backplane, if this hub is part of a cluster.
    pub(crate) fn backplane(&self) -> Option<&Arc<dyn Backplane>> {
        self.backplane.as_ref()
    }
}

/// The fields of a remote member as it appears in `room-info`.
pub(crate) fn remote_member_fields(w: &mut ObjectWriter, m: &RemoteMember) {
    w.str("userId", &m.user_id)
        .opt_str("displayName", m.display_name.as_deref())
        .opt_raw("metadata", m.metadata.as_deref());
}

fn user_joined_remote_body(room_id: &str, m: &RemoteMember, polite: bool) -> String {
    let mut w = ObjectWriter::typed("user-joined", 128);
    w.str("roomId", room_id);
    remote_member_fields(&mut w, m);
    w.bool("polite", polite);
    w.finish()
}

impl Hub {
    /// This hub's backplane.
    fn bp(&self) -> Option<&Arc<dyn Backplane>> {
        self.inner.backplane.as_ref()
    }

    /// A peer joined a room on another node (or its session moved to `member.node`).
    /// Local members get `user-joined` unless the peer was already listed.
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
                return;
            }
            let body_for = |receiver_order: u64| {
                user_joined_remote_body(&room.id, &member, receiver_order > member.order)
            };
            for m in &rs.members {
                m.session.deliver(&body_for(m.order));
            }
            let pos = rs.remote.partition_point(|m| m.order <= member.order);
            rs.remote.insert(pos, member);
            return;
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
        let body = user_left_body(&room.id, &left.user_id, reason);
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

    /// Every live local session with its buffered frames (for a resync).
    pub(crate) fn local_sessions(&self) -> Vec<LocalSession> {
        self.inner
            .sessions
            .values()
            .into_iter()
            .filter_map(|s| {
                let st = s.lock();
                (!st.ended).then(|| LocalSession {
                    id: s.id.clone(),
                    resume_token: s.resume_token.clone(),
                    away: st.attached.is_none(),
                    frames: st.buffered_frames(),
                })
            })
            .collect()
    }

    /// Delivers a message from another node to local sessions in `room_id`.
    pub(crate) fn deliver_remote(
        &self,
        room_id: &str,
        targets: &[Arc<str>],
        body: &str,
        unicast: bool,
    ) -> Delivered {
        let mut delivered = 0u64;
        for sid in targets {
            let Some(session) = self.inner.sessions.get(sid) else {
                continue;
            };
            let mut st = session.lock();
            if st.rooms.iter().any(|r| &*r.id == room_id) && st.deliver(body).is_some() {
                delivered += 1;
            }
        }
        self.inner
            .metrics
            .messages_relayed
            .fetch_add(delivered, Ordering::Relaxed);
        if unicast && delivered == 0 {
            Delivered::NotFound
        } else {
            Delivered::Accepted
        }
    }

    /// Whether a live session with this id is on this node.
    pub(crate) fn has_session(&self, session_id: &str) -> bool {
        self.inner
            .sessions
            .get(session_id)
            .is_some_and(|s| !s.lock().ended)
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
            if let Some(a) = st.attached.take() {
                a.outbox
                    .close(close::REPLACED, "session taken over", Fate::Detached);
            }
            std::mem::take(&mut st.rooms)
        };
        for room in &rooms {
            let mut rs = room.lock();
            if let Some(pos) = rs.position_of_session(&session) {
                let m = rs.members.remove(pos);
                let remote = RemoteMember {
                    user_id: m.user_id,
                    session_id: session.id.clone(),
                    node: node.clone(),
                    display_name: m.display_name,
                    metadata: m.metadata,
                    order: m.order,
                };
                let at = rs.remote.partition_point(|r| r.order <= remote.order);
                rs.remote.insert(at, remote);
            }
        }
        let mut shard = self.inner.sessions.shard(&session.id);
        if shard
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, &session))
        {
            shard.remove(&session.id);
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
            parts.resume_token.clone(),
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
            session.lock().set_mirror(session.id.clone(), bp.clone());
        }
        // Its memberships, as the other nodes announced them.
        let mut rooms = Vec::new();
        let mut records = Vec::new();
        let mut user_id = None;
        for room in hub.rooms.values() {
            let mut rs = room.lock();
            let Some(pos) = rs.remote.iter().position(|m| m.session_id == session.id) else {
                continue;
            };
            let r = rs.remote.remove(pos);
            user_id = Some(r.user_id.clone());
            let member = Member {
                user_id: r.user_id,
                session: session.clone(),
                display_name: r.display_name,
                metadata: r.metadata,
                order: r.order,
            };
            records.push(MemberRecord::of(&room.id, &member));
            let at = rs.members.partition_point(|m| m.order <= member.order);
            rs.members.insert(at, member);
            rooms.push(room.clone());
        }
        {
            let mut st = session.lock();
            st.user_id = user_id;
            st.rooms = rooms.clone();
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
            // Nobody carries it: away here, ending after the resume window.
            let generation = session.lock().away_generation;
            hub.schedule_timeout(&session, generation);
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
        let mut w = ObjectWriter::typed("error", 96 + why.len());
        w.str("code", "resume-failed").str("message", why);
        request.outbox.push(Frame::from(w.finish()));
        *slot = SlotState::Failed;
    }
}

impl HubInner {
    /// Starts the resume-window timer of an away session (generation as of now).
    pub(crate) fn schedule_timeout(self: &Arc<Self>, session: &Arc<Session>, generation: u64) {
        let hub = Arc::clone(self);
        let session = Arc::clone(session);
        let window = self.config.resume_window;
        if let Some(bp) = self.backplane() {
            bp.session_away(&session.id, true);
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
