//! The budget of away sessions (connection lost, resumable for the resume
//! window): each counts against the IP key of the connection that dropped it,
//! against its authenticated user (auth on), and server-wide, and their replay
//! buffers draw from one server-wide byte budget. Past a bound the oldest away
//! session goes (`user-left`, reason `evicted`): of the same IP or user when
//! that one is over its cap, so whoever drops connections in bulk pays with its
//! own sessions; live connections are never touched.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The caps (0 = unlimited).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AwayCaps {
    pub per_ip: usize,
    pub per_user: usize,
    pub total: usize,
    pub bytes: usize,
}

/// Who an away session counts against, besides the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AwayKey {
    /// The client IP key of the connection that dropped it.
    Ip(IpAddr),
    /// The user its connection authenticated as.
    User(Arc<str>),
}

impl AwayCaps {
    fn of(&self, key: &AwayKey) -> usize {
        match key {
            AwayKey::Ip(_) => self.per_ip,
            AwayKey::User(_) => self.per_user,
        }
    }
}

/// The ledger holds `S`, the hub's session type (generic, so this module
/// needs nothing of the session's).
#[derive(Debug)]
pub(crate) struct AwayBudget<S> {
    caps: AwayCaps,
    ledger: Mutex<Ledger<S>>,
    /// Replay bytes held by sessions in the ledger.
    bytes: AtomicUsize,
    /// Woken when `bytes` passed its cap: the hub's evictor ends the oldest
    /// away sessions (outside every session and room lock).
    pub(crate) over_bytes: Notify,
}

#[derive(Debug)]
struct Ledger<S> {
    next_ticket: u64,
    /// Away sessions by ticket: the oldest first.
    by_age: BTreeMap<u64, (Arc<S>, Vec<AwayKey>)>,
    /// Tickets of each IP and user, oldest first.
    by_key: HashMap<AwayKey, VecDeque<u64>>,
}

impl<S> Ledger<S> {
    fn remove(&mut self, ticket: u64) -> Option<Arc<S>> {
        let (session, keys) = self.by_age.remove(&ticket)?;
        for key in keys {
            if let Some(tickets) = self.by_key.get_mut(&key) {
                tickets.retain(|t| *t != ticket);
                if tickets.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        Some(session)
    }
}

impl<S> AwayBudget<S> {
    pub(crate) fn new(caps: AwayCaps) -> Self {
        AwayBudget {
            caps,
            ledger: Mutex::new(Ledger {
                next_ticket: 0,
                by_age: BTreeMap::new(),
                by_key: HashMap::new(),
            }),
            bytes: AtomicUsize::new(0),
            over_bytes: Notify::new(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger<S>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `session` (holding `replay_bytes`) went away from a connection of
    /// `keys` (its IP, its authenticated user). Returns its ticket and, when
    /// `evict`, the sessions to end now to stay within the count caps: the
    /// oldest of its IP's and user's, then the oldest overall (taken out of the
    /// ledger already; never `session` itself, the newest).
    pub(crate) fn went_away(
        &self,
        session: &Arc<S>,
        keys: Vec<AwayKey>,
        replay_bytes: usize,
        evict: bool,
    ) -> (u64, Vec<Arc<S>>) {
        let mut ledger = self.ledger();
        let ticket = ledger.next_ticket;
        ledger.next_ticket += 1;
        for key in &keys {
            ledger
                .by_key
                .entry(key.clone())
                .or_default()
                .push_back(ticket);
        }
        ledger
            .by_age
            .insert(ticket, (session.clone(), keys.clone()));
        self.add_bytes(replay_bytes);
        let mut victims = Vec::new();
        if !evict {
            return (ticket, victims);
        }
        for key in keys {
            let cap = self.caps.of(&key);
            while cap > 0 && ledger.by_key.get(&key).map_or(0, VecDeque::len) > cap {
                let oldest = ledger.by_key[&key][0];
                victims.extend(ledger.remove(oldest));
            }
        }
        if self.caps.total > 0 {
            while ledger.by_age.len() > self.caps.total {
                let oldest = *ledger
                    .by_age
                    .keys()
                    .next()
                    .expect("over a cap of at least 1");
                victims.extend(ledger.remove(oldest));
            }
        }
        (ticket, victims)
    }

    /// The session of `ticket` is back (resumed) or ended: it no longer counts.
    pub(crate) fn left(&self, ticket: u64, replay_bytes: usize) {
        self.ledger().remove(ticket);
        self.bytes.fetch_sub(replay_bytes, Ordering::AcqRel);
    }

    /// The replay buffer of an away session changed from `before` to `after` bytes.
    pub(crate) fn resized(&self, before: usize, after: usize) {
        if after >= before {
            self.add_bytes(after - before);
        } else {
            self.bytes.fetch_sub(before - after, Ordering::AcqRel);
        }
    }

    fn add_bytes(&self, n: usize) {
        let now = self.bytes.fetch_add(n, Ordering::AcqRel) + n;
        if self.caps.bytes > 0 && now > self.caps.bytes {
            self.over_bytes.notify_one();
        }
    }

    /// While the replay bytes are over their cap: the oldest away session, taken
    /// out of the ledger (the caller ends it, which gives its bytes back).
    pub(crate) fn oldest_over_bytes(&self) -> Option<Arc<S>> {
        if self.caps.bytes == 0 || self.bytes.load(Ordering::Acquire) <= self.caps.bytes {
            return None;
        }
        let mut ledger = self.ledger();
        let oldest = *ledger.by_age.keys().next()?;
        ledger.remove(oldest)
    }

    /// Forgets every away session (the hub is going): the ledger holds the
    /// sessions and each away session holds the budget, a cycle otherwise.
    pub(crate) fn clear(&self) {
        let sessions = std::mem::take(&mut self.ledger().by_age);
        drop(sessions);
    }

    /// Away sessions in the ledger, and the replay bytes they hold.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (
            self.ledger().by_age.len(),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Vec<AwayKey> {
        vec![AwayKey::Ip(IpAddr::from([192, 0, 2, n]))]
    }

    #[test]
    fn the_oldest_of_the_ip_over_its_cap_goes_then_the_oldest_overall() {
        let budget = AwayBudget::new(AwayCaps {
            per_ip: 2,
            per_user: 0,
            total: 3,
            bytes: 0,
        });
        let s = |name: &str| Arc::new(name.to_owned());
        let (_, v) = budget.went_away(&s("a1"), ip(1), 10, true);
        assert!(v.is_empty());
        let (t_b1, _) = budget.went_away(&s("b1"), ip(2), 10, true);
        budget.went_away(&s("a2"), ip(1), 10, true);
        // A third from ip 1: its oldest goes, not b1 (older, but of another IP).
        let (_, v) = budget.went_away(&s("a3"), ip(1), 10, true);
        assert_eq!(v.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["a1"]);
        // Four in the ledger would pass the total of 3: the oldest overall goes.
        let (_, v) = budget.went_away(&s("c1"), ip(3), 10, true);
        assert_eq!(v.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["b1"]);
        // A session that came back no longer counts; bytes follow.
        budget.left(t_b1, 10);
        assert_eq!(budget.usage().0, 3);
        // No eviction while draining (evict = false).
        let (_, v) = budget.went_away(&s("d1"), ip(4), 10, false);
        assert!(v.is_empty());
    }

    #[test]
    fn replay_bytes_over_the_budget_give_the_oldest() {
        let budget = AwayBudget::new(AwayCaps {
            per_ip: 0,
            per_user: 0,
            total: 0,
            bytes: 100,
        });
        let (t_old, _) = budget.went_away(&Arc::new("old"), vec![], 60, true);
        assert!(budget.oldest_over_bytes().is_none(), "within the budget");
        budget.went_away(&Arc::new("new"), vec![], 60, true);
        assert_eq!(budget.oldest_over_bytes().as_deref(), Some(&"old"));
        budget.left(t_old, 60);
        assert!(budget.oldest_over_bytes().is_none());
        budget.clear();
        assert_eq!(budget.usage().0, 0);
    }

    #[test]
    fn an_authenticated_user_over_its_cap_loses_its_oldest_from_any_ip() {
        let budget = AwayBudget::new(AwayCaps {
            per_ip: 10,
            per_user: 2,
            total: 0,
            bytes: 0,
        });
        let mallory = |n: u8| {
            let mut keys = ip(n);
            keys.push(AwayKey::User("mallory".into()));
            keys
        };
        budget.went_away(&Arc::new("m1"), mallory(1), 0, true);
        budget.went_away(&Arc::new("alice"), ip(1), 0, true);
        budget.went_away(&Arc::new("m2"), mallory(2), 0, true);
        // A third of mallory's, from a third IP: its oldest goes, not alice's.
        let (_, v) = budget.went_away(&Arc::new("m3"), mallory(3), 0, true);
        assert_eq!(v.iter().map(|s| **s).collect::<Vec<_>>(), ["m1"]);
        assert_eq!(budget.usage().0, 3);
    }
}
