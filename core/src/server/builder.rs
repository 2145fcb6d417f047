//! [`ServerBuilder`]: every option of [`ServerConfig`] as a builder method
//! (the CLI flags' names), checked by [`ServerBuilder::build`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Server;
use crate::auth::{AuthConfig, AuthHook, JwtConfig};
use crate::config::{ServerConfig, TlsConfig, TurnConfig};
use crate::error::Result;

/// Builds a [`Server`]; does no I/O.
#[derive(Debug, Clone, Default)]
pub struct ServerBuilder {
    config: ServerConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        })*
    };
}

impl ServerBuilder {
    setters! {
        /// Peers per room (0 = unlimited).
        max_room_size: usize;
        /// Rooms one session may be in at once.
        max_rooms_per_session: usize;
        /// Largest member `metadata` a client may join with, in bytes.
        max_metadata_bytes: usize;
        /// Away sessions per client IP (0 = unlimited).
        max_away_per_ip: usize;
        /// Away sessions per authenticated user (0 = unlimited).
        max_away_per_user: usize;
        /// Away sessions server-wide (0 = unlimited).
        max_away_sessions: usize;
        /// Replay bytes all away sessions may hold together (0 = unlimited).
        away_replay_budget_bytes: usize;
        /// Largest accepted message in bytes; bigger frames close with 1009.
        max_message_bytes: usize;
        /// Server-wide connection limit (0 = unlimited).
        max_conns: usize;
        /// Connections per client IP (0 = unlimited).
        max_conns_per_ip: usize;
        /// Sockets per client IP waiting for their upgrade decision (0 = unlimited).
        max_pending_per_ip: usize;
        /// Sockets server-wide waiting for their upgrade decision (0 = unlimited).
        max_pending: usize;
        /// New connections per second per client IP (0 = off).
        conn_rate_per_ip: u32;
        /// Burst of new connections per client IP.
        conn_burst_per_ip: u32;
        /// IPv6 clients count per prefix of this many bits.
        ipv6_prefix: u8;
        /// Token bucket burst.
        rate_limit_burst: u32;
        /// Token bucket refill per second (0 = no rate limit).
        rate_limit_rps: u32;
        /// WebSocket Ping interval.
        heartbeat_interval: Duration;
        /// Extra silence allowed after the interval.
        heartbeat_timeout: Duration;
        /// How long an away session can be resumed.
        resume_window: Duration;
        /// Replay buffer bound in messages.
        replay_buffer_messages: usize;
        /// Replay buffer bound in bytes.
        replay_buffer_bytes: usize;
        /// Outbound queue bound per connection in bytes.
        outbound_queue_bytes: usize;
        /// Bytes all outbound queues may hold together (0 = unlimited).
        outbound_budget_bytes: usize;
        /// Longest graceful drain.
        drain_timeout: Duration;
        /// Upper bound of the reconnect delay suggested in `draining`.
        drain_retry_after: Duration;
        /// Longest wait for a request head (the HTTP read timeout).
        handshake_timeout: Duration;
        /// Longest time writing one HTTP answer.
        http_write_timeout: Duration;
        /// Events buffered per `events()` reader.
        event_buffer: usize;
        /// How long a connection may wait before its first `auth` message (auth on).
        auth_timeout: Duration;
        /// Cluster mode: how often this node refreshes its liveness in Redis.
        cluster_heartbeat: Duration;
        /// Cluster mode: silence after which a node counts as dead.
        cluster_node_ttl: Duration;
        /// Serve the demo page at `/` (and the browser client).
        demo: bool;
        /// Serve the browser client at `/switchboard.js`.
        serve_client: bool;
    }

    /// Static tokens: token → userId.
    pub fn auth_tokens<I, T, U>(mut self, tokens: I) -> Self
    where
        I: IntoIterator<Item = (T, U)>,
        T: Into<String>,
        U: Into<String>,
    {
        let table = tokens
            .into_iter()
            .map(|(t, u)| (t.into(), u.into()))
            .collect();
        self.config.auth = AuthConfig::Tokens(table);
        self
    }

    /// JWT authentication.
    pub fn jwt(mut self, jwt: JwtConfig) -> Self {
        self.config.auth = AuthConfig::Jwt(jwt);
        self
    }

    /// Host callback authentication: `Some(identity)` admits, `None` refuses.
    pub fn auth_hook(mut self, hook: impl AuthHook) -> Self {
        self.config.auth = AuthConfig::Hook(Arc::new(hook));
        self
    }

    /// Serve `wss://` with a PEM certificate chain and key.
    pub fn tls(mut self, cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        self.config.tls = Some(TlsConfig {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
        });
        self
    }

    /// Proxies (CIDRs or addresses) whose forwarding headers are believed.
    pub fn trusted_proxies<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cidrs: I) -> Self {
        self.config.trusted_proxies = cidrs.into_iter().map(Into::into).collect();
        self
    }

    /// TURN REST credentials in `room-info`.
    pub fn turn<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        secret: impl Into<String>,
        urls: I,
        ttl: Duration,
    ) -> Self {
        self.config.turn = Some(TurnConfig {
            secret: secret.into(),
            urls: urls.into_iter().map(Into::into).collect(),
            ttl,
        });
        self
    }

    /// Cluster mode over Redis: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }

    /// Cluster mode over `rediss://`: the CA (PEM file) that signed Redis'
    /// certificate, instead of the system's roots.
    pub fn redis_ca_cert(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.redis_ca_cert = Some(path.into());
        self
    }

    /// Address to bind (`host:port`; port 0 picks a free one).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.config.listen = addr.into();
        self
    }

    /// Turns on the operator HTTP API (`/api/v1`) and the admin page (`/admin`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(crate::config::ApiKey::new(key));
        self
    }

    /// The application's own message types, relayed like `message`.
    pub fn app_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.config.app_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// WebSocket upgrade paths, comma-separated (default `/ws`): fixed paths or
    /// templates with `{roomId}` / `{userId}` segments.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// Browser origins allowed to connect (default: all).
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.config.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<Server> {
        self.config.validate()?;
        Ok(Server {
            config: self.config,
        })
    }
}
