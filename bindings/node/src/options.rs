//! Server options as JS hands them over (camelCase, milliseconds), checked and
//! mapped onto the core's `ServerBuilder` — every builder option has a field.

use std::collections::HashMap;
use std::time::Duration;

use napi_derive::napi;
use switchboard::{JwtConfig, ServerBuilder};

use crate::errors::config;

/// Options of `Server.start()`; the TypeScript layer documents each one.
#[napi(object)]
#[derive(Debug, Default)]
pub struct ServerOptions {
    /// `host:port` to bind; `null` = no listener of its own (attach mode only).
    pub listen: Option<String>,
    pub path: Option<String>,
    pub max_message_bytes: Option<f64>,
    pub max_conns: Option<f64>,
    pub max_conns_per_ip: Option<f64>,
    pub max_pending_per_ip: Option<f64>,
    pub max_pending: Option<f64>,
    pub conn_rate_per_ip: Option<f64>,
    pub conn_burst_per_ip: Option<f64>,
    pub ipv6_prefix: Option<f64>,
    pub max_room_size: Option<f64>,
    pub max_rooms_per_session: Option<f64>,
    pub max_metadata_bytes: Option<f64>,
    pub max_away_per_ip: Option<f64>,
    pub max_away_per_user: Option<f64>,
    pub max_away_sessions: Option<f64>,
    pub away_replay_budget_bytes: Option<f64>,
    pub rate_limit_burst: Option<f64>,
    pub rate_limit_rps: Option<f64>,
    pub heartbeat_ms: Option<f64>,
    pub heartbeat_timeout_ms: Option<f64>,
    pub resume_window_ms: Option<f64>,
    pub replay_buffer_messages: Option<f64>,
    pub replay_buffer_bytes: Option<f64>,
    pub outbound_queue_bytes: Option<f64>,
    pub outbound_budget_bytes: Option<f64>,
    pub allowed_origins: Option<Vec<String>>,
    pub handshake_timeout_ms: Option<f64>,
    pub http_write_timeout_ms: Option<f64>,
    pub drain_timeout_ms: Option<f64>,
    pub drain_retry_after_ms: Option<f64>,
    pub event_buffer: Option<f64>,
    pub auth_timeout_ms: Option<f64>,
    /// Static tokens: token → userId.
    pub auth_tokens: Option<HashMap<String, String>>,
    pub jwt: Option<JwtOptions>,
    pub tls: Option<TlsOptions>,
    pub trusted_proxies: Option<Vec<String>>,
    pub turn: Option<TurnOptions>,
    pub redis_url: Option<String>,
    /// Cluster mode over `rediss://`: the CA (PEM file) of Redis' certificate.
    pub redis_ca_cert: Option<String>,
    pub demo: Option<bool>,
    pub serve_client: Option<bool>,
    /// The application's own message types, relayed like `message`.
    pub app_types: Option<Vec<String>>,
    /// Turns on the operator API (`/api/v1`) and the admin page (`/admin`).
    pub api_key: Option<String>,
}

/// JWT verification: exactly one of `secret` (HS256) or `publicKey` (PEM, RS256/ES256).
#[napi(object)]
#[derive(Debug, Default)]
pub struct JwtOptions {
    pub secret: Option<String>,
    pub public_key: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway_ms: Option<f64>,
}

/// PEM files for `wss://`.
#[napi(object)]
#[derive(Debug, Default)]
pub struct TlsOptions {
    pub cert: String,
    pub key: String,
}

/// TURN REST credentials handed out in `room-info`.
#[napi(object)]
#[derive(Debug, Default)]
pub struct TurnOptions {
    pub secret: String,
    pub urls: Vec<String>,
    pub ttl_seconds: Option<f64>,
}

/// A non-negative integer option, or a `config` error naming it.
fn count(name: &str, v: f64, max: f64) -> napi::Result<f64> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= max {
        Ok(v)
    } else {
        Err(config(format!(
            "`{name}` must be an integer from 0 to {max}, got {v}"
        )))
    }
}

fn usize_opt(name: &str, v: Option<f64>) -> napi::Result<Option<usize>> {
    v.map(|v| count(name, v, 9_007_199_254_740_991.0).map(|v| v as usize))
        .transpose()
}

fn u32_opt(name: &str, v: Option<f64>) -> napi::Result<Option<u32>> {
    v.map(|v| count(name, v, f64::from(u32::MAX)).map(|v| v as u32))
        .transpose()
}

fn u8_opt(name: &str, v: Option<f64>) -> napi::Result<Option<u8>> {
    v.map(|v| count(name, v, f64::from(u8::MAX)).map(|v| v as u8))
        .transpose()
}

fn ms_opt(name: &str, v: Option<f64>) -> napi::Result<Option<Duration>> {
    v.map(|v| count(name, v, 1e12).map(|v| Duration::from_millis(v as u64)))
        .transpose()
}

/// Applies every option to a builder. `listen` is left to the caller.
pub(crate) fn apply(mut b: ServerBuilder, o: &ServerOptions) -> napi::Result<ServerBuilder> {
    macro_rules! set {
        ($($field:ident: $conv:ident => $setter:ident),* $(,)?) => {$(
            if let Some(v) = $conv(stringify!($field), o.$field)? {
                b = b.$setter(v);
            }
        )*};
    }
    set! {
        max_message_bytes: usize_opt => max_message_bytes,
        max_conns: usize_opt => max_conns,
        max_conns_per_ip: usize_opt => max_conns_per_ip,
        max_pending_per_ip: usize_opt => max_pending_per_ip,
        max_pending: usize_opt => max_pending,
        conn_rate_per_ip: u32_opt => conn_rate_per_ip,
        conn_burst_per_ip: u32_opt => conn_burst_per_ip,
        ipv6_prefix: u8_opt => ipv6_prefix,
        max_room_size: usize_opt => max_room_size,
        max_rooms_per_session: usize_opt => max_rooms_per_session,
        max_metadata_bytes: usize_opt => max_metadata_bytes,
        max_away_per_ip: usize_opt => max_away_per_ip,
        max_away_per_user: usize_opt => max_away_per_user,
        max_away_sessions: usize_opt => max_away_sessions,
        away_replay_budget_bytes: usize_opt => away_replay_budget_bytes,
        rate_limit_burst: u32_opt => rate_limit_burst,
        rate_limit_rps: u32_opt => rate_limit_rps,
        heartbeat_ms: ms_opt => heartbeat_interval,
        heartbeat_timeout_ms: ms_opt => heartbeat_timeout,
        resume_window_ms: ms_opt => resume_window,
        replay_buffer_messages: usize_opt => replay_buffer_messages,
        replay_buffer_bytes: usize_opt => replay_buffer_bytes,
        outbound_queue_bytes: usize_opt => outbound_queue_bytes,
        outbound_budget_bytes: usize_opt => outbound_budget_bytes,
        handshake_timeout_ms: ms_opt => handshake_timeout,
        http_write_timeout_ms: ms_opt => http_write_timeout,
        drain_timeout_ms: ms_opt => drain_timeout,
        drain_retry_after_ms: ms_opt => drain_retry_after,
        event_buffer: usize_opt => event_buffer,
        auth_timeout_ms: ms_opt => auth_timeout,
    }
    if let Some(path) = &o.path {
        b = b.path(path.as_str());
    }
    if let Some(key) = &o.api_key {
        b = b.api_key(key.as_str());
    }
    if let Some(types) = &o.app_types {
        b = b.app_types(types.iter().cloned());
    }
    if let Some(origins) = &o.allowed_origins {
        b = b.allowed_origins(origins.iter().cloned());
    }
    if let Some(tokens) = &o.auth_tokens {
        b = b.auth_tokens(tokens.clone());
    }
    if let Some(j) = &o.jwt {
        let mut jwt = match (&j.secret, &j.public_key) {
            (Some(s), None) => JwtConfig::hs256(s.as_bytes().to_vec()),
            (None, Some(pem)) => JwtConfig::public_key_pem(pem.as_bytes().to_vec()),
            _ => return Err(config("`jwt` needs exactly one of `secret` or `publicKey`")),
        };
        jwt.audience = j.audience.clone();
        jwt.issuer = j.issuer.clone();
        if let Some(l) = ms_opt("jwt.leewayMs", j.leeway_ms)? {
            jwt.leeway = l;
        }
        b = b.jwt(jwt);
    }
    if let Some(tls) = &o.tls {
        b = b.tls(&tls.cert, &tls.key);
    }
    if let Some(p) = &o.trusted_proxies {
        b = b.trusted_proxies(p.iter().cloned());
    }
    if let Some(t) = &o.turn {
        let ttl = ms_opt("turn.ttlSeconds", t.ttl_seconds.map(|s| s * 1000.0))?
            .unwrap_or(Duration::from_secs(3600));
        b = b.turn(t.secret.clone(), t.urls.iter().cloned(), ttl);
    }
    if let Some(path) = &o.redis_ca_cert {
        b = b.redis_ca_cert(path.as_str());
    }
    if let Some(url) = &o.redis_url {
        b = b.redis_url(url.as_str());
    }
    if let Some(d) = o.demo {
        b = b.demo(d);
    }
    if let Some(s) = o.serve_client {
        b = b.serve_client(s);
    }
    Ok(b)
}
