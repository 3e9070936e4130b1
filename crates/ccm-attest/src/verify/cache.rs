//! A small bounded, thread-safe map for the verifier's caches.
//!
//! Reads take a shared lock, so many tasks verifying quotes of known platforms do not serialize
//! on each other. When full, the oldest entry is evicted (FIFO): entries are immutable results of
//! successful verifications, so any eviction order is correct; FIFO keeps it O(1) without
//! touching the structure on reads.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

struct Inner<K, V> {
    map: HashMap<K, Arc<V>>,
    order: VecDeque<K>,
}

/// A bounded FIFO cache of shared values.
pub(crate) struct BoundedCache<K, V> {
    inner: RwLock<Inner<K, V>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedCache<K, V> {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedCache {
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
        }
    }

    /// The value for `key`, if cached.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        // A poisoned lock only means another thread panicked mid-insert; the map itself is
        // always consistent (inserts are single statements), so keep using it.
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.map.get(key).cloned()
    }

    /// Caches `value` under `key` and returns the shared value (an existing entry wins).
    pub(crate) fn insert(&self, key: K, value: V) -> Arc<V> {
        let value = Arc::new(value);
        if self.capacity == 0 {
            return value;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = inner.map.get(&key) {
            return existing.clone();
        }
        while inner.map.len() >= self.capacity {
            match inner.order.pop_front() {
                Some(old) => {
                    inner.map.remove(&old);
                }
                None => break,
            }
        }
        inner.order.push_back(key.clone());
        inner.map.insert(key, value.clone());
        value
    }

    /// Number of cached entries.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.map.clear();
        inner.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_when_full() {
        let cache = BoundedCache::new(2);
        cache.insert(1, "a");
        cache.insert(2, "b");
        cache.insert(3, "c");
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&1).is_none());
        assert_eq!(*cache.get(&3).unwrap(), "c");
    }

    #[test]
    fn existing_entry_wins_and_zero_capacity_caches_nothing() {
        let cache = BoundedCache::new(4);
        cache.insert(1, "a");
        assert_eq!(*cache.insert(1, "z"), "a");
        let none = BoundedCache::new(0);
        none.insert(1, "a");
        assert!(none.get(&1).is_none());
    }

    #[test]
    fn concurrent_use() {
        let cache = Arc::new(BoundedCache::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        cache.insert(i % 100 + t, i);
                        let _ = cache.get(&(i % 100));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(cache.len() <= 64);
    }
}
