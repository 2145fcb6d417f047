//! `switchboard_server_config`: every option of the Rust `ServerBuilder`, set
//! from C, checked, and turned into the core's `ServerConfig` at start.

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use sb::{AuthConfig, JwtConfig, JwtKey, ServerConfig, TlsConfig, TurnConfig};
use tokio::runtime::Runtime;

use crate::auth::{switchboard_auth_callback, CAuthHook};
use crate::event::{switchboard_event_callback, EventCallbackFn};
use crate::guard::{self, count, millis, set, string, with_mut, FfiError, FfiResult, UserData};
use crate::switchboard_result;

/// A server configuration being built: the protocol's defaults until set. Made
/// by `switchboard_server_config_new`, consumed by `switchboard_server_start`
/// (or freed with `switchboard_server_config_free`). Not thread-safe: one
/// thread at a time.
#[derive(Debug)]
pub struct switchboard_server_config {
    core: ServerConfig,
    pub(crate) worker_threads: usize,
    tokens: HashMap<String, String>,
    jwt_key: Option<JwtKey>,
    jwt_audience: Option<String>,
    jwt_issuer: Option<String>,
    jwt_leeway: Option<Duration>,
    auth_callback: Option<(
        unsafe extern "C" fn(*mut c_void, *mut crate::switchboard_auth_request),
        UserData,
    )>,
    tls: (Option<String>, Option<String>),
    turn_secret: Option<String>,
    turn_urls: Vec<String>,
    turn_ttl: Duration,
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
fn push<T>(list: &mut Vec<T>, value: T) -> FfiResult<()> {
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

/// WebSocket upgrade path (default `/ws`; must start with `/`).
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

/// Adds a static token: a client presenting `token` is `user_id`. Turns on
/// token authentication (one auth mode per server: tokens, JWT or a callback).
///
/// # Safety
/// `cfg` is NULL or a live configuration; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_add_auth_token(
    cfg: *mut switchboard_server_config,
    token: *const c_char,
    user_id: *const c_char,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        // SAFETY: header contract.
        let (token, user) = unsafe { (string(token, "token")?, string(user_id, "user_id")?) };
        if token.is_empty() || user.is_empty() {
            return Err(FfiError::config("token and user_id must not be empty"));
        }
        c.tokens.insert(token, user);
        Ok(())
    })
}

/// JWT authentication with HS256 and this shared secret.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `secret` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_jwt_secret(
    cfg: *mut switchboard_server_config,
    secret: *const c_char,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        // SAFETY: header contract.
        let secret = unsafe { string(secret, "secret") }?;
        if secret.is_empty() {
            return Err(FfiError::config("the JWT secret must not be empty"));
        }
        c.jwt_key = Some(JwtKey::Secret(secret.into_bytes()));
        Ok(())
    })
}

/// JWT authentication with RS256/ES256: the PEM public key itself.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `pem` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_jwt_public_key_pem(
    cfg: *mut switchboard_server_config,
    pem: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let pem = unsafe { string(pem, "pem") };
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.jwt_key,
            Some(JwtKey::PublicKeyPem(pem?.into_bytes())),
        )
    })
}

/// JWT authentication with RS256/ES256: the PEM public key read from this
/// file now (`SWITCHBOARD_RESULT_IO` if it can not be read).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_jwt_public_key_file(
    cfg: *mut switchboard_server_config,
    path: *const c_char,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        // SAFETY: header contract.
        let path = unsafe { string(path, "path") }?;
        let pem = std::fs::read(&path).map_err(|e| {
            FfiError::new(switchboard_result::Io, format!("cannot read {path}: {e}"))
        })?;
        c.jwt_key = Some(JwtKey::PublicKeyPem(pem));
        Ok(())
    })
}

/// Required JWT `aud` (needs a JWT key).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `audience` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_jwt_audience(
    cfg: *mut switchboard_server_config,
    audience: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(audience, "audience") };
    with_mut(cfg, "cfg", |c| set(&mut c.jwt_audience, Some(value?)))
}

/// Required JWT `iss` (needs a JWT key).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `issuer` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_jwt_issuer(
    cfg: *mut switchboard_server_config,
    issuer: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(issuer, "issuer") };
    with_mut(cfg, "cfg", |c| set(&mut c.jwt_issuer, Some(value?)))
}

/// Clock skew allowed on JWT `exp`/`nbf`, in milliseconds (default 30000).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_jwt_leeway_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.jwt_leeway, Some(millis(ms))))
}

/// Authentication by a C callback (see `switchboard_auth_callback` for its
/// thread and `switchboard_auth_request` for how it decides). `userdata` is
/// passed to every call, from several threads at once; it must stay valid
/// until `switchboard_server_free` returns. NULL `callback` removes it.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `callback` is NULL or a function that
/// may be called from any thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_auth_callback(
    cfg: *mut switchboard_server_config,
    callback: switchboard_auth_callback,
    userdata: *mut c_void,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.auth_callback,
            callback.map(|cb| (cb, UserData(userdata))),
        )
    })
}

/// With auth on: how long a connection without a handshake token has to send
/// its first `auth` message, and how long an auth callback may take to decide,
/// in milliseconds (default 5000). Past it the connection is refused.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_auth_timeout_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| set(&mut c.core.auth_timeout, millis(ms)))
}

/// Serve `wss://` with this PEM certificate chain and private key (files read
/// at start).
///
/// # Safety
/// `cfg` is NULL or a live configuration; the paths are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_tls(
    cfg: *mut switchboard_server_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        // SAFETY: header contract.
        let (cert, key) = unsafe {
            (
                string(cert_path, "cert_path")?,
                string(key_path, "key_path")?,
            )
        };
        c.tls = (Some(cert), Some(key));
        Ok(())
    })
}

/// Adds a proxy (a CIDR such as `10.0.0.0/8`, or one address) whose
/// `X-Forwarded-For` / `X-Real-IP` headers are believed.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `cidr` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_add_trusted_proxy(
    cfg: *mut switchboard_server_config,
    cidr: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(cidr, "cidr") };
    with_mut(cfg, "cfg", |c| push(&mut c.core.trusted_proxies, value?))
}

/// TURN REST credentials (coturn `use-auth-secret`) handed out in `room-info`
/// as `iceServers`: the shared secret and the credential lifetime in seconds
/// (0 keeps the default, 3600). Needs at least one `add_turn_url`.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `secret` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_turn(
    cfg: *mut switchboard_server_config,
    secret: *const c_char,
    ttl_secs: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        // SAFETY: header contract.
        let secret = unsafe { string(secret, "secret") }?;
        if secret.is_empty() {
            return Err(FfiError::config("the TURN secret must not be empty"));
        }
        c.turn_secret = Some(secret);
        if ttl_secs > 0 {
            c.turn_ttl = Duration::from_secs(ttl_secs);
        }
        Ok(())
    })
}

/// Adds a TURN/STUN URL (`turn:turn.example.com:3478?transport=udp`).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `url` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_add_turn_url(
    cfg: *mut switchboard_server_config,
    url: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(url, "url") };
    with_mut(cfg, "cfg", |c| push(&mut c.turn_urls, value?))
}

/// Cluster mode: the Redis backplane shared by every node (`redis://host:port`).
///
/// # Safety
/// `cfg` is NULL or a live configuration; `url` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_redis_url(
    cfg: *mut switchboard_server_config,
    url: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(url, "url") };
    with_mut(cfg, "cfg", |c| set(&mut c.core.redis_url, Some(value?)))
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
mod tests {
    use std::ffi::CString;

    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    /// Every setter lands in the field it names (the C tests cover behaviour;
    /// this covers the mapping of each option, including those whose behaviour
    /// other parts of the server own).
    #[test]
    fn every_setter_reaches_the_core_config() {
        let cfg = switchboard_server_config_new();
        let ok = switchboard_result::Ok;
        // SAFETY: `cfg` is a live configuration and every string is NUL-terminated.
        unsafe {
            assert_eq!(
                switchboard_server_config_set_listen(cfg, c("127.0.0.1:0").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_path(cfg, c("/sig").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_max_message_bytes(cfg, 4096),
                ok
            );
            assert_eq!(switchboard_server_config_set_max_conns(cfg, 7), ok);
            assert_eq!(switchboard_server_config_set_max_conns_per_ip(cfg, 3), ok);
            assert_eq!(switchboard_server_config_set_max_room_size(cfg, 5), ok);
            assert_eq!(
                switchboard_server_config_set_max_rooms_per_session(cfg, 2),
                ok
            );
            assert_eq!(switchboard_server_config_set_rate_limit_burst(cfg, 9), ok);
            assert_eq!(switchboard_server_config_set_rate_limit_rps(cfg, 4), ok);
            assert_eq!(switchboard_server_config_set_heartbeat_ms(cfg, 1500), ok);
            assert_eq!(
                switchboard_server_config_set_heartbeat_timeout_ms(cfg, 700),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_resume_window_ms(cfg, 2500),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_replay_buffer_messages(cfg, 64),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_replay_buffer_bytes(cfg, 65536),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_outbound_queue_bytes(cfg, 262144),
                ok
            );
            assert_eq!(
                switchboard_server_config_add_allowed_origin(cfg, c("https://a.example").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_add_allowed_origin(cfg, c("https://b.example").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_handshake_timeout_ms(cfg, 1100),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_drain_timeout_ms(cfg, 1200),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_drain_retry_after_ms(cfg, 1300),
                ok
            );
            assert_eq!(switchboard_server_config_set_event_buffer(cfg, 33), ok);
            assert_eq!(switchboard_server_config_set_worker_threads(cfg, 3), ok);
            assert_eq!(
                switchboard_server_config_set_jwt_secret(cfg, c("s3cret").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_jwt_audience(cfg, c("aud").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_jwt_issuer(cfg, c("iss").as_ptr()),
                ok
            );
            assert_eq!(switchboard_server_config_set_jwt_leeway_ms(cfg, 1400), ok);
            assert_eq!(switchboard_server_config_set_auth_timeout_ms(cfg, 1500), ok);
            assert_eq!(
                switchboard_server_config_set_tls(
                    cfg,
                    c("cert.pem").as_ptr(),
                    c("key.pem").as_ptr()
                ),
                ok
            );
            assert_eq!(
                switchboard_server_config_add_trusted_proxy(cfg, c("10.0.0.0/8").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_turn(cfg, c("turn-secret").as_ptr(), 600),
                ok
            );
            assert_eq!(
                switchboard_server_config_add_turn_url(cfg, c("turn:t.example:3478").as_ptr()),
                ok
            );
            assert_eq!(
                switchboard_server_config_set_redis_url(cfg, c("redis://127.0.0.1:6379").as_ptr()),
                ok
            );
            assert_eq!(switchboard_server_config_set_demo(cfg, true), ok);
        }
        // SAFETY: made by `switchboard_server_config_new`, not freed.
        let mut cfg = unsafe { Box::from_raw(cfg) };
        assert_eq!(cfg.worker_threads, 3);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let core = cfg.build(&runtime).unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            (core.listen.as_str(), core.path.as_str()),
            ("127.0.0.1:0", "/sig")
        );
        assert_eq!(core.max_message_bytes, 4096);
        assert_eq!((core.max_conns, core.max_conns_per_ip), (7, 3));
        assert_eq!((core.max_room_size, core.max_rooms_per_session), (5, 2));
        assert_eq!((core.rate_limit_burst, core.rate_limit_rps), (9, 4));
        assert_eq!(
            (core.heartbeat_interval, core.heartbeat_timeout),
            (ms(1500), ms(700))
        );
        assert_eq!(core.resume_window, ms(2500));
        assert_eq!(
            (core.replay_buffer_messages, core.replay_buffer_bytes),
            (64, 65536)
        );
        assert_eq!(core.outbound_queue_bytes, 262144);
        assert_eq!(
            core.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(core.handshake_timeout, ms(1100));
        assert_eq!(
            (core.drain_timeout, core.drain_retry_after),
            (ms(1200), ms(1300))
        );
        assert_eq!(core.event_buffer, 33);
        match &core.auth {
            AuthConfig::Jwt(j) => {
                assert!(matches!(&j.key, JwtKey::Secret(s) if s == b"s3cret"));
                assert_eq!(j.audience.as_deref(), Some("aud"));
                assert_eq!(j.issuer.as_deref(), Some("iss"));
                assert_eq!(j.leeway, ms(1400));
            }
            other => panic!("expected JWT, got {other:?}"),
        }
        assert_eq!(core.auth_timeout, ms(1500));
        let tls = core.tls.as_ref().unwrap();
        assert_eq!(
            (tls.cert_path.to_str(), tls.key_path.to_str()),
            (Some("cert.pem"), Some("key.pem"))
        );
        assert_eq!(core.trusted_proxies, ["10.0.0.0/8"]);
        let turn = core.turn.as_ref().unwrap();
        assert_eq!(
            (turn.secret.as_str(), turn.ttl),
            ("turn-secret", Duration::from_secs(600))
        );
        assert_eq!(turn.urls, ["turn:t.example:3478"]);
        assert_eq!(core.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
        assert!(core.demo && core.serve_client);
        core.validate().unwrap();
    }

    #[test]
    fn static_tokens_and_the_callback_become_their_auth_modes() {
        let cfg = switchboard_server_config_new();
        // SAFETY: a live configuration and NUL-terminated strings.
        unsafe {
            switchboard_server_config_add_auth_token(cfg, c("t1").as_ptr(), c("alice").as_ptr());
            switchboard_server_config_add_auth_token(cfg, c("t2").as_ptr(), c("bob").as_ptr());
        }
        // SAFETY: made by `switchboard_server_config_new`.
        let mut cfg = unsafe { Box::from_raw(cfg) };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        match cfg.build(&runtime).unwrap().auth {
            AuthConfig::Tokens(t) => {
                assert_eq!(t.get("t1").map(String::as_str), Some("alice"));
                assert_eq!(t.len(), 2);
            }
            other => panic!("expected tokens, got {other:?}"),
        }

        unsafe extern "C" fn deny(_: *mut c_void, req: *mut crate::switchboard_auth_request) {
            // SAFETY: the request handed to the callback, completed once.
            unsafe { crate::switchboard_auth_request_deny(req) };
        }
        let mut cfg = switchboard_server_config {
            auth_callback: Some((deny, UserData(std::ptr::null_mut()))),
            ..Default::default()
        };
        assert!(matches!(
            cfg.build(&runtime).unwrap().auth,
            AuthConfig::Hook(_)
        ));
    }
}
