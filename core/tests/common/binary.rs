//! A `switchboard` process for HTTP-level tests (the operator API, the attack
//! tests): started with flags, answered over raw TCP, killed when dropped.
#![allow(dead_code, unreachable_pub)]

use std::process::Child;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spawn_binary;

/// The API key the tests start servers with.
pub const KEY: &str = "test-api-key-0123456789";

/// A server process, killed when dropped.
pub struct Binary {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
}

impl Binary {
    /// A server without a message rate limit, plus `extra` flags.
    pub fn start(extra: &[&str]) -> Binary {
        let mut args = vec!["--rate-limit-rps", "0"];
        args.extend_from_slice(extra);
        Binary::with_flags(&args)
    }

    /// A server on its defaults but for `flags` (and a free port).
    pub fn with_flags(flags: &[&str]) -> Binary {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let (child, url) = spawn_binary(&args, &[]);
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        Binary { child, addr }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// One HTTP request; the status and the body (JSON when it parses).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.addr).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(k) = key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        let body = body.unwrap_or("");
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(super::WAIT, s.read_to_end(&mut out))
            .await
            .expect("an answer in time")
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        let status: u16 = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (
            status,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        )
    }

    /// Waits until `/ready` answers 200 (a cluster node is linked to Redis).
    pub async fn ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.call("GET", "/ready", None, None).await.0 != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never ready",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One series of `/metrics` (0 when absent), e.g.
    /// `switchboard_handshakes_refused_total{reason="per_ip"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.call("GET", "/metrics", None, None).await;
        assert_eq!(status, 200);
        super::metric_value(body.as_str().unwrap_or_default(), series)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, Some(KEY), None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(KEY), Some(&body.to_string()))
            .await
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Two cluster nodes (with the API key) on `redis`, both ready.
    pub async fn cluster_pair(redis: &super::redis::Redis) -> (Binary, Binary) {
        let url = redis.url();
        let flags = [
            "--api-key",
            KEY,
            "--redis-url",
            url.as_str(),
            "--cluster-heartbeat-ms",
            "200",
            "--cluster-node-ttl-ms",
            "1500",
        ];
        let (a, b) = (Binary::start(&flags), Binary::start(&flags));
        for node in [&a, &b] {
            node.ready().await;
        }
        (a, b)
    }
}

/// alice joins `room` on node `a`, bob on node `b`; returns once each node
/// knows both (node `b` may learn of alice only after bob joined: then bob
/// hears of her by a `user-joined`).
pub async fn span(a: &Binary, b: &Binary, room: &str) -> (super::Ws, super::Ws) {
    let mut alice = super::Ws::joined(&a.ws_url(), room, "alice").await;
    let mut bob = super::Ws::connect(&b.ws_url()).await;
    bob.send(serde_json::json!({"type": "join", "roomId": room, "userId": "bob"}))
        .await;
    let info = bob.recv_type("room-info").await;
    if !info["users"]
        .as_array()
        .is_some_and(|u| u.iter().any(|u| u == "alice"))
    {
        let joined = bob.recv_type("user-joined").await;
        assert_eq!(joined["userId"], "alice");
    }
    alice.recv_type("user-joined").await;
    (alice, bob)
}
