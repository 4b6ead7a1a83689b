//! The handle every crate uses for file I/O ([`Io`]) and how it picks its
//! backend ([`BackendChoice`]).
//!
//! This file owns choosing a backend and the calls built on a backend's few
//! methods (a single read or write, a durable write, zero-filling). It must
//! never move bytes itself: every operation goes to the backend, so the
//! fault injector sees each one.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::backend::{Backend, BackendKind};
use super::error::{IoError, StageError};
use super::fallback::FallbackBackend;
use super::file::IoFile;
use super::op::{ReadOp, Stage, WriteOp};
use super::uring::UringBackend;

/// How to choose a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, the fallback otherwise. Writes
    /// and syncs of files whose writes block ([`IoFile::writes_block`]) run
    /// on the calling thread (see [`uring`](super::uring)).
    #[default]
    Auto,
    /// io_uring for every operation, or an error.
    Uring,
    /// Always the fallback.
    Fallback,
}

/// The handle every crate uses for file I/O. Cheap to clone.
#[derive(Clone)]
pub struct Io {
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Io({})", self.kind())
    }
}

impl Io {
    /// Picks a backend. `Auto` probes io_uring once and falls back to
    /// pread/pwrite when the kernel refuses it (seccomp, `io_uring_disabled`,
    /// an old kernel); [`Io::kind`] reports the outcome.
    pub fn new(choice: BackendChoice) -> Result<Io, IoError> {
        match choice {
            BackendChoice::Fallback => Ok(Io::fallback()),
            BackendChoice::Uring => UringBackend::probe().map(Io::with_backend),
            BackendChoice::Auto => match UringBackend::probe() {
                Ok(b) => Ok(Io::with_backend(b.blocking_writes_on_caller())),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring unavailable; using the pread/pwrite fallback");
                    Ok(Io::fallback())
                }
            },
        }
    }

    /// The io_uring backend with every operation run on the caller's own
    /// thread, no submitter threads (see `submitters`): the raw figure
    /// benchmarks compare against. An engine uses [`Io::new`].
    pub fn uring_inline() -> Result<Io, IoError> {
        UringBackend::probe_inline().map(Io::with_backend)
    }

    /// The pread/pwrite/fdatasync backend.
    pub fn fallback() -> Io {
        Io::with_backend(FallbackBackend::default())
    }

    /// A handle over `backend` (a test backend, or one built by hand).
    pub fn with_backend(backend: impl Backend) -> Io {
        Io {
            backend: Arc::new(backend),
        }
    }

    /// A handle over a backend already shared, such as a
    /// [`FaultInjector`](super::fault::FaultInjector) the test keeps too.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Io {
        Io { backend }
    }

    /// Which backend this handle uses.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The operations run through this handle's backend so far, by the
    /// path each took: what to report, rather than [`Io::kind`].
    pub fn stats(&self) -> super::IoStats {
        self.backend.stats()
    }

    /// Fills all of `buf` from byte `offset` of `file`; the end of the file
    /// first is an `UnexpectedEof` error.
    pub fn read_exact_at(&self, file: &IoFile, buf: &mut [u8], offset: u64) -> Result<(), IoError> {
        self.backend.read_batch(&mut [ReadOp { file, offset, buf }])
    }

    /// Fills every read's buffer completely, the reads issued together
    /// ([`Backend::read_batch`]).
    pub fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.backend.read_batch(reads)
    }

    /// Fills every read's buffer and writes every write completely, not
    /// synced, issued together where the backend can (io_uring): the reads
    /// and writes must touch different bytes ([`Backend::read_write_batch`]).
    pub fn read_write_batch(&self, reads: &mut [ReadOp<'_>], writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        self.backend.read_write_batch(reads, writes)
    }

    /// Writes all of `data` at byte `offset` of `file`, not synced.
    pub fn write_all_at(&self, file: &IoFile, data: &[u8], offset: u64) -> Result<(), IoError> {
        self.backend.write_batch(&[WriteOp { file, offset, data }], false)
    }

    /// Writes `data` and makes it durable; io_uring links the two operations.
    pub fn write_durable(&self, file: &IoFile, data: &[u8], offset: u64) -> Result<(), IoError> {
        self.backend.write_batch(&[WriteOp { file, offset, data }], true)
    }

    /// Writes every op completely, issued together; with `sync`, then makes
    /// each distinct file written durable ([`Backend::write_batch`]).
    pub fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError> {
        self.backend.write_batch(writes, sync)
    }

    /// Makes `file` durable (fdatasync); a failure is reported once, never
    /// retried.
    pub fn sync(&self, file: &IoFile) -> Result<(), IoError> {
        self.backend.sync(&[file])
    }

    /// Writes and syncs `stages` in order, each durable before anything of
    /// the next is issued: for work that must reach the disk in steps (data
    /// pages before the log records that vouch for them). io_uring runs a
    /// few stages as one linked chain, a single submission whose steps the
    /// kernel starts back to back; a failure cancels what follows it.
    pub fn write_stages(&self, stages: &[Stage<'_>]) -> Result<(), StageError> {
        self.backend.write_stages(stages)
    }

    /// Makes each of `files` durable (fdatasync), issued together.
    pub fn sync_all(&self, files: &[&IoFile]) -> Result<(), IoError> {
        self.backend.sync(files)
    }

    /// Makes a directory's entries (created, renamed, removed files) durable.
    pub fn sync_dir(&self, dir: &Path) -> Result<(), IoError> {
        let f = IoFile::open(dir, false, false)?;
        self.backend.sync(&[&f])
    }

    /// Writes `len` zero bytes from `offset`, in large writes, so the file's
    /// blocks are allocated and later overwrites need no metadata change.
    pub fn zero_fill(&self, file: &IoFile, offset: u64, len: u64) -> Result<(), IoError> {
        const CHUNK: usize = 1 << 20;
        const DEPTH: usize = 16;
        let zeros = vec![0u8; CHUNK.min(len as usize)];
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let mut ops = Vec::with_capacity(DEPTH);
            while pos < end && ops.len() < DEPTH {
                let n = (end - pos).min(CHUNK as u64) as usize;
                ops.push(WriteOp {
                    file,
                    offset: pos,
                    data: &zeros[..n],
                });
                pos += n as u64;
            }
            self.backend.write_batch(&ops, false)?;
        }
        Ok(())
    }
}
