//! Lock files: a file whose exclusive `flock` says which process owns a
//! directory (a log's `LOCK`, a coordinator's election, an embedded
//! database's `DATABASE.lock`). The kernel lets the lock go when the
//! owning process dies, however it dies, so holding it proves every
//! earlier owner gone. Written once here for every crate that needs one.

use std::fs::File;
use std::path::Path;

/// Opens (creating if needed) the lock file at `path`, locking nothing yet.
pub fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// The lock file at `path`, locked exclusively, or `None` if another open
/// of it (another process, or another open in this one) holds the lock.
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
