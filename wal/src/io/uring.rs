//! The io_uring backend.
//!
//! A batch is pushed onto a ring and kept full up to the ring's depth (deep
//! queues are where the disk is fast: ~150 k 4 KiB writes/s at depth 128
//! against ~15 k at depth 1). A few writes that must be durable, and a few
//! stages of ordered work (`write_stages`: a recovery's pages, their sync,
//! then the log's end records and its sync), are submitted as one linked
//! chain `write → … → fdatasync → write → … → fdatasync`, one system call
//! for all. Short transfers are continued with a new operation for the
//! remainder.
//!
//! Chosen automatically ([`super::BackendChoice::Auto`]), the backend writes
//! and syncs a file whose writes block ([`super::IoFile::writes_block`]:
//! buffered, on a file system such as ext4 with no non-blocking buffered
//! write) with `pwrite` and `fdatasync` on the calling thread
//! ([`UringBackend::blocking_writes_on_caller`]). The ring cannot start such
//! a write itself; it queues each one to a kernel worker, and the writes of
//! one file to one worker in turn, so a commit's page writes went out one
//! at a time anyway, each with a hand-off. Reads, `O_DIRECT` files and file
//! systems with non-blocking buffered writes (XFS, btrfs) keep the ring.
//!
//! Writes and syncs run on the backend's submitter threads
//! (`super::submitters`), so the kernel's workers for blocking operations
//! belong to those few threads, not to every thread of the engine; reads run
//! on the caller's thread. [`UringBackend::probe_inline`] runs everything on
//! the caller's thread (the raw baseline of the benchmarks).
//!
//! Some callers run their writes and syncs on their own thread even so
//! ([`on_this_thread`], a bounded few: see `super::caller`).
//!
//! The raw ring code (the submission and completion loop, and why its
//! `unsafe` is sound) lives in `super::ring`; continuing short reads and
//! writes, in `super::transfer`. This file never pushes to a ring itself.

use std::io;
use std::sync::Mutex;

use io_uring::{opcode, IoUring, Probe};

use super::backend::{stage_by_stage, Backend, BackendKind};
use super::caller::runs_on_caller;
pub use super::caller::{on_this_thread, MAX_CALLER_THREADS};
use super::counters::{IoCounters, IoPath, IoStats};
use super::error::{IoError, OpKind, StageError};
use super::fallback::FallbackBackend;
use super::file::IoFile;
use super::op::{distinct_files, ReadOp, Stage, WriteOp};
use super::ring::{execute, os_err, RawOp, RING_DEPTH};
use super::submitters::Submitters;
use super::transfer::{transfer_all, Mixed, MAX_TRANSFER};

/// Most operations (writes and syncs) of staged work run as one linked
/// chain (see `write_stages`); more run stage by stage.
const MAX_LINKED_OPS: usize = 32;
/// Rings kept for reuse; more concurrent callers create and drop extra rings.
const MAX_POOLED_RINGS: usize = 16;

/// See the module docs.
pub struct UringBackend {
    pool: Mutex<Vec<IoUring>>,
    /// What ran on the ring (the calls below count themselves).
    counters: IoCounters,
    /// Where writes that bypass the ring run, counting as system calls.
    calls: FallbackBackend,
    /// Where writes and syncs run (see `super::submitters`); on the
    /// caller's thread without.
    submitters: Option<Submitters>,
    /// See [`UringBackend::blocking_writes_on_caller`].
    blocking_writes_on_caller: bool,
}

impl UringBackend {
    /// Creates a ring, checks that the kernel supports every opcode used,
    /// and starts the submitter threads.
    pub fn probe() -> Result<UringBackend, IoError> {
        let mut b = Self::probe_inline()?;
        b.submitters =
            Some(Submitters::start().map_err(|e| IoError::new(OpKind::Open, "io_uring submitters".as_ref(), None, e))?);
        Ok(b)
    }

    /// [`UringBackend::probe`] without submitter threads: every operation
    /// runs on its caller's thread.
    pub fn probe_inline() -> Result<UringBackend, IoError> {
        let probe_err = |e: io::Error| IoError::new(OpKind::Open, "io_uring".as_ref(), None, e);
        let ring = IoUring::new(RING_DEPTH).map_err(probe_err)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(probe_err)?;
        for (code, name) in [
            (opcode::Read::CODE, "read"),
            (opcode::Write::CODE, "write"),
            (opcode::Fsync::CODE, "fsync"),
        ] {
            if !probe.is_supported(code) {
                return Err(probe_err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {name} not supported by this kernel"),
                )));
            }
        }
        Ok(UringBackend {
            pool: Mutex::new(vec![ring]),
            counters: IoCounters::default(),
            calls: FallbackBackend::default(),
            submitters: None,
            blocking_writes_on_caller: false,
        })
    }

    fn ring(&self) -> Result<RingGuard<'_>, IoError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let ring = match pooled {
            Some(r) => r,
            None => IoUring::new(RING_DEPTH).map_err(|e| IoError::new(OpKind::Open, "io_uring".as_ref(), None, e))?,
        };
        Ok(RingGuard {
            pool: &self.pool,
            ring: Some(ring),
        })
    }

    /// Writes and syncs of files whose writes block ([`IoFile::writes_block`])
    /// run on the calling thread, as `pwrite` and `fdatasync` calls: the
    /// ring would hand each of them to a kernel worker, one after the other,
    /// and wake the caller when the last is done, which costs more than the
    /// calls themselves. Measured on ext4 with eight concurrent commits
    /// (five interleaved pairs): 150 µs per commit against 166, and 119 µs
    /// of CPU against 136. Reads, and writes of files the kernel writes
    /// without blocking, stay on the ring.
    pub fn blocking_writes_on_caller(mut self) -> UringBackend {
        self.blocking_writes_on_caller = true;
        self
    }

    /// Whether an operation on `files` skips the ring for `pwrite` and
    /// `fdatasync` on the caller (see
    /// [`UringBackend::blocking_writes_on_caller`]): only when every file's
    /// writes block, so a batch is never split between the two ways. Staged
    /// work decides stage by stage (`write_stages`).
    fn bypasses_ring<'a>(&self, mut files: impl Iterator<Item = &'a IoFile>) -> bool {
        self.blocking_writes_on_caller && files.all(IoFile::writes_block)
    }

    /// Runs writes and syncs: on a submitter thread where there are any,
    /// unless the caller runs them itself (see [`on_this_thread`]).
    fn run_blocking(&self, ops: &[RawOp], results: &mut [i32]) -> io::Result<()> {
        match &self.submitters {
            Some(s) if !runs_on_caller() => s.run(ops, results),
            _ => self.run(ops, results),
        }
    }

    /// Runs `ops` on a pooled ring; a ring that failed is dropped, not pooled.
    fn run(&self, ops: &[RawOp], results: &mut [i32]) -> io::Result<()> {
        let mut guard = self.ring().map_err(|e| e.source)?;
        let ring = guard.ring.as_mut().expect("guard holds a ring until dropped");
        let outcome = execute(ring, ops, results);
        if outcome.is_err() {
            guard.ring = None;
        }
        outcome
    }
}

struct RingGuard<'a> {
    pool: &'a Mutex<Vec<IoUring>>,
    ring: Option<IoUring>,
}

impl Drop for RingGuard<'_> {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < MAX_POOLED_RINGS {
                pool.push(ring);
            }
        }
    }
}

impl Backend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring
    }

    fn stats(&self) -> IoStats {
        let ring = self.counters.snapshot();
        let calls = self.calls.stats();
        IoStats {
            call_reads: calls.call_reads,
            call_writes: calls.call_writes,
            call_syncs: calls.call_syncs,
            ..ring
        }
    }

    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.counters.reads(IoPath::Ring, reads.len());
        transfer_all(reads, |ops, results| self.run(ops, results))
    }

    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError> {
        if self.bypasses_ring(writes.iter().map(|w| w.file)) {
            return self.calls.write_batch(writes, sync);
        }
        // Durable writes are one stage: a few go as one linked chain ending
        // in the syncs (`write_stages`), more at full depth, then synced.
        if sync {
            let files = distinct_files(writes);
            return self
                .write_stages(&[Stage { writes, sync: &files }])
                .map_err(IoError::from);
        }
        self.counters.writes(IoPath::Ring, writes.len());
        transfer_all(writes, |ops, results| self.run_blocking(ops, results))
    }

    fn read_write_batch(&self, reads: &mut [ReadOp<'_>], writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        if writes.is_empty() || self.bypasses_ring(writes.iter().map(|w| w.file)) {
            self.write_batch(writes, false)?;
            return self.read_batch(reads);
        }
        self.counters.reads(IoPath::Ring, reads.len());
        self.counters.writes(IoPath::Ring, writes.len());
        transfer_all(Mixed { reads, writes }, |ops, results| self.run_blocking(ops, results))
    }

    fn sync(&self, files: &[&IoFile]) -> Result<(), IoError> {
        if files.is_empty() {
            return Ok(());
        }
        if self.bypasses_ring(files.iter().copied()) {
            return self.calls.sync(files);
        }
        self.counters.syncs(IoPath::Ring, files.len());
        let ops: Vec<RawOp> = files
            .iter()
            .map(|f| RawOp::Fsync {
                fd: f.raw_fd(),
                link: false,
            })
            .collect();
        let mut results = vec![0i32; ops.len()];
        self.run_blocking(&ops, &mut results)
            .map_err(|e| IoError::new(OpKind::Sync, files[0].path(), None, e))?;
        for (f, &res) in files.iter().zip(&results) {
            if res < 0 {
                return Err(IoError::new(OpKind::Sync, f.path(), None, os_err(res)));
            }
        }
        Ok(())
    }

    /// A few stages go to the kernel as one linked chain: the stages' writes
    /// and syncs in order, each linked to the next, so the kernel issues an
    /// operation only once the one before it completed in full. One hand-off
    /// to a submitter and one completion wait serve all the stages, where
    /// stage by stage costs one of each per write batch and per sync.
    ///
    /// A failed write or sync ends the call with its error (a failed sync is
    /// never retried). A short write breaks the chain too; the stages from
    /// its own on are then run again stage by stage (writing again what a
    /// stage already wrote is harmless, and no sync of it has run).
    fn write_stages(&self, stages: &[Stage<'_>]) -> Result<(), StageError> {
        // A stage whose every file blocks (a buffered log on ext4) runs as
        // system calls; then every stage runs on its own, each write batch
        // and sync taking its own path (`write_batch`, `sync`), so a log
        // stage's pwrite never drags a direct data stage off the ring, nor
        // the data stage the log write onto a kernel worker.
        let blocking_stage = stages.iter().any(|s| {
            !(s.writes.is_empty() && s.sync.is_empty())
                && self.bypasses_ring(s.writes.iter().map(|w| w.file).chain(s.sync.iter().copied()))
        });
        if blocking_stage {
            return stage_by_stage(self, stages);
        }
        let count: usize = stages.iter().map(|s| s.writes.len() + s.sync.len()).sum();
        let oversized = stages
            .iter()
            .flat_map(|s| s.writes)
            .any(|w| w.data.len() > MAX_TRANSFER);
        if count > MAX_LINKED_OPS || oversized {
            // Too long for one chain: each stage on its own (a small one as
            // its own chain, a large one at full queue depth, then synced).
            if let [_] = stages {
                return stage_by_stage(self, stages);
            }
            for (i, stage) in stages.iter().enumerate() {
                self.write_stages(std::slice::from_ref(stage)).map_err(|e| StageError {
                    stage: i,
                    error: e.error,
                })?;
            }
            return Ok(());
        }
        // Each op with the stage it belongs to and the write it performs.
        let mut ops = Vec::with_capacity(count);
        let mut origin: Vec<(usize, Option<&WriteOp<'_>>, &IoFile)> = Vec::with_capacity(count);
        for (i, stage) in stages.iter().enumerate() {
            for w in stage.writes.iter().filter(|w| !w.data.is_empty()) {
                ops.push(RawOp::Write {
                    fd: w.file.raw_fd(),
                    ptr: w.data.as_ptr(),
                    len: w.data.len() as u32,
                    offset: w.offset,
                    link: true,
                });
                origin.push((i, Some(w), w.file));
            }
            for f in stage.sync {
                ops.push(RawOp::Fsync {
                    fd: f.raw_fd(),
                    link: true,
                });
                origin.push((i, None, f));
            }
        }
        match ops.last_mut() {
            Some(RawOp::Write { link, .. } | RawOp::Fsync { link, .. }) => *link = false,
            Some(RawOp::Read { .. }) | None => return Ok(()),
        }
        let writes = origin.iter().filter(|(_, w, _)| w.is_some()).count();
        self.counters.writes(IoPath::Ring, writes);
        self.counters.syncs(IoPath::Ring, origin.len() - writes);
        let mut results = vec![0i32; ops.len()];
        let (_, first_write, first_file) = origin[0];
        self.run_blocking(&ops, &mut results).map_err(|e| StageError {
            stage: origin[0].0,
            error: IoError::new(OpKind::Write, first_file.path(), first_write.map(|w| w.offset), e),
        })?;
        for (&(stage, write, file), &res) in origin.iter().zip(&results) {
            let error = match write {
                Some(w) if res >= 0 && res as usize == w.data.len() => continue,
                Some(w) if res < 0 && res != -libc::ECANCELED => {
                    IoError::new(OpKind::Write, file.path(), Some(w.offset), os_err(res))
                }
                None if res >= 0 => continue,
                None if res != -libc::ECANCELED => IoError::new(OpKind::Sync, file.path(), None, os_err(res)),
                // Short, or cancelled by a short write before it.
                _ => {
                    return stage_by_stage(self, &stages[stage..]).map_err(|e| StageError {
                        stage: stage + e.stage,
                        error: e.error,
                    })
                }
            };
            return Err(StageError { stage, error });
        }
        Ok(())
    }
}
