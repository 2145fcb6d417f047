//! The operator HTTP API (`/api/v1/…`, docs/API.md): server info, rooms and
//! their members, send, broadcast and kick — for the whole cluster from any
//! node — behind the API key. One implementation: every host mode hands the
//! request's facts to [`Edge::api`] and writes the [`HttpReply`] back.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::{Edge, HttpReply};
use crate::error::{Error, ErrorCode};
use crate::protocol::url::{percent_decode_path, query_param};

/// Where the API lives.
pub const API_PREFIX: &str = "/api/v1";

/// The OpenAPI document, served at `/api/v1/openapi.json` (checked against the
/// real responses by `core/tests/api.rs`).
const OPENAPI: &str = include_str!("openapi.json");

/// Rooms per page when `limit` is not given, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The facts of one API request.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The request body (hosts refuse one over [`Edge::api_body_limit`] with 413
    /// before reading it, or pass it here to be refused).
    pub body: &'a [u8],
}

/// Rooms a snapshot lists at most (the admin page pages through the rest).
const SNAPSHOT_ROOMS: usize = 200;

/// One member as the API shows it; local members are on `here` (cluster mode).
fn member_json(p: crate::hub::PeerInfo, here: Option<&str>) -> Value {
    json!({
        "userId": p.user_id,
        "displayName": p.display_name,
        "metadata": p.metadata,
        "connected": p.connected,
        "node": p.node.or_else(|| here.map(str::to_owned)),
    })
}

/// An `{"error":{"code","message"}}` answer.
fn error(status: u16, code: &str, message: &str) -> HttpReply {
    reply(status, json!({"error": {"code": code, "message": message}}))
}

fn reply(status: u16, body: Value) -> HttpReply {
    HttpReply {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

/// The HTTP status of a protocol error.
fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::UnknownType => 400,
        ErrorCode::Unauthorized => 401,
        ErrorCode::Forbidden => 403,
        ErrorCode::NotInRoom | ErrorCode::PeerNotFound => 404,
        ErrorCode::RoomFull | ErrorCode::UserIdTaken => 409,
        ErrorCode::MessageTooBig => 413,
        ErrorCode::RateLimited => 429,
        _ => 503,
    }
}

fn from_error(e: &Error) -> HttpReply {
    match e {
        Error::Protocol { code, message } => error(status_of(*code), code.as_str(), message),
        other => error(500, "internal", &other.to_string()),
    }
}

impl Edge {
    /// Whether `path` belongs to the API (hosts route it to [`Edge::api`]).
    pub fn is_api_path(path: &str) -> bool {
        path == API_PREFIX || path.starts_with("/api/v1/")
    }

    /// The largest request body the API takes: a message of the size limit
    /// plus room for its envelope. A host refuses a longer `Content-Length`
    /// with 413 before reading it.
    pub fn api_body_limit(&self) -> usize {
        self.config().max_message_bytes + 1024
    }

    /// Whether the API is on (an API key is configured).
    pub fn api_enabled(&self) -> bool {
        self.config().api_key.is_some()
    }

    /// Whether `authorization` carries the API key (`Bearer <key>`, compared
    /// in constant time). A client's JWT never does: only the key is accepted.
    pub fn api_authorized(&self, authorization: Option<&str>) -> bool {
        let Some(key) = &self.config().api_key else {
            return false;
        };
        authorization
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, token)| key.matches(token.trim()))
    }

    /// Answers one API request.
    pub fn api(&self, req: &ApiRequest<'_>) -> HttpReply {
        if !self.api_enabled() {
            return error(
                404,
                "not-found",
                "the API is off: configure an API key (--api-key)",
            );
        }
        let rest = req.path.strip_prefix(API_PREFIX).unwrap_or("");
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode_path)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        // The document describes the API; it holds no data.
        if segments == ["openapi.json"] {
            return match req.method {
                "GET" | "HEAD" => HttpReply {
                    status: 200,
                    content_type: "application/json",
                    body: OPENAPI.to_owned(),
                },
                _ => error(405, "method-not-allowed", "use GET"),
            };
        }
        if !self.api_authorized(req.authorization) {
            return error(401, "unauthorized", "send Authorization: Bearer <API key>");
        }
        let (get, post) = (req.method == "GET", req.method == "POST");
        match (segments.as_slice(), get, post) {
            (["info"], true, _) => self.api_info(),
            (["snapshot"], true, _) => reply(200, self.api_snapshot()),
            (["rooms"], true, _) => self.api_rooms(req.query),
            (["rooms", room], true, _) => self.api_room(room),
            (["rooms", room, "broadcast"], _, true) => self.api_broadcast(room, req.body),
            (["rooms", room, "users", user, "send"], _, true) => {
                self.api_send(room, user, req.body)
            }
            (["rooms", room, "users", user, "kick"], _, true) => self.api_kick(room, user),
            (["info" | "snapshot" | "rooms"] | ["rooms", _], false, _) => {
                error(405, "method-not-allowed", "use GET")
            }
            (["rooms", _, "broadcast"] | ["rooms", _, "users", _, "send" | "kick"], _, false) => {
                error(405, "method-not-allowed", "use POST")
            }
            _ => error(
                404,
                "not-found",
                "no such API endpoint (see /api/v1/openapi.json)",
            ),
        }
    }

    /// `GET /api/v1/info`: this server and, in a cluster, its nodes.
    fn api_info(&self) -> HttpReply {
        reply(200, self.info_json())
    }

    /// What the admin page shows at once: `info` and the first
    /// `SNAPSHOT_ROOMS` rooms with their members (`GET /api/v1/snapshot`,
    /// and each line of the built-in server's `GET /api/v1/stream`).
    pub fn api_snapshot(&self) -> Value {
        let here = self.cluster().map(|c| c.node_id().to_owned());
        let rooms = self.hub().rooms();
        let total = rooms.len();
        let rooms: Vec<Value> = rooms
            .into_iter()
            .take(SNAPSHOT_ROOMS)
            .map(|r| {
                let members: Vec<Value> = r
                    .peers
                    .into_iter()
                    .map(|p| member_json(p, here.as_deref()))
                    .collect();
                json!({"roomId": r.room_id, "members": members})
            })
            .collect();
        json!({"info": self.info_json(), "rooms": rooms, "roomsTotal": total})
    }

    fn info_json(&self) -> Value {
        let metrics = self.hub().metrics();
        let cluster = self.cluster();
        json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptimeSeconds": self.inner.started.elapsed().as_secs_f64(),
                "draining": self.hub().is_draining(),
                "connections": self.connection_count(),
                "rooms": self.hub().rooms().len(),
                "messagesReceived": metrics.messages_received.load(Ordering::Relaxed),
                "messagesRelayed": metrics.messages_relayed.load(Ordering::Relaxed),
                "node": cluster.map(|c| c.node_id().to_owned()),
                "nodes": cluster.map(|c| c.nodes()),
        })
    }

    /// `GET /api/v1/rooms?limit=&after=`: room ids and member counts, sorted by
    /// id, a page at a time (`next` is the `after` of the next page).
    fn api_rooms(&self, query: Option<&str>) -> HttpReply {
        let param = |name| query.and_then(|q| query_param(q, name));
        let limit = match param("limit").map(|l| l.parse::<usize>()) {
            None => DEFAULT_PAGE,
            Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => {
                return error(
                    400,
                    "invalid-message",
                    &format!("`limit` is a number from 1 to {MAX_PAGE}"),
                )
            }
        };
        let after = param("after");
        let rooms = self.hub().rooms();
        let mut page = rooms
            .iter()
            .filter(|r| after.as_deref().is_none_or(|a| r.room_id.as_str() > a));
        let items: Vec<Value> = page
            .by_ref()
            .take(limit)
            .map(|r| json!({"roomId": r.room_id, "members": r.peers.len()}))
            .collect();
        let next = match page.next() {
            Some(_) => items.last().map(|r| r["roomId"].clone()),
            None => None,
        };
        reply(200, json!({"rooms": items, "next": next}))
    }

    /// `GET /api/v1/rooms/{roomId}`: the members, in join order.
    fn api_room(&self, room_id: &str) -> HttpReply {
        let Some(peers) = self.hub().peers(room_id) else {
            return error(404, "not-in-room", &format!("no room `{room_id}`"));
        };
        let here = self.cluster().map(|c| c.node_id().to_owned());
        let members: Vec<Value> = peers
            .into_iter()
            .map(|p| member_json(p, here.as_deref()))
            .collect();
        reply(200, json!({"roomId": room_id, "members": members}))
    }

    /// `POST /api/v1/rooms/{roomId}/broadcast` with a message: to every member.
    fn api_broadcast(&self, room_id: &str, body: &[u8]) -> HttpReply {
        let message = match self.api_message(body) {
            Ok(m) => m,
            Err(e) => return e,
        };
        match self.hub().broadcast(room_id, &message) {
            Ok(n) => reply(200, json!({"delivered": n})),
            Err(e) => from_error(&e),
        }
    }

    /// `POST /api/v1/rooms/{roomId}/users/{userId}/send` with a message.
    fn api_send(&self, room_id: &str, user_id: &str, body: &[u8]) -> HttpReply {
        let message = match self.api_message(body) {
            Ok(m) => m,
            Err(e) => return e,
        };
        match self.hub().send(room_id, user_id, &message) {
            Ok(()) => reply(200, json!({"delivered": 1})),
            Err(e) => from_error(&e),
        }
    }

    /// `POST /api/v1/rooms/{roomId}/users/{userId}/kick`: `user-left`
    /// (`kicked`) to the others, close 4403 to the user.
    fn api_kick(&self, room_id: &str, user_id: &str) -> HttpReply {
        match self.hub().kick(room_id, user_id) {
            Ok(()) => reply(200, json!({"kicked": user_id})),
            Err(e) => from_error(&e),
        }
    }

    /// The message of a send or broadcast: a JSON object with a string `type`
    /// within the size limit (the hub checks the rest, as for host messages).
    fn api_message(&self, body: &[u8]) -> Result<Value, HttpReply> {
        if body.len() > self.api_body_limit() {
            return Err(error(
                413,
                "message-too-big",
                "the body exceeds the message size limit",
            ));
        }
        serde_json::from_slice::<Value>(body)
            .map_err(|e| error(400, "invalid-json", &format!("the body is not JSON ({e})")))
    }
}
