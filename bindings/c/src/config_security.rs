//! The security and cluster options of `switchboard_server_config`:
//! authentication (static tokens, JWT, the auth callback), TLS, trusted
//! proxies, TURN credentials and the Redis backplane.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use sb::JwtKey;

use crate::auth::switchboard_auth_callback;
use crate::config::{push, switchboard_server_config};
use crate::guard::{millis, set, string, with_mut, FfiError, UserData};
use crate::switchboard_result;

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

/// Cluster mode over `rediss://`: the PEM file of the CA that signed Redis'
/// certificate (read at start; default: the system's roots). Set with a
/// `redis://` URL, starting or creating the server fails with
/// `SWITCHBOARD_RESULT_CONFIG`.
///
/// # Safety
/// `cfg` is NULL or a live configuration; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_redis_ca_cert(
    cfg: *mut switchboard_server_config,
    path: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(path, "path") };
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.redis_ca_cert, Some(value?.into()))
    })
}
