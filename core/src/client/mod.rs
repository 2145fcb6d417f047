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
mod driver;
mod outbox;
mod seq;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::error::{Error, ErrorCode, Result};
use crate::event::Event;
use crate::protocol::SUBPROTOCOL_JSON;
use backoff::Backoff;
use outbox::{Kind, Outbox};

/// The future a token provider returns: the token to present on this connection.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String>> + Send + 'static>>;

/// Where the token comes from.
#[derive(Clone)]
pub(crate) enum TokenSource {
    Static(String),
    /// Called before every connection attempt, so an expiring token is refreshed.
    Provider(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token itself.
        match self {
            TokenSource::Static(_) => f.write_str("Static(***)"),
            TokenSource::Provider(_) => f.write_str("Provider(..)"),
        }
    }
}

/// Everything the driver needs, fixed at `connect()`.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) user_id: Option<String>,
    pub(crate) token: Option<TokenSource>,
    pub(crate) display_name: Option<String>,
    pub(crate) metadata: Option<Value>,
    pub(crate) subprotocol: Option<String>,
    pub(crate) backoff: Backoff,
    /// `None`: retry forever.
    pub(crate) max_attempts: Option<u32>,
    pub(crate) stable_after: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) queue_max_messages: usize,
    pub(crate) queue_max_bytes: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) event_capacity: usize,
    pub(crate) ack_every: u32,
    pub(crate) ack_delay: Duration,
    /// Messages written but not yet acknowledged, at most.
    pub(crate) max_in_flight: usize,
    /// After a `rate-limited` error: how long to stop writing before writing the
    /// unacknowledged messages again.
    pub(crate) rate_limit_pause: Duration,
    /// Extra trusted root certificates (PEM) for `wss://`, besides the public roots.
    pub(crate) tls_roots_pem: Vec<Vec<u8>>,
    /// Built by `connect()` for `wss://` URLs.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// Configures and connects a [`Client`]. No I/O happens before [`connect`](Self::connect).
///
/// Defaults: subprotocol `webrtc-signaling`; reconnect backoff base 1 s, max 30 s,
/// unlimited attempts, attempt counter reset after 10 s of stable connection;
/// heartbeat every 15 s, dead after 15 s + 10 s of silence; connect timeout 10 s;
/// outbox 256 messages / 1 MiB; 64 KiB per message; 1024 buffered events; at
/// most 32 messages in flight.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect()`"]
pub struct ClientBuilder {
    cfg: Config,
}

impl ClientBuilder {
    fn new(url: String) -> Self {
        ClientBuilder {
            cfg: Config {
                url,
                user_id: None,
                token: None,
                display_name: None,
                metadata: None,
                subprotocol: Some(SUBPROTOCOL_JSON.to_owned()),
                backoff: Backoff {
                    base: Duration::from_secs(1),
                    max: Duration::from_secs(30),
                },
                max_attempts: None,
                stable_after: Duration::from_secs(10),
                heartbeat_interval: Duration::from_secs(15),
                heartbeat_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                close_timeout: Duration::from_secs(1),
                // 256: a retransmitted id is only recognised while the server still
                // remembers it (this server keeps the last 512 ids per session), so
                // the outbox must stay well below that window.
                queue_max_messages: 256,
                queue_max_bytes: 1024 * 1024,
                max_message_bytes: 64 * 1024,
                event_capacity: 1024,
                ack_every: 16,
                ack_delay: Duration::from_millis(100),
                // Below the server's default burst (50) and its resume memory.
                max_in_flight: 32,
                // The server sends at most one `rate-limited` per second: after a
                // pause this long, a message dropped again yields a new error.
                rate_limit_pause: Duration::from_secs(1),
                tls_roots_pem: Vec::new(),
                tls: None,
            },
        }
    }

    /// The user id sent with every `join` (and every re-join after a lost session).
    /// Without one the server assigns an id, which the client then reuses.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.cfg.user_id = Some(user_id.into());
        self
    }

    /// A fixed token, sent as `Authorization: Bearer …` on every connection.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.cfg.token = Some(TokenSource::Static(token.into()));
        self
    }

    /// A token provider, called before every connection attempt (the first and
    /// each reconnect), so an expiring token can be refreshed. When the server
    /// refuses a token (HTTP 401 or close 4401) the client reconnects only if the
    /// provider then yields a different token.
    pub fn token_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + Send + 'static,
    {
        self.cfg.token = Some(TokenSource::Provider(Arc::new(move || {
            Box::pin(provider()) as TokenFuture
        })));
        self
    }

    /// Trusts the certificates in this PEM (a private CA, or a self-signed server
    /// certificate) for `wss://`, in addition to the public web roots.
    pub fn tls_root_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.cfg.tls_roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// `displayName` sent with every `join`.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.cfg.display_name = Some(name.into());
        self
    }

    /// `metadata` (any JSON) sent with every `join`.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.cfg.metadata = Some(metadata);
        self
    }

    /// The WebSocket subprotocol to offer (default `webrtc-signaling`); `None`
    /// offers none (the server then speaks JSON anyway).
    pub fn subprotocol(mut self, subprotocol: Option<&str>) -> Self {
        self.cfg.subprotocol = subprotocol.map(str::to_owned);
        self
    }

    /// Reconnect backoff: attempt `n` waits a uniformly random time in
    /// `[0, min(max, base · 2^(n-1))]` ("full jitter").
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.cfg.backoff = Backoff { base, max };
        self
    }

    /// How many reconnect attempts in a row before giving up with
    /// `reconnect-failed`; `None` (the default) retries forever, `Some(0)` never
    /// reconnects.
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.cfg.max_attempts = attempts;
        self
    }

    /// A connection that stayed up this long resets the attempt counter (and so
    /// the backoff) when it is lost.
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.cfg.stable_after = d;
        self
    }

    /// The client sends a JSON `ping` this often; any frame from the server counts
    /// as a sign of life.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.cfg.heartbeat_interval = d;
        self
    }

    /// With no frame from the server for `heartbeat_interval + heartbeat_timeout`,
    /// the connection is closed with 4000 and the client reconnects.
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.cfg.heartbeat_timeout = d;
        self
    }

    /// Bound on one connection attempt: TCP connect, WebSocket handshake, and the
    /// server's `connected` (and `resumed`) reply.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }

    /// The outbox bound: at most `max_messages` messages and `max_bytes` bytes of
    /// JSON text not yet acknowledged by the server (queued while offline, or sent
    /// and awaiting their `ack`). A send beyond it fails at once with
    /// [`Error::QueueFull`] and is not queued.
    pub fn queue_limits(mut self, max_messages: usize, max_bytes: usize) -> Self {
        self.cfg.queue_max_messages = max_messages;
        self.cfg.queue_max_bytes = max_bytes;
        self
    }

    /// How many messages may be written and not yet acknowledged at once
    /// (default 32); the others wait in the outbox until acknowledgements arrive.
    /// Keep it below the server's rate-limit burst (default 50) so that a queue
    /// flushed at once is not throttled. Messages the server drops anyway (error
    /// `rate-limited`) are written again, in order, after a 1 s pause.
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.cfg.max_in_flight = messages;
        self
    }

    /// Largest message the client will send (default 64 KiB, the server's default
    /// frame limit); a longer one fails with `message-too-big` and is not sent.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.cfg.max_message_bytes = bytes;
        self
    }

    /// How many events each [`EventStream`] buffers (default 1024). A reader that
    /// falls further behind loses the oldest events (logged, and counted by
    /// [`EventStream::missed`]); the client itself never waits for readers.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.cfg.event_capacity = capacity;
        self
    }

    fn validate(&self) -> Result<()> {
        let c = &self.cfg;
        let bad = |m: &str| Err(Error::Config(m.to_owned()));
        if !c.url.starts_with("ws://") && !c.url.starts_with("wss://") {
            return bad("the URL must start with ws:// or wss://");
        }
        c.url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config(format!("invalid URL: {e}")))?;
        if c.backoff.base.is_zero() || c.backoff.max < c.backoff.base {
            return bad("reconnect backoff needs 0 < base <= max");
        }
        if c.heartbeat_interval.is_zero()
            || c.heartbeat_timeout.is_zero()
            || c.connect_timeout.is_zero()
        {
            return bad(
                "heartbeat interval, heartbeat timeout and connect timeout must be positive",
            );
        }
        if c.queue_max_messages == 0 || c.queue_max_bytes == 0 || c.max_message_bytes == 0 {
            return bad("queue limits and the message size limit must be positive");
        }
        if c.max_in_flight == 0 {
            return bad("max_in_flight must be positive");
        }
        if c.event_capacity == 0 {
            return bad("event capacity must be positive");
        }
        Ok(())
    }

    /// Connects, and resolves once the server's first `connected` has arrived.
    /// The first attempt is not retried: its failure is returned
    /// ([`Error::Io`]/[`Error::WebSocket`], [`Error::Timeout`], `unauthorized`).
    /// Every later loss of the connection is handled in the background.
    pub async fn connect(self) -> Result<Client> {
        self.validate()?;
        let mut cfg = self.cfg;
        if cfg.url.starts_with("wss://") {
            cfg.tls = Some(tls_client_config(&cfg.tls_roots_pem)?);
        }
        let (events, first_events) = broadcast::channel(cfg.event_capacity);
        let (done, _) = watch::channel(false);
        let (closing, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                outbox: Outbox::new(
                    cfg.queue_max_messages,
                    cfg.queue_max_bytes,
                    cfg.max_message_bytes,
                ),
                closed: None,
                close_requested: false,
                rooms: Vec::new(),
                session_id: None,
                connected: false,
                identity: identity(&cfg),
            }),
            wake: Notify::new(),
            events: events.downgrade(),
            first_events: Mutex::new(Some(first_events)),
            done,
            closing,
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(driver::Driver::new(cfg, shared.clone(), events).run(ready_tx));
        let client = Client {
            _alive: Arc::new(Alive(shared.clone())),
            shared,
        };
        match ready_rx.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed(
                "the client task ended before connecting".to_owned(),
            )),
        }
    }
}

/// rustls settings for `wss://`: the public web roots plus `extra_pem`; the ring
/// provider (the one the server uses; no aws-lc build).
fn tls_client_config(extra_pem: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_pem {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert =
                cert.map_err(|e| Error::Config(format!("invalid root certificate PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::Config(format!("unusable root certificate: {e}")))?;
            found = true;
        }
        if !found {
            return Err(Error::Config(
                "no certificate in the root certificate PEM".into(),
            ));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The identity fields of every `join`.
fn identity(cfg: &Config) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(u) = &cfg.user_id {
        m.insert("userId".to_owned(), u.as_str().into());
    }
    if let Some(d) = &cfg.display_name {
        m.insert("displayName".to_owned(), d.as_str().into());
    }
    if let Some(md) = &cfg.metadata {
        m.insert("metadata".to_owned(), md.clone());
    }
    m
}

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
    /// Starts configuring a client for `url` (`ws://host:port/path`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

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
    /// `auth`), e.g. with an explicit `roomId`. Its `id` is set by the client.
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
            Some("offer" | "answer" | "candidate" | "message" | "chat" | "auth") => Kind::Other,
            Some("ping" | "ack" | "resume") => {
                return invalid("`ping`, `ack` and `resume` are sent by the client itself")
            }
            Some(_) => return invalid("unknown message type"),
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
