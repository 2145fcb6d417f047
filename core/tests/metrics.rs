//! `/metrics` over real sockets: each counter moves when its event happens
//! (connections, sessions connected/away, rooms, messages in/out by type, errors
//! by code, resumes ok/failed, rate-limit hits, auth failures, slow-consumer
//! closes, routing latency).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard::ServerHandle;

/// One scrape: series (`name{labels}`) → value.
async fn scrape(server: &ServerHandle) -> HashMap<String, f64> {
    let (status, body) = http_get(server, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// Polls until `series` reaches `want` (the hub counts asynchronously to the test).
async fn wait_for(server: &ServerHandle, series: &str, want: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = scrape(server).await.get(series).copied();
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series}: want {want}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn val(m: &HashMap<String, f64>, k: &str) -> f64 {
    *m.get(k).unwrap_or_else(|| panic!("no series {k}"))
}

#[tokio::test]
async fn counters_follow_connections_rooms_messages_and_errors() {
    let server = start(builder()).await;
    let before = scrape(&server).await;
    for k in [
        "switchboard_connections",
        "switchboard_rooms",
        "switchboard_joins_total",
        "switchboard_messages_in_total{type=\"offer\"}",
        "switchboard_routing_latency_seconds_count",
    ] {
        assert_eq!(val(&before, k), 0.0, "{k}");
    }
    let mut a = Ws::joined(server.url(), "r", "alice").await;
    let mut b = Ws::joined(server.url(), "r", "bob").await;
    a.recv_type("user-joined").await;
    let m = scrape(&server).await;
    assert_eq!(val(&m, "switchboard_connections"), 2.0);
    assert_eq!(val(&m, "switchboard_connections_accepted_total"), 2.0);
    assert_eq!(val(&m, "switchboard_sessions_connected"), 2.0);
    assert_eq!(val(&m, "switchboard_sessions_away"), 0.0);
    assert_eq!(val(&m, "switchboard_rooms"), 1.0);
    assert_eq!(val(&m, "switchboard_joins_total"), 2.0);
    assert_eq!(val(&m, "switchboard_messages_in_total{type=\"join\"}"), 2.0);
    assert_eq!(
        val(&m, "switchboard_messages_out_total{type=\"connected\"}"),
        2.0
    );
    assert_eq!(
        val(&m, "switchboard_messages_out_total{type=\"room-info\"}"),
        2.0
    );
    assert_eq!(
        val(&m, "switchboard_messages_out_total{type=\"user-joined\"}"),
        1.0
    );

    b.send(json!({"type":"offer","to":"alice","sdp":{"type":"offer","sdp":"v=0"}}))
        .await;
    a.recv_type("offer").await;
    b.send_raw("{not json").await;
    assert_eq!(b.recv_type("error").await["code"], "invalid-json");
    b.send(json!({"type":"offer","to":"nobody","sdp":{}})).await;
    assert_eq!(b.recv_type("error").await["code"], "peer-not-found");
    let m = scrape(&server).await;
    assert_eq!(
        val(&m, "switchboard_messages_in_total{type=\"offer\"}"),
        2.0
    );
    assert_eq!(
        val(&m, "switchboard_messages_in_total{type=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        val(&m, "switchboard_messages_out_total{type=\"offer\"}"),
        1.0
    );
    assert_eq!(val(&m, "switchboard_messages_relayed_total"), 1.0);
    assert_eq!(
        val(&m, "switchboard_errors_sent_total{code=\"invalid-json\"}"),
        1.0
    );
    assert_eq!(
        val(&m, "switchboard_errors_sent_total{code=\"peer-not-found\"}"),
        1.0
    );
    assert_eq!(
        val(&m, "switchboard_errors_sent_total{code=\"room-full\"}"),
        0.0
    );
    assert_eq!(
        val(&m, "switchboard_messages_out_total{type=\"error\"}"),
        2.0
    );
    // Both offers were routed (one found no peer): two latency observations.
    assert_eq!(val(&m, "switchboard_routing_latency_seconds_count"), 2.0);
    assert!(val(&m, "switchboard_routing_latency_seconds_sum") > 0.0);
    assert_eq!(
        val(
            &m,
            "switchboard_routing_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        2.0
    );

    // A lost connection leaves its session away; a resume brings it back; a
    // resume with a wrong token fails.
    let (session, token) = b.session();
    b.kill();
    wait_for(&server, "switchboard_sessions_away", 1.0).await;
    assert_eq!(
        val(&scrape(&server).await, "switchboard_sessions_connected"),
        1.0
    );
    let mut c = Ws::connect(server.url()).await;
    c.send(json!({"type":"resume","sessionId":session,"resumeToken":"wrong","lastSeq":0}))
        .await;
    assert_eq!(c.recv_type("error").await["code"], "resume-failed");
    c.send(json!({"type":"resume","sessionId":session,"resumeToken":token,"lastSeq":0}))
        .await;
    c.recv_type("resumed").await;
    let m = scrape(&server).await;
    assert_eq!(val(&m, "switchboard_resumes_total"), 1.0);
    assert_eq!(val(&m, "switchboard_resume_failures_total"), 1.0);
    assert_eq!(val(&m, "switchboard_sessions_away"), 0.0);
    assert_eq!(val(&m, "switchboard_sessions_connected"), 2.0);

    // Leaving empties the room.
    a.send(json!({"type":"leave"})).await;
    c.send(json!({"type":"leave"})).await;
    wait_for(&server, "switchboard_rooms", 0.0).await;
}

#[tokio::test]
async fn rate_limit_hits_are_counted() {
    let server = start(builder().rate_limit_burst(2).rate_limit_rps(1)).await;
    let mut a = Ws::connect(server.url()).await;
    for i in 0..6 {
        a.send(json!({"type":"ping","timestamp":i})).await;
    }
    assert_eq!(a.recv_type("error").await["code"], "rate-limited");
    let m = scrape(&server).await;
    assert!(val(&m, "switchboard_rate_limited_total") >= 3.0);
    assert_eq!(
        val(&m, "switchboard_errors_sent_total{code=\"rate-limited\"}"),
        1.0
    );
}

#[tokio::test]
async fn auth_failures_and_refused_handshakes_are_counted() {
    let server = start(
        builder()
            .auth_tokens([("good", "alice")])
            .auth_timeout(Duration::from_millis(200)),
    )
    .await;
    let refused = Ws::connect_with(&format!("{}?token=bad", server.url()), &[]).await;
    assert_eq!(refused.err(), Some(Refused::Status(401)));
    let m = scrape(&server).await;
    assert_eq!(
        val(&m, "switchboard_auth_failures_total{reason=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        val(
            &m,
            "switchboard_handshakes_refused_total{reason=\"unauthorized\"}"
        ),
        1.0
    );
    // No `auth` in time.
    let mut late = Ws::connect(server.url()).await;
    assert_eq!(late.expect_close().await, 4401);
    let m = scrape(&server).await;
    assert_eq!(
        val(&m, "switchboard_auth_failures_total{reason=\"timeout\"}"),
        1.0
    );
    assert_eq!(
        val(&m, "switchboard_errors_sent_total{code=\"unauthorized\"}"),
        1.0
    );
}

#[tokio::test]
async fn slow_consumer_closes_are_counted() {
    let (server, _a, mut b) = slow_consumer_flooded().await;
    b.expect_slow_consumer_end().await;
    let m = scrape(&server).await;
    assert_eq!(val(&m, "switchboard_slow_consumer_closes_total"), 1.0);
    // Its session stays, away (resumable).
    wait_for(&server, "switchboard_sessions_away", 1.0).await;
}

/// Every metric the Grafana dashboard (docs/grafana-dashboard.json) queries
/// is one that a cluster node exports.
#[tokio::test]
async fn the_grafana_dashboard_uses_only_exported_metrics() {
    let redis = common::redis::Redis::start();
    let server = start(builder().redis_url(redis.url())).await;
    let (_, body) = http_get(&server, "/metrics").await;
    let families: std::collections::HashSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
    let mut used = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("switchboard_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                used.push(name);
            }
        }
    }
    assert!(
        used.len() >= 15,
        "the dashboard charts the server: {used:?}"
    );
    for name in &used {
        // A counter's samples end in `_total`, a histogram's in `_bucket`.
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "{name} (family {family}) is not exported"
        );
    }
    server.shutdown().await;
}
