//! Authentication inside the hub, for every transport alike: checking credentials
//! (`Hub::authenticate`), the per-connection auth state, the first-message `auth`
//! timeout, refresh, and the expiry close (4401) — timers the hub owns, acting
//! through the connection's outbox, so a binding's transport needs nothing extra.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::task::AbortHandle;

use super::{Hub, HubInner};
use crate::auth::{AuthError, AuthFuture, AuthRequest, Check, Identity};

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
    /// - `Ok(Some(identity))`: authenticated; pass it in [`ConnectInfo::identity`](crate::hub::ConnectInfo::identity);
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
pub(super) async fn run_hook(fut: AuthFuture, limit: Duration) -> Result<Identity, AuthError> {
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
