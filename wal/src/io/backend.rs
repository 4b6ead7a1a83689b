//! The contract every backend keeps ([`Backend`]) and the names of the
//! backends ([`BackendKind`]).
//!
//! Every method of a backend completes all the work it started before
//! returning, whether it succeeds or fails: that is what lets the io_uring
//! backend hand the kernel pointers into borrowed buffers soundly. This file
//! must never name a particular backend's machinery (rings, threads).

use std::fmt;

use super::error::{IoError, StageError};
use super::file::IoFile;
use super::op::{ReadOp, Stage, WriteOp};

/// Which backend an [`Io`] uses.
///
/// [`Io`]: super::Io
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring ([`super::uring::UringBackend`]), whatever share of its
    /// writes it runs on the caller.
    Uring,
    /// `pread`/`pwrite`/`fdatasync` ([`super::fallback::FallbackBackend`]).
    Fallback,
    /// The fault-injecting test backend, wrapping another one.
    Fault,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Uring => "io_uring",
            BackendKind::Fallback => "pread/pwrite fallback",
            BackendKind::Fault => "fault injector",
        })
    }
}

/// What a backend does. Every method completes all the work it started before
/// returning, whether it succeeds or fails.
pub trait Backend: Send + Sync + 'static {
    /// Which backend this is, for reports.
    fn kind(&self) -> BackendKind;

    /// The operations it ran so far, by path (see [`super::IoStats`]).
    fn stats(&self) -> super::IoStats;

    /// Fills every buffer completely; reading past the end of a file is an
    /// `UnexpectedEof` error.
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError>;

    /// Writes every op completely; with `sync`, then makes each distinct file
    /// written durable (fdatasync) before returning.
    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError>;

    /// Makes each file durable (fdatasync).
    fn sync(&self, files: &[&IoFile]) -> Result<(), IoError>;

    /// Fills every read's buffer and writes every write completely, not
    /// synced. The reads and writes must touch different bytes: a backend
    /// may issue them together, in any order (io_uring does, so the device
    /// works on both at once). By default, the writes, then the reads.
    fn read_write_batch(&self, reads: &mut [ReadOp<'_>], writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        self.write_batch(writes, false)?;
        self.read_batch(reads)
    }

    /// Runs each stage's writes, then its syncs, one stage after the other:
    /// nothing of a stage is issued before the previous stage's syncs have
    /// completed. On error, the stages before the failing one are durable
    /// and nothing after it was issued.
    fn write_stages(&self, stages: &[Stage<'_>]) -> Result<(), StageError> {
        stage_by_stage(self, stages)
    }
}

/// [`Backend::write_stages`] as separate calls, one stage at a time.
pub(super) fn stage_by_stage<B: Backend + ?Sized>(backend: &B, stages: &[Stage<'_>]) -> Result<(), StageError> {
    for (stage, s) in stages.iter().enumerate() {
        backend
            .write_batch(s.writes, false)
            .and_then(|()| backend.sync(s.sync))
            .map_err(|error| StageError { stage, error })?;
    }
    Ok(())
}
