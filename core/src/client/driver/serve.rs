//! Serving an established connection: socket reads (replies, acks, events),
//! outbox writes, the heartbeat, batched acks and the graceful close.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::client::outbox::{parse_id, Kind};
use crate::client::seq::Verdict;
use crate::client::Config;
use crate::error::{Error, ErrorCode};
use crate::event::Event;
use crate::protocol::{close, now_millis};

use super::{ack_message, close_parts, frame_text, write_all, Driver, End, Start, Ws};

impl Driver {
    /// Serves an established connection until it ends.
    pub(super) async fn serve(&mut self, mut ws: Ws, start: Start) -> End {
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
                                Message::Text(_) | Message::Binary(_) => {
                                    if let Some(text) = frame_text(&message) {
                                        self.on_text(&text);
                                    }
                                }
                                Message::Close(frame) => {
                                    let (code, reason) = close_parts(frame);
                                    return self.closed_by_server(code, reason, stable(since, &self.cfg));
                                }
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
                if let Err(reason) =
                    write_all(&mut ws, outgoing, self.wire, liveness.deadline()).await
                {
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
    pub(super) async fn flush_outbox(
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
        write_all(
            ws,
            texts.into_iter().map(Message::Text).collect(),
            self.wire,
            deadline,
        )
        .await
    }

    /// `close()` while connected: write what is queued, wait briefly for its
    /// acknowledgements, then close with 1000 and wait briefly for the server's
    /// close frame.
    pub(super) async fn close_gracefully(&mut self, ws: &mut Ws) {
        let deadline = Instant::now() + self.cfg.close_timeout;
        if self.flush_outbox(ws, deadline).await.is_ok() {
            while self.shared.lock().outbox.len() > 0 {
                match timeout_at(deadline, ws.next()).await {
                    Ok(Some(Ok(message @ (Message::Text(_) | Message::Binary(_))))) => {
                        if let Some(text) = frame_text(&message) {
                            self.on_text(&text);
                        }
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
        let _ = write_all(ws, final_ack, self.wire, deadline).await;
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
    pub(super) fn on_text(&mut self, text: &str) {
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

    pub(super) fn on_ack(&mut self, id: u64) {
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
    pub(super) fn on_room_info(&mut self, value: &Value) -> Option<Event> {
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
    pub(super) fn rejoin_progress(&mut self, room: &str, joined: bool) -> Option<Event> {
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
    pub(super) fn on_error(&mut self, value: &Value) -> Option<Event> {
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
