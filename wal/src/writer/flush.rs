//! Flushing: writing and syncing a batch the group commit hands over, for
//! the flusher thread or a committer leading the flush, with the staged
//! work a caller puts before or after it, and reporting the outcome.
//!
//! This file owns the flush path. It must never retry a failed write or
//! sync: the failure poisons the log (see the `writer` module docs).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::control::{self, Control};
use crate::error::{Result, WalError};
use crate::group_commit::Batch;
use crate::io::{IoError, IoFile, OpKind, Stage, WriteOp};

use super::shared::Shared;

impl Shared {
    /// The flusher thread: writes each batch the group commit hands it
    /// until the log closes or a flush fails.
    pub(super) fn flusher(&self) {
        crate::background::run_in_background();
        while let Some(batch) = self.gc.take_batch() {
            if self.flush_led(batch, &[], &[]).is_err() {
                return;
            }
        }
    }

    /// Writes and syncs a batch, for the flusher or a waiter leading the
    /// flush, after the `before` stages (see [`Log::append_durable_after`])
    /// and followed by the `after` ones ([`Log::wait_durable_then`]). A
    /// failure before or in the log's own stages is what poisons the log
    /// (the caller hands it to the group commit, which refuses everyone from
    /// then on); a failure of an `after` stage comes back as `Ok(Some(_))`,
    /// the batch durable.
    ///
    /// [`Log::append_durable_after`]: super::Log::append_durable_after
    /// [`Log::wait_durable_then`]: super::Log::wait_durable_then
    pub(super) fn flush(
        &self,
        batch: &mut Batch,
        before: &[Stage<'_>],
        after: &[Stage<'_>],
    ) -> std::result::Result<Option<IoError>, Arc<IoError>> {
        let cause = match self.write_batch(batch, before, after) {
            Ok(after_failed) => return Ok(after_failed),
            Err(WalError::Io(cause)) => cause,
            Err(other) => IoError::new(OpKind::Write, &self.dir, None, std::io::Error::other(other.to_string())),
        };
        let cause = Arc::new(cause);
        tracing::error!(error = %cause, "log I/O failed; the log is poisoned");
        Err(cause)
    }

    /// Flushes a batch taken from the group commit (with `before` and
    /// `after` stages, see [`Shared::flush`]) and reports it: durable, and
    /// the next segment prepared; or the failure that poisons the log.
    pub(super) fn flush_led(
        &self,
        mut batch: Batch,
        before: &[Stage<'_>],
        after: &[Stage<'_>],
    ) -> Result<Option<IoError>> {
        match self.flush(&mut batch, before, after) {
            Ok(after_failed) => {
                self.gc.complete(&batch);
                self.prepare_spare();
                Ok(after_failed)
            }
            Err(cause) => {
                self.gc.fail(cause.clone());
                Err(WalError::Poisoned { cause })
            }
        }
    }

    /// Prepares the segment after one a flush entered, so the next switch
    /// costs nothing. Done after the flush's committers were told, not on
    /// their path; a failure poisons the log for the calls to come, while
    /// what is durable stays so.
    pub(super) fn prepare_spare(&self) {
        let due = self.spare_due.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(seg) = due {
            let _ = self.poison_on_failure(self.ensure_spare(seg));
        }
    }

    /// Writes and syncs a batch, after the `before` stages and before the
    /// `after` ones; `Ok(Some(_))` when an `after` stage failed.
    ///
    /// Each run lies in one segment. Runs are written and synced one after
    /// the other (one stage each, see [`Io::write_stages`]), so a crash can
    /// only lose a suffix of the stream across segments; the first record is
    /// marked as a batch start (see [`crate::record::FLAG_BATCH_START`]).
    ///
    /// [`Io::write_stages`]: crate::io::Io::write_stages
    fn write_batch(&self, batch: &mut Batch, before: &[Stage<'_>], after: &[Stage<'_>]) -> Result<Option<IoError>> {
        self.cover_batch(batch.bytes())?;
        if let Some(first) = batch.runs.first_mut() {
            crate::record::mark_batch_start(&mut first.bytes);
        }
        let mut files = Vec::with_capacity(batch.runs.len());
        for run in &batch.runs {
            let seg = self.layout.segment_of(run.start);
            assert!(
                run.start.0 + run.bytes.len() as u64 <= self.layout.segment_end(seg).0,
                "a run never crosses the end of its segment"
            );
            files.push(self.segment_file(seg)?);
        }
        let writes: Vec<WriteOp<'_>> = batch
            .runs
            .iter()
            .zip(&files)
            .map(|(run, file)| WriteOp {
                file,
                offset: self.layout.file_offset(run.start),
                data: &run.bytes,
            })
            .collect();
        let syncs: Vec<[&IoFile; 1]> = files.iter().map(|f| [f]).collect();
        let stages: Vec<Stage<'_>> = before
            .iter()
            .copied()
            .chain(writes.iter().zip(&syncs).map(|(w, f)| Stage {
                writes: std::slice::from_ref(w),
                sync: f,
            }))
            .chain(after.iter().copied())
            .collect();
        let after_failed = match self.io.write_stages(&stages) {
            Ok(()) => None,
            Err(e) if e.stage >= before.len() + writes.len() => Some(e.error),
            Err(e) => return Err(e.error.into()),
        };
        // A batch that entered a new segment has the one after it prepared
        // (see `prepare_spare`); other batches skip this.
        if let Some(last) = batch.runs.last() {
            let seg = self.layout.segment_of(last.start);
            if batch.runs.len() > 1 || last.start == self.layout.segment_start(seg) {
                let mut due = self.spare_due.lock().unwrap_or_else(|e| e.into_inner());
                *due = Some(due.map_or(seg, |d| d.max(seg)));
            }
        }
        Ok(after_failed)
    }

    /// Raises the control file's batch bound, durably, before a flush of
    /// `bytes` larger than it is written (see `crate::control`). Rounded up
    /// to a power of two, so it is raised a handful of times in a log's life.
    ///
    /// The bound is read without the control lock, which a checkpoint holds
    /// across a control write: a flush waits on it only to raise the bound.
    /// A failed control write comes back as the plain I/O error; the flush
    /// that asked poisons the log with it.
    fn cover_batch(&self, bytes: u64) -> Result<()> {
        let covers = |bound: u32| bound == 0 || bytes <= u64::from(bound);
        // 0: not recorded (a log from before the bound); readers use the
        // widest window, which covers any flush.
        if covers(self.batch_bound.load(Ordering::Acquire)) {
            return Ok(());
        }
        let mut ctl = self.control.lock().unwrap_or_else(|e| e.into_inner());
        if covers(ctl.max_batch) {
            return Ok(());
        }
        let next = Control {
            seq: ctl.seq + 1,
            max_batch: u32::try_from(bytes.next_power_of_two()).unwrap_or(u32::MAX),
            ..*ctl
        };
        control::write(&self.io, &self.dir, &next)?;
        *ctl = next;
        self.batch_bound.store(next.max_batch, Ordering::Release);
        Ok(())
    }
}
