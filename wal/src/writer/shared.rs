//! The writer's state, shared by the [`Log`](super::Log) handle, its
//! flusher thread and every thread leading a flush ([`Shared`]), and the
//! rules every write of it keeps: nothing is written once the log was
//! relinquished, and any I/O failure poisons the log.
//!
//! This file owns the state and those rules. It must never write records
//! (`super::flush` does) nor open a log (`super::open`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use crate::control::{self, Control};
use crate::error::{Result, WalError};
use crate::group_commit::GroupCommit;
use crate::io::{Io, IoFile};
use crate::segment::Layout;

/// See the module docs.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) io: Io,
    pub(super) node_id: u32,
    pub(super) layout: Layout,
    pub(super) spare_segments: usize,
    pub(super) gc: GroupCommit,
    /// Open segment files from the log's start onwards.
    pub(super) files: Mutex<BTreeMap<u64, IoFile>>,
    /// A flush entered this segment: the one after it is to be prepared,
    /// once that flush's committers have been told (see `prepare_spare`).
    pub(super) spare_due: Mutex<Option<u64>>,
    pub(super) control: Mutex<Control>,
    /// `control`'s batch bound, for the check every flush makes.
    pub(super) batch_bound: AtomicU32,
    /// The directory lock: held for the life of the log, or until
    /// [`Log::relinquish`]. `None` also means relinquished: nothing may
    /// write the control file or recycle segments then (both check it
    /// under the lock they write with).
    ///
    /// [`Log::relinquish`]: super::Log::relinquish
    pub(super) lock: Mutex<Option<File>>,
    /// Where opening found the log to end, and what it cut off there.
    pub(super) opened_end: crate::reader::LogEnd,
}

impl Shared {
    /// Refuses once the log was relinquished.
    pub(super) fn check_held(&self) -> Result<()> {
        match self.lock.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            true => Ok(()),
            false => Err(WalError::Closed),
        }
    }

    pub(super) fn write_control(&self, c: &Control) -> Result<()> {
        self.poison_on_failure(control::write(&self.io, &self.dir, c))
    }

    /// Any I/O failure of the writer poisons the log: the state of what was
    /// being written (and, after a failed sync, of everything unsynced) is
    /// unknown, and retrying could report data durable that is not. The
    /// failing call gets `Poisoned` with the cause, like every later one.
    pub(super) fn poison_on_failure<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(WalError::Io(cause)) => {
                let cause = Arc::new(cause);
                tracing::error!(error = %cause, "log I/O failed; the log is poisoned");
                self.gc.fail(cause.clone());
                Err(WalError::Poisoned { cause })
            }
            other => other,
        }
    }
}
