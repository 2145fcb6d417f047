//! At the descriptor limit the binary refuses newcomers with 503 (logged and
//! counted) instead of leaving them unanswered in the backlog, and keeps
//! serving the connections it holds.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The descriptors the server gets; 64 are reserved and a sixteenth of the
/// rest (14) may be pending: 222 connections fit.
const NOFILE: usize = 300;
const FIT: usize = 222;

async fn next_text(ws: &mut (impl StreamExt<Item = Result<Message, WsError>> + Unpin), ty: &str) {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            if t.contains(&format!("\"type\":\"{ty}\"")) {
                return;
            }
        }
    }
}

#[tokio::test]
async fn connections_past_the_descriptor_limit_get_503_and_the_rest_go_on() {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--max-conns", "0"])
        .args(["--rate-limit-rps", "0", "--max-conns-per-ip", "0"])
        .args(["--conn-rate-per-ip", "0", "--max-pending-per-ip", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs the binary");
    let url = common::listening_url(&mut child);

    let (mut held, mut refused) = (Vec::new(), 0);
    for _ in 0..FIT + 8 {
        let connect = tokio_tungstenite::connect_async(&url);
        let answered = tokio::time::timeout(std::time::Duration::from_secs(5), connect).await;
        match answered.expect("a newcomer past the limit gets an answer, not the backlog") {
            Ok((ws, _)) => held.push(ws),
            Err(WsError::Http(resp)) => {
                assert_eq!(resp.status(), 503);
                refused += 1;
            }
            Err(e) => panic!("a newcomer past the limit must get an answer: {e}"),
        }
    }
    assert_eq!((held.len(), refused), (FIT, 8));

    // The connections it holds still relay.
    let (mut a, mut b) = (held.pop().unwrap(), held.pop().unwrap());
    for (ws, user) in [(&mut a, "a"), (&mut b, "b")] {
        let join = format!(r#"{{"type":"join","roomId":"r","userId":"{user}"}}"#);
        ws.send(Message::text(join)).await.unwrap();
        next_text(ws, "room-info").await;
    }
    a.send(Message::text(r#"{"type":"message","to":"b","data":1}"#))
        .await
        .unwrap();
    next_text(&mut b, "message").await;

    // Counted by reason.
    let host = url
        .strip_prefix("ws://")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).await.unwrap();
    assert!(
        metrics.contains("switchboard_handshakes_refused_total{reason=\"capacity\"} 8"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    drop((a, b, held));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("fitted"),
        "the fitted limits are logged: {log}"
    );
    assert!(
        log.contains("at capacity"),
        "the refusals are logged: {log}"
    );
}
