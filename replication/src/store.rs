//! A standby's own full copy: the redo it received, kept durable, and the
//! data files it applies that redo to, in commit order; and the first copy
//! made from a stopped primary site ([`seed`]).
//!
//! ```text
//! <standby>/replication/database-id    the primary's database identity
//! <standby>/replication/base           the commit the seeded copy holds (decimal)
//! <standby>/replication/received.log   redo records base+1, base+2, … (understudy::redo format)
//! <standby>/replication/applied        the last commit applied to data/ (decimal)
//! <standby>/data/                      the copy's catalog and table files
//! ```
//!
//! A record is acknowledged durable once `received.log` is synced with it.
//! Applying writes each record's page images to the table files, syncs
//! them, then replaces `applied` (write, sync, rename, sync the
//! directory). A standby that crashes mid-apply finds `applied` behind
//! `received.log` when it opens, and applies that stretch again: page
//! images are whole pages, so applying twice is applying once. The data
//! files are therefore a transaction-consistent prefix of the primary's
//! commit order whenever no apply is under way — in particular whenever
//! the standby is not running.
//!
//! This file must never move `applied` past what `received.log` holds
//! durably, nor write a page of a record before that record is durable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use understudy::redo::{RedoReader, RedoRecord};
use wal::io::{Io, IoFile, WriteOp};

use crate::durable::write_durably;
use crate::error::{ReplicationError, Result};

fn read_number(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(|e| ReplicationError::Corrupt {
        file: path.to_path_buf(),
        detail: format!("cannot read: {e} (was this copy seeded?)"),
    })?;
    text.trim().parse().map_err(|_| ReplicationError::Corrupt {
        file: path.to_path_buf(),
        detail: "not a decimal commit number".into(),
    })
}

fn replication_dir(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("replication")
}

/// See the module docs.
pub struct StandbyStore {
    io: Io,
    dir: PathBuf,
    data_dir: PathBuf,
    received: IoFile,
    received_path: PathBuf,
    end: u64,
    base: u64,
    durable: u64,
    applied: u64,
    tables: HashMap<u32, IoFile>,
}

impl StandbyStore {
    /// Opens the copy in `cluster_dir`: finds what `received.log` holds (a
    /// torn tail is cut off) and applies what it holds beyond `applied`.
    pub fn open(cluster_dir: &Path) -> Result<StandbyStore> {
        let io = Io::fallback();
        let dir = replication_dir(cluster_dir);
        let base = read_number(&dir.join("base"))?;
        let applied_path = dir.join("applied");
        let applied = if applied_path.exists() {
            read_number(&applied_path)?
        } else {
            base
        };
        let received_path = dir.join("received.log");
        let received = IoFile::open(&received_path, true, true)?;
        let mut reader = RedoReader::open(io.clone(), &received_path, 0)?;
        let mut durable = base;
        let mut pending = Vec::new();
        while let Some((rec, _)) = reader.next_raw()? {
            if rec.seq != durable + 1 {
                return Err(ReplicationError::Corrupt {
                    file: received_path,
                    detail: format!("holds commit {} after commit {durable}", rec.seq),
                });
            }
            durable = rec.seq;
            if rec.seq > applied {
                pending.push(rec);
            }
        }
        if applied > durable {
            return Err(ReplicationError::Corrupt {
                file: applied_path,
                detail: format!("says commit {applied} is applied, but only {durable} were received"),
            });
        }
        let end = reader.offset();
        if received.len()? != end {
            received
                .std()
                .set_len(end)
                .map_err(|e| wal::io::IoError::new(wal::io::OpKind::Write, &received_path, None, e))?;
            io.sync(&received)?;
        }
        let mut store = StandbyStore {
            io,
            dir,
            data_dir: cluster_dir.join("data"),
            received,
            received_path,
            end,
            base,
            durable,
            applied,
            tables: HashMap::new(),
        };
        if !pending.is_empty() {
            tracing::info!(
                from = applied + 1,
                to = durable,
                "applying what was received before a stop"
            );
            store.apply(&pending)?;
        }
        Ok(store)
    }

    /// The last commit durably received.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// The last commit applied to the data files.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The commit the seeded copy held.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Appends records (their bytes, numbered on from [`Self::durable`])
    /// to `received.log` and makes them durable.
    pub fn append(&mut self, records: &[(RedoRecord, Vec<u8>)]) -> Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(records.iter().map(|r| r.1.len()).sum());
        for (expect, (rec, raw)) in (self.durable + 1..).zip(records) {
            assert_eq!(rec.seq, expect, "records are appended in commit order, without gaps");
            bytes.extend_from_slice(raw);
        }
        self.io.write_durable(&self.received, &bytes, self.end)?;
        self.end += bytes.len() as u64;
        self.durable = last.0.seq;
        Ok(())
    }

    /// Applies records already durable here, in commit order: every page
    /// image written (the last of each page only), the table files synced,
    /// then `applied` moved.
    pub fn apply(&mut self, records: &[RedoRecord]) -> Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        assert!(last.seq <= self.durable, "nothing is applied before it is durable");
        let mut latest: HashMap<(u32, u64), &[u8]> = HashMap::new();
        for rec in records {
            for (file_id, page_no, image) in &rec.pages {
                latest.insert((*file_id, *page_no), image);
            }
        }
        for &(file_id, _) in latest.keys() {
            if !self.tables.contains_key(&file_id) {
                let path = self.data_dir.join(format!("t-{file_id}.tbl"));
                if !path.exists() {
                    return Err(ReplicationError::MissingTable { file_id });
                }
                self.tables.insert(file_id, IoFile::open(&path, true, false)?);
            }
        }
        let writes: Vec<WriteOp<'_>> = latest
            .iter()
            .map(|(&(file_id, page_no), image)| WriteOp {
                file: &self.tables[&file_id],
                offset: page_no * image.len() as u64,
                data: image,
            })
            .collect();
        self.io.write_batch(&writes, true)?;
        write_durably(&self.dir.join("applied"), format!("{}\n", last.seq).as_bytes())?;
        self.applied = last.seq;
        Ok(())
    }

    /// The file the received redo is kept in.
    pub fn received_path(&self) -> &Path {
        &self.received_path
    }
}

/// Seeds a standby copy at `standby_dir` from the primary site at
/// `primary_dir`, which must be stopped (no node running): a new cluster
/// directory with the primary's nodes and page size, its own secret and
/// coordinator socket, a copy of the primary's data files, the primary's
/// database identity (created if it had none) and, as the base, the last
/// commit of the primary's redo. Returns the base.
pub fn seed(primary_dir: &Path, standby_dir: &Path, coordinator: lockmgr::Endpoint) -> Result<u64> {
    let primary = understudy::Cluster::open(primary_dir)?;
    let database = crate::auth::database_id_or_create(primary_dir)?;
    let mut base = 0;
    if let [node] = primary.nodes.as_slice() {
        let path = understudy::redo::redo_path(primary_dir, *node);
        if path.exists() {
            let mut r = RedoReader::open(Io::fallback(), &path, 0)?;
            while let Some((rec, _)) = r.next_raw()? {
                base = rec.seq;
            }
        }
    }
    understudy::Cluster::create(standby_dir, &primary.nodes, coordinator, primary.page_size)?;
    let io = Io::fallback();
    let from = primary.data_dir();
    let to = standby_dir.join("data");
    let entries = std::fs::read_dir(&from).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Open, &from, None, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| wal::io::IoError::new(wal::io::OpKind::Open, &from, None, e))?;
        let src = entry.path();
        if !src.is_file() {
            continue;
        }
        let dst = to.join(entry.file_name());
        std::fs::copy(&src, &dst).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Write, &dst, None, e))?;
        io.sync(&IoFile::open(&dst, true, false)?)?;
    }
    io.sync_dir(&to)?;
    crate::auth::write_database_id(standby_dir, &database)?;
    write_durably(
        &replication_dir(standby_dir).join("base"),
        format!("{base}\n").as_bytes(),
    )?;
    Ok(base)
}
