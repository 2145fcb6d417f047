//! The hub's interface to cluster mode: the [`Backplane`] through which the hub
//! tells the cluster (`crate::cluster`) about local members, sessions and sends
//! to peers on other nodes, and the records both sides exchange. What the cluster
//! applies back (remote joins, deliveries, hand-over) is in `remote.rs`.
//!
//! Without a backplane (the in-memory default) none of this runs: the hub checks one
//! `Option` where a cluster could be involved and takes the same paths as before.

use std::sync::{Arc, Mutex};

use super::outbox::Outbox;
use super::session::{Member, RemoteMember, ReplayMirror, Session};
use crate::protocol::{Frame, LeaveReason};

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
    /// The session has no connection now (resumable).
    pub away: bool,
}

impl MemberRecord {
    /// Takes the member's session lock (the room's may be held: room → session).
    pub(crate) fn of(room_id: &Arc<str>, m: &Member) -> MemberRecord {
        MemberRecord {
            room_id: room_id.clone(),
            user_id: m.user_id.clone(),
            session_id: m.session.id.clone(),
            display_name: m.display_name().cloned(),
            metadata: m.metadata().cloned(),
            order: m.order,
            away: m.session.lock().is_away(),
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
pub(crate) trait Backplane: ReplayMirror {
    /// Whether cross-node operations can be carried out now.
    fn available(&self) -> Result<(), Unavailable>;
    /// A join order comparable across nodes, increasing on this node.
    fn next_order(&self) -> u64;
    /// A new session (its resume credentials become reachable cluster-wide).
    fn session_opened(&self, session_id: &Arc<str>, resume_token: &str);
    /// The session lost its connection (`true`) or got one back (`false`);
    /// `rooms` are its rooms (the other nodes mark it there).
    fn session_away(&self, session_id: &Arc<str>, away: bool, rooms: Vec<Arc<str>>);
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
    /// Asks `node` to kick its session `session_id` out (the host's `kick` of a
    /// peer on another node): `user-left` (`kicked`) and close 4403 there.
    fn kick(
        &self,
        node: &Arc<str>,
        room_id: &str,
        session_id: &Arc<str>,
    ) -> Result<(), Unavailable>;
    /// Asks `node` to end its session `session_id`, whose user id a join here
    /// took over (`user-left` `replaced` and close 4409 there).
    fn replace(&self, node: &Arc<str>, session_id: &Arc<str>);
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
pub(super) enum SlotState {
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
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
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
