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

/// One key's place in a map, as each map's entry API gives it, so that the
/// rule of what an update leaves behind is written once ([`update_slot`]).
trait Slot<V> {
    /// The value there, if any.
    fn value(&mut self) -> Option<&mut V>;
    /// Removes the value there.
    fn clear(self);
    /// Puts `value` where there was none.
    fn fill(self, value: V);
}

/// Runs `f` on the value in `slot`, or on `fresh()` if there is none (none
/// at all if that gives `None`); a value `f` leaves vacant is not kept.
fn update_slot<V: Vacant, R>(
    mut slot: impl Slot<V>,
    fresh: impl FnOnce() -> Option<V>,
    f: impl FnOnce(&mut V) -> R,
) -> Option<R> {
    if let Some(value) = slot.value() {
        let out = f(value);
        if value.is_vacant() {
            slot.clear();
        }
        return Some(out);
    }
    let mut value = fresh()?;
    let out = f(&mut value);
    if !value.is_vacant() {
        slot.fill(value);
    }
    Some(out)
}

/// [`Slot`] for an `Entry` enum with `Occupied` and `Vacant` variants in
/// scope (dashmap's and `BTreeMap`'s have the same shape), keys bounded by
/// the given traits.
macro_rules! entry_slot {
    ($($bound:tt)+) => {
        impl<K: $($bound)+, V> Slot<V> for Entry<'_, K, V> {
            fn value(&mut self) -> Option<&mut V> {
                match self {
                    Entry::Occupied(o) => Some(o.get_mut()),
                    Entry::Vacant(_) => None,
                }
            }

            fn clear(self) {
                if let Entry::Occupied(o) = self {
                    o.remove();
                }
            }

            fn fill(self, value: V) {
                if let Entry::Vacant(v) = self {
                    v.insert(value);
                }
            }
        }
    };
}

#[cfg(not(loom))]
pub(crate) use dash::ShardedMap;

#[cfg(loom)]
pub(crate) use modelled::ShardedMap;

#[cfg(not(loom))]
mod dash {
    use super::{update_slot, Hash, Slot, Vacant};
    use dashmap::mapref::entry::Entry;
    use dashmap::DashMap;

    entry_slot!(Hash + Eq);

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
            update_slot(self.inner.entry(key), || Some(V::default()), f)
                .expect("a slot with a fresh value always runs f")
        }

        /// Runs `f` on the value of `key` if there is one; the value is
        /// removed afterwards if `f` left it vacant.
        pub(crate) fn update_existing<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R>
        where
            V: Vacant,
        {
            update_slot(self.inner.entry(key.clone()), || None, f)
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
    use super::{update_slot, Hash, Slot, Vacant};
    use crate::sync::{lock, Mutex, MutexGuard};
    use std::collections::btree_map::Entry;
    use std::collections::BTreeMap;
    use std::hash::{DefaultHasher, Hasher};

    entry_slot!(Ord);

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
            update_slot(shard.entry(key), || Some(V::default()), f).expect("a slot with a fresh value always runs f")
        }

        pub(crate) fn update_existing<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R>
        where
            V: Vacant,
        {
            let mut shard = self.shard(key);
            update_slot(shard.entry(key.clone()), || None, f)
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
