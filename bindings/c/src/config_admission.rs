//! The admission budgets of `switchboard_server_config`: what a client may
//! cost before its upgrade is decided (sockets waiting for that decision, per
//! IP and server-wide; new connections per second per IP; the IPv6 prefix that
//! makes one client; the write timeout of the HTTP answers) and what it may
//! leave the server holding after (the member metadata of a join; away
//! sessions per IP, per user and server-wide, and the replay bytes they keep;
//! the bytes all outbound queues hold together).

use crate::config::switchboard_server_config;
use crate::guard::{count, millis, set, with_mut, FfiError, FfiResult};
use crate::switchboard_result;

/// A rate or burst from C (`uint64_t`) as the core's `u32`.
fn u32_count(value: u64, name: &str) -> FfiResult<u32> {
    u32::try_from(value).map_err(|_| FfiError::config(format!("{name} is too large")))
}

/// A prefix length from C, refused outside the core's 1 to 128 bits.
fn prefix_bits(bits: u32) -> FfiResult<u8> {
    u8::try_from(bits)
        .ok()
        .filter(|b| (1..=128).contains(b))
        .ok_or_else(|| FfiError::config("ipv6_prefix must be 1 to 128"))
}

/// Sockets per client IP between accept and their upgrade decision or HTTP
/// answer (default 8, 0 = unlimited); past it a new socket is answered 429 at
/// once and closed. A trusted proxy's sockets count server-wide only.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_pending_per_ip(
    cfg: *mut switchboard_server_config,
    sockets: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_pending_per_ip,
            count(sockets, "max_pending_per_ip")?,
        )
    })
}

/// Sockets server-wide between accept and their upgrade decision (default
/// 1024, 0 = unlimited); past it a new socket is answered 503 at once.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_pending(
    cfg: *mut switchboard_server_config,
    sockets: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.max_pending, count(sockets, "max_pending")?)
    })
}

/// New connections per second per client IP (default 20, 0 = off; at most
/// 4294967295), a token bucket of `conn_burst_per_ip`: past it a new socket or
/// upgrade gets 429 with `Retry-After`.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_conn_rate_per_ip(
    cfg: *mut switchboard_server_config,
    per_second: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.conn_rate_per_ip,
            u32_count(per_second, "conn_rate_per_ip")?,
        )
    })
}

/// Burst of the new-connection rate per client IP (default 40; at least 1
/// while the rate is on, checked at start; at most 4294967295).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_conn_burst_per_ip(
    cfg: *mut switchboard_server_config,
    connections: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.conn_burst_per_ip,
            u32_count(connections, "conn_burst_per_ip")?,
        )
    })
}

/// IPv6 clients are counted per prefix of this many bits (default 64: one
/// subscriber's /64 is one client; 1 to 128, anything else is
/// `SWITCHBOARD_RESULT_CONFIG`).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_ipv6_prefix(
    cfg: *mut switchboard_server_config,
    bits: u32,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.ipv6_prefix, prefix_bits(bits)?)
    })
}

/// Longest time to write one HTTP answer (refusals, endpoints, static files,
/// the API), in milliseconds (default 10000, positive): a client that does not
/// read is cut.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_http_write_timeout_ms(
    cfg: *mut switchboard_server_config,
    ms: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(&mut c.core.http_write_timeout, millis(ms))
    })
}

/// Largest member `metadata` a client may join with, in bytes of JSON (default
/// 4096; 0 refuses any); a bigger one gets `invalid-message`. Each member's
/// metadata goes into every newcomer's `room-info`. Metadata the auth vouches
/// for (a JWT's `metadata` claim, `switchboard_auth_request_allow`) is the
/// app's own and not capped.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_metadata_bytes(
    cfg: *mut switchboard_server_config,
    bytes: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_metadata_bytes,
            count(bytes, "max_metadata_bytes")?,
        )
    })
}

/// Away sessions (connection lost, resumable) per client IP (default 32, 0 =
/// unlimited); past it the IP's oldest away session ends: its peers get
/// `user-left` with reason `evicted`. Live connections are never ended.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_away_per_ip(
    cfg: *mut switchboard_server_config,
    sessions: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_away_per_ip,
            count(sessions, "max_away_per_ip")?,
        )
    })
}

/// Away sessions per authenticated user (default 8, 0 = unlimited); past it
/// the user's oldest away session ends, from whichever IP: its peers get
/// `user-left` with reason `evicted`. Live connections are never ended.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_away_per_user(
    cfg: *mut switchboard_server_config,
    sessions: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_away_per_user,
            count(sessions, "max_away_per_user")?,
        )
    })
}

/// Away sessions server-wide (default 10000, 0 = unlimited); past it the
/// oldest away session ends (`user-left`, reason `evicted`).
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_max_away_sessions(
    cfg: *mut switchboard_server_config,
    sessions: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.max_away_sessions,
            count(sessions, "max_away_sessions")?,
        )
    })
}

/// Replay bytes all away sessions may hold together (default 268435456 =
/// 256 MiB, 0 = unlimited); past it the oldest away sessions end (`user-left`,
/// reason `evicted`) until the rest fit.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_away_replay_budget_bytes(
    cfg: *mut switchboard_server_config,
    bytes: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.away_replay_budget_bytes,
            count(bytes, "away_replay_budget_bytes")?,
        )
    })
}

/// Bytes all connections' outbound queues may hold together (default
/// 268435456 = 256 MiB, 0 = unlimited); while the sum is over it, a relayed
/// message to a reader that is behind by more than 1/64 of its queue is
/// refused to its sender (`rate-limited`, nothing delivered). Readers that
/// keep up and the server's own messages go on. The gauge
/// `switchboard_outbound_queued_bytes` shows the sum.
///
/// # Safety
/// `cfg` is NULL or a live configuration.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_config_set_outbound_budget_bytes(
    cfg: *mut switchboard_server_config,
    bytes: u64,
) -> switchboard_result {
    with_mut(cfg, "cfg", |c| {
        set(
            &mut c.core.outbound_budget_bytes,
            count(bytes, "outbound_budget_bytes")?,
        )
    })
}
