//! Open files ([`IoFile`]): the handle every operation of the I/O layer
//! names, and what the kernel says about how writes to it behave
//! ([`IoFile::writes_block`]).
//!
//! This file owns opening and describing files. It must never read, write
//! or sync them: that is a backend's work, through [`super::Io`].

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::error::{IoError, OpKind};

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

    /// Opens `path` for direct I/O (`O_DIRECT`: reads and writes go to the
    /// device, past the page cache), for reading and writing when
    /// `writable`; `create` creates it when missing. Where the file system
    /// refuses direct I/O (tmpfs), the file is opened buffered instead:
    /// [`IoFile::is_direct`] says which it got. A direct file's reads and
    /// writes need buffers, offsets and lengths aligned to the device's
    /// logical block (a multiple of 512 bytes; 4096 is always enough).
    pub fn open_direct(path: &Path, writable: bool, create: bool) -> Result<IoFile, IoError> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(create && writable)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match direct {
            Ok(file) => Ok(IoFile::from_std(file, path)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoFile::open(path, writable, create),
            Err(e) => Err(IoError::new(OpKind::Open, path, None, e)),
        }
    }

    /// Whether reads and writes of this file bypass the page cache
    /// (`O_DIRECT`).
    pub fn is_direct(&self) -> bool {
        rustix::fs::fcntl_getfl(&self.inner.file).is_ok_and(|f| f.contains(rustix::fs::OFlags::DIRECT))
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

    /// The path the file was opened by (or named with, see
    /// [`IoFile::from_std`]), for errors and reports.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The standard library's handle, for calls the I/O layer does not
    /// make (metadata, locks, `set_len`).
    pub fn std(&self) -> &File {
        &self.inner.file
    }

    /// The file descriptor, valid while this handle (or a clone) lives.
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
