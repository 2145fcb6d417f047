//! Per-IP budgets of the edge before a connection is admitted: the key a
//! client address counts under (IPv6 by prefix), the sockets that wait for
//! their upgrade decision (from `accept` on), and the rate of new connections.
//! Each bound refuses the newcomer from that IP (it pays), never anybody else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::admit::{Refused, UpgradeRequest};
use super::EdgeInner;
use crate::hub::{GaugeCell, Refusal};
pub use crate::proxy::ip_key;

/// A token bucket of new connections for one key.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The admission budgets shared by every host mode of one edge.
#[derive(Debug, Default)]
pub(super) struct Budgets {
    /// Sockets between `accept` and their upgrade decision, by key.
    pending: Mutex<HashMap<IpAddr, usize>>,
    /// The same, server-wide (gauge `pending_connections`).
    pending_total: AtomicUsize,
    pub(super) pending_gauge: GaugeCell,
    /// New-connection buckets by key. Bounded by pruning: a bucket that has
    /// refilled completely says nothing a fresh one would not, so it goes.
    rates: Mutex<RateTable>,
}

#[derive(Debug, Default)]
struct RateTable {
    buckets: HashMap<IpAddr, Bucket>,
    /// Prune when the table reaches this size (then: twice what survived).
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 1024;

impl Budgets {
    /// Takes one new-connection token of `key`; `false`: over the rate.
    fn take_conn_token(&self, key: IpAddr, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let (rate, burst) = (f64::from(rate), f64::from(burst.max(1)));
        let now = Instant::now();
        let mut table = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        if table.buckets.len() >= table.prune_at.max(MIN_PRUNE_AT) {
            let full_after = burst / rate;
            table
                .buckets
                .retain(|_, b| now.duration_since(b.at).as_secs_f64() < full_after);
            table.prune_at = (table.buckets.len() * 2).max(MIN_PRUNE_AT);
        }
        let bucket = table.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

/// One socket that has been accepted and waits for its upgrade decision (or
/// its plain HTTP answer); dropping it gives its place back. Get one from
/// [`crate::Edge::accept`] and build the upgrade request with [`Pending::request`].
#[derive(Debug)]
pub struct Pending {
    edge: Arc<EdgeInner>,
    /// The key counted per IP (`None`: a trusted proxy, counted server-wide only).
    key: Option<IpAddr>,
    peer: IpAddr,
}

impl Pending {
    /// The upgrade request of this socket (peer set, and marked as already
    /// charged to the new-connection rate of its IP).
    pub fn request(&self, target: &str) -> UpgradeRequest {
        let mut req = UpgradeRequest::new(Some(self.peer), target);
        req.rated_at_accept = self.key.is_some();
        req
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let budgets = &self.edge.budgets;
        if let Some(key) = self.key {
            let mut pending = budgets.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = pending.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&key);
                }
            }
        }
        budgets.pending_total.fetch_sub(1, Ordering::AcqRel);
        budgets.pending_gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EdgeInner {
    /// The key `ip` is counted under, with the configured IPv6 prefix.
    pub(super) fn ip_key(&self, ip: IpAddr) -> IpAddr {
        ip_key(ip, self.config.ipv6_prefix)
    }

    /// A socket from `peer` was accepted: count it (server-wide, and for its
    /// IP unless the peer is a trusted proxy, whose clients are told apart only
    /// by the request's forwarding headers, at admission) and charge the IP's
    /// new-connection rate. Refused: answer the status and close.
    pub(super) fn accept(self: &Arc<Self>, peer: IpAddr) -> Result<Pending, Refused> {
        let config = &self.config;
        let budgets = &self.budgets;
        let total = budgets.pending_total.fetch_add(1, Ordering::AcqRel);
        budgets.pending_gauge.fetch_add(1, Ordering::Relaxed);
        let mut pending = Pending {
            edge: self.clone(),
            key: None,
            peer,
        };
        if config.max_pending > 0 && total >= config.max_pending {
            return Err(self.refuse(Refusal::Pending, 503, Some(peer), peer));
        }
        if self.proxies.is_trusted(peer) {
            return Ok(pending);
        }
        let key = self.ip_key(peer);
        {
            let mut per_key = budgets.pending.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_key.entry(key).or_insert(0);
            if config.max_pending_per_ip > 0 && *n >= config.max_pending_per_ip {
                if *n == 0 {
                    per_key.remove(&key);
                }
                drop(per_key);
                return Err(self.refuse(Refusal::PendingPerIp, 429, Some(peer), peer));
            }
            *n += 1;
        }
        pending.key = Some(key);
        if !self.take_conn_token(key) {
            return Err(self.refuse(Refusal::ConnRate, 429, Some(peer), peer));
        }
        Ok(pending)
    }

    /// Charges a new connection of `req` to its client's rate, unless the
    /// transport already did at `accept` (hosts without an accept step, and the
    /// clients behind a trusted proxy, are charged here).
    pub(super) fn charge_conn_rate(&self, req: &UpgradeRequest, key: IpAddr) -> bool {
        req.rated_at_accept || self.take_conn_token(key)
    }

    fn take_conn_token(&self, key: IpAddr) -> bool {
        let c = &self.config;
        self.budgets
            .take_conn_token(key, c.conn_rate_per_ip, c.conn_burst_per_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a, 64), ip_key(b, 64));
        assert_eq!(ip_key(a, 64), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(ip_key(a, 64), ip_key(other, 64));
        assert_eq!(ip_key(a, 48), ip_key(other, 48));
        assert_ne!(ip_key(a, 128), ip_key(b, 128));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(ip_key(mapped, 64), "203.0.113.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(ip_key(v4, 64), v4);
    }

    #[test]
    fn conn_rate_bucket_refuses_past_the_burst_and_prunes_full_buckets() {
        let budgets = Budgets::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let taken = (0..10)
            .filter(|_| budgets.take_conn_token(ip, 1, 3))
            .count();
        assert_eq!(taken, 3, "the burst, then nothing within the same instant");
        assert!(budgets.take_conn_token(ip, 0, 0), "rate 0 is off");
        // Thousands of one-shot IPs: the table stays bounded once they refill.
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            budgets.take_conn_token(ip, 1_000_000, 1);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        for i in 0..2000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            budgets.take_conn_token(ip, 1_000_000, 1);
        }
        let len = budgets.rates.lock().unwrap().buckets.len();
        assert!(len < 4000, "refilled buckets are pruned ({len} left)");
    }
}
