//! The hub's maps of rooms and sessions by id: split into shards, each under
//! its own lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;
const _: () = assert!(SHARDS.is_power_of_two() && SHARDS > 1);

/// The shard of `key`: a multiply per 8 bytes, not a keyed hash. The shard only
/// spreads lock contention (the map inside keeps its keyed hash against
/// collisions), and a session lookup per cross-node delivery paid SipHash twice.
fn shard_of(key: &str) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = key.len() as u64;
    let mut words = key.as_bytes().chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K);
    }
    // The high bits of a product are the well-mixed ones.
    (h >> (64 - SHARDS.trailing_zeros())) as usize
}

/// A map split into independently locked shards.
#[derive(Debug)]
pub(super) struct Shards<V> {
    shards: Vec<Mutex<HashMap<Arc<str>, V>>>,
}

impl<V: Clone> Shards<V> {
    pub(super) fn new() -> Self {
        Shards {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub(super) fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, V>> {
        self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &str) -> Option<V> {
        self.shard(key).get(key).cloned()
    }

    pub(super) fn values(&self) -> Vec<V> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned(),
            );
        }
        out
    }
}
