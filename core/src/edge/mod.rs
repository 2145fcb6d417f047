//! The connection kit: everything at the edge of the server that every host mode
//! shares, implemented once. A transport (the built-in tokio-tungstenite server,
//! FastAPI route mode, Node attach mode, a C or Java host that owns the socket)
//! only moves bytes:
//!
//! 1. it turns an upgrade request into an [`UpgradeRequest`] and asks
//!    [`Edge::admit`]: refused (an HTTP status to answer) or [`Admitted`]
//!    (client IP after trusted proxies, identity, subprotocol, a counted slot);
//! 2. it answers `101` and [`Admitted::open`]s an [`EdgeConnection`];
//! 3. it feeds text frames and violations in, writes what the outbox gives out,
//!    pings when [`EdgeConnection::tick`] says so, and calls `finish` at the end.
//!
//! The [`Edge`] also builds the hub from one [`ServerConfig`] (a `redis_url`
//! gives a clustered hub in every host), counts connections, drains, and
//! answers the plain endpoints (`/health`, `/ready`, `/metrics`).
//!
//! A host that owns its sockets, in full (the socket calls are the host's own):
//!
//! ```
//! use switchboard::edge::{Edge, Liveness, Tick, UpgradeRequest};
//! use switchboard::hub::Next;
//! use switchboard::ServerConfig;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let edge = Edge::new(ServerConfig::default()).expect("a valid config");
//! // An upgrade request arrives: its facts go to the kit.
//! // The URL may name the room (and user) to join at connect.
//! let mut request =
//!     UpgradeRequest::new("203.0.113.7".parse().ok(), "/ws?room=lobby&userId=alice");
//! request.header("Origin", "https://app.example.com");
//! request.header("Sec-WebSocket-Protocol", "webrtc-signaling");
//! let admitted = match edge.admit(&request).await {
//!     Ok(admitted) => admitted,
//!     // Answer refused.status (403, 429, 503, 401) with its headers and body.
//!     Err(refused) => panic!("refused: {refused}"),
//! };
//! // Answer 101, selecting admitted.subprotocol(); then open the connection.
//! assert_eq!(admitted.subprotocol(), Some("webrtc-signaling"));
//! let mut conn = admitted.open(edge.hub(), Liveness::Pings);
//! // Every text frame read goes in (binary ones with `conn.binary(..)`);
//! // oversized or malformed frames are reported with `conn.violation(..)`.
//! conn.text(r#"{"type":"ping","timestamp":1}"#);
//! // A write loop takes batches from the outbox: frames to send, or the close
//! // the kit asks for (`Next::Close`).
//! let mut batch = Vec::new();
//! let mut types = Vec::new();
//! while types.len() < 3 {
//!     match conn.outbox().next(&mut batch).await {
//!         Next::Frames => {
//!             conn.writing();
//!             // `encoding().wire(frame)`: text, or MessagePack on its subprotocol.
//!             for frame in batch.drain(..) {
//!                 let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
//!                 types.push(v["type"].as_str().unwrap().to_owned());
//!             }
//!             conn.written();
//!         }
//!         Next::Close(close) => panic!("closed with {}", close.code),
//!     }
//! }
//! assert_eq!(types, ["connected", "room-info", "pong"]);
//! // A timer asks the kit when to ping and when to give up on the peer.
//! assert!(matches!(conn.tick(), Tick::Idle(_)));
//! assert_eq!(edge.connection_count(), 1);
//! // The socket is gone (the peer's close code, or None without a close frame).
//! conn.finish(Some(1000));
//! assert_eq!(edge.connection_count(), 0);
//! # }
//! ```

mod admit;
mod api;
mod budget;
mod conn;

pub use crate::protocol::url::{PathFields, UpgradePaths, UrlJoin};
pub use admit::{Admitted, Encoding, Refused, UpgradeRequest};
pub use api::{ApiRequest, API_PREFIX};
pub use budget::{ip_key, Pending};
pub use conn::{EdgeConnection, Liveness, Tick, Violation, Wire};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::error::Result;
use crate::hub::{Hub, METRICS_CONTENT_TYPE};
use crate::proxy::TrustedProxies;

/// The hub of one configuration with its admission state. Cheap to clone; every
/// clone is the same edge. Host modes that serve the same hub share one `Edge`,
/// so limits and counts hold across all of them.
#[derive(Debug, Clone)]
pub struct Edge {
    inner: Arc<EdgeInner>,
}

#[derive(Debug)]
struct EdgeInner {
    config: Arc<ServerConfig>,
    hub: Hub,
    cluster: Option<Arc<Cluster>>,
    proxies: TrustedProxies,
    paths: UpgradePaths,
    /// Admitted connections not yet finished (every host mode together).
    open: AtomicUsize,
    /// Admitted connections by client IP key (IPv6: by prefix).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Sockets before admission, and the new-connection rates.
    budgets: budget::Budgets,
    /// Signalled whenever `open` drops to zero.
    all_closed: Notify,
    /// When the edge was built (the API's uptime).
    started: std::time::Instant,
    /// Seconds after `started` of the last "at capacity" warning (+1; 0: none).
    capacity_warned: std::sync::atomic::AtomicU64,
}

/// The admin page (`core/assets/admin`): plain HTML and one ES module.
const ADMIN_HTML: &str = include_str!("../../assets/admin/index.html");
const ADMIN_JS: &str = include_str!("../../assets/admin/admin.js");

/// A plain HTTP answer (`/health`, `/ready`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The HTTP status code (e.g. 200, or 503 while draining).
    pub status: u16,
    /// The `Content-Type` header value.
    pub content_type: &'static str,
    /// The response body.
    pub body: String,
}

impl Edge {
    /// Validates `config` and builds its hub: clustered over Redis when
    /// `redis_url` is set. Call inside a tokio runtime (the hub's timers and the
    /// cluster's tasks run on it).
    pub fn new(config: ServerConfig) -> Result<Edge> {
        config.validate()?;
        let paths = config.upgrade_paths()?;
        let proxies = TrustedProxies::new(&config.trusted_proxies)
            .map_err(|e| crate::error::Error::Config(format!("trusted_proxies: {e}")))?;
        let config = Arc::new(config);
        let (hub, cluster) = crate::cluster::hub(config.clone())?;
        if config.allowed_origins.is_empty() {
            warn!(
                "no allowed origins configured: any web page may connect (set --allowed-origins)"
            );
        }
        let budgets = budget::Budgets::default();
        hub.metrics().register_gauge(
            "pending_connections",
            "Accepted sockets waiting for their upgrade decision or HTTP answer",
            &budgets.pending_gauge,
        );
        Ok(Edge {
            inner: Arc::new(EdgeInner {
                config,
                hub,
                cluster,
                proxies,
                paths,
                open: AtomicUsize::new(0),
                per_ip: Mutex::new(HashMap::new()),
                budgets,
                all_closed: Notify::new(),
                started: std::time::Instant::now(),
                capacity_warned: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Cluster mode: this node's link to the others (`None` in memory).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// Whether `path` matches one of the configured upgrade paths (fixed or
    /// template). Hosts that route upgrades by the kit's configuration ask this
    /// (and answer 404 otherwise); others leave the path to their router.
    pub fn serves_path(&self, path: &str) -> bool {
        self.inner.paths.matches(path).is_some()
    }

    /// The client's IP for a request (trusted-proxy resolution), without admitting.
    pub fn client_ip(&self, req: &UpgradeRequest) -> IpAddr {
        self.inner.client_ip(req)
    }

    /// A transport that owns its listening socket calls this for each accepted
    /// socket, before reading anything: the socket counts against its IP's
    /// pending budget (`max_pending_per_ip`, server-wide `max_pending`) and its
    /// new-connection rate (`conn_rate_per_ip`) until the returned [`Pending`]
    /// is dropped. Refused: write the status (`Retry-After` included) and close.
    /// Build the upgrade request with [`Pending::request`] so the rate is
    /// charged once.
    pub fn accept(&self, peer: IpAddr) -> std::result::Result<Pending, Refused> {
        self.inner.accept(peer)
    }

    /// Admission (PROTOCOL.md §2): origin 403, new-connection rate and per-IP
    /// 429, capacity or draining 503, then the handshake token 401. Refusals are
    /// counted in the metrics.
    pub async fn admit(&self, req: &UpgradeRequest) -> std::result::Result<Admitted, Refused> {
        self.inner.admit(req).await
    }

    /// Admitted connections still open, over every host mode of this edge.
    pub fn connection_count(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Graceful drain: new upgrades get 503, every client gets `draining` and a
    /// 1001 close; returns once every connection finished or the drain timeout
    /// passed (the transport then cuts the rest). In cluster mode the sessions
    /// are handed over to the other nodes. Idempotent.
    pub async fn drain(&self) {
        let s = &self.inner;
        info!(connections = s.open.load(Ordering::Relaxed), "draining");
        s.hub.drain();
        let all_closed = async {
            loop {
                let notified = s.all_closed.notified();
                if s.open.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(s.config.drain_timeout, all_closed)
            .await
            .is_err()
        {
            warn!(
                left = s.open.load(Ordering::Relaxed),
                "drain timeout passed; closing the rest"
            );
        }
        if let Some(cluster) = &s.cluster {
            // Every session is away now: hand them over to the cluster.
            cluster.shutdown().await;
        }
    }

    /// `GET /health`: 200 (503 while draining) with a JSON summary.
    pub fn health(&self) -> HttpReply {
        let draining = self.inner.hub.is_draining();
        let body = serde_json::json!({
            "status": if draining { "draining" } else { "ok" },
            "connections": self.connection_count(),
            "rooms": self.inner.hub.metrics().rooms.load(Ordering::Relaxed),
        });
        HttpReply {
            status: if draining { 503 } else { 200 },
            content_type: "application/json",
            body: body.to_string(),
        }
    }

    /// `GET /ready`: 503 while draining or cut off from the cluster.
    pub fn ready(&self) -> HttpReply {
        let (status, body) = if self.inner.hub.is_draining() {
            (503, "draining\n".to_owned())
        } else if let Some(why) = self.cluster().and_then(|c| c.down_reason()) {
            // Cut off from the cluster: only rooms that are wholly here work.
            (503, format!("redis unavailable: {why}\n"))
        } else {
            (200, "ready\n".to_owned())
        };
        HttpReply {
            status,
            content_type: "text/plain",
            body,
        }
    }

    /// `GET /metrics`: the OpenMetrics text of the hub (and the cluster).
    pub fn metrics(&self) -> HttpReply {
        let mut body = String::with_capacity(8192);
        // One registry: the cluster's series are in it too.
        self.inner.hub.metrics().render(&mut body);
        HttpReply {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body,
        }
    }

    /// The plain endpoint at `path` (`/health`, `/ready`, `/metrics`; with the
    /// API on, the admin page `/admin` and its `/admin.js`), if it is one.
    pub fn endpoint(&self, path: &str) -> Option<HttpReply> {
        let page = |content_type, body: &str| HttpReply {
            status: 200,
            content_type,
            body: body.to_owned(),
        };
        match path {
            "/health" => Some(self.health()),
            "/ready" => Some(self.ready()),
            "/metrics" => Some(self.metrics()),
            // The page holds no data: everything it shows comes from the API.
            "/admin" if self.api_enabled() => Some(page("text/html; charset=utf-8", ADMIN_HTML)),
            "/admin.js" if self.api_enabled() => {
                Some(page("text/javascript; charset=utf-8", ADMIN_JS))
            }
            _ => None,
        }
    }
}
