//! `switchboard_server_config`: every option of the Rust `ServerBuilder`, set
//! from C, checked, and turned into the core's `ServerConfig` at start.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use sb::{AuthConfig, JwtConfig, JwtKey, ServerConfig, TlsConfig, TurnConfig};
use tokio::runtime::Runtime;

use crate::auth::CAuthHook;
use crate::event::{switchboard_event_callback, EventCallbackFn};
use crate::guard::{self, count, millis, set, string, with_mut, FfiError, FfiResult, UserData};
use crate::switchboard_result;

/// A server configuration being built: the protocol's defaults until set. Made
/// by `switchboard_server_config_new`, consumed by `switchboard_server_start`
/// (or freed with `switchboard_server_config_free`). Not thread-safe: one
/// thread at a time.
#[derive(Debug)]
pub struct switchboard_server_config {
    pub(crate) core: ServerConfig,
    pub(crate) worker_threads: usize,
    pub(crate) tokens: HashMap<String, String>,
    pub(crate) jwt_key: Option<JwtKey>,
    pub(crate) jwt_audience: Option<String>,
    pub(crate) jwt_issuer: Option<String>,
    pub(crate) jwt_leeway: Option<Duration>,
    pub(crate) auth_callback: Option<(
        unsafe extern "C" fn(*mut c_void, *mut crate::switchboard_auth_request),
        UserData,
    )>,
    pub(crate) tls: (Option<String>, Option<String>),
    pub(crate) turn_secret: Option<String>,
    pub(crate) turn_urls: Vec<String>,
    pub(crate) turn_ttl: Duration,
    pub(crate) event_callback: Option<(EventCallbackFn, UserData)>,
}

impl Default for switchboard_server_config {
    fn default() -> Self {
        switchboard_server_config {
            core: ServerConfig::default(),
            worker_threads: 2,
            tokens: HashMap::new(),
            jwt_key: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway: None,
            auth_callback: None,
            tls: (None, None),
            turn_secret: None,
            turn_urls: Vec::new(),
            turn_ttl: Duration::from_secs(3600),
            event_callback: None,
        }
    }
}

impl switchboard_server_config {
    /// The core configuration with auth, TLS and TURN composed, or why not.
    pub(crate) fn build(&mut self, runtime: &Runtime) -> FfiResult<ServerConfig> {
        let mut core = std::mem::take(&mut self.core);
        let modes = [
            !self.tokens.is_empty(),
            self.jwt_key.is_some(),
            self.auth_callback.is_some(),
        ];
        if modes.iter().filter(|on| **on).count() > 1 {
            return Err(FfiError::config(
                "configure one way to authenticate: static tokens, a JWT key, or an auth callback",
            ));
        }
        let jwt_extras =
            self.jwt_audience.is_some() || self.jwt_issuer.is_some() || self.jwt_leeway.is_some();
        core.auth = if let Some(key) = self.jwt_key.take() {
            let mut jwt = match key {
                JwtKey::Secret(s) => JwtConfig::hs256(s),
                JwtKey::PublicKeyPem(p) => JwtConfig::public_key_pem(p),
            };
            jwt.audience = self.jwt_audience.take();
            jwt.issuer = self.jwt_issuer.take();
            if let Some(l) = self.jwt_leeway {
                jwt.leeway = l;
            }
            AuthConfig::Jwt(jwt)
        } else if jwt_extras {
            return Err(FfiError::config(
                "JWT audience, issuer or leeway set without a JWT secret or public key",
            ));
        } else if let Some((callback, userdata)) = self.auth_callback {
            AuthConfig::Hook(Arc::new(CAuthHook {
                callback,
                userdata,
                runtime: runtime.handle().clone(),
                timeout: core.auth_timeout,
            }))
        } else if !self.tokens.is_empty() {
            AuthConfig::Tokens(std::mem::take(&mut self.tokens))
        } else {
            AuthConfig::Off
        };
        core.tls = match self.tls.clone() {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert_path: cert.into(),
                key_path: key.into(),
            }),
            _ => None,
        };
        core.turn = match (self.turn_secret.take(), self.turn_urls.is_empty()) {
            (Some(secret), false) => Some(TurnConfig {
                secret,
                urls: std::mem::take(&mut self.turn_urls),
                ttl: self.turn_ttl,
            }),
            (None, true) => None,
            (Some(_), true) => {
                return Err(FfiError::config("TURN secret set without any TURN URL"))
            }
            (None, false) => return Err(FfiError::config("TURN URLs set without a TURN secret")),
        };
        Ok(core)
    }
}

/// A new configuration with the protocol's defaults (listen `127.0.0.1:8080`,
/// path `/ws`, the limits of the README's table, auth off, 2 worker threads).
/// The caller owns it: pass it to `switchboard_server_start` (which consumes
/// it) or free it with `switchboard_server_config_free`. NULL only if the
/// library panicked.
#[no_mangle]
pub extern "C" fn switchboard_server_config_new() -> *mut switchboard_server_config {
    guard::guard_or(std::ptr::null_mut(), || Ok(Box::into_raw(Box::default())))
}

/// Frees a configuration that was not passed to `switchboard_server_start`.
/// NULL is allowed.
///
/// # Safety
/// `cfg` is NULL or a configuration the caller owns, not freed or consumed before.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_free(cfg: *mut switchboard_server_config) {
    guard::guard_void(|| {
        if !cfg.is_null() {
            // SAFETY: made by `Box::into_raw` in `switchboard_server_config_new`.
            drop(unsafe { Box::from_raw(cfg) });
        }
    });
}

/// A setter that adds to a list.
pub(crate) fn push<T>(list: &mut Vec<T>, value: T) -> FfiResult<()> {
    list.push(value);
    Ok(())
}

/// Address to bind, `host:port` (port 0 picks a free one; default `127.0.0.1:8080`).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `listen` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_listen(
    cfg: *mut switchboard_server_config,
    listen: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(listen, "listen") };
    with_mut(cfg, "cfg", |c| set(&mut c.core.listen, value?))
}

/// WebSocket upgrade paths, comma-separated (default `/ws`): fixed paths
/// (`/ws`, `/`) or templates whose `{roomId}`/`{userId}` segments join that
/// room at connect (`/signaling/{roomId}/{userId}`). Checked at start.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_path(
    cfg: *mut switchboard_server_config,
    path: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(path, "path") };
    with_mut(cfg, "cfg", |c| set(&mut c.core.path, value?))
}

/// Largest accepted message in bytes (default 65536, at least 256); bigger
/// frames close the connection with 1009.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_message_bytes(
    cfg: *mut switchboard_server_config,
    bytes: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_message_bytes,
            count(bytes, "max_message_bytes")?,
        )
    })
}

/// Server-wide connection limit (default 0 = unlimited); over it upgrades get 503.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_conns(
    cfg: *mut switchboard_server_config,
    conns: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.max_conns, count(conns, "max_conns")?)
    })
}

/// Connections per client IP (default 20, 0 = unlimited); over it upgrades get 429.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_conns_per_ip(
    cfg: *mut switchboard_server_config,
    conns: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_conns_per_ip,
            count(conns, "max_conns_per_ip")?,
        )
    })
}

/// Peers per room (default 0 = unlimited); a join past it gets `room-full`.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_room_size(
    cfg: *mut switchboard_server_config,
    peers: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.max_room_size, count(peers, "max_room_size")?)
    })
}

/// Rooms one session may be in at once (default 16, at least 1).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_rooms_per_session(
    cfg: *mut switchboard_server_config,
    rooms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_rooms_per_session,
            count(rooms, "max_rooms_per_session")?,
        )
    })
}

/// Rate limit burst per connection, in messages (default 50).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_rate_limit_burst(
    cfg: *mut switchboard_server_config,
    messages: u32,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.core.rate_limit_burst, messages))
}

/// Sustained messages per second per connection (default 20, 0 = no rate limit).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_rate_limit_rps(
    cfg: *mut switchboard_server_config,
    per_second: u32,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.core.rate_limit_rps, per_second))
}

/// WebSocket Ping interval in milliseconds (default 30000, positive).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_heartbeat_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.heartbeat_interval, millis(ms))
    })
}

/// Silence allowed after the ping interval before a connection is dropped, in
/// milliseconds (default 10000, positive).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_heartbeat_timeout_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.heartbeat_timeout, millis(ms))
    })
}

/// How long a lost session can be resumed, in milliseconds (default 20000).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_resume_window_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.core.resume_window, millis(ms)))
}

/// Replay buffer per session, in messages (default 256, positive).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_replay_buffer_messages(
    cfg: *mut switchboard_server_config,
    messages: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.replay_buffer_messages,
            count(messages, "replay_buffer_messages")?,
        )
    })
}

/// Replay buffer per session, in bytes (default 262144, positive).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_replay_buffer_bytes(
    cfg: *mut switchboard_server_config,
    bytes: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.replay_buffer_bytes,
            count(bytes, "replay_buffer_bytes")?,
        )
    })
}

/// Outbound queue per connection in bytes (default 1048576; at least the replay
/// buffer plus one message); past it the connection closes with 1008.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_outbound_queue_bytes(
    cfg: *mut switchboard_server_config,
    bytes: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.outbound_queue_bytes,
            count(bytes, "outbound_queue_bytes")?,
        )
    })
}

/// Adds a browser origin to the allow-list (`https://app.example.com`). With no
/// origin added, every origin may connect (a warning is logged at start).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `origin` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_add_allowed_origin(
    cfg: *mut switchboard_server_config,
    origin: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(origin, "origin") };
    with_mut(cfg, "cfg", |c| push(&mut c.core.allowed_origins, value?))
}

/// Adds one of the application's own message types (`hangup`, `mute`, …):
/// relayed like `message`, with `from` stamped. Checked at start (a protocol
/// type or a bad name is `SWITCHBOARD_RESULT_CONFIG`).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_add_app_type(
    cfg: *mut switchboard_server_config,
    name: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(name, "name") };
    with_mut(cfg, "cfg", |c| push(&mut c.core.app_types, value?))
}

/// Turns on the operator API (`/api/v1`) and the admin page (`/admin`):
/// requests carry `Authorization: Bearer <key>`. At least 16 characters
/// (checked at start).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `key` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_api_key(
    cfg: *mut switchboard_server_config,
    key: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(key, "key") };
    with_mut(cfg, "cfg", |c| {
        c.core.api_key = Some(sb::config::ApiKey::new(value?));
        Ok(())
    })
}

/// Longest wait for an HTTP request head, in milliseconds (default 10000).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_handshake_timeout_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.handshake_timeout, millis(ms))
    })
}

/// Longest graceful drain in `switchboard_server_stop`, in milliseconds
/// (default 10000); then the remaining connections are cut.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_drain_timeout_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.core.drain_timeout, millis(ms)))
}

/// Upper bound of the reconnect delay suggested to clients in `draining`, in
/// milliseconds (default 5000).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_drain_retry_after_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.drain_retry_after, millis(ms))
    })
}

/// Events buffered per reader (default 1024, positive): the pull queue and
/// each callback's queue. A reader further behind loses the oldest events
/// (counted by `switchboard_server_events_missed`).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_event_buffer(
    cfg: *mut switchboard_server_config,
    events: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.event_buffer, count(events, "event_buffer")?)
    })
}

/// Threads of this server's runtime (default 2, at least 1).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_worker_threads(
    cfg: *mut switchboard_server_config,
    threads: u32,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        if threads == 0 {
            return Err(FfiError::config("worker_threads must be at least 1"));
        }
        c.worker_threads = threads as usize;
        Ok(())
    })
}

/// Serve the demo call page at `/` and the browser client at `/switchboard.js`.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_demo(
    cfg: *mut switchboard_server_config,
    on: bool,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        c.core.demo = on;
        c.core.serve_client |= on;
        Ok(())
    })
}

/// Serve the browser client at `/switchboard.js` (without the demo page).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_serve_client(
    cfg: *mut switchboard_server_config,
    on: bool,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.core.serve_client, on))
}

/// A push callback registered before start, so it sees every event from the
/// first one (see `switchboard_server_set_event_callback`). `userdata` must stay
/// valid until `switchboard_server_free` returns. NULL `callback` removes it.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `callback` is NULL or a function that
/// may be called from a library thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_event_callback(
    cfg: *mut switchboard_server_config,
    callback: switchboard_event_callback,
    userdata: *mut c_void,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.event_callback,
            callback.map(|cb| (cb, UserData(userdata))),
        )
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
