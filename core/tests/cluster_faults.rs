//! Cluster faults through a fault-injecting TCP proxy between one node and a
//! real `redis-server`: a node whose Redis traffic stalls past its liveness TTL
//! is reaped by the others; when the traffic flows again its fenced heartbeat
//! finds its liveness key gone, so it registers again and resyncs, and the
//! others list its peers again — every one of them, though the snapshot that
//! carries them is sent in parts.

mod common;
mod fault_proxy;

use std::time::{Duration, Instant};

use common::redis::{Redis, LONG};
use common::{builder, start, Ws};
use fault_proxy::FaultProxy;
use serde_json::{json, Value};
use switchboard::ServerHandle;

async fn node(url: &str) -> ServerHandle {
    start(
        builder()
            .redis_url(url)
            .max_conns_per_ip(0)
            .conn_rate_per_ip(0)
            .max_pending_per_ip(0)
            .cluster_heartbeat(Duration::from_millis(200))
            .cluster_node_ttl(Duration::from_millis(1500)),
    )
    .await
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listed(server: &ServerHandle, room: &str) -> usize {
    server.peers(room).map_or(0, |p| p.len())
}

fn metric(server: &ServerHandle, series: &str) -> f64 {
    let mut text = String::new();
    server.hub().metrics().render(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_is_reaped_then_fences_itself_and_comes_back_whole() {
    let redis = Redis::start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let a = node(&redis.url()).await;
    let b = node(&format!("redis://{}", proxy.addr())).await;
    for n in [&a, &b] {
        let c = n.cluster().unwrap();
        until("the nodes are up", || c.is_up()).await;
    }
    let mut alice = Ws::joined(a.url(), "big", "alice").await;
    // 300 members on b: more than one snapshot part.
    let mut on_b = Vec::new();
    for i in 0..300 {
        on_b.push(Ws::joined(b.url(), "big", &format!("b{i:03}")).await);
    }
    until("a lists everyone", || listed(&a, "big") == 301).await;

    // b's Redis traffic stalls past its liveness TTL: a reaps it.
    proxy.blackhole(true);
    let left = loop {
        let v: Value = alice.recv().await;
        if v["type"] == "user-left" {
            break v;
        }
    };
    assert_eq!(left["reason"], "timeout", "{left}");
    until("a forgot b's peers", || listed(&a, "big") == 1).await;
    // The traffic flows again: b's fenced heartbeat notices, b resyncs.
    proxy.blackhole(false);
    until("a lists b's peers again", || listed(&a, "big") == 301).await;
    assert!(metric(&b, "switchboard_cluster_fenced_total") >= 1.0);
    // And they talk across nodes as before.
    let b0 = &mut on_b[0];
    b0.send(json!({"type":"message","to":"alice","id":"back","data":"hello"}))
        .await;
    assert_eq!(b0.recv_type("ack").await["id"], "back");
    let m = alice.recv_type("message").await;
    assert_eq!(
        (m["from"].as_str(), m["data"].as_str()),
        (Some("b000"), Some("hello"))
    );
}
