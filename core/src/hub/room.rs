//! Rooms: the ordered member list (join order gives the polite flag) behind one
//! lock per room, so routing never takes a global lock.

use std::sync::{Arc, Mutex, MutexGuard};

use super::session::Session;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub user_id: Arc<str>,
    pub session: Arc<Session>,
    pub display_name: Option<Arc<str>>,
    /// Raw JSON text of the member's metadata.
    pub metadata: Option<Arc<str>>,
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
    /// Set when the last member left and the room was unlisted; a join that
    /// raced with that looks the room up again.
    pub removed: bool,
}

impl RoomState {
    pub(crate) fn find(&self, user_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| &*m.user_id == user_id)
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
