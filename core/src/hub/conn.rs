//! One client connection as the hub sees it: parses its frames, applies the rate
//! limit, dispatches every message type, and settles the session when it ends.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::value::RawValue;

use super::auth::ConnAuth;
use super::backplane::{ClaimRequest, ClaimSlot, ClaimState, MemberRecord, NodeTargets};
use super::outbox::{Fate, Outbox};
use super::rate::{RateLimiter, Verdict};
use super::room::{Member, Room};
use super::session::{queue_resumed, Attached, Session, TooBig};
use super::{
    body_fields, random_id, random_uuid, room_info_body, user_joined_body, user_left_body, Hub,
    HubInner,
};
use crate::auth::Identity;
use crate::error::ErrorCode;
use crate::event::{Event, Fields};
use crate::protocol::{
    close, now_millis, parse_client_message, ClientMessage, Frame, LeaveReason, MsgType,
    ObjectWriter,
};

/// What the transport knows about a new connection.
///
/// Authentication (when the hub's config turns it on), in order of preference:
/// - `identity`: the transport already checked the handshake's token with
///   [`Hub::authenticate_handshake`] (and answered HTTP 401 on failure);
/// - `token`: an unchecked handshake token; the hub checks it as if it were the
///   client's first `auth` message (failure: `error` + close 4401), for transports
///   that can not refuse an upgrade after awaiting;
/// - neither: the client must send `auth` within `auth_timeout` (else 4401).
///
/// `origin`, `ip` and `path` are handed to an auth hook with every later check.
#[derive(Clone, Default)]
pub struct ConnectInfo {
    /// The client IP (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    /// The browser `Origin` header, if any.
    pub origin: Option<String>,
    /// The request path (without the query string).
    pub path: String,
    /// An unverified handshake token (see above).
    pub token: Option<String>,
    /// An identity the transport verified already (see above).
    pub identity: Option<Identity>,
}

impl std::fmt::Debug for ConnectInfo {
    // Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectInfo")
            .field("ip", &self.ip)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("identity", &self.identity)
            .finish()
    }
}

pub(super) type Refusal = (ErrorCode, String);

pub(super) fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err((code, message.into()))
}

/// A live connection attached to the hub. The transport feeds it inbound text
/// frames ([`Connection::handle_text`]), drains [`Connection::outbox`] (every
/// reply, relayed message and close request comes out there, including closes
/// the hub decides on its own: auth timeout or token expiry 4401, kick 4403,
/// takeover 4409, slow consumer 1008), and calls [`Connection::finish`] at the
/// end (dropping it counts as an abnormal end).
///
/// Cheap to call from any thread; the state sits behind one uncontended lock so
/// that the hub's own tasks (an auth hook's answer, auth timers) can act on the
/// connection without the transport's help.
#[derive(Debug)]
pub struct Connection {
    core: Arc<Mutex<ConnCore>>,
    outbox: Arc<Outbox>,
    client_id: Arc<str>,
}

/// The state of one connection (see [`Connection`]).
#[derive(Debug)]
pub(super) struct ConnCore {
    pub(super) hub: Arc<HubInner>,
    pub(super) id: u64,
    pub(super) client_id: Arc<str>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) session: Arc<Session>,
    rate: Option<RateLimiter>,
    /// True until the first message that changes state: only then may `resume` come.
    pristine: bool,
    pub(super) finished: bool,
    /// `None` when auth is off (no cost then).
    pub(super) auth: Option<Box<ConnAuth>>,
    /// Cluster mode: a `resume` of a session held by another node, in progress.
    claim: Option<Arc<ClaimSlot>>,
}

/// A message was accepted now (`ack` at once), or handed to the cluster, which
/// answers once the peer's node accepted it.
#[derive(Debug, PartialEq, Eq)]
enum Accepted {
    Now,
    Later,
}

pub(super) fn lock_core(core: &Mutex<ConnCore>) -> MutexGuard<'_, ConnCore> {
    // A panic while handling a message is caught by the transport and closes the
    // connection (1011); the state is still usable for settling the session.
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// Attaches a new connection with a fresh session; its `connected` message is
    /// already queued in the outbox. See [`ConnectInfo`] for authentication.
    pub fn connect(&self, info: ConnectInfo) -> Connection {
        let hub = &self.inner;
        let id = hub.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::with_metrics(
            hub.config.outbound_queue_bytes,
            hub.metrics.clone(),
        ));
        let session = Arc::new(Session::new(
            random_id().into(),
            random_id().into(),
            hub.replay_bounds(),
            Attached {
                conn_id: id,
                outbox: outbox.clone(),
            },
        ));
        hub.insert_session(&session);
        if let Some(bp) = hub.backplane() {
            session.lock().set_mirror(session.id.clone(), bp.clone());
            bp.session_opened(&session.id, &session.resume_token);
        }
        hub.metrics.connections.fetch_add(1, Ordering::Relaxed);
        hub.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let client_id: Arc<str> = format!("c{id}").into();
        let mut w = ObjectWriter::typed("connected", 192);
        w.str("clientId", &client_id)
            .str("sessionId", &session.id)
            .str("resumeToken", &session.resume_token)
            .u64(
                "heartbeatMs",
                hub.config.heartbeat_interval.as_millis() as u64,
            )
            .u64("timestamp", now_millis());
        outbox.push(Frame::from(w.finish()));
        hub.emit(|| {
            let mut f = Fields::new();
            f.insert("clientId".into(), client_id.to_string().into());
            f.insert("sessionId".into(), session.id.to_string().into());
            f.insert("ip".into(), info.ip.map(|ip| ip.to_string()).into());
            Event::Connected(f)
        });
        // Admitted just as a drain began: the drain's sweep may have missed it.
        if hub.draining.load(Ordering::Acquire) {
            session.deliver(&hub.draining_body());
            outbox.close(close::GOING_AWAY, "Server shutting down", Fate::Away);
        }
        let rate = RateLimiter::new(
            hub.config.rate_limit_burst,
            hub.config.rate_limit_rps,
            Instant::now(),
        );
        let core = Arc::new(Mutex::new(ConnCore {
            hub: hub.clone(),
            id,
            client_id: client_id.clone(),
            outbox: outbox.clone(),
            session,
            rate,
            pristine: true,
            finished: false,
            claim: None,
            auth: None,
        }));
        if hub.auth.is_on() {
            ConnAuth::start(&core, info);
        }
        Connection {
            core,
            outbox,
            client_id,
        }
    }
}

impl Connection {
    fn core(&self) -> MutexGuard<'_, ConnCore> {
        lock_core(&self.core)
    }

    /// The frames to write to this connection.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// This connection's id (`clientId` in `connected`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The id of the session this connection currently carries.
    pub fn session_id(&self) -> Arc<str> {
        self.core().session.id.clone()
    }

    /// Who this connection is authenticated as (`None` while auth is off or pending).
    pub fn identity(&self) -> Option<Identity> {
        self.core().identity().cloned()
    }

    /// Asks the transport to close (protocol violations it detected itself:
    /// 1002, 1003, 1009): membership ends at once.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.outbox.close(code, reason, Fate::End);
    }

    /// Handles one inbound text frame. Never fails or blocks: problems become
    /// `error` replies or a close request on the outbox. While an auth hook is
    /// checking an `auth` message, later frames wait in a bounded queue and are
    /// handled, in order, when it answers.
    pub fn handle_text(&mut self, text: &str) {
        self.core().handle_text(text);
    }

    /// Ends the connection. `client_close` is the close code the client sent, or
    /// `None` when the connection ended without a close frame.
    pub fn finish(self, client_close: Option<u16>) {
        self.core().end(client_close);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.core().end(None);
    }
}

impl ConnCore {
    /// The identity of an authenticated connection.
    pub(super) fn identity(&self) -> Option<&Identity> {
        self.auth.as_ref().and_then(|a| a.identity.as_ref())
    }

    pub(super) fn handle_text(&mut self, text: &str) {
        self.hub
            .metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        // Once the server decided to close this connection (kick, abuse, slow
        // consumer), nothing it still sends is acted upon.
        if self.outbox.is_closing() {
            return;
        }
        if let Some(auth) = &mut self.auth {
            if auth.defer(text, &self.outbox) {
                return;
            }
        }
        self.process(text);
    }

    /// Handles one frame (counted and checked for a pending auth by the caller).
    pub(super) fn process(&mut self, text: &str) {
        let claiming = self.claim.is_some() && self.take_claim();
        let msg = match parse_client_message(text) {
            Ok(m) => m,
            Err(e) => {
                self.hub.metrics.message_in(None);
                if self.allowed(e.id) {
                    self.send_error(e.code, &e.message, e.id);
                }
                return;
            }
        };
        self.hub.metrics.message_in(Some(msg.kind));
        let id = msg.id.filter(|_| msg.kind != MsgType::Ack);
        // A retransmit is answered before the rate limit: resending costs no tokens.
        if let Some(id) = id {
            if self.session.lock().seen_id(id.get()) {
                self.send_ack(id);
                return;
            }
        }
        // Acks are cheap and must flow even under a flood, or buffers would grow.
        if msg.kind != MsgType::Ack && !self.allowed(msg.id) {
            return;
        }
        if msg.kind == MsgType::Auth {
            // Answers (ack, error, close) itself, possibly later (an auth hook).
            return self.auth_message(&msg, id);
        }
        if let Err((code, message)) = self.require_auth(msg.kind) {
            return self.send_error(code, &message, msg.id);
        }
        if claiming && !matches!(msg.kind, MsgType::Ack | MsgType::Ping) {
            let why = "a `resume` is in progress; wait for `resumed`";
            return self.send_error(ErrorCode::InvalidMessage, why, msg.id);
        }
        let routed = matches!(
            msg.kind,
            MsgType::Offer
                | MsgType::Answer
                | MsgType::Candidate
                | MsgType::Message
                | MsgType::Chat
        )
        .then(Instant::now);
        let outcome = self.dispatch(&msg);
        if let Some(started) = routed {
            self.hub.metrics.routed(started.elapsed());
        }
        match outcome {
            Ok(accepted) => {
                if let Some(id) = id {
                    self.session.lock().remember_id(id.get());
                    if accepted == Accepted::Now {
                        self.send_ack(id);
                    }
                }
            }
            Err((code, message)) => self.send_error(code, &message, msg.id),
        }
    }

    /// Applies the rate limit; `false` means drop the message. The one
    /// `rate-limited` error per second names the dropped message's `id`.
    fn allowed(&mut self, id: Option<&RawValue>) -> bool {
        let Some(rate) = &mut self.rate else {
            return true;
        };
        match rate.check(Instant::now()) {
            Verdict::Allow => true,
            Verdict::Drop { notify } => {
                self.hub
                    .metrics
                    .rate_limited
                    .fetch_add(1, Ordering::Relaxed);
                if notify {
                    self.send_error(ErrorCode::RateLimited, "too many messages; slow down", id);
                }
                false
            }
            Verdict::Abuse => {
                self.outbox
                    .close(close::POLICY, "rate limit exceeded", Fate::End);
                false
            }
        }
    }

    fn dispatch(&mut self, msg: &ClientMessage<'_>) -> Result<Accepted, Refusal> {
        let now = |r: Result<(), Refusal>| r.map(|()| Accepted::Now);
        now(match msg.kind {
            // Handled before dispatch (`auth_message`).
            MsgType::Auth => Ok(()),
            MsgType::Ack => {
                self.session.lock().ack(msg.seq.unwrap_or(0));
                Ok(())
            }
            MsgType::Ping => {
                let mut w = ObjectWriter::typed("pong", 48);
                match msg.raw_field("timestamp").ok().flatten() {
                    Some(t) => w.raw_value("timestamp", t),
                    None => w.u64("timestamp", now_millis()),
                };
                self.reply(w.finish());
                Ok(())
            }
            MsgType::Resume => self.resume(msg),
            MsgType::Join => {
                self.pristine = false;
                self.join(msg)
            }
            MsgType::Leave => {
                self.pristine = false;
                self.leave(msg.room_id.as_deref())
            }
            MsgType::Offer
            | MsgType::Answer
            | MsgType::Candidate
            | MsgType::Message
            | MsgType::Chat => {
                self.pristine = false;
                return self.relay(msg);
            }
        })
    }

    /// Sends a reply. Before a possible `resume` (while pristine) replies belong to
    /// the connection, not to a session: they carry no `seq`, so they can not
    /// collide with the `seq`s a resume is about to replay.
    pub(super) fn reply(&self, body: String) {
        if self.pristine {
            self.outbox.push(Frame::from(body));
        } else {
            self.session.deliver(&body);
        }
    }

    pub(super) fn send_error(&self, code: ErrorCode, message: &str, reference: Option<&RawValue>) {
        self.hub.metrics.error_sent(code);
        let mut w = ObjectWriter::typed("error", 96 + message.len());
        w.str("code", code.as_str()).str("message", message);
        if let Some(r) = reference {
            w.raw_value("ref", r);
        }
        self.reply(w.finish());
    }

    pub(super) fn send_ack(&self, id: &RawValue) {
        let mut w = ObjectWriter::typed("ack", 48);
        w.raw_value("id", id);
        self.reply(w.finish());
    }

    fn join(&mut self, msg: &ClientMessage<'_>) -> Result<(), Refusal> {
        let hub = self.hub.clone();
        let room_id = msg.room_id.as_deref().unwrap_or_default();
        let mut requested = msg
            .str_field("userId")
            .map_err(|m| (ErrorCode::InvalidMessage, m))?;
        // With auth on, the token decides who this is and where it may go.
        let identity_metadata = match self.identity() {
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
            let st = self.session.lock();
            let user_id: Arc<str> = match (&st.user_id, requested.as_deref()) {
                (Some(u), Some(r)) if **u != *r => {
                    return refuse(
                        ErrorCode::Forbidden,
                        format!(
                            "this connection already joined as `{u}`; one identity per session"
                        ),
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
        let display_name = msg
            .str_field("displayName")
            .map_err(|m| (ErrorCode::InvalidMessage, m))?;
        let metadata = msg
            .raw_field("metadata")
            .map_err(|m| (ErrorCode::InvalidMessage, m))?;
        let mut me = Member {
            user_id: user_id.clone(),
            session: self.session.clone(),
            display_name: display_name.map(|d| d.as_ref().into()),
            metadata: identity_metadata.or_else(|| metadata.map(|m| m.get().into())),
            order: 0,
        };

        loop {
            let room = hub.room_get_or_create(room_id);
            let mut rs = room.lock();
            if rs.removed {
                continue; // emptied and unlisted meanwhile: look it up again
            }
            let mut replaced: Option<Arc<Session>> = None;
            if let Some(pos) = rs.members.iter().position(|m| *m.user_id == *user_id) {
                let holder = rs.members[pos].session.clone();
                if Arc::ptr_eq(&holder, &self.session) {
                    // Already in the room: answer room-info again and tell nobody.
                    let others: Vec<Member> = rs
                        .members
                        .iter()
                        .filter(|m| !Arc::ptr_eq(&m.session, &self.session))
                        .cloned()
                        .collect();
                    let info = room_info_body(&room.id, &others, &rs.remote, &rs.members[pos]);
                    let info = hub.with_ice_servers(info, &user_id);
                    self.session.deliver(&info);
                    return Ok(());
                }
                // A connected holder keeps its id, unless the token proves this is
                // the same user (auth on): then the newer connection takes over.
                if !holder.lock().is_away() && self.auth.is_none() {
                    return refuse(
                        ErrorCode::UserIdTaken,
                        format!("`{user_id}` is already in room `{room_id}`"),
                    );
                }
                // A reloaded page that lost its session takes its identity over.
                let old = rs.members.remove(pos);
                let left = user_left_body(&room.id, &old.user_id, LeaveReason::Replaced);
                for m in &rs.members {
                    m.session.deliver(&left);
                }
                hub.emit(|| Event::UserLeft(body_fields(&left)));
                if let Some(bp) = hub.backplane() {
                    bp.left(&room.id, &old.user_id, &holder.id, LeaveReason::Replaced);
                }
                replaced = Some(holder);
            } else if rs.find_remote(&user_id).is_some() {
                // Held by a session on another node (cluster mode).
                return refuse(
                    ErrorCode::UserIdTaken,
                    format!("`{user_id}` is already in room `{room_id}` (on another node)"),
                );
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
                let mut st = self.session.lock();
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
                st.rooms.push(room.clone());
            }
            if let Some(bp) = hub.backplane() {
                // Taken under the room lock, so local join order and `order` agree.
                me.order = bp.next_order();
            }
            let joined = user_joined_body(&room.id, &me);
            for m in &rs.members {
                m.session.deliver(&joined);
            }
            // room-info goes out under the room lock, so it precedes every later
            // user-joined or message that mentions this peer.
            let info = room_info_body(&room.id, &rs.members, &rs.remote, &me);
            let info = hub.with_ice_servers(info, &user_id);
            if let Some(bp) = hub.backplane() {
                bp.joined(MemberRecord::of(&room.id, &me));
            }
            rs.members.push(me);
            self.session.deliver(&info);
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

    fn leave(&mut self, room_id: Option<&str>) -> Result<(), Refusal> {
        let rooms: Vec<Arc<Room>> = {
            let mut st = self.session.lock();
            match room_id {
                None => std::mem::take(&mut st.rooms),
                Some(id) => match st.rooms.iter().position(|r| &*r.id == id) {
                    Some(pos) => vec![st.rooms.remove(pos)],
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
    fn resolve_room(&self, room_id: Option<&str>) -> Result<(Arc<Room>, Arc<str>), Refusal> {
        let st = self.session.lock();
        let Some(user_id) = st.user_id.clone() else {
            return refuse(ErrorCode::NotInRoom, "join a room first");
        };
        let room = match room_id {
            Some(id) => st.rooms.iter().find(|r| &*r.id == id).cloned(),
            None if st.rooms.len() > 1 => {
                return refuse(
                    ErrorCode::InvalidMessage,
                    "`roomId` is required while in several rooms",
                )
            }
            None => st.rooms.first().cloned(),
        };
        match room {
            Some(r) => Ok((r, user_id)),
            None => refuse(
                ErrorCode::NotInRoom,
                format!("not in room `{}`", room_id.unwrap_or("any")),
            ),
        }
    }

    fn relay(&mut self, msg: &ClientMessage<'_>) -> Result<Accepted, Refusal> {
        let (room, from) = self.resolve_room(msg.room_id.as_deref())?;
        let max = self.hub.config.max_message_bytes;
        // The stamped copy must still fit the receivers' size limit.
        let too_big = || {
            refuse(
                ErrorCode::MessageTooBig,
                "the message is too big once `from` is added",
            )
        };
        let mut accepted = Accepted::Now;
        let delivered = match msg.to.as_deref() {
            Some(to) => {
                let (target, remote) = {
                    let rs = room.lock();
                    match rs.find(to) {
                        Some(m) => (Some(m.session.clone()), None),
                        None => (None, rs.find_remote(to).map(NodeTargets::of)),
                    }
                };
                let not_found = || {
                    refuse(
                        ErrorCode::PeerNotFound,
                        format!("no peer `{to}` in room `{}`", room.id),
                    )
                };
                match (target, remote) {
                    // One receiver: build its frame, `seq` included, in one pass.
                    (Some(target), _) => match target
                        .lock()
                        .deliver_built(max, |seq| forward_body(msg, Some(seq), &from, &room.id))
                    {
                        Ok(Some(_)) => 1,
                        Ok(None) => return not_found(),
                        Err(TooBig) => return too_big(),
                    },
                    // On another node (cluster mode): it counts as relayed there.
                    (None, Some(remote)) => {
                        let body = forward_body(msg, None, &from, &room.id);
                        if body.len() + MAX_SEQ_STAMP > max {
                            return too_big();
                        }
                        accepted = self.send_remote(&room.id, vec![remote], body, true, msg)?;
                        0
                    }
                    (None, None) => return not_found(),
                }
            }
            None => {
                let body = forward_body(msg, None, &from, &room.id);
                if body.len() + MAX_SEQ_STAMP > max {
                    return too_big();
                }
                let include_self = msg.kind == MsgType::Chat;
                let rs = room.lock();
                let remote = NodeTargets::group(&rs.remote);
                if !remote.is_empty() {
                    // All or nothing: no local copies when the other nodes can't be reached.
                    let bp = self.hub.backplane().expect("remote members mean a cluster");
                    bp.available().map_err(|u| (ErrorCode::Internal, u.0))?;
                }
                let n = rs
                    .members
                    .iter()
                    .filter(|m| include_self || !Arc::ptr_eq(&m.session, &self.session))
                    .filter(|m| m.session.deliver(&body).is_some())
                    .count();
                if !remote.is_empty() {
                    accepted = self.send_remote(&room.id, remote, body, false, msg)?;
                }
                n
            }
        };
        self.hub
            .metrics
            .messages_relayed
            .fetch_add(delivered as u64, Ordering::Relaxed);
        if !self.hub.relay_event_wanted(msg.kind) {
            return Ok(accepted);
        }
        self.hub.emit(|| {
            let fields = body_fields(&forward_body(msg, None, &from, &room.id));
            match msg.kind {
                MsgType::Offer => Event::Offer(fields),
                MsgType::Answer => Event::Answer(fields),
                MsgType::Candidate => Event::Candidate(fields),
                MsgType::Chat => Event::Chat(fields),
                _ => Event::Message(fields),
            }
        });
        Ok(accepted)
    }

    /// Hands a message for peers on other nodes to the cluster.
    fn send_remote(
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

    fn resume(&mut self, msg: &ClientMessage<'_>) -> Result<(), Refusal> {
        if !self.pristine {
            return refuse(
                ErrorCode::InvalidMessage,
                "`resume` must come before any other message",
            );
        }
        let field = |n| msg.str_field(n).ok().flatten().unwrap_or_default();
        let (session_id, token) = (field("sessionId"), field("resumeToken"));
        let last_seq = msg.seq.unwrap_or(0);
        let failed = |hub: &HubInner, why: &str| {
            hub.metrics.resume_failures.fetch_add(1, Ordering::Relaxed);
            refuse(ErrorCode::ResumeFailed, why.to_owned())
        };
        let target = match self.hub.sessions.get(&session_id) {
            Some(s) if constant_time_eq(s.resume_token.as_bytes(), token.as_bytes()) => s,
            // Cluster mode: the session may be held by another node, or orphaned.
            None if self.hub.backplane().is_some() => {
                return self.start_claim(session_id.into_owned(), token.into_owned(), last_seq);
            }
            _ => return failed(&self.hub, "unknown or expired session"),
        };
        // With auth on, only the same user may take a session back.
        if let Some(identity) = self.identity() {
            let owner = target.lock().user_id.clone();
            if owner.is_some_and(|u| *u != *identity.user_id) {
                return failed(&self.hub, "unknown or expired session");
            }
        }
        if Arc::ptr_eq(&target, &self.session) {
            return failed(&self.hub, "this is the session of this connection");
        }
        let replayed = {
            let mut st = target.lock();
            if st.ended {
                return failed(&self.hub, "unknown or expired session");
            }
            let Some(frames) = st.replay_after(last_seq) else {
                return failed(
                    &self.hub,
                    &format!("messages after seq {last_seq} are no longer buffered"),
                );
            };
            match st.attached.take() {
                Some(old) => {
                    old.outbox
                        .close(close::REPLACED, "session taken over", Fate::Detached);
                }
                None => {
                    self.hub
                        .metrics
                        .sessions_away
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
            st.attached = Some(Attached {
                conn_id: self.id,
                outbox: self.outbox.clone(),
            });
            st.away_generation += 1;
            if let Some(bp) = self.hub.backplane() {
                bp.session_away(&target.id, false);
            }
            queue_resumed(&self.outbox, &target.id, frames)
        };
        self.took_over(target, replayed);
        Ok(())
    }

    /// Asks the cluster for a session this node does not have; the outcome (the
    /// `resumed` and the replay, or `resume-failed`) reaches the outbox directly and
    /// the connection picks the session up with its next message or at its end.
    fn start_claim(
        &mut self,
        session_id: String,
        resume_token: String,
        last_seq: u64,
    ) -> Result<(), Refusal> {
        let bp = self
            .hub
            .backplane()
            .expect("claims only happen in a cluster");
        if let Err(u) = bp.available() {
            self.hub
                .metrics
                .resume_failures
                .fetch_add(1, Ordering::Relaxed);
            return refuse(ErrorCode::ResumeFailed, u.0);
        }
        let slot = Arc::new(ClaimSlot::default());
        self.claim = Some(slot.clone());
        bp.claim(ClaimRequest {
            session_id,
            resume_token,
            // With auth on, only the same user may take a session back.
            user_id: self.identity().map(|i| i.user_id.to_string()),
            last_seq,
            conn_id: self.id,
            outbox: self.outbox.clone(),
            slot,
        });
        Ok(())
    }

    /// Picks up the outcome of a cluster claim; `true` while it is still running.
    fn take_claim(&mut self) -> bool {
        let Some(slot) = self.claim.clone() else {
            return false;
        };
        match slot.take() {
            ClaimState::Waiting => true,
            ClaimState::Resumed(session, replayed) => {
                self.claim = None;
                self.took_over(session, replayed);
                false
            }
            ClaimState::Over => {
                self.claim = None;
                false
            }
        }
    }

    /// This connection now carries `target` (resumed); its fresh session is dropped.
    fn took_over(&mut self, target: Arc<Session>, replayed: usize) {
        let fresh = std::mem::replace(&mut self.session, target);
        fresh.lock().ended = true;
        self.hub.unlist_session(&fresh);
        self.pristine = false;
        self.hub.metrics.resumes.fetch_add(1, Ordering::Relaxed);
        self.hub.emit(|| {
            let mut f = Fields::new();
            f.insert("clientId".into(), self.client_id.to_string().into());
            f.insert("sessionId".into(), self.session.id.to_string().into());
            f.insert("replayed".into(), replayed.into());
            Event::Resumed(f)
        });
    }

    pub(super) fn end(&mut self, client_close: Option<u16>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(slot) = self.claim.take() {
            if let Some(session) = slot.finish() {
                self.took_over(session, 0);
            }
        }
        if let Some(auth) = &mut self.auth {
            auth.stop_tasks();
        }
        let hub = &self.hub;
        hub.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        let server_close = self.outbox.close_request();
        let fate = match (&server_close, client_close) {
            (Some(req), _) => req.fate,
            // A clean close (a tab closing sends 1001) ends membership at once; 4000
            // is a client that stopped hearing us and will resume.
            (None, Some(close::HEARTBEAT_TIMEOUT) | None) => Fate::Away,
            (None, Some(_)) => Fate::End,
        };
        // Closes the outbox for good, so nothing is queued for a dead connection.
        self.outbox.close(close::ABNORMAL, "connection ended", fate);
        match fate {
            Fate::Away => hub.detach(&self.session, self.id),
            // Only while still attached here: a resume may have moved the session.
            Fate::End => hub.end_attached_session(&self.session, self.id, LeaveReason::Closed),
            Fate::Detached => {}
        }
        let code = server_close
            .map(|c| c.code)
            .or(client_close)
            .unwrap_or(close::ABNORMAL);
        hub.emit(|| {
            let mut f = Fields::new();
            f.insert("clientId".into(), self.client_id.to_string().into());
            f.insert("sessionId".into(), self.session.id.to_string().into());
            f.insert("code".into(), code.into());
            Event::Disconnected(f)
        });
    }
}

/// Room-wide copies get `"seq":N,` prefixed per receiver: at most this many bytes.
const MAX_SEQ_STAMP: usize = 28;

/// The forwarded copy of a client message: its fields in order, without the
/// client's own `from`/`seq`/`id` (every duplicate of them), plus the stamped `from`.
fn forward_body(msg: &ClientMessage<'_>, seq: Option<u64>, from: &str, room_id: &str) -> String {
    let len: usize = msg
        .entries
        .0
        .iter()
        .map(|(k, v)| k.0.len() + v.get().len() + 4)
        .sum();
    let mut w = ObjectWriter::with_capacity(len + from.len() + room_id.len() + 96);
    if let Some(seq) = seq {
        w.u64("seq", seq);
    }
    w.str("type", msg.kind.as_str());
    let is_chat = msg.kind == MsgType::Chat;
    for (k, v) in &msg.entries.0 {
        match &*k.0 {
            "type" | "from" | "seq" | "id" => {}
            "timestamp" if is_chat => {}
            key => {
                w.raw(key, v.get());
            }
        }
    }
    if msg.room_id.is_none() {
        w.str("roomId", room_id);
    }
    if is_chat {
        w.u64("timestamp", now_millis());
    }
    w.str("from", from);
    w.finish()
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
