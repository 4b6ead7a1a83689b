//! The synchronisation primitives of the lock manager's concurrency core,
//! switched to loom's model-checked versions under `cfg(loom)` so that the
//! same code is explored by `tests/loom_lock_table.rs`.
//!
//! Every mutex, atomic and shared pointer of the lock table and the registry
//! comes from here; code there that reached for `std::sync` directly would be
//! invisible to loom. The coordinator's server and client (sockets, threads,
//! timers: nothing loom models) use `std::sync` directly and lock its
//! mutexes with `lock_std`.

#[cfg(loom)]
pub use loom::sync::{atomic, Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub use std::sync::{atomic, Arc, Condvar, Mutex, MutexGuard};

/// Locks `mutex`, recovering the guard if a previous holder panicked.
///
/// The critical sections of this crate are plain bookkeeping on owned data
/// and do not panic, so a poisoned mutex would mean a bug. Even then the data
/// behind it is a valid value, and refusing every later call would turn one
/// failed call into a dead coordinator that can no longer release anybody's
/// locks.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`] for a `std` mutex, which the coordinator's server and client
/// use (see the module docs). Recovering the guard matters even more there:
/// a panic on one connection's thread must not take the coordinator down
/// with poisoned locks.
pub(crate) fn lock_std<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
