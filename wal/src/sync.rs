//! The synchronisation primitives of the log's concurrency core, switched to
//! loom's model-checked versions under `cfg(loom)` so the same code is
//! explored by `tests/loom_group_commit.rs`.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
