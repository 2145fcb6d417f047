//! What the host application does to rooms and peers from its own code: send
//! and broadcast, kick, put a connected user into a room or take it out, and
//! list rooms and peers. Every host API (Rust, Python, Node, C, Java) calls these.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::backplane::{Backplane, NodeTargets, Unavailable};
use super::conn::{join_session, JoinArgs};
use super::session::{Room, Session};
use super::{Hub, PeerInfo, RoomInfo};
use crate::error::{Error, ErrorCode, Result};
use crate::protocol::{close, outbound, LeaveReason, MAX_ID_LEN};

impl Hub {
    /// Sends a server-originated message (a JSON object with a string `type`) to
    /// one peer of a room, on this node or (cluster mode) another.
    pub fn send(&self, room_id: &str, user_id: &str, message: &Value) -> Result<()> {
        let body = self.host_message_body(message)?;
        let room = self.room(room_id)?;
        let (local, remote) = {
            let rs = room.lock();
            let local = rs.find(user_id).map(|m| m.session.clone());
            (local, rs.find_remote(user_id).map(NodeTargets::of))
        };
        match (local, remote) {
            (Some(target), _) => target
                .deliver(&body)
                .map(|_| ())
                .ok_or_else(|| peer_not_found(user_id, room_id)),
            (None, Some(remote)) => self
                .cluster_backplane()?
                .send(room_id, vec![remote], body, true, None)
                .map_err(unavailable),
            (None, None) => Err(peer_not_found(user_id, room_id)),
        }
    }

    /// Sends a server-originated message to every peer of a room (cluster mode:
    /// on every node); returns how many peers it was sent to.
    pub fn broadcast(&self, room_id: &str, message: &Value) -> Result<usize> {
        let body = self.host_message_body(message)?;
        let room = self.room(room_id)?;
        let rs = room.lock();
        let remote = NodeTargets::group(&rs.remote);
        if !remote.is_empty() {
            // All or nothing: no local copies when the other nodes can't be reached.
            self.cluster_backplane()?.available().map_err(unavailable)?;
        }
        let local = rs
            .members
            .iter()
            .filter(|m| m.session.deliver(&body).is_some())
            .count();
        let remote_peers = rs.remote.len();
        if !remote.is_empty() {
            self.cluster_backplane()?
                .send(room_id, remote, body, false, None)
                .map_err(unavailable)?;
        }
        Ok(local + remote_peers)
    }

    /// Removes a peer (on this node, or in cluster mode on its own node): the
    /// others get `user-left` (`kicked`) and its connection is closed with 4403,
    /// which clients treat as final.
    pub fn kick(&self, room_id: &str, user_id: &str) -> Result<()> {
        let room = self.room(room_id)?;
        let (local, remote) = {
            let rs = room.lock();
            let local = rs.find(user_id).map(|m| m.session.clone());
            let remote = rs
                .find_remote(user_id)
                .map(|m| (m.node.clone(), m.session_id.clone()));
            (local, remote)
        };
        match (local, remote) {
            (Some(target), _) => {
                self.inner.end_session(
                    &target,
                    LeaveReason::Kicked,
                    Some((close::KICKED, "kicked")),
                );
                Ok(())
            }
            (None, Some((node, session))) => self
                .cluster_backplane()?
                .kick(&node, room_id, &session)
                .map_err(unavailable),
            (None, None) => Err(peer_not_found(user_id, room_id)),
        }
    }

    /// Another node's host kicked a session of this node.
    pub(crate) fn kick_session(&self, room_id: &str, session_id: &str) {
        let Some(session) = self.inner.sessions.get(session_id) else {
            return; // ended or handed over meanwhile
        };
        let in_room = session.lock().rooms.iter().any(|r| &*r.id == room_id);
        if in_room {
            self.inner.end_session(
                &session,
                LeaveReason::Kicked,
                Some((close::KICKED, "kicked")),
            );
        }
    }

    fn cluster_backplane(&self) -> Result<&Arc<dyn Backplane>> {
        self.inner
            .backplane()
            .ok_or_else(|| Error::protocol(ErrorCode::Internal, "remote peers without a cluster"))
    }

    /// Every room with its peers.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .inner
            .rooms
            .values()
            .iter()
            .map(|r| room_info(r))
            .collect();
        rooms.retain(|r| !r.peers.is_empty());
        rooms.sort_by(|a, b| a.room_id.cmp(&b.room_id));
        rooms
    }

    /// The peers of one room, in join order (`None` when the room does not exist).
    pub fn peers(&self, room_id: &str) -> Option<Vec<PeerInfo>> {
        self.inner
            .rooms
            .get(room_id)
            .map(|r| room_info(&r).peers)
            .filter(|p| !p.is_empty())
    }

    /// Puts a connected user into a room, as if it had sent `join`: `room-info`
    /// to it, `user-joined` to the others, with the same checks (room size,
    /// rooms per session, one `userId` per room). The user is found by the id
    /// its session carries (from a `join`, the upgrade URL or its token); in a
    /// cluster, on this node.
    pub fn join(&self, user_id: &str, room_id: &str) -> Result<()> {
        if room_id.is_empty() || room_id.len() > MAX_ID_LEN {
            return Err(Error::protocol(
                ErrorCode::InvalidMessage,
                "a room id is 1 to 256 bytes",
            ));
        }
        let session = self.connected_session(user_id)?;
        let args = JoinArgs {
            room_id,
            user_id: Some(Cow::Borrowed(user_id)),
            ..JoinArgs::default()
        };
        join_session(&self.inner, &session, None, args)
            .map_err(|(code, message)| Error::protocol(code, message))
    }

    /// Takes a user out of a room, as if it had sent `leave` (`user-left` with
    /// reason `leave`); its connection stays open.
    pub fn leave(&self, user_id: &str, room_id: &str) -> Result<()> {
        let room = self.room(room_id)?;
        let target = room.lock().find(user_id).map(|m| m.session.clone());
        let target = target.ok_or_else(|| peer_not_found(user_id, room_id))?;
        target
            .lock()
            .edit_rooms(|rooms| rooms.retain(|r| !Arc::ptr_eq(r, &room)));
        self.inner.remove_member(&room, &target, LeaveReason::Leave);
        Ok(())
    }

    /// The one connected session that carries `user_id` (without auth, user
    /// ids are unique per room only: several matches are refused, not guessed).
    fn connected_session(&self, user_id: &str) -> Result<Arc<Session>> {
        let sessions = self.inner.sessions.values();
        let mut found = sessions.iter().filter(|s| {
            let st = s.lock();
            !st.ended && st.attached.is_some() && st.user_id.as_deref() == Some(user_id)
        });
        let first = found.next().cloned().ok_or_else(|| {
            Error::protocol(
                ErrorCode::PeerNotFound,
                format!("no connected user `{user_id}`"),
            )
        })?;
        if found.next().is_some() {
            return Err(Error::protocol(
                ErrorCode::UserIdTaken,
                format!("several connections carry `{user_id}`; join the room from one of them"),
            ));
        }
        Ok(first)
    }

    /// The body of a host message: a JSON object with a string `type`, within the size limit.
    fn host_message_body(&self, message: &Value) -> Result<String> {
        let Value::Object(map) = message else {
            return Err(Error::protocol(
                ErrorCode::InvalidMessage,
                "a message must be a JSON object",
            ));
        };
        if !matches!(map.get("type"), Some(Value::String(_))) {
            return Err(Error::protocol(
                ErrorCode::InvalidMessage,
                "a message needs a string `type`",
            ));
        }
        let body = outbound::from_host(map);
        if body.len() > self.inner.config.max_message_bytes {
            return Err(Error::protocol(
                ErrorCode::MessageTooBig,
                "the message exceeds max_message_bytes",
            ));
        }
        Ok(body)
    }

    fn room(&self, room_id: &str) -> Result<Arc<Room>> {
        self.inner
            .rooms
            .get(room_id)
            .ok_or_else(|| Error::protocol(ErrorCode::NotInRoom, format!("no room `{room_id}`")))
    }
}

fn unavailable(u: Unavailable) -> Error {
    Error::protocol(ErrorCode::Internal, u.0)
}

fn peer_not_found(user_id: &str, room_id: &str) -> Error {
    Error::protocol(
        ErrorCode::PeerNotFound,
        format!("no peer `{user_id}` in room `{room_id}`"),
    )
}

fn room_info(room: &Room) -> RoomInfo {
    let rs = room.lock();
    RoomInfo {
        room_id: room.id.to_string(),
        peers: rs
            .members
            .iter()
            .map(|m| PeerInfo {
                user_id: m.user_id.to_string(),
                session_id: m.session.id.to_string(),
                display_name: m.display_name().map(|d| d.to_string()),
                metadata: m.metadata().and_then(|t| serde_json::from_str(t).ok()),
                connected: m.session.lock().attached.is_some(),
                node: None,
            })
            .chain(rs.remote.iter().map(|m| {
                PeerInfo {
                    user_id: m.user_id.to_string(),
                    session_id: m.session_id.to_string(),
                    display_name: m.display_name.as_deref().map(str::to_owned),
                    metadata: m
                        .metadata
                        .as_deref()
                        .and_then(|t| serde_json::from_str(t).ok()),
                    // As that node announced it.
                    connected: !m.away,
                    node: Some(m.node.to_string()),
                }
            }))
            .collect(),
    }
}
