//! Relaying `offer`/`answer`/`candidate`/`message`/`chat` and the app types to one peer or the
//! room, locally or through the cluster, with the stamped `from`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{refuse, Accepted, ConnCore, Refusal};
use crate::error::ErrorCode;
use crate::event::Event;
use crate::hub::backplane::NodeTargets;
use crate::hub::body_fields;
use crate::hub::session::RelayRefused;
use crate::protocol::{outbound, ClientMessage, MsgType};

/// Room-wide copies get `"seq":N,` prefixed per receiver: at most this many bytes.
const MAX_SEQ_STAMP: usize = 28;

/// The sender pays for receivers that are not keeping up with it: its message
/// is refused (`rate-limited`, nothing delivered) while their queues are over
/// half full; it may retry once they drained.
fn not_keeping_up<T>(peers: &[&str]) -> Result<T, Refusal> {
    refuse(
        ErrorCode::RateLimited,
        format!(
            "not sent: {} not keeping up with your messages; retry later",
            peers.join(", ")
        ),
    )
}

fn peer_not_found<T>(to: &str, room_id: &str) -> Result<T, Refusal> {
    refuse(
        ErrorCode::PeerNotFound,
        format!("no peer `{to}` in room `{room_id}`"),
    )
}

impl ConnCore {
    pub(super) fn relay(&mut self, msg: &ClientMessage<'_>) -> Result<Accepted, Refusal> {
        let room = self.resolve_room(msg.room_id.as_deref())?;
        let max = self.hub.config.max_message_bytes;
        // The stamped copy must still fit the receivers' size limit.
        let too_big = || {
            refuse(
                ErrorCode::MessageTooBig,
                "the message is too big once `from` is added",
            )
        };
        // Everything local happens under the room's lock (room, then session:
        // the lock order everywhere); `from` is read from the sender's own
        // entry there, so nothing is cloned per message.
        let rs = room.lock();
        let Some(me) = rs
            .members
            .iter()
            .find(|m| Arc::ptr_eq(&m.session, &self.session))
        else {
            return refuse(ErrorCode::NotInRoom, format!("not in room `{}`", room.id));
        };
        let from = &*me.user_id;
        let event_from = self
            .hub
            .relay_event_wanted(msg.kind)
            .then(|| me.user_id.clone());
        let mut accepted = Accepted::Now;
        let mut unicast_remote = None;
        let delivered = match msg.to.as_deref() {
            Some(to) => match rs.find(to) {
                // One receiver: its frame, `seq` included, built in one pass.
                Some(target) => {
                    let built = target
                        .session
                        .lock()
                        .relay_built(max, |seq| outbound::forward(msg, Some(seq), from, &room.id));
                    match built {
                        Ok(Some(_)) => 1,
                        Ok(None) => return peer_not_found(to, &room.id),
                        Err(RelayRefused::Busy) => return not_keeping_up(&[to]),
                        Err(RelayRefused::TooBig) => return too_big(),
                    }
                }
                // On another node (cluster mode): it counts as relayed there.
                None => {
                    let Some(target) = rs.find_remote(to).map(NodeTargets::of) else {
                        return peer_not_found(to, &room.id);
                    };
                    let body = outbound::forward(msg, None, from, &room.id);
                    if body.len() + MAX_SEQ_STAMP > max {
                        return too_big();
                    }
                    unicast_remote = Some((target, body));
                    0
                }
            },
            None => {
                let body = outbound::forward(msg, None, from, &room.id);
                if body.len() + MAX_SEQ_STAMP > max {
                    return too_big();
                }
                let include_self = msg.kind == MsgType::Chat;
                let receivers = || {
                    rs.members
                        .iter()
                        .filter(|m| include_self || !Arc::ptr_eq(&m.session, &self.session))
                };
                // All or nothing: a receiver whose queue is half full makes the
                // sender wait, rather than lose its connection to this sender.
                let busy: Vec<&str> = receivers()
                    .filter(|m| !m.session.lock().accepts_relay())
                    .map(|m| &*m.user_id)
                    .collect();
                if !busy.is_empty() {
                    return not_keeping_up(&busy);
                }
                let remote = NodeTargets::group(&rs.remote);
                if !remote.is_empty() {
                    // All or nothing: no local copies when the other nodes can't be reached.
                    let bp = self.hub.backplane().expect("remote members mean a cluster");
                    bp.available().map_err(|u| (ErrorCode::Internal, u.0))?;
                }
                let n = receivers()
                    .filter(|m| m.session.deliver(&body).is_some())
                    .count();
                if !remote.is_empty() {
                    accepted = self.send_remote(&room.id, remote, body, false, msg)?;
                }
                n
            }
        };
        drop(rs);
        if let Some((target, body)) = unicast_remote {
            accepted = self.send_remote(&room.id, vec![target], body, true, msg)?;
        }
        self.hub
            .metrics
            .messages_relayed
            .fetch_add(delivered as u64, Ordering::Relaxed);
        let Some(from) = event_from else {
            return Ok(accepted);
        };
        self.hub.emit(|| {
            let fields = body_fields(&outbound::forward(msg, None, &from, &room.id));
            match msg.kind {
                MsgType::Offer => Event::Offer(fields),
                MsgType::Answer => Event::Answer(fields),
                MsgType::Candidate => Event::Candidate(fields),
                MsgType::Chat => Event::Chat(fields),
                MsgType::App => Event::App {
                    kind: msg.type_name.to_string(),
                    fields,
                },
                _ => Event::Message(fields),
            }
        });
        Ok(accepted)
    }

    /// Hands a message for peers on other nodes to the cluster.
    pub(super) fn send_remote(
        &self,
        room_id: &str,
        targets: Vec<NodeTargets>,
        body: String,
        unicast: bool,
        msg: &ClientMessage<'_>,
    ) -> Result<Accepted, Refusal> {
        let bp = self.hub.backplane().expect("remote members mean a cluster");
        let id = msg.id.map(|i| i.get());
        let reply = id.map(|i| (&self.session.id, i));
        bp.send(room_id, targets, body, unicast, reply)
            .map_err(|u| (ErrorCode::Internal, u.0))?;
        Ok(if id.is_some() {
            Accepted::Later
        } else {
            Accepted::Now
        })
    }
}
