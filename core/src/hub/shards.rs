//! The hub's maps of rooms and sessions by id: split into shards, each under
//! its own lock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// What a [`Shards`] map is keyed by: the value's own id.
pub(super) trait Keyed {
    fn key(&self) -> &str;
}

/// A value in its shard, hashed and compared by its key. The set holds only
/// the `Arc` (8 bytes a bucket, not 24 with an `Arc<str>` key beside it): at
/// 10 000 sessions in rooms of two, ~40 bytes less per connection.
#[derive(Debug)]
struct ByKey<T>(Arc<T>);

impl<T: Keyed> std::borrow::Borrow<str> for ByKey<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl<T: Keyed> std::hash::Hash for ByKey<T> {
    // As `str` hashes, so that lookups by `&str` find it (`Borrow`'s rule).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key().hash(state)
    }
}

impl<T: Keyed> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed> Eq for ByKey<T> {}

/// Values by their key, split into independently locked shards.
#[derive(Debug)]
pub(super) struct Shards<T> {
    shards: Vec<Mutex<HashSet<ByKey<T>>>>,
}

impl<T: Keyed> Shards<T> {
    pub(super) fn new() -> Self {
        Shards {
            shards: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashSet<ByKey<T>>> {
        self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &str) -> Option<Arc<T>> {
        self.shard(key).get(key).map(|v| v.0.clone())
    }

    /// The value under `key`, or `make()`'s, inserted; and whether it was made.
    pub(super) fn get_or_insert_with(
        &self,
        key: &str,
        make: impl FnOnce() -> Arc<T>,
    ) -> (Arc<T>, bool) {
        let mut shard = self.shard(key);
        if let Some(v) = shard.get(key) {
            return (v.0.clone(), false);
        }
        let v = make();
        debug_assert_eq!(v.key(), key);
        shard.insert(ByKey(v.clone()));
        (v, true)
    }

    /// Inserts `value`, replacing any under its key.
    pub(super) fn insert(&self, value: Arc<T>) {
        self.shard(value.key()).replace(ByKey(value));
    }

    /// Removes `value` if it is the one under its key (not a later one that
    /// replaced it); whether it was.
    pub(super) fn remove(&self, value: &Arc<T>) -> bool {
        let mut shard = self.shard(value.key());
        let listed = shard
            .get(value.key())
            .is_some_and(|v| Arc::ptr_eq(&v.0, value));
        if listed {
            shard.remove(value.key());
        }
        listed
    }

    pub(super) fn values(&self) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        for s in &self.shards {
            let shard = s.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.iter().map(|v| v.0.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(String);

    impl Keyed for Named {
        fn key(&self) -> &str {
            &self.0
        }
    }

    fn named(s: &str) -> Arc<Named> {
        Arc::new(Named(s.into()))
    }

    #[test]
    fn values_are_found_by_their_key_and_removed_only_by_themselves() {
        let map = Shards::new();
        let a = named("a");
        map.insert(a.clone());
        assert!(Arc::ptr_eq(&map.get("a").expect("listed"), &a));
        assert!(map.get("b").is_none());
        // A later value under the same key replaces it; the first one's
        // removal then leaves the later one listed.
        let a2 = named("a");
        map.insert(a2.clone());
        assert!(!map.remove(&a));
        assert!(Arc::ptr_eq(&map.get("a").expect("still listed"), &a2));
        assert!(map.remove(&a2));
        assert!(map.get("a").is_none());
        assert!(!map.remove(&a2), "removed once");
    }

    #[test]
    fn get_or_insert_makes_a_value_once() {
        let map = Shards::new();
        let (first, made) = map.get_or_insert_with("r", || named("r"));
        assert!(made);
        let (again, made) = map.get_or_insert_with("r", || unreachable!("listed already"));
        assert!(!made);
        assert!(Arc::ptr_eq(&first, &again));
        for i in 0..100 {
            map.insert(named(&format!("k{i}")));
        }
        let mut keys: Vec<String> = map.values().iter().map(|v| v.0.clone()).collect();
        keys.sort();
        assert_eq!(keys.len(), 101);
        assert_eq!(keys[0], "k0");
        assert_eq!(keys[100], "r");
    }
}
