//! The engine's synchronisation primitives: std's, or loom's model-checked
//! versions under `cfg(loom)`, so the engine's concurrency cores — commit
//! rounds (`crate::commit_rounds`) and the transaction ledger
//! (`crate::ledger`) — are explored by the `tests/loom_*.rs` models as the
//! very code the engine runs.
//!
//! Every mutex, condition variable, atomic and thread handle of those cores
//! comes from here; code there that reached for `std::sync` directly would
//! be invisible to loom. The rest of the engine (files, sockets, the
//! node's threads: nothing loom models) uses `std::sync` directly and
//! locks its mutexes with [`lock`].
//!
//! A panic while a mutex is held poisons it. The engine's shared state stays
//! consistent across such a panic (every critical section either completes
//! its change or leaves the state as it found it), so a poisoned mutex is
//! used as it is rather than turning one thread's panic into every other
//! thread's.

#[cfg(loom)]
pub(crate) use loom::sync::{atomic, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::{atomic, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Locks `m`, a std mutex, taking it over if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for a mutex of a concurrency core (std's or loom's).
pub(crate) fn lock_core<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
