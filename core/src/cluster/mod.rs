//! Cluster mode: several `switchboard` processes behind a load balancer behave as
//! one server, with Redis as the backplane. This module owns every Redis detail; the
//! hub sees it only through its crate-private `hub::backplane::Backplane` trait.
//!
//! Design (the full text, with the reasons, is `docs/CLUSTER.md`):
//!
//! - **Delivery: pub/sub, one inbox channel per node** (`sb:n:{node}`), and one
//!   membership channel for all (`sb:m`). Every message has exactly one destination
//!   node, so per-node channels need no subscription churn as rooms come and go.
//!   Everything a node sends leaves through one ordered writer task on one
//!   connection, and each node reads both channels on one subscriber connection:
//!   Redis keeps the order of one connection's `PUBLISH`es to a subscriber, so one
//!   sender's messages reach a receiver in order, and a `user-joined` precedes the
//!   newcomer's first offer. The deliveries a batch of the writer has for one node
//!   travel as one `PUBLISH` of a bundle of length-prefixed records (`bundle.rs`),
//!   neither validated nor escaped between nodes. Pub/sub keeps nothing: what could
//!   be lost (a node that is not subscribed, Redis down) is made visible by the
//!   answers below instead.
//! - **`ack` after the owning node accepted**: a message with an `id` for a peer on
//!   another node is answered there (`a` on the origin's inbox) once it entered the
//!   receiver's session (delivered or buffered); only then does the sender get its
//!   `ack`, or the `error` (`peer-not-found`, …). `PUBLISH` reporting no subscriber
//!   means the node is gone: the message is buffered straight into the receiver's
//!   replay stream if its node drained (`BUFFER_ORPHAN`), else refused. Answers that
//!   never come are refused after a timeout.
//! - **Membership**: the hash `sb:members` (one field per room, user and session,
//!   with node, display name, metadata and join order) is the record a node loads
//!   when it (re)connects; changes are announced on `sb:m` and applied by every
//!   node to its rooms' remote members, so `room-info`, `user-joined` and
//!   `user-left` span the cluster. Join order is a clock-based number comparable
//!   across nodes, from which both sides of a pair derive complementary `polite`.
//! - **Node liveness**: `sb:node:{id}` with a TTL, refreshed every heartbeat. A node
//!   whose key expired is reaped by one survivor (lock `sb:reap:{id}`): each of its
//!   sessions that no other node claimed meanwhile ends (`user-left` `timeout`).
//! - **Sessions reachable from any node**: the frames a session buffers are mirrored
//!   to the stream `sb:r:{session}` (one entry per write, id = its last `seq`,
//!   trimmed with `MINID ~` below the in-memory replay buffer; written behind,
//!   `mirror.rs`: at once at a slow pace, within 50 ms under load, always before
//!   the session can be claimed elsewhere), next to `sb:s:{session}` (resume token,
//!   owner, `away_until`). A `resume` for a session this node does not have claims
//!   it with one atomic script: from a live owner it first asks for a hand-over
//!   (`rel`/`reld`: the owner closes the old connection with 4409 and flushes), from
//!   a dead or drained one directly; then it reads the stream and replays exactly.
//! - **Drain** hands every session over: they stay away with `away_until` = now +
//!   resume window, and the draining node removes its liveness key when it stops, so
//!   a resume elsewhere claims at once and messages meanwhile are buffered into the
//!   streams; the reaper ends what was not resumed when the window passes.
//! - **Redis down**: local rooms keep working; cross-node sends, joins into rooms
//!   with remote peers and resumes of remote sessions are refused (`internal`,
//!   "cluster unavailable: …"); `/ready` answers 503 and
//!   `switchboard_cluster_redis_up` is 0. On reconnect the node re-registers,
//!   rewrites its sessions, streams and memberships (Redis may have restarted empty),
//!   announces a snapshot that replaces what the others knew of it, and reloads
//!   theirs.
//!
//! Every queue is bounded: the writer's operation queue (`queue.rs`: by count and by bytes; at the bound
//! a cross-node send is refused and state writes are dropped, then rewritten by a
//! full resync), the replay streams (the replay buffer bound), the pending answers
//! (one per sent message with an `id`, each timed out), the hand-over tombstones
//! (expire after the resume window) and the deliveries held for a session being
//! claimed (bounded per session; past it they are refused).

mod backplane;
mod bundle;
mod claim;
mod heartbeat;
mod keys;
mod link;
mod mirror;
mod queue;
mod stats;
mod subscriber;
mod wire;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::protocol::json::Raw;
use tokio::sync::{oneshot, watch};
use tracing::info;

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::hub::backplane::{Backplane, Unavailable};
use crate::hub::{Hub, WeakHub};
use crate::protocol::{now_millis, outbound, LeaveReason};
use queue::{OpQueue, OpReceiver, OP_QUEUE};
use stats::Stats;

/// Deliveries held for one session while it is being claimed; past it, refused.
const HELD_PER_CLAIM: usize = 1024;
/// How long a hand-over may take before the claimant takes the session anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Timings of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    heartbeat: Duration,
    node_ttl: Duration,
    resume_window: Duration,
    replay_messages: usize,
    /// A cross-node message not answered within this is refused.
    answer_timeout: Duration,
    /// TTL of a session's keys in Redis, refreshed by its node every quarter of
    /// it; long past the resume window, so only orphans expire.
    session_ttl: Duration,
}

/// One node's membership of the cluster: the backplane of its hub.
#[derive(Debug)]
pub struct Cluster {
    /// This cluster node itself, for the tasks it spawns.
    me: std::sync::Weak<Cluster>,
    node: Arc<str>,
    client: redis::Client,
    settings: Settings,
    hub: WeakHub,
    ops: OpQueue,
    /// Taken by the link task when it starts.
    ops_rx: Mutex<Option<OpReceiver>>,
    up: AtomicBool,
    /// Why Redis is not usable (for errors and logs).
    down_reason: Mutex<String>,
    /// State writes were dropped: rewrite everything once Redis is back.
    needs_resync: AtomicBool,
    /// Set at the first registration: a liveness key found gone after it
    /// means this node was fenced (reaped, or Redis lost it).
    registered: AtomicBool,
    /// Snapshot parts gathered per announcing node until its last part.
    snapshot_parts: Mutex<HashMap<Arc<str>, Vec<wire::Member>>>,
    last_order: AtomicU64,
    /// Sent messages waiting for their answer: (sender session, id) → pending.
    pending: Mutex<HashMap<PendingKey, Pending>>,
    /// Sessions handed over to another node: deliveries that still come here follow.
    tombstones: Mutex<HashMap<Arc<str>, Tombstone>>,
    /// The other nodes alive at the last heartbeat.
    peer_nodes: Mutex<Vec<Arc<str>>>,
    /// Sessions being claimed here: deliveries wait until they are installed.
    claims: Mutex<HashMap<Arc<str>, Vec<bundle::Record>>>,
    /// Hand-overs this node waits for.
    releases: Mutex<HashMap<Arc<str>, oneshot::Sender<()>>>,
    /// A connection for queries outside the writer (claims, reaper).
    query_conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    stop: watch::Sender<bool>,
    /// Set once the link task has left the cluster.
    exited: watch::Sender<bool>,
    stats: Stats,
}

/// A sent message awaiting answers: (sender session, message id as JSON text).
type PendingKey = (Arc<str>, Box<str>);
/// Where a handed-over session went, and when.
type Tombstone = (Arc<str>, Instant);

#[derive(Debug)]
struct Pending {
    remaining: usize,
    error: Option<(String, String)>,
    since: Instant,
}

/// What the writer task does for the hub, in call order.
#[derive(Debug)]
enum Op {
    Open {
        sid: Arc<str>,
        token: Arc<str>,
    },
    /// The session has frames to mirror (taken from it when written).
    Mirror(Arc<crate::hub::Session>),
    Away {
        sid: Arc<str>,
        until: Option<u64>,
        rooms: Vec<Arc<str>>,
    },
    Close {
        sid: Arc<str>,
    },
    Join(wire::Member),
    Leave {
        room: Arc<str>,
        user: Arc<str>,
        sid: Arc<str>,
        reason: LeaveReason,
    },
    Deliver {
        node: Arc<str>,
        record: bundle::Record,
    },
    Publish {
        channel: String,
        payload: String,
    },
    /// The session now belongs to `node` (after a hand-over from here).
    Owner {
        sid: Arc<str>,
        node: Arc<str>,
    },
    /// Nothing to write: wakes the writer (for a resync it was asked for).
    Nudge,
}

/// The Redis client of `url`: `redis://[user:password@]host:port[/db]` (an ACL
/// user, or only a password), or `rediss://` for TLS, verified against the
/// system's roots or the CA in `ca_cert`.
fn redis_client(url: &str, ca_cert: Option<&std::path::Path>) -> Result<redis::Client> {
    let bad = |e: &dyn std::fmt::Display| Error::Config(format!("redis_url: {e}"));
    if !url.starts_with("rediss://") {
        if ca_cert.is_some() {
            return Err(Error::Config(
                "redis_ca_cert needs a rediss:// redis_url".to_owned(),
            ));
        }
        return redis::Client::open(url).map_err(|e| bad(&e));
    }
    // rustls needs a process-wide provider; ring is the one this crate builds.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = ca_cert else {
        return redis::Client::open(url).map_err(|e| bad(&e));
    };
    let root_cert = std::fs::read(path)
        .map_err(|e| Error::Config(format!("redis_ca_cert: reading {}: {e}", path.display())))?;
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(url, certs).map_err(|e| bad(&e))
}

/// Builds the hub of a server: in memory without a Redis URL, else a cluster node.
pub(crate) fn hub(config: Arc<ServerConfig>) -> Result<(Hub, Option<Arc<Cluster>>)> {
    let Some(url) = config.redis_url.clone() else {
        return Ok((Hub::new(config), None));
    };
    let client = redis_client(&url, config.redis_ca_cert.as_deref())?;
    let settings = Settings {
        heartbeat: config.cluster_heartbeat,
        node_ttl: config.cluster_node_ttl,
        resume_window: config.resume_window,
        replay_messages: config.replay_buffer_messages,
        answer_timeout: (config.cluster_node_ttl * 2).max(Duration::from_secs(5)),
        session_ttl: (config.resume_window * 3).max(Duration::from_secs(600)),
    };
    let node: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
    let mut made = None;
    let hub = Hub::with_backplane(config, |weak| {
        let (ops, rx) = OpQueue::new();
        let cluster = Arc::new_cyclic(|me| Cluster {
            me: me.clone(),
            node: node.clone(),
            client,
            settings,
            hub: weak,
            ops,
            ops_rx: Mutex::new(Some(rx)),
            up: AtomicBool::new(false),
            down_reason: Mutex::new("connecting to Redis".to_owned()),
            needs_resync: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            snapshot_parts: Mutex::new(HashMap::new()),
            last_order: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            tombstones: Mutex::new(HashMap::new()),
            peer_nodes: Mutex::new(Vec::new()),
            claims: Mutex::new(HashMap::new()),
            releases: Mutex::new(HashMap::new()),
            query_conn: Mutex::new(None),
            stop: watch::channel(false).0,
            exited: watch::channel(false).0,
            stats: Stats::default(),
        });
        made = Some(cluster.clone());
        cluster as Arc<dyn Backplane>
    });
    let cluster: Arc<Cluster> = made.expect("the backplane was made");
    cluster.stats.register(hub.metrics());
    let weak = Arc::downgrade(&cluster);
    hub.metrics().before_render(move || {
        if let Some(c) = weak.upgrade() {
            c.stats
                .redis_up
                .store(i64::from(c.is_up()), Ordering::Relaxed);
            let backlog = OP_QUEUE - c.ops.capacity();
            c.stats.backlog.store(backlog as i64, Ordering::Relaxed);
            c.stats
                .backlog_bytes
                .store(c.ops.bytes() as i64, Ordering::Relaxed);
        }
    });
    info!(node = %cluster.node, "cluster mode: joining through Redis");
    tokio::spawn(link::run(cluster.clone()));
    Ok((hub, Some(cluster)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Every live node's id, this one first (the others as of the last heartbeat).
    pub fn nodes(&self) -> Vec<String> {
        let mut out = vec![self.node.to_string()];
        out.extend(lock(&self.peer_nodes).iter().map(|n| n.to_string()));
        out
    }

    pub(crate) fn set_peer_nodes(&self, alive: &std::collections::HashSet<Arc<str>>) {
        let mut nodes: Vec<Arc<str>> = alive.iter().cloned().collect();
        nodes.sort();
        *lock(&self.peer_nodes) = nodes;
    }

    /// Whether Redis is reachable and this node is in sync with it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Why Redis is not usable, while it is not.
    pub fn down_reason(&self) -> Option<String> {
        (!self.is_up()).then(|| lock(&self.down_reason).clone())
    }

    fn unavailable(&self) -> Unavailable {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Unavailable(format!(
            "cluster unavailable: {}; only peers on this node can be reached",
            lock(&self.down_reason)
        ))
    }

    /// Asks the writer for a full resync now (it runs before its next batch).
    fn request_resync(&self) {
        self.needs_resync.store(true, Ordering::Release);
        let _ = self.ops.try_send(Op::Nudge);
    }

    /// Queues a state write; at the bound it is dropped and a resync scheduled.
    fn queue(&self, op: Op) {
        if !self.is_up() {
            // Not written now: the resync after the reconnect rewrites everything.
            self.needs_resync.store(true, Ordering::Release);
            return;
        }
        if self.ops.try_send(op).is_err() {
            self.needs_resync.store(true, Ordering::Release);
        }
    }

    /// Leaves the cluster after a drain: every session's state is in Redis (away,
    /// resumable on any node for the resume window), and the liveness key goes, so
    /// other nodes claim without waiting for this one. Call after the connections closed.
    pub async fn shutdown(&self) {
        // The link stops listening, writes what is queued, then removes the
        // liveness key: messages for this node's sessions meanwhile are retried by
        // their senders until they can be buffered in Redis.
        let mut exited = self.exited.subscribe();
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), exited.wait_for(|e| *e)).await;
        info!(node = %self.node, "left the cluster");
    }

    /// Registers an expected answer for a message sent with an `id`.
    fn expect_answer(&self, sender: &Arc<str>, id: &str, nodes: usize) {
        lock(&self.pending).insert(
            (sender.clone(), id.into()),
            Pending {
                remaining: nodes,
                error: None,
                since: Instant::now(),
            },
        );
    }

    /// One node's answer (or a local verdict) for a sent message with id `id`
    /// (its JSON text).
    fn answered(&self, sender: &str, id: &str, error: Option<(String, String)>) {
        let key: PendingKey = (sender.into(), id.into());
        let done = {
            let mut pending = lock(&self.pending);
            let Some(p) = pending.get_mut(&key) else {
                return;
            };
            p.remaining = p.remaining.saturating_sub(1);
            if p.error.is_none() {
                p.error = error;
            }
            if p.remaining > 0 {
                return;
            }
            pending.remove(&key).map(|p| p.error)
        };
        if let Some(error) = done {
            self.reply(sender, id, error);
        }
    }

    /// The sender's `ack`, or its `error` with `ref`.
    fn reply(&self, sender: &str, id: &str, error: Option<(String, String)>) {
        let (Some(hub), Ok(id)) = (self.hub.upgrade(), Raw::parse(id)) else {
            return;
        };
        let body = match error {
            None => outbound::ack(id),
            Some((code, message)) => outbound::error(&code, &message, Some(id)),
        };
        hub.deliver_to_session(sender, &body);
    }

    /// Refuses answers that did not come in time.
    fn expire_pending(&self) {
        let timeout = self.settings.answer_timeout;
        let expired: Vec<PendingKey> = {
            let mut pending = lock(&self.pending);
            let keys: Vec<_> = pending
                .iter()
                .filter(|(_, p)| p.since.elapsed() >= timeout)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &keys {
                pending.remove(k);
            }
            keys
        };
        for (sender, id) in expired {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            let why = "cluster: no answer from the peer's node";
            self.reply(&sender, &id, Some(("internal".into(), why.into())));
        }
        let window = self.settings.resume_window;
        lock(&self.tombstones).retain(|_, (_, at)| at.elapsed() < window);
    }
}
