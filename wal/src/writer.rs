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

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::control::{self, Control};
use crate::error::{Result, WalError};
use crate::group_commit::{Batch, GroupCommit};
use crate::io::{Io, IoError, IoFile, OpKind, Stage, WriteOp};
use crate::reader::{search_window, LogEnd, LogReader};
use crate::record::Record;
use crate::record::{ActiveTxn, Lsn, RecordBody, RecordMeta};
use crate::segment::{self, Layout};

/// How a log is opened.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub node_id: u32,
    /// Bytes per segment file, header included; used when the log is created
    /// (an existing log keeps its own).
    pub segment_size: u64,
    /// Appended-but-not-durable bytes beyond which appenders wait.
    pub max_pending_bytes: u64,
    /// Pending bytes at which the flusher writes without being asked.
    pub flush_threshold_bytes: u64,
    /// Segments kept ready ahead of the one being written (recycled
    /// segments beyond this are deleted).
    pub spare_segments: usize,
    pub io: Io,
}

impl LogConfig {
    pub fn new(node_id: u32, io: Io) -> LogConfig {
        LogConfig {
            node_id,
            segment_size: 8 << 20,
            max_pending_bytes: 8 << 20,
            flush_threshold_bytes: 1 << 20,
            spare_segments: 2,
            io,
        }
    }
}

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

struct Shared {
    dir: PathBuf,
    io: Io,
    node_id: u32,
    layout: Layout,
    spare_segments: usize,
    gc: GroupCommit,
    /// Open segment files from the log's start onwards.
    files: Mutex<BTreeMap<u64, IoFile>>,
    /// A flush entered this segment: the one after it is to be prepared,
    /// once that flush's committers have been told (see `prepare_spare`).
    spare_due: Mutex<Option<u64>>,
    control: Mutex<Control>,
    /// `control`'s batch bound, for the check every flush makes.
    batch_bound: AtomicU32,
    /// The directory lock: held for the life of the log, or until
    /// [`Log::relinquish`]. `None` also means relinquished: nothing may
    /// write the control file or recycle segments then (both check it
    /// under the lock they write with).
    lock: Mutex<Option<File>>,
}

/// Takes the directory lock, or says who holds it.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| IoError::new(OpKind::Open, &path, None, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(IoError::new(OpKind::Open, &path, None, e).into()),
    }
}

/// The batch bound a new log starts with: flushes of a few transactions fit
/// without raising it, and a reader's search past the end stays this small.
const INITIAL_BATCH_BOUND: u32 = 64 * 1024;

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
        Layout::new(cfg.segment_size)?;
        if cfg.max_pending_bytes < cfg.flush_threshold_bytes || cfg.flush_threshold_bytes == 0 {
            return Err(WalError::InvalidArgument(
                "flush threshold must be positive and at most max_pending_bytes".into(),
            ));
        }
        if cfg.max_pending_bytes > crate::record::MAX_BATCH_BYTES {
            return Err(WalError::InvalidArgument(format!(
                "max_pending_bytes may be at most {} (it bounds a reader's search past damage in logs without a recorded batch bound)",
                crate::record::MAX_BATCH_BYTES
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| IoError::new(OpKind::Open, dir, None, e))?;
        let lock = lock_dir(dir)?;
        let io = cfg.io.clone();
        let ctl = match control::read(&io, dir)? {
            Some(c) => c,
            None => create_log(&io, dir, &cfg)?,
        };
        if ctl.node_id != cfg.node_id {
            return Err(WalError::WrongNode {
                expected: cfg.node_id,
                found: ctl.node_id,
            });
        }
        let layout = Layout::new(ctl.segment_size)?;
        let listing = segment::list_segments(dir, true)?;
        // Segments left below the start by a crash mid-truncation.
        let below_start = listing.iter().any(|&(n, _)| n < layout.segment_of(ctl.start_lsn));
        let reader = LogReader::from_parts(dir, io.clone(), &ctl, listing, true)?;
        let end: LogEnd = reader.find_end_visiting(visit)?;
        if let Some(torn) = &end.torn {
            tracing::warn!(dir = %dir.display(), lsn = %end.next, damage = %torn, "torn log tail cut off");
        }
        let mut files = reader.into_files();
        let end_seg = layout.segment_of(end.next);
        // Segments past the end are spares; a crash may have left one whose
        // header is unusable — rebuild those on demand instead.
        for (&n, file) in files.range(end_seg + 1..) {
            if segment::read_header(&io, file, n).is_err() {
                std::fs::remove_file(file.path()).map_err(|e| IoError::new(OpKind::Write, file.path(), None, e))?;
            }
        }
        files.retain(|&n, f| n <= end_seg || f.path().exists());
        let gc = GroupCommit::new(layout, end.next, cfg.max_pending_bytes, cfg.flush_threshold_bytes);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            io,
            node_id: cfg.node_id,
            layout,
            spare_segments: cfg.spare_segments,
            gc,
            files: Mutex::new(files),
            spare_due: Mutex::new(None),
            batch_bound: AtomicU32::new(ctl.max_batch),
            control: Mutex::new(ctl),
            lock: Mutex::new(Some(lock)),
        });
        let tail_file = shared.segment_file(end_seg)?;
        if end.torn.is_some() || end.leftovers {
            // Erase what the unfinished write left past the end, durably,
            // before anything is appended over it (see `LogEnd::leftovers`).
            // Leftovers lie within one flush of the end (see
            // `reader::search_window`).
            let from = layout.file_offset(end.next);
            let last = Lsn((layout.segment_end(end_seg).0).min(end.next.0 + search_window(ctl.max_batch)) - 1);
            let to = layout.file_offset(last) + 1;
            // Only up to the window's last non-zero byte: past it there is
            // nothing to erase, and a whole window of zeros written and
            // synced would dominate the open (a peer's recovery waits on it).
            if let Some(dirty_to) = last_nonzero(&shared.io, &tail_file, from, to)? {
                shared.io.zero_fill(&tail_file, from, dirty_to - from)?;
                shared.io.sync(&tail_file)?;
            }
        }
        // A crash between a truncation's control write and its recycling
        // leaves segments below the start; finish the job.
        if below_start {
            shared.recycle_below(layout.segment_of(ctl.start_lsn))?;
        }
        shared.ensure_spare(end_seg)?;
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("wal-flusher-{}", cfg.node_id))
                .spawn(move || shared.flusher())
                .map_err(|e| IoError::new(OpKind::Open, dir, None, e))?
        };
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

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn node_id(&self) -> u32 {
        self.shared.node_id
    }

    pub fn layout(&self) -> Layout {
        self.shared.layout
    }

    /// The failure that poisoned the log, if one did.
    pub fn failure(&self) -> Option<Arc<IoError>> {
        self.shared.gc.failure()
    }

    /// The start of the log and its last checkpoint, as the control file says.
    pub fn control(&self) -> Control {
        *self.shared.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a checkpoint record listing `active` transactions and their
    /// first LSNs, makes it durable and records it in the control file, so
    /// recovery starts reading there. Returns its LSN.
    pub fn checkpoint(&self, active: &[ActiveTxn]) -> Result<Lsn> {
        let lsn = self.append_durable(RecordMeta::txn(0, None), &RecordBody::Checkpoint(active.to_vec()))?;
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

/// The end (exclusive, rounded up to 4 KiB within `to`) of the last
/// non-zero byte of `file` in `from..to`, read backwards in chunks; `None`
/// if the range is all zeros.
fn last_nonzero(io: &Io, file: &IoFile, from: u64, to: u64) -> Result<Option<u64>> {
    const CHUNK: u64 = 1 << 20;
    let len = file.len()?;
    let to = to.min(len);
    let mut buf = vec![0u8; CHUNK as usize];
    let mut hi = to;
    while hi > from {
        let lo = hi.saturating_sub(CHUNK).max(from);
        let chunk = &mut buf[..(hi - lo) as usize];
        io.read_exact_at(file, chunk, lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            let end = lo + i as u64 + 1;
            return Ok(Some(end.next_multiple_of(4096).min(to)));
        }
        hi = lo;
    }
    Ok(None)
}

/// Lays out a brand-new log: segment 0 and a spare, then the control file,
/// last, which marks creation complete.
fn create_log(io: &Io, dir: &Path, cfg: &LogConfig) -> Result<Control> {
    let layout = Layout::new(cfg.segment_size)?;
    let existing = segment::list_segments(dir, true)?;
    if let Some((n, path)) = existing.first() {
        // Creation only ever stops short before the control file is written,
        // when no record can exist yet. Refuse to wipe anything else.
        let file = IoFile::open(path, false, false)?;
        let info = segment::read_header(io, &file, *n);
        let has_record = info.is_ok() && LogReader::segment_has_first_record(io, &file, layout, *n)?;
        if *n != 0 || has_record || existing.len() > 2 {
            return Err(WalError::BadControl {
                path: control::control_path(dir),
                reason: "control file missing but the directory holds a log; restore the control file \
                         or move the segments away"
                    .into(),
            });
        }
        for (_, p) in &existing {
            std::fs::remove_file(p).map_err(|e| IoError::new(OpKind::Write, p, None, e))?;
        }
    }
    segment::create(io, dir, layout, cfg.node_id, 0)?;
    let ctl = Control {
        node_id: cfg.node_id,
        seq: 1,
        segment_size: cfg.segment_size,
        start_lsn: Lsn(0),
        checkpoint_lsn: None,
        max_batch: INITIAL_BATCH_BOUND,
    };
    control::create(io, dir, &ctl)?;
    Ok(ctl)
}

impl Shared {
    fn flusher(&self) {
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
    fn flush(
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
    fn flush_led(&self, mut batch: Batch, before: &[Stage<'_>], after: &[Stage<'_>]) -> Result<Option<IoError>> {
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
    fn prepare_spare(&self) {
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

    /// The file of segment `n`, created if it does not exist yet.
    fn segment_file(&self, n: u64) -> Result<IoFile> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&n) {
            return Ok(f.clone());
        }
        // A spare prepared after a flush may come after the log was given up.
        self.check_held()?;
        let path = segment::segment_path(&self.dir, n);
        let file = if path.exists() {
            let f = IoFile::open(&path, true, false)?;
            segment::read_header(&self.io, &f, n)?;
            f
        } else {
            segment::create(&self.io, &self.dir, self.layout, self.node_id, n)?
        };
        files.insert(n, file.clone());
        Ok(file)
    }

    /// Makes sure the segment after `n` is ready, so switching to it costs
    /// nothing on the commit path.
    fn ensure_spare(&self, n: u64) -> Result<()> {
        // A log opened to append a few records (a peer's end records) asks
        // for no spare: zero-filling one would dominate its work.
        if self.spare_segments == 0 {
            return Ok(());
        }
        self.segment_file(n + 1).map(|_| ())
    }

    /// Refuses once the log was relinquished.
    fn check_held(&self) -> Result<()> {
        match self.lock.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            true => Ok(()),
            false => Err(WalError::Closed),
        }
    }

    fn write_control(&self, c: &Control) -> Result<()> {
        self.poison_on_failure(control::write(&self.io, &self.dir, c))
    }

    /// Any I/O failure of the writer poisons the log: the state of what was
    /// being written (and, after a failed sync, of everything unsynced) is
    /// unknown, and retrying could report data durable that is not. The
    /// failing call gets `Poisoned` with the cause, like every later one.
    fn poison_on_failure<T>(&self, r: Result<T>) -> Result<T> {
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

    /// Recycles (or deletes, past the spare limit) every segment below `keep`.
    fn recycle_below(&self, keep: u64) -> Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        self.check_held()?;
        let on_disk = segment::list_segments(&self.dir, false)?;
        let write_seg = self.layout.segment_of(self.gc.next());
        let mut highest = on_disk.last().map_or(write_seg, |(n, _)| *n).max(write_seg);
        let below: Vec<(u64, std::path::PathBuf)> = on_disk.into_iter().filter(|(n, _)| *n < keep).collect();
        if below.is_empty() {
            // Nothing renamed or removed: no directory sync to wait on.
            return Ok(());
        }
        for (n, path) in below {
            files.remove(&n);
            let spares = highest - write_seg;
            if (spares as usize) < self.spare_segments {
                highest += 1;
                segment::recycle(&self.io, &self.dir, &path, self.layout, self.node_id, highest)?;
            } else {
                std::fs::remove_file(&path).map_err(|e| IoError::new(OpKind::Write, &path, None, e))?;
            }
        }
        self.io.sync_dir(&self.dir)?;
        Ok(())
    }
}
