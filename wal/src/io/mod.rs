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

pub mod fallback;
pub mod fault;
mod submitters;
pub mod uring;

pub use uring::on_this_thread;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Which operation an [`IoError`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Open,
    Read,
    Write,
    Sync,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Open => "open",
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Sync => "sync",
        })
    }
}

/// A failed I/O operation: which one, on which file, where, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} of {} failed{}: {source}", path.display(), offset.map(|o| format!(" at offset {o}")).unwrap_or_default())]
pub struct IoError {
    pub op: OpKind,
    pub path: PathBuf,
    pub offset: Option<u64>,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(op: OpKind, path: &Path, offset: Option<u64>, source: std::io::Error) -> Self {
        IoError {
            op,
            path: path.to_path_buf(),
            offset,
            source,
        }
    }

    /// The OS error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Which backend an [`Io`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Uring,
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

/// How to choose a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, the fallback otherwise. Writes
    /// and syncs of files whose writes block ([`IoFile::writes_block`]) run
    /// on the calling thread (see [`uring`]).
    #[default]
    Auto,
    /// io_uring for every operation, or an error.
    Uring,
    /// Always the fallback.
    Fallback,
}

/// An open file. Cheap to clone; the descriptor closes with the last clone.
#[derive(Clone)]
pub struct IoFile {
    inner: Arc<FileInner>,
}

struct FileInner {
    file: File,
    path: PathBuf,
    /// See [`IoFile::writes_block`]; asked of the kernel on first use, so
    /// a file only ever read costs no extra call.
    writes_block: OnceLock<bool>,
}

impl fmt::Debug for IoFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IoFile({})", self.inner.path.display())
    }
}

impl IoFile {
    /// Opens `path` for reading, and for writing when `writable`; `create`
    /// creates it when missing.
    pub fn open(path: &Path, writable: bool, create: bool) -> Result<IoFile, IoError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(create && writable)
            .open(path)
            .map_err(|e| IoError::new(OpKind::Open, path, None, e))?;
        Ok(IoFile::from_std(file, path))
    }

    /// Wraps an already open file.
    pub fn from_std(file: File, path: &Path) -> IoFile {
        IoFile {
            inner: Arc::new(FileInner {
                file,
                path: path.to_path_buf(),
                writes_block: OnceLock::new(),
            }),
        }
    }

    /// Whether the kernel cannot start a write to this file without
    /// possibly blocking: a buffered (not `O_DIRECT`) file on a file system
    /// with no non-blocking buffered write path. io_uring cannot issue such
    /// a write from the submitting call; it hands every one to a kernel
    /// worker thread, and the writes of one file to one worker in turn.
    pub fn writes_block(&self) -> bool {
        *self.inner.writes_block.get_or_init(|| writes_block(&self.inner.file))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn std(&self) -> &File {
        &self.inner.file
    }

    pub fn raw_fd(&self) -> RawFd {
        self.inner.file.as_raw_fd()
    }

    /// The file's current length.
    pub fn len(&self) -> Result<u64, IoError> {
        self.inner
            .file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| IoError::new(OpKind::Read, self.path(), None, e))
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> Result<bool, IoError> {
        self.len().map(|l| l == 0)
    }

    /// Whether two handles share one open file description.
    pub fn same_file(&self, other: &IoFile) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// File systems whose buffered writes io_uring issues without a worker
/// thread (they take non-blocking buffered writes: XFS since Linux 6.0,
/// btrfs since 6.1). Any other file system, ext4 among them, gets every
/// buffered write handed to a worker: on ext4 under Linux 6.18, the
/// `io_uring:io_uring_queue_async_work` tracepoint counted a hand-off for
/// every one of 16 000 page writes, and 16 random 4 KiB page writes took
/// 123 µs through the ring against 54 µs as 16 `pwrite` calls.
const NONBLOCKING_BUFFERED_WRITE_FS: [u64; 2] = [
    0x5846_5342, // XFS_SUPER_MAGIC
    0x9123_683e, // BTRFS_SUPER_MAGIC
];

/// See [`IoFile::writes_block`]. A file whose flags or file system cannot
/// be read counts as blocking: that choice costs at most speed.
fn writes_block(file: &File) -> bool {
    let direct = rustix::fs::fcntl_getfl(file).is_ok_and(|f| f.contains(rustix::fs::OFlags::DIRECT));
    if direct {
        return false;
    }
    match rustix::fs::fstatfs(file) {
        #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs by target
        Ok(fs) => !NONBLOCKING_BUFFERED_WRITE_FS.contains(&(fs.f_type as u64)),
        Err(_) => true,
    }
}

/// One write of a batch: all of `data` at `offset` of `file`.
#[derive(Clone, Copy, Debug)]
pub struct WriteOp<'a> {
    pub file: &'a IoFile,
    pub offset: u64,
    pub data: &'a [u8],
}

/// One stage of [`Io::write_stages`]: its writes, then the syncs of `sync`
/// (which normally names every file the writes touch, and may name more).
#[derive(Clone, Copy, Debug)]
pub struct Stage<'a> {
    pub writes: &'a [WriteOp<'a>],
    pub sync: &'a [&'a IoFile],
}

/// A failed [`Io::write_stages`]: which stage failed (every stage before it
/// is durable, nothing after it was issued) and why.
#[derive(Debug, thiserror::Error)]
#[error("stage {stage}: {error}")]
pub struct StageError {
    pub stage: usize,
    #[source]
    pub error: IoError,
}

impl From<StageError> for IoError {
    fn from(e: StageError) -> IoError {
        e.error
    }
}

/// One read of a batch: fills all of `buf` from `offset` of `file`.
#[derive(Debug)]
pub struct ReadOp<'a> {
    pub file: &'a IoFile,
    pub offset: u64,
    pub buf: &'a mut [u8],
}

/// What a backend does. Every method completes all the work it started before
/// returning, whether it succeeds or fails.
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;

    /// Fills every buffer completely; reading past the end of a file is an
    /// `UnexpectedEof` error.
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError>;

    /// Writes every op completely; with `sync`, then makes each distinct file
    /// written durable (fdatasync) before returning.
    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError>;

    /// Makes each file durable (fdatasync).
    fn sync(&self, files: &[&IoFile]) -> Result<(), IoError>;

    /// Runs each stage's writes, then its syncs, one stage after the other:
    /// nothing of a stage is issued before the previous stage's syncs have
    /// completed. On error, the stages before the failing one are durable
    /// and nothing after it was issued.
    fn write_stages(&self, stages: &[Stage<'_>]) -> Result<(), StageError> {
        stage_by_stage(self, stages)
    }
}

/// [`Backend::write_stages`] as separate calls, one stage at a time.
pub(crate) fn stage_by_stage<B: Backend + ?Sized>(backend: &B, stages: &[Stage<'_>]) -> Result<(), StageError> {
    for (stage, s) in stages.iter().enumerate() {
        backend
            .write_batch(s.writes, false)
            .and_then(|()| backend.sync(s.sync))
            .map_err(|error| StageError { stage, error })?;
    }
    Ok(())
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
            BackendChoice::Uring => uring::UringBackend::probe().map(Io::with_backend),
            BackendChoice::Auto => match uring::UringBackend::probe() {
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
        uring::UringBackend::probe_inline().map(Io::with_backend)
    }

    /// The pread/pwrite/fdatasync backend.
    pub fn fallback() -> Io {
        Io::with_backend(fallback::FallbackBackend)
    }

    pub fn with_backend(backend: impl Backend) -> Io {
        Io {
            backend: Arc::new(backend),
        }
    }

    pub fn from_arc(backend: Arc<dyn Backend>) -> Io {
        Io { backend }
    }

    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    pub fn read_exact_at(&self, file: &IoFile, buf: &mut [u8], offset: u64) -> Result<(), IoError> {
        self.backend.read_batch(&mut [ReadOp { file, offset, buf }])
    }

    pub fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.backend.read_batch(reads)
    }

    pub fn write_all_at(&self, file: &IoFile, data: &[u8], offset: u64) -> Result<(), IoError> {
        self.backend.write_batch(&[WriteOp { file, offset, data }], false)
    }

    /// Writes `data` and makes it durable; io_uring links the two operations.
    pub fn write_durable(&self, file: &IoFile, data: &[u8], offset: u64) -> Result<(), IoError> {
        self.backend.write_batch(&[WriteOp { file, offset, data }], true)
    }

    pub fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError> {
        self.backend.write_batch(writes, sync)
    }

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

/// The distinct files of a batch, in first-seen order: those a stage that
/// writes the batch syncs.
pub fn distinct_files<'a>(writes: &[WriteOp<'a>]) -> Vec<&'a IoFile> {
    let mut files: Vec<&IoFile> = Vec::new();
    for w in writes {
        if !files.iter().any(|f| f.same_file(w.file)) {
            files.push(w.file);
        }
    }
    files
}

#[cfg(test)]
mod tests;
