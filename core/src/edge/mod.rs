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
//! let mut request = UpgradeRequest::new("203.0.113.7".parse().ok(), "/ws?room=lobby");
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
//! // Every text frame read goes in; binary, oversized or malformed frames are
//! // reported with `conn.violation(..)`.
//! conn.text(r#"{"type":"join","roomId":"lobby","userId":"alice"}"#);
//! // A write loop takes batches from the outbox: frames to send, or the close
//! // the kit asks for (`Next::Close`).
//! let mut batch = Vec::new();
//! let mut types = Vec::new();
//! while types.len() < 2 {
//!     match conn.outbox().next(&mut batch).await {
//!         Next::Frames => {
//!             conn.writing();
//!             for frame in batch.drain(..) {
//!                 let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
//!                 types.push(v["type"].as_str().unwrap().to_owned());
//!             }
//!             conn.written();
//!         }
//!         Next::Close(close) => panic!("closed with {}", close.code),
//!     }
//! }
//! assert_eq!(types, ["connected", "room-info"]);
//! // A timer asks the kit when to ping and when to give up on the peer.
//! assert!(matches!(conn.tick(), Tick::Idle(_)));
//! assert_eq!(edge.connection_count(), 1);
//! // The socket is gone (the peer's close code, or None without a close frame).
//! conn.finish(Some(1000));
//! assert_eq!(edge.connection_count(), 0);
//! # }
//! ```

mod admit;
mod conn;

pub use admit::{Admitted, Refused, UpgradeRequest};
pub use conn::{EdgeConnection, Liveness, Tick, Violation};

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
    /// Admitted connections not yet finished (every host mode together).
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Signalled whenever `open` drops to zero.
    all_closed: Notify,
}

/// A plain HTTP answer (`/health`, `/ready`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Edge {
    /// Validates `config` and builds its hub: clustered over Redis when
    /// `redis_url` is set. Call inside a tokio runtime (the hub's timers and the
    /// cluster's tasks run on it).
    pub fn new(config: ServerConfig) -> Result<Edge> {
        config.validate()?;
        let proxies = TrustedProxies::new(&config.trusted_proxies)
            .map_err(|e| crate::error::Error::Config(format!("trusted_proxies: {e}")))?;
        let config = Arc::new(config);
        let (hub, cluster) = crate::cluster::hub(config.clone())?;
        if config.allowed_origins.is_empty() {
            warn!(
                "no allowed origins configured: any web page may connect (set --allowed-origins)"
            );
        }
        Ok(Edge {
            inner: Arc::new(EdgeInner {
                config,
                hub,
                cluster,
                proxies,
                open: AtomicUsize::new(0),
                per_ip: Mutex::new(HashMap::new()),
                all_closed: Notify::new(),
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

    /// Whether `path` is the configured upgrade path (hosts that route upgrades
    /// by the kit's configuration ask this; others leave the path to their router).
    pub fn serves_path(&self, path: &str) -> bool {
        path == self.inner.config.path
    }

    /// The client's IP for a request (trusted-proxy resolution), without admitting.
    pub fn client_ip(&self, req: &UpgradeRequest) -> IpAddr {
        self.inner.client_ip(req)
    }

    /// Admission (PROTOCOL.md §2): origin 403, per-IP 429, capacity or draining
    /// 503, then the handshake token 401. Refusals are counted in the metrics.
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

    /// The plain endpoint at `path` (`/health`, `/ready`, `/metrics`), if it is one.
    pub fn endpoint(&self, path: &str) -> Option<HttpReply> {
        match path {
            "/health" => Some(self.health()),
            "/ready" => Some(self.ready()),
            "/metrics" => Some(self.metrics()),
            _ => None,
        }
    }
}
