//! The built-in transport of the connection kit: one socket (TCP or TLS)
//! driving an [`EdgeConnection`]. It frames the socket itself ([`framing`],
//! [`Reader`]): reads go through one buffer per worker thread, each outbox
//! batch is encoded into another and written with one call, and a connection
//! keeps bytes of its own only while a frame is split across reads or the
//! socket is full. The rules (sizes, frame types, heartbeat, stuck writes) are
//! the kit's.
//!
//! It is a hand-written `Future` rather than an `async fn` with `select!`: the
//! task lives as long as the connection, and every byte of its state is held
//! by every idle connection. Every source is polled once per turn and
//! registers its waker; the turn repeats while any made progress.
//!
//! [`framing`]: super::framing

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::framing::{self, Opcode};
use super::ticker::Census;
use super::ws_read::{Flow, Inbound, Reader};
use crate::edge::{EdgeConnection, Tick, Violation, Wire};
use crate::hub::Next;

/// How long to wait for the close handshake to finish after a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A worker's encode buffer is kept up to this size between batches; a larger
/// one (a batch of big frames) is freed after its write.
const KEEP_ENCODE_BYTES: usize = 256 * 1024;

thread_local! {
    static ENCODE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading, and writing what the outbox gives.
    Open,
    /// A close frame is due (`sent` once encoded): write it, then read until
    /// the client's reply or the grace deadline. `reply` is set when the client
    /// closed first: once our answer is out, the connection is over.
    /// The close frame's reason is the request's (encoded as it comes), the
    /// violation's for `code`, or none when answering the client's close.
    Closing {
        code: u16,
        sent: bool,
        flushed: bool,
        reply: bool,
    },
    Done,
}

/// Runs a connection to its end, then settles its session in the hub.
///
/// Every open connection holds one for its lifetime, inside a tokio task that
/// adds 104 bytes and rounds up to 128: at most 152 bytes keep the task in 256
/// (`connection_future_stays_small`). What only some connections need for a
/// moment (a frame split across reads, a full socket's rest, a pong) is boxed
/// and freed after use.
pub(crate) struct ConnectionTask<S> {
    io: S,
    reader: Reader,
    state: State,
}

/// What waits to be written besides the outbox: the rest of a write the
/// socket did not take (`unsent[at..]`), and the pong for the client's latest
/// ping. `None` for a connection with neither.
#[derive(Default)]
struct Pending {
    unsent: Vec<u8>,
    at: usize,
    pong: Option<Box<[u8]>>,
}

/// Everything of a connection but its socket and its reads.
struct State {
    conn: Option<EdgeConnection>,
    pending: Option<Box<Pending>>,
    /// Written bytes await a flush (TLS); `batch_out`: they carry an outbox
    /// batch, reported `written` once flushed.
    flush_due: bool,
    batch_out: bool,
    /// The kit's write clock runs (a write or flush waited for the socket).
    write_clock: bool,
    phase: Phase,
    ping_due: bool,
    client_close: Option<u16>,
    /// The connection's next deadline on the server's ticker, moved only when
    /// it came, never per message: the kit's liveness clock says when it is.
    timer: u64,
    /// The task is registered with the ticker for `timer`.
    timer_armed: bool,
    /// The server's ticker, where this task counts itself alive.
    ticker: Census,
}

impl<S> std::fmt::Debug for ConnectionTask<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTask")
            .field("phase", &self.state.phase)
            .finish_non_exhaustive()
    }
}

impl<S> ConnectionTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// `rest`: bytes read after the upgrade request (the client's first frames).
    pub(crate) fn new(io: S, rest: Vec<u8>, mut conn: EdgeConnection, ticker: Census) -> Self {
        let next = match conn.tick() {
            Tick::Idle(next) | Tick::Ping(next) => next,
            Tick::Drop => Instant::now(),
        };
        ConnectionTask {
            io,
            reader: Reader::new(rest),
            state: State {
                conn: Some(conn),
                pending: None,
                flush_due: false,
                batch_out: false,
                write_clock: false,
                phase: Phase::Open,
                ping_due: false,
                client_close: None,
                timer: ticker.deadline(next),
                timer_armed: false,
                ticker,
            },
        }
    }
}

impl State {
    fn start_close(&mut self, code: u16) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
            return;
        }
        self.phase = Phase::Closing {
            code,
            sent: false,
            flushed: false,
            reply: false,
        };
        self.set_timer(Instant::now() + CLOSE_GRACE);
    }

    fn set_timer(&mut self, at: Instant) {
        self.timer = self.ticker.deadline(at);
        self.timer_armed = false;
    }

    fn conn(&mut self) -> &mut EdgeConnection {
        self.conn
            .as_mut()
            .expect("the connection lives until the task ends")
    }

    /// One inbound frame; `Stop` once the connection is closing or over.
    fn on_inbound(&mut self, frame: Inbound<'_>) -> Flow {
        let closing = matches!(self.phase, Phase::Closing { .. });
        match frame {
            Inbound::Text(text) if !closing => self.conn().text_in_read(text),
            Inbound::Binary(bytes) if !closing => self.conn().binary_in_read(bytes),
            Inbound::Ping(payload) if !closing => self.pending_mut().pong = Some(payload.into()),
            Inbound::Close(code) => {
                if closing {
                    // The client's answer to our close: the handshake is complete.
                    self.phase = Phase::Done;
                    return Flow::Stop;
                }
                self.client_close = Some(code);
                self.phase = Phase::Closing {
                    code,
                    sent: false,
                    flushed: false,
                    reply: true,
                };
                self.set_timer(Instant::now() + CLOSE_GRACE);
            }
            Inbound::Violation(v) if !closing => self.violate(v),
            // While closing: the stream can not be framed any more, so the
            // client's close could not be recognised; the connection is over.
            Inbound::Violation(_) => {
                self.phase = Phase::Done;
                return Flow::Stop;
            }
            // Pongs only count as heard; data while closing is dropped.
            Inbound::Text(_) | Inbound::Binary(_) | Inbound::Ping(_) | Inbound::Pong => {}
        }
        // Go on with this read while reading at all: after our close, the
        // client's last frames and its close may share one read.
        if self.reading() {
            Flow::Go
        } else {
            Flow::Stop
        }
    }

    /// Encodes what is due next into `out`: the pong, the ping, an outbox
    /// batch, the close frame.
    fn compose(&mut self, out: &mut Vec<u8>, cx: &mut Context<'_>) {
        if let Some(payload) = self.pending.as_mut().and_then(|p| p.pong.take()) {
            framing::encode(out, Opcode::Pong, &payload);
            self.settle_pending();
        }
        let mut reason = None;
        if self.phase == Phase::Open {
            if std::mem::take(&mut self.ping_due) {
                framing::encode(out, Opcode::Ping, &[]);
            }
            // The outbox's buffer, freed once encoded: an idle connection
            // keeps none (see `Outbox::try_next`).
            let mut batch = Vec::new();
            let conn = self.conn();
            let encoding = conn.encoding();
            match conn.outbox().poll_next(cx, &mut batch) {
                Poll::Ready(Next::Frames) => {
                    for frame in batch {
                        match encoding.wire(frame) {
                            Wire::Text(text) => framing::encode(out, Opcode::Text, text.as_bytes()),
                            Wire::Binary(bytes) => framing::encode(out, Opcode::Binary, &bytes),
                        }
                    }
                    self.batch_out = true;
                }
                Poll::Ready(Next::Close(req)) => {
                    self.start_close(req.code);
                    reason = Some(req.reason);
                }
                Poll::Pending => {}
            }
        }
        let answering = self.client_close.is_some();
        if let Phase::Closing {
            code,
            sent: sent @ false,
            ..
        } = &mut self.phase
        {
            *sent = true;
            if *code == 1005 {
                framing::encode(out, Opcode::Close, &[]); // the client gave no code
            } else {
                let reason = reason.unwrap_or_else(|| match Violation::from_code(*code) {
                    Some(violation) if !answering => violation.close().1,
                    _ => "",
                });
                framing::encode_close(out, *code, reason);
            }
        }
    }

    fn pending_mut(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Box::default)
    }

    /// Frees the pending box once nothing waits in it.
    fn settle_pending(&mut self) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.at == p.unsent.len() && p.pong.is_none())
        {
            self.pending = None;
        }
    }

    /// Everything written is flushed: the batch is out, the close frame is sent.
    fn flushed(&mut self) {
        self.flush_due = false;
        let batch = std::mem::take(&mut self.batch_out);
        if std::mem::take(&mut self.write_clock) || batch {
            self.conn().written();
        }
        if let Phase::Closing {
            sent: true,
            flushed,
            reply,
            ..
        } = &mut self.phase
        {
            if *reply {
                self.phase = Phase::Done;
            } else {
                *flushed = true;
            }
        }
    }

    /// A write or flush waits for the socket: the kit's clock watches for one
    /// that stays stuck (a write that goes out at once never reads the clock).
    fn write_waits(&mut self) {
        if !std::mem::replace(&mut self.write_clock, true) {
            self.conn().writing();
        }
    }

    fn fail(&mut self) -> bool {
        self.phase = Phase::Done;
        true
    }

    /// Whether to read now. Not while our close frame is still on its way:
    /// after a violation, reading on would only end the connection before the
    /// close frame went out.
    fn reading(&self) -> bool {
        match self.phase {
            Phase::Open => true,
            Phase::Closing { flushed, .. } => flushed,
            Phase::Done => false,
        }
    }

    /// A violation the framing reported: the kit closes the hub side; the
    /// close frame goes out before anything else is read.
    fn violate(&mut self, violation: Violation) {
        self.conn().violation(violation);
        self.start_close(violation.close().0);
        // Failing the connection (RFC 6455 §7.1.7) needs no handshake: the
        // stream can not be framed any more, so the client's close could not be
        // recognised. Once the close frame is out, the connection is over.
        if let Phase::Closing { reply, .. } = &mut self.phase {
            *reply = true;
        }
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
                self.set_timer(next);
            }
            Tick::Idle(next) => self.set_timer(next),
        }
    }
}

impl<S> ConnectionTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Drives the outbound side one step; `true` when it made progress.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            if let Some(p) = self
                .state
                .pending
                .as_mut()
                .filter(|p| p.at < p.unsent.len())
            {
                match Pin::new(&mut self.io).poll_write(cx, &p.unsent[p.at..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        progress = true;
                        p.at += n;
                        if p.at == p.unsent.len() {
                            p.unsent = Vec::new();
                            p.at = 0;
                            self.state.settle_pending();
                        }
                        continue;
                    }
                    Poll::Ready(_) => return self.state.fail(),
                    Poll::Pending => return progress,
                }
            }
            if self.state.flush_due {
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.state.flushed(),
                    Poll::Ready(Err(_)) => return self.state.fail(),
                    // TLS: the record layer took the bytes, the socket did not.
                    Poll::Pending => {
                        self.state.write_waits();
                        return progress;
                    }
                }
                progress = true;
                if self.state.phase == Phase::Done {
                    return true;
                }
            }
            let mut out = ENCODE.take();
            self.state.compose(&mut out, cx);
            if out.is_empty() {
                ENCODE.set(out);
                return progress;
            }
            progress = true;
            self.state.flush_due = true;
            let mut at = 0;
            let failed = loop {
                match Pin::new(&mut self.io).poll_write(cx, &out[at..]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        at += n;
                        if at == out.len() {
                            break false;
                        }
                    }
                    Poll::Ready(_) => break true,
                    Poll::Pending => {
                        // The socket is full: the rest waits in the connection,
                        // and the kit's clock watches for a write that stays stuck
                        // (a write that goes out at once never reads the clock).
                        let pending = self.state.pending_mut();
                        pending.unsent = out[at..].to_vec();
                        pending.at = 0;
                        self.state.write_waits();
                        break false;
                    }
                }
            };
            out.clear();
            if out.capacity() <= KEEP_ENCODE_BYTES {
                ENCODE.set(out);
            }
            if failed {
                return self.state.fail();
            }
        }
    }

    /// Reads until the socket has nothing more; `true` when anything came in.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while self.state.reading() {
            let state = &mut self.state;
            let max_message = state.conn().max_message_bytes();
            match self
                .reader
                .poll_read(&mut self.io, cx, max_message, &mut |f| state.on_inbound(f))
            {
                Poll::Pending => break,
                Poll::Ready(Ok(true)) => {
                    progress = true;
                    if let Some(conn) = self.state.conn.as_mut() {
                        conn.heard();
                    }
                }
                // The TCP connection ended without a close frame (a network cut,
                // not a violation), or failed.
                Poll::Ready(Ok(false) | Err(_)) => {
                    self.state.phase = Phase::Done;
                    return true;
                }
            }
        }
        progress
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
            let st = &mut this.state;
            if st.ticker.is_cut() {
                // A drain that ran out of time: the socket is dropped, the
                // session goes away (as after a network cut).
                st.phase = Phase::Done;
            }
            if st.phase == Phase::Done {
                let client_close = st.client_close;
                if let Some(conn) = st.conn.take() {
                    conn.finish(client_close);
                }
                return Poll::Ready(());
            }
            // What peers queued leaves before this socket's input is read: a
            // task woken by both (a peer's message and its own client's) would
            // otherwise hold the peer's message behind a read and its routing.
            // The replies the input triggers leave on the loop's next turn.
            // Not once the server asked to close: input that is already here
            // was sent before the client could see the close, and is handled
            // before the close frame goes out (after it, input is dropped).
            let write_first = !st.conn.as_ref().is_some_and(|c| c.outbox().is_closing());
            let mut progress = write_first && this.poll_outbound(cx);
            if this.state.phase != Phase::Done && this.poll_inbound(cx) {
                progress = true;
            }
            if !write_first && this.state.phase != Phase::Done && this.poll_outbound(cx) {
                progress = true;
            }
            let st = &mut this.state;
            if st.phase != Phase::Done && st.ticker.has_passed(st.timer) {
                progress = true;
                st.on_timer();
            }
            if !progress {
                if !std::mem::replace(&mut st.timer_armed, true) {
                    st.ticker.wake_at(st.timer, cx.waker());
                }
                return Poll::Pending;
            }
        }
    }
}
