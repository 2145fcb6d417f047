//! The server's own WebSocket framing, driven byte by byte over a raw socket:
//! frames pipelined with the upgrade request, split across reads, fragmented
//! messages with a ping inside, the close handshake, and the violations.

mod common;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0xA1, 0x05, 0x7E, 0x33];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn text(s: &str) -> Vec<u8> {
    frame(0x81, s.as_bytes())
}

/// A raw connection: the bytes after the `101` head, parsed into server frames.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Sends the upgrade request with `first` in the same write.
    async fn open(server: &switchboard::ServerHandle, first: &[u8]) -> Raw {
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        s.write_all(&[UPGRADE, first].concat()).await.unwrap();
        let mut raw = Raw { s, buf: Vec::new() };
        let head_end = loop {
            if let Some(at) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            raw.fill().await;
        };
        assert!(raw.buf.starts_with(b"HTTP/1.1 101"));
        raw.buf.drain(..head_end);
        raw
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .unwrap();
        assert!(n > 0, "the server ended the connection early");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next server frame: (first header byte, payload). Server frames are
    /// never masked.
    async fn next(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are unmasked");
                let (len, at) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if at > 0 && self.buf.len() >= at + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return (b0, payload);
                }
            }
            self.fill().await;
        }
    }

    /// The next text message, parsed.
    async fn json(&mut self) -> Value {
        loop {
            let (b0, payload) = self.next().await;
            if b0 == 0x81 {
                return serde_json::from_slice(&payload).unwrap();
            }
        }
    }

    async fn expect_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.json().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// The close code of the next close frame (text frames before it skipped).
    async fn close_code(&mut self) -> u16 {
        self.close_frame().await.0
    }

    /// The code and reason of the next close frame (text frames before it skipped).
    async fn close_frame(&mut self) -> (u16, String) {
        loop {
            let (b0, payload) = self.next().await;
            if b0 == 0x88 {
                let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
                return (u16::from_be_bytes([payload[0], payload[1]]), reason);
            }
        }
    }
}

#[tokio::test]
async fn pipelined_split_and_fragmented_frames_are_read_whole() {
    let server = start(builder()).await;
    // The join travels in the same write as the upgrade request.
    let join = text(r#"{"type":"join","roomId":"r","userId":"a"}"#);
    let mut a = Raw::open(&server, &join).await;
    a.expect_type("room-info").await;

    // A frame written one byte at a time.
    let mut b = Raw::open(&server, &[]).await;
    for byte in text(r#"{"type":"join","roomId":"r","userId":"b"}"#) {
        b.s.write_all(&[byte]).await.unwrap();
        b.s.flush().await.unwrap();
    }
    b.expect_type("room-info").await;
    a.expect_type("user-joined").await;

    // A message in three fragments with a ping between them, and a 4 KB SDP
    // split in the middle of its header.
    let msg = r#"{"type":"message","to":"a","data":"fragmented"}"#;
    let (p1, rest) = msg.split_at(10);
    let (p2, p3) = rest.split_at(10);
    let mut bytes = frame(0x01, p1.as_bytes());
    bytes.extend(frame(0x89, b"are you there"));
    bytes.extend(frame(0x00, p2.as_bytes()));
    bytes.extend(frame(0x80, p3.as_bytes()));
    let sdp = format!(
        r#"{{"type":"offer","to":"a","sdp":{{"type":"offer","sdp":"{}"}}}}"#,
        "v".repeat(4000)
    );
    let offer = text(&sdp);
    bytes.extend_from_slice(&offer[..3]);
    b.s.write_all(&bytes).await.unwrap();
    let (b0, payload) = b.next().await;
    assert_eq!(
        (b0, payload.as_slice()),
        (0x8A, &b"are you there"[..]),
        "the pong"
    );
    b.s.write_all(&offer[3..]).await.unwrap();
    let got = a.expect_type("message").await;
    assert_eq!(
        (got["data"].as_str(), got["from"].as_str()),
        (Some("fragmented"), Some("b"))
    );
    let got = a.expect_type("offer").await;
    assert_eq!(got["sdp"]["sdp"].as_str().map(str::len), Some(4000));

    // The close handshake: the server answers with the client's code and ends.
    b.s.write_all(&frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(b.close_frame().await, (1000, String::new()));
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, b.s.read_to_end(&mut rest)).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the server closes the TCP connection"
    );
    let left = a.expect_type("user-left").await;
    assert_user_left(&left, "b", "closed");
}

#[tokio::test]
async fn framing_violations_close_with_their_codes() {
    let server = start(builder().max_message_bytes(1024)).await;
    // A header announcing more than the limit is refused before its payload.
    let mut big = vec![0x81, 0x80 | 127];
    big.extend_from_slice(&(1u64 << 20).to_be_bytes());
    big.extend_from_slice(&[1, 2, 3, 4]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("oversized header", big, 1009),
        (
            "fragments over the limit",
            [frame(0x01, &[b' '; 1000]), frame(0x80, &[b' '; 100])].concat(),
            1009,
        ),
        ("invalid UTF-8", frame(0x81, &[0xFF, 0xFE]), 1002),
        (
            "a continuation with nothing to continue",
            frame(0x80, b"x"),
            1002,
        ),
        (
            "a new message inside a fragmented one",
            [frame(0x01, b"{"), frame(0x81, b"{}")].concat(),
            1002,
        ),
        ("a reserved bit", frame(0xC1, b"{}"), 1002),
        (
            "a reserved close code",
            frame(0x88, &1005u16.to_be_bytes()),
            1002,
        ),
        ("a one-byte close payload", frame(0x88, &[3]), 1002),
        ("a binary frame on JSON", frame(0x82, b"{}"), 1003),
    ];
    for (what, bytes, code) in cases {
        let mut c = Raw::open(&server, &[]).await;
        c.expect_type("connected").await;
        c.s.write_all(&bytes).await.unwrap();
        let reason = match code {
            1009 => "message too big",
            1003 => "binary frames are not accepted",
            _ => "protocol error",
        };
        assert_eq!(c.close_frame().await, (code, reason.into()), "{what}");
    }
}

/// Reads until the server ends the TCP connection; how long that took.
async fn time_to_eof(raw: &mut Raw) -> std::time::Duration {
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, raw.s.read_to_end(&mut rest)).await;
    assert!(matches!(ended, Ok(Ok(_))), "the server ends the connection");
    started.elapsed()
}

#[tokio::test]
async fn the_close_handshake_ends_at_once_both_ways() {
    let server = start(builder()).await;
    // The server closes (a kick); the client's last message and its close
    // reply arrive in one read: the reply is seen, not lost with the message.
    let join = text(r#"{"type":"join","roomId":"r","userId":"b"}"#);
    let mut b = Raw::open(&server, &join).await;
    b.expect_type("room-info").await;
    server.kick("r", "b").await.unwrap();
    assert_eq!(b.close_code().await, 4403);
    let mut last = text(r#"{"type":"ping"}"#);
    last.extend(frame(0x88, &4403u16.to_be_bytes()));
    b.s.write_all(&last).await.unwrap();
    let took = time_to_eof(&mut b).await;
    assert!(
        took < std::time::Duration::from_secs(1),
        "ended after {took:?}, not the 2 s grace"
    );

    // A violation fails the connection: no handshake to wait for.
    let mut c = Raw::open(&server, &[]).await;
    c.expect_type("connected").await;
    c.s.write_all(&frame(0xC1, b"{}")).await.unwrap();
    assert_eq!(c.close_code().await, 1002);
    let took = time_to_eof(&mut c).await;
    assert!(
        took < std::time::Duration::from_secs(1),
        "ended after {took:?}, not the 2 s grace"
    );
}
