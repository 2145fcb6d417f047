//! Calling JS from the core: the server's auth hook and the client's token
//! provider, each a weak threadsafe function (it never keeps the process alive)
//! that is released by `stop()` / `close()`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use napi::bindgen_prelude::Promise;
use napi::threadsafe_function::ThreadsafeFunction;
use serde_json::{json, Value};
use switchboard::auth::AuthFuture;
use switchboard::{AuthHook, AuthRequest, Identity};

/// A JS function `(json: string) => Promise<string | null>`, called with its
/// argument as is (not error-first), weak, with an unbounded napi queue (each
/// call is one connection attempt, already bounded by the server's limits).
pub(crate) type JsAsyncFn =
    ThreadsafeFunction<String, Promise<Option<String>>, String, napi::Status, false, true>;

/// A threadsafe function that can be released early (on `stop()` / `close()`),
/// even while the core still holds the hook: later calls then fail.
#[derive(Clone)]
pub(crate) struct Releasable(Arc<Mutex<Option<Arc<JsAsyncFn>>>>);

impl std::fmt::Debug for Releasable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Releasable(..)")
    }
}

impl Releasable {
    pub(crate) fn new(f: JsAsyncFn) -> Self {
        Releasable(Arc::new(Mutex::new(Some(Arc::new(f)))))
    }

    /// Drops our reference; the function is released once no call is in flight.
    pub(crate) fn release(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Calls the function and awaits its promise. `None` when released, when the
    /// call failed, or when the JS side resolved with `null`.
    pub(crate) async fn call(&self, arg: String) -> Result<Option<String>, String> {
        let f = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let f = f.ok_or_else(|| "released".to_owned())?;
        let promise = f.call_async(arg).await.map_err(|e| e.reason.clone())?;
        drop(f);
        promise.await.map_err(|e| e.reason.clone())
    }
}

/// The server's auth hook: the TypeScript layer wraps the user's function so it
/// always resolves (a throw or rejection refuses and is reported there), with the
/// identity as JSON text or `null`. The core awaits it with its auth timeout.
#[derive(Debug, Clone)]
pub(crate) struct JsAuthHook(pub(crate) Releasable);

impl AuthHook for JsAuthHook {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        let f = self.0.clone();
        Box::pin(async move {
            let arg = json!({
                "token": request.token,
                "origin": request.origin,
                "ip": request.ip.map(|ip| ip.to_string()),
                "path": request.path,
            })
            .to_string();
            match f.call(arg).await {
                Ok(Some(text)) => parse_identity(&text),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "auth hook call failed; refusing");
                    None
                }
            }
        })
    }
}

/// `{"userId": "...", "rooms"?: [...], "metadata"?: any, "expiresAt"?: ms}`.
pub(crate) fn parse_identity(text: &str) -> Option<Identity> {
    let v: Value = serde_json::from_str(text).ok()?;
    let user_id = v.get("userId")?.as_str()?.to_owned();
    let mut id = Identity::new(user_id);
    id.rooms = v.get("rooms").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    });
    id.metadata = v.get("metadata").filter(|m| !m.is_null()).cloned();
    id.expires_at = v
        .get("expiresAt")
        .and_then(Value::as_f64)
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms as u64));
    Some(id)
}
