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
//!    For each page they changed it keeps its before-images (byte ranges,
//!    `crate::undo`), read in the same pass. Written over the page newest
//!    first, they give
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
//! 2. [`back_out`] decides the intents (their pages read as one batch),
//!    then puts the pages back a chunk at a time: each chunk's pages are
//!    read as one batch, the ranges written over them in memory, the result
//!    checked (a good checksum, or a page nobody had written), and the
//!    pages that changed written as one batch through a deep queue —
//!    together with the reads of the next chunk, so the device works on
//!    both at once; then the data files written, and those of committed
//!    intents, are synced. Only a transaction that reached its commit
//!    intent can have written a page (`crate::txn` changes pages in memory
//!    until then), so the pages of all the others read back as their
//!    before-images already and cost a read, not a write. A torn
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wal::io::{Io, IoFile, Stage, WriteOp};
use wal::{Log, LogReader, RecordBody, RecordMeta};

use crate::agent::Agents;
use crate::aligned::AlignedPages;
use crate::catalog::Catalog;
use crate::datafile::{DataFile, DataFiles};
use crate::error::{Error, Result};
use crate::page::{Page, Stamp};
use witness::LogWitness;

/// What [`back_out`] did, and when each part of it was done (from the
/// call). The images of the last chunk, the data files' sync and the end
/// records complete in one submission, so `synced` and `ended` coincide,
/// and so does `written` when every image fits that chunk.
/// (file id, page) → the stamp the page holds, as a value block.
pub type PageVersions = Vec<((u32, u64), u128)>;

#[derive(Clone, Debug, Default)]
pub struct WriteBack {
    /// Pages the in-flight transactions changed, each put back as it was
    /// before them.
    pub pages: usize,
    /// Of those, the pages written: the others already held their
    /// before-images (see `put_back`).
    pub pages_written: usize,
    /// The stamp each page this recovery read holds once it is done — the
    /// pages it put back and those of committed intents — as the lock
    /// manager's value blocks keep them (`crate::pool`): a counterpart
    /// publishes them as the failed node's retained locks go. Pages put
    /// back to never written are left out (unknown, read again).
    pub versions: PageVersions,
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

/// Pages of intents read as one batch when their commits are decided:
/// deciding writes nothing, so one deep batch keeps the device's queue
/// full where batches of a chunk each drain it every time (K = 1 000 torn
/// commits, 4 000 pages: 32 ms in batches of 256, against 12 ms for the
/// raw reads in one batch).
const INTENT_BATCH: usize = 2048;

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
    let mut intents = std::mem::take(&mut found.intents);
    // Read in file and page order (see the write-back's order below).
    intents.sort_by_key(|i| i.pages.iter().map(|p| (p.file_id, p.page_no)).min());
    for &(file_id, _) in found.pages.keys() {
        if let std::collections::hash_map::Entry::Vacant(v) = opened.entry(file_id) {
            v.insert(catalog.open(io, files, file_id)?);
        }
    }
    // The pages of intents found not committed, as the check read them,
    // and a first chunk of the other pages, read in the same batch: a
    // small recovery reads everything in one round trip.
    let mut seen = Seen::default();
    let mut first: Vec<(u32, u64)> = found.pages.keys().copied().collect();
    first.sort_unstable();
    first.truncate(WRITE_BACK_CHUNK);
    let decided = committed(
        io,
        files,
        &mut catalog,
        (reader.node_id(), reader.log_id()),
        (&intents, &first),
        &mut opened,
        &mut seen,
    )?;
    // The files the sync must cover: those of a committed intent's pages
    // (the crash may have left their writes unsynced) and those written
    // back below.
    let mut to_sync: HashSet<u32> = HashSet::new();
    for (intent, kept_it) in intents.into_iter().zip(decided) {
        if intent.agents {
            found.agent_txns.push(AgentTxn {
                txn: intent.txn,
                last_lsn: intent.lsn,
                committed: kept_it,
            });
        }
        if kept_it {
            kept += 1;
            to_sync.extend(intent.pages.iter().map(|p| p.file_id));
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
    // In file and page order, as a commit round writes: neighbours go to
    // the device in order, where its queue can merge them.
    let mut keys: Vec<(u32, u64)> = pages.keys().copied().collect();
    keys.sort_unstable();
    let mut ranges = pages;
    for images in ranges.values_mut() {
        // Images merged from intents not committed come after the others.
        images.sort_by_key(|i| i.0);
    }
    // Chunk by chunk through two page-aligned buffers (direct I/O takes
    // nothing else): while one chunk's pages are written, the next one's
    // are read, in one submission. The last chunk goes with the sync and
    // the end records.
    let page_size = files.page_size();
    let chunk_len = WRITE_BACK_CHUNK.min(keys.len());
    let mut full = AlignedPages::new(chunk_len, page_size)?;
    let mut next = AlignedPages::new(chunk_len, page_size)?;
    let parts: Vec<&[(u32, u64)]> = keys.chunks(WRITE_BACK_CHUNK).collect();
    let mut written = 0usize;
    let pages_put_back = keys.len();
    let mut chunk: Vec<(u32, u64, usize)> = Vec::new();
    let mut versions = std::mem::take(&mut seen.committed);
    if let Some(first) = parts.first() {
        read_chunk(io, &opened, first, &mut full, &[], &mut seen)?;
        chunk = put_back(&opened, first, &mut ranges, witness, &mut full, &mut versions)?;
    }
    for part in parts.iter().skip(1) {
        let writes: Vec<WriteOp<'_>> = chunk
            .iter()
            .map(|&(f, no, i)| opened[&f].write_op(no, full.page(i)))
            .collect();
        read_chunk(io, &opened, part, &mut next, &writes, &mut seen)?;
        drop(writes);
        written += chunk.len();
        to_sync.extend(chunk.iter().map(|c| c.0));
        chunk = put_back(&opened, part, &mut ranges, witness, &mut next, &mut versions)?;
        std::mem::swap(&mut full, &mut next);
    }
    let agent_work = agents::finish(agents_here, reader.node_id(), &agent_work)?;
    to_sync.extend(chunk.iter().map(|c| c.0));
    let last: Vec<WriteOp<'_>> = chunk
        .iter()
        .map(|&(f, no, i)| opened[&f].write_op(no, full.page(i)))
        .collect();
    let handles: Vec<&IoFile> = opened
        .iter()
        .filter(|(id, _)| to_sync.contains(id))
        .map(|(_, f)| f.io_file())
        .collect();
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
        if !last.is_empty() || !handles.is_empty() {
            io.write_stages(&stage).map_err(wal::io::IoError::from)?;
        }
    } else {
        log.append_durable_after(&stage, &ends)?;
    }
    let ended = started.elapsed();
    Ok(WriteBack {
        pages: pages_put_back,
        pages_written: written + chunk.len(),
        versions,
        committed: kept,
        agent_work,
        written: if last.is_empty() { before_last } else { ended },
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

/// Per page (file id, page number), its before-images, oldest first.
type Ranges = BTreeMap<(u32, u64), Vec<scan::Image>>;

/// Page images read before the write-back (`committed`) — of intents found
/// not committed, and a first chunk of the other pages — kept for it so no
/// page is read twice: at most about `MAX_SEEN` pages (16 MiB of 4 KiB
/// pages) of intents, the rest read again.
#[derive(Default)]
struct Seen {
    images: HashMap<(u32, u64), Box<[u8]>>,
    /// The stamps of committed intents' pages, as read.
    committed: Vec<((u32, u64), u128)>,
}

const MAX_SEEN: usize = 4096;

/// Reads what each page of `keys` (file id, page) holds now, unchecked,
/// into the first `keys.len()` slots of `into` — zeros past a file's end —
/// while `writes` (of other pages) are written: one submission. A page
/// `seen` holds is taken from there instead.
fn read_chunk(
    io: &Io,
    opened: &HashMap<u32, Arc<DataFile>>,
    keys: &[(u32, u64)],
    into: &mut AlignedPages,
    writes: &[WriteOp<'_>],
    seen: &mut Seen,
) -> Result<()> {
    into.reserve(keys.len())?;
    let mut filled = vec![false; keys.len()];
    if !seen.images.is_empty() {
        for ((slot, key), done) in into.pages_mut(keys.len()).zip(keys).zip(&mut filled) {
            if let Some(image) = seen.images.remove(key) {
                slot.copy_from_slice(&image);
                *done = true;
            }
        }
    }
    let targets: Vec<(&DataFile, u64)> = keys.iter().map(|&(f, no)| (opened[&f].as_ref(), no)).collect();
    crate::datafile::read_raw_pages_writing(io, &targets, into, writes, &|i| filled[i])
}

/// Puts back the pages `keys` (file id, page), whose current images
/// [`read_chunk`] read into the first `keys.len()` slots of `buf`: writes
/// each page's before-images over it newest first (`crate::undo`), and
/// checks the result, which is the page as it was before the transactions:
/// a page with a good checksum, or a page nobody had written (put back as
/// zeros). Anything else means bytes the transactions never changed are
/// damaged, and is reported as corruption of that page rather than
/// written. Each image is first held against `witness`, before anything is
/// written over it.
///
/// Returns the pages that changed — (file id, page, slot in `buf`) — the
/// only ones to write — and adds each page's stamp, as put back, to
/// `versions` (but for a page put back to never written). A transaction changes pages in memory only until
/// its intent is durable (`crate::txn`), so the pages of one that never
/// reached its intent already hold their before-images on disk: reading
/// them (for the witness) is all they cost.
fn put_back(
    opened: &HashMap<u32, Arc<DataFile>>,
    keys: &[(u32, u64)],
    ranges: &mut Ranges,
    witness: Option<&LogWitness>,
    buf: &mut AlignedPages,
    versions: &mut PageVersions,
) -> Result<Vec<(u32, u64, usize)>> {
    let mut changed = Vec::new();
    let mut was = Vec::new();
    for (slot, (&(file_id, page_no), image)) in keys.iter().zip(buf.pages_mut(keys.len())).enumerate() {
        let file = &opened[&file_id];
        if let Some(w) = witness {
            w.check(file, page_no, image)?;
        }
        was.clear();
        was.extend_from_slice(image);
        for (_, offset, bytes) in ranges.remove(&(file_id, page_no)).unwrap_or_default().iter().rev() {
            crate::undo::apply(image, *offset, bytes).map_err(|detail| Error::CorruptPage {
                file: file.path().to_path_buf(),
                page: page_no,
                detail: format!("a before-image in the log does not fit the page: {detail}"),
            })?;
        }
        // A page nobody had written (the transactions took it fresh, past
        // the allocated pages or off a free list) goes back to never
        // written; any other must check as it is, and its bytes go back
        // exactly.
        if Page::is_unwritten_image(image, file_id, page_no) {
            image.fill(0);
        } else {
            versions.push(((file_id, page_no), Stamp::of(image).as_u128()));
            Page::check_image(image, file.path(), file_id, page_no).map_err(|e| match e {
                Error::CorruptPage { file, page, detail } => Error::CorruptPage {
                    file,
                    page,
                    detail: format!("after its before-images were written back: {detail}"),
                },
                other => other,
            })?;
        }
        if *image != was[..] {
            changed.push((file_id, page_no, slot));
        }
    }
    Ok(changed)
}

/// For each of `intents`, whether every page it lists carries its stamp on
/// disk, checksum intact. The pages of many of them are read as one batch,
/// from the device (data files are direct, `crate::datafile`; where a file
/// system refuses direct I/O its page cache is all there is). A page that
/// fails its checksum was torn by the crash in the middle of the commit's
/// writes, which never finished: not committed (its before-image repairs
/// it). Each file read is added to `opened`, so that the write-back's sync
/// covers a committed page whose write the crash left unsynced. The
/// pages `also` names (a first chunk of the write-back's) are read with the
/// first batch and kept in `seen`, as are the pages of intents found not
/// committed.
fn committed(
    io: &Io,
    files: &DataFiles,
    catalog: &mut Files,
    (owner, log_id): (u32, u32),
    (intents, also): (&[Intent], &[(u32, u64)]),
    opened: &mut HashMap<u32, Arc<DataFile>>,
    seen: &mut Seen,
) -> Result<Vec<bool>> {
    for p in intents.iter().flat_map(|i| &i.pages) {
        if let std::collections::hash_map::Entry::Vacant(v) = opened.entry(p.file_id) {
            v.insert(catalog.open(io, files, p.file_id)?);
        }
    }
    let mut decided = Vec::with_capacity(intents.len());
    let mut images = AlignedPages::new(1, files.page_size())?;
    // A group of intents at a time, read as one batch of at most about a
    // write-back chunk of pages (or one intent's, if larger); the first
    // with the pages `also` names.
    let mut rest = intents;
    let mut also = also;
    while !rest.is_empty() || !also.is_empty() {
        let mut n = 0;
        let mut pages = 0;
        while n < rest.len() && (n == 0 || pages + rest[n].pages.len() <= INTENT_BATCH) {
            pages += rest[n].pages.len();
            n += 1;
        }
        let (group, later) = rest.split_at(n);
        rest = later;
        let targets: Vec<(&DataFile, u64)> = group
            .iter()
            .flat_map(|i| &i.pages)
            .map(|p| (p.file_id, p.page_no))
            .chain(also.iter().copied())
            .map(|(f, no)| (opened[&f].as_ref(), no))
            .collect();
        crate::datafile::read_raw_pages(io, &targets, &mut images)?;
        for (i, &key) in also.iter().enumerate() {
            seen.images.insert(key, images.page(pages + i).into());
        }
        also = &[];
        let mut at = 0;
        for intent in group {
            let first = at;
            let mut all = true;
            for p in &intent.pages {
                let image = images.page(at);
                at += 1;
                let file = &opened[&p.file_id];
                let stamp = Stamp::of(image);
                all &= match Page::check_image(image, file.path(), p.file_id, p.page_no) {
                    Ok(()) => stamp.of_log(owner, log_id) && stamp.lsn == intent.lsn.0,
                    Err(Error::CorruptPage { .. }) => false,
                    Err(e) => return Err(e),
                };
            }
            if all {
                for (i, p) in intent.pages.iter().enumerate() {
                    let stamp = Stamp::of(images.page(first + i)).as_u128();
                    seen.committed.push(((p.file_id, p.page_no), stamp));
                }
            } else if seen.images.len() + intent.pages.len() <= MAX_SEEN {
                for (i, p) in intent.pages.iter().enumerate() {
                    seen.images
                        .insert((p.file_id, p.page_no), images.page(first + i).into());
                }
            }
            decided.push(all);
        }
    }
    Ok(decided)
}
