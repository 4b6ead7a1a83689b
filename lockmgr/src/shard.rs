//! A concurrent map with per-shard locking: dashmap in production, and under
//! `cfg(loom)` a vector of the sync shim's mutexes over `BTreeMap`s, which
//! loom can model (it cannot see inside dashmap's own locks).
//!
//! Both versions offer the same closure-based operations, so the lock table
//! above them, and in particular the code that decides grants, is the same
//! code under loom and std.
//!
//! Contract for every closure passed in: it must not touch the same map (the
//! shard lock is held while it runs, and dashmap's locks are not reentrant).
//! It may touch other maps; the lock table only ever nests in one direction
//! (resources, then its small indexes), so nesting cannot deadlock.

use std::hash::Hash;

/// A value that can be dropped from the map once it holds nothing, so that
/// the map does not grow with every key ever used.
pub(crate) trait Vacant {
    fn is_vacant(&self) -> bool;
}

impl<T> Vacant for std::collections::BTreeSet<T> {
    fn is_vacant(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> Vacant for std::collections::BTreeMap<K, V> {
    fn is_vacant(&self) -> bool {
        self.is_empty()
    }
}

#[cfg(not(loom))]
pub(crate) use dash::ShardedMap;

#[cfg(loom)]
pub(crate) use modelled::ShardedMap;

#[cfg(not(loom))]
mod dash {
    use super::{Hash, Vacant};
    use dashmap::mapref::entry::Entry;
    use dashmap::DashMap;

    pub(crate) struct ShardedMap<K, V> {
        inner: DashMap<K, V>,
    }

    impl<K: Hash + Eq + Ord + Clone, V> ShardedMap<K, V> {
        pub(crate) fn new() -> Self {
            Self { inner: DashMap::new() }
        }

        /// Runs `f` on the value of `key`, created empty if absent; the value
        /// is removed afterwards if `f` left it vacant.
        pub(crate) fn update<R>(&self, key: K, f: impl FnOnce(&mut V) -> R) -> R
        where
            V: Default + Vacant,
        {
            match self.inner.entry(key) {
                Entry::Occupied(mut occupied) => {
                    let out = f(occupied.get_mut());
                    if occupied.get().is_vacant() {
                        occupied.remove();
                    }
                    out
                }
                Entry::Vacant(vacant) => {
                    let mut value = V::default();
                    let out = f(&mut value);
                    if !value.is_vacant() {
                        vacant.insert(value);
                    }
                    out
                }
            }
        }

        /// Runs `f` on the value of `key` if there is one; the value is
        /// removed afterwards if `f` left it vacant.
        pub(crate) fn update_existing<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R>
        where
            V: Vacant,
        {
            match self.inner.entry(key.clone()) {
                Entry::Occupied(mut occupied) => {
                    let out = f(occupied.get_mut());
                    if occupied.get().is_vacant() {
                        occupied.remove();
                    }
                    Some(out)
                }
                Entry::Vacant(_) => None,
            }
        }

        pub(crate) fn read<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
            self.inner.get(key).map(|entry| f(entry.value()))
        }

        pub(crate) fn insert(&self, key: K, value: V) -> Option<V> {
            self.inner.insert(key, value)
        }

        pub(crate) fn remove(&self, key: &K) -> Option<V> {
            self.inner.remove(key).map(|(_, value)| value)
        }

        pub(crate) fn contains(&self, key: &K) -> bool {
            self.inner.contains_key(key)
        }

        /// Collects `f` over every entry. Not a snapshot across shards: an
        /// entry changed concurrently may be seen before or after the change.
        pub(crate) fn filter_map<T>(&self, mut f: impl FnMut(&K, &V) -> Option<T>) -> Vec<T> {
            self.inner
                .iter()
                .filter_map(|entry| f(entry.key(), entry.value()))
                .collect()
        }
    }
}

#[cfg(loom)]
mod modelled {
    use super::{Hash, Vacant};
    use crate::sync::{lock, Mutex, MutexGuard};
    use std::collections::btree_map::Entry;
    use std::collections::BTreeMap;
    use std::hash::{DefaultHasher, Hasher};

    /// Few shards keep loom's state space small while still letting two
    /// keys live under different locks.
    const SHARDS: usize = 2;

    pub(crate) struct ShardedMap<K, V> {
        // `BTreeMap`, not `HashMap`: loom replays executions and needs every
        // iteration order to be the same from one run to the next.
        shards: Vec<Mutex<BTreeMap<K, V>>>,
    }

    impl<K: Hash + Eq + Ord + Clone, V> ShardedMap<K, V> {
        pub(crate) fn new() -> Self {
            Self {
                shards: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
            }
        }

        fn shard(&self, key: &K) -> MutexGuard<'_, BTreeMap<K, V>> {
            // `DefaultHasher::new()` has fixed keys, so the shard of a key is
            // the same in every run.
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            let index = hasher.finish() % SHARDS as u64;
            let index = usize::try_from(index).expect("a shard index is below SHARDS, a usize");
            lock(
                self.shards
                    .get(index)
                    .expect("a shard index is reduced modulo the shard count"),
            )
        }

        pub(crate) fn update<R>(&self, key: K, f: impl FnOnce(&mut V) -> R) -> R
        where
            V: Default + Vacant,
        {
            let mut shard = self.shard(&key);
            match shard.entry(key) {
                Entry::Occupied(mut occupied) => {
                    let out = f(occupied.get_mut());
                    if occupied.get().is_vacant() {
                        occupied.remove();
                    }
                    out
                }
                Entry::Vacant(vacant) => {
                    let mut value = V::default();
                    let out = f(&mut value);
                    if !value.is_vacant() {
                        vacant.insert(value);
                    }
                    out
                }
            }
        }

        pub(crate) fn update_existing<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R>
        where
            V: Vacant,
        {
            let mut shard = self.shard(key);
            match shard.entry(key.clone()) {
                Entry::Occupied(mut occupied) => {
                    let out = f(occupied.get_mut());
                    if occupied.get().is_vacant() {
                        occupied.remove();
                    }
                    Some(out)
                }
                Entry::Vacant(_) => None,
            }
        }

        pub(crate) fn read<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
            self.shard(key).get(key).map(f)
        }

        pub(crate) fn insert(&self, key: K, value: V) -> Option<V> {
            self.shard(&key).insert(key, value)
        }

        pub(crate) fn remove(&self, key: &K) -> Option<V> {
            self.shard(key).remove(key)
        }

        pub(crate) fn contains(&self, key: &K) -> bool {
            self.shard(key).contains_key(key)
        }

        pub(crate) fn filter_map<T>(&self, mut f: impl FnMut(&K, &V) -> Option<T>) -> Vec<T> {
            let mut out = Vec::new();
            for shard in &self.shards {
                out.extend(lock(shard).iter().filter_map(|(key, value)| f(key, value)));
            }
            out
        }
    }
}
