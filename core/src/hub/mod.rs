//! The hub: rooms, sessions, routing, replay buffers, acknowledgements and limits —
//! pure logic with no sockets, drivable by any transport through [`Connection`].
//!
//! Transports: instead of the hub calling into "a connection that can be sent
//! frames", each [`Connection`] owns a bounded [`Outbox`] that the transport drains
//! (`Outbox::next` gives every queued frame at once, so the transport feeds them
//! all and flushes once). The hub thus owns the bound and the slow-consumer rule,
//! pushing never blocks or awaits, and a binding (a Starlette or Node socket) only
//! needs a read loop calling `handle_text` and a write loop draining the outbox.
//!
//! Concurrency: rooms and sessions live in sharded maps; each room and each session
//! has its own lock. Locks are always taken room → session, never the other way,
//! and no lock is held across an await. Frames are pushed into per-connection
//! bounded [`Outbox`]es without blocking; transports drain them.

mod auth;
mod away;
pub(crate) mod backplane;
mod conn;
mod control;
mod metrics;
mod millis;
pub mod outbox;
mod rate;
mod remote;
mod resume_token;
mod session;
mod shards;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

pub use conn::{ConnectInfo, Connection};
pub use metrics::{CounterCell, GaugeCell, Metrics, Refusal, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use outbox::OutboxPolicy;
pub use outbox::{CloseRequest, Fate, Next, Outbox};

use crate::auth::Verifier;
use crate::config::ServerConfig;
use crate::event::{Event, Fields};
use crate::protocol::{close, outbound, AppTypes, LeaveReason, MsgType};
use away::{AwayBudget, AwayCaps, AwayKey};
use backplane::Backplane;
pub(crate) use millis::millis;
use session::ReplayBounds;
use session::{Member, Room};
pub(crate) use session::{RemoteMember, ReplayMirror, Session};
use shards::Shards;

/// One peer of a room, as the host application sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer's user id in the room.
    pub user_id: String,
    /// The id of the session that holds the peer's membership.
    pub session_id: String,
    /// The `displayName` the peer joined with, if any.
    pub display_name: Option<String>,
    /// The `metadata` the peer joined with (or its token's), if any.
    pub metadata: Option<Value>,
    /// `false` while the peer's connection is lost and its session may resume.
    pub connected: bool,
    /// Cluster mode: the node that holds the peer's session (`None` in memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A room and its peers in join order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    /// The room's id.
    pub room_id: String,
    /// The peers: this node's in join order, then (cluster mode) other nodes'.
    pub peers: Vec<PeerInfo>,
}

/// The signaling hub. Cheap to clone; every clone is the same hub.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    config: Arc<ServerConfig>,
    rooms: Shards<Room>,
    sessions: Shards<Session>,
    /// Shared with every connection's outbox (messages out, slow consumers).
    metrics: Arc<Metrics>,
    /// The bounds of every connection's outbox.
    outbox_policy: Arc<OutboxPolicy>,
    events: broadcast::Sender<Event>,
    /// Set by the first `subscribe`: until then no event is built, and the
    /// relay path does not take the channel's lock to count receivers.
    subscribed: AtomicBool,
    draining: AtomicBool,
    next_conn_id: AtomicU64,
    /// Relayed kinds whose events are not built (bits of `relay_kind_bit`).
    relay_events_muted: AtomicU8,
    /// The auth mode, ready to check tokens (keys parsed once).
    auth: Verifier,
    /// The runtime the hub was created on: its timers and auth-hook tasks run there
    /// even when a binding calls in from a thread of its own.
    runtime: Option<tokio::runtime::Handle>,
    /// Cluster mode (`crate::cluster`); `None` in memory.
    backplane: Option<Arc<dyn Backplane>>,
    /// The application's own message types (`ServerConfig::app_types`).
    app_types: AppTypes,
    /// Away sessions and their replay bytes, per IP and server-wide.
    away: Arc<AwayBudget<Session>>,
}

/// A hub that a backplane can hold without keeping it alive.
#[derive(Debug, Clone)]
pub(crate) struct WeakHub(std::sync::Weak<HubInner>);

impl WeakHub {
    pub(crate) fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl Drop for HubInner {
    /// Rooms hold their members' sessions and sessions hold their rooms: a hub
    /// dropped while members are left (sessions still away after a drain) would
    /// leak both. Emptying the rooms breaks every such cycle.
    fn drop(&mut self) {
        for room in self.rooms.values() {
            room.lock().members.clear();
        }
        self.away.clear();
        // Lets the evictor task see the hub is gone and end.
        self.away.over_bytes.notify_one();
    }
}

impl Hub {
    /// A hub with these limits. Needs a tokio runtime (resume-window timers).
    ///
    /// The auth configuration is made ready here; one that can not work (which
    /// `ServerConfig::validate` reports) refuses every credential.
    pub fn new(config: Arc<ServerConfig>) -> Hub {
        Hub::build(config, |_| None)
    }

    /// A hub that is part of a cluster through `make`'s backplane.
    pub(crate) fn with_backplane(
        config: Arc<ServerConfig>,
        make: impl FnOnce(WeakHub) -> Arc<dyn Backplane>,
    ) -> Hub {
        Hub::build(config, |weak| Some(make(weak)))
    }

    fn build(
        config: Arc<ServerConfig>,
        make: impl FnOnce(WeakHub) -> Option<Arc<dyn Backplane>>,
    ) -> Hub {
        let (events, _) = broadcast::channel(config.event_buffer);
        let auth = Verifier::new(&config.auth);
        if let Verifier::Broken(why) = &auth {
            tracing::error!(%why, "unusable auth configuration: every connection is refused");
        }
        let away = Arc::new(AwayBudget::new(AwayCaps {
            per_ip: config.max_away_per_ip,
            per_user: config.max_away_per_user,
            total: config.max_away_sessions,
            bytes: config.away_replay_budget_bytes,
        }));
        let metrics = Arc::new(Metrics::new());
        let outbox_policy = OutboxPolicy::new(
            config.outbound_queue_bytes,
            config.outbound_budget_bytes,
            config.heartbeat_timeout,
            Some(metrics.clone()),
        );
        let hub = Hub {
            inner: Arc::new_cyclic(|weak| HubInner {
                away,
                auth,
                runtime: tokio::runtime::Handle::try_current().ok(),
                rooms: Shards::new(),
                sessions: Shards::new(),
                metrics,
                outbox_policy,
                events,
                subscribed: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                next_conn_id: AtomicU64::new(1),
                backplane: make(WeakHub(weak.clone())),
                relay_events_muted: AtomicU8::new(0),
                // Checked by `ServerConfig::validate`; a hub built from an
                // unchecked config knows no app types rather than wrong ones.
                app_types: AppTypes::new(&config.app_types).unwrap_or_default(),
                config,
            }),
        };
        hub.inner.start_evictor();
        let gauge = GaugeCell::default();
        let metrics = &hub.inner.metrics;
        metrics.register_gauge(
            "away_replay_bytes",
            "Replay bytes held by away sessions (drawn from --away-replay-budget-bytes)",
            &gauge,
        );
        let budget = hub.inner.away.clone();
        metrics.before_render(move || gauge.store(budget.usage().1 as i64, Ordering::Relaxed));
        hub
    }

    /// Which relayed messages (`offer`, `answer`, `candidate`, `message`, `chat`,
    /// and the app types: any of their names turns them all on) become events;
    /// `None` (the default) means all. Building a relay's event
    /// costs about as much as relaying it, so a host that only listens for some
    /// kinds (a binding forwarding events to its listeners) turns the others off.
    /// Applies to every subscriber of this hub.
    pub fn set_relay_events(&self, kinds: Option<&[&str]>) {
        let app_types = &self.inner.app_types;
        let muted = kinds.map_or(0, |kinds| {
            [
                MsgType::Offer,
                MsgType::Answer,
                MsgType::Candidate,
                MsgType::Message,
                MsgType::Chat,
                MsgType::App,
            ]
            .into_iter()
            .filter(|&k| match k {
                MsgType::App => !kinds.iter().any(|name| app_types.contains(name)),
                _ => !kinds.contains(&k.as_str()),
            })
            .fold(0, |m, k| m | relay_kind_bit(k))
        });
        self.inner
            .relay_events_muted
            .store(muted, Ordering::Relaxed);
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Counters and gauges.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A new receiver of hub events (bounded; see `ServerConfig::event_buffer`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.subscribed.store(true, Ordering::Relaxed);
        self.inner.events.subscribe()
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Starts a drain: every connected client gets `draining` and a 1001 close;
    /// sessions stay away (resumable elsewhere in a cluster).
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
        self.inner.metrics.draining.store(1, Ordering::Relaxed);
        let body = self.inner.draining_body();
        for session in self.inner.sessions.values() {
            let mut st = session.lock();
            if let Some(a) = st.attached.clone() {
                st.deliver(&body);
                a.outbox
                    .close(close::GOING_AWAY, "Server shutting down", Fate::Away);
            }
        }
    }
}

impl HubInner {
    /// Every connection's inbound rate limit (`rate_limit_burst`, `rate_limit_rps`).
    fn rate_limit(&self) -> rate::Limit {
        rate::Limit {
            burst: self.config.rate_limit_burst,
            per_sec: self.config.rate_limit_rps,
        }
    }

    /// The `iceServers` of a `room-info` for `user_id` when TURN credentials
    /// are configured (fresh ones on every `room-info`).
    fn ice_servers(&self, user_id: &str) -> Option<Value> {
        let turn = self.config.turn.as_ref()?;
        Some(turn.ice_servers(user_id, std::time::SystemTime::now()))
    }

    fn draining_body(&self) -> String {
        outbound::draining(self.config.drain_retry_after.as_millis() as u64)
    }

    /// Whether a relay of this kind becomes an event (see `Hub::set_relay_events`).
    fn relay_event_wanted(&self, kind: MsgType) -> bool {
        self.subscribed.load(Ordering::Relaxed)
            && self.relay_events_muted.load(Ordering::Relaxed) & relay_kind_bit(kind) == 0
    }

    fn emit(&self, make: impl FnOnce() -> Event) {
        if self.subscribed.load(Ordering::Relaxed) && self.events.receiver_count() > 0 {
            let _ = self.events.send(make());
        }
    }

    fn replay_bounds(&self) -> ReplayBounds {
        ReplayBounds::new(
            self.config.replay_buffer_messages,
            self.config.replay_buffer_bytes,
        )
    }

    fn room_get_or_create(&self, id: &str) -> Arc<Room> {
        let (room, made) = self
            .rooms
            .get_or_insert_with(id, || Arc::new(Room::new(id.into())));
        if made {
            self.metrics.rooms.fetch_add(1, Ordering::Relaxed);
        }
        room
    }

    fn unlist_room(&self, room: &Arc<Room>) {
        if self.rooms.remove(room) {
            self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn insert_session(&self, session: &Arc<Session>) {
        self.sessions.insert(session.clone());
        self.metrics.sessions.fetch_add(1, Ordering::Relaxed);
    }

    fn unlist_session(&self, session: &Arc<Session>) {
        if self.sessions.remove(session) {
            self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
            if let Some(bp) = &self.backplane {
                bp.session_closed(&session.id);
            }
        }
    }

    /// Removes the session's member from a room and tells the others.
    fn remove_member(&self, room: &Arc<Room>, session: &Arc<Session>, reason: LeaveReason) {
        let mut rs = room.lock();
        let Some(pos) = rs.position_of_session(session) else {
            return;
        };
        let left = rs.members.remove(pos);
        let body = outbound::user_left(&room.id, &left.user_id, reason);
        for m in &rs.members {
            m.session.deliver(&body);
        }
        if let Some(bp) = &self.backplane {
            bp.left(&room.id, &left.user_id, &session.id, reason);
        }
        let empty = rs.is_empty();
        if empty {
            rs.removed = true;
        }
        drop(rs);
        if empty {
            self.unlist_room(room);
        }
        self.emit(|| Event::UserLeft(body_fields(&body)));
    }

    /// Ends a session for good: it leaves every room with `reason`, and its
    /// connection (if any) is closed with `close_with`.
    fn end_session(
        &self,
        session: &Arc<Session>,
        reason: LeaveReason,
        close_with: Option<(u16, &'static str)>,
    ) {
        self.end_session_if(session, reason, close_with, None);
    }

    /// Ends a session only if connection `conn_id` still carries it (checked under
    /// the same lock that marks it ended, so a concurrent resume is never undone).
    fn end_attached_session(&self, session: &Arc<Session>, conn_id: u64, reason: LeaveReason) {
        self.end_session_if(session, reason, None, Some(conn_id));
    }

    fn end_session_if(
        &self,
        session: &Arc<Session>,
        reason: LeaveReason,
        close_with: Option<(u16, &'static str)>,
        attached_to: Option<u64>,
    ) {
        let (rooms, attached) = {
            let mut st = session.lock();
            if st.ended {
                return;
            }
            if let Some(id) = attached_to {
                if st.attached.as_ref().map(|a| a.conn_id) != Some(id) {
                    return;
                }
            }
            st.ended = true;
            st.uncount_away();
            if st.attached.is_none() {
                self.metrics.sessions_away.fetch_sub(1, Ordering::Relaxed);
            }
            (std::mem::take(&mut st.rooms), st.attached.take())
        };
        if let (Some(a), Some((code, why))) = (attached, close_with) {
            a.outbox.close(code, why, Fate::End);
        }
        for room in &rooms {
            self.remove_member(room, session, reason);
        }
        self.unlist_session(session);
    }

    /// The connection of an attached session (from `keys`: its IP, its
    /// authenticated user) is gone without a clean close: the session stays for
    /// the resume window, then its peer leaves with `timeout` — unless the away
    /// budget needs its place first.
    fn detach(self: &Arc<Self>, session: &Arc<Session>, conn_id: u64, keys: Vec<AwayKey>) {
        let (generation, victims) = {
            let mut st = session.lock();
            if st.ended || st.attached.as_ref().map(|a| a.conn_id) != Some(conn_id) {
                return;
            }
            st.attached = None;
            st.away_generation = st.away_generation.wrapping_add(1);
            self.metrics.sessions_away.fetch_add(1, Ordering::Relaxed);
            // A drain moves every session away at once, to be resumed elsewhere:
            // no eviction then.
            let evict = !self.draining.load(Ordering::Acquire);
            let victims = st.count_away(session, &self.away, keys, evict);
            (st.away_generation, victims)
        };
        self.schedule_timeout(session, generation);
        for victim in victims {
            self.evict(&victim);
        }
    }

    /// Ends an away session to keep the away budget (`user-left`, `evicted`);
    /// one that resumed meanwhile is left alone.
    fn evict(&self, session: &Arc<Session>) {
        if session.lock().attached.is_some() {
            return;
        }
        self.metrics
            .sessions_evicted
            .fetch_add(1, Ordering::Relaxed);
        self.end_session_if(session, LeaveReason::Evicted, None, None);
    }

    /// The task that ends the oldest away sessions while their replay bytes are
    /// over the budget (woken by the budget; outside every lock).
    fn start_evictor(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let budget = self.away.clone();
        self.spawn(async move {
            loop {
                budget.over_bytes.notified().await;
                let Some(hub) = weak.upgrade() else { return };
                while let Some(session) = budget.oldest_over_bytes() {
                    hub.evict(&session);
                }
            }
        });
    }
}

fn relay_kind_bit(kind: MsgType) -> u8 {
    match kind {
        MsgType::Offer => 1,
        MsgType::Answer => 2,
        MsgType::Candidate => 4,
        MsgType::Message => 8,
        MsgType::Chat => 16,
        MsgType::App => 32,
        _ => 0,
    }
}

/// `room-info` for `you`: the other local members and the remote ones (cluster
/// mode), merged in join order; the newcomer is polite toward everyone already
/// there (a remote peer that joined elsewhere at the same moment may be later).
/// It fits half of the newcomer's queue (`outbound::room_info` trims it).
fn room_info_body(
    hub: &HubInner,
    room_id: &str,
    others: &[Member],
    remote: &[RemoteMember],
    you: &Member,
    ice_servers: Option<&Value>,
) -> String {
    let mut peers = Vec::with_capacity(others.len() + remote.len());
    let (mut l, mut r) = (others.iter().peekable(), remote.iter().peekable());
    loop {
        let take_local = match (l.peek(), r.peek()) {
            (Some(a), Some(b)) => a.order <= b.order,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_local {
            peers.push((l.next().expect("peeked").peer(), true));
        } else {
            let m = r.next().expect("peeked");
            peers.push((m.peer(), you.order > m.order));
        }
    }
    let limit = hub.config.outbound_queue_bytes / 2;
    outbound::room_info(room_id, &peers, you.peer(), ice_servers, limit)
}

/// The fields of a body this hub built (always a valid object).
fn body_fields(body: &str) -> Fields {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            m.remove("type");
            m
        }
        _ => Fields::new(),
    }
}

/// A random 128-bit identifier, hex.
fn random_id() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}

/// A random UUID (version 4), for users that join without a `userId`.
fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests;
