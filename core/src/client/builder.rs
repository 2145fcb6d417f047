//! [`ClientBuilder`]: every client option with its default, validation, TLS
//! roots, and `connect()`, which starts the driver and waits for `connected`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::backoff::Backoff;
use super::outbox::Outbox;
use crate::edge::Encoding;
use crate::error::{Error, Result};
use crate::protocol::{SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK};

use super::config::{Config, TokenFuture, TokenSource};
use super::{Alive, Client, Shared, State};

impl Client {
    /// Starts configuring a client for `url` (`ws://host:port/path`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }
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

    /// How messages travel: JSON text frames (the default) or MessagePack
    /// binary frames (offers the `webrtc-signaling.msgpack` subprotocol; a
    /// server that does not select it is spoken to in JSON).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.cfg.subprotocol = Some(
            match encoding {
                Encoding::Json => SUBPROTOCOL_JSON,
                Encoding::MessagePack => SUBPROTOCOL_MSGPACK,
            }
            .to_owned(),
        );
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

    /// How many events each [`EventStream`](super::EventStream) buffers (default 1024). A reader that
    /// falls further behind loses the oldest events (logged, and counted by
    /// [`EventStream::missed`](super::EventStream::missed)); the client itself never waits for readers.
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
        tokio::spawn(super::driver::Driver::new(cfg, shared.clone(), events).run(ready_tx));
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
