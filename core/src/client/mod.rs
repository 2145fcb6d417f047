//! The Switchboard client: joins rooms, relays signaling, and survives the network
//! (reconnect with backoff, heartbeat, offline queue, resume, at-least-once sends
//! with server-side de-duplication, so exactly-once while the server's resume
//! buffer holds).
//!
//! [`Client`] is a cheap handle; one background task per client owns the socket
//! (see `driver`). Messages go through a shared, bounded outbox so that a send is
//! queued the moment the method is called, not when its future is first polled.
//!
//! Pacing: at most `max_in_flight` messages (default 32) are written and not yet
//! acknowledged at any time; the rest wait in the outbox for acknowledgements.
//! When the server drops messages over its rate limit it sends one `rate-limited`
//! error (at most one per second, naming at most one of them), so on any
//! `rate-limited` error the client pauses its writes for 1 s, then writes every
//! unacknowledged message again, in order (the server de-duplicates by `id`).
//! The pause is at least the server's one-error-per-second window, so a message
//! dropped after it always produces a new error.
//!
//! After `resume-failed` the client is in a new session, in no room: it re-joins
//! its rooms, then sends the messages that were queued but never written. A
//! message already written on the lost session is not sent again (it may have
//! reached its peer; resent after the re-join it would arrive as a stale offer or
//! candidate while the peers renegotiate): its reply fails with
//! `Error::Protocol { code: ResumeFailed, .. }`. Pending `leave`s succeed (the new
//! session is in no room).

mod backoff;
mod builder;
mod config;
mod driver;
mod outbox;
mod seq;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::Stream;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch, Notify};

use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use outbox::{Kind, Outbox};

pub use builder::ClientBuilder;
use config::Config;
pub use config::TokenFuture;
pub(crate) use config::TokenSource;

/// State shared by the handles and the background task.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Wakes the task: the outbox has new messages, or `close()` was called.
    pub(crate) wake: Notify,
    /// The task holds the only strong sender, so every stream ends (after the
    /// `closed` event) when the task ends.
    pub(crate) events: broadcast::WeakSender<Event>,
    /// A receiver created with the channel, handed to the first `events()` call,
    /// so that the events of the first connection (`connecting`, `open`,
    /// `connected`), emitted before the application could subscribe, are not lost.
    first_events: Mutex<Option<broadcast::Receiver<Event>>>,
    /// Becomes `true` when the task has ended.
    pub(crate) done: watch::Sender<bool>,
    /// Becomes `true` when `close()` is called or the last handle is dropped:
    /// every phase of a connection attempt races against it.
    pub(crate) closing: watch::Sender<bool>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Asks the task to close (idempotent).
    pub(crate) fn request_close(&self) {
        self.lock().close_requested = true;
        self.closing.send_replace(true);
        self.wake.notify_one();
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or user code, so a poisoned lock
        // only means a panic elsewhere; the state itself is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The mutable part of [`Shared`].
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) outbox: Outbox,
    /// Set when the client is closed for good: new sends fail with this reason.
    pub(crate) closed: Option<String>,
    pub(crate) close_requested: bool,
    /// Rooms joined (confirmed by `room-info`), in join order: re-joined after a
    /// lost session.
    pub(crate) rooms: Vec<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) connected: bool,
    /// The identity fields of a `join` (`userId`, `displayName`, `metadata`).
    pub(crate) identity: Map<String, Value>,
}

/// Closes the client when the last handle is dropped.
struct Alive(Arc<Shared>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.request_close();
    }
}

impl fmt::Debug for Alive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Alive")
    }
}

/// A connected signaling client: a cheap, cloneable handle.
///
/// Sending methods queue the message at once (even if the returned [`Reply`] is
/// never awaited or is dropped) and return a future of its outcome. While the
/// connection is down, messages wait in the outbox and are sent, in order, after
/// the reconnect. Dropping every handle closes the client.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
    // Only its Drop matters: the last handle gone closes the client.
    _alive: Arc<Alive>,
}

impl Client {
    fn enqueue<T>(&self, kind: Kind, fields: Map<String, Value>, map: fn(Value) -> T) -> Reply<T> {
        let pushed = {
            let mut st = self.shared.lock();
            match &st.closed {
                Some(reason) => Err(Error::Closed(reason.clone())),
                None => st.outbox.push(kind, fields),
            }
        };
        match pushed {
            Ok((id, rx)) => {
                self.shared.wake.notify_one();
                Reply {
                    id: Some(id),
                    state: ReplyState::Waiting(rx),
                    map,
                }
            }
            Err(e) => Reply {
                id: None,
                state: ReplyState::Failed(Some(e)),
                map,
            },
        }
    }

    fn fields(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Joins a room; resolves with the `room-info` message (`roomId`, `users`,
    /// `peers`, `you`, …), or a protocol error (`room-full`, `user-id-taken`, …).
    pub fn join(&self, room_id: &str) -> Reply<Value> {
        // `userId`, `displayName`, `metadata`: the same for every join, and the
        // user id the server assigned when none was configured.
        let mut fields = self.shared.lock().identity.clone();
        fields.insert("type".to_owned(), "join".into());
        fields.insert("roomId".to_owned(), room_id.into());
        self.enqueue(
            Kind::Join {
                room: room_id.to_owned(),
                rejoin: false,
            },
            fields,
            |v| v,
        )
    }

    /// Leaves a room; resolves when the server has acknowledged it.
    pub fn leave(&self, room_id: &str) -> Reply<()> {
        let fields = Self::fields([("type", "leave".into()), ("roomId", room_id.into())]);
        self.enqueue(Kind::Leave(Some(room_id.to_owned())), fields, drop)
    }

    /// Leaves every room.
    pub fn leave_all(&self) -> Reply<()> {
        self.enqueue(
            Kind::Leave(None),
            Self::fields([("type", "leave".into())]),
            drop,
        )
    }

    /// Sends an SDP offer to peer `to` (in the one room the client is in; use
    /// [`send_json`](Self::send_json) with a `roomId` when in several).
    pub fn send_offer(&self, to: &str, sdp: impl Into<Value>) -> Reply<()> {
        let fields = Self::fields([
            ("type", "offer".into()),
            ("to", to.into()),
            ("sdp", sdp.into()),
        ]);
        self.enqueue(Kind::Other, fields, drop)
    }

    /// Sends an SDP answer to peer `to`.
    pub fn send_answer(&self, to: &str, sdp: impl Into<Value>) -> Reply<()> {
        let fields = Self::fields([
            ("type", "answer".into()),
            ("to", to.into()),
            ("sdp", sdp.into()),
        ]);
        self.enqueue(Kind::Other, fields, drop)
    }

    /// Sends an ICE candidate to peer `to`.
    pub fn send_candidate(&self, to: &str, candidate: impl Into<Value>) -> Reply<()> {
        let fields = Self::fields([
            ("type", "candidate".into()),
            ("to", to.into()),
            ("candidate", candidate.into()),
        ]);
        self.enqueue(Kind::Other, fields, drop)
    }

    /// Sends application data to one peer (`Some(user)`) or to every other peer of
    /// the room (`None`).
    pub fn send(&self, to: Option<&str>, data: impl Into<Value>) -> Reply<()> {
        let mut fields = Self::fields([("type", "message".into()), ("data", data.into())]);
        if let Some(to) = to {
            fields.insert("to".to_owned(), to.into());
        }
        self.enqueue(Kind::Other, fields, drop)
    }

    /// Sends a chat line to the whole room (the sender gets it back too).
    pub fn chat(&self, content: &str) -> Reply<()> {
        let fields = Self::fields([("type", "chat".into()), ("content", content.into())]);
        self.enqueue(Kind::Other, fields, drop)
    }

    /// Sends any client message of PROTOCOL.md §3.1 given as a JSON object with its
    /// `type` (`join`, `leave`, `offer`, `answer`, `candidate`, `message`, `chat`,
    /// `auth`, or one of the server's app types such as `hangup`), e.g. with an
    /// explicit `roomId`. Its `id` is set by the client; a type the server does
    /// not know fails with `unknown-type`.
    /// Resolves with the `room-info` for a `join`, `null` otherwise. `ping`, `ack`
    /// and `resume` are the client's own business and are refused.
    pub fn send_json(&self, message: Value) -> Reply<Value> {
        let invalid = |m: &str| Reply {
            id: None,
            state: ReplyState::Failed(Some(Error::protocol(ErrorCode::InvalidMessage, m))),
            map: |v| v,
        };
        let Value::Object(fields) = message else {
            return invalid("a message must be a JSON object");
        };
        let str_field = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
        let kind = match str_field("type").as_deref() {
            Some("join") => match str_field("roomId") {
                Some(room) => Kind::Join {
                    room,
                    rejoin: false,
                },
                None => return invalid("`join` needs a string `roomId`"),
            },
            Some("leave") => Kind::Leave(str_field("roomId")),
            Some("ping" | "ack" | "resume") => {
                return invalid("`ping`, `ack` and `resume` are sent by the client itself")
            }
            // The protocol's relayed types, `auth`, and the server's app types.
            Some(_) => Kind::Other,
            None => return invalid("`type` must be a string"),
        };
        self.enqueue(kind, fields, |v| v)
    }

    /// The client's events: every server message (`connected`, `room-info`,
    /// `user-joined`, `offer`, …, but not `ack`/`pong`, which the client consumes)
    /// and the connection-state events (`connecting {attempt}` — 0 for the first
    /// connection, then the number of the reconnect attempt announced by
    /// `reconnecting {attempt, delayMs}` —, `open`, `resumed`, `rejoined`,
    /// `reconnect-failed`, `closed`). The stream ends after `closed`.
    ///
    /// The first call gets every event since `connect()` began; later calls get
    /// events from the moment of the call. Each stream buffers up to
    /// `event_capacity` events; a reader that falls further behind loses the oldest
    /// ones (a warning is logged and [`EventStream::missed`] counts them). The
    /// client never blocks on a slow reader, because blocking would stop it from
    /// answering heartbeats.
    pub fn events(&self) -> EventStream {
        let first = self
            .shared
            .first_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let rx = first.or_else(|| self.shared.events.upgrade().map(|tx| tx.subscribe()));
        // After the task ended: an already finished stream.
        EventStream::new(rx.unwrap_or_else(|| broadcast::channel(1).1))
    }

    /// Closes the client: no more reconnects. When connected, messages already in
    /// the outbox are written and their acknowledgements awaited for up to 1 s,
    /// then the WebSocket is closed with 1000 (the server ends the membership
    /// at once: peers see `user-left` with reason `closed`). Every reply still
    /// pending fails with [`Error::Closed`]. Resolves when the background task has
    /// ended; later sends fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.shared.request_close();
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// The current session id (stays the same across resumes).
    pub fn session_id(&self) -> Option<String> {
        self.shared.lock().session_id.clone()
    }

    /// Whether a session is established right now.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Whether the client is closed for good.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Rooms the client is in (confirmed by `room-info`).
    pub fn rooms(&self) -> Vec<String> {
        self.shared.lock().rooms.clone()
    }

    /// Messages in the outbox (queued or awaiting their acknowledgement).
    pub fn pending(&self) -> usize {
        self.shared.lock().outbox.len()
    }

    /// Bytes of JSON text in the outbox.
    pub fn pending_bytes(&self) -> usize {
        self.shared.lock().outbox.bytes()
    }
}

enum ReplyState {
    Failed(Option<Error>),
    Waiting(oneshot::Receiver<Result<Value>>),
}

/// The outcome of one sent message: resolves when the server has acknowledged it
/// (or answered a `join` with `room-info`), or with the server's `error` for it,
/// or [`Error::Closed`] when the client closes first. After `resume-failed`, a
/// message already written on the lost session fails with `resume-failed`
/// instead of being sent again (see the module docs). The message is queued
/// whether or not this future is awaited; dropping it does not un-send it. It has
/// no timeout of its own (a message waits in the outbox through reconnects): wrap
/// it in `tokio::time::timeout` where the application needs one.
#[must_use = "the message is sent anyway; await the reply to learn its outcome"]
pub struct Reply<T> {
    id: Option<u64>,
    state: ReplyState,
    map: fn(Value) -> T,
}

impl<T> Reply<T> {
    /// The message `id` on the wire (`None` when it was refused before queueing).
    pub fn id(&self) -> Option<u64> {
        self.id
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ReplyState::Failed(_) => "failed",
            ReplyState::Waiting(_) => "waiting",
        };
        f.debug_struct("Reply")
            .field("id", &self.id)
            .field("state", &state)
            .finish()
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        match &mut this.state {
            ReplyState::Failed(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| Error::Closed("reply polled after completion".to_owned())))),
            ReplyState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Ok(v))) => Poll::Ready(Ok((this.map)(v))),
                Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(e)),
                Poll::Ready(Err(_)) => {
                    Poll::Ready(Err(Error::Closed("the client task ended".to_owned())))
                }
            },
        }
    }
}

/// A stream of client [`Event`]s; see [`Client::events`].
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Event> + Send>>,
    missed: Arc<AtomicU64>,
}

impl EventStream {
    fn new(rx: broadcast::Receiver<Event>) -> Self {
        let missed = Arc::new(AtomicU64::new(0));
        let counter = missed.clone();
        let inner = futures_util::stream::unfold((rx, counter), |(mut rx, counter)| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, (rx, counter))),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "client event reader fell behind; the oldest events were dropped"
                        );
                        counter.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        EventStream {
            inner: Box::pin(inner),
            missed,
        }
    }

    /// How many events this reader lost by falling more than `event_capacity`
    /// events behind.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("missed", &self.missed())
            .finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}
