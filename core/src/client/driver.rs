//! The background task of one client. It owns the WebSocket and runs the
//! connection life cycle: connect (token, handshake, `connected`), resume or
//! re-join, then serve (socket reads, outbox writes, heartbeat, batched acks)
//! until the connection ends; then back off and start again, or stop for good.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{
    HeaderValue, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::backoff::jitter;
use super::outbox::{parse_id, Kind, ReplyTx};
use super::seq::{SeqTracker, Verdict};
use super::{Config, Shared, TokenSource};
use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use crate::protocol::{close, now_millis};

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

    /// The token for this attempt: the provider is asked every time.
    async fn token(&mut self) -> Result<Option<String>, End> {
        let token = match &self.cfg.token {
            None => return Ok(None),
            Some(TokenSource::Static(t)) => t.clone(),
            Some(TokenSource::Provider(provider)) => {
                match timeout(self.cfg.connect_timeout, provider()).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => return Err(End::Failed(e)),
                    Err(_) => {
                        return Err(End::Failed(Error::Timeout(
                            "the token provider did not answer".to_owned(),
                        )))
                    }
                }
            }
        };
        if self.rejected_token.as_deref() == Some(token.as_str()) {
            return Err(End::Terminal {
                code: Some(close::UNAUTHORIZED),
                reason: "the server refused the token and no new token was provided".to_owned(),
                error: Error::protocol(ErrorCode::Unauthorized, "the server refused the token"),
            });
        }
        self.current_token = Some(token.clone());
        Ok(Some(token))
    }

    /// A refused token: terminal unless a provider may give a new one.
    fn unauthorized(&mut self, code: Option<u16>, reason: String) -> End {
        self.rejected_token = self.current_token.clone();
        let error = Error::protocol(ErrorCode::Unauthorized, reason.clone());
        match self.cfg.token {
            Some(TokenSource::Provider(_)) => End::Failed(error),
            _ => End::Terminal {
                code,
                reason,
                error,
            },
        }
    }

    /// TCP connect and WebSocket handshake.
    async fn open(&mut self, token: Option<&str>) -> Result<Ws, End> {
        let config_error = |m: String| End::Terminal {
            code: None,
            reason: m.clone(),
            error: Error::Config(m),
        };
        let mut request = self
            .cfg
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| config_error(format!("invalid URL: {e}")))?;
        if let Some(p) = &self.cfg.subprotocol {
            let v = HeaderValue::from_str(p)
                .map_err(|_| config_error("invalid subprotocol".to_owned()))?;
            request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, v);
        }
        if let Some(t) = token {
            // A header rather than `?token=`: query strings end up in access logs.
            let v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| config_error("the token is not a valid header value".to_owned()))?;
            request.headers_mut().insert(AUTHORIZATION, v);
        }
        // A small read buffer: a signaling client reads small frames, and
        // tungstenite's 128 KiB default is zero-filled before every read.
        let ws_config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let connector = self
            .cfg
            .tls
            .clone()
            .map(tokio_tungstenite::Connector::Rustls);
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(ws_config),
            true,
            connector,
        );
        match timeout(self.cfg.connect_timeout, connecting).await {
            Ok(Ok((ws, _response))) => Ok(ws),
            Err(_) => Err(End::Failed(Error::Timeout(format!(
                "no WebSocket handshake within {:?}",
                self.cfg.connect_timeout
            )))),
            Ok(Err(WsError::Http(response))) => {
                let status = response.status().as_u16();
                let reason = format!("the server refused the WebSocket upgrade with HTTP {status}");
                Err(match status {
                    401 => self.unauthorized(Some(close::UNAUTHORIZED), reason),
                    403 => End::Terminal {
                        code: None,
                        error: Error::protocol(ErrorCode::Forbidden, reason.clone()),
                        reason,
                    },
                    _ => End::Failed(Error::WebSocket(reason)),
                })
            }
            Ok(Err(WsError::Io(e))) => Err(End::Failed(Error::Io(e))),
            Ok(Err(e)) => Err(End::Failed(Error::WebSocket(e.to_string()))),
        }
    }

    /// Reads the next JSON object during the session handshake.
    async fn handshake_read(&mut self, ws: &mut Ws, deadline: Instant) -> Result<Value, End> {
        loop {
            let frame = match timeout_at(deadline, ws.next()).await {
                Err(_) => {
                    return Err(End::Failed(Error::Timeout(
                        "the server did not complete the session handshake in time".to_owned(),
                    )))
                }
                Ok(None) => {
                    return Err(End::Failed(Error::WebSocket(
                        "connection ended during the session handshake".to_owned(),
                    )))
                }
                Ok(Some(Err(e))) => return Err(End::Failed(Error::WebSocket(e.to_string()))),
                Ok(Some(Ok(m))) => m,
            };
            match frame {
                Message::Text(t) => match serde_json::from_str::<Value>(&t) {
                    Ok(v) if v.is_object() => return Ok(v),
                    _ => tracing::warn!("ignoring a server frame that is not a JSON object"),
                },
                Message::Close(frame) => {
                    let (code, reason) = close_parts(frame);
                    return Err(self.closed_by_server(code, reason, false));
                }
                _ => {}
            }
        }
    }

    /// After the WebSocket opens: wait for `connected`, then resume the old
    /// session or adopt the new one.
    async fn establish(&mut self, ws: &mut Ws) -> Result<Start, End> {
        let deadline = Instant::now() + self.cfg.connect_timeout;
        let connected = loop {
            let v = self.handshake_read(ws, deadline).await?;
            if v["type"] == "connected" {
                break v;
            }
            tracing::debug!(message = %v, "ignoring a message before `connected`");
        };
        let fresh = match (
            connected["sessionId"].as_str(),
            connected["resumeToken"].as_str(),
        ) {
            (Some(id), Some(token)) => Session {
                id: id.to_owned(),
                resume_token: token.to_owned(),
            },
            _ => {
                return Err(End::Failed(Error::WebSocket(
                    "`connected` without sessionId/resumeToken".to_owned(),
                )))
            }
        };
        if let Some(ev) = Event::from_message(connected) {
            self.emit(ev);
        }

        let start = match self.session.clone() {
            None => {
                self.adopt(fresh);
                Start::First
            }
            Some(old) => {
                let resume = json!({
                    "type": "resume",
                    "sessionId": old.id,
                    "resumeToken": old.resume_token,
                    "lastSeq": self.seq.last_seq(),
                });
                let sent = timeout_at(deadline, ws.send(Message::text(resume.to_string()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Err(End::Failed(Error::WebSocket(
                        "could not send `resume`".to_owned(),
                    )));
                }
                loop {
                    let v = self.handshake_read(ws, deadline).await?;
                    match v["type"].as_str() {
                        Some("resumed") => {
                            if let (Some(s), Some(token)) =
                                (self.session.as_mut(), v["resumeToken"].as_str())
                            {
                                // A server may rotate the token on resume.
                                s.resume_token = token.to_owned();
                            }
                            if let Some(ev) = Event::from_message(v) {
                                self.emit(ev);
                            }
                            break Start::Resumed;
                        }
                        Some("error") => {
                            // `resume-failed` (or anything else refusing the resume):
                            // the session of this connection's `connected` is ours now.
                            tracing::info!(code = ?v["code"], "resume refused; joining the rooms again");
                            self.adopt(fresh);
                            // The error itself is the new session's first message.
                            self.seq.accept(v["seq"].as_u64());
                            if let Some(ev) = Event::from_message(v) {
                                self.emit(ev);
                            }
                            break Start::ResumeFailed;
                        }
                        _ => {
                            tracing::debug!(message = %v, "ignoring a message before the resume answer")
                        }
                    }
                }
            }
        };
        let mut lost = Vec::new();
        let rejoin_done = {
            let mut st = self.shared.lock();
            st.connected = true;
            st.session_id = self.session.as_ref().map(|s| s.id.clone());
            let mut rejoin_done = None;
            if start == Start::ResumeFailed {
                // Leaves still waiting are moot: the new session is in no room.
                for mut e in st.outbox.remove_where(|e| matches!(e.kind, Kind::Leave(_))) {
                    match &e.kind {
                        Kind::Leave(Some(room)) => st.rooms.retain(|r| r != room),
                        _ => st.rooms.clear(),
                    }
                    e.answer(Ok(Value::Null));
                }
                // Re-joins of an earlier failed resume are replaced by new ones.
                st.outbox
                    .remove_where(|e| matches!(e.kind, Kind::Join { rejoin: true, .. }));
                // Written on the lost session: not resent into the new one, where
                // it would reach peers after `user-left`/`user-joined`, exactly
                // while they renegotiate.
                lost = st.outbox.remove_where(|e| e.sent);
                let rooms = st.rooms.clone();
                let identity = st.identity.clone();
                st.outbox.push_rejoin_front(&rooms, &identity);
                if rooms.is_empty() {
                    self.rejoin = None;
                    rejoin_done = Some(rooms);
                } else {
                    self.rejoin = Some(Rejoin {
                        pending: rooms.iter().cloned().collect(),
                        rooms,
                    });
                }
            }
            st.outbox.mark_all_unwritten();
            rejoin_done
        };
        let lost_error = || {
            Error::protocol(
                ErrorCode::ResumeFailed,
                "written on a session the server could not resume; not sent again",
            )
        };
        for mut e in lost {
            e.answer(Err(lost_error()));
        }
        if start == Start::ResumeFailed {
            // Joins acknowledged whose room-info was lost with the session.
            for (_, _, tx) in self.awaiting_room_info.drain(..) {
                let _ = tx.send(Err(lost_error()));
            }
        }
        // A new connection has a new rate-limit bucket on the server.
        self.paused_until = None;
        if let Some(rooms) = rejoin_done {
            self.emit(Event::Rejoined { rooms });
        }
        Ok(start)
    }

    /// A new server session: its `seq`s start at 1.
    fn adopt(&mut self, session: Session) {
        self.session = Some(session);
        self.seq.reset();
    }

    /// What a close frame from the server means for reconnecting.
    fn closed_by_server(&mut self, code: Option<u16>, reason: String, stable: bool) -> End {
        let why = |what: &str| {
            if reason.is_empty() {
                what.to_owned()
            } else {
                format!("{what}: {reason}")
            }
        };
        match code {
            Some(close::KICKED) => End::Terminal {
                code,
                reason: why("kicked"),
                error: Error::Closed(why("kicked")),
            },
            Some(close::REPLACED) => {
                let reason = why("the session was taken over by a newer connection");
                End::Terminal {
                    code,
                    error: Error::Closed(reason.clone()),
                    reason,
                }
            }
            Some(close::UNAUTHORIZED) => self.unauthorized(code, why("unauthorized")),
            _ => End::Lost {
                code,
                reason: why("closed by the server"),
                stable,
            },
        }
    }

    /// Serves an established connection until it ends.
    async fn serve(&mut self, mut ws: Ws, start: Start) -> End {
        let since = Instant::now();
        let stable = |since: Instant, cfg: &Config| since.elapsed() >= cfg.stable_after;
        let dead_after = self.cfg.heartbeat_interval + self.cfg.heartbeat_timeout;
        // Any frame from the server pushes this back; when it fires, the
        // connection is dead (a black hole never errors by itself).
        let liveness = sleep(dead_after);
        tokio::pin!(liveness);
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.cfg.heartbeat_interval,
            self.cfg.heartbeat_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ack_at: Option<Instant> = None;
        tracing::debug!(?start, "session established");

        // Re-joins, retransmissions and the offline queue, oldest first.
        if let Err(reason) = self.flush_outbox(&mut ws, liveness.deadline()).await {
            return End::Lost {
                code: None,
                reason,
                stable: false,
            };
        }
        loop {
            let mut outgoing: Vec<Message> = Vec::new();
            tokio::select! {
                frame = ws.next() => {
                    match frame {
                        Some(Ok(message)) => {
                            liveness.as_mut().reset(Instant::now() + dead_after);
                            match message {
                                Message::Text(text) => self.on_text(&text),
                                Message::Close(frame) => {
                                    let (code, reason) = close_parts(frame);
                                    return self.closed_by_server(code, reason, stable(since, &self.cfg));
                                }
                                Message::Binary(_) => tracing::warn!("ignoring a binary frame on a JSON connection"),
                                // Pings are answered by tungstenite on the next read/flush.
                                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                            }
                        }
                        Some(Err(e)) => return End::Lost { code: None, reason: e.to_string(), stable: stable(since, &self.cfg) },
                        None => return End::Lost { code: None, reason: "connection ended".to_owned(), stable: stable(since, &self.cfg) },
                    }
                }
                () = &mut liveness => {
                    tracing::info!(?dead_after, "no frame from the server; closing with 4000");
                    let code = close::HEARTBEAT_TIMEOUT;
                    // Best effort: the peer is probably unreachable, so do not wait.
                    let frame = CloseFrame { code: CloseCode::from(code), reason: "heartbeat timeout".into() };
                    let _ = timeout(Duration::from_millis(100), ws.close(Some(frame))).await;
                    return End::Lost { code: Some(code), reason: format!("no frame from the server for {dead_after:?}"), stable: stable(since, &self.cfg) };
                }
                () = self.shared.wake.notified() => {
                    if self.shared.lock().close_requested {
                        self.close_gracefully(&mut ws).await;
                        return End::UserClosed;
                    }
                    // New messages: written below.
                }
                () = sleep_until(self.paused_until.unwrap_or_else(Instant::now)), if self.paused_until.is_some() => {
                    // The rate-limit pause is over: written below, in order.
                    self.paused_until = None;
                }
                _ = ping.tick() => {
                    outgoing.push(Message::text(json!({"type": "ping", "timestamp": now_millis()}).to_string()));
                }
                () = sleep_until(ack_at.unwrap_or_else(Instant::now)), if ack_at.is_some() => {
                    ack_at = None;
                    if let Some(seq) = self.seq.take_ack() {
                        outgoing.push(ack_message(seq));
                    }
                }
            }
            // Cumulative acks: after every `ack_every` messages, or `ack_delay` after
            // the first unacknowledged one, whichever comes first.
            if self.seq.ack_due() {
                ack_at = None;
                if let Some(seq) = self.seq.take_ack() {
                    outgoing.push(ack_message(seq));
                }
            } else if self.seq.ack_owed() && ack_at.is_none() {
                ack_at = Some(Instant::now() + self.cfg.ack_delay);
            }
            if !outgoing.is_empty() {
                if let Err(reason) = write_all(&mut ws, outgoing, liveness.deadline()).await {
                    return End::Lost {
                        code: None,
                        reason,
                        stable: stable(since, &self.cfg),
                    };
                }
            }
            // New messages, slots freed by acknowledgements, the end of a pause.
            if let Err(reason) = self.flush_outbox(&mut ws, liveness.deadline()).await {
                return End::Lost {
                    code: None,
                    reason,
                    stable: stable(since, &self.cfg),
                };
            }
        }
    }

    /// Writes the outbox messages not yet written on this connection, oldest
    /// first, up to `max_in_flight` unacknowledged; nothing during a rate-limit
    /// pause.
    async fn flush_outbox(
        &mut self,
        ws: &mut Ws,
        deadline: Instant,
    ) -> std::result::Result<(), String> {
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        self.paused_until = None;
        let texts = self
            .shared
            .lock()
            .outbox
            .take_unwritten(self.cfg.max_in_flight);
        if texts.is_empty() {
            return Ok(());
        }
        write_all(ws, texts.into_iter().map(Message::Text).collect(), deadline).await
    }

    /// `close()` while connected: write what is queued, wait briefly for its
    /// acknowledgements, then close with 1000 and wait briefly for the server's
    /// close frame.
    async fn close_gracefully(&mut self, ws: &mut Ws) {
        let deadline = Instant::now() + self.cfg.close_timeout;
        if self.flush_outbox(ws, deadline).await.is_ok() {
            while self.shared.lock().outbox.len() > 0 {
                match timeout_at(deadline, ws.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        self.on_text(&text);
                        // Acknowledgements free in-flight slots.
                        if self.flush_outbox(ws, deadline).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => break,
                    Ok(Some(Ok(_))) => {}
                }
            }
        }
        let mut final_ack = Vec::new();
        if let Some(seq) = self.seq.take_ack() {
            final_ack.push(ack_message(seq));
        }
        let _ = write_all(ws, final_ack, deadline).await;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "closed by the client".into(),
        };
        if timeout_at(deadline, ws.close(Some(frame))).await.is_ok() {
            // Drain until the server's close frame ends the stream.
            while let Ok(Some(Ok(_))) = timeout_at(deadline, ws.next()).await {}
        }
    }

    /// Handles one server text frame.
    fn on_text(&mut self, text: &str) {
        let value: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                tracing::warn!("ignoring a server frame that is not a JSON object");
                return;
            }
        };
        if self.seq.accept(value["seq"].as_u64()) == Verdict::Duplicate {
            return;
        }
        let mut after = None;
        match value["type"].as_str().unwrap_or_default() {
            // Consumed by the client: they only concern its own bookkeeping.
            "ack" => {
                if let Some(id) = parse_id(&value["id"]) {
                    self.on_ack(id);
                }
                return;
            }
            "pong" => return,
            "room-info" => after = self.on_room_info(&value),
            "error" => after = self.on_error(&value),
            "draining" => {
                self.drain_hint = value["retryAfterMs"].as_u64().map(Duration::from_millis);
            }
            _ => {}
        }
        match Event::from_message(value) {
            Some(ev) => self.emit(ev),
            None => tracing::debug!("ignoring a server message of unknown type"),
        }
        if let Some(ev) = after {
            self.emit(ev);
        }
    }

    fn on_ack(&mut self, id: u64) {
        let mut st = self.shared.lock();
        // Not found: a second ack for a retransmitted message, or a join already
        // answered by its room-info.
        let Some(mut entry) = st.outbox.remove(id) else {
            return;
        };
        match entry.kind.clone() {
            Kind::Join { room, .. } => {
                // The reply is the room-info, still to come.
                if let Some(tx) = entry.reply.take() {
                    self.awaiting_room_info.push((id, room, tx));
                }
            }
            Kind::Leave(room) => {
                match room {
                    Some(room) => st.rooms.retain(|r| *r != room),
                    None => st.rooms.clear(),
                }
                entry.answer(Ok(Value::Null));
            }
            Kind::Other => entry.answer(Ok(Value::Null)),
        }
    }

    /// A `room-info`: answers the joins of that room; may complete a re-join.
    fn on_room_info(&mut self, value: &Value) -> Option<Event> {
        let room = value["roomId"].as_str()?.to_owned();
        let answered = {
            let mut st = self.shared.lock();
            if !st.rooms.contains(&room) {
                st.rooms.push(room.clone());
            }
            // Keep the server-assigned user id, so that a re-join keeps it.
            if !st.identity.contains_key("userId") {
                let you = value["you"]
                    .as_str()
                    .or_else(|| value["you"]["userId"].as_str());
                if let Some(you) = you {
                    st.identity.insert("userId".to_owned(), you.into());
                }
            }
            // The oldest join of that room the server has seen: one already
            // acknowledged, else the oldest one written in this session. A later
            // join of the same room (say join, leave, join) gets its own room-info.
            match self
                .awaiting_room_info
                .iter()
                .position(|(_, r, _)| *r == room)
            {
                Some(pos) => {
                    let (_, _, tx) = self.awaiting_room_info.remove(pos);
                    let _ = tx.send(Ok(value.clone()));
                    None
                }
                None => st.outbox.remove_first(|e| {
                    e.sent && matches!(&e.kind, Kind::Join { room: r, .. } if *r == room)
                }),
            }
        };
        if let Some(mut e) = answered {
            e.answer(Ok(value.clone()));
        }
        self.rejoin_progress(&room, true)
    }

    /// One re-join answered; `Rejoined` once all are.
    fn rejoin_progress(&mut self, room: &str, joined: bool) -> Option<Event> {
        let rejoin = self.rejoin.as_mut()?;
        if !rejoin.pending.remove(room) {
            return None;
        }
        if !joined {
            rejoin.rooms.retain(|r| r != room);
        }
        if !rejoin.pending.is_empty() {
            return None;
        }
        let rooms = self.rejoin.take().map(|r| r.rooms).unwrap_or_default();
        Some(Event::Rejoined { rooms })
    }

    /// An `error`: fails the message its `ref` names; `rate-limited` instead
    /// schedules every unacknowledged message to be written again.
    fn on_error(&mut self, value: &Value) -> Option<Event> {
        let code_str = value["code"].as_str().unwrap_or_default();
        let code = ErrorCode::parse(code_str).unwrap_or(ErrorCode::Internal);
        if code == ErrorCode::RateLimited {
            // The server dropped one or more messages, named at most one of them,
            // and will not say so again for a second. Which of the written ones
            // got through is unknown: write them all again after the pause (the
            // server acknowledges ids it already has without acting twice).
            let in_flight = {
                let mut st = self.shared.lock();
                let n = st.outbox.in_flight();
                st.outbox.mark_all_unwritten();
                n
            };
            tracing::debug!(
                in_flight,
                pause = ?self.cfg.rate_limit_pause,
                "rate-limited; writing the unacknowledged messages again after a pause"
            );
            self.paused_until = Some(Instant::now() + self.cfg.rate_limit_pause);
            return None;
        }
        let id = parse_id(&value["ref"])?;
        let message = value["message"].as_str().unwrap_or(code_str).to_owned();
        let mut after = None;
        let entry = {
            let mut st = self.shared.lock();
            let entry = st.outbox.remove(id);
            match entry.as_ref().map(|e| &e.kind) {
                Some(Kind::Join { room, rejoin: true }) => {
                    let room = room.clone();
                    st.rooms.retain(|r| *r != room);
                    drop(st);
                    tracing::warn!(%room, %code, "re-join refused");
                    after = self.rejoin_progress(&room, false);
                }
                Some(Kind::Leave(Some(room))) if code == ErrorCode::NotInRoom => {
                    st.rooms.retain(|r| r != room)
                }
                _ => {}
            }
            entry
        };
        match entry {
            Some(mut e) => e.answer(Err(Error::protocol(code, message))),
            None => {
                if let Some(pos) = self
                    .awaiting_room_info
                    .iter()
                    .position(|(i, _, _)| *i == id)
                {
                    let (_, _, tx) = self.awaiting_room_info.remove(pos);
                    let _ = tx.send(Err(Error::protocol(code, message)));
                }
            }
        }
        after
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

fn ack_message(seq: u64) -> Message {
    Message::text(json!({"type": "ack", "seq": seq}).to_string())
}

/// Feeds every message, then flushes once (one write for a batch); bounded by
/// `deadline` so that a peer that stopped reading cannot stall the task past the
/// heartbeat deadline.
async fn write_all(
    ws: &mut Ws,
    messages: Vec<Message>,
    deadline: Instant,
) -> std::result::Result<(), String> {
    if messages.is_empty() {
        return Ok(());
    }
    let writing = async {
        for m in messages {
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
