//! The I/O layer: every file read, write and sync of every Understudy crate goes
//! through [`Io`].
//!
//! Three backends implement [`Backend`]:
//! - [`uring`]: io_uring, batched and deep-queued, with linked write → sync
//!   chains for single writes. Chosen automatically, it writes and syncs a
//!   file whose writes the kernel cannot start without blocking
//!   ([`IoFile::writes_block`]) on the calling thread instead: io_uring
//!   would only hand each such write to a kernel worker thread.
//! - [`fallback`]: `pread`/`pwrite`/`fdatasync`, chosen when the kernel refuses
//!   io_uring (probed at open) or when configured.
//! - [`fault`]: wraps another backend for tests and fails the Nth operation,
//!   tears a write at a sector boundary, or simulates a crash that drops
//!   everything not yet synced.
//!
//! Every call is synchronous from the caller's point of view: it returns only
//! once every operation it started has completed. That is what lets the
//! io_uring backend hand the kernel pointers into borrowed buffers soundly.
//!
//! This module never interprets the bytes it moves and never retries a failed
//! sync: a sync error is reported once and the caller decides (the log poisons
//! itself, see [`crate::Log`]).
//!
//! This module is a facade: each concept lives in a file of its own, and
//! the paths other crates use (`wal::io::{Io, IoFile, IoError, ...}`) are
//! re-exported here.
//! - `error`: [`OpKind`], [`IoError`], [`StageError`];
//! - `file`: [`IoFile`];
//! - `op`: [`ReadOp`], [`WriteOp`], [`Stage`], [`distinct_files`];
//! - `backend`: the [`Backend`] trait and [`BackendKind`];
//! - `handle`: [`Io`] and [`BackendChoice`];
//! - `caller`: [`on_this_thread`], which threads run their own writes;
//! - `counters`: operations counted by the path they ran ([`IoStats`]);
//! - `ring`: the raw io_uring submission and completion loop, where the
//!   kernel is handed pointers into borrowed buffers (`unsafe`, see there);
//! - `transfer`: continuing short reads and writes on the ring;
//! - `submitters`: the threads that run the ring's writes and syncs.

mod backend;
mod caller;
mod counters;
mod error;
pub mod fallback;
pub mod fault;
mod file;
mod handle;
mod op;
mod ring;
mod submitters;
mod transfer;
pub mod uring;

pub use backend::{Backend, BackendKind};
pub use caller::on_this_thread;
pub use counters::{count_on_this_thread, IoCounters, IoPath, IoStats};
pub use error::{IoError, OpKind, StageError};
pub use file::IoFile;
pub use handle::{BackendChoice, Io};
pub use op::{distinct_files, ReadOp, Stage, WriteOp};

#[cfg(test)]
mod tests;
