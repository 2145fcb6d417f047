//! Rooms and their members, local and on other nodes: who is in a room, in
//! join order, and how messages show each of them.

use std::sync::{Arc, Mutex, MutexGuard};

use super::Session;
use crate::protocol::outbound::Peer;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub user_id: Arc<str>,
    pub session: Arc<Session>,
    /// Behind one pointer: most members give neither a display name nor
    /// metadata, and every room holds its members in one list (a member is 40
    /// bytes, not 64; a room of two's list 80, not 128).
    profile: Option<Arc<Profile>>,
    /// Cluster-wide join order (0 without a cluster: the Vec order is the join order).
    pub order: u64,
}

/// How a member presented itself.
#[derive(Debug)]
struct Profile {
    display_name: Option<Arc<str>>,
    /// Raw JSON text of the member's metadata.
    metadata: Option<Arc<str>>,
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
    pub(crate) fn new(
        user_id: Arc<str>,
        session: Arc<Session>,
        display_name: Option<Arc<str>>,
        metadata: Option<Arc<str>>,
        order: u64,
    ) -> Member {
        let profile = (display_name.is_some() || metadata.is_some()).then(|| {
            Arc::new(Profile {
                display_name,
                metadata,
            })
        });
        Member {
            user_id,
            session,
            profile,
            order,
        }
    }

    pub(crate) fn display_name(&self) -> Option<&Arc<str>> {
        self.profile.as_ref()?.display_name.as_ref()
    }

    /// Raw JSON text of the member's metadata.
    pub(crate) fn metadata(&self) -> Option<&Arc<str>> {
        self.profile.as_ref()?.metadata.as_ref()
    }

    /// How messages show this member.
    pub(crate) fn peer(&self) -> Peer<'_> {
        Peer {
            user_id: &self.user_id,
            display_name: self.display_name().map(|d| &**d),
            metadata: self.metadata().map(|m| &**m),
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

impl crate::hub::shards::Keyed for Room {
    fn key(&self) -> &str {
        &self.id
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

#[cfg(test)]
mod tests {
    /// A room's members are one list: two members in 80 bytes (jemalloc's
    /// 80-byte class), not 128, with the rare display name and metadata boxed.
    #[test]
    fn a_member_stays_small() {
        let size = std::mem::size_of::<super::Member>();
        assert!(size <= 40, "{size} bytes per member");
    }
}
