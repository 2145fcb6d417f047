//! Cluster mode end to end: a real `redis-server` started here (port picked at
//! random on 127.0.0.1, data in a temp dir, killed at the end) and 2–3
//! `switchboard` processes sharing it, driven by raw WebSocket clients.
//!
//! Needs `redis-server` on PATH (`scripts/test.sh` installs Debian's package).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::{temp_dir, Redis, LONG};
use common::Ws;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Cluster timings of the test nodes: a dead node is noticed within ~2 s.
const HEARTBEAT_MS: u64 = 200;
const NODE_TTL_MS: u64 = 1500;

/// A `switchboard` process in cluster mode.
struct Node {
    child: Child,
    url: String,
    addr: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn start(redis: &Redis, extra: &[&str]) -> Node {
        let dir = temp_dir("node");
        let log = dir.join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--listen", "127.0.0.1:0", "--redis-url", &redis.url()])
            .args(["--rate-limit-rps", "0", "--max-conns-per-ip", "0"])
            .args(["--cluster-heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .args(["--cluster-node-ttl-ms", &NODE_TTL_MS.to_string()])
            .args(["--resume-window-ms", "20000"])
            .args(extra)
            .env("RUST_LOG", "switchboard=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("the switchboard binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the listening line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Node {
            child,
            url,
            addr,
            log,
        }
    }

    /// Waits until the node is in sync with Redis (`/ready` 200).
    async fn ready(&self) {
        self.wait_ready(200).await;
    }

    async fn wait_ready(&self, status: u16) {
        let deadline = Instant::now() + LONG;
        loop {
            if http_get(self.addr, "/ready").await.0 == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never answered /ready with {status}; log: {}",
                self.url,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful drain.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One plain HTTP request to a node; (status, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let status = out.get(9..12)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

/// The next JSON message within `limit` (pings skipped); `None` on timeout.
async fn next_within(ws: &mut Ws, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(t.as_str()).expect("JSON"))
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("expected a message, got {other:?}"),
        }
    }
}

/// A joined client that keeps track of the peers it knows of and the last seq.
struct Peer {
    ws: Ws,
    user: String,
    known: HashSet<String>,
    last_seq: u64,
}

impl Peer {
    async fn join(url: &str, room: &str, user: &str) -> Peer {
        let mut ws = Ws::connect(url).await;
        ws.send(json!({"type":"join","roomId":room,"userId":user}))
            .await;
        let mut p = Peer {
            ws,
            user: user.to_owned(),
            known: HashSet::new(),
            last_seq: 0,
        };
        let info = p.recv_type("room-info").await;
        for u in info["users"].as_array().unwrap() {
            p.known.insert(u.as_str().unwrap().to_owned());
        }
        p
    }

    /// A connection that resumed `user`'s session after `last_seq`.
    fn resumed(ws: Ws, user: &str, last_seq: u64) -> Peer {
        Peer {
            ws,
            user: user.to_owned(),
            known: HashSet::new(),
            last_seq,
        }
    }

    async fn recv(&mut self) -> Value {
        let m = next_within(&mut self.ws, LONG)
            .await
            .unwrap_or_else(|| panic!("{}: no message within {LONG:?}", self.user));
        self.note(&m);
        m
    }

    fn note(&mut self, m: &Value) {
        if let Some(seq) = m["seq"].as_u64() {
            assert_eq!(seq, self.last_seq + 1, "{}: seq gap at {m}", self.user);
            self.last_seq = seq;
        }
        match m["type"].as_str() {
            Some("user-joined") => {
                self.known.insert(m["userId"].as_str().unwrap().to_owned());
            }
            Some("user-left") => {
                self.known.remove(m["userId"].as_str().unwrap());
            }
            _ => {}
        }
    }

    async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["type"] == ty {
                return m;
            }
        }
    }

    /// Reads until it knows every one of `users` (a peer that joined on another
    /// node at the same moment arrives as `user-joined`).
    async fn knows(&mut self, users: &[&str]) {
        while !users.iter().all(|u| self.known.contains(*u)) {
            self.recv().await;
        }
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(v).await;
    }

    /// Sends `count` messages to `to` with ids `tag-i` and data `{n: i}`.
    async fn send_many(&mut self, to: &str, tag: &str, range: std::ops::Range<u64>) {
        for i in range {
            self.send(json!({"type":"message","to":to,"id":format!("{tag}-{i}"),"data":{"n":i}}))
                .await;
        }
    }

    /// Reads until `acks` acknowledgements with ids `tag-i` for `range` and the
    /// messages `want` (by `data.n` from `from`) arrived; checks order and that
    /// nothing came twice. Returns the message numbers in arrival order.
    async fn collect(
        &mut self,
        tag: &str,
        acks: std::ops::Range<u64>,
        from: &str,
        want: usize,
    ) -> Vec<u64> {
        let mut acked = HashSet::new();
        let mut got = Vec::new();
        while acked.len() < acks.clone().count() || got.len() < want {
            let m = self.recv().await;
            match m["type"].as_str() {
                Some("ack") => {
                    let id = m["id"].as_str().unwrap().to_owned();
                    assert!(id.starts_with(tag), "{}: unexpected ack {m}", self.user);
                    assert!(acked.insert(id), "{}: ack twice: {m}", self.user);
                }
                Some("message") => {
                    assert_eq!(m["from"], from, "{}: {m}", self.user);
                    got.push(m["data"]["n"].as_u64().unwrap());
                }
                Some("error") => panic!("{}: unexpected error {m}", self.user),
                _ => {}
            }
        }
        for i in acks {
            assert!(
                acked.contains(&format!("{tag}-{i}")),
                "{}: no ack for {tag}-{i}",
                self.user
            );
        }
        got
    }

    fn session(&self) -> (String, String) {
        self.ws.session()
    }
}

/// Resumes `(session, token)` with `last_seq` on `url`; returns the connection
/// and the `resumed` message.
async fn resume(url: &str, session: &(String, String), last_seq: u64) -> (Ws, Value) {
    let mut ws = Ws::connect(url).await;
    ws.send(
        json!({"type":"resume","sessionId":session.0,"resumeToken":session.1,"lastSeq":last_seq}),
    )
    .await;
    let answer = next_within(&mut ws, LONG)
        .await
        .expect("an answer to resume");
    assert_eq!(answer["type"], "resumed", "resume refused: {answer}");
    (ws, answer)
}

/// Redis, nodes a and b (`b_args` for b), alice on a and bob on b in "room",
/// each knowing the other.
async fn two_nodes_one_room(b_args: &[&str]) -> (Redis, Node, Node, Peer, Peer) {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis, &[]), Node::start(&redis, b_args));
    a.ready().await;
    b.ready().await;
    let mut alice = Peer::join(&a.url, "room", "alice").await;
    let mut bob = Peer::join(&b.url, "room", "bob").await;
    alice.knows(&["bob"]).await;
    bob.knows(&["alice"]).await;
    (redis, a, b, alice, bob)
}

fn sequential(got: &[u64], from: u64) {
    let want: Vec<u64> = (from..from + got.len() as u64).collect();
    assert_eq!(got, want, "lost, doubled or reordered messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_two_nodes_share_a_room_and_exchange_1000_messages_each_way() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis, &[]), Node::start(&redis, &[]));
    a.ready().await;
    b.ready().await;

    let mut alice = Peer::join(&a.url, "room", "alice").await;
    let mut bob = Ws::connect(&b.url).await;
    bob.send(json!({"type":"join","roomId":"room","userId":"bob","displayName":"Bob","metadata":{"x":1}}))
        .await;
    let info = bob.recv_type("room-info").await;
    let mut bob = Peer {
        ws: bob,
        user: "bob".into(),
        known: info["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect(),
        last_seq: info["seq"].as_u64().unwrap(),
    };
    alice.knows(&["bob"]).await;
    bob.knows(&["alice"]).await;
    if info["users"] == json!(["alice"]) {
        assert_eq!(info["peers"][0]["userId"], "alice");
        assert_eq!(info["peers"][0]["polite"], true, "the newcomer is polite");
    }

    // 1 000 messages each way, all sent before anything is read.
    alice.send_many("bob", "a", 0..1000).await;
    bob.send_many("alice", "b", 0..1000).await;
    let at_bob = bob.collect("b", 0..1000, "alice", 1000).await;
    let at_alice = alice.collect("a", 0..1000, "bob", 1000).await;
    sequential(&at_bob, 0);
    sequential(&at_alice, 0);
    // Each node counts what it delivered from the other, once per message.
    for node in [&a, &b] {
        let (_, metrics) = http_get(node.addr, "/metrics").await;
        for series in [
            "switchboard_messages_relayed_total",
            "switchboard_cluster_received_total",
        ] {
            assert_eq!(common::metric_value(&metrics, series), 1000.0, "{series}");
        }
    }

    // Room-wide messages reach the other node too; chat comes back to its sender.
    alice
        .send(json!({"type":"chat","content":"hi","id":"c1"}))
        .await;
    let chat = bob.recv_type("chat").await;
    assert_eq!(
        (chat["from"].as_str(), chat["content"].as_str()),
        (Some("alice"), Some("hi"))
    );
    assert_eq!(alice.recv_type("chat").await["from"], "alice");
    assert_eq!(alice.recv_type("ack").await["id"], "c1");

    // A peer that joins later sees both, each with the metadata given at its join.
    let carol = Peer::join(&a.url, "room", "carol").await;
    assert!(
        carol.known.contains("alice") && carol.known.contains("bob"),
        "{:?}",
        carol.known
    );
    let bob_joined = alice.recv_type("user-joined").await;
    assert_eq!(bob_joined["userId"], "carol");

    // Leaving is seen on the other node.
    bob.send(json!({"type":"leave"})).await;
    let left = alice.recv_type("user-left").await;
    common::assert_user_left(&left, "bob", "leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_peer_resumes_on_another_node_with_an_exact_replay() {
    let (_redis, a, _b, mut alice, mut bob) = two_nodes_one_room(&[]).await;

    // Bob reads two of five, then his connection is cut.
    alice.send_many("bob", "m", 0..5).await;
    alice.collect("m", 0..5, "bob", 0).await;
    let first = bob.recv_type("message").await;
    assert_eq!(first["data"]["n"], 0);
    assert_eq!(bob.recv_type("message").await["data"]["n"], 1);
    let (session, last_seq) = (bob.session(), bob.last_seq);
    bob.ws.kill();

    // Sent while Bob is away, in a burst: accepted (buffered on node b, whose
    // writer, kept busy, mirrors them to Redis in groups of frames).
    alice.send_many("bob", "n", 5..200).await;
    alice.collect("n", 5..200, "bob", 0).await;

    // Bob comes back through node a.
    let (ws, resumed) = resume(&a.url, &session, last_seq).await;
    assert_eq!(resumed["sessionId"], session.0.as_str());
    let mut bob = Peer::resumed(ws, "bob", last_seq);
    let replayed = resumed["replayed"].as_u64().unwrap() as usize;
    let mut got = Vec::new();
    for _ in 0..replayed {
        let m = bob.recv().await;
        if m["type"] == "message" {
            assert_eq!(m["from"], "alice");
            got.push(m["data"]["n"].as_u64().unwrap());
        }
    }
    sequential(&got, 2);
    assert_eq!(got.len(), 198, "messages 2..200 replayed exactly");

    // Live again, both ways, from the new node.
    alice.send_many("bob", "o", 200..201).await;
    alice.collect("o", 200..201, "bob", 0).await;
    assert_eq!(bob.recv_type("message").await["data"]["n"], 200);
    bob.send(json!({"type":"message","to":"alice","id":"x","data":{"n":0}}))
        .await;
    assert_eq!(bob.recv_type("ack").await["id"], "x");
    let m = alice.recv_type("message").await;
    assert_eq!(m["from"], "bob");
    // Nobody was told Bob left: the next thing Alice sees is his message above,
    // and a ping answer arrives with no user-left in between.
    alice.send(json!({"type":"ping","timestamp":7})).await;
    loop {
        let m = alice.recv().await;
        assert_ne!(m["type"], "user-left", "{m}");
        if m["type"] == "pong" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_its_peers_leave_after_the_ttl_unless_they_resume_elsewhere() {
    let redis = Redis::start();
    let a = Node::start(&redis, &[]);
    let mut b = Node::start(&redis, &[]);
    let c = Node::start(&redis, &[]);
    for n in [&a, &b, &c] {
        n.ready().await;
    }
    let mut alice = Peer::join(&a.url, "room", "alice").await;
    let mut bob = Peer::join(&b.url, "room", "bob").await;
    let mut dave = Peer::join(&b.url, "room", "dave").await;
    let mut carol = Peer::join(&c.url, "room", "carol").await;
    let everyone = ["alice", "bob", "dave", "carol"];
    for p in [&mut alice, &mut bob, &mut dave, &mut carol] {
        let others: Vec<&str> = everyone.iter().copied().filter(|u| *u != p.user).collect();
        p.knows(&others).await;
    }
    // Something for Bob to have read before the crash.
    alice.send_many("bob", "m", 0..3).await;
    alice.collect("m", 0..3, "bob", 0).await;
    for i in 0..3 {
        assert_eq!(bob.recv_type("message").await["data"]["n"], i);
    }
    let (session, last_seq) = (bob.session(), bob.last_seq);
    // What bob read is in Redis before the crash: frames b had not written
    // yet would be missing (docs/CLUSTER.md, "Known limits"), which is not
    // what this test is about.
    redis.wait_mirrored(&session.0, last_seq).await;

    b.kill();
    let killed = Instant::now();
    drop(bob);
    drop(dave);
    // Bob reconnects to a survivor at once and resumes.
    let (ws, resumed) = resume(&c.url, &session, last_seq).await;
    assert_eq!(resumed["replayed"], 0);
    let mut bob = Peer::resumed(ws, "bob", last_seq);

    // Dave did not: both survivors report him gone (timeout), and only him.
    for p in [&mut alice, &mut carol] {
        let left = p.recv_type("user-left").await;
        common::assert_user_left(&left, "dave", "timeout");
        let after = killed.elapsed();
        println!("{}: user-left for dave {after:?} after the kill (ttl {NODE_TTL_MS} ms + heartbeat {HEARTBEAT_MS} ms)", p.user);
        assert!(
            after >= Duration::from_millis(NODE_TTL_MS / 2),
            "presence must outlive a heartbeat or two: {after:?}"
        );
    }
    // Bob still in the room, reachable from a, and can speak to carol.
    alice
        .send(json!({"type":"message","to":"bob","id":"after","data":{"n":3}}))
        .await;
    assert_eq!(alice.recv_type("ack").await["id"], "after");
    assert_eq!(bob.recv_type("message").await["data"]["n"], 3);
    bob.send(json!({"type":"message","to":"carol","id":"hi","data":{"n":0}}))
        .await;
    assert_eq!(bob.recv_type("ack").await["id"], "hi");
    let m = carol.recv_type("message").await;
    assert_eq!(m["from"], "bob");
    assert!(!alice.known.contains("dave") && alice.known.contains("bob"));
    assert!(!carol.known.contains("dave") && carol.known.contains("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_its_clients_over_without_loss() {
    let (_redis, a, mut b, mut alice, mut bob) =
        two_nodes_one_room(&["--drain-retry-after-ms", "100"]).await;

    alice.send_many("bob", "m", 0..20).await;
    alice.collect("m", 0..20, "bob", 0).await;
    let mut got = Vec::new();
    while got.len() < 20 {
        let m = bob.recv_type("message").await;
        got.push(m["data"]["n"].as_u64().unwrap());
    }

    // Node b drains; Alice keeps talking to Bob all along.
    b.terminate();
    let draining = bob.recv_type("draining").await;
    assert!(draining["retryAfterMs"].as_u64().is_some());
    let session = bob.session();
    let last_seq = bob.last_seq;
    assert_eq!(bob.ws.expect_close().await, 1001);
    drop(bob);
    alice.send_many("bob", "n", 20..30).await;
    alice.collect("n", 20..30, "bob", 0).await;
    let deadline = Instant::now() + LONG;
    let status = loop {
        if let Some(status) = b.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node b did not exit: {}",
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "node b exits cleanly after the drain");
    alice.send_many("bob", "o", 30..40).await;
    alice.collect("o", 30..40, "bob", 0).await;

    // Bob resumes through node a: nothing lost, nothing twice, in order.
    let (ws, resumed) = resume(&a.url, &session, last_seq).await;
    let mut bob = Peer::resumed(ws, "bob", last_seq);
    let replayed = resumed["replayed"].as_u64().unwrap();
    assert!(
        replayed >= 20,
        "at least the 20 messages sent meanwhile: {resumed}"
    );
    while got.len() < 40 {
        let m = bob.recv().await;
        if m["type"] == "message" {
            got.push(m["data"]["n"].as_u64().unwrap());
        }
    }
    sequential(&got, 0);
    alice.send_many("bob", "p", 40..41).await;
    alice.collect("p", 40..41, "bob", 0).await;
    assert_eq!(bob.recv_type("message").await["data"]["n"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_local_rooms_keep_working_and_cross_node_traffic_resumes() {
    let mut redis = Redis::start();
    let (a, b) = (Node::start(&redis, &[]), Node::start(&redis, &[]));
    a.ready().await;
    b.ready().await;
    let mut alice = Peer::join(&a.url, "x", "alice").await;
    let mut bob = Peer::join(&b.url, "x", "bob").await;
    alice.knows(&["bob"]).await;
    bob.knows(&["alice"]).await;
    let mut carl = Peer::join(&a.url, "local", "carl").await;
    let mut cora = Peer::join(&a.url, "local", "cora").await;
    carl.knows(&["cora"]).await;

    redis.kill();
    a.wait_ready(503).await;
    let (_, ready) = http_get(a.addr, "/ready").await;
    assert!(ready.contains("redis unavailable"), "{ready}");
    let (_, metrics) = http_get(a.addr, "/metrics").await;
    assert!(
        metrics.contains("switchboard_cluster_redis_up 0"),
        "{metrics}"
    );

    // A room wholly on this node keeps working.
    carl.send(json!({"type":"message","to":"cora","id":"l1","data":{"n":1}}))
        .await;
    assert_eq!(carl.recv_type("ack").await["id"], "l1");
    assert_eq!(cora.recv_type("message").await["from"], "carl");
    // Cross-node is refused, clearly.
    alice
        .send(json!({"type":"message","to":"bob","id":"x1","data":{"n":1}}))
        .await;
    let err = alice.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["ref"].as_str()),
        (Some("internal"), Some("x1"))
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("cluster unavailable"),
        "{err}"
    );

    redis.restart();
    a.ready().await;
    b.ready().await;
    let (_, metrics) = http_get(a.addr, "/metrics").await;
    assert!(
        metrics.contains("switchboard_cluster_redis_up 1"),
        "{metrics}"
    );
    // One registry: the cluster's series sit among the hub's, before the one `# EOF`.
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    assert!(
        metrics.contains("# TYPE switchboard_cluster_resyncs counter")
            && metrics.contains("switchboard_cluster_resyncs_total "),
        "{metrics}"
    );

    alice.send_many("bob", "y", 0..10).await;
    alice.collect("y", 0..10, "bob", 0).await;
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(
            bob.recv_type("message").await["data"]["n"]
                .as_u64()
                .unwrap(),
        );
    }
    sequential(&got, 0);
    bob.send_many("alice", "z", 0..10).await;
    let at_alice = alice.collect("z", 0..0, "bob", 10).await;
    bob.collect("z", 0..10, "alice", 0).await;
    sequential(&at_alice, 0);

    // Membership was rebuilt: a newcomer on b sees alice (on a) and bob.
    let mut dan = Peer::join(&b.url, "x", "dan").await;
    dan.knows(&["alice", "bob"]).await;
}
