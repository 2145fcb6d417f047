//! The bounded outbound queue of one connection: the hub pushes frames without
//! blocking, the transport drains them in batches (feed all, flush once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::metrics::Metrics;
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
    pub code: u16,
    pub reason: &'static str,
    pub fate: Fate,
}

/// What the transport should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Frames were appended to the caller's batch: write them all, then flush.
    Frames,
    /// Write nothing more; send this close frame and end the connection.
    Close(CloseRequest),
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    bytes: usize,
    close: Option<CloseRequest>,
    close_taken: bool,
}

/// Per-connection outbound queue, bounded by bytes.
///
/// At the bound the queued frames are dropped and the connection is closed with
/// 1008 (slow consumer); the frames are still in the session's replay buffer, so
/// the client loses nothing if it resumes.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Mirrors `State::close.is_some()` for a lock-free check per inbound message.
    closing: AtomicBool,
    /// The transport's task, woken when frames or a close arrive.
    waker: AtomicWaker,
    limit: usize,
    /// Counts frames by type and slow-consumer closes (`None` in unit tests).
    metrics: Option<Arc<Metrics>>,
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            limit,
            metrics: None,
        }
    }

    pub(crate) fn with_metrics(limit: usize, metrics: Arc<Metrics>) -> Self {
        Outbox {
            metrics: Some(metrics),
            ..Outbox::new(limit)
        }
    }

    /// Queues a frame. Returns `false` when the frame was not queued (closing, or
    /// the bound was reached, which starts the slow-consumer close).
    pub(crate) fn push(&self, frame: Frame) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_some() {
            return false;
        }
        if st.bytes + frame.len() > self.limit {
            st.frames.clear();
            st.bytes = 0;
            self.closing.store(true, Ordering::Release);
            st.close = Some(CloseRequest {
                code: close::POLICY,
                reason: "slow consumer",
                fate: Fate::Away,
            });
            drop(st);
            if let Some(m) = &self.metrics {
                m.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
            }
            self.waker.wake();
            return false;
        }
        if let Some(m) = &self.metrics {
            m.message_out(frame.as_str());
        }
        let was_empty = st.frames.is_empty();
        st.bytes += frame.len();
        st.frames.push_back(frame);
        drop(st);
        if was_empty {
            self.waker.wake();
        }
        true
    }

    /// Asks the transport to close after writing what is queued. The first request wins.
    pub(crate) fn close(&self, code: u16, reason: &'static str, fate: Fate) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.close.is_none() {
            st.close = Some(CloseRequest { code, reason, fate });
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
            .clone()
    }

    /// Waits for frames (appended to `batch`) or the close request. Cancel-safe.
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
            batch.extend(st.frames.drain(..));
            st.bytes = 0;
            return Some(Next::Frames);
        }
        if let Some(req) = st.close.clone().filter(|_| !st.close_taken) {
            st.close_taken = true;
            return Some(Next::Close(req));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
