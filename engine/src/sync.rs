//! Locking helpers shared by the engine's modules.
//!
//! A panic while a mutex is held poisons it. The engine's shared state stays
//! consistent across such a panic (every critical section either completes
//! its change or leaves the state as it found it), so a poisoned mutex is
//! used as it is rather than turning one thread's panic into every other
//! thread's.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking it over if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
