//! The bounded outbound queue of one connection: the hub pushes frames without
//! blocking, the transport drains them in batches (feed all, flush once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::metrics::Metrics;
use super::millis;
use crate::protocol::{close, Frame};

/// What happens to a session when the server closes its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The session stays for the resume window (slow consumer, drain, heartbeat).
    Away,
    /// Membership ends at once (policy violations, kick).
    End,
    /// The session already moved to another connection (4409): leave it alone.
    Detached,
}

/// A close the server asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// The WebSocket close code to send (one of [`crate::protocol::close`]).
    pub code: u16,
    /// The close frame's reason text.
    pub reason: &'static str,
    /// What becomes of the session once the connection is closed.
    pub fate: Fate,
}

/// A relayed message was refused: its reader is too far behind (see
/// [`Outbox::accepts_relay`]).
#[derive(Debug)]
pub(crate) struct Busy;

/// What a push (or a relay's admission) did, and whether the transport must
/// be woken once the lock is released.
#[derive(Debug, Clone, Copy)]
struct Enqueued {
    queued: bool,
    wake: bool,
}

impl Enqueued {
    const NOT: Enqueued = Enqueued {
        queued: false,
        wake: false,
    };
    const YES: Enqueued = Enqueued {
        queued: true,
        wake: false,
    };
}

/// What the transport should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Frames were appended to the caller's batch: write them all, then flush.
    Frames,
    /// Write nothing more; send this close frame and end the connection.
    Close(CloseRequest),
}

#[derive(Debug)]
struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// Bytes of the batch the transport took last and may still be writing:
    /// counted server-wide until it says they are written (or takes the next).
    in_flight: usize,
    /// Boxed: asked for once in a connection's life, and held by every one.
    close: Option<Box<CloseRequest>>,
    close_taken: bool,
    /// Frames in the last batch taken (at most 255): the queue the next push
    /// allocates is that big, so an idle connection's one frame takes one
    /// slot (32 bytes), a busy one's batch no regrowth.
    last_batch: u8,
    /// The stall clock runs (`filling_since`, on [`millis`]'s clock): since
    /// the last take of a reader that was behind (a batch over 1/64 of the
    /// bound), or since a reader that keeps up went over that mark. Not read
    /// at every take (a clock read per batch).
    filling: bool,
    filling_since: u32,
}

impl State {
    fn start_filling(&mut self) {
        self.filling = true;
        self.filling_since = millis(Instant::now());
    }
}

/// Per-connection outbound queue, bounded by bytes.
///
/// At the bound the queued frames are dropped and the connection is closed with
/// 1008 (slow consumer); the frames are still in the session's replay buffer, so
/// the client loses nothing if it resumes. Peers' relayed messages may fill only
/// half of it (`Outbox::accepts_relay`): past that their senders are refused,
/// so one flooding sender pays instead of a reader that keeps up. Every outbox
/// of a hub adds its queued bytes to one gauge (`outbound_queued_bytes`); while
/// that sum is over the server-wide budget, relays are refused to any reader
/// that is behind by more than 1/64 of its queue.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Mirrors `State::close.is_some()` for a lock-free check per inbound message.
    closing: AtomicBool,
    /// The transport's task, woken when frames or a close arrive.
    waker: AtomicWaker,
    /// The same for every outbox of the hub: one pointer here, not a copy.
    policy: Arc<OutboxPolicy>,
}

/// The bounds every outbox of a hub shares, and where they count.
#[derive(Debug)]
pub(crate) struct OutboxPolicy {
    limit: usize,
    /// A queue over half its bound that the transport has not taken from for
    /// this long belongs to a reader that stopped: it is closed as slow.
    /// In milliseconds, as the stall clock counts (capped at ~24 days).
    stall_ms: u32,
    /// Bytes all outboxes of the hub may hold together (0 = unlimited).
    budget: usize,
    /// Counts frames by type and slow-consumer closes, and holds the server-wide
    /// sum of queued bytes (`None` in unit tests).
    metrics: Option<Arc<Metrics>>,
}

impl OutboxPolicy {
    /// The outboxes of a hub: counted in `metrics`, bounded by `limit` each
    /// and by `budget` (0 = unlimited) together; `stall`: see [`Outbox::accepts_relay`].
    pub(crate) fn new(
        limit: usize,
        budget: usize,
        stall: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        Arc::new(OutboxPolicy {
            limit,
            stall_ms: u32::try_from(stall.as_millis())
                .map_or(i32::MAX as u32, |ms| ms.min(i32::MAX as u32)),
            budget,
            metrics,
        })
    }
}

impl Outbox {
    /// An outbox on its own (no hub, no metrics), bounded by `limit` bytes.
    #[cfg(test)]
    pub(crate) fn new(limit: usize) -> Self {
        Outbox::with_policy(OutboxPolicy::new(limit, 0, Duration::from_secs(10), None))
    }

    /// An outbox of a hub.
    pub(crate) fn with_policy(policy: Arc<OutboxPolicy>) -> Self {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                in_flight: 0,
                close: None,
                close_taken: false,
                last_batch: 1,
                filling: false,
                filling_since: 0,
            }),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            policy,
        }
    }

    /// Whether a peer's relayed message may be queued now: while the queue is
    /// at most half full — or, while all queues together are over the
    /// server-wide budget, at most 1/64 full (a reader that keeps up holds
    /// less than that; the server is bounded by the budget plus 1/64 of each
    /// queue). Past that the sender is refused (`rate-limited`) and this
    /// reader keeps its connection — unless its queue has held over 1/64 of
    /// its bound for the stall time without the transport taking from it: a
    /// reader that stopped is closed as a slow consumer, and the message
    /// waits in its session's replay buffer for a resume.
    pub(crate) fn accepts_relay(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let admitted = self.admits_relay(&mut st);
        drop(st);
        self.wake_if(admitted.wake);
        admitted.queued
    }

    /// [`Outbox::accepts_relay`] and [`Outbox::push`] under one lock: `build`
    /// makes the frame only once the reader has room for it (`Ok(None)` when
    /// it declines). Returns the frame for the sender's replay buffer: it is
    /// there whether or not the queue took it (closing, at the bound).
    pub(crate) fn push_relay(
        &self,
        build: impl FnOnce() -> Option<Frame>,
    ) -> Result<Option<Frame>, Busy> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let admitted = self.admits_relay(&mut st);
        let mut wake = admitted.wake;
        let outcome = if !admitted.queued {
            Err(Busy)
        } else if let Some(frame) = build() {
            wake |= self.enqueue(&mut st, frame.clone()).wake;
            Ok(Some(frame))
        } else {
            Ok(None)
        };
        drop(st);
        self.wake_if(wake);
        outcome
    }

    /// Whether a relay may be queued (`queued` here means admitted); a reader
    /// found stalled is closed as slow (`wake`) and the relay admitted, to
    /// wait in the replay buffer.
    fn admits_relay(&self, st: &mut State) -> Enqueued {
        let (held, share) = if self.over_budget() {
            (st.bytes + st.in_flight, self.policy.limit / 64)
        } else {
            (st.bytes, self.policy.limit / 2)
        };
        if st.close.is_some() || held <= share {
            return Enqueued::YES;
        }
        // No stall clock runs for a reader behind only by the batch being
        // written: the transport's write timeout watches that one.
        // A stall clock is read within ~49 days of its start (a reader behind
        // that long was dropped by the transport's write timeout): the
        // wrapping difference is exact.
        let stalled = st.filling
            && millis(Instant::now()).wrapping_sub(st.filling_since) >= self.policy.stall_ms;
        if !stalled {
            return Enqueued::NOT;
        }
        self.close_slow(st);
        Enqueued {
            queued: true,
            wake: true,
        }
    }

    /// Whether all outboxes of the hub hold more than the server-wide budget.
    fn over_budget(&self) -> bool {
        match &self.policy.metrics {
            Some(m) if self.policy.budget > 0 => {
                m.outbound_queued_bytes.load(Ordering::Relaxed) > self.policy.budget as i64
            }
            _ => false,
        }
    }

    /// The transport could not write for the stall time: the reader stopped.
    /// Ends this connection as a slow consumer (counted once; the session goes
    /// away, resumable) unless a close was asked for already.
    pub fn stalled(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_none() {
            self.close_slow(&mut st);
        }
    }

    /// Drops what is queued and asks for the slow-consumer close (1008).
    fn close_slow(&self, st: &mut State) {
        st.frames.clear();
        self.release(std::mem::take(&mut st.bytes));
        self.closing.store(true, Ordering::Release);
        st.close = Some(Box::new(CloseRequest {
            code: close::POLICY,
            reason: "slow consumer",
            fate: Fate::Away,
        }));
        if let Some(m) = &self.policy.metrics {
            m.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a frame. Returns `false` when the frame was not queued (closing, or
    /// the bound was reached, which starts the slow-consumer close).
    pub(crate) fn push(&self, frame: Frame) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let done = self.enqueue(&mut st, frame);
        drop(st);
        self.wake_if(done.wake);
        done.queued
    }

    fn enqueue(&self, st: &mut State, frame: Frame) -> Enqueued {
        if st.close.is_some() {
            return Enqueued::NOT;
        }
        if st.bytes + frame.len() > self.policy.limit {
            self.close_slow(st);
            return Enqueued {
                queued: false,
                wake: true,
            };
        }
        if let Some(m) = &self.policy.metrics {
            m.message_out(frame.as_str());
            m.outbound_queued_bytes
                .fetch_add(frame.len() as i64, Ordering::Relaxed);
        }
        let was_empty = st.frames.is_empty();
        if st.frames.capacity() == 0 {
            st.frames.reserve_exact(st.last_batch.into());
        }
        let mark = self.policy.limit / 64;
        if !st.filling && st.bytes + frame.len() > mark {
            st.start_filling();
        }
        st.bytes += frame.len();
        st.frames.push_back(frame);
        Enqueued {
            queued: true,
            wake: was_empty,
        }
    }

    /// Wakes the transport's task; called with the state unlocked, so that it
    /// does not wake into a held lock.
    fn wake_if(&self, wake: bool) {
        if wake {
            self.waker.wake();
        }
    }

    /// The transport wrote (flushed) the batch it took last: its bytes leave
    /// the server-wide sum.
    pub fn written(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = std::mem::take(&mut st.in_flight);
        drop(st);
        self.release(bytes);
    }

    /// Gives `bytes` that left the queue back to the server-wide sum.
    fn release(&self, bytes: usize) {
        if let Some(m) = &self.policy.metrics {
            m.outbound_queued_bytes
                .fetch_sub(bytes as i64, Ordering::Relaxed);
        }
    }

    /// Asks the transport to close after writing what is queued. The first request wins.
    pub(crate) fn close(&self, code: u16, reason: &'static str, fate: Fate) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_none() {
            st.close = Some(Box::new(CloseRequest { code, reason, fate }));
            self.closing.store(true, Ordering::Release);
        }
        drop(st);
        self.waker.wake();
    }

    /// Whether a close was requested (the connection is on its way out).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The close the server asked for, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close
            .as_deref()
            .cloned()
    }

    /// Waits for frames (appended to `batch`; a `batch` without capacity takes
    /// the queue's buffer instead) or the close request. Cancel-safe.
    pub async fn next(&self, batch: &mut Vec<Frame>) -> Next {
        std::future::poll_fn(|cx| self.poll_next(cx, batch)).await
    }

    /// Poll form of [`Outbox::next`]: registers the task to be woken by the next
    /// push or close. Only one task may poll an outbox.
    pub fn poll_next(&self, cx: &mut Context<'_>, batch: &mut Vec<Frame>) -> Poll<Next> {
        if let Some(next) = self.try_next(batch) {
            return Poll::Ready(next);
        }
        self.waker.register(cx.waker());
        // A push between the check and the registration would have found no waker.
        match self.try_next(batch) {
            Some(next) => Poll::Ready(next),
            None => Poll::Pending,
        }
    }

    /// [`Outbox::next`] without waiting: `None` when there is nothing to do yet.
    pub fn try_next(&self, batch: &mut Vec<Frame>) -> Option<Next> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.frames.is_empty() {
            st.last_batch = st.frames.len().clamp(1, 255) as u8;
            if batch.capacity() == 0 {
                // A caller without a buffer of its own (the server's
                // transport) takes the queue's, and frees it once written:
                // the next push allocates again, and an idle connection
                // holds no buffer here (one malloc per batch).
                *batch = Vec::from(std::mem::take(&mut st.frames));
            } else {
                batch.extend(st.frames.drain(..));
            }
            // Taking the next batch means the last one was written.
            let taken = std::mem::take(&mut st.bytes);
            self.release(std::mem::replace(&mut st.in_flight, taken));
            // A reader that was behind: its stall clock starts now. One that
            // keeps up (small batches, the common case) reads no clock here;
            // its clock starts when it falls behind (`enqueue`).
            st.filling = false;
            if taken > self.policy.limit / 64 {
                st.start_filling();
            }
            return Some(Next::Frames);
        }
        if let Some(req) = st.close.as_deref().filter(|_| !st.close_taken) {
            let req = req.clone();
            st.close_taken = true;
            return Some(Next::Close(req));
        }
        None
    }
}

impl Drop for Outbox {
    /// Frames never taken or never written (the connection ended first) leave
    /// the server-wide sum.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let bytes = std::mem::take(&mut st.bytes) + std::mem::take(&mut st.in_flight);
        self.release(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_stays_in_its_size_class() {
        // Every connection has one, behind an `Arc` (16 bytes of counts):
        // keep it in jemalloc's 128-byte class (160 before the close request
        // was boxed and the stall clock kept in 4 bytes), apart from the
        // classes short frames use (a join's frames left holes between
        // outboxes).
        let size = std::mem::size_of::<Outbox>() + 16;
        assert!(size <= 128, "{size} bytes");
    }

    #[tokio::test]
    async fn batches_then_close() {
        let o = Outbox::new(1024);
        assert!(o.push(Frame::from("a")));
        assert!(o.push(Frame::from("b")));
        o.close(1000, "bye", Fate::End);
        assert!(!o.push(Frame::from("c")), "no frame after a close request");
        let mut batch = Vec::new();
        assert_eq!(o.next(&mut batch).await, Next::Frames);
        assert_eq!(batch.len(), 2);
        assert!(matches!(
            o.next(&mut batch).await,
            Next::Close(CloseRequest { code: 1000, .. })
        ));
    }

    #[test]
    fn relays_fill_half_then_a_stalled_reader_is_closed() {
        let o = Outbox::with_policy(OutboxPolicy::new(100, 0, Duration::from_millis(30), None));
        assert!(o.push(Frame::from("x".repeat(50))));
        assert!(o.accepts_relay(), "half full: still accepted");
        assert!(o.push(Frame::from("y")));
        assert!(!o.accepts_relay(), "over half: the sender is refused");
        assert!(!o.is_closing(), "the reader keeps its connection");
        // The transport takes the frames: room again.
        let mut batch = Vec::new();
        assert_eq!(o.try_next(&mut batch), Some(Next::Frames));
        assert!(o.accepts_relay());
        // Over half, filling since the stall time and nothing taken: closed as slow.
        assert!(o.push(Frame::from("z".repeat(60))));
        std::thread::sleep(Duration::from_millis(40));
        assert!(o.accepts_relay(), "the message goes to the replay buffer");
        assert!(o.is_closing());
        assert_eq!(o.close_request().map(|c| c.code), Some(close::POLICY));
    }

    #[test]
    fn the_stall_clock_starts_when_a_reader_falls_behind_or_at_its_last_big_take() {
        // 1/64: 100 bytes; half: 3 200.
        let o = Outbox::with_policy(OutboxPolicy::new(6400, 0, Duration::from_millis(30), None));
        let mut batch = Vec::new();
        // A reader that keeps up takes small batches: no clock runs.
        assert!(o.push(Frame::from("s".repeat(50))));
        assert_eq!(o.try_next(&mut batch), Some(Next::Frames));
        std::thread::sleep(Duration::from_millis(40));
        // It falls behind now: its stall time counts from here, not from its take.
        assert!(o.push(Frame::from("f".repeat(3300))));
        assert!(!o.accepts_relay(), "refused, not yet stalled");
        assert!(!o.is_closing());
        // A reader that was behind: the clock starts at its (big) take.
        batch.clear();
        assert_eq!(o.try_next(&mut batch), Some(Next::Frames));
        std::thread::sleep(Duration::from_millis(40));
        assert!(o.push(Frame::from("b".repeat(3300))));
        assert!(o.accepts_relay(), "the message goes to the replay buffer");
        assert!(o.is_closing(), "nothing taken for the stall time since");
    }

    #[test]
    fn over_the_server_budget_only_readers_that_are_behind_refuse_relays() {
        let metrics = Arc::new(Metrics::new());
        let policy = OutboxPolicy::new(6400, 1000, Duration::from_secs(10), Some(metrics.clone()));
        let outbox = || Outbox::with_policy(policy.clone());
        let (behind, also_behind, keeping_up) = (outbox(), outbox(), outbox());
        assert!(behind.push(Frame::from("b".repeat(900))));
        assert!(
            behind.accepts_relay(),
            "within the budget and half its queue"
        );
        assert!(also_behind.push(Frame::from("a".repeat(200))));
        assert!(keeping_up.push(Frame::from("k".repeat(50))));
        assert_eq!(metrics.outbound_queued_bytes.load(Ordering::Relaxed), 1150);
        // Over the budget: queues past 1/64 (100 bytes) refuse, the rest go on.
        assert!(!behind.accepts_relay());
        assert!(!also_behind.accepts_relay());
        assert!(
            keeping_up.accepts_relay(),
            "a reader that keeps up is not refused"
        );
        assert!(!behind.is_closing(), "nobody is closed for the budget");
        // The biggest reader's transport takes its frames: still counted
        // while being written, then under the budget again.
        let mut batch = Vec::new();
        assert_eq!(behind.try_next(&mut batch), Some(Next::Frames));
        assert!(
            !also_behind.accepts_relay(),
            "a batch being written still counts"
        );
        behind.written();
        assert!(also_behind.accepts_relay());
        // Dropped outboxes give their bytes back.
        drop((also_behind, keeping_up));
        assert_eq!(metrics.outbound_queued_bytes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn overflow_closes_as_slow_consumer() {
        let o = Outbox::new(10);
        assert!(o.push(Frame::from("12345678")));
        assert!(!o.push(Frame::from("123")));
        let mut batch = Vec::new();
        match o.next(&mut batch).await {
            Next::Close(req) => {
                assert_eq!(req.code, close::POLICY);
                assert_eq!(req.fate, Fate::Away);
            }
            Next::Frames => panic!("queued frames must be dropped at the bound"),
        }
        assert!(batch.is_empty());
    }
}
