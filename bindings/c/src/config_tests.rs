//! Tests of `switchboard_server_config`: every setter reaches the core's
//! configuration, out-of-range values are refused, the join, away and
//! outbound budgets keep their defaults until set, the Redis CA path refuses NULL and bad
//! UTF-8, and the auth options become their modes.

use std::ffi::CString;
use std::path::Path;

use super::*;
use crate::config_admission::*;
use crate::config_security::*;

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
        assert_eq!(switchboard_server_config_set_max_pending_per_ip(cfg, 6), ok);
        assert_eq!(switchboard_server_config_set_max_pending(cfg, 96), ok);
        assert_eq!(switchboard_server_config_set_conn_rate_per_ip(cfg, 11), ok);
        assert_eq!(switchboard_server_config_set_conn_burst_per_ip(cfg, 13), ok);
        assert_eq!(switchboard_server_config_set_ipv6_prefix(cfg, 48), ok);
        assert_eq!(switchboard_server_config_set_max_room_size(cfg, 5), ok);
        assert_eq!(
            switchboard_server_config_set_max_rooms_per_session(cfg, 2),
            ok
        );
        assert_eq!(
            switchboard_server_config_set_max_metadata_bytes(cfg, 512),
            ok
        );
        assert_eq!(switchboard_server_config_set_max_away_per_ip(cfg, 6), ok);
        assert_eq!(switchboard_server_config_set_max_away_per_user(cfg, 3), ok);
        assert_eq!(switchboard_server_config_set_max_away_sessions(cfg, 77), ok);
        assert_eq!(
            switchboard_server_config_set_away_replay_budget_bytes(cfg, 1 << 20),
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
            switchboard_server_config_set_outbound_budget_bytes(cfg, 1 << 24),
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
            switchboard_server_config_set_http_write_timeout_ms(cfg, 1150),
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
            switchboard_server_config_set_tls(cfg, c("cert.pem").as_ptr(), c("key.pem").as_ptr()),
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
        assert_eq!(
            switchboard_server_config_set_redis_ca_cert(cfg, c("redis-ca.pem").as_ptr()),
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
    assert_eq!((core.max_pending_per_ip, core.max_pending), (6, 96));
    assert_eq!((core.conn_rate_per_ip, core.conn_burst_per_ip), (11, 13));
    assert_eq!(core.ipv6_prefix, 48);
    assert_eq!((core.max_room_size, core.max_rooms_per_session), (5, 2));
    assert_eq!(core.max_metadata_bytes, 512);
    assert_eq!(
        (
            core.max_away_per_ip,
            core.max_away_per_user,
            core.max_away_sessions,
            core.away_replay_budget_bytes
        ),
        (6, 3, 77, 1 << 20)
    );
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
    assert_eq!(
        (core.outbound_queue_bytes, core.outbound_budget_bytes),
        (262144, 1 << 24)
    );
    assert_eq!(
        core.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(
        (core.handshake_timeout, core.http_write_timeout),
        (ms(1100), ms(1150))
    );
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
    assert_eq!(
        core.redis_ca_cert.as_deref(),
        Some(Path::new("redis-ca.pem"))
    );
    assert!(core.demo && core.serve_client);
    core.validate().unwrap();
}

fn last_error() -> String {
    // SAFETY: the library's per-thread message, NUL-terminated, valid until the next call.
    unsafe { std::ffi::CStr::from_ptr(crate::switchboard_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// The Redis CA path: NULL and invalid UTF-8 are refused (the value unchanged,
/// the message naming the argument), as is a NULL configuration; a later call
/// replaces the path.
#[test]
fn redis_ca_cert_refuses_bad_strings_and_null_config() {
    let cfg = switchboard_server_config_new();
    let ok = switchboard_result::Ok;
    // SAFETY: `cfg` is a live configuration; the strings are NUL-terminated or NULL.
    unsafe {
        assert_eq!(
            switchboard_server_config_set_redis_ca_cert(cfg, c("first.pem").as_ptr()),
            ok
        );
        assert_eq!(
            switchboard_server_config_set_redis_ca_cert(cfg, std::ptr::null()),
            switchboard_result::NullArgument
        );
        assert!(last_error().contains("path"), "{}", last_error());
        let bad = b"\xff\xfe\0";
        assert_eq!(
            switchboard_server_config_set_redis_ca_cert(cfg, bad.as_ptr().cast()),
            switchboard_result::InvalidUtf8
        );
        assert!(last_error().contains("path"), "{}", last_error());
        assert_eq!(
            (*cfg).core.redis_ca_cert.as_deref(),
            Some(Path::new("first.pem"))
        );
        assert_eq!(
            switchboard_server_config_set_redis_ca_cert(cfg, c("ca.pem").as_ptr()),
            ok
        );
        assert_eq!(
            switchboard_server_config_set_redis_ca_cert(std::ptr::null_mut(), c("ca.pem").as_ptr()),
            switchboard_result::NullArgument
        );
        assert!(last_error().contains("cfg"), "{}", last_error());
    }
    // SAFETY: made by `switchboard_server_config_new`, not freed.
    let cfg = unsafe { Box::from_raw(cfg) };
    assert_eq!(cfg.core.redis_ca_cert.as_deref(), Some(Path::new("ca.pem")));
}

/// The admission budgets: values the core's types can not hold, and IPv6
/// prefixes outside 1 to 128, are refused by the setter (`CONFIG`, the value
/// unchanged); a zero burst while the rate is on, and a zero write timeout,
/// are refused at start by the core's validation (`CONFIG` as well).
#[test]
fn admission_budgets_out_of_range_are_refused() {
    let cfg = switchboard_server_config_new();
    let (ok, refused) = (switchboard_result::Ok, switchboard_result::Config);
    // SAFETY: `cfg` is a live configuration.
    unsafe {
        for bits in [0, 129, 256, u32::MAX] {
            assert_eq!(
                switchboard_server_config_set_ipv6_prefix(cfg, bits),
                refused
            );
            assert!(last_error().contains("ipv6_prefix"), "{}", last_error());
        }
        assert_eq!(switchboard_server_config_set_ipv6_prefix(cfg, 1), ok);
        assert_eq!(switchboard_server_config_set_ipv6_prefix(cfg, 128), ok);
        let too_big = u64::from(u32::MAX) + 1;
        assert_eq!(
            switchboard_server_config_set_conn_rate_per_ip(cfg, too_big),
            refused
        );
        assert!(last_error().contains("conn_rate_per_ip"));
        assert_eq!(
            switchboard_server_config_set_conn_burst_per_ip(cfg, u64::MAX),
            refused
        );
        assert!(last_error().contains("conn_burst_per_ip"));
        // 0 is unlimited / off; the largest burst fits.
        assert_eq!(switchboard_server_config_set_max_pending_per_ip(cfg, 0), ok);
        assert_eq!(switchboard_server_config_set_max_pending(cfg, 0), ok);
        assert_eq!(switchboard_server_config_set_conn_rate_per_ip(cfg, 0), ok);
        assert_eq!(
            switchboard_server_config_set_conn_burst_per_ip(cfg, u64::from(u32::MAX)),
            ok
        );
        assert_eq!(
            switchboard_server_config_set_max_pending(std::ptr::null_mut(), 1),
            switchboard_result::NullArgument
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // SAFETY: made by `switchboard_server_config_new`, not freed.
    let core = unsafe { Box::from_raw(cfg) }.build(&runtime).unwrap();
    assert_eq!((core.ipv6_prefix, core.conn_rate_per_ip), (128, 0));
    assert_eq!(
        (
            core.max_pending_per_ip,
            core.max_pending,
            core.conn_burst_per_ip
        ),
        (0, 0, u32::MAX)
    );
    core.validate().unwrap();

    // Accepted by the setters, refused at start.
    let at_start = |set: fn(*mut switchboard_server_config), field: &str| {
        let cfg = switchboard_server_config_new();
        set(cfg);
        // SAFETY: made by `switchboard_server_config_new`, not freed.
        let core = unsafe { Box::from_raw(cfg) }.build(&runtime).unwrap();
        let e = FfiError::from(core.validate().unwrap_err());
        assert_eq!(e.code, refused);
        assert!(e.message.contains(field), "{}", e.message);
    };
    at_start(
        // SAFETY: `at_start` passes a live configuration.
        |cfg| unsafe {
            let ok = switchboard_result::Ok;
            assert_eq!(switchboard_server_config_set_conn_rate_per_ip(cfg, 5), ok);
            assert_eq!(switchboard_server_config_set_conn_burst_per_ip(cfg, 0), ok);
        },
        "conn_burst_per_ip",
    );
    at_start(
        // SAFETY: `at_start` passes a live configuration.
        |cfg| unsafe {
            let ok = switchboard_result::Ok;
            assert_eq!(
                switchboard_server_config_set_http_write_timeout_ms(cfg, 0),
                ok
            );
        },
        "http_write_timeout",
    );
}

/// The join, away and outbound budgets: the defaults stay until set, 0 is
/// accepted (no metadata at all; the away caps and the outbound budget
/// unlimited) and starts, and a NULL configuration is `NULL_ARGUMENT`.
#[test]
fn join_and_away_budgets_keep_defaults_and_take_zero() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cfg = switchboard_server_config_new();
    // SAFETY: made by `switchboard_server_config_new`, not freed.
    let core = unsafe { Box::from_raw(cfg) }.build(&runtime).unwrap();
    assert_eq!(core.max_metadata_bytes, 4096);
    assert_eq!(
        (
            core.max_away_per_ip,
            core.max_away_per_user,
            core.max_away_sessions,
            core.away_replay_budget_bytes
        ),
        (32, 8, 10_000, 256 * 1024 * 1024)
    );
    assert_eq!(core.outbound_budget_bytes, 256 * 1024 * 1024);

    let cfg = switchboard_server_config_new();
    let ok = switchboard_result::Ok;
    // SAFETY: `cfg` is a live configuration; NULL is allowed.
    unsafe {
        assert_eq!(switchboard_server_config_set_max_metadata_bytes(cfg, 0), ok);
        assert_eq!(switchboard_server_config_set_max_away_per_ip(cfg, 0), ok);
        assert_eq!(switchboard_server_config_set_max_away_per_user(cfg, 0), ok);
        assert_eq!(switchboard_server_config_set_max_away_sessions(cfg, 0), ok);
        assert_eq!(
            switchboard_server_config_set_away_replay_budget_bytes(cfg, 0),
            ok
        );
        assert_eq!(
            switchboard_server_config_set_outbound_budget_bytes(cfg, 0),
            ok
        );
        let null = std::ptr::null_mut();
        let setters: [unsafe extern "C" fn(_, u64) -> switchboard_result; 6] = [
            switchboard_server_config_set_max_metadata_bytes,
            switchboard_server_config_set_max_away_per_ip,
            switchboard_server_config_set_max_away_per_user,
            switchboard_server_config_set_max_away_sessions,
            switchboard_server_config_set_away_replay_budget_bytes,
            switchboard_server_config_set_outbound_budget_bytes,
        ];
        for set in setters {
            assert_eq!(set(null, 1), switchboard_result::NullArgument);
            assert!(last_error().contains("cfg"), "{}", last_error());
        }
    }
    // SAFETY: made by `switchboard_server_config_new`, not freed.
    let core = unsafe { Box::from_raw(cfg) }.build(&runtime).unwrap();
    assert_eq!(
        (
            core.max_metadata_bytes,
            core.max_away_per_ip,
            core.max_away_per_user,
            core.max_away_sessions,
            core.away_replay_budget_bytes,
            core.outbound_budget_bytes
        ),
        (0, 0, 0, 0, 0, 0)
    );
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
