//! Who serves a cluster: one coordinator at a time, and a standby that
//! takes over when it dies.
//!
//! ## One host: a file lock
//! A coordinator holds an exclusive `flock` on `LOCK` in its state
//! directory for as long as it runs, taken before it reads its durable
//! record; the kernel releases it when the process dies, however it dies.
//! A second coordinator for the same directory is refused
//! ([`CoordinatorError::Held`]), or, as a standby, blocks on the lock and
//! takes over the instant the active one is gone: it reads the record the
//! dead one left, binds the same endpoint, and the nodes, which ride
//! through the change (`crate::client`), rejoin it and re-assert their
//! locks. A coordinator embedded in a node takes the same lock, so a
//! standby process takes over from it when its host node dies.
//!
//! The lock is only as good as the file system's `flock`: on one host it
//! is exact. Across hosts on a shared file system it is not to be trusted;
//! that is what the etcd election is for (feature `etcd`, see
//! `crate::etcd`).
//!
//! This file owns the taking and holding of leadership. It must never let
//! a coordinator read or write the record before it leads.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::server::CoordinatorError;

/// How a coordinator is elected.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Election {
    /// One host: an exclusive lock on the state directory's `LOCK` file.
    #[default]
    FileLock,
}

/// Leadership held; dropping it steps down (the kernel releases the lock).
#[derive(Debug)]
pub struct Leadership {
    _lock: File,
}

/// The lock file of a coordinator's state directory.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("LOCK")
}

impl Election {
    /// Takes leadership of the cluster whose record is in `state_dir`: at
    /// once, or [`CoordinatorError::Held`] if another coordinator leads;
    /// with `standby`, waiting for as long as it does.
    pub fn lead(&self, state_dir: &Path, standby: bool) -> Result<Leadership, CoordinatorError> {
        match self {
            Election::FileLock => {
                let path = lock_path(state_dir);
                let io = |e| CoordinatorError::Election(format!("{}: {e}", path.display()));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io)?;
                if standby {
                    // Woken by the kernel the moment the holder is gone.
                    file.lock().map_err(io)?;
                } else {
                    match file.try_lock() {
                        Ok(()) => {}
                        Err(std::fs::TryLockError::WouldBlock) => {
                            return Err(CoordinatorError::Held {
                                dir: state_dir.to_path_buf(),
                            })
                        }
                        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
                    }
                }
                Ok(Leadership { _lock: file })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_at_a_time_and_a_standby_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = Election::FileLock.lead(dir.path(), false).unwrap();
        assert!(matches!(
            Election::FileLock.lead(dir.path(), false),
            Err(CoordinatorError::Held { .. })
        ));
        let path = dir.path().to_path_buf();
        let standby = std::thread::spawn(move || Election::FileLock.lead(&path, true).map(|_| ()));
        drop(first);
        standby.join().unwrap().unwrap();
    }
}
