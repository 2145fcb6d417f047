//! Authentication inside the hub, for every transport alike: checking credentials
//! (`Hub::authenticate`), the per-connection auth state, the first-message `auth`
//! timeout, refresh, and the expiry close (4401) — timers the hub owns, acting
//! through the connection's outbox, so a binding's transport needs nothing extra.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use serde_json::value::RawValue;
use tokio::task::AbortHandle;

use super::conn::{lock_core, refuse, ConnCore, ConnectInfo, Refusal};
use super::outbox::{Fate, Outbox};
use super::{Hub, HubInner};
use crate::auth::{AuthError, AuthFuture, AuthRequest, Check, Identity};
use crate::error::ErrorCode;
use crate::protocol::{close, ClientMessage, MsgType};

/// Frames queued while an auth hook checks an `auth` message. At either bound the
/// connection is closed with 1008: a client has no reason to send that much
/// before it knows whether it is admitted.
const PENDING_MESSAGES: usize = 32;
const PENDING_BYTES: usize = 256 * 1024;

/// Longest userId a hook may return, as for `join.userId`.
const MAX_USER_ID_BYTES: usize = 256;

impl Hub {
    /// Whether connections must authenticate (an auth mode is configured).
    pub fn auth_required(&self) -> bool {
        self.inner.auth.is_on()
    }

    /// Checks a credential with the configured mode: static table, JWT, or the
    /// host hook (awaited with `auth_timeout`; a panic or timeout refuses). Counts
    /// failures in the `auth_failures` metric. Fails with
    /// [`AuthError::Internal`] when auth is off.
    pub async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, AuthError> {
        let result = self.inner.check(request.clone()).await;
        if let Err(e) = &result {
            self.inner.metrics.auth_failed(e);
        }
        result
    }

    /// The decision for a WebSocket handshake, before the upgrade (PROTOCOL.md §2):
    /// - `Ok(Some(identity))`: authenticated; pass it in [`ConnectInfo::identity`];
    /// - `Ok(None)`: auth is off, or the request carried no token (and a hook, if
    ///   configured, did not admit it without one): upgrade, and the client must
    ///   send `auth` within `auth_timeout`;
    /// - `Err(_)`: refuse the upgrade with HTTP 401.
    ///
    /// A transport (a binding's own WebSocket server) does this:
    ///
    /// ```no_run
    /// # async fn accept(hub: switchboard::Hub, request: switchboard::AuthRequest) {
    /// use switchboard::hub::ConnectInfo;
    /// // request: the token from `?token=` / `Authorization` (see
    /// // `switchboard::auth::token_from_request`), origin, client IP, path.
    /// let identity = match hub.authenticate_handshake(&request).await {
    ///     Ok(identity) => identity,
    ///     Err(_) => return, // answer HTTP 401, no WebSocket
    /// };
    /// let mut conn = hub.connect(ConnectInfo {
    ///     ip: request.ip,
    ///     origin: request.origin.clone(),
    ///     path: request.path.clone(),
    ///     identity,
    ///     ..ConnectInfo::default()
    /// });
    /// // Then: every inbound text frame → `conn.handle_text(..)`; a write loop
    /// // drains `conn.outbox()` (frames, then the close the hub asks for);
    /// // at the end `conn.finish(client_close_code)`.
    /// conn.handle_text(r#"{"type":"join","roomId":"lobby"}"#);
    /// # }
    /// ```
    pub async fn authenticate_handshake(
        &self,
        request: &AuthRequest,
    ) -> Result<Option<Identity>, AuthError> {
        let verifier = &self.inner.auth;
        if !verifier.is_on() {
            return Ok(None);
        }
        if request.token.is_none() {
            if !verifier.is_hook() {
                return Ok(None);
            }
            // A hook may admit without a token (origin, address); a refusal here
            // is no failure yet: the client may still send `auth`.
            return Ok(self.inner.check(request.clone()).await.ok());
        }
        self.authenticate(request).await.map(Some)
    }
}

impl HubInner {
    /// One check, without metrics.
    async fn check(&self, request: AuthRequest) -> Result<Identity, AuthError> {
        match self.auth.check(request) {
            Check::Done(r) => r,
            Check::Hook(fut) => run_hook(fut, self.config.auth_timeout).await,
        }
    }

    /// Runs a future on the hub's runtime (captured at `Hub::new`, so hub calls
    /// from a binding's own threads work too).
    pub(super) fn spawn<F>(&self, fut: F) -> AbortHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match &self.runtime {
            Some(rt) => rt.spawn(fut).abort_handle(),
            None => tokio::spawn(fut).abort_handle(),
        }
    }
}

/// Awaits a hook with the timeout; its answer becomes an [`Identity`] or a refusal.
async fn run_hook(fut: AuthFuture, limit: Duration) -> Result<Identity, AuthError> {
    let answer = tokio::time::timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await;
    match answer {
        Err(_) => Err(AuthError::Timeout),
        Ok(Err(_)) => {
            tracing::error!("the auth hook panicked; refusing");
            Err(AuthError::Internal("the auth hook failed".into()))
        }
        Ok(Ok(None)) => Err(AuthError::Refused),
        Ok(Ok(Some(identity))) => {
            let n = identity.user_id.len();
            if n == 0 || n > MAX_USER_ID_BYTES {
                tracing::error!(len = n, "the auth hook returned an unusable userId");
                return Err(AuthError::Internal(
                    "invalid userId from the auth hook".into(),
                ));
            }
            if identity.expired_at(SystemTime::now()) {
                return Err(AuthError::Expired);
            }
            Ok(identity)
        }
    }
}

/// The auth state of one connection (only present while auth is on).
#[derive(Debug)]
pub(super) struct ConnAuth {
    /// The connection itself, for the hub's tasks (never keeps it alive).
    me: Weak<Mutex<ConnCore>>,
    origin: Option<String>,
    ip: Option<IpAddr>,
    path: String,
    pub(super) identity: Option<Identity>,
    /// Bumped whenever `identity` changes, so a timer that fires for an older one
    /// (aborted, but already past its last await) does nothing.
    generation: u64,
    /// Set while an auth hook checks an `auth`: later frames wait here, in order.
    pending: Option<Pending>,
    /// The auth-timeout timer, then the expiry timer.
    timer: Option<AbortHandle>,
    hook: Option<AbortHandle>,
}

#[derive(Debug, Default)]
struct Pending {
    frames: VecDeque<Box<str>>,
    bytes: usize,
}

impl ConnAuth {
    /// Sets up auth for a new connection (auth is on).
    pub(super) fn start(core: &Arc<Mutex<ConnCore>>, info: ConnectInfo) {
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

    /// Queues `text` while a hook check is pending; `false` when it should be
    /// handled now.
    pub(super) fn defer(&mut self, text: &str, outbox: &Outbox) -> bool {
        let Some(p) = &mut self.pending else {
            return false;
        };
        if p.frames.len() >= PENDING_MESSAGES || p.bytes + text.len() > PENDING_BYTES {
            outbox.close(
                close::POLICY,
                "too many messages while authenticating",
                Fate::End,
            );
            return true;
        }
        p.bytes += text.len();
        p.frames.push_back(text.into());
        true
    }

    /// The connection ended: no timer or hook answer may act on it any more.
    pub(super) fn stop_tasks(&mut self) {
        for task in [self.timer.take(), self.hook.take()].into_iter().flatten() {
            task.abort();
        }
        self.pending = None;
    }
}

impl ConnCore {
    fn auth_mut(&mut self) -> &mut ConnAuth {
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
    pub(super) fn auth_message(&mut self, msg: &ClientMessage<'_>, id: Option<&RawValue>) {
        if self.auth.is_none() {
            // Auth is off: nothing to check, the message is simply accepted.
            self.accepted(id);
            return;
        }
        match msg.str_field("token") {
            Ok(Some(token)) => self.begin_check(token.into_owned(), id.map(RawValue::to_owned)),
            _ => self.send_error(
                ErrorCode::InvalidMessage,
                "`auth` needs a string `token`",
                id,
            ),
        }
    }

    fn accepted(&self, id: Option<&RawValue>) {
        if let Some(id) = id {
            self.session.lock().remember_id(id.get());
            self.send_ack(id);
        }
    }

    /// Checks `token`: at once (static, JWT) or on a task (hook), queueing the
    /// frames that arrive meanwhile.
    fn begin_check(&mut self, token: String, id: Option<Box<RawValue>>) {
        let auth = self.auth_mut();
        let request = AuthRequest {
            token: Some(token),
            origin: auth.origin.clone(),
            ip: auth.ip,
            path: auth.path.clone(),
        };
        match self.hub.auth.check(request) {
            Check::Done(result) => self.auth_result(result, id.as_deref()),
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

    fn hook_answered(&mut self, result: Result<Identity, AuthError>, id: Option<Box<RawValue>>) {
        let Some(auth) = self.auth.as_deref_mut() else {
            return;
        };
        let Some(pending) = auth.pending.take() else {
            return; // the connection ended meanwhile
        };
        auth.hook = None;
        self.auth_result(result, id.as_deref());
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
    fn auth_result(&mut self, result: Result<Identity, AuthError>, id: Option<&RawValue>) {
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
    fn set_identity(&mut self, identity: Identity) {
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
    }

    fn arm_auth_timeout(&mut self) {
        let after = self.hub.config.auth_timeout;
        self.arm(after, Self::auth_timed_out);
    }

    /// Runs `fire` on this connection after `after`, unless its identity changed
    /// or it ended meanwhile.
    fn arm(&mut self, after: Duration, fire: fn(&mut ConnCore)) {
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

    fn auth_timed_out(&mut self) {
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
    fn expired(&mut self) {
        self.hub.metrics.auth_failed(&AuthError::Expired);
        self.send_error(ErrorCode::Unauthorized, "the token has expired", None);
        self.outbox
            .close(close::UNAUTHORIZED, "token expired", Fate::End);
    }
}
