//! Rooms and their members, local and on other nodes: who is in a room, in
//! join order, and how messages show each of them.

use std::sync::{Arc, Mutex, MutexGuard};

use super::Session;
use crate::protocol::outbound::Peer;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub user_id: Arc<str>,
    pub session: Arc<Session>,
    pub display_name: Option<Arc<str>>,
    /// Raw JSON text of the member's metadata.
    pub metadata: Option<Arc<str>>,
    /// Cluster-wide join order (0 without a cluster: the Vec order is the join order).
    pub order: u64,
}

/// A peer of the room whose session lives on another node (cluster mode).
#[derive(Debug, Clone)]
pub(crate) struct RemoteMember {
    pub user_id: Arc<str>,
    pub session_id: Arc<str>,
    pub node: Arc<str>,
    pub display_name: Option<Arc<str>>,
    pub metadata: Option<Arc<str>>,
    pub order: u64,
    /// Its connection is lost (resumable there): a join under its user id
    /// takes the identity over, as from a local away session.
    pub away: bool,
}

impl Member {
    /// How messages show this member.
    pub(crate) fn peer(&self) -> Peer<'_> {
        Peer {
            user_id: &self.user_id,
            display_name: self.display_name.as_deref(),
            metadata: self.metadata.as_deref(),
        }
    }
}

impl RemoteMember {
    /// How messages show this member.
    pub(crate) fn peer(&self) -> Peer<'_> {
        Peer {
            user_id: &self.user_id,
            display_name: self.display_name.as_deref(),
            metadata: self.metadata.as_deref(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    pub id: Arc<str>,
    members: Mutex<RoomState>,
}

#[derive(Debug, Default)]
pub(crate) struct RoomState {
    /// In join order: of any two members the later one is the polite one.
    /// A Vec: rooms are small (a mesh call), lookups by id scan it.
    pub members: Vec<Member>,
    /// Peers on other nodes, by `order` (always empty without a cluster).
    pub remote: Vec<RemoteMember>,
    /// Set when the last member left and the room was unlisted; a join that
    /// raced with that looks the room up again.
    pub removed: bool,
}

impl RoomState {
    pub(crate) fn find(&self, user_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| &*m.user_id == user_id)
    }

    pub(crate) fn find_remote(&self, user_id: &str) -> Option<&RemoteMember> {
        self.remote.iter().find(|m| &*m.user_id == user_id)
    }

    /// No peer at all, local or remote: the room can be unlisted.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.remote.is_empty()
    }

    pub(crate) fn position_of_session(&self, session: &Arc<Session>) -> Option<usize> {
        self.members
            .iter()
            .position(|m| Arc::ptr_eq(&m.session, session))
    }
}

impl Room {
    pub(crate) fn new(id: Arc<str>) -> Self {
        Room {
            id,
            members: Mutex::new(RoomState::default()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, RoomState> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }
}
