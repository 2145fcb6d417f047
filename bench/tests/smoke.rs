//! Smoke test of the harness itself (not a timed test): every mode runs
//! end to end against the built-in reference server and reports no loss.

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String) {
    bench_against("reference", args)
}

fn bench_against(servers: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(args)
        .args([
            "--servers",
            servers,
            "-r",
            "1",
            "--no-pin",
            "--quiet-wait",
            "0",
            "--max-noise",
            "100000",
        ])
        .output()
        .expect("run switchboard-bench");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn relay_idle_joins_against_reference() {
    let (ok, text) = bench(&[
        "all",
        "--pairs",
        "3",
        "--window",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0.2",
        "--idle-conns",
        "40",
        "--idle-sdp-bytes",
        "0,2000",
        "--join-conns",
        "40",
        "--concurrency",
        "8",
        "--classic-wait",
        "1",
    ]);
    assert!(ok, "{text}");
    for heading in [
        "### relay",
        "### idle",
        "### idle after a call",
        "### idle after a call, classic clients",
        "### joins",
    ] {
        assert!(text.contains(heading), "missing {heading}:\n{text}");
    }
    assert!(text.contains("| lost (all runs) | 0 |"), "{text}");
    assert!(text.contains("| reordered (all runs) | 0 |"), "{text}");
}

#[test]
fn bare_relay_and_instruction_counts() {
    let quick = ["--pairs", "3", "--window", "2", "--warmup", "0.2"];
    let (ok, text) = bench_against(
        "bare",
        &[&["relay", "--duration", "0.5"][..], &quick].concat(),
    );
    assert!(ok, "{text}");
    assert!(text.contains("| lost (all runs) | 0 |"), "{text}");
    let (ok, text) = bench_against(
        "bare",
        &[&["instructions", "--lengths", "0.3,0.8"][..], &quick].concat(),
    );
    assert!(ok, "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("| bare |"))
        .unwrap_or_else(|| panic!("no bare row:\n{text}"));
    let per_msg: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
    assert!(
        per_msg > 100.0,
        "a relayed message costs instructions: {row}"
    );
}

#[test]
fn missing_server_under_test_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args([
            "relay",
            "--servers",
            "switchboard",
            "--server-cmd",
            "/nonexistent/switchboard",
            "--no-pin",
            "--quiet-wait",
            "0",
        ])
        .output()
        .expect("run switchboard-bench");
    assert!(!out.status.success());
}
