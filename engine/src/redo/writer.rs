//! The node's redo writer: commit sequence numbers, one record per
//! transaction of each commit round, the watermark of what is committed,
//! and the check of the last round when the node opens (see `crate::redo`
//! for why the last round only).
//!
//! This file owns the redo file's tail and the numbering. It must never
//! report a transaction committed (advance the [`Watermark`]) before its
//! round's pages are durable: a standby would otherwise be shipped a
//! transaction that recovery may still back out.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wal::io::{Io, IoFile, WriteOp};
use wal::Lsn;

use super::{redo_path, RedoReader, RedoRecord};
use crate::datafile::DataFiles;
use crate::datafile::Forced;
use crate::error::{Error, Result};
use crate::page::Stamp;
use crate::sync::lock;

/// How far the site's commit order is committed and in the redo file:
/// every record up to [`Watermark::committed`] may ship. Shared between
/// the node's commit rounds and a shipper (the `replication` crate).
#[derive(Debug, Default)]
pub struct Watermark {
    committed: Mutex<u64>,
    moved: Condvar,
}

impl Watermark {
    /// The last commit sequence number whose transaction is committed (0:
    /// none yet).
    pub fn committed(&self) -> u64 {
        *lock(&self.committed)
    }

    /// Waits until the watermark passes `seq`, at most `timeout`; returns
    /// it as it then is.
    pub fn wait_beyond(&self, seq: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut c = lock(&self.committed);
        while *c <= seq {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            c = self.moved.wait_timeout(c, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        *c
    }

    fn advance(&self, to: u64) {
        let mut c = lock(&self.committed);
        if to > *c {
            *c = to;
            self.moved.notify_all();
        }
    }
}

/// What a commit waits for after its round, when a node ships its redo
/// synchronously ([`crate::NodeOptions::commit_gate`]): the `replication`
/// crate's primary answers once enough standbys hold the transaction
/// durably. An error leaves the transaction committed here, and
/// [`crate::Transaction::commit`] reports [`Error::NotReplicated`].
pub trait CommitGate: Send + Sync {
    /// Returns once the transaction numbered `seq` is replicated as the
    /// gate requires, or why it is not.
    fn replicated(&self, seq: u64) -> std::result::Result<(), String>;
}

/// A round's redo, encoded and numbered, not yet written.
pub(crate) struct PendingRound {
    pub(crate) bytes: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) first_seq: u64,
    last_seq: u64,
}

struct Tail {
    /// Where the next record goes.
    end: u64,
    /// The last sequence number and round written.
    seq: u64,
    round: u64,
}

/// See the module docs.
pub(crate) struct RedoWriter {
    file: IoFile,
    tail: Mutex<Tail>,
    watermark: Arc<Watermark>,
    node: u32,
    log: u32,
    page_size: u32,
}

impl RedoWriter {
    /// Opens (or creates) node `node`'s redo file, after the node's own
    /// restart: keeps of its last round the transactions whose pages all
    /// carry their stamp in `files`, cuts off the rest and any torn tail.
    pub(crate) fn open(io: &Io, cluster_dir: &Path, node: u32, log: u32, files: &DataFiles) -> Result<RedoWriter> {
        let path = redo_path(cluster_dir, node);
        let dir = path.parent().expect("the redo file is in a directory");
        let created = !dir.exists();
        if created {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(dir)
                .map_err(|e| wal::io::IoError::new(wal::io::OpKind::Open, dir, None, e))?;
        }
        let file = IoFile::open(&path, true, true)?;
        if created {
            io.sync_dir(dir)?;
            io.sync_dir(dir.parent().expect("redo/ has a parent"))?;
        }
        let mut reader = RedoReader::open(io.clone(), &path, 0)?;
        // The last round's records, and where that round starts.
        let mut last: Vec<RedoRecord> = Vec::new();
        let mut last_start = 0;
        let mut seq = 0;
        loop {
            let start = reader.offset();
            let Some((rec, _)) = reader.next_raw()? else {
                break;
            };
            if rec.seq != seq + 1 || rec.node != node {
                return Err(Error::CorruptFile {
                    file: path,
                    detail: format!(
                        "record at byte {} is number {} of node {}, expected number {} of node {node}",
                        reader.offset(),
                        rec.seq,
                        rec.node,
                        seq + 1
                    ),
                });
            }
            seq = rec.seq;
            if last.last().is_none_or(|l| l.round != rec.round) {
                last.clear();
                last_start = start;
            }
            last.push(rec);
        }
        let mut end = reader.offset();
        let round = last.last().map_or(0, |r| r.round);
        let mut kept = Vec::with_capacity(last.len());
        for rec in &last {
            if committed(io, files, rec)? {
                kept.push(rec.clone());
            }
        }
        if kept.len() < last.len() {
            tracing::warn!(
                node,
                dropped = last.len() - kept.len(),
                "the redo of transactions of the last commit round that did not commit is cut off"
            );
            let mut bytes = Vec::new();
            let first = last[0].seq;
            for (i, mut rec) in kept.into_iter().enumerate() {
                rec.seq = first + i as u64;
                seq = rec.seq;
                rec.encode_into(&mut bytes);
            }
            if bytes.is_empty() {
                seq = first - 1;
            } else {
                io.write_all_at(&file, &bytes, last_start)?;
            }
            end = last_start + bytes.len() as u64;
        }
        if file.len()? != end {
            file.std()
                .set_len(end)
                .map_err(|e| wal::io::IoError::new(wal::io::OpKind::Write, &path, None, e))?;
        }
        io.sync(&file)?;
        let watermark = Arc::new(Watermark::default());
        watermark.advance(seq);
        Ok(RedoWriter {
            file,
            tail: Mutex::new(Tail { end, seq, round }),
            watermark,
            node,
            log,
            page_size: files.page_size() as u32,
        })
    }

    /// The watermark of what is committed.
    pub(crate) fn watermark(&self) -> &Arc<Watermark> {
        &self.watermark
    }

    /// Numbers and encodes a round: one record per commit, in `commits`'
    /// order. Rounds run one at a time, so the tail cannot move meanwhile.
    pub(crate) fn round<'a>(&self, commits: impl Iterator<Item = (Lsn, &'a [Forced])>) -> PendingRound {
        let tail = lock(&self.tail);
        let mut bytes = Vec::new();
        let mut seq = tail.seq;
        for (intent, pages) in commits {
            seq += 1;
            let stamp = pages.first().map_or(
                Stamp {
                    node: self.node,
                    log: self.log,
                    lsn: intent.0,
                },
                |f| f.page.stamp(),
            );
            RedoRecord {
                seq,
                round: tail.round + 1,
                node: stamp.node,
                log: stamp.log,
                intent_lsn: stamp.lsn,
                page_size: self.page_size,
                pages: pages
                    .iter()
                    .map(|f| (f.file.file_id, f.page.page_no(), f.page.bytes().to_vec()))
                    .collect(),
            }
            .encode_into(&mut bytes);
        }
        PendingRound {
            bytes,
            offset: tail.end,
            first_seq: tail.seq + 1,
            last_seq: seq,
        }
    }

    /// The write of a round's redo.
    pub(crate) fn write_op<'a>(&'a self, pending: &'a PendingRound) -> WriteOp<'a> {
        WriteOp {
            file: &self.file,
            offset: pending.offset,
            data: &pending.bytes,
        }
    }

    /// The redo file, synced with the round's redo.
    pub(crate) fn file(&self) -> &IoFile {
        &self.file
    }

    /// The round ended (its pages durable): its transactions are committed.
    pub(crate) fn ended(&self, pending: &PendingRound) {
        let mut tail = lock(&self.tail);
        tail.end = pending.offset + pending.bytes.len() as u64;
        tail.seq = pending.last_seq;
        tail.round += 1;
        drop(tail);
        self.watermark.advance(pending.last_seq);
    }
}

/// Whether every page of `rec` carries its stamp in `files`: a page that is
/// torn, never written, or stamped otherwise says the transaction did not
/// commit; an I/O error is an error.
fn committed(io: &Io, files: &DataFiles, rec: &RedoRecord) -> Result<bool> {
    let want = Stamp {
        node: rec.node,
        log: rec.log,
        lsn: rec.intent_lsn,
    };
    for (file_id, page_no, _) in &rec.pages {
        let file = match files.get(*file_id, false) {
            Ok(f) => f,
            Err(Error::Io(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        match file.read_page(io, *page_no) {
            Ok(page) if page.stamp() == want => {}
            Ok(_) | Err(Error::CorruptPage { .. } | Error::MissingPage { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
