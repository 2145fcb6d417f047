//! Test support: start a server on 127.0.0.1:0 and talk to it with a plain
//! WebSocket client or raw HTTP, with a timeout on every wait.
#![allow(dead_code, unreachable_pub)]

pub mod binary;
pub mod redis;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::{Server, ServerBuilder, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// A test server builder: localhost, port 0, no rate limit unless a test sets one.
pub fn builder() -> ServerBuilder {
    Server::builder().listen("127.0.0.1:0").rate_limit_rps(0)
}

pub async fn start(b: ServerBuilder) -> ServerHandle {
    b.build()
        .expect("valid config")
        .start()
        .await
        .expect("server starts")
}

pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `connected` message of this connection.
    pub connected: Value,
}

/// Why a WebSocket connection could not be opened.
#[derive(Debug, PartialEq)]
pub enum Refused {
    Status(u16),
    Other(String),
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        Ws::connect_with(url, &[]).await.expect("upgrade accepted")
    }

    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, Refused> {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(http_name(k), v.parse().unwrap());
        }
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| Refused::Other("timeout".into()))?
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) => {
                    Refused::Status(r.status().as_u16())
                }
                e => Refused::Other(e.to_string()),
            })?;
        let mut w = Ws {
            ws,
            connected: Value::Null,
        };
        w.connected = w.recv().await;
        assert_eq!(
            w.connected["type"], "connected",
            "first message is connected"
        );
        Ok(w)
    }

    /// Connects from the loopback address `from` (127.0.0.N), to play
    /// another client IP.
    pub async fn connect_from(from: &str, url: &str) -> Ws {
        let addr: std::net::SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let req = url.into_client_request().unwrap();
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("upgrade in time")
        .expect("upgrade accepted");
        let mut w = Ws {
            ws,
            connected: Value::Null,
        };
        w.connected = w.recv().await;
        assert_eq!(w.connected["type"], "connected");
        w
    }

    /// Connects and joins; returns after the room-info.
    pub async fn joined(url: &str, room: &str, user: &str) -> Ws {
        let mut w = Ws::connect(url).await;
        w.send(json!({"type":"join","roomId":room,"userId":user}))
            .await;
        let info = w.recv_type("room-info").await;
        assert_eq!(info["roomId"], room);
        w
    }

    pub fn session(&self) -> (String, String) {
        (
            self.connected["sessionId"].as_str().unwrap().to_owned(),
            self.connected["resumeToken"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next JSON message (ping/pong frames skipped); panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the timeout");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).expect("server sends JSON")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Skips messages until one of type `ty`.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["type"] == ty {
                return m;
            }
        }
    }

    /// The error code answering the message just sent.
    pub async fn error_code(&mut self, v: Value) -> String {
        self.send(v).await;
        self.recv_type("error").await["code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits for the server's close frame; returns its code (skipping messages).
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close within the timeout");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Reads until the server ends a connection that stopped reading: a 1008
    /// close frame when the socket still took one, else the end of the stream
    /// (the server cut it after its write stalled). Panics on any other close.
    pub async fn expect_slow_consumer_end(&mut self) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the end within the timeout");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => {
                    assert_eq!(u16::from(f.code), 1008, "slow consumer");
                    return;
                }
                Some(Ok(Message::Close(None))) => panic!("a close without the 1008 code"),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            }
        }
    }

    /// Asserts that no message arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("expected silence, got {t}");
        }
    }

    pub async fn close(mut self, code: u16) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            }))
            .await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Drops the TCP connection without a close frame (a network cut).
    pub fn kill(self) {
        drop(self);
    }
}

fn http_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap()
}

/// One plain HTTP request; returns (status, body).
pub async fn http_get(server: &ServerHandle, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Asserts `msg` is a `user-left` for `user` with `reason`.
/// One series of a `/metrics` text (0 when absent), e.g.
/// `switchboard_handshakes_refused_total{reason="per_ip"}`.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn assert_user_left(msg: &Value, user: &str, reason: &str) {
    assert_eq!(
        (
            msg["type"].as_str(),
            msg["userId"].as_str(),
            msg["reason"].as_str()
        ),
        (Some("user-left"), Some(user), Some(reason)),
        "{msg}"
    );
}

/// Starts the `switchboard` binary with these flags and env vars; returns the
/// child and the URL of its `listening on …` line.
pub fn spawn_binary(args: &[&str], envs: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = listening_url(&mut child);
    (child, url)
}

/// The URL of the `listening on …` line a spawned server prints first.
pub fn listening_url(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix("listening on ")
        .expect("the listening line")
        .to_owned()
}

/// The next event of kind `kind` (others skipped), within the timeout.
pub async fn next_event(
    events: &mut (impl futures_util::Stream<Item = switchboard::Event> + Unpin),
    kind: &str,
) -> switchboard::Event {
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event in time")
            .expect("events go on");
        if e.kind() == kind {
            return e;
        }
    }
}

/// A server with a 64 KiB outbound queue and peers `a` and `b` in room `r`,
/// after `a` flooded `b` (who does not read) past the kernel buffers and half
/// that queue (from then on `a` is refused with `rate-limited`, and reads those
/// answers), until `b`'s queue had not moved for the stall time (the heartbeat
/// timeout, 300 ms here) and the server gave up on `b` as a slow consumer.
pub async fn slow_consumer_flooded() -> (ServerHandle, Ws, Ws) {
    use futures_util::FutureExt;
    use std::sync::atomic::Ordering;
    let server = start(
        builder()
            .max_message_bytes(8 * 1024)
            .replay_buffer_bytes(16 * 1024)
            .outbound_queue_bytes(64 * 1024)
            .heartbeat_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    let big = "z".repeat(6000);
    let deadline = tokio::time::Instant::now() + 4 * WAIT;
    let b_away = || {
        server
            .peers("r")
            .unwrap()
            .iter()
            .any(|p| p.user_id == "b" && !p.connected)
    };
    while !b_away() {
        assert!(tokio::time::Instant::now() < deadline, "b was never closed");
        a.send(json!({"type":"message","to":"b","data":big})).await;
        let mut refused = false;
        while let Some(Some(Ok(Message::Text(t)))) = a.ws.next().now_or_never() {
            refused |= t.contains("rate-limited");
        }
        if refused {
            // b's queue is over half: wait past the stall time, so the next
            // message finds it stalled (unless b's socket took more meanwhile).
            // Waiting, not spinning: a flood of refusals would fill a's own
            // queue, and a busy loop starves b's task on this one-thread runtime.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    assert_eq!(
        server
            .hub()
            .metrics()
            .slow_consumer_closes
            .load(Ordering::Relaxed),
        1,
        "b, and only b, was closed as slow"
    );
    (server, a, b)
}

/// Opens a TCP connection that never sends a byte, then shuts `server` down:
/// its drain timeout must cut that socket, well before any handshake timeout.
pub async fn shutdown_cuts_a_silent_socket(server: ServerHandle) {
    let _silent = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown is bounded");
    assert!(started.elapsed() < Duration::from_millis(1500));
}
