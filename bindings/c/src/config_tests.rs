//! Tests of `switchboard_server_config`: every setter reaches the core's
//! configuration, and the auth options become their modes.

use std::ffi::CString;

use super::*;
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
