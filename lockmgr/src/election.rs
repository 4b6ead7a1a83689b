//! Who serves a cluster: one coordinator at a time, and a standby that
//! takes over when it dies.
//!
//! ## One host: a file lock
//! A coordinator holds an exclusive `flock` on `LOCK` in its state
//! directory for as long as it runs, taken before it reads its durable
//! record; the kernel releases it when the process dies, however it dies.
//! A second coordinator for the same directory is refused
//! ([`ElectionError::Held`]), or, as a standby, blocks on the lock and
//! takes over the instant the active one is gone: it reads the record the
//! dead one left, binds the same endpoint, and the nodes, which ride
//! through the change (`crate::client`), rejoin it and re-assert their
//! locks. A coordinator embedded in a node takes the same lock, so a
//! standby process takes over from it when its host node dies.
//!
//! The lock is only as good as the file system's `flock`: on one host it
//! is exact. Across hosts on a shared file system it is not to be trusted;
//! that is what the etcd election is for (feature `etcd`, see
//! `crate::etcd`): a lease-backed election, and the record kept in etcd
//! instead of the state directory.
//!
//! This file owns the taking and holding of leadership. It must never let
//! a coordinator read or write the record before it leads.

use std::fs::File;
use std::path::{Path, PathBuf};

use wal::io::Io;

pub use crate::error::ElectionError;
use crate::persist::{CoordinatorState, PersistError, StateStore};
use crate::store::RecordStore;

/// How a coordinator is elected.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Election {
    /// One host: an exclusive lock on the state directory's `LOCK` file.
    #[default]
    FileLock,
    /// Across hosts: a lease-backed election on etcd, and the record kept
    /// there.
    #[cfg(feature = "etcd")]
    Etcd(crate::etcd::EtcdConfig),
}

/// Leadership held; dropping it steps down (the kernel releases the lock;
/// on etcd, the coordinator resigns).
#[derive(Debug)]
pub struct Leadership(Held);

#[derive(Debug)]
enum Held {
    /// The locked file: held, never read.
    File(#[allow(dead_code)] File),
    #[cfg(feature = "etcd")]
    Etcd(std::sync::Arc<crate::etcd::EtcdLeader>),
}

impl Leadership {
    /// The record's store, and the record in it (`None` before the first):
    /// the state directory's files, or etcd's key.
    pub fn open_store(
        &self,
        io: &Io,
        state_dir: &Path,
    ) -> Result<(RecordStore, Option<CoordinatorState>), PersistError> {
        match &self.0 {
            Held::File(_) => {
                let (store, state) = StateStore::open(io, state_dir)?;
                Ok((RecordStore::Files(store), state))
            }
            #[cfg(feature = "etcd")]
            Held::Etcd(leader) => {
                let state = leader.load()?;
                Ok((RecordStore::Etcd(leader.clone()), state))
            }
        }
    }
}

/// The lock file of a coordinator's state directory.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("LOCK")
}

impl Election {
    /// Takes leadership of the cluster whose record is in `state_dir` (or
    /// on etcd), announcing `endpoints` where the election has a value for
    /// it: at once, or [`ElectionError::Held`] if another coordinator
    /// leads; with `standby`, waiting for as long as it does.
    pub fn lead(&self, state_dir: &Path, endpoints: &str, standby: bool) -> Result<Leadership, ElectionError> {
        let _ = endpoints;
        match self {
            #[cfg(feature = "etcd")]
            Election::Etcd(cfg) => Ok(Leadership(Held::Etcd(std::sync::Arc::new(
                crate::etcd::EtcdLeader::lead(cfg, endpoints, standby)?,
            )))),
            Election::FileLock => {
                let path = lock_path(state_dir);
                let io = |e| ElectionError::Failed(format!("{}: {e}", path.display()));
                let file = if standby {
                    let file = wal::lock_file::open(&path).map_err(io)?;
                    // Woken by the kernel the moment the holder is gone.
                    file.lock().map_err(io)?;
                    file
                } else {
                    wal::lock_file::try_lock(&path)
                        .map_err(io)?
                        .ok_or_else(|| ElectionError::Held {
                            place: state_dir.display().to_string(),
                        })?
                };
                Ok(Leadership(Held::File(file)))
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
        let first = Election::FileLock.lead(dir.path(), "", false).unwrap();
        assert!(matches!(
            Election::FileLock.lead(dir.path(), "", false),
            Err(ElectionError::Held { .. })
        ));
        let path = dir.path().to_path_buf();
        let standby = std::thread::spawn(move || Election::FileLock.lead(&path, "", true).map(|_| ()));
        drop(first);
        standby.join().unwrap().unwrap();
    }
}
