//! Authentication of one connection: the `auth` message, handshake tokens, the
//! first-message timeout, refresh and expiry (4401), and the frames that wait
//! while a host hook decides.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::state::{lock_core, refuse, ConnAuth, ConnCore, ConnectInfo, Pending, Refusal};
use crate::auth::{AuthError, AuthRequest, Check, Identity};
use crate::error::ErrorCode;
use crate::hub::auth::run_hook;
use crate::hub::outbox::Fate;
use crate::protocol::json::{OwnedRaw, Raw};
use crate::protocol::{close, ClientMessage, MsgType};

impl ConnCore {
    /// Sets up auth for a new connection (auth is on).
    pub(crate) fn start_auth(core: &Arc<Mutex<ConnCore>>, info: ConnectInfo) {
        let mut c = lock_core(core);
        c.auth = Some(Box::new(ConnAuth {
            me: Arc::downgrade(core),
            origin: info.origin,
            ip: info.ip,
            path: info.path,
            identity: None,
            generation: 0,
            pending: None,
            timer: None,
            hook: None,
        }));
        if let Some(identity) = info.identity {
            c.set_identity(identity);
            return;
        }
        c.arm_auth_timeout();
        if let Some(token) = info.token {
            c.begin_check(token, None);
        }
    }

    pub(super) fn auth_mut(&mut self) -> &mut ConnAuth {
        self.auth
            .as_deref_mut()
            .expect("auth state exists while auth is on")
    }

    /// Before authentication only `auth`, `ping` and `ack` are served.
    pub(super) fn require_auth(&self, kind: MsgType) -> Result<(), Refusal> {
        match &self.auth {
            Some(a) if a.identity.is_none() && !matches!(kind, MsgType::Ping | MsgType::Ack) => {
                refuse(
                    ErrorCode::Unauthorized,
                    "authenticate first: send `auth` with a token",
                )
            }
            _ => Ok(()),
        }
    }

    /// An `auth` message: authenticates, or refreshes the token of an
    /// authenticated connection. Answers itself (ack / error / close 4401).
    pub(super) fn auth_message(&mut self, msg: &ClientMessage<'_>, id: Option<Raw<'_>>) {
        if self.auth.is_none() {
            // Auth is off: nothing to check, the message is simply accepted.
            self.accepted(id);
            return;
        }
        match msg.str_field("token") {
            Ok(Some(token)) => self.begin_check(token.into_owned(), id.map(Raw::to_owned_raw)),
            _ => self.send_error(
                ErrorCode::InvalidMessage,
                "`auth` needs a string `token`",
                id,
            ),
        }
    }

    pub(super) fn accepted(&self, id: Option<Raw<'_>>) {
        if let Some(id) = id {
            self.session.lock().remember_id(id.get());
            self.send_ack(id);
        }
    }

    /// Checks `token`: at once (static, JWT) or on a task (hook), queueing the
    /// frames that arrive meanwhile.
    pub(super) fn begin_check(&mut self, token: String, id: Option<OwnedRaw>) {
        let auth = self.auth_mut();
        let request = AuthRequest {
            token: Some(token),
            origin: auth.origin.clone(),
            ip: auth.ip,
            path: auth.path.clone(),
        };
        match self.hub.auth.check(request) {
            Check::Done(result) => self.auth_result(result, id.as_ref().map(OwnedRaw::as_raw)),
            Check::Hook(fut) => {
                let limit = self.hub.config.auth_timeout;
                let auth = self.auth_mut();
                let me = auth.me.clone();
                auth.pending = Some(Pending::default());
                let task = self.hub.spawn(async move {
                    let result = run_hook(fut, limit).await;
                    if let Some(core) = me.upgrade() {
                        lock_core(&core).hook_answered(result, id);
                    }
                });
                if let Some(old) = self.auth_mut().hook.replace(task) {
                    old.abort();
                }
            }
        }
    }

    pub(super) fn hook_answered(
        &mut self,
        result: Result<Identity, AuthError>,
        id: Option<OwnedRaw>,
    ) {
        let Some(auth) = self.auth.as_deref_mut() else {
            return;
        };
        let Some(pending) = auth.pending.take() else {
            return; // the connection ended meanwhile
        };
        auth.hook = None;
        self.auth_result(result, id.as_ref().map(OwnedRaw::as_raw));
        // The frames that waited, in order; one may start another hook check,
        // which then queues the rest again.
        let mut frames = pending.frames;
        while let Some(text) = frames.pop_front() {
            if self.outbox.is_closing() {
                return;
            }
            if let Some(p) = &mut self.auth_mut().pending {
                p.bytes += text.len() + frames.iter().map(|f| f.len()).sum::<usize>();
                p.frames.push_back(text);
                p.frames.extend(frames);
                return;
            }
            self.process(&text);
        }
    }

    /// Applies the outcome of a check.
    pub(super) fn auth_result(&mut self, result: Result<Identity, AuthError>, id: Option<Raw<'_>>) {
        let current = self.identity().map(|i| i.user_id.clone());
        match (result, current) {
            (Ok(identity), Some(user)) if identity.user_id != user => {
                self.send_error(
                    ErrorCode::Forbidden,
                    &format!(
                        "the new token is for `{}`, this connection is `{user}`",
                        identity.user_id
                    ),
                    id,
                );
            }
            (Ok(identity), _) => {
                self.set_identity(identity);
                self.accepted(id);
            }
            (Err(e), current) => {
                self.hub.metrics.auth_failed(&e);
                self.send_error(ErrorCode::Unauthorized, &e.to_string(), id);
                // A failed refresh leaves the current token in force until it expires.
                if current.is_none() {
                    self.outbox
                        .close(close::UNAUTHORIZED, "authentication failed", Fate::End);
                }
            }
        }
    }

    /// Adopts an identity (first auth or refresh) and arms its expiry.
    pub(super) fn set_identity(&mut self, identity: Identity) {
        let expires_in = identity
            .expires_at
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
        let auth = self.auth_mut();
        auth.identity = Some(identity);
        auth.generation += 1;
        if let Some(old) = auth.timer.take() {
            old.abort();
        }
        if let Some(after) = expires_in {
            self.arm(after, Self::expired);
        }
        {
            // The session carries its user from now on, so the host can find it
            // (`Hub::join`) before the client joins anything.
            let user_id = &self.auth_mut().identity.as_ref().expect("just set").user_id;
            let user_id: std::sync::Arc<str> = user_id.as_str().into();
            let mut st = self.session.lock();
            st.user_id.get_or_insert(user_id);
        }
        // A URL join waits for the identity that decides the user and the rooms.
        self.try_url_join();
    }

    pub(super) fn arm_auth_timeout(&mut self) {
        let after = self.hub.config.auth_timeout;
        self.arm(after, Self::auth_timed_out);
    }

    /// Runs `fire` on this connection after `after`, unless its identity changed
    /// or it ended meanwhile.
    pub(super) fn arm(&mut self, after: Duration, fire: fn(&mut ConnCore)) {
        let auth = self.auth_mut();
        let (me, generation) = (auth.me.clone(), auth.generation);
        let task = self.hub.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(core) = me.upgrade() {
                let mut c = lock_core(&core);
                let current = c.auth.as_ref().is_some_and(|a| a.generation == generation);
                if current && !c.finished {
                    fire(&mut c);
                }
            }
        });
        self.auth_mut().timer = Some(task);
    }

    pub(super) fn auth_timed_out(&mut self) {
        let auth = self.auth_mut();
        // A hook still checking is bounded by its own timeout.
        if auth.identity.is_some() || auth.pending.is_some() {
            return;
        }
        self.hub.metrics.auth_failed(&AuthError::Timeout);
        self.send_error(
            ErrorCode::Unauthorized,
            "no `auth` message within the auth timeout",
            None,
        );
        self.outbox
            .close(close::UNAUTHORIZED, "authentication timed out", Fate::End);
    }

    /// The token expired without a refresh: the connection closes with 4401 and its
    /// session ends (no resume with an expired credential).
    pub(super) fn expired(&mut self) {
        self.hub.metrics.auth_failed(&AuthError::Expired);
        self.send_error(ErrorCode::Unauthorized, "the token has expired", None);
        self.outbox
            .close(close::UNAUTHORIZED, "token expired", Fate::End);
    }
}
