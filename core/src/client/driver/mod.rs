//! The background task of one client. It owns the WebSocket and runs the
//! connection life cycle: connect (token, handshake, `connected`), resume or
//! re-join, then serve (socket reads, outbox writes, heartbeat, batched acks)
//! until the connection ends; then back off and start again, or stop for good.
//! This file holds the life cycle; `connect.rs` opens and establishes a
//! connection, `serve.rs` runs an established one.

mod connect;
mod serve;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::backoff::jitter;
use super::outbox::ReplyTx;
use super::seq::SeqTracker;
use super::{Config, Shared};
use crate::edge::Encoding;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::protocol::{close, msgpack};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server session this client holds (what a `resume` needs).
#[derive(Debug, Clone)]
struct Session {
    id: String,
    resume_token: String,
}

/// How one connection ended.
#[derive(Debug)]
enum End {
    /// `close()` was called, or every handle was dropped.
    UserClosed,
    /// The connection could not be opened or its session not established.
    Failed(Error),
    /// An established connection was lost; `stable` when it had been up for
    /// `stable_after`.
    Lost {
        code: Option<u16>,
        reason: String,
        stable: bool,
    },
    /// Do not reconnect (4403, 4409, a refused token with no new one, bad config).
    Terminal {
        code: Option<u16>,
        reason: String,
        error: Error,
    },
}

/// How the session of a new connection came to be.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    First,
    Resumed,
    ResumeFailed,
}

/// Re-joins in progress after a failed resume.
#[derive(Debug)]
struct Rejoin {
    rooms: Vec<String>,
    pending: HashSet<String>,
}

/// The task's own state.
#[derive(Debug)]
pub(crate) struct Driver {
    cfg: Config,
    shared: Arc<Shared>,
    /// The only strong sender: dropped with the task, which ends every stream.
    events: broadcast::Sender<Event>,
    session: Option<Session>,
    seq: SeqTracker,
    /// Joins whose `ack` came before their `room-info`: (id, room, reply).
    awaiting_room_info: Vec<(u64, String, ReplyTx)>,
    rejoin: Option<Rejoin>,
    /// The token the server refused (HTTP 401 / close 4401).
    rejected_token: Option<String>,
    current_token: Option<String>,
    /// `draining.retryAfterMs`: the next reconnect waits a random time up to it.
    drain_hint: Option<Duration>,
    /// After a `rate-limited` error: no outbox writes on this connection before
    /// this instant.
    paused_until: Option<Instant>,
    /// The encoding the server selected for the current connection (its
    /// subprotocol): what this client writes. Reading takes either.
    wire: Encoding,
}

/// Marks the client closed and the task done however the task ends (even by a
/// panic), so `close()` and pending replies never hang.
struct DoneGuard(Arc<Shared>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let entries = {
            let mut st = self.0.lock();
            st.connected = false;
            st.closed
                .get_or_insert_with(|| "the client task ended".to_owned());
            st.outbox.drain()
        };
        for mut e in entries {
            e.answer(Err(Error::Closed("the client task ended".to_owned())));
        }
        self.0.done.send_replace(true);
    }
}

impl Driver {
    pub(crate) fn new(cfg: Config, shared: Arc<Shared>, events: broadcast::Sender<Event>) -> Self {
        let seq = SeqTracker::new(cfg.ack_every);
        Driver {
            cfg,
            shared,
            events,
            session: None,
            seq,
            awaiting_room_info: Vec::new(),
            rejoin: None,
            rejected_token: None,
            current_token: None,
            drain_hint: None,
            paused_until: None,
            wire: Encoding::Json,
        }
    }

    fn emit(&self, event: Event) {
        // No subscriber is fine: events are offered, never owed.
        let _ = self.events.send(event);
    }

    /// The whole life of the client. `ready` gets the outcome of the first
    /// connection; that one is not retried.
    pub(crate) async fn run(mut self, ready: oneshot::Sender<Result<()>>) {
        let _done = DoneGuard(self.shared.clone());
        let mut ready = Some(ready);
        // Reconnect attempts since the last stable connection (0: first connect).
        let mut attempt: u32 = 0;
        loop {
            let end = self.connection(attempt, &mut ready).await;
            if let Some(tx) = ready.take() {
                // The first connection never got a session: report why, and stop.
                let error = match end {
                    End::Failed(e) | End::Terminal { error: e, .. } => e,
                    End::Lost { reason, .. } => Error::WebSocket(reason),
                    End::UserClosed => Error::Closed("closed by the application".to_owned()),
                };
                let reason = error.to_string();
                let _ = tx.send(Err(error));
                self.finish(None, reason);
                return;
            }
            let (code, reason) = match end {
                End::UserClosed => {
                    self.finish(Some(close::NORMAL), "closed by the application".to_owned());
                    return;
                }
                End::Terminal { code, reason, .. } => {
                    self.finish(code, reason);
                    return;
                }
                End::Failed(e) => (None, e.to_string()),
                End::Lost {
                    code,
                    reason,
                    stable,
                } => {
                    if stable {
                        attempt = 0;
                    }
                    (code, reason)
                }
            };
            attempt = attempt.saturating_add(1);
            if self.cfg.max_attempts.is_some_and(|max| attempt > max) {
                let attempts = attempt - 1;
                self.emit(Event::ReconnectFailed { attempts });
                self.finish(
                    code,
                    format!("gave up after {attempts} reconnect attempts; last: {reason}"),
                );
                return;
            }
            let delay = match self.drain_hint.take() {
                Some(hint) => jitter(hint),
                None => self.cfg.backoff.delay(attempt),
            };
            tracing::debug!(attempt, ?delay, %reason, "reconnecting");
            self.emit(Event::Reconnecting {
                attempt,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            });
            if self.sleep_unless_closed(delay).await {
                self.finish(Some(close::NORMAL), "closed by the application".to_owned());
                return;
            }
        }
    }

    /// Sleeps for `delay`; `true` when `close()` was called meanwhile.
    async fn sleep_unless_closed(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.shared.lock().close_requested {
                return true;
            }
            tokio::select! {
                () = sleep_until(until) => return false,
                // Sends while offline also wake us: they just stay queued.
                () = self.shared.wake.notified() => {}
            }
        }
    }

    /// Closes for good: new sends fail, pending replies fail, `closed` is emitted.
    fn finish(&mut self, code: Option<u16>, reason: String) {
        let entries = {
            let mut st = self.shared.lock();
            st.closed = Some(reason.clone());
            st.connected = false;
            st.outbox.drain()
        };
        for mut e in entries {
            e.answer(Err(Error::Closed(reason.clone())));
        }
        for (_, _, tx) in self.awaiting_room_info.drain(..) {
            let _ = tx.send(Err(Error::Closed(reason.clone())));
        }
        tracing::debug!(?code, %reason, "client closed");
        self.emit(Event::Closed { code, reason });
    }

    /// One connection, from the attempt to its end.
    async fn connection(
        &mut self,
        attempt: u32,
        ready: &mut Option<oneshot::Sender<Result<()>>>,
    ) -> End {
        if self.shared.lock().close_requested {
            return End::UserClosed;
        }
        self.emit(Event::Connecting { attempt });
        // Each phase can take up to `connect_timeout`; `close()` ends it at once.
        let mut closing = self.shared.closing.subscribe();
        let token = match unless_closed(&mut closing, self.token()).await {
            Ok(t) => t,
            Err(end) => return end,
        };
        let mut ws = match unless_closed(&mut closing, self.open(token.as_deref())).await {
            Ok(ws) => ws,
            Err(end) => return end,
        };
        self.emit(Event::Open);
        let start = match unless_closed(&mut closing, self.establish(&mut ws)).await {
            Ok(start) => start,
            Err(End::UserClosed) => {
                // Best effort: the handshake was stuck, so do not wait for it.
                let _ = timeout(Duration::from_millis(50), ws.close(None)).await;
                return End::UserClosed;
            }
            Err(end) => return end,
        };
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok(()));
        }
        let end = self.serve(ws, start).await;
        self.shared.lock().connected = false;
        end
    }
}

/// Runs one connection phase unless `close()` is called first.
async fn unless_closed<T>(
    closing: &mut watch::Receiver<bool>,
    phase: impl Future<Output = Result<T, End>>,
) -> Result<T, End> {
    tokio::select! {
        biased;
        // An error means the sender is gone, i.e. the client with it.
        _ = closing.wait_for(|closed| *closed) => Err(End::UserClosed),
        r = phase => r,
    }
}

/// The JSON text of a data frame: text as is, binary decoded from MessagePack
/// (`None` for other frames, and for binary that does not decode).
fn frame_text(message: &Message) -> Option<std::borrow::Cow<'_, str>> {
    match message {
        Message::Text(t) => Some(std::borrow::Cow::Borrowed(t.as_str())),
        Message::Binary(b) => match msgpack::decode(b) {
            Ok(json) => Some(std::borrow::Cow::Owned(json)),
            Err(e) => {
                tracing::warn!("ignoring a server frame that is not MessagePack: {e}");
                None
            }
        },
        _ => None,
    }
}

fn ack_message(seq: u64) -> Message {
    Message::text(json!({"type": "ack", "seq": seq}).to_string())
}

/// Feeds every message, then flushes once (one write for a batch); bounded by
/// `deadline` so that a peer that stopped reading cannot stall the task past the
/// heartbeat deadline.
async fn write_all(
    ws: &mut Ws,
    messages: Vec<Message>,
    wire: Encoding,
    deadline: Instant,
) -> std::result::Result<(), String> {
    if messages.is_empty() {
        return Ok(());
    }
    let writing = async {
        for m in messages {
            let m = match (wire, m) {
                (Encoding::MessagePack, Message::Text(t)) => {
                    Message::Binary(msgpack::encode(t.as_str()).into())
                }
                (_, m) => m,
            };
            ws.feed(m).await?;
        }
        ws.flush().await
    };
    match timeout_at(deadline, writing).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err("write stalled past the heartbeat deadline".to_owned()),
    }
}

fn close_parts(frame: Option<CloseFrame>) -> (Option<u16>, String) {
    match frame {
        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
        None => (None, String::new()),
    }
}
