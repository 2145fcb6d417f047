//! The `switchboard` command: a stand-alone signaling server. Every option is a
//! flag and an environment variable (`SWITCHBOARD_…`); `--help` lists them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchboard::{AuthConfig, JwtConfig, JwtKey, Server, ServerConfig, TlsConfig, TurnConfig};
use tracing::{error, info, warn};

/// jemalloc, whose background thread returns freed pages to the system over
/// the second after churn (see `return_freed_pages_promptly` and the
/// `jemalloc` feature in Cargo.toml).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// WebRTC signaling server: rooms, offer/answer/ICE relay, sessions with resume.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// WebSocket upgrade paths, comma-separated: fixed (`/ws`, `/`) or templates
    /// whose `{roomId}`/`{userId}` segments join that room at connect.
    #[arg(long, env = "SWITCHBOARD_PATH", default_value = "/ws")]
    path: String,
    /// Turns on the operator HTTP API (/api/v1) and the admin page (/admin):
    /// clients of the API send `Authorization: Bearer <key>` (at least 16 characters).
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The application's own message types, comma-separated (`hangup,mute`):
    /// relayed like `message`, with `from` stamped.
    #[arg(long, env = "SWITCHBOARD_APP_TYPES", value_delimiter = ',')]
    app_types: Vec<String>,
    /// Largest accepted message in bytes (bigger frames close with 1009).
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES", default_value_t = 65536)]
    max_message_bytes: usize,
    /// Server-wide connection limit, 0 = unlimited (over it: HTTP 503).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNS", default_value_t = 10_000)]
    max_conns: usize,
    /// Connections per client IP, 0 = unlimited (over it: HTTP 429).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNS_PER_IP", default_value_t = 20)]
    max_conns_per_ip: usize,
    /// Sockets per client IP waiting for their upgrade decision, from accept on;
    /// 0 = unlimited (over it: HTTP 429 at once).
    #[arg(long, env = "SWITCHBOARD_MAX_PENDING_PER_IP", default_value_t = 8)]
    max_pending_per_ip: usize,
    /// Sockets server-wide waiting for their upgrade decision; 0 = unlimited
    /// (over it: HTTP 503 at once).
    #[arg(long, env = "SWITCHBOARD_MAX_PENDING", default_value_t = 1024)]
    max_pending: usize,
    /// New connections per second per client IP; 0 = off (over it: HTTP 429).
    #[arg(long, env = "SWITCHBOARD_CONN_RATE_PER_IP", default_value_t = 20)]
    conn_rate_per_ip: u32,
    /// Burst of new connections per client IP.
    #[arg(long, env = "SWITCHBOARD_CONN_BURST_PER_IP", default_value_t = 40)]
    conn_burst_per_ip: u32,
    /// IPv6 clients count per prefix of this many bits (one /64 is one client).
    #[arg(long, env = "SWITCHBOARD_IPV6_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    ipv6_prefix: u8,
    /// Peers per room, 0 = unlimited (over it: `room-full`).
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_SIZE", default_value_t = 0)]
    max_room_size: usize,
    /// Rooms one session may be in at once.
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS_PER_SESSION", default_value_t = 16)]
    max_rooms_per_session: usize,
    /// Away sessions (connection lost, resumable) per client IP; 0 = unlimited
    /// (over it the IP's oldest away session ends: `user-left` `evicted`).
    #[arg(long, env = "SWITCHBOARD_MAX_AWAY_PER_IP", default_value_t = 32)]
    max_away_per_ip: usize,
    /// Away sessions per authenticated user; 0 = unlimited (over it the
    /// user's oldest away session ends: `user-left` `evicted`).
    #[arg(long, env = "SWITCHBOARD_MAX_AWAY_PER_USER", default_value_t = 8)]
    max_away_per_user: usize,
    /// Away sessions server-wide; 0 = unlimited (over it the oldest ends).
    #[arg(long, env = "SWITCHBOARD_MAX_AWAY_SESSIONS", default_value_t = 10_000)]
    max_away_sessions: usize,
    /// Replay bytes all away sessions may hold together; 0 = unlimited.
    #[arg(long, env = "SWITCHBOARD_AWAY_REPLAY_BUDGET_BYTES", default_value_t = 256 * 1024 * 1024)]
    away_replay_budget_bytes: usize,
    /// Largest member `metadata` of a join, bytes (over it: `invalid-message`).
    #[arg(long, env = "SWITCHBOARD_MAX_METADATA_BYTES", default_value_t = 4096)]
    max_metadata_bytes: usize,
    /// Rate limit burst, in messages per connection.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_BURST", default_value_t = 50)]
    rate_limit_burst: u32,
    /// Rate limit, sustained messages per second per connection; 0 = off.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT_RPS", default_value_t = 20)]
    rate_limit_rps: u32,
    /// WebSocket Ping interval in milliseconds.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_MS", default_value_t = 30_000)]
    heartbeat_ms: u64,
    /// Silence allowed after the ping interval before a connection is dropped, ms.
    #[arg(
        long,
        env = "SWITCHBOARD_HEARTBEAT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    heartbeat_timeout_ms: u64,
    /// How long a lost session can be resumed, ms.
    #[arg(long, env = "SWITCHBOARD_RESUME_WINDOW_MS", default_value_t = 20_000)]
    resume_window_ms: u64,
    /// Replay buffer per session, in messages.
    #[arg(
        long,
        env = "SWITCHBOARD_REPLAY_BUFFER_MESSAGES",
        default_value_t = 256
    )]
    replay_buffer_messages: usize,
    /// Replay buffer per session, in bytes.
    #[arg(
        long,
        env = "SWITCHBOARD_REPLAY_BUFFER_BYTES",
        default_value_t = 262_144
    )]
    replay_buffer_bytes: usize,
    /// Outbound queue per connection in bytes (past it: close 1008, slow consumer).
    #[arg(
        long,
        env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES",
        default_value_t = 1_048_576
    )]
    outbound_queue_bytes: usize,
    /// Bytes all outbound queues may hold together; 0 = unlimited (over it,
    /// relayed messages are refused to their senders: `rate-limited`).
    #[arg(
        long,
        env = "SWITCHBOARD_OUTBOUND_BUDGET_BYTES",
        default_value_t = 256 * 1024 * 1024
    )]
    outbound_budget_bytes: usize,
    /// Allowed browser origins, comma-separated (default: all, with a warning).
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Longest graceful drain on SIGINT/SIGTERM, ms.
    #[arg(long, env = "SWITCHBOARD_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// Upper bound of the reconnect delay suggested to clients in `draining`, ms.
    #[arg(
        long,
        env = "SWITCHBOARD_DRAIN_RETRY_AFTER_MS",
        default_value_t = 5_000
    )]
    drain_retry_after_ms: u64,
    /// Longest wait for an HTTP request head, ms.
    #[arg(
        long,
        env = "SWITCHBOARD_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    handshake_timeout_ms: u64,
    /// Longest time writing one HTTP answer to a client that does not read, ms.
    #[arg(
        long,
        env = "SWITCHBOARD_HTTP_WRITE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    http_write_timeout_ms: u64,
    /// Static tokens, comma-separated `token:userId` pairs (small setups).
    #[arg(long, env = "SWITCHBOARD_AUTH_TOKENS", value_delimiter = ',')]
    auth_tokens: Vec<String>,
    /// JWT auth with HS256 and this shared secret.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", conflicts_with_all = ["jwt_public_key", "auth_tokens"])]
    jwt_secret: Option<String>,
    /// JWT auth with RS256/ES256: PEM public key file.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_PUBLIC_KEY",
        conflicts_with = "auth_tokens"
    )]
    jwt_public_key: Option<PathBuf>,
    /// Required JWT `aud`.
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Required JWT `iss`.
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Clock skew allowed on JWT `exp`/`nbf`, ms.
    #[arg(long, env = "SWITCHBOARD_JWT_LEEWAY_MS", default_value_t = 30_000)]
    jwt_leeway_ms: u64,
    /// With auth on: time allowed for a first `auth` message, ms (then 4401).
    #[arg(long, env = "SWITCHBOARD_AUTH_TIMEOUT_MS", default_value_t = 5_000)]
    auth_timeout_ms: u64,
    /// TLS certificate chain (PEM); with --tls-key serves wss://.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Proxies whose X-Forwarded-For / X-Real-IP are believed (CIDRs, comma-separated).
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// TURN REST shared secret (coturn `use-auth-secret`); adds iceServers to room-info.
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", requires = "turn_urls")]
    turn_secret: Option<String>,
    /// TURN/STUN URLs, comma-separated.
    #[arg(long, env = "SWITCHBOARD_TURN_URLS", value_delimiter = ',')]
    turn_urls: Vec<String>,
    /// TURN credential lifetime, seconds.
    #[arg(long, env = "SWITCHBOARD_TURN_TTL", default_value_t = 3600)]
    turn_ttl: u64,
    /// Cluster mode: Redis backplane shared by every node:
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    redis_url: Option<String>,
    /// Cluster mode over `rediss://`: PEM file of the CA of Redis' certificate
    /// (default: the system's roots).
    #[arg(long, env = "SWITCHBOARD_REDIS_CA_CERT", requires = "redis_url")]
    redis_ca_cert: Option<PathBuf>,
    /// Cluster mode: how often this node refreshes its liveness in Redis, ms.
    #[arg(
        long,
        env = "SWITCHBOARD_CLUSTER_HEARTBEAT_MS",
        default_value_t = 1_000
    )]
    cluster_heartbeat_ms: u64,
    /// Cluster mode: a node silent this long is dead; its peers leave (timeout), ms.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_NODE_TTL_MS", default_value_t = 5_000)]
    cluster_node_ttl_ms: u64,
    /// Serve the demo call page at / and the browser client at /switchboard.js.
    #[arg(long, env = "SWITCHBOARD_DEMO")]
    demo: bool,
    /// Serve the browser client at /switchboard.js (without the demo page).
    #[arg(long, env = "SWITCHBOARD_SERVE_CLIENT")]
    serve_client: bool,
}

impl Cli {
    fn into_config(self) -> Result<ServerConfig, String> {
        let ms = Duration::from_millis;
        let auth = self.auth_config()?;
        Ok(ServerConfig {
            listen: self.listen,
            path: self.path,
            max_message_bytes: self.max_message_bytes,
            max_conns: self.max_conns,
            max_conns_per_ip: self.max_conns_per_ip,
            max_pending_per_ip: self.max_pending_per_ip,
            max_pending: self.max_pending,
            conn_rate_per_ip: self.conn_rate_per_ip,
            conn_burst_per_ip: self.conn_burst_per_ip,
            ipv6_prefix: self.ipv6_prefix,
            max_room_size: self.max_room_size,
            max_rooms_per_session: self.max_rooms_per_session,
            max_metadata_bytes: self.max_metadata_bytes,
            max_away_per_ip: self.max_away_per_ip,
            max_away_per_user: self.max_away_per_user,
            max_away_sessions: self.max_away_sessions,
            away_replay_budget_bytes: self.away_replay_budget_bytes,
            rate_limit_burst: self.rate_limit_burst,
            rate_limit_rps: self.rate_limit_rps,
            heartbeat_interval: ms(self.heartbeat_ms),
            heartbeat_timeout: ms(self.heartbeat_timeout_ms),
            resume_window: ms(self.resume_window_ms),
            replay_buffer_messages: self.replay_buffer_messages,
            replay_buffer_bytes: self.replay_buffer_bytes,
            outbound_queue_bytes: self.outbound_queue_bytes,
            outbound_budget_bytes: self.outbound_budget_bytes,
            allowed_origins: non_empty(self.allowed_origins),
            drain_timeout: ms(self.drain_timeout_ms),
            drain_retry_after: ms(self.drain_retry_after_ms),
            handshake_timeout: ms(self.handshake_timeout_ms),
            http_write_timeout: ms(self.http_write_timeout_ms),
            auth,
            auth_timeout: ms(self.auth_timeout_ms),
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert_path), Some(key_path)) => Some(TlsConfig {
                    cert_path,
                    key_path,
                }),
                _ => None,
            },
            trusted_proxies: non_empty(self.trusted_proxies),
            turn: self.turn_secret.map(|secret| TurnConfig {
                secret,
                urls: non_empty(self.turn_urls),
                ttl: Duration::from_secs(self.turn_ttl),
            }),
            redis_url: self.redis_url,
            redis_ca_cert: self.redis_ca_cert,
            cluster_heartbeat: ms(self.cluster_heartbeat_ms),
            cluster_node_ttl: ms(self.cluster_node_ttl_ms),
            demo: self.demo,
            serve_client: self.serve_client || self.demo,
            app_types: self.app_types.clone(),
            api_key: self.api_key.clone().map(switchboard::config::ApiKey::new),
            ..ServerConfig::default()
        })
    }

    fn auth_config(&self) -> Result<AuthConfig, String> {
        let key = if let Some(secret) = &self.jwt_secret {
            JwtKey::Secret(secret.clone().into_bytes())
        } else if let Some(path) = &self.jwt_public_key {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
            JwtKey::PublicKeyPem(pem)
        } else {
            let mut table = HashMap::new();
            for pair in self.auth_tokens.iter().filter(|p| !p.is_empty()) {
                let Some((token, user)) = pair.split_once(':') else {
                    return Err(format!(
                        "--auth-tokens: expected token:userId, got {pair:?}"
                    ));
                };
                table.insert(token.to_owned(), user.to_owned());
            }
            return Ok(if table.is_empty() {
                AuthConfig::Off
            } else {
                AuthConfig::Tokens(table)
            });
        };
        Ok(AuthConfig::Jwt(JwtConfig {
            key,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: Duration::from_millis(self.jwt_leeway_ms),
        }))
    }
}

fn non_empty(list: Vec<String>) -> Vec<String> {
    list.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Freed pages go back to the system from jemalloc's background thread over
/// about a second (its decay time), rather than its default 10 s: a burst
/// (joins, a call's SDPs) leaves its frames on pages of their own once
/// acknowledged (`replay_frame_capacity`), and an idle server should not
/// hold them. The relay's CPU per message did not change with it
/// (`switchboard-bench relay`). A `dirty_decay_ms` in `_RJEM_MALLOC_CONF`
/// (the operator's jemalloc options) is left as it is.
#[cfg(feature = "jemalloc")]
fn return_freed_pages_promptly() {
    use tikv_jemalloc_ctl::{Access, AsName};
    const DIRTY_DECAY_MS: isize = 1000;
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        warn!(error = %e, "jemalloc: no background thread; freed memory returns only under load");
    }
    let operator_set =
        std::env::var("_RJEM_MALLOC_CONF").is_ok_and(|conf| conf.contains("dirty_decay_ms"));
    if operator_set {
        return;
    }
    // The default for arenas made later (one per worker thread), then the
    // arenas that exist already (the main thread's).
    let mut keys = vec![b"arenas.dirty_decay_ms\0".to_vec()];
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read().unwrap_or(0);
    keys.extend((0..arenas).map(|i| format!("arena.{i}.dirty_decay_ms\0").into_bytes()));
    for (i, key) in keys.iter().enumerate() {
        // Arenas not made yet refuse the key; they take the default.
        if let Err(e) = key.name().write(DIRTY_DECAY_MS) {
            if i == 0 {
                warn!(error = %e, "jemalloc: freed pages keep the default decay time");
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "switchboard=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    #[cfg(feature = "jemalloc")]
    return_freed_pages_promptly();
    // Every connection is a file descriptor: lift the soft limit to the hard one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(nofile = n, "file descriptor limit"),
        Err(e) => warn!(error = %e, "could not raise the file descriptor limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let config = match cli.into_config() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("switchboard: {e}");
                return ExitCode::from(2);
            }
        };
        let tls = config.tls.is_some();
        let server = match Server::builder().config(config).build() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("switchboard: {e}");
                return ExitCode::from(2);
            }
        };
        let handle = match server.start().await {
            Ok(h) => h,
            Err(e) => {
                error!(error = %e, "cannot start");
                eprintln!("switchboard: {e}");
                return ExitCode::FAILURE;
            }
        };
        if tls {
            // Installed before the listening line, so a SIGHUP sent once it is seen
            // never meets the default action (exit).
            reload_tls_on_sighup(handle.clone());
        }
        // The handlers are installed before the line is printed: a SIGTERM sent
        // as soon as a script sees it must drain, not kill the process.
        let signals = wait_for_signal();
        // One machine-readable line on stdout, for scripts and benchmarks.
        println!("listening on {}", handle.url());
        signals.await;
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP re-reads the TLS certificate and key (after a renewal): new handshakes
/// get the new certificate, open connections stay. A bad file keeps the old one.
fn reload_tls_on_sighup(handle: switchboard::ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; TLS reload is off");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match handle.reload_tls() {
                Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => {
                    error!(error = %e, "SIGHUP: TLS reload failed; the old certificate stays")
                }
            }
        }
    });
}

/// Installs the SIGTERM/SIGINT handlers now (`signal()` registers on the call,
/// unlike an `async fn`, which would only register when first polled) and
/// resolves on the first signal.
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        info!("signal received; draining");
    }
}
