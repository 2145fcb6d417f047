//! The built-in transport of the connection kit: one tokio-tungstenite socket
//! driving an [`EdgeConnection`]. It reads frames into the kit, writes the outbox
//! in batches (feed every queued frame, flush once) and pings when the kit's
//! liveness clock says so; the rules themselves (sizes, frame types, heartbeat,
//! stuck writes) are the kit's.
//!
//! It is a hand-written `Future` rather than an `async fn` with `select!`: the
//! task lives as long as the connection, and a generated state machine kept
//! ~2 KiB per connection where these fields need ~0.8 KiB (the idle-memory
//! benchmark counts every byte of it). Every source is polled once per turn and
//! registers its waker; the turn repeats while any made progress.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::edge::{EdgeConnection, Encoding, Tick, Violation, Wire};
use crate::hub::{Next, Outbox};
use crate::protocol::{close, Frame};

/// Read buffer per connection. tungstenite's 128 KiB default is allocated per
/// connection and zero-filled before every read. Signaling frames are ~0.4 KiB;
/// the bench measured 1 KiB at 6.1 KiB RSS per idle connection against 9.1 KiB
/// with 4 KiB, at the same CPU per relayed message (a 10 KiB SDP takes a few
/// more reads, and tungstenite grows the buffer for it).
pub(crate) const READ_BUFFER_BYTES: usize = 1024;
/// The write buffer only has to hold one batch before the flush; it grows on demand.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// How long to wait for the close handshake to finish after a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub(crate) fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading, and waiting for the outbox.
    Open,
    /// Feeding `batch[next..]` to the socket, then one flush.
    Writing {
        next: usize,
    },
    /// A close frame is on its way (`sent`): flush it, then read until the
    /// client's reply or the grace deadline. `reply` is set when the client
    /// closed first (tungstenite queued our answer already): flushing ends it.
    Closing {
        code: u16,
        reason: &'static str,
        sent: bool,
        flushed: bool,
        reply: bool,
    },
    Done,
}

/// Runs a connection to its end, then settles its session in the hub.
pub(crate) struct ConnectionTask<S> {
    ws: WebSocketStream<S>,
    conn: Option<EdgeConnection>,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    batch: Vec<Frame>,
    phase: Phase,
    ping_due: bool,
    client_close: Option<u16>,
    /// One timer for the connection's life, re-armed only when it fires, never per
    /// message: the kit's liveness clock says when it must fire next.
    timer: Pin<Box<Sleep>>,
}

impl<S> std::fmt::Debug for ConnectionTask<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTask")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S> ConnectionTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(ws: WebSocketStream<S>, mut conn: EdgeConnection) -> Self {
        let outbox = conn.outbox().clone();
        let encoding = conn.encoding();
        let next = match conn.tick() {
            Tick::Idle(next) | Tick::Ping(next) => next,
            Tick::Drop => Instant::now(),
        };
        ConnectionTask {
            ws,
            conn: Some(conn),
            outbox,
            encoding,
            batch: Vec::new(),
            phase: Phase::Open,
            ping_due: false,
            client_close: None,
            timer: Box::pin(tokio::time::sleep_until(next)),
        }
    }

    fn start_close(&mut self, code: u16, reason: &'static str) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
            return;
        }
        self.phase = Phase::Closing {
            code,
            reason,
            sent: false,
            flushed: false,
            reply: false,
        };
        self.timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
    }

    fn conn(&mut self) -> &mut EdgeConnection {
        self.conn
            .as_mut()
            .expect("the connection lives until the task ends")
    }

    /// One inbound frame (or the end of the stream).
    fn on_inbound(&mut self, item: Option<Result<Message, WsError>>) {
        let closing = matches!(self.phase, Phase::Closing { .. });
        if let Some(Ok(_)) = &item {
            self.conn().heard();
        }
        match item {
            Some(Ok(Message::Text(text))) if !closing => self.conn().text(text.as_str()),
            Some(Ok(Message::Binary(bytes))) if !closing => self.conn().binary(&bytes),
            Some(Ok(Message::Close(frame))) => {
                if closing {
                    // The client's answer to our close: the handshake is complete.
                    self.phase = Phase::Done;
                    return;
                }
                self.client_close = Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                // tungstenite queued the close reply; flushing it ends the connection.
                self.phase = Phase::Closing {
                    code: close::NORMAL,
                    reason: "",
                    sent: true,
                    flushed: false,
                    reply: true,
                };
                self.timer.as_mut().reset(Instant::now() + CLOSE_GRACE);
            }
            Some(Ok(_)) => {} // ping (answered by tungstenite), pong, data while closing
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) if !closing => {
                self.violate(Violation::TooBig)
            }
            // The TCP connection ended without a close frame: a network cut, not a violation.
            Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                self.phase = Phase::Done
            }
            Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) if !closing => {
                self.violate(Violation::Protocol)
            }
            Some(Err(_)) | None => self.phase = Phase::Done,
        }
    }

    /// Drives the outbound side one step; `true` when it made progress.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        match self.phase {
            Phase::Open => {
                if self.ping_due {
                    return match Pin::new(&mut self.ws).poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            self.ping_due = false;
                            if Pin::new(&mut self.ws)
                                .start_send(Message::Ping(Default::default()))
                                .is_err()
                            {
                                self.phase = Phase::Done;
                            } else {
                                self.begin_write(self.batch.len());
                            }
                            true
                        }
                        Poll::Ready(Err(_)) => {
                            self.phase = Phase::Done;
                            true
                        }
                        Poll::Pending => false,
                    };
                }
                match self.outbox.poll_next(cx, &mut self.batch) {
                    Poll::Ready(Next::Frames) => {
                        self.begin_write(0);
                        true
                    }
                    Poll::Ready(Next::Close(req)) => {
                        self.start_close(req.code, req.reason);
                        true
                    }
                    Poll::Pending => false,
                }
            }
            Phase::Writing { mut next } => {
                let mut progress = false;
                while next < self.batch.len() {
                    match Pin::new(&mut self.ws).poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let frame = std::mem::take(&mut self.batch[next]);
                            next += 1;
                            progress = true;
                            let message = match self.encoding.wire(frame) {
                                Wire::Text(text) => Message::Text(text),
                                Wire::Binary(bytes) => Message::Binary(bytes.into()),
                            };
                            if Pin::new(&mut self.ws).start_send(message).is_err() {
                                self.phase = Phase::Done;
                                return true;
                            }
                        }
                        Poll::Ready(Err(_)) => {
                            self.phase = Phase::Done;
                            return true;
                        }
                        Poll::Pending => {
                            self.phase = Phase::Writing { next };
                            return progress;
                        }
                    }
                }
                self.phase = Phase::Writing { next };
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.batch.clear();
                        self.conn().written();
                        self.phase = Phase::Open;
                        true
                    }
                    Poll::Ready(Err(_)) => {
                        self.phase = Phase::Done;
                        true
                    }
                    Poll::Pending => progress,
                }
            }
            Phase::Closing {
                code,
                reason,
                sent,
                flushed,
                reply,
            } => {
                if !sent {
                    return match Pin::new(&mut self.ws).poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let frame = CloseFrame {
                                code: CloseCode::from(code),
                                reason: reason.into(),
                            };
                            let sent_ok = Pin::new(&mut self.ws)
                                .start_send(Message::Close(Some(frame)))
                                .is_ok();
                            self.phase = if sent_ok {
                                Phase::Closing {
                                    code,
                                    reason,
                                    sent: true,
                                    flushed,
                                    reply,
                                }
                            } else {
                                Phase::Done
                            };
                            true
                        }
                        Poll::Ready(Err(_)) => {
                            self.phase = Phase::Done;
                            true
                        }
                        Poll::Pending => false,
                    };
                }
                if flushed {
                    return false;
                }
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) if !reply => {
                        self.phase = Phase::Closing {
                            code,
                            reason,
                            sent,
                            flushed: true,
                            reply,
                        };
                        true
                    }
                    Poll::Ready(_) => {
                        self.phase = Phase::Done;
                        true
                    }
                    Poll::Pending => false,
                }
            }
            Phase::Done => false,
        }
    }

    /// Whether to read now. Not while our close frame is still on its way: after
    /// a fatal read error (1009, 1002) a further read would only fail again and
    /// end the connection before the close frame went out.
    fn reading(&self) -> bool {
        match self.phase {
            Phase::Open | Phase::Writing { .. } => true,
            Phase::Closing { flushed, .. } => flushed,
            Phase::Done => false,
        }
    }

    fn begin_write(&mut self, next: usize) {
        self.phase = Phase::Writing { next };
        self.conn().writing();
    }

    /// A violation the socket layer reported: the kit closes the hub side; the
    /// close frame goes out before anything else is read (a further read would
    /// only fail again).
    fn violate(&mut self, violation: Violation) {
        self.conn().violation(violation);
        let (code, reason) = violation.close();
        self.start_close(code, reason);
    }

    /// The timer fired: the close grace, or the kit's liveness decision.
    fn on_timer(&mut self) {
        if matches!(self.phase, Phase::Closing { .. }) {
            // The close handshake did not finish in time.
            self.phase = Phase::Done;
            return;
        }
        match self.conn().tick() {
            // Missed heartbeat, or a client that takes no frames: drop the TCP
            // connection; the session is away and can resume.
            Tick::Drop => self.phase = Phase::Done,
            Tick::Ping(next) => {
                self.ping_due = true;
                self.timer.as_mut().reset(next);
            }
            Tick::Idle(next) => self.timer.as_mut().reset(next),
        }
    }
}

impl<S> Future for ConnectionTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if this.phase == Phase::Done {
                let client_close = this.client_close;
                if let Some(conn) = this.conn.take() {
                    conn.finish(client_close);
                }
                return Poll::Ready(());
            }
            let mut progress = false;
            // Everything already readable is handled before writing, so the
            // replies it triggers leave in one batch.
            while this.reading() {
                let Poll::Ready(item) = Pin::new(&mut this.ws).poll_next(cx) else {
                    break;
                };
                progress = true;
                this.on_inbound(item);
            }
            if this.phase != Phase::Done && this.poll_outbound(cx) {
                progress = true;
            }
            if this.phase != Phase::Done && this.timer.as_mut().poll(cx).is_ready() {
                progress = true;
                this.on_timer();
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
