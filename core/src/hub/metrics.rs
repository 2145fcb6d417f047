//! Hub counters and gauges (relaxed atomics), rendered by the server as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters (`_total`) and gauges of one hub.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub sessions: AtomicI64,
    pub rooms: AtomicI64,
    pub messages_received: AtomicU64,
    pub messages_relayed: AtomicU64,
    pub errors_sent: AtomicU64,
    pub rate_limited: AtomicU64,
    pub resumes: AtomicU64,
    pub resume_failures: AtomicU64,
    pub joins: AtomicU64,
    pub auth_failures: AtomicU64,
}

impl Metrics {
    /// Counts a refused credential.
    pub(crate) fn auth_failed(&self, _error: &crate::auth::AuthError) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the metrics in Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let g = |v: &AtomicI64| v.load(Ordering::Relaxed);
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, i128); 11] = [
            (
                "switchboard_connections",
                "gauge",
                "Open WebSocket connections.",
                g(&self.connections) as i128,
            ),
            (
                "switchboard_connections_total",
                "counter",
                "WebSocket connections accepted.",
                c(&self.connections_total) as i128,
            ),
            (
                "switchboard_sessions",
                "gauge",
                "Sessions, connected or away.",
                g(&self.sessions) as i128,
            ),
            (
                "switchboard_rooms",
                "gauge",
                "Rooms with at least one peer.",
                g(&self.rooms) as i128,
            ),
            (
                "switchboard_messages_received_total",
                "counter",
                "Client messages received.",
                c(&self.messages_received) as i128,
            ),
            (
                "switchboard_messages_relayed_total",
                "counter",
                "Messages relayed to peers (per receiver).",
                c(&self.messages_relayed) as i128,
            ),
            (
                "switchboard_errors_sent_total",
                "counter",
                "Protocol errors sent to clients.",
                c(&self.errors_sent) as i128,
            ),
            (
                "switchboard_rate_limited_total",
                "counter",
                "Messages dropped by the rate limit.",
                c(&self.rate_limited) as i128,
            ),
            (
                "switchboard_resumes_total",
                "counter",
                "Sessions resumed.",
                c(&self.resumes) as i128,
            ),
            (
                "switchboard_resume_failures_total",
                "counter",
                "Resumes refused (resume-failed).",
                c(&self.resume_failures) as i128,
            ),
            (
                "switchboard_joins_total",
                "counter",
                "Room joins.",
                c(&self.joins) as i128,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}
