//! Server configuration: every limit and timeout, with the protocol's defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthConfig;
use crate::error::{Error, Result};
use crate::protocol::url::UpgradePaths;
use crate::protocol::AppTypes;

/// Every option of the server. `0` turns a count limit off where the field says so.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind, `host:port` (port 0 picks a free one).
    pub listen: String,
    /// WebSocket upgrade paths, comma-separated: fixed paths (`/ws`, `/`) or
    /// templates whose `{roomId}` / `{userId}` segments join the session to
    /// that room as that user at connect (`/signaling/{roomId}/{userId}`).
    pub path: String,
    /// Largest accepted message; a bigger frame closes the connection with 1009.
    pub max_message_bytes: usize,
    /// Server-wide connection limit (0 = unlimited); over it the upgrade gets 503.
    pub max_conns: usize,
    /// Connections per client IP (0 = unlimited); over it the upgrade gets 429.
    pub max_conns_per_ip: usize,
    /// Sockets per client IP between `accept` and their upgrade decision or
    /// HTTP answer (0 = unlimited): past it a new socket is answered 429 at once
    /// and closed. Counted where the server owns the listener; a trusted proxy's
    /// sockets count server-wide only.
    pub max_pending_per_ip: usize,
    /// Sockets server-wide between `accept` and their upgrade decision
    /// (0 = unlimited): past it a new socket is answered 503 at once.
    pub max_pending: usize,
    /// New connections per second per client IP (0 = off), a token bucket of
    /// `conn_burst_per_ip`: past it a new socket or upgrade gets 429 with `Retry-After`.
    pub conn_rate_per_ip: u32,
    /// Burst of the new-connection rate per client IP.
    pub conn_burst_per_ip: u32,
    /// IPv6 clients are counted per prefix of this many bits (1–128; default 64:
    /// one subscriber's /64 is one client, not a million).
    pub ipv6_prefix: u8,
    /// Peers per room (0 = unlimited); a join past it gets `room-full`.
    pub max_room_size: usize,
    /// Rooms one session may be in at once; a join past it gets `forbidden`.
    pub max_rooms_per_session: usize,
    /// Away sessions (connection lost, resumable) per client IP (0 = unlimited):
    /// past it the IP's oldest away session ends (`user-left`, reason `evicted`).
    pub max_away_per_ip: usize,
    /// Away sessions per authenticated user (0 = unlimited): past it the
    /// user's oldest away session ends (`evicted`), from whichever IP.
    pub max_away_per_user: usize,
    /// Away sessions server-wide (0 = unlimited): past it the oldest ends.
    pub max_away_sessions: usize,
    /// Replay bytes all away sessions may hold together (0 = unlimited): past
    /// it the oldest away sessions end until the rest fit.
    pub away_replay_budget_bytes: usize,
    /// Largest member `metadata` a client may join with, in bytes of JSON; a
    /// bigger one gets `invalid-message` (each member's metadata goes into every
    /// newcomer's `room-info`). A token's or hook's metadata is the app's own
    /// and not capped.
    pub max_metadata_bytes: usize,
    /// Token bucket burst, in messages.
    pub rate_limit_burst: u32,
    /// Token bucket refill, messages per second (0 = no rate limit).
    pub rate_limit_rps: u32,
    /// WebSocket Ping interval.
    pub heartbeat_interval: Duration,
    /// Silence allowed after `heartbeat_interval` before the connection is dropped.
    pub heartbeat_timeout: Duration,
    /// How long an away session waits for a resume before its peer leaves (`timeout`).
    pub resume_window: Duration,
    /// Replay buffer bound per session, in messages.
    pub replay_buffer_messages: usize,
    /// Replay buffer bound per session, in bytes.
    pub replay_buffer_bytes: usize,
    /// Outbound queue bound per connection, in bytes; past it the connection is
    /// closed with 1008 (slow consumer) and its session goes away (resumable).
    pub outbound_queue_bytes: usize,
    /// Bytes all outbound queues may hold together (0 = unlimited): while the
    /// sum is over it, a relayed message to a reader that is behind by more
    /// than 1/64 of its queue is refused to its sender (`rate-limited`,
    /// nothing delivered); readers that keep up and server messages go on.
    pub outbound_budget_bytes: usize,
    /// Browser origins allowed to connect (empty = all, with a warning at start-up).
    pub allowed_origins: Vec<String>,
    /// Longest wait for a complete HTTP request head (and for an API request's
    /// body): the HTTP read timeout.
    pub handshake_timeout: Duration,
    /// Longest time to write one HTTP answer (refusals, endpoints, static
    /// files, the API): a client that does not read is cut.
    pub http_write_timeout: Duration,
    /// Longest graceful drain before the server stops anyway.
    pub drain_timeout: Duration,
    /// Upper bound of the random reconnect delay suggested in `draining`.
    pub drain_retry_after: Duration,
    /// Events buffered for each `events()` reader; a reader that falls further
    /// behind loses the oldest events (a warning is logged).
    pub event_buffer: usize,
    /// How clients authenticate (off by default).
    pub auth: AuthConfig,
    /// With auth on: how long a connection without a handshake token has to send
    /// its first `auth` message before it is closed with 4401.
    pub auth_timeout: Duration,
    /// Serve `wss://` with this certificate and key.
    pub tls: Option<TlsConfig>,
    /// Peers (CIDRs such as `10.0.0.0/8` or single addresses) whose
    /// `X-Forwarded-For` / `X-Real-IP` headers are believed.
    pub trusted_proxies: Vec<String>,
    /// TURN REST credentials handed out in `room-info` as `iceServers`.
    pub turn: Option<TurnConfig>,
    /// Cluster mode: the Redis backplane shared by every node (`redis://…`).
    pub redis_url: Option<String>,
    /// Cluster mode over `rediss://`: a PEM file of the CA that signed Redis'
    /// certificate (default: the system's roots).
    pub redis_ca_cert: Option<PathBuf>,
    /// Cluster mode: how often a node refreshes its liveness in Redis.
    pub cluster_heartbeat: Duration,
    /// Cluster mode: a node silent for this long is dead; its peers leave
    /// (`timeout`) unless they resumed on another node first.
    pub cluster_node_ttl: Duration,
    /// Serve the demo call page at `/` (implies `serve_client`).
    pub demo: bool,
    /// Serve the browser client at `/switchboard.js`.
    pub serve_client: bool,
    /// The application's own message types (`hangup`, `mute`, …), relayed like
    /// `message`; any other unknown type stays `unknown-type`.
    pub app_types: Vec<String>,
    /// Turns on the operator HTTP API (`/api/v1/…`) and the admin page
    /// (`/admin`): requests carry `Authorization: Bearer <api_key>`. Off when `None`.
    pub api_key: Option<ApiKey>,
}

/// The operator API key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// Whether `candidate` is this key, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        crate::auth::constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert_path: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

/// TURN REST API credentials (coturn `use-auth-secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// The secret shared with the TURN server.
    pub secret: String,
    /// TURN/STUN URLs, e.g. `turn:turn.example.com:3478?transport=udp`.
    pub urls: Vec<String>,
    /// Credential lifetime.
    pub ttl: Duration,
}

impl fmt::Debug for TurnConfig {
    // Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_owned(),
            path: "/ws".to_owned(),
            max_message_bytes: 64 * 1024,
            max_conns: 10_000,
            max_conns_per_ip: 20,
            max_pending_per_ip: 8,
            max_pending: 1024,
            conn_rate_per_ip: 20,
            conn_burst_per_ip: 40,
            ipv6_prefix: 64,
            max_room_size: 0,
            max_rooms_per_session: 16,
            max_metadata_bytes: 4096,
            max_away_per_ip: 32,
            max_away_per_user: 8,
            max_away_sessions: 10_000,
            away_replay_budget_bytes: 256 * 1024 * 1024,
            rate_limit_burst: 50,
            rate_limit_rps: 20,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            resume_window: Duration::from_secs(20),
            replay_buffer_messages: 256,
            replay_buffer_bytes: 256 * 1024,
            outbound_queue_bytes: 1024 * 1024,
            outbound_budget_bytes: 256 * 1024 * 1024,
            allowed_origins: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            http_write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            drain_retry_after: Duration::from_secs(5),
            event_buffer: 1024,
            auth: AuthConfig::Off,
            auth_timeout: Duration::from_secs(5),
            tls: None,
            trusted_proxies: Vec::new(),
            turn: None,
            redis_url: None,
            redis_ca_cert: None,
            cluster_heartbeat: Duration::from_secs(1),
            cluster_node_ttl: Duration::from_secs(5),
            demo: false,
            serve_client: false,
            app_types: Vec::new(),
            api_key: None,
        }
    }
}

impl ServerConfig {
    /// The parsed upgrade paths (`path`).
    pub fn upgrade_paths(&self) -> Result<UpgradePaths> {
        UpgradePaths::parse(&self.path).map_err(Error::Config)
    }

    /// The path of the server's own URL: the first fixed entry of `path` (`/`
    /// when every entry is a template).
    pub fn url_path(&self) -> String {
        self.upgrade_paths()
            .ok()
            .and_then(|p| p.first_fixed().map(str::to_owned))
            .unwrap_or_else(|| "/".to_owned())
    }

    /// Checks the values that can not work, before any I/O.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::Config(m.to_owned()));
        self.upgrade_paths()?;
        if self.api_key.as_ref().is_some_and(|k| k.len() < 16) {
            return fail("api_key must be at least 16 characters");
        }
        AppTypes::new(&self.app_types).map_err(Error::Config)?;
        if self.max_message_bytes < 256 {
            return fail("max_message_bytes must be at least 256");
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return fail("ipv6_prefix must be 1 to 128");
        }
        if self.conn_rate_per_ip > 0 && self.conn_burst_per_ip == 0 {
            return fail("conn_burst_per_ip must be at least 1 when conn_rate_per_ip is on");
        }
        if self.handshake_timeout.is_zero() || self.http_write_timeout.is_zero() {
            return fail("handshake_timeout and http_write_timeout must be positive");
        }
        if self.rate_limit_rps > 0 && self.rate_limit_burst == 0 {
            return fail("rate_limit_burst must be at least 1 when rate limiting is on");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout.is_zero() {
            return fail("heartbeat interval and timeout must be positive");
        }
        if self.replay_buffer_messages == 0 || self.replay_buffer_bytes == 0 {
            return fail("replay buffer bounds must be positive");
        }
        // A resume queues the whole replay buffer at once; it must fit.
        if self.outbound_queue_bytes < self.replay_buffer_bytes + self.max_message_bytes {
            return fail(
                "outbound_queue_bytes must be at least replay_buffer_bytes + max_message_bytes",
            );
        }
        if self.max_rooms_per_session == 0 {
            return fail("max_rooms_per_session must be at least 1");
        }
        if self.event_buffer == 0 {
            return fail("event_buffer must be at least 1");
        }
        if self.redis_url.is_some()
            && (self.cluster_heartbeat.is_zero() || self.cluster_node_ttl <= self.cluster_heartbeat)
        {
            return fail("cluster_node_ttl must be longer than a positive cluster_heartbeat");
        }
        crate::auth::validate(&self.auth)?;
        crate::proxy::TrustedProxies::new(&self.trusted_proxies)
            .map_err(|e| Error::Config(format!("trusted_proxies: {e}")))?;
        if let Some(turn) = &self.turn {
            turn.validate()?;
        }
        if self.auth.is_on() && self.auth_timeout.is_zero() {
            return fail("auth_timeout must be positive when auth is on");
        }
        Ok(())
    }
}
