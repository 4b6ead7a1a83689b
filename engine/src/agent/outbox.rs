//! The file outbox: a recovery agent shipped with the engine. Files appear
//! in a directory exactly when the transaction that wrote them commits.
//!
//! [`FileOutbox::put`] writes the file aside, under `<dir>/.aside/`, and
//! syncs it, after its agent record is durable (`crate::agent`); nothing
//! shows in `<dir>` yet. When the transaction commits, the agent publishes
//! it: a rename into `<dir>` under its name, the directories synced. When a
//! scope it belongs to fails — a nested scope, the transaction's rollback,
//! the node's crash recovered by its own restart or by a peer — the agent
//! removes the file aside. A published file is never removed: it belongs
//! to a committed transaction. Names are the embedder's to keep apart: two
//! transactions that publish one name leave whichever published last. A
//! consumer may take published files away; a recovery that finishes a
//! commit again finds nothing aside and publishes nothing twice.
//!
//! The agent keeps no state: the work identifier in the log says which
//! file aside is whose, so any node that registers an outbox on the same
//! directory (a shared one, like the data files) can finish or undo any
//! node's work.
//!
//! ## Work identifier (version 1)
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | version = 1 |
//! | 1 | 16 | tag: random; the file aside is `.aside/<tag as 32 lowercase hex digits>` |
//! | 17 | 1 | `n`: the name's length, 1 to 255 |
//! | 18 | `n` | the name the file is published under (UTF-8, no `/`, no NUL, not starting with `.`) |
//!
//! The file's bytes are not in the log: they are on disk, aside, before
//! the transaction can commit.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use wal::io::{IoError, OpKind};
use wal::AgentId;

use crate::agent::{AgentError, RecoveryAgent, Work};
use crate::error::{Error, Result};
use crate::txn::Transaction;

/// The directory under the outbox that holds files not yet published.
pub const ASIDE_DIR: &str = ".aside";

/// The work identifier's format version.
const VERSION: u8 = 1;
/// Bytes before the name.
const FIXED: usize = 18;
/// The longest name.
pub const MAX_NAME: usize = 255;

/// What the outbox agent cannot do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A work identifier that is not one this version writes.
    #[error("not a file outbox work identifier: {0}")]
    BadWork(&'static str),
    /// A file or directory operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A file outbox on one directory, registered as the agent of one resource
/// id. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FileOutbox {
    resource: AgentId,
    dir: PathBuf,
    aside: PathBuf,
}

/// One file's work, decoded.
struct Parcel<'a> {
    tag: [u8; 16],
    name: &'a str,
}

impl<'a> Parcel<'a> {
    fn encode(tag: [u8; 16], name: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + name.len());
        out.push(VERSION);
        out.extend_from_slice(&tag);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out
    }

    fn decode(id: &'a [u8]) -> std::result::Result<Parcel<'a>, OutboxError> {
        if id.len() < FIXED || id[0] != VERSION {
            return Err(OutboxError::BadWork("short, or an unknown version"));
        }
        let n = id[17] as usize;
        if id.len() != FIXED + n {
            return Err(OutboxError::BadWork("the name's length disagrees with the record's"));
        }
        let name = std::str::from_utf8(&id[FIXED..]).map_err(|_| OutboxError::BadWork("the name is not UTF-8"))?;
        if !valid_name(name) {
            return Err(OutboxError::BadWork("the name is not one the outbox publishes"));
        }
        Ok(Parcel {
            tag: id[1..17].try_into().expect("16 bytes"),
            name,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.starts_with('.') && !name.contains(['/', '\0'])
}

fn io_err(op: OpKind, path: &Path, e: std::io::Error) -> IoError {
    IoError::new(op, path, None, e)
}

/// Makes `dir`'s entries durable.
fn sync_dir(dir: &Path) -> std::result::Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(OpKind::Sync, dir, e))
}

impl FileOutbox {
    /// The outbox on `dir` (created, with its `.aside` directory, if
    /// missing: durably, so no file aside can vanish with its directory),
    /// whose agent is registered as `resource`.
    pub fn open(resource: AgentId, dir: &Path) -> Result<FileOutbox> {
        let aside = dir.join(ASIDE_DIR);
        if !aside.is_dir() {
            fs::create_dir_all(&aside).map_err(|e| io_err(OpKind::Write, &aside, e))?;
            sync_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(FileOutbox {
            resource,
            dir: dir.to_path_buf(),
            aside,
        })
    }

    /// The resource id its agent is registered as.
    pub fn resource(&self) -> AgentId {
        self.resource
    }

    /// The directory files are published in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `content` as file `name` in transaction `txn`: aside now
    /// (durably), published in the outbox when `txn` commits, removed if a
    /// scope of `txn` it belongs to fails. `txn`'s node must register this
    /// outbox's agent.
    pub fn put(&self, txn: &mut Transaction, name: &str, content: &[u8]) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::InvalidOutboxName { name: name.into() });
        }
        let tag: [u8; 16] = rand::random();
        let id = Parcel::encode(tag, name);
        txn.act(self.resource, &id, |_| {
            let path = self.aside_path(&tag);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_err(OpKind::Write, &path, e))?;
            f.write_all(content).map_err(|e| io_err(OpKind::Write, &path, e))?;
            f.sync_all().map_err(|e| io_err(OpKind::Sync, &path, e))?;
            sync_dir(&self.aside)?;
            Ok(())
        })
    }

    /// The names of the published files, sorted.
    pub fn published(&self) -> Result<Vec<String>> {
        self.names(&self.dir)
    }

    /// The files written aside and neither published nor removed yet (by
    /// their tags), sorted: work of transactions in flight.
    pub fn aside(&self) -> Result<Vec<String>> {
        self.names(&self.aside)
    }

    fn names(&self, dir: &Path) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_err(OpKind::Read, dir, e))? {
            let entry = entry.map_err(|e| io_err(OpKind::Read, dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != ASIDE_DIR {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn aside_path(&self, tag: &[u8; 16]) -> PathBuf {
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        self.aside.join(hex)
    }
}

impl RecoveryAgent for FileOutbox {
    /// Publishes the file: renames it from aside to its name (replacing a
    /// file of that name), then syncs both directories. Done already when
    /// nothing is aside — a rename made earlier, whose directory is synced
    /// again here so the result is durable before the transaction's
    /// `Commit` record.
    fn commit(&self, work: &Work<'_>) -> std::result::Result<(), AgentError> {
        let parcel = Parcel::decode(work.id)?;
        let from = self.aside_path(&parcel.tag);
        let to = self.dir.join(parcel.name);
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Box::new(OutboxError::Io(io_err(OpKind::Write, &from, e)))),
        }
        sync_dir(&self.dir).map_err(OutboxError::Io)?;
        sync_dir(&self.aside).map_err(OutboxError::Io)?;
        Ok(())
    }

    /// Removes the file aside, if it is there (it may never have been
    /// written, or been removed already); never a published file.
    fn undo(&self, work: &Work<'_>) -> std::result::Result<(), AgentError> {
        let parcel = Parcel::decode(work.id)?;
        let path = self.aside_path(&parcel.tag);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Box::new(OutboxError::Io(io_err(OpKind::Write, &path, e)))),
        }
        sync_dir(&self.aside).map_err(OutboxError::Io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work<'a>(id: &'a [u8]) -> Work<'a> {
        Work {
            resource: 1,
            node: 1,
            txn: 1,
            scope: 0,
            lsn: wal::Lsn(0),
            id,
        }
    }

    #[test]
    fn work_identifiers_round_trip_and_bad_ones_are_refused() {
        let id = Parcel::encode([7; 16], "receipt-1");
        let p = Parcel::decode(&id).unwrap();
        assert_eq!((p.tag, p.name), ([7; 16], "receipt-1"));
        for bad in [
            &id[..10],
            &id[..id.len() - 1],
            &Parcel::encode([7; 16], "../x")[..],
            &Parcel::encode([7; 16], ".aside")[..],
        ] {
            assert!(Parcel::decode(bad).is_err(), "{bad:?}");
        }
        let mut other_version = id.clone();
        other_version[0] = 2;
        assert!(Parcel::decode(&other_version).is_err());
    }

    #[test]
    fn commit_and_undo_are_idempotent_and_undo_never_removes_a_published_file() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(1, dir.path()).unwrap();
        let (a, b) = (Parcel::encode([1; 16], "a"), Parcel::encode([2; 16], "b"));
        fs::write(outbox.aside_path(&[1; 16]), b"A").unwrap();
        fs::write(outbox.aside_path(&[2; 16]), b"B").unwrap();
        outbox.commit(&work(&a)).unwrap();
        outbox.commit(&work(&a)).unwrap();
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"A");
        outbox.undo(&work(&b)).unwrap();
        outbox.undo(&work(&b)).unwrap();
        // Undoing published work (which the engine never asks) leaves it.
        outbox.undo(&work(&a)).unwrap();
        assert_eq!(outbox.published().unwrap(), ["a"]);
        assert!(outbox.aside().unwrap().is_empty());
    }

    #[test]
    fn names_that_would_leave_the_directory_are_refused() {
        for name in ["", ".hidden", "a/b", "..", &"x".repeat(MAX_NAME + 1)] {
            assert!(!valid_name(name), "{name:?}");
        }
        assert!(valid_name(&"x".repeat(MAX_NAME)));
    }
}
