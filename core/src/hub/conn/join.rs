//! Joining and leaving rooms: the checks (identity, capacity, rooms per
//! session), identity takeover, and `room-info` / `user-joined` / `user-left`.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{refuse, ConnCore, Refusal};
use crate::auth::Identity;
use crate::error::ErrorCode;
use crate::event::Event;
use crate::hub::backplane::MemberRecord;
use crate::hub::session::Session;
use crate::hub::session::{Member, Room};
use crate::hub::{body_fields, random_uuid, room_info_body, HubInner};
use crate::protocol::json::Raw;
use crate::protocol::{close, outbound, ClientMessage, LeaveReason};

/// What a join asks for, from a `join` message, the upgrade URL or the host.
#[derive(Debug, Default)]
pub(crate) struct JoinArgs<'a> {
    pub(crate) room_id: &'a str,
    pub(crate) user_id: Option<Cow<'a, str>>,
    pub(crate) display_name: Option<Cow<'a, str>>,
    /// Raw JSON text.
    pub(crate) metadata: Option<&'a str>,
}

impl ConnCore {
    pub(super) fn join(&mut self, msg: &ClientMessage<'_>) -> Result<(), Refusal> {
        let invalid = |m| (ErrorCode::InvalidMessage, m);
        let args = JoinArgs {
            room_id: msg.room_id.as_deref().unwrap_or_default(),
            user_id: msg.str_field("userId").map_err(invalid)?,
            display_name: msg.str_field("displayName").map_err(invalid)?,
            metadata: msg.raw_field("metadata").map_err(invalid)?.map(Raw::get),
        };
        join_session(&self.hub, &self.session, self.identity(), args)
    }
}

/// Joins `session` to a room: the checks, identity takeover, `room-info` to the
/// session and `user-joined` to the others. `identity` is the connection's
/// (auth on): it decides the user id and the rooms allowed, and lets a newer
/// connection of the same user take a connected holder's place.
pub(crate) fn join_session(
    hub: &Arc<HubInner>,
    session: &Arc<Session>,
    identity: Option<&Identity>,
    args: JoinArgs<'_>,
) -> Result<(), Refusal> {
    let JoinArgs {
        room_id,
        user_id: mut requested,
        display_name,
        metadata,
    } = args;
    // Every member's metadata goes into each newcomer's `room-info` and every
    // resume: a client may not make the room carry more than this of its own.
    let max_metadata = hub.config.max_metadata_bytes;
    if metadata.is_some_and(|m| m.len() > max_metadata) {
        return refuse(
            ErrorCode::InvalidMessage,
            format!("`metadata` is larger than {max_metadata} bytes"),
        );
    }
    // With auth on, the token decides who this is and where it may go.
    let identity_metadata = match identity {
        Some(identity) => {
            identity_allows(identity, requested.as_deref(), room_id)?;
            requested = Some(identity.user_id.clone().into());
            identity
                .metadata
                .as_ref()
                .map(|m| Arc::<str>::from(m.to_string()))
        }
        None => None,
    };
    let user_id: Arc<str> = {
        let st = session.lock();
        let user_id: Arc<str> = match (&st.user_id, requested.as_deref()) {
            (Some(u), Some(r)) if **u != *r => {
                return refuse(
                    ErrorCode::Forbidden,
                    format!("this connection already joined as `{u}`; one identity per session"),
                )
            }
            (Some(u), _) => u.clone(),
            (None, Some(r)) => r.into(),
            (None, None) => random_uuid().into(),
        };
        if st.ended {
            return refuse(ErrorCode::Internal, "the session has ended");
        }
        let already = st.rooms.iter().any(|r| &*r.id == room_id);
        if !already && st.rooms.len() >= hub.config.max_rooms_per_session {
            return refuse(
                ErrorCode::Forbidden,
                format!(
                    "a session may be in at most {} rooms",
                    hub.config.max_rooms_per_session
                ),
            );
        }
        user_id
    };
    let mut me = Member::new(
        user_id.clone(),
        session.clone(),
        display_name.map(|d| d.as_ref().into()),
        identity_metadata.or_else(|| metadata.map(Into::into)),
        0,
    );

    loop {
        let room = hub.room_get_or_create(room_id);
        let mut rs = room.lock();
        if rs.removed {
            continue; // emptied and unlisted meanwhile: look it up again
        }
        let mut replaced: Option<Arc<Session>> = None;
        if let Some(pos) = rs.members.iter().position(|m| *m.user_id == *user_id) {
            let holder = rs.members[pos].session.clone();
            if Arc::ptr_eq(&holder, session) {
                // Already in the room: answer room-info again and tell nobody.
                let others: Vec<Member> = rs
                    .members
                    .iter()
                    .filter(|m| !Arc::ptr_eq(&m.session, session))
                    .cloned()
                    .collect();
                let ice = hub.ice_servers(&user_id);
                let me = &rs.members[pos];
                let info = room_info_body(hub, &room.id, &others, &rs.remote, me, ice.as_ref());
                session.deliver(&info);
                return Ok(());
            }
            // A connected holder keeps its id, unless the token proves this is
            // the same user (auth on): then the newer connection takes over.
            if !holder.lock().is_away() && identity.is_none() {
                return refuse(
                    ErrorCode::UserIdTaken,
                    format!("`{user_id}` is already in room `{room_id}`"),
                );
            }
            // A reloaded page that lost its session takes its identity over.
            let old = rs.members.remove(pos);
            let left = outbound::user_left(&room.id, &old.user_id, LeaveReason::Replaced);
            for m in &rs.members {
                m.session.deliver(&left);
            }
            hub.emit(|| Event::UserLeft(body_fields(&left)));
            if let Some(bp) = hub.backplane() {
                bp.left(&room.id, &old.user_id, &holder.id, LeaveReason::Replaced);
            }
            replaced = Some(holder);
        } else if let Some(pos) = rs.remote.iter().position(|m| *m.user_id == *user_id) {
            // Held by a session on another node (cluster mode): the same rule as
            // above, so a reload that lands on another node takes its identity over.
            if !rs.remote[pos].away && identity.is_none() {
                return refuse(
                    ErrorCode::UserIdTaken,
                    format!("`{user_id}` is already in room `{room_id}` (on another node)"),
                );
            }
            let bp = hub.backplane().expect("remote members mean a cluster");
            bp.available().map_err(|u| (ErrorCode::Internal, u.0))?;
            let old = rs.remote.remove(pos);
            let left = outbound::user_left(&room.id, &old.user_id, LeaveReason::Replaced);
            for m in &rs.members {
                m.session.deliver(&left);
            }
            hub.emit(|| Event::UserLeft(body_fields(&left)));
            // The other nodes stop listing it before they hear of the new member;
            // its own node ends the session (close 4409 there).
            bp.left(
                &room.id,
                &old.user_id,
                &old.session_id,
                LeaveReason::Replaced,
            );
            bp.replace(&old.node, &old.session_id);
        }
        if let Some(bp) = hub.backplane().filter(|_| !rs.remote.is_empty()) {
            bp.available().map_err(|u| (ErrorCode::Internal, u.0))?;
        }
        let max = hub.config.max_room_size;
        if max > 0 && rs.members.len() + rs.remote.len() >= max {
            return refuse(
                ErrorCode::RoomFull,
                format!("room `{room_id}` is full ({max} peers)"),
            );
        }
        {
            let mut st = session.lock();
            if st.ended {
                // Ended (kicked) meanwhile: leave no empty room behind.
                drop(st);
                if rs.is_empty() {
                    rs.removed = true;
                    drop(rs);
                    hub.unlist_room(&room);
                }
                return refuse(ErrorCode::Internal, "the session has ended");
            }
            st.user_id = Some(user_id.clone());
            st.edit_rooms(|rooms| {
                rooms.reserve_exact(1);
                rooms.push(room.clone());
            });
        }
        if let Some(bp) = hub.backplane() {
            // Taken under the room lock, so local join order and `order` agree.
            me.order = bp.next_order();
        }
        // The receivers joined earlier: impolite toward the newcomer.
        let joined = outbound::user_joined(&room.id, me.peer(), false);
        for m in &rs.members {
            m.session.deliver(&joined);
        }
        // room-info goes out under the room lock, so it precedes every later
        // user-joined or message that mentions this peer.
        let ice = hub.ice_servers(&user_id);
        let info = room_info_body(hub, &room.id, &rs.members, &rs.remote, &me, ice.as_ref());
        if let Some(bp) = hub.backplane() {
            bp.joined(MemberRecord::of(&room.id, &me));
        }
        if rs.members.len() < 4 {
            rs.members.reserve_exact(1);
        }
        rs.members.push(me);
        session.deliver(&info);
        drop(rs);
        if let Some(old) = replaced {
            hub.end_session(
                &old,
                LeaveReason::Replaced,
                Some((close::REPLACED, "replaced")),
            );
        }
        hub.metrics.joins.fetch_add(1, Ordering::Relaxed);
        hub.emit(|| Event::UserJoined(body_fields(&joined)));
        return Ok(());
    }
}

impl ConnCore {
    pub(super) fn leave(&mut self, room_id: Option<&str>) -> Result<(), Refusal> {
        let rooms: Vec<Arc<Room>> = {
            let mut st = self.session.lock();
            match room_id {
                None => st.take_rooms(),
                Some(id) => match st.rooms.iter().position(|r| &*r.id == id) {
                    Some(pos) => vec![st.edit_rooms(|rooms| rooms.remove(pos))],
                    None => return refuse(ErrorCode::NotInRoom, format!("not in room `{id}`")),
                },
            }
        };
        for room in &rooms {
            self.hub
                .remove_member(room, &self.session, LeaveReason::Leave);
        }
        Ok(())
    }

    /// The room a room-scoped message is for, and the sender's user id.
    pub(super) fn resolve_room(&self, room_id: Option<&str>) -> Result<Arc<Room>, Refusal> {
        let st = self.session.lock();
        if st.user_id.is_none() {
            return refuse(ErrorCode::NotInRoom, "join a room first");
        }
        let room = match room_id {
            Some(id) => st.rooms.iter().find(|r| &*r.id == id),
            None if st.rooms.len() > 1 => {
                return refuse(
                    ErrorCode::InvalidMessage,
                    "`roomId` is required while in several rooms",
                )
            }
            None => st.rooms.first(),
        };
        match room {
            Some(r) => Ok(r.clone()),
            None => refuse(
                ErrorCode::NotInRoom,
                format!("not in room `{}`", room_id.unwrap_or("any")),
            ),
        }
    }
}

/// Whether an authenticated connection may join `room_id` as `requested`.
fn identity_allows(
    identity: &Identity,
    requested: Option<&str>,
    room_id: &str,
) -> Result<(), Refusal> {
    if let Some(r) = requested {
        if r != identity.user_id {
            return refuse(
                ErrorCode::Forbidden,
                format!(
                    "the token is for `{}`; joining as `{r}` is forbidden",
                    identity.user_id
                ),
            );
        }
    }
    if !identity.may_join(room_id) {
        return refuse(
            ErrorCode::Forbidden,
            format!("the token does not allow room `{room_id}`"),
        );
    }
    Ok(())
}
