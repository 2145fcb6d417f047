//! One WebSocket connection: reads frames into the hub, writes the outbox in
//! batches (feed every queued frame, flush once), pings, and enforces the
//! heartbeat, size and frame-type rules.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::hub::{Connection, Next};
use crate::protocol::close;

/// Read buffer per connection. tungstenite's 128 KiB default is allocated per
/// connection and zero-filled before every read. Signaling frames are ~0.4 KiB;
/// the bench measured 1 KiB at 6.1 KiB RSS per idle connection against 9.1 KiB
/// with 4 KiB, at the same CPU per relayed message (a 10 KiB SDP takes a few
/// more reads, and tungstenite grows the buffer for it).
pub(crate) const READ_BUFFER_BYTES: usize = 1024;
/// The write buffer only has to hold one batch before the flush; it grows on demand.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// How long to wait for the client's close reply after sending a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Heartbeat settings of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Runs a connection to its end, then settles its session in the hub.
pub(crate) async fn run<S>(mut ws: WebSocketStream<S>, mut conn: Connection, heartbeat: Heartbeat)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outbox = conn.outbox().clone();
    let mut batch = Vec::new();
    let mut last_heard = Instant::now();
    let silence_limit = heartbeat.interval + heartbeat.timeout;
    let mut next_ping = Instant::now() + heartbeat.interval;
    let mut deadline = last_heard + silence_limit;
    let mut client_close: Option<u16> = None;
    // One timer for the connection's life, re-armed only when it fires: a new
    // `sleep_until` per loop turn would register with the timer driver per message.
    let timer = tokio::time::sleep_until(next_ping.min(deadline));
    tokio::pin!(timer);

    loop {
        tokio::select! {
            next = outbox.next(&mut batch) => match next {
                Next::Frames => {
                    // Bounded: a client that stops taking frames (zero TCP window)
                    // is dropped after the heartbeat timeout instead of pinning
                    // this task; its session goes away and can resume.
                    let write = async {
                        for frame in batch.drain(..) {
                            ws.feed(Message::Text(frame)).await?;
                        }
                        ws.flush().await
                    };
                    let written = tokio::time::timeout(heartbeat.timeout, write).await;
                    batch.clear();
                    if !matches!(written, Ok(Ok(()))) {
                        break;
                    }
                }
                Next::Close(req) => {
                    Box::pin(close_gracefully(&mut ws, req.code, req.reason)).await;
                    break;
                }
            },
            msg = ws.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        // A bug in one message's handling costs that connection (1011),
                        // never the server or the other connections.
                        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            conn.handle_text(text.as_str())
                        }));
                        if handled.is_err() {
                            conn.close(close::INTERNAL, "internal error");
                        }
                    }
                    Some(Ok(Message::Binary(_))) => conn.close(close::UNSUPPORTED_DATA, "binary frames are not accepted"),
                    Some(Ok(Message::Close(frame))) => {
                        client_close = Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                        // tungstenite queued the close reply; flush it out.
                        let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                        break;
                    }
                    Some(Ok(_)) => {} // ping (answered by tungstenite) and pong
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                        conn.close(close::TOO_BIG, "message too big");
                        Box::pin(close_gracefully(&mut ws, close::TOO_BIG, "message too big")).await;
                        break;
                    }
                    // The TCP connection ended without a close frame: a network cut, not a violation.
                    Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => break,
                    Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => {
                        conn.close(close::PROTOCOL_ERROR, "protocol error");
                        Box::pin(close_gracefully(&mut ws, close::PROTOCOL_ERROR, "protocol error")).await;
                        break;
                    }
                    Some(Err(_)) | None => break,
                }
            },
            () = &mut timer => {
                let now = Instant::now();
                deadline = last_heard + silence_limit;
                if now >= deadline {
                    // Missed heartbeat: drop the TCP connection; the session is away.
                    break;
                }
                if now >= next_ping {
                    next_ping = now + heartbeat.interval;
                    // Rare paths are boxed: their state would otherwise sit inline
                    // in every connection's future for the connection's whole life.
                    let ping = Box::pin(tokio::time::timeout(
                        heartbeat.timeout,
                        ws.send(Message::Ping(Default::default())),
                    ));
                    if !matches!(ping.await, Ok(Ok(()))) {
                        break;
                    }
                }
                timer.as_mut().reset(next_ping.min(deadline));
            },
        }
    }
    conn.finish(client_close);
}

/// Sends a close frame and waits briefly for the client's reply.
async fn close_gracefully<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    // Both steps bounded: a client that reads nothing must not hold the task.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
