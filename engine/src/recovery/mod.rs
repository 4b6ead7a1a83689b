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
//!    For each page they changed it keeps where its before-images lie (byte
//!    ranges, `crate::undo`). Written over the page newest first, they give
//!    the page as it was before any of them touched it. (Several in-flight
//!    transactions of one log can only have changed one page one after the
//!    other — each held the page's X lock to the end — so that is the last
//!    committed state.)
//!    A transaction whose last record is a `CommitIntent` was between its
//!    two commit flushes ([`crate::txn`]). Its pages decide: if every page
//!    the intent lists carries the intent's (node, LSN) stamp on disk with a
//!    good checksum, the transaction is committed, its pages are kept and
//!    synced; otherwise its before-images go back like any other's. Its
//!    pages are its own (it held their X locks until its `Commit` record was
//!    durable), so no other in-flight transaction's image is at stake.
//! 2. [`back_out`] decides the intents, then reads the before-images again
//!    in one pass over the log (the search keeps only where they lie, not
//!    the bytes of every committed transaction it passes), and puts the
//!    pages back a chunk at a time: each chunk's pages are read as one batch,
//!    the ranges written over them in memory, the result checked (a good
//!    checksum, or a page nobody had written), and the chunk written as one
//!    batch through a deep queue; then the data files are synced. A torn
//!    page comes back whole: bytes outside the ranges are the same in the
//!    old and the new page.
//! 3. It then appends an end record for every in-flight transaction and makes
//!    them durable, so the next recovery of this log finds nothing. The end
//!    records reach the disk only after the data files' sync: the last chunk
//!    of images, the sync and the log flush go to the kernel as one staged
//!    submission ([`wal::Log::append_durable_after`]), which for a small
//!    recovery is one round trip where three separate ones cost three.
//!
//! Only after step 3 may the locks protecting those pages go. Every step is
//! idempotent: a crash anywhere in between and another run give the same
//! pages, because the ranges written over the old page, the new one or any
//! mix of the two give the same page.
//!
//! The failed scope is the node: the agent records of every in-flight
//! transaction are read back from the log before anything is written, and
//! their agents are told to make the work final (the transaction committed
//! under its intent) or to undo it ([`agents`]). Work of a resource that
//! has no agent on this node stops recovery with [`Error::MissingAgent`]
//! naming it, before any write, rather than silently leaving work undone.

mod agents;
mod scan;
mod witness;

pub use scan::{find_in_flight, scan_start_accepting, AgentTxn, InFlight, InFlightScan, InFlightTxn, Intent};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wal::io::{Io, IoFile, Stage, WriteOp};
use wal::{Log, LogReader, Lsn, RecordBody, RecordMeta};

use crate::agent::Agents;
use crate::catalog::Catalog;
use crate::datafile::{write_pages, DataFile, DataFiles};
use crate::error::{Error, Result};
use crate::page::Page;
use witness::LogWitness;

/// What [`back_out`] did, and when each part of it was done (from the
/// call). The images of the last chunk, the data files' sync and the end
/// records complete in one submission, so `synced` and `ended` coincide,
/// and so does `written` when every image fits that chunk.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteBack {
    pub pages: usize,
    /// In-flight transactions found committed by their pages (their intents).
    pub committed: usize,
    /// Pieces of agent work made final or undone.
    pub agent_work: usize,
    /// Until every image was written (not yet durable).
    pub written: Duration,
    /// Until the data files were durable.
    pub synced: Duration,
    /// Until the end records were durable.
    pub ended: Duration,
}

/// Pages read and written per round of [`back_out`]: one io_uring ring's
/// depth, so the disk's queue stays full, and 1 MiB of pages, which stays in
/// cache. Measured with K = 1 000
/// (`benches/peer_recovery.rs`): 128 pages 40 ms, 256 pages 31 ms, 512 pages
/// 33 ms, 1 024 pages 41 ms, 4 096 pages 49 ms, against 25 ms for the raw
/// writes.
const WRITE_BACK_CHUNK: usize = 256;

/// Backs out what `found` holds, in the log `log` (read through `reader`):
/// decides the intents, puts every page the others changed back as it was
/// before them, each page once, has the agents make final or undo the work
/// of every in-flight transaction that logged agent records, syncs the data
/// files and then makes an end record durable for
/// every in-flight transaction. The pages go 256 at a time
/// (`WRITE_BACK_CHUNK`), each chunk read and written as one batch through
/// the I/O layer's deep queue; the last chunk goes with the sync and the end
/// records (module docs).
pub fn back_out(
    io: &Io,
    files: &DataFiles,
    log: &Log,
    reader: &LogReader,
    found: &mut InFlight,
    agents_here: &Agents,
    accept_log_damage: bool,
) -> Result<WriteBack> {
    let started = Instant::now();
    let witness = LogWitness::of(log, reader.node_id());
    // Intents first: a committed one keeps its pages (synced below with the
    // rest), one that is not gives its images to the write-back.
    let mut opened: HashMap<u32, Arc<DataFile>> = HashMap::new();
    let mut catalog = Files::default();
    let mut kept = 0;
    for intent in std::mem::take(&mut found.intents) {
        let kept_it = committed(
            io,
            files,
            &mut catalog,
            reader.node_id(),
            reader.log_id(),
            &intent,
            &mut opened,
        )?;
        if intent.agents {
            found.agent_txns.push(AgentTxn {
                txn: intent.txn,
                last_lsn: intent.lsn,
                committed: kept_it,
            });
        }
        if kept_it {
            kept += 1;
            continue;
        }
        for (key, lsns) in intent.images {
            found.pages.entry(key).or_default().extend(lsns);
        }
    }
    let mut pages = std::mem::take(&mut found.pages);
    for &(file_id, _) in pages.keys() {
        if let std::collections::hash_map::Entry::Vacant(v) = opened.entry(file_id) {
            v.insert(catalog.open(io, files, file_id)?);
        }
    }
    // Checked against the pages' stamps as they are read, unless the
    // operator accepted the log's damage: then the pages decide first.
    let witness = if accept_log_damage {
        found.pages = pages;
        kept += witness.accept(io, &opened, found)?;
        pages = std::mem::take(&mut found.pages);
        None
    } else {
        Some(&witness)
    };
    // Read back and checked before the first write.
    let agent_work = agents::gather(reader, agents_here, &found.agent_txns)?;
    let mut ranges = read_ranges(reader, &pages)?;
    let keys: Vec<(u32, u64)> = pages.into_keys().collect();
    // A full chunk goes as soon as the next one is ready; the last goes
    // with the sync and the end records.
    let mut chunk: Vec<(u32, Page)> = Vec::new();
    let mut written = 0usize;
    for part in keys.chunks(WRITE_BACK_CHUNK) {
        if !chunk.is_empty() {
            let batch: Vec<(&DataFile, &Page)> = chunk.iter().map(|(f, p)| (opened[f].as_ref(), p)).collect();
            write_pages(io, &batch)?;
            written += chunk.len();
        }
        chunk = put_back(io, &opened, part, &mut ranges, witness)?;
    }
    let agent_work = agents::finish(agents_here, reader.node_id(), &agent_work)?;
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
        agent_work,
        written: if chunk.is_empty() { before_last } else { ended },
        synced: ended,
        ended,
    })
}

/// The catalog, read the first time a recovery opens a table file: every
/// file it writes is held against its entry first
/// ([`crate::table::open_checked`]), so a file cut short or replaced stops
/// the recovery, naming it, instead of taking the before-images.
#[derive(Default)]
struct Files {
    catalog: Option<Catalog>,
}

impl Files {
    /// Table file `file_id`, checked.
    fn open(&mut self, io: &Io, files: &DataFiles, file_id: u32) -> Result<Arc<DataFile>> {
        let catalog = match &mut self.catalog {
            Some(c) => c,
            none => none.insert(Catalog::load(io, files.dir())?),
        };
        let info = catalog.find_file(file_id).ok_or_else(|| Error::TableFileMismatch {
            file: crate::datafile::table_path(files.dir(), file_id),
            detail: "the log names it, but the catalog lists no table with this file id".into(),
        })?;
        crate::table::open_checked(io, files, info)
    }
}

/// Per page (file id, page number), its before-images as (offset in the
/// page, bytes), oldest first.
type Ranges = HashMap<(u32, u64), Vec<(usize, Vec<u8>)>>;

/// The before-images `pages` lists, read again from the log in one pass
/// from the oldest.
fn read_ranges(reader: &LogReader, pages: &BTreeMap<(u32, u64), Vec<Lsn>>) -> Result<Ranges> {
    let wanted: BTreeMap<Lsn, (u32, u64)> = pages
        .iter()
        .flat_map(|(&key, lsns)| lsns.iter().map(move |&lsn| (lsn, key)))
        .collect();
    let mut out = Ranges::with_capacity(pages.len());
    let mut read = 0usize;
    if let Some((&first, _)) = wanted.first_key_value() {
        for rec in reader.scan(first) {
            let rec = rec?;
            let Some(&key) = wanted.get(&rec.lsn) else {
                continue;
            };
            let changed_kind = |what: &'static str| {
                Error::Log(wal::WalError::Corruption {
                    lsn: rec.lsn,
                    kind: wal::CorruptionKind::BadPayload(what),
                })
            };
            let RecordBody::Undo(undo) = rec.body else {
                return Err(changed_kind("a before-image's record changed kind between two reads"));
            };
            if (undo.file_id, undo.page_no) != key {
                return Err(changed_kind("a before-image's record changed page between two reads"));
            }
            out.entry(key)
                .or_default()
                .push((undo.offset_in_page as usize, undo.before));
            read += 1;
            if read == wanted.len() {
                break;
            }
        }
    }
    if read != wanted.len() {
        return Err(Error::Log(wal::WalError::Corruption {
            lsn: *wanted
                .keys()
                .next_back()
                .expect("some image is missing, so some was wanted"),
            kind: wal::CorruptionKind::BadPayload("a before-image found by the search is gone from the log"),
        }));
    }
    Ok(out)
}

/// Puts back the pages `keys` (file id, page): reads what each holds now
/// (one batch), writes its before-images over it newest first
/// (`crate::undo`), and checks the result, which is the page as it was
/// before the transactions: a page with a good checksum, or a page nobody
/// had written (written back as zeros). Anything else means bytes the
/// transactions never changed are damaged, and is reported as corruption
/// of that page rather than written.
fn put_back(
    io: &Io,
    opened: &HashMap<u32, Arc<DataFile>>,
    keys: &[(u32, u64)],
    ranges: &mut Ranges,
    witness: Option<&LogWitness>,
) -> Result<Vec<(u32, Page)>> {
    let targets: Vec<(&DataFile, u64)> = keys.iter().map(|&(f, no)| (opened[&f].as_ref(), no)).collect();
    let images = crate::datafile::read_raw_pages(io, &targets)?;
    let mut out = Vec::with_capacity(keys.len());
    for ((&(file_id, page_no), (file, _)), mut buf) in keys.iter().zip(&targets).zip(images) {
        if let Some(w) = witness {
            w.check(file, page_no, &buf)?;
        }
        for (offset, bytes) in ranges.remove(&(file_id, page_no)).unwrap_or_default().iter().rev() {
            crate::undo::apply(&mut buf, *offset, bytes).map_err(|detail| Error::CorruptPage {
                file: file.path().to_path_buf(),
                page: page_no,
                detail: format!("a before-image in the log does not fit the page: {detail}"),
            })?;
        }
        // A page nobody had written (the transactions allocated it) goes
        // back to never written; any other must check as it is, and its
        // bytes go back exactly.
        let page = if Page::is_unwritten_image(&buf, file_id, page_no) {
            Page::from_image(vec![0; buf.len()])
        } else {
            Page::from_disk(buf, file.path(), file_id, page_no).map_err(|e| match e {
                Error::CorruptPage { file, page, detail } => Error::CorruptPage {
                    file,
                    page,
                    detail: format!("after its before-images were written back: {detail}"),
                },
                other => other,
            })?
        };
        out.push((file_id, page));
    }
    Ok(out)
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
    catalog: &mut Files,
    owner: u32,
    log_id: u32,
    intent: &Intent,
    opened: &mut HashMap<u32, Arc<DataFile>>,
) -> Result<bool> {
    let mut devices: HashMap<u32, Option<wal::io::IoFile>> = HashMap::new();
    for p in &intent.pages {
        let file = match opened.entry(p.file_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(catalog.open(io, files, p.file_id)?),
        };
        let device = match devices.entry(p.file_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(file.open_on_device()?),
        };
        match file.read_page_from_device(io, device.as_ref(), p.page_no) {
            Ok(page) if page.stamp().of_log(owner, log_id) && page.stamp().lsn == intent.lsn.0 => {}
            Ok(_) | Err(Error::CorruptPage { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
