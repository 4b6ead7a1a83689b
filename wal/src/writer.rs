//! The log writer: one per node, owning the node's log directory.
//!
//! Many threads [`Log::append`] concurrently; one flusher thread writes and
//! syncs what they appended through the I/O layer ([`crate::group_commit`]).
//! A failed write or sync poisons the log: every later append and every wait
//! for a record not yet durable fails with [`WalError::Poisoned`]. A failed
//! fsync is never retried, because the kernel may have dropped the dirty
//! pages it could not write and a second fsync would report success.
//!
//! The directory holds `LOCK` (an exclusive `flock` held while the log is
//! open, released by the kernel when the process dies), `control` (see
//! [`crate::control`]) and the segment files (see [`crate::segment`]).
//!
//! The writer's files: the public handle ([`Log`]) here; `config` (how a
//! log is opened), `open` (from a directory to a running writer), `shared`
//! (the state its threads share), `flush` (writing a batch) and `segments`
//! (the segment files it holds).

mod config;
mod flush;
mod open;
mod segments;
mod shared;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::control::Control;
use crate::error::{Result, WalError};
use crate::io::{IoError, Stage};
use crate::reader::LogReader;
use crate::record::Record;
use crate::record::{ActiveTxn, Lsn, RecordBody, RecordMeta};
use crate::segment::Layout;

pub use config::LogConfig;
use shared::Shared;

/// What became of the stages [`Log::wait_durable_then`] was given.
#[derive(Debug)]
pub enum Followed {
    /// Written and synced after the record, in one submission.
    Done,
    /// Not run: someone else's flush covered the record, or others appended
    /// after it. The record is durable; the stages are the caller's to run.
    NotRun,
    /// The record is durable; a stage failed with this error.
    Failed(IoError),
}

/// See the module docs.
pub struct Log {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, finds its end — a torn
    /// tail is cut off there; damage followed by valid records is
    /// [`WalError::Corruption`] — and starts the flusher.
    pub fn open(dir: &Path, cfg: LogConfig) -> Result<Log> {
        Self::open_visiting(dir, cfg, &mut |_| {})
    }

    /// [`Log::open`], handing every record from the log's start to `visit`
    /// while finding the end: a recovery reads the log once, not twice.
    pub fn open_visiting(dir: &Path, cfg: LogConfig, visit: &mut dyn FnMut(Record)) -> Result<Log> {
        let (shared, flusher) = open::open(dir, cfg, visit)?;
        Ok(Log {
            shared,
            flusher: Some(flusher),
        })
    }

    /// Appends a record and returns its LSN. It is durable once
    /// [`Log::wait_durable`] returns for it.
    pub fn append(&self, meta: RecordMeta, body: &RecordBody) -> Result<Lsn> {
        self.shared.gc.append(&meta, body)
    }

    /// Blocks until the record at `lsn` is on disk. The caller writes and
    /// syncs the pending records itself when no flush is under way, sparing
    /// the hand-off to the flusher thread.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let shared = &self.shared;
        let r = shared
            .gc
            .wait_durable_with(lsn, |batch| shared.flush(batch, &[], &[]).map(|_| ()));
        shared.prepare_spare();
        r
    }

    /// Makes the record at `lsn` durable and, when this call can lead the
    /// flush with that record last in it, writes and syncs the `after`
    /// stages (a commit's pages) in the same staged submission
    /// ([`Io::write_stages`]): one hand-off to the kernel for both, nothing
    /// of `after` issued before the log is durable. Otherwise it waits as
    /// [`Log::wait_durable`] does and leaves `after` to the caller.
    ///
    /// [`Io::write_stages`]: crate::io::Io::write_stages
    pub fn wait_durable_then(&self, lsn: Lsn, after: &[Stage<'_>]) -> Result<Followed> {
        let shared = &self.shared;
        let Some(batch) = shared.gc.lead_as_last(lsn) else {
            self.wait_durable(lsn)?;
            return Ok(Followed::NotRun);
        };
        let after_failed = shared.flush_led(batch, &[], after)?;
        Ok(after_failed.map_or(Followed::Done, Followed::Failed))
    }

    /// Appends `records` and makes them durable, with the `before` stages
    /// (data pages, say, and their syncs) durable ahead of them: a record
    /// that vouches for pages cannot reach the disk before those pages do.
    ///
    /// When no flush is under way, the stages and the flush go to the kernel
    /// as one staged submission ([`Io::write_stages`]); otherwise the stages
    /// run first and the records are appended after. A failure in the stages
    /// of a combined submission poisons the log, since the records it
    /// carried can no longer be written; it is returned as the log failure.
    ///
    /// [`Io::write_stages`]: crate::io::Io::write_stages
    pub fn append_durable_after(&self, before: &[Stage<'_>], records: &[(RecordMeta, RecordBody)]) -> Result<Vec<Lsn>> {
        let shared = &self.shared;
        let Some((lsns, batch)) = shared.gc.append_leading(records)? else {
            shared.io.write_stages(before).map_err(IoError::from)?;
            let lsns = records
                .iter()
                .map(|(meta, body)| self.append(*meta, body))
                .collect::<Result<Vec<Lsn>>>()?;
            if let Some(&last) = lsns.last() {
                self.wait_durable(last)?;
            }
            return Ok(lsns);
        };
        shared.flush_led(batch, before, &[])?;
        Ok(lsns)
    }

    /// Waits up to `patience` for the record at `lsn` to be made durable by
    /// flushes others cause, without causing one; `None` if it was not.
    pub fn wait_durable_within(&self, lsn: Lsn, patience: std::time::Duration) -> Option<Result<()>> {
        self.shared.gc.wait_durable_within(lsn, patience)
    }

    /// [`Log::append`] then [`Log::wait_durable`].
    pub fn append_durable(&self, meta: RecordMeta, body: &RecordBody) -> Result<Lsn> {
        let lsn = self.append(meta, body)?;
        self.wait_durable(lsn)?;
        Ok(lsn)
    }

    /// Everything before this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.gc.durable()
    }

    /// Where the next record will go.
    pub fn next_lsn(&self) -> Lsn {
        self.shared.gc.next()
    }

    /// The log directory this writer owns.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The node whose log this is.
    pub fn node_id(&self) -> u32 {
        self.shared.node_id
    }

    /// The log's segment layout (its segment size, which an existing log
    /// keeps whatever the config asked).
    pub fn layout(&self) -> Layout {
        self.shared.layout
    }

    /// The failure that poisoned the log, if one did.
    pub fn failure(&self) -> Option<Arc<IoError>> {
        self.shared.gc.failure()
    }

    /// Where opening found the log to end — where its first new record
    /// went — and what was cut off there: a recovery compares it with the
    /// stamps its data pages carry, which tell of records that were durable.
    pub fn end_at_open(&self) -> &crate::reader::LogEnd {
        &self.shared.opened_end
    }

    /// The start of the log and its last checkpoint, as the control file says.
    pub fn control(&self) -> Control {
        *self.shared.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a checkpoint record listing `active` transactions and their
    /// first LSNs, makes it durable and records it in the control file, so
    /// recovery starts reading there. Returns its LSN.
    pub fn checkpoint(&self, active: &[ActiveTxn]) -> Result<Lsn> {
        let lsn = self.append_checkpoint(active)?;
        self.complete_checkpoint(lsn)
    }

    /// The first half of [`Log::checkpoint`]: appends the checkpoint record,
    /// without waiting. A caller that must list the active transactions
    /// atomically with the record's place in the log holds its own lock
    /// over this call only, not over the flush and the control-file write
    /// [`Log::complete_checkpoint`] does.
    pub fn append_checkpoint(&self, active: &[ActiveTxn]) -> Result<Lsn> {
        self.append(RecordMeta::txn(0, None), &RecordBody::Checkpoint(active.to_vec()))
    }

    /// The second half of [`Log::checkpoint`]: makes the checkpoint record
    /// at `lsn` durable and records it in the control file. Returns `lsn`.
    pub fn complete_checkpoint(&self, lsn: Lsn) -> Result<Lsn> {
        self.wait_durable(lsn)?;
        let mut ctl = self.shared.control.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.check_held()?;
        if ctl.checkpoint_lsn.is_some_and(|c| c > lsn) {
            return Ok(lsn); // a later checkpoint got there first
        }
        let next = Control {
            seq: ctl.seq + 1,
            checkpoint_lsn: Some(lsn),
            ..*ctl
        };
        self.shared.write_control(&next)?;
        *ctl = next;
        Ok(lsn)
    }

    /// Drops the log before `lsn`: nothing before it will be read again.
    /// `lsn` may not pass the last checkpoint, where recovery starts. Whole
    /// segments below it are recycled as spares (or deleted past the spare
    /// limit).
    pub fn truncate_before(&self, lsn: Lsn) -> Result<()> {
        let shared = &self.shared;
        let mut ctl = shared.control.lock().unwrap_or_else(|e| e.into_inner());
        shared.check_held()?;
        let Some(checkpoint) = ctl.checkpoint_lsn else {
            return Err(WalError::InvalidArgument(
                "cannot truncate a log that has no checkpoint".into(),
            ));
        };
        if lsn > checkpoint {
            return Err(WalError::InvalidArgument(format!(
                "cannot truncate before {lsn}: the last checkpoint, where recovery starts, is at {checkpoint}"
            )));
        }
        if lsn <= ctl.start_lsn {
            return Ok(());
        }
        let next = Control {
            seq: ctl.seq + 1,
            start_lsn: lsn,
            ..*ctl
        };
        shared.write_control(&next)?;
        *ctl = next;
        drop(ctl);
        shared.poison_on_failure(shared.recycle_below(shared.layout.segment_of(lsn)))
    }

    /// A reader over this log's durable records.
    pub fn reader(&self) -> Result<LogReader> {
        LogReader::open(&self.shared.dir, self.shared.io.clone())
    }

    /// Gives the log up for good, from a shared reference (other threads may
    /// still hold it): every later append, wait, checkpoint or truncation
    /// fails with [`WalError::Closed`], records not yet durable are dropped
    /// (none was acknowledged), and once no flush, control write or
    /// recycling is under way the directory lock is released. When it
    /// returns, this process writes nothing more to the log, and another —
    /// a peer recovering this node — may open it.
    pub fn relinquish(&self) {
        let shared = &self.shared;
        shared.gc.abandon();
        // Control writes and recycling hold one of these while they write;
        // taking both waits them out, and they check the lock after.
        let _ctl = shared.control.lock().unwrap_or_else(|e| e.into_inner());
        let _files = shared.files.lock().unwrap_or_else(|e| e.into_inner());
        let released = shared.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        if released.is_some() {
            tracing::info!(dir = %shared.dir.display(), "log relinquished");
        }
    }

    /// Flushes what is pending, stops the flusher and releases the directory.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        match self.shared.gc.failure() {
            Some(cause) => Err(WalError::Poisoned { cause }),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        self.shared.gc.close();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}
