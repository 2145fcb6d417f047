//! Opening a connection: the token, the WebSocket handshake, `connected`, then
//! `resume` of the server session or a re-join of the rooms.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{
    HeaderValue, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL,
};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::outbox::Kind;
use crate::client::TokenSource;
use crate::edge::Encoding;
use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use crate::protocol::{close, SUBPROTOCOL_MSGPACK};

use super::{close_parts, frame_text, write_all, Driver, End, Rejoin, Session, Start, Ws};

impl Driver {
    /// The token for this attempt: the provider is asked every time.
    pub(super) async fn token(&mut self) -> Result<Option<String>, End> {
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
    pub(super) fn unauthorized(&mut self, code: Option<u16>, reason: String) -> End {
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
    pub(super) async fn open(&mut self, token: Option<&str>) -> Result<Ws, End> {
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
            Ok(Ok((ws, response))) => {
                let selected = response.headers().get(SEC_WEBSOCKET_PROTOCOL);
                self.wire = match selected.map(HeaderValue::as_bytes) {
                    Some(p) if p == SUBPROTOCOL_MSGPACK.as_bytes() => Encoding::MessagePack,
                    _ => Encoding::Json,
                };
                Ok(ws)
            }
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
    pub(super) async fn handshake_read(
        &mut self,
        ws: &mut Ws,
        deadline: Instant,
    ) -> Result<Value, End> {
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
                Message::Text(_) | Message::Binary(_) => {
                    let parsed = frame_text(&frame).map(|t| serde_json::from_str::<Value>(&t));
                    match parsed {
                        Some(Ok(v)) if v.is_object() => return Ok(v),
                        _ => tracing::warn!("ignoring a server frame that is not a JSON object"),
                    }
                }
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
    pub(super) async fn establish(&mut self, ws: &mut Ws) -> Result<Start, End> {
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
                let resume = vec![Message::text(resume.to_string())];
                if write_all(ws, resume, self.wire, deadline).await.is_err() {
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
    pub(super) fn adopt(&mut self, session: Session) {
        self.session = Some(session);
        self.seq.reset();
    }

    /// What a close frame from the server means for reconnecting.
    pub(super) fn closed_by_server(
        &mut self,
        code: Option<u16>,
        reason: String,
        stable: bool,
    ) -> End {
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
            // The URL's room can not be joined: retrying the same URL would not help.
            Some(close::JOIN_REFUSED) => {
                let reason = why("the join the URL asks for was refused");
                End::Terminal {
                    code,
                    error: Error::Closed(reason.clone()),
                    reason,
                }
            }
            _ => End::Lost {
                code,
                reason: why("closed by the server"),
                stable,
            },
        }
    }
}
