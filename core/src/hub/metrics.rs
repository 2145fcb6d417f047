//! Hub metrics in a `prometheus-client` registry, rendered as OpenMetrics text at
//! `/metrics`. Every labelled series is created up front (labels are protocol
//! names, never client input), so counting is one relaxed atomic add.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::AuthError;
use crate::error::ErrorCode;
use crate::protocol::MsgType;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A counter with the call shape of the `AtomicU64` it replaced
/// (`fetch_add(n, Ordering::Relaxed)`), so hub code reads the same.
#[derive(Debug, Clone, Default)]
pub struct CounterCell(Counter);

impl CounterCell {
    /// Adds `n`; returns the previous value. The ordering is always relaxed.
    pub fn fetch_add(&self, n: u64, _order: Ordering) -> u64 {
        self.0.inc_by(n)
    }

    /// The current value.
    pub fn load(&self, _order: Ordering) -> u64 {
        self.0.get()
    }
}

/// A gauge with the call shape of the `AtomicI64` it replaced.
#[derive(Debug, Clone, Default)]
pub struct GaugeCell(Gauge);

impl GaugeCell {
    /// Adds `n`; returns the previous value.
    pub fn fetch_add(&self, n: i64, _order: Ordering) -> i64 {
        self.0.inc_by(n)
    }

    /// Subtracts `n`; returns the previous value.
    pub fn fetch_sub(&self, n: i64, _order: Ordering) -> i64 {
        self.0.dec_by(n)
    }

    /// Sets the value.
    pub fn store(&self, v: i64, _order: Ordering) {
        self.0.set(v);
    }

    /// The current value.
    pub fn load(&self, _order: Ordering) -> i64 {
        self.0.get()
    }
}

type Labels = [(&'static str, &'static str); 1];

/// One counter per label value, resolved once; `index` maps a value to its slot.
#[derive(Debug)]
struct LabeledCounters {
    counters: Vec<Counter>,
}

impl LabeledCounters {
    fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        label: &'static str,
        values: &[&'static str],
    ) -> Self {
        let family = Family::<Labels, Counter>::default();
        let counters = values
            .iter()
            .map(|v| family.get_or_create(&[(label, *v)]).clone())
            .collect();
        registry.register(name, help, family);
        LabeledCounters { counters }
    }

    fn inc(&self, index: usize) {
        self.counters[index].inc();
    }

    fn get(&self, index: usize) -> u64 {
        self.counters[index].get()
    }
}

/// Client message types, in [`msg_index`] order, plus `invalid` for frames that
/// did not parse.
const IN_TYPES: [&str; 13] = [
    "auth",
    "join",
    "offer",
    "answer",
    "candidate",
    "message",
    "chat",
    "leave",
    "ping",
    "ack",
    "resume",
    "app",
    "invalid",
];

fn msg_index(kind: MsgType) -> usize {
    match kind {
        MsgType::Auth => 0,
        MsgType::Join => 1,
        MsgType::Offer => 2,
        MsgType::Answer => 3,
        MsgType::Candidate => 4,
        MsgType::Message => 5,
        MsgType::Chat => 6,
        MsgType::Leave => 7,
        MsgType::Ping => 8,
        MsgType::Ack => 9,
        MsgType::Resume => 10,
        MsgType::App => 11,
    }
}

/// Server message types; host messages of other types count as `other` (last).
const OUT_TYPES: [&str; 15] = [
    "connected",
    "room-info",
    "user-joined",
    "user-left",
    "offer",
    "answer",
    "candidate",
    "message",
    "chat",
    "pong",
    "ack",
    "resumed",
    "draining",
    "error",
    "other",
];

const AUTH_REASONS: [&str; 6] = [
    "missing", "invalid", "expired", "refused", "timeout", "internal",
];

const REFUSAL_REASONS: [&str; 9] = [
    "origin",
    "per_ip",
    "capacity",
    "draining",
    "unauthorized",
    "bad_url",
    "pending_per_ip",
    "pending",
    "conn_rate",
];

/// Why a WebSocket upgrade was refused before the handshake (the HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403: `Origin` outside the allow-list.
    Origin,
    /// 429: per-IP connection limit.
    PerIp,
    /// 503: server-wide connection limit.
    Capacity,
    /// 503: the server drains.
    Draining,
    /// 401: invalid or expired token.
    Unauthorized,
    /// 400: a malformed room, user or display name in the URL.
    BadUrl,
    /// 429 at accept: too many sockets of one IP wait for their upgrade decision.
    PendingPerIp,
    /// 503 at accept: too many sockets wait for their upgrade decision server-wide.
    Pending,
    /// 429: one IP opens new connections faster than its rate.
    ConnRate,
}

/// Routing latency buckets, seconds: relaying is microseconds; the upper ones
/// catch lock contention and a starved runtime.
const LATENCY_BUCKETS: [f64; 12] = [
    2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1,
];

/// Refreshes gauges that are read, not counted, right before a scrape.
type RenderHook = Box<dyn Fn() + Send + Sync>;

/// Counters and gauges of one hub, and of the parts plugged into it (the
/// cluster registers its own series here: one registry, one `/metrics`).
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    before_render: std::sync::Mutex<Vec<RenderHook>>,
    /// Open WebSocket connections (gauge `connections`).
    pub connections: GaugeCell,
    /// WebSocket connections accepted (counter `connections_accepted`).
    pub connections_total: CounterCell,
    /// Sessions, connected or away (gauge `sessions`).
    pub sessions: GaugeCell,
    /// Sessions whose connection is lost, waiting for a resume.
    pub sessions_away: GaugeCell,
    sessions_connected: GaugeCell,
    /// Rooms with at least one peer (gauge `rooms`).
    pub rooms: GaugeCell,
    /// Client frames received (counter `messages_received`).
    pub messages_received: CounterCell,
    /// Messages relayed to peers, one per receiver (counter `messages_relayed`).
    pub messages_relayed: CounterCell,
    /// Messages dropped by the rate limit (counter `rate_limited`).
    pub rate_limited: CounterCell,
    /// Sessions resumed (counter `resumes`).
    pub resumes: CounterCell,
    /// Resumes refused with `resume-failed` (counter `resume_failures`).
    pub resume_failures: CounterCell,
    /// Room joins (counter `joins`).
    pub joins: CounterCell,
    /// Connections closed with 1008 because their outbound queue overflowed.
    pub slow_consumer_closes: CounterCell,
    /// Away sessions ended early to keep the away budget (counter `sessions_evicted`).
    pub sessions_evicted: CounterCell,
    /// 1 while the server drains, else 0 (gauge `draining`).
    pub draining: GaugeCell,
    /// Bytes queued for (or being written to) every connection together (gauge
    /// `outbound_queued_bytes`; over the budget, relays to readers behind wait).
    pub outbound_queued_bytes: GaugeCell,
    messages_in: LabeledCounters,
    messages_out: LabeledCounters,
    errors: LabeledCounters,
    auth_failures: LabeledCounters,
    refusals: LabeledCounters,
    routing_latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("connections", &self.connections.load(Ordering::Relaxed))
            .field("rooms", &self.rooms.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series at zero, registered under the `switchboard_` prefix.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("switchboard");
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = GaugeCell::default();
            r.register(name, help, g.0.clone());
            g
        };
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = CounterCell::default();
            r.register(name, help, c.0.clone());
            c
        };
        let error_codes: Vec<&'static str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let routing_latency = Histogram::new(LATENCY_BUCKETS);
        r.register(
            "routing_latency_seconds",
            "Time to route one offer/answer/candidate/message/chat to its receivers' queues",
            routing_latency.clone(),
        );
        Metrics {
            connections: gauge(&mut r, "connections", "Open WebSocket connections"),
            connections_total: counter(
                &mut r,
                "connections_accepted",
                "WebSocket connections accepted",
            ),
            sessions: gauge(&mut r, "sessions", "Sessions, connected or away"),
            sessions_connected: gauge(
                &mut r,
                "sessions_connected",
                "Sessions with a live connection",
            ),
            sessions_away: gauge(
                &mut r,
                "sessions_away",
                "Sessions whose connection was lost, resumable for the resume window",
            ),
            rooms: gauge(&mut r, "rooms", "Rooms with at least one peer"),
            messages_received: counter(&mut r, "messages_received", "Client frames received"),
            messages_relayed: counter(
                &mut r,
                "messages_relayed",
                "Messages relayed to peers (per receiver)",
            ),
            rate_limited: counter(&mut r, "rate_limited", "Messages dropped by the rate limit"),
            resumes: counter(&mut r, "resumes", "Sessions resumed"),
            resume_failures: counter(&mut r, "resume_failures", "Resumes refused (resume-failed)"),
            joins: counter(&mut r, "joins", "Room joins"),
            sessions_evicted: counter(
                &mut r,
                "sessions_evicted",
                "Away sessions ended early (user-left evicted) to keep the away budget",
            ),
            slow_consumer_closes: counter(
                &mut r,
                "slow_consumer_closes",
                "Connections closed (1008) because their outbound queue overflowed",
            ),
            draining: gauge(&mut r, "draining", "1 while the server drains"),
            outbound_queued_bytes: gauge(
                &mut r,
                "outbound_queued_bytes",
                "Bytes queued for, or being written to, all connections together",
            ),
            messages_in: LabeledCounters::register(
                &mut r,
                "messages_in",
                "Client messages by type (`invalid`: did not parse)",
                "type",
                &IN_TYPES,
            ),
            messages_out: LabeledCounters::register(
                &mut r,
                "messages_out",
                "Messages queued to clients by type (replays included)",
                "type",
                &OUT_TYPES,
            ),
            errors: LabeledCounters::register(
                &mut r,
                "errors_sent",
                "Protocol errors sent to clients, by code",
                "code",
                &error_codes,
            ),
            auth_failures: LabeledCounters::register(
                &mut r,
                "auth_failures",
                "Credentials refused, by reason (handshake, `auth`, timeout, expiry)",
                "reason",
                &AUTH_REASONS,
            ),
            refusals: LabeledCounters::register(
                &mut r,
                "handshakes_refused",
                "WebSocket upgrades refused before the handshake, by reason",
                "reason",
                &REFUSAL_REASONS,
            ),
            routing_latency,
            registry: std::sync::Mutex::new(r),
            before_render: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Registers a counter of a part plugged into the hub (name without the
    /// `switchboard_` prefix and the `_total` suffix).
    pub(crate) fn register_counter(&self, name: &str, help: &str, cell: &CounterCell) {
        self.registry().register(name, help, cell.0.clone());
    }

    /// Registers a gauge of a part plugged into the hub.
    pub(crate) fn register_gauge(&self, name: &str, help: &str, cell: &GaugeCell) {
        self.registry().register(name, help, cell.0.clone());
    }

    /// Runs `hook` before every render (to set gauges that are read, not counted).
    pub(crate) fn before_render(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.before_render
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends every metric in OpenMetrics text format (ends with `# EOF`).
    pub fn render(&self, out: &mut String) {
        let away = self.sessions_away.load(Ordering::Relaxed);
        self.sessions_connected.store(
            self.sessions.load(Ordering::Relaxed) - away,
            Ordering::Relaxed,
        );
        for hook in self
            .before_render
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook();
        }
        // Writing to a String can not fail.
        let _ = encode(out, &self.registry());
    }

    /// Counts a parsed client message.
    pub(crate) fn message_in(&self, kind: Option<MsgType>) {
        self.messages_in
            .inc(kind.map_or(IN_TYPES.len() - 1, msg_index));
    }

    /// Counts a frame queued to a client, by its `type`.
    pub(crate) fn message_out(&self, frame: &str) {
        let t = frame_type(frame);
        let i = OUT_TYPES[..OUT_TYPES.len() - 1]
            .iter()
            .position(|k| *k == t)
            .unwrap_or(OUT_TYPES.len() - 1);
        self.messages_out.inc(i);
    }

    /// Counts an `error` sent to a client.
    pub(crate) fn error_sent(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors.inc(i);
        }
    }

    /// Counts a refused credential.
    pub(crate) fn auth_failed(&self, error: &AuthError) {
        if let Some(i) = AUTH_REASONS.iter().position(|r| *r == error.reason()) {
            self.auth_failures.inc(i);
        }
    }

    /// Counts an upgrade refused before the handshake.
    pub fn handshake_refused(&self, why: Refusal) {
        self.refusals.inc(why as usize);
    }

    /// Records the time one relayed message took to route.
    pub(crate) fn routed(&self, took: Duration) {
        self.routing_latency.observe(took.as_secs_f64());
    }

    /// Errors sent with `code` so far.
    pub fn errors_sent(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.errors.get(i))
    }

    /// Credentials refused with this [`AuthError::reason`] so far.
    pub fn auth_failures(&self, reason: &str) -> u64 {
        AUTH_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.auth_failures.get(i))
    }
}

/// The `type` of a frame the hub built: it is the first or second key
/// (`{"seq":N,"type":…`); a host message may have it later, so the first 96
/// bytes are searched. `""` when not found.
fn frame_type(frame: &str) -> &str {
    const KEY: &str = "\"type\":\"";
    let b = frame.as_bytes();
    // The server's own frames start `{"seq":N,"type":"` or `{"type":"`.
    let mut after_seq = 1;
    if b.starts_with(b"{\"seq\":") {
        after_seq = 7 + b[7..].iter().take_while(|d| d.is_ascii_digit()).count() + 1;
    }
    let at = if b
        .get(after_seq..)
        .is_some_and(|rest| rest.starts_with(KEY.as_bytes()))
    {
        after_seq
    } else {
        let head = &b[..b.len().min(96)];
        match head.windows(KEY.len()).position(|w| w == KEY.as_bytes()) {
            Some(at) => at,
            None => return "",
        }
    };
    let rest = &frame[at + KEY.len()..];
    rest.find('"').map_or("", |end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_types() {
        assert_eq!(
            frame_type(r#"{"seq":12,"type":"room-info","x":1}"#),
            "room-info"
        );
        assert_eq!(frame_type(r#"{"type":"connected"}"#), "connected");
        assert_eq!(frame_type(r#"{"a":"b","type":"custom"}"#), "custom");
        assert_eq!(frame_type(r#"{"a":1}"#), "");
        assert_eq!(frame_type(r#"{"type":"unterminated"#), "");
    }

    #[test]
    fn renders_every_series_with_labels() {
        let m = Metrics::new();
        m.joins.fetch_add(2, Ordering::Relaxed);
        m.connections.fetch_add(3, Ordering::Relaxed);
        m.sessions.fetch_add(3, Ordering::Relaxed);
        m.sessions_away.fetch_add(1, Ordering::Relaxed);
        m.message_in(Some(MsgType::Offer));
        m.message_in(None);
        m.message_out(r#"{"seq":1,"type":"user-joined"}"#);
        m.message_out(r#"{"seq":2,"type":"made-up"}"#);
        m.error_sent(ErrorCode::RoomFull);
        m.auth_failed(&AuthError::Expired);
        m.handshake_refused(Refusal::Unauthorized);
        m.routed(Duration::from_micros(7));
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "switchboard_joins_total 2",
            "switchboard_connections 3",
            "switchboard_sessions_connected 2",
            "switchboard_sessions_away 1",
            "switchboard_messages_in_total{type=\"offer\"} 1",
            "switchboard_messages_in_total{type=\"invalid\"} 1",
            "switchboard_messages_in_total{type=\"join\"} 0",
            "switchboard_messages_out_total{type=\"user-joined\"} 1",
            "switchboard_messages_out_total{type=\"other\"} 1",
            "switchboard_errors_sent_total{code=\"room-full\"} 1",
            "switchboard_auth_failures_total{reason=\"expired\"} 1",
            "switchboard_handshakes_refused_total{reason=\"unauthorized\"} 1",
            "switchboard_routing_latency_seconds_bucket{le=\"0.00001\"} 1",
            "switchboard_routing_latency_seconds_count 1",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing `{line}` in:\n{out}"
            );
        }
        assert!(out.ends_with("# EOF\n"));
    }
}
