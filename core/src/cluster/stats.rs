//! The cluster's own series in the hub's metrics registry
//! (`switchboard_cluster_…`): what crossed Redis, what was refused, and the
//! state of this node's link.

use crate::hub::{CounterCell, GaugeCell, Metrics};

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) sent: CounterCell,
    pub(super) received: CounterCell,
    pub(super) refused: CounterCell,
    pub(super) buffered_orphan: CounterCell,
    pub(super) claims: CounterCell,
    pub(super) claim_failures: CounterCell,
    pub(super) handovers: CounterCell,
    pub(super) reaped: CounterCell,
    pub(super) resyncs: CounterCell,
    pub(super) redis_errors: CounterCell,
    pub(super) nodes: GaugeCell,
    pub(super) redis_up: GaugeCell,
    pub(super) backlog: GaugeCell,
    pub(super) backlog_bytes: GaugeCell,
    pub(super) fenced: CounterCell,
}

impl Stats {
    /// Puts every series into the hub's registry (`switchboard_cluster_…`).
    pub(super) fn register(&self, m: &Metrics) {
        let gauges = [
            (
                &self.redis_up,
                "cluster_redis_up",
                "1 while Redis is reachable and this node is in sync with it.",
            ),
            (
                &self.nodes,
                "cluster_nodes",
                "Live nodes seen at the last heartbeat, this one included.",
            ),
            (
                &self.backlog,
                "cluster_backlog",
                "Operations queued for Redis.",
            ),
            (
                &self.backlog_bytes,
                "cluster_backlog_bytes",
                "Bytes of the operations queued for Redis (bounded: past it they are refused).",
            ),
        ];
        for (cell, name, help) in gauges {
            m.register_gauge(name, help, cell);
        }
        let counters = [
            (
                &self.fenced,
                "cluster_fenced",
                "Times this node found its liveness key expired (it may have been reaped), on a heartbeat or on reconnecting; it registered again and resynced.",
            ),
            (
                &self.sent,
                "cluster_sent",
                "Messages sent to peers on other nodes (per node).",
            ),
            (
                &self.received,
                "cluster_received",
                "Messages received from other nodes.",
            ),
            (
                &self.refused,
                "cluster_refused",
                "Cross-node operations refused (Redis down, backlog full, no answer).",
            ),
            (
                &self.buffered_orphan,
                "cluster_orphan_buffered",
                "Messages buffered in Redis for sessions whose node is gone.",
            ),
            (
                &self.claims,
                "cluster_claims",
                "Sessions resumed here from another node.",
            ),
            (
                &self.claim_failures,
                "cluster_claim_failures",
                "Resumes of other nodes' sessions refused.",
            ),
            (
                &self.handovers,
                "cluster_handovers",
                "Sessions handed over to another node.",
            ),
            (
                &self.reaped,
                "cluster_reaped_sessions",
                "Sessions of dead nodes ended by this node.",
            ),
            (
                &self.resyncs,
                "cluster_resyncs",
                "Full rewrites of this node's state to Redis (after connecting).",
            ),
            (
                &self.redis_errors,
                "cluster_redis_errors",
                "Redis connections lost or commands failed.",
            ),
        ];
        for (cell, name, help) in counters {
            m.register_counter(name, help, cell);
        }
    }
}
