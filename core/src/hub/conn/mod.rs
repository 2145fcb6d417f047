//! One client connection as the hub sees it: the [`Connection`] a transport
//! drives, how frames are parsed, rate-limited and dispatched to the handlers of
//! this folder (`join`, `relay`, `resume`, `auth`), and how the session is
//! settled when the connection ends.

mod auth;
mod join;
mod relay;
mod resume;
mod state;
mod url_join;

pub(crate) use join::{join_session, JoinArgs};
pub use state::ConnectInfo;
use state::{lock_core, ConnCore};

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::away::AwayKey;
use super::outbox::{Fate, Outbox};
use super::rate::{RateLimiter, Verdict};
use super::resume_token::ResumeToken;
use super::session::{Attached, Session};
use super::{random_id, Hub};
use crate::auth::Identity;
use crate::error::ErrorCode;
use crate::event::{Event, Fields};
use crate::protocol::json::Raw;
use crate::protocol::{
    close, outbound, parse_client_message_with, ClientMessage, Frame, LeaveReason, MsgType,
};
use state::{Accepted, Refusal};

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
}

/// The `clientId` of connection `id`. Derived, not kept: an idle connection
/// does not hold a string for it.
fn client_id_of(id: u64) -> String {
    format!("c{id}")
}

impl Hub {
    /// Attaches a new connection with a fresh session; its `connected` message is
    /// already queued in the outbox. See [`ConnectInfo`] for authentication.
    pub fn connect(&self, info: ConnectInfo) -> Connection {
        let hub = &self.inner;
        let id = hub.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::with_policy(hub.outbox_policy.clone()));
        let session = Arc::new(Session::new(
            random_id().into(),
            ResumeToken::random(),
            hub.replay_bounds(),
            Attached {
                conn_id: id,
                outbox: outbox.clone(),
            },
        ));
        hub.insert_session(&session);
        let token = session.resume_token.to_string();
        if let Some(bp) = hub.backplane() {
            session
                .lock()
                .set_mirror(Arc::downgrade(&session), bp.clone());
            bp.session_opened(&session.id, &token);
        }
        hub.metrics.connections.fetch_add(1, Ordering::Relaxed);
        hub.metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let client_id = client_id_of(id);
        outbox.push(Frame::from(outbound::connected(
            &client_id,
            &session.id,
            &token,
            hub.config.heartbeat_interval.as_millis() as u64,
        )));
        hub.emit(|| {
            let mut f = Fields::new();
            f.insert("clientId".into(), client_id.into());
            f.insert("sessionId".into(), session.id.to_string().into());
            f.insert("ip".into(), info.ip.map(|ip| ip.to_string()).into());
            Event::Connected(f)
        });
        // Admitted just as a drain began: the drain's sweep may have missed it.
        if hub.draining.load(Ordering::Acquire) {
            session.deliver(&hub.draining_body());
            outbox.close(close::GOING_AWAY, "Server shutting down", Fate::Away);
        }
        let rate = RateLimiter::new(hub.rate_limit(), Instant::now());
        let core = Arc::new(Mutex::new(ConnCore {
            hub: hub.clone(),
            id,
            outbox: outbox.clone(),
            session,
            rate,
            pristine: true,
            finished: false,
            claim: None,
            auth: None,
            url_join: None,
            ip_key: info
                .ip
                .map(|ip| crate::proxy::ip_key(ip, hub.config.ipv6_prefix)),
        }));
        let join = info.join.clone();
        if hub.auth.is_on() {
            ConnCore::start_auth(&core, info);
        }
        if let Some(join) = join {
            ConnCore::open_url_join(&core, join);
        }
        Connection { core, outbox }
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
    pub fn client_id(&self) -> String {
        self.core().client_id()
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

    /// Answers a frame that could not be decoded (bad MessagePack) like a frame
    /// that is not JSON: `invalid-json`, under the rate limit.
    pub fn reject_frame(&mut self, why: &str) {
        let mut core = self.core();
        core.hub
            .metrics
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        core.hub.metrics.message_in(None);
        if !core.outbox.is_closing() && core.allowed(None) {
            core.send_error(ErrorCode::InvalidJson, why, None);
        }
    }

    /// The replay age rule, run on every liveness tick: see
    /// [`SessionState::expire_delivered`](crate::hub::session::SessionState).
    /// Times are wrapping milliseconds (`edge::conn`'s clock).
    pub(crate) fn expire_replay(&self, now_ms: u32, age_ms: u32) {
        let session = self.core().session.clone();
        session.lock().expire_delivered(now_ms, age_ms);
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
        let msg = match parse_client_message_with(text, &self.hub.app_types) {
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
        let routed = matches!(
            msg.kind,
            MsgType::Offer
                | MsgType::Answer
                | MsgType::Candidate
                | MsgType::Message
                | MsgType::Chat
                | MsgType::App
        );
        // One clock read serves the rate limit and the routing latency.
        let now = routed.then(Instant::now);
        if msg.kind != MsgType::Ack && !self.allowed_at(msg.id, now) {
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
        // A held URL join gives way to `resume` only: any other message finds
        // the session in its room.
        if self.url_join.is_some()
            && !matches!(msg.kind, MsgType::Resume | MsgType::Ack | MsgType::Ping)
        {
            self.url_join_now();
        }
        let outcome = self.dispatch(&msg);
        if let Some(started) = now {
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
        if msg.kind == MsgType::Resume && self.url_join.is_some() && self.claim.is_none() {
            // A resume makes the connection non-pristine only when it succeeded.
            self.settle_url_join(!self.pristine);
        }
    }

    /// Applies the rate limit; `false` means drop the message. The one
    /// `rate-limited` error per second names the dropped message's `id`.
    pub(super) fn allowed(&mut self, id: Option<Raw<'_>>) -> bool {
        self.allowed_at(id, None)
    }

    /// [`ConnCore::allowed`] at `now`, when the caller has read the clock already.
    fn allowed_at(&mut self, id: Option<Raw<'_>>, now: Option<Instant>) -> bool {
        let Some(rate) = &mut self.rate else {
            return true;
        };
        match rate.check(now.unwrap_or_else(Instant::now), self.hub.rate_limit()) {
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

    pub(super) fn dispatch(&mut self, msg: &ClientMessage<'_>) -> Result<Accepted, Refusal> {
        let now = |r: Result<(), Refusal>| r.map(|()| Accepted::Now);
        now(match msg.kind {
            // Handled before dispatch (`auth_message`).
            MsgType::Auth => Ok(()),
            MsgType::Ack => {
                self.session.lock().ack(msg.seq.unwrap_or(0));
                Ok(())
            }
            MsgType::Ping => {
                let timestamp = msg.raw_field("timestamp").ok().flatten();
                self.reply(outbound::pong(timestamp));
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
            | MsgType::Chat
            | MsgType::App => {
                self.pristine = false;
                return self.relay(msg);
            }
        })
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
        self.drop_url_join();
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
            Fate::Away => {
                let ip = self.ip_key.map(AwayKey::Ip);
                let user = self
                    .identity()
                    .map(|i| AwayKey::User(i.user_id.as_str().into()));
                hub.detach(&self.session, self.id, ip.into_iter().chain(user).collect());
            }
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
            f.insert("clientId".into(), self.client_id().into());
            f.insert("sessionId".into(), self.session.id.to_string().into());
            f.insert("code".into(), code.into());
            Event::Disconnected(f)
        });
    }
}
