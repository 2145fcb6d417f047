//! The `switchboard` binary: options from flags and env vars, `--help`, and a
//! graceful drain on SIGTERM with a clean exit.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{spawn_binary, Ws};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[test]
fn help_documents_every_limit_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--path",
        "--max-message-bytes",
        "--max-conns",
        "--max-conns-per-ip",
        "--max-room-size",
        "--rate-limit-burst",
        "--rate-limit-rps",
        "--heartbeat-ms",
        "--heartbeat-timeout-ms",
        "--resume-window-ms",
        "--replay-buffer-messages",
        "--replay-buffer-bytes",
        "--outbound-queue-bytes",
        "--allowed-origins",
        "--drain-timeout-ms",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(
        help.contains("SWITCHBOARD_RATE_LIMIT_RPS"),
        "env vars are documented"
    );
}

#[test]
fn invalid_configuration_exits_with_a_message() {
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--path", "no-slash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("path `no-slash` must start with '/'"));
    // An unknown template field is named too.
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--path", "/ws,/signaling/{room}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`{room}` is not a template field"));
}

#[tokio::test]
async fn sigterm_drains_clients_and_exits_cleanly() {
    let (mut child, url) = spawn_binary(
        &["--listen", "127.0.0.1:0", "--drain-retry-after-ms", "1234"],
        &[("SWITCHBOARD_PATH", "/signal")],
    );
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/signal"),
        "env var applied: {url}"
    );

    let mut a = Ws::connect(&url).await;
    a.send(json!({"type":"join","roomId":"r","userId":"a"}))
        .await;
    a.recv_type("room-info").await;
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(a.recv_type("draining").await["retryAfterMs"], 1234);
    assert_eq!(a.expect_close().await, 1001);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after the drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}
