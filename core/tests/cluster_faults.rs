//! Cluster faults on a real `redis-server`, with a fault-injecting TCP proxy
//! between one node and Redis:
//! - a node whose Redis traffic stalls past its liveness TTL is reaped by the
//!   others; when the traffic flows again its fenced heartbeat finds its
//!   liveness key gone, so it registers again and resyncs, and the others list
//!   its peers again — every one of them, though the snapshot that carries
//!   them is sent in parts;
//! - a user whose connection dropped on one node rejoins on another (a reload
//!   behind a load balancer) and takes the away identity over, as on one node;
//!   with auth on, the same user takes over even a connected one;
//! - after a partition in which one user joined on both sides, every node
//!   keeps the later join and the earlier one is replaced (close 4409); a peer
//!   that left while a node was cut off is not listed there afterwards;
//! - a node whose Redis connections are reset reconnects and resyncs, and a
//!   slow link delays cross-node messages without reordering or losing any.

mod common;
mod fault_proxy;

use std::time::{Duration, Instant};

use common::redis::{Redis, LONG};
use common::{builder, start, Ws};
use fault_proxy::FaultProxy;
use serde_json::{json, Value};
use switchboard::{ServerBuilder, ServerHandle};

async fn node(url: &str) -> ServerHandle {
    start(node_builder(url)).await
}

fn node_builder(url: &str) -> ServerBuilder {
    builder()
        .redis_url(url)
        .max_conns_per_ip(0)
        .conn_rate_per_ip(0)
        .max_pending_per_ip(0)
        .cluster_heartbeat(Duration::from_millis(200))
        .cluster_node_ttl(Duration::from_millis(1500))
}

/// Two nodes on one Redis, both up.
async fn two_nodes(redis: &Redis) -> (ServerHandle, ServerHandle) {
    let a = node(&redis.url()).await;
    let b = node(&redis.url()).await;
    up(&[&a, &b]).await;
    (a, b)
}

/// Two nodes up on one Redis; b reaches it through a fault proxy.
async fn proxied_pair(redis: &Redis) -> (FaultProxy, ServerHandle, ServerHandle) {
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let a = node(&redis.url()).await;
    let b = node(&format!("redis://{}", proxy.addr())).await;
    up(&[&a, &b]).await;
    (proxy, a, b)
}

async fn up(nodes: &[&ServerHandle]) {
    for n in nodes {
        let c = n.cluster().unwrap();
        until("the nodes are up", || c.is_up()).await;
    }
}

/// The peers `server` lists in `room`: (userId, sessionId, connected).
fn peers(server: &ServerHandle, room: &str) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = server
        .peers(room)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.user_id, p.session_id, p.connected))
        .collect();
    v.sort();
    v
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
    let (proxy, a, b) = proxied_pair(&redis).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_on_another_node_takes_the_away_identity_over() {
    let redis = Redis::start();
    let (a, b) = two_nodes(&redis).await;
    let mut carol = Ws::joined(a.url(), "r", "carol").await;
    let mut dave = Ws::joined(b.url(), "r", "dave").await;
    let bob = Ws::joined(a.url(), "r", "bob").await;
    let old_session = bob.session();
    for w in [&mut carol, &mut dave] {
        while w.recv_type("user-joined").await["userId"] != "bob" {}
    }
    // Connected on a: the id is taken on b.
    let mut early = Ws::connect(b.url()).await;
    let code = early
        .error_code(json!({"type":"join","roomId":"r","userId":"bob"}))
        .await;
    assert_eq!(code, "user-id-taken");

    // Bob's connection drops without a close: b learns that he is away.
    bob.kill();
    until("b sees bob away", || {
        peers(&b, "r").iter().any(|(u, _, up)| u == "bob" && !up)
    })
    .await;
    // His reload lands on b and takes the identity over.
    let mut bob = Ws::connect(b.url()).await;
    bob.send(json!({"type":"join","roomId":"r","userId":"bob"}))
        .await;
    let info = bob.recv_type("room-info").await;
    assert_eq!(info["users"], json!(["carol", "dave"]), "{info}");
    for w in [&mut carol, &mut dave] {
        let left = w.recv_type("user-left").await;
        assert_eq!(
            (left["userId"].as_str(), left["reason"].as_str()),
            (Some("bob"), Some("replaced"))
        );
        assert_eq!(w.recv_type("user-joined").await["userId"], "bob");
    }
    // Every node lists the new session only; the old one can no longer resume.
    let new_session = bob.session().0;
    for n in [&a, &b] {
        until("one bob, the new one", || {
            let p = peers(n, "r");
            p.len() == 3
                && p.iter()
                    .any(|(u, s, up)| u == "bob" && *s == new_session && *up)
        })
        .await;
    }
    let mut late = Ws::connect(a.url()).await;
    let code = late
        .error_code(json!({"type":"resume","sessionId":old_session.0,"resumeToken":old_session.1,"lastSeq":0}))
        .await;
    assert_eq!(code, "resume-failed");
    // Carol on a reaches him on b.
    carol
        .send(json!({"type":"message","to":"bob","id":1,"data":"welcome back"}))
        .await;
    assert_eq!(carol.recv_type("ack").await["id"], 1);
    let m = bob.recv_type("message").await;
    assert_eq!(
        (m["from"].as_str(), m["data"].as_str()),
        (Some("carol"), Some("welcome back"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_the_same_user_takes_over_a_connected_session_on_another_node() {
    let redis = Redis::start();
    let tokens = [("tok-bob", "bob"), ("tok-carol", "carol")];
    let a = start(node_builder(&redis.url()).auth_tokens(tokens)).await;
    let b = start(node_builder(&redis.url()).auth_tokens(tokens)).await;
    up(&[&a, &b]).await;
    let as_user = |url: &str, token: &str| {
        let (url, header) = (url.to_owned(), format!("Bearer {token}"));
        async move {
            let mut w = Ws::connect_with(&url, &[("Authorization", &header)])
                .await
                .unwrap();
            w.send(json!({"type":"join","roomId":"r"})).await;
            w.recv_type("room-info").await;
            w
        }
    };
    let mut carol = as_user(a.url(), "tok-carol").await;
    let mut old = as_user(a.url(), "tok-bob").await;
    assert_eq!(carol.recv_type("user-joined").await["userId"], "bob");
    until("b lists bob", || peers(&b, "r").len() == 2).await;
    // The same user (the token proves it) on b: the newer connection wins.
    let _new = as_user(b.url(), "tok-bob").await;
    assert_eq!(old.expect_close().await, 4409);
    let left = carol.recv_type("user-left").await;
    assert_eq!(
        (left["userId"].as_str(), left["reason"].as_str()),
        (Some("bob"), Some("replaced"))
    );
    assert_eq!(carol.recv_type("user-joined").await["userId"], "bob");
    for n in [&a, &b] {
        until("one bob", || peers(n, "r").len() == 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_partition_the_later_join_of_a_user_wins_on_every_node() {
    let redis = Redis::start();
    let (proxy, a, b) = proxied_pair(&redis).await;
    let mut carol = Ws::joined(a.url(), "r", "carol").await;
    let erin = Ws::joined(a.url(), "r", "erin").await;
    let mut bob_on_b = Ws::joined(b.url(), "r", "bob").await;
    until("a lists bob", || listed(&a, "r") == 3).await;
    until("b lists everyone", || listed(&b, "r") == 3).await;

    // b is cut off from Redis: a reaps it (bob leaves a's view, not b's).
    proxy.blackhole(true);
    until("a forgot bob", || listed(&a, "r") == 2).await;
    // Meanwhile bob joins again on a, and erin leaves (b does not hear of it).
    let bob_on_a = Ws::joined(a.url(), "r", "bob").await;
    erin.close(1000).await;
    // The partition heals: b resyncs; both nodes agree on the later bob.
    proxy.blackhole(false);
    assert_eq!(
        bob_on_b.expect_close().await,
        4409,
        "the earlier bob is replaced"
    );
    let later = bob_on_a.session().0;
    for n in [&a, &b] {
        until("carol and the later bob, no ghost", || {
            let p = peers(n, "r");
            p.len() == 2
                && p.iter().any(|(u, s, _)| u == "bob" && *s == later)
                && p.iter().any(|(u, _, _)| u == "carol")
        })
        .await;
    }
    // And carol still reaches that bob.
    carol
        .send(json!({"type":"message","to":"bob","id":"x","data":"hi"}))
        .await;
    assert_eq!(carol.recv_type("ack").await["id"], "x");
}

/// Sends `n` messages with ids `tag-0…` from `from` to `to`; returns once all
/// are acknowledged (an error fails the test: nothing may be refused here).
async fn send_acked(from: &mut Ws, to: &str, tag: &str, n: u64) {
    for i in 0..n {
        from.send(json!({"type":"message","to":to,"id":format!("{tag}-{i}"),"data":i}))
            .await;
    }
    for i in 0..n {
        let v: Value = from.recv_type("ack").await;
        assert_eq!(v["id"], format!("{tag}-{i}"), "acks in order");
    }
}

/// Reads `n` messages and checks they are `0..n` in order.
async fn recv_in_order(to: &mut Ws, n: u64) {
    for i in 0..n {
        assert_eq!(to.recv_type("message").await["data"], i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_redis_link_reconnects_resyncs_and_relays_again() {
    let redis = Redis::start();
    let (proxy, a, b) = proxied_pair(&redis).await;
    let mut alice = Ws::joined(a.url(), "r", "alice").await;
    let mut bob = Ws::joined(b.url(), "r", "bob").await;
    until("a lists bob", || listed(&a, "r") == 2).await;
    send_acked(&mut alice, "bob", "before", 10).await;
    recv_in_order(&mut bob, 10).await;

    // Every connection between b and Redis is dropped at once (a reset, not
    // a silence): b reconnects through the proxy and resyncs.
    let resyncs = metric(&b, "switchboard_cluster_resyncs_total");
    assert!(proxy.cut() > 0);
    until("b resynced", || {
        metric(&b, "switchboard_cluster_resyncs_total") > resyncs && b.cluster().unwrap().is_up()
    })
    .await;
    // Within the node TTL: a never reaped b, bob stayed listed, and the two
    // talk again both ways, in order, everything acknowledged.
    assert_eq!(listed(&a, "r"), 2);
    send_acked(&mut alice, "bob", "after", 10).await;
    recv_in_order(&mut bob, 10).await;
    send_acked(&mut bob, "alice", "back", 10).await;
    recv_in_order(&mut alice, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_link_delays_messages_but_keeps_their_order_and_acks() {
    let redis = Redis::start();
    let (proxy, a, b) = proxied_pair(&redis).await;
    let mut alice = Ws::joined(a.url(), "r", "alice").await;
    let mut bob = Ws::joined(b.url(), "r", "bob").await;
    until("a lists bob", || listed(&a, "r") == 2).await;
    // 150 ms on every chunk between b and Redis, both ways (below the node
    // TTL, so nobody is reaped).
    proxy.set_delay(Duration::from_millis(150));
    let started = Instant::now();
    send_acked(&mut alice, "bob", "slow", 50).await;
    recv_in_order(&mut bob, 50).await;
    send_acked(&mut bob, "alice", "slow-back", 50).await;
    recv_in_order(&mut alice, 50).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the delay was in the path"
    );
    assert_eq!(listed(&a, "r"), 2, "nobody reaped");
    assert_eq!(metric(&a, "switchboard_cluster_fenced_total"), 0.0);
    assert_eq!(metric(&b, "switchboard_cluster_fenced_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_keeps_mirroring_the_frames_left_unacknowledged() {
    let redis = Redis::start();
    let a = node(&redis.url()).await;
    // A replay buffer that keeps every frame of the test: none is dropped
    // unwritten for being one too many.
    let b = start(
        node_builder(&redis.url())
            .replay_buffer_messages(1 << 20)
            .replay_buffer_bytes(64 << 20)
            .outbound_queue_bytes(128 << 20),
    )
    .await;
    up(&[&a, &b]).await;
    let mut alice = Ws::joined(a.url(), "r", "alice").await;
    let mut bob = Ws::joined(b.url(), "r", "bob").await;
    until("a lists bob", || listed(&a, "r") == 2).await;
    let sid = bob.session().0;

    // Bursts that keep b's writer busy (an answer to a per message) for longer
    // than the mirror may wait; bob reads them all and never acknowledges.
    let started = Instant::now();
    let mut read: Vec<(Instant, u64)> = Vec::new();
    let mut round = 0;
    while started.elapsed() < Duration::from_millis(800) {
        send_acked(&mut alice, "bob", &format!("m{round}"), 50).await;
        for _ in 0..50 {
            let m = bob.recv_type("message").await;
            read.push((Instant::now(), m["seq"].as_u64().unwrap()));
        }
        round += 1;
    }
    // Still in the traffic: what bob had 300 ms ago (six times the mirror's
    // 50 ms) is in Redis, though the writer never ran out of work.
    let mirrored = redis.mirrored_to(&sid).await;
    let cutoff = Instant::now() - Duration::from_millis(300);
    let old = read.iter().rev().find(|(t, _)| *t <= cutoff).unwrap().1;
    assert!(
        mirrored >= old,
        "mirrored to {mirrored} while busy; {old} was read 300 ms before"
    );
    // Once it calms down, every frame is written.
    let last = read.last().unwrap().1;
    redis.wait_mirrored(&sid, last).await;
    assert_eq!(redis.mirrored_to(&sid).await, last);
}
