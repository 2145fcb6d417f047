//! The C authentication callback: a core `AuthHook` that runs the C function on
//! a blocking thread of the server's runtime (never on a thread that drives
//! sockets) and waits, up to the auth timeout, for the decision the C side gives
//! through the request handle, from that thread or any other, now or later.

use std::ffi::{c_char, c_void, CString};
use std::fmt;
use std::time::{Duration, SystemTime};

use sb::auth::AuthFuture;
use sb::{AuthHook, AuthRequest, Identity};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::guard::{self, c_string, FfiError, FfiResult, UserData};
use crate::switchboard_result;

/// A connection asking to be admitted. The callback receives it and owns it:
/// it must be completed exactly once, by `switchboard_auth_request_allow` or
/// `switchboard_auth_request_deny` (each frees it), from any thread, during the
/// callback or after it returned. A decision later than the server's auth
/// timeout counts as a refusal (the completion still frees the request).
pub struct switchboard_auth_request {
    token: Option<CString>,
    origin: Option<CString>,
    ip: Option<CString>,
    path: CString,
    reply: oneshot::Sender<Option<Identity>>,
}

impl fmt::Debug for switchboard_auth_request {
    // Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("switchboard_auth_request")
            .field("origin", &self.origin)
            .field("ip", &self.ip)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The authentication callback. It runs on one of the server runtime's blocking
/// threads (a pool of up to 512 threads that never drives sockets), so it may
/// block, e.g. on a database; several may run at once, so it must be
/// thread-safe. It decides by completing `request` (see
/// `switchboard_auth_request`), there or later from another thread. It must
/// return eventually: `switchboard_server_free` waits for running callbacks.
/// It is called at the handshake (the token from `?token=` or
/// `Authorization: Bearer`) and for each `auth` message; at a handshake without
/// a token the token is NULL, and a refusal then lets the client authenticate
/// with an `auth` message instead (within the auth timeout). It must not stop
/// or free its own server (both wait for the running auth callbacks).
pub type switchboard_auth_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request: *mut switchboard_auth_request)>;

/// The core hook around a C callback.
pub(crate) struct CAuthHook {
    pub(crate) callback: unsafe extern "C" fn(*mut c_void, *mut switchboard_auth_request),
    pub(crate) userdata: UserData,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) timeout: Duration,
}

impl AuthHook for CAuthHook {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        let (reply, decision) = oneshot::channel();
        let req = Box::new(switchboard_auth_request {
            token: request.token.as_deref().and_then(c_string),
            origin: request.origin.as_deref().and_then(c_string),
            ip: request
                .ip
                .map(|ip| c_string(&ip.to_string()).unwrap_or_default()),
            path: c_string(&request.path).unwrap_or_default(),
            reply,
        });
        let (callback, userdata) = (self.callback, self.userdata);
        // If the runtime is shutting down the closure is dropped unrun, and with
        // it the request: the decision channel closes and the connection is refused.
        drop(self.runtime.spawn_blocking(move || {
            // Rebinds the whole wrapper, so the closure captures `UserData` (Send).
            let userdata = userdata;
            // SAFETY: the C side registered this callback and userdata together
            // and documented both as callable from a blocking thread; the request
            // pointer is handed over, to be freed by allow/deny.
            unsafe { callback(userdata.0, Box::into_raw(req)) };
        }));
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, decision).await {
                Ok(Ok(identity)) => identity,
                Ok(Err(_)) => None,
                Err(_) => {
                    tracing::warn!(
                        ?timeout,
                        "the C auth callback did not decide in time; refused"
                    );
                    None
                }
            }
        })
    }
}

fn request_field(
    req: *const switchboard_auth_request,
    pick: impl Fn(&switchboard_auth_request) -> Option<&CString>,
) -> *const c_char {
    guard::read(req, "request", std::ptr::null(), |r| guard::c_ptr(pick(r)))
}

/// The token the client presented (query `?token=`, `Authorization: Bearer`, or
/// an `auth` message), or NULL when it sent none. Owned by `request`.
///
/// # Safety
/// `request` is NULL or a request not yet completed.
#[no_mangle]
pub unsafe extern "C" fn switchboard_auth_request_token(
    request: *const switchboard_auth_request,
) -> *const c_char {
    request_field(request, |r| r.token.as_ref())
}

/// The browser's `Origin` header, or NULL. Owned by `request`.
///
/// # Safety
/// `request` is NULL or a request not yet completed.
#[no_mangle]
pub unsafe extern "C" fn switchboard_auth_request_origin(
    request: *const switchboard_auth_request,
) -> *const c_char {
    request_field(request, |r| r.origin.as_ref())
}

/// The client's IP address as text (after trusted-proxy resolution), or NULL.
/// Owned by `request`.
///
/// # Safety
/// `request` is NULL or a request not yet completed.
#[no_mangle]
pub unsafe extern "C" fn switchboard_auth_request_ip(
    request: *const switchboard_auth_request,
) -> *const c_char {
    request_field(request, |r| r.ip.as_ref())
}

/// The request path (without the query string). Owned by `request`.
///
/// # Safety
/// `request` is NULL or a request not yet completed.
#[no_mangle]
pub unsafe extern "C" fn switchboard_auth_request_path(
    request: *const switchboard_auth_request,
) -> *const c_char {
    request_field(request, |r| Some(&r.path))
}

/// Admits the connection as `user_id`. Optional: `rooms_json`, a JSON array of
/// the rooms it may join (exact ids or `"prefix*"` patterns; NULL = any room);
/// `metadata_json`, any JSON the peers see as its `metadata` (NULL = none);
/// `expires_at_unix_ms`, when the credential expires (0 = never; an unrefreshed
/// connection is closed with 4401 then). Consumes and frees `request` whatever
/// the result: on a bad argument the connection is refused and the code says why.
///
/// # Safety
/// `request` is NULL or a request not yet completed; the strings are NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_auth_request_allow(
    request: *mut switchboard_auth_request,
    user_id: *const c_char,
    rooms_json: *const c_char,
    metadata_json: *const c_char,
    expires_at_unix_ms: u64,
) -> switchboard_result {
    guard::guard(|| {
        if request.is_null() {
            return Err(guard::null_arg("request"));
        }
        // SAFETY: made by `Box::into_raw` in `authenticate`, completed once.
        let request = unsafe { Box::from_raw(request) };
        // SAFETY: the strings are NULL or NUL-terminated (header contract).
        let identity = unsafe { identity(user_id, rooms_json, metadata_json, expires_at_unix_ms) };
        let admit = identity.as_ref().ok().cloned();
        // The server may have given up waiting (timeout): nothing to tell then.
        let _ = request.reply.send(admit);
        identity.map(drop)
    })
}

/// # Safety
/// As [`switchboard_auth_request_allow`].
unsafe fn identity(
    user_id: *const c_char,
    rooms_json: *const c_char,
    metadata_json: *const c_char,
    expires_at_unix_ms: u64,
) -> FfiResult<Identity> {
    // SAFETY: forwarded contract.
    let user_id = unsafe { guard::str_arg(user_id, "user_id") }?;
    if user_id.is_empty() {
        return Err(FfiError::new(
            switchboard_result::InvalidArgument,
            "user_id is empty",
        ));
    }
    let mut identity = Identity::new(user_id);
    if !rooms_json.is_null() {
        // SAFETY: forwarded contract.
        let rooms = unsafe { guard::json_arg(rooms_json, "rooms_json") }?;
        let rooms: Option<Vec<String>> = match rooms {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => None,
        };
        identity.rooms = Some(rooms.ok_or_else(|| {
            FfiError::new(
                switchboard_result::InvalidArgument,
                "rooms_json must be a JSON array of strings",
            )
        })?);
    }
    if !metadata_json.is_null() {
        // SAFETY: forwarded contract.
        identity.metadata = Some(unsafe { guard::json_arg(metadata_json, "metadata_json") }?);
    }
    if expires_at_unix_ms > 0 {
        identity.expires_at =
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(expires_at_unix_ms));
    }
    Ok(identity)
}

/// Refuses the connection (HTTP 401 or close 4401). Consumes and frees
/// `request`; NULL is allowed (nothing happens).
///
/// # Safety
/// `request` is NULL or a request not yet completed.
#[no_mangle]
pub unsafe extern "C" fn switchboard_auth_request_deny(request: *mut switchboard_auth_request) {
    guard::guard_void(|| {
        if !request.is_null() {
            // SAFETY: made by `Box::into_raw` in `authenticate`, completed once.
            let request = unsafe { Box::from_raw(request) };
            let _ = request.reply.send(None);
        }
    });
}
