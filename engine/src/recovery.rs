//! The backout routine: a function of "a log + the data files".
//!
//! A node's own restart after a crash and a peer recovering a failed node
//! run exactly this code on a log; only who holds the locks differs (the
//! restarting node took its retained locks back; a counterpart is protected
//! by the failed node's retained locks).
//!
//! 1. The in-flight search ([`InFlightScan`], fed by the scan that opening
//!    the log makes, or by [`find_in_flight`]) keeps what lies from the last
//!    checkpoint (and from the first record of any transaction active at
//!    that checkpoint) and finds
//!    the transactions with records but neither a commit nor an end record.
//!    For each page they changed it keeps the **oldest** before-image: the
//!    page as it was before any of them touched it. (Several in-flight
//!    transactions of one log can only have changed one page one after the
//!    other — each held the page's X lock to the end — so the oldest image
//!    is the last committed state.)
//!    A transaction whose last record is a `CommitIntent` was between its
//!    two commit flushes ([`crate::txn`]). Its pages decide: if every page
//!    the intent lists carries the intent's (node, LSN) stamp on disk with a
//!    good checksum, the transaction is committed, its pages are kept and
//!    synced; otherwise its before-images go back like any other's. Its
//!    pages are its own (it held their X locks until its `Commit` record was
//!    durable), so no other in-flight transaction's image is at stake.
//! 2. [`back_out`] decides the intents, then writes those images — each page
//!    once — through a deep queue and syncs the data files. The search keeps
//!    only where each image lies; the write-back reads them again in log
//!    order, a bounded chunk at a time. Holding every image from the search
//!    would cost a page fault per 4 KiB of fresh memory, several times what
//!    reading them twice from the page cache costs, and memory in proportion
//!    to the failed node's work.
//! 3. It then appends an end record for every in-flight transaction and makes
//!    them durable, so the next recovery of this log finds nothing. The end
//!    records reach the disk only after the data files' sync: the last chunk
//!    of images, the sync and the log flush go to the kernel as one staged
//!    submission ([`wal::Log::append_durable_after`]), which for a small
//!    recovery is one round trip where three separate ones cost three.
//!
//! Only after step 3 may the locks protecting those pages go. Every step is
//! idempotent: a crash anywhere in between and another run give the same
//! pages, because a before-image written twice is the same page.
//!
//! Undo records of recovery agents other than the page agent are handed to
//! the agent registered for their id; an in-flight record of an agent nobody
//! registered stops recovery with [`Error::InvalidArgument`] naming it,
//! rather than silently leaving work undone.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wal::io::{Io, IoFile, Stage, WriteOp};
use wal::{AgentId, Log, LogReader, Lsn, PageRef, RecordBody, RecordMeta, TxnId, PAGE_AGENT};

use crate::datafile::{write_pages, DataFile, DataFiles};
use crate::error::{Error, Result};
use crate::page::Page;

/// Undoes the records of one custom recovery agent. Agents keep no state:
/// each record carries what the agent needs.
pub trait RecoveryAgent: Send + Sync {
    fn undo(&self, txn: TxnId, lsn: Lsn, payload: &[u8]) -> Result<()>;
}

/// The agents a recovery may call, by id.
pub type Agents = HashMap<AgentId, Arc<dyn RecoveryAgent>>;

/// An in-flight transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightTxn {
    pub txn: TxnId,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
}

/// A transaction caught between its commit intent and its commit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub txn: TxnId,
    /// Where the intent lies: the stamp its pages carry once written.
    pub lsn: Lsn,
    pub pages: Vec<PageRef>,
    /// (file id, page) → the LSN of its oldest before-image, written back
    /// if the transaction turns out not committed.
    images: HashMap<(u32, u64), Lsn>,
    /// Its custom agents' undo records, run only if it is backed out.
    agents: Vec<(AgentId, Lsn, Vec<u8>)>,
}

/// What [`find_in_flight`] found.
#[derive(Debug, Default)]
pub struct InFlight {
    pub txns: Vec<InFlightTxn>,
    /// In-flight transactions that had logged their commit intent; decided
    /// by [`back_out`], which moves the images of those not committed
    /// into `pages`.
    pub intents: Vec<Intent>,
    /// (file id, page) → the LSN of its oldest before-image.
    pub pages: BTreeMap<(u32, u64), Lsn>,
    /// Custom agents' undo records of in-flight transactions, newest first.
    pub agent_records: Vec<(AgentId, TxnId, Lsn, Vec<u8>)>,
    /// How many records the search read.
    pub records: u64,
}

impl InFlight {
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }
}

#[derive(Default)]
struct TxnScan {
    first: Option<Lsn>,
    last: Lsn,
    pages: HashMap<(u32, u64), Lsn>,
    agents: Vec<(AgentId, Lsn, Vec<u8>)>,
    intent: Option<(Lsn, Vec<PageRef>)>,
}

/// Scans `reader`'s log and returns its in-flight transactions and the
/// oldest before-image of every page they changed.
pub fn find_in_flight(reader: &LogReader) -> Result<InFlight> {
    let from = scan_start(reader)?;
    let mut scan = InFlightScan::new();
    for rec in reader.scan(from) {
        scan.visit(rec?);
    }
    Ok(scan.finish(from))
}

/// Where a scan for in-flight work starts: the last checkpoint, or the
/// first record of a transaction active at it if that is older.
pub fn scan_start(reader: &LogReader) -> Result<Lsn> {
    let Some(cp) = reader.checkpoint_lsn() else {
        return Ok(reader.start_lsn());
    };
    let rec = reader.read(cp)?;
    let RecordBody::Checkpoint(active) = rec.body else {
        return Err(Error::Log(wal::WalError::Corruption {
            lsn: cp,
            kind: wal::CorruptionKind::BadPayload("control file points at a record that is no checkpoint"),
        }));
    };
    Ok(active
        .iter()
        .map(|a| a.first_lsn)
        .chain([cp])
        .min()
        .unwrap_or(cp)
        .max(reader.start_lsn()))
}

/// The in-flight search, fed one record at a time in log order — by a scan
/// of its own ([`find_in_flight`]) or by the scan that opening a log makes
/// anyway ([`wal::Log::open_visiting`]), so a recovery reads the log once.
pub struct InFlightScan {
    txns: BTreeMap<TxnId, TxnScan>,
    records: u64,
}

impl Default for InFlightScan {
    fn default() -> Self {
        Self::new()
    }
}

impl InFlightScan {
    pub fn new() -> InFlightScan {
        InFlightScan {
            txns: BTreeMap::new(),
            records: 0,
        }
    }

    /// Takes the next record.
    pub fn visit(&mut self, rec: wal::Record) {
        self.records += 1;
        if rec.meta.txn == 0 {
            return;
        }
        if matches!(rec.body, RecordBody::Commit | RecordBody::End) {
            self.txns.remove(&rec.meta.txn);
            return;
        }
        let t = self.txns.entry(rec.meta.txn).or_default();
        t.first.get_or_insert(rec.lsn);
        t.last = rec.lsn;
        match rec.body {
            RecordBody::Undo(u) => {
                t.pages.entry((u.file_id, u.page_no)).or_insert(rec.lsn);
            }
            RecordBody::AgentUndo(payload) => t.agents.push((rec.meta.agent, rec.lsn, payload)),
            RecordBody::CommitIntent(pages) => t.intent = Some((rec.lsn, pages)),
            // The commit failed and said so: back it out like any other.
            RecordBody::Abort => t.intent = None,
            _ => {}
        }
    }

    /// What was found. A scan that began before `from` ([`scan_start`])
    /// keeps only transactions with records from there on: one that ends
    /// before it finished before the checkpoint (an active one is listed
    /// in it, and `from` is no later than its first record).
    pub fn finish(self, from: Lsn) -> InFlight {
        let mut out = InFlight {
            records: self.records,
            ..InFlight::default()
        };
        for (txn, t) in self.txns.into_iter().filter(|(_, t)| t.last >= from) {
            out.txns.push(InFlightTxn {
                txn,
                first_lsn: t.first.unwrap_or(t.last),
                last_lsn: t.last,
            });
            if let Some((lsn, pages)) = t.intent {
                out.intents.push(Intent {
                    txn,
                    lsn,
                    pages,
                    images: t.pages,
                    agents: t.agents,
                });
                continue;
            }
            for (key, lsn) in t.pages {
                match out.pages.get(&key) {
                    Some(older) if *older <= lsn => {}
                    _ => {
                        out.pages.insert(key, lsn);
                    }
                }
            }
            out.agent_records
                .extend(t.agents.into_iter().map(|(a, lsn, p)| (a, txn, lsn, p)));
        }
        out.agent_records.sort_by_key(|r| std::cmp::Reverse(r.2));
        out
    }
}

/// What [`back_out`] did, and when each part of it was done (from the
/// call). The images of the last chunk, the data files' sync and the end
/// records complete in one submission, so `synced` and `ended` coincide,
/// and so does `written` when every image fits that chunk.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteBack {
    pub pages: usize,
    /// In-flight transactions found committed by their pages (their intents).
    pub committed: usize,
    /// Until every image was written (not yet durable).
    pub written: Duration,
    /// Until the data files were durable.
    pub synced: Duration,
    /// Until the end records were durable.
    pub ended: Duration,
}

/// Pages read back and written per round of [`back_out`]: one io_uring
/// ring's depth, so the disk's queue stays full, and 1 MiB of images, which
/// stays in cache and is reused round after round. Measured with K = 1 000
/// (`benches/peer_recovery.rs`): 128 pages 40 ms, 256 pages 31 ms, 512 pages
/// 33 ms, 1 024 pages 41 ms, 4 096 pages 49 ms, against 25 ms for the raw
/// writes.
const WRITE_BACK_CHUNK: usize = 256;

/// Backs out what `found` holds, in the log `log` (read through `reader`):
/// decides the intents, writes every page's oldest before-image back, each
/// page once, runs the custom agents' undo (newest record first), syncs the
/// data files and then makes an end record durable for every in-flight
/// transaction. The images are read in log order, 256 at a time
/// (`WRITE_BACK_CHUNK`), each chunk one batch through the I/O layer's deep
/// queue; the last chunk goes with the sync and the end records (module
/// docs).
pub fn back_out(
    io: &Io,
    files: &DataFiles,
    log: &Log,
    reader: &LogReader,
    found: &mut InFlight,
    agents: &Agents,
) -> Result<WriteBack> {
    let started = Instant::now();
    for (agent, _, _, _) in &found.agent_records {
        if *agent != PAGE_AGENT && !agents.contains_key(agent) {
            return Err(Error::InvalidArgument(format!(
                "in-flight work of recovery agent {agent}, and no such agent is registered"
            )));
        }
    }
    // Intents first: a committed one keeps its pages (synced below with the
    // rest), one that is not gives its images to the write-back.
    let mut opened: HashMap<u32, Arc<DataFile>> = HashMap::new();
    let mut kept = 0;
    for intent in std::mem::take(&mut found.intents) {
        if committed(io, files, reader.node_id(), &intent, &mut opened)? {
            kept += 1;
            continue;
        }
        for (key, lsn) in intent.images {
            let slot = found.pages.entry(key).or_insert(lsn);
            *slot = (*slot).min(lsn);
        }
        found
            .agent_records
            .extend(intent.agents.into_iter().map(|(a, lsn, p)| (a, intent.txn, lsn, p)));
    }
    found.agent_records.sort_by_key(|r| std::cmp::Reverse(r.2));
    let wanted: BTreeMap<Lsn, (u32, u64)> = std::mem::take(&mut found.pages)
        .into_iter()
        .map(|(page, lsn)| (lsn, page))
        .collect();
    for &(file_id, _) in wanted.values() {
        if let std::collections::hash_map::Entry::Vacant(v) = opened.entry(file_id) {
            v.insert(files.get(file_id, false)?);
        }
    }
    let write = |chunk: &[(u32, Page)]| -> Result<()> {
        let batch: Vec<(&DataFile, &Page)> = chunk.iter().map(|(f, p)| (opened[f].as_ref(), p)).collect();
        write_pages(io, &batch)
    };
    let mut chunk: Vec<(u32, Page)> = Vec::with_capacity(WRITE_BACK_CHUNK.min(wanted.len()));
    let mut written = 0usize;
    if let Some((&first, _)) = wanted.first_key_value() {
        for rec in reader.scan(first) {
            let rec = rec?;
            let Some(&(file_id, page_no)) = wanted.get(&rec.lsn) else {
                continue;
            };
            let RecordBody::Undo(undo) = rec.body else {
                return Err(Error::Log(wal::WalError::Corruption {
                    lsn: rec.lsn,
                    kind: wal::CorruptionKind::BadPayload("a before-image's record changed kind between two reads"),
                }));
            };
            if undo.before.len() != files.page_size() {
                return Err(Error::InvalidArgument(format!(
                    "before-image of page {page_no} of file {file_id} is {} bytes, pages are {}",
                    undo.before.len(),
                    files.page_size()
                )));
            }
            let never_written = undo.before.iter().all(|&b| b == 0);
            let mut page = Page::from_image(undo.before);
            if !never_written {
                page.seal();
            }
            debug_assert!(
                never_written || page.page_no() == page_no,
                "a before-image names its own page"
            );
            // A full chunk goes now, unless it is the last: that one goes
            // with the sync and the end records.
            if chunk.len() == WRITE_BACK_CHUNK {
                write(&chunk)?;
                written += chunk.len();
                chunk.clear();
            }
            chunk.push((file_id, page));
            if written + chunk.len() == wanted.len() {
                break;
            }
        }
    }
    if written + chunk.len() != wanted.len() {
        return Err(Error::Log(wal::WalError::Corruption {
            lsn: *wanted
                .keys()
                .next_back()
                .expect("some image is missing, so some was wanted"),
            kind: wal::CorruptionKind::BadPayload("a before-image found by the search is gone from the log"),
        }));
    }
    for (agent, txn, lsn, payload) in &found.agent_records {
        if let Some(a) = agents.get(agent) {
            a.undo(*txn, *lsn, payload)?;
        }
    }
    let last: Vec<WriteOp<'_>> = chunk.iter().map(|(f, p)| opened[f].write_op(p)).collect();
    let handles: Vec<&IoFile> = opened.values().map(|f| f.io_file()).collect();
    let stage = [Stage {
        writes: &last,
        sync: &handles,
    }];
    let ends: Vec<(RecordMeta, RecordBody)> = found
        .txns
        .iter()
        .map(|t| (RecordMeta::txn(t.txn, Some(t.last_lsn)), RecordBody::End))
        .collect();
    let before_last = started.elapsed();
    if ends.is_empty() {
        io.write_stages(&stage).map_err(wal::io::IoError::from)?;
    } else {
        log.append_durable_after(&stage, &ends)?;
    }
    let ended = started.elapsed();
    Ok(WriteBack {
        pages: written + chunk.len(),
        committed: kept,
        written: if chunk.is_empty() { before_last } else { ended },
        synced: ended,
        ended,
    })
}

/// Whether every page `intent` lists carries its stamp on disk, checksum
/// intact. The pages are read from the device, not the page cache (which
/// after a failed fsync may hold what the disk does not); a write the
/// crashed process left dirty in the cache is written back by the kernel
/// before a direct read of its range, so it counts, as it will reach the
/// disk anyway. A page that fails its checksum was torn by the crash in the
/// middle of the commit's writes, which never finished: not committed (its
/// before-image repairs it). Each file read is added to `opened`, so that
/// the write-back's sync covers a committed page the crashed process left
/// in the page cache unsynced.
fn committed(
    io: &Io,
    files: &DataFiles,
    owner: u32,
    intent: &Intent,
    opened: &mut HashMap<u32, Arc<DataFile>>,
) -> Result<bool> {
    let mut devices: HashMap<u32, Option<wal::io::IoFile>> = HashMap::new();
    for p in &intent.pages {
        let file = match opened.entry(p.file_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(files.get(p.file_id, false)?),
        };
        let device = match devices.entry(p.file_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(file.open_on_device()?),
        };
        match file.read_page_from_device(io, device.as_ref(), p.page_no) {
            Ok(page) if page.stamp() == (owner, intent.lsn.0) => {}
            Ok(_) | Err(Error::CorruptPage { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
