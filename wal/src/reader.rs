//! Reading a log: forward scans from any LSN, a transaction's chain walked
//! backward, and finding where the log ends.
//!
//! Where the records stop, the reader decides between two stories:
//! - a **torn or unwritten tail**: the bytes are zeros, stale, or a record
//!   that fails its checksum, and no record written *after them was durable*
//!   follows (see [`crate::record::FLAG_BATCH_START`]). The log ends there and
//!   [`LogEnd`] says where and what was cut;
//! - **corruption**: a record written after the damaged bytes were durable
//!   follows, so acknowledged data was damaged: [`WalError::Corruption`] with
//!   the LSN. A record length that cannot be right is corruption too.
//!
//! The reader never allocates more than one segment's worth for a read, and
//! no input makes it panic. Opening a reader takes no lock: a peer may read a
//! failed node's log for recovery ([`LogReader::owner_status`] tells whether
//! the owner still holds it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::control;
use crate::error::{CorruptionKind, Result, WalError};
use crate::io::{Io, IoError, IoFile, OpKind, ReadOp};
use crate::record::{self, Kind, Lsn, Probe, Record, HEADER_LEN};
use crate::segment::{self, Layout};

/// Bytes one read operation asks for while scanning, at most.
const SCAN_CHUNK: u64 = 256 * 1024;
/// Bytes a scan reads at a time, at most: `SCAN_AHEAD / SCAN_CHUNK` reads
/// of `SCAN_CHUNK` in flight at once, one batch. A log not in the page
/// cache (a failed node's, read from another host, or long written) comes
/// from the device at its bandwidth rather than at the latency of one read
/// after another: 160 MiB read 256 KiB at a time took 384 ms here.
const SCAN_AHEAD: u64 = 4 << 20;
/// A scan's first read: most scans of a recovery's small log end within it,
/// and a whole chunk of fresh buffer costs page faults and copying well
/// beyond the reading a short log needs. Each further read doubles, up to
/// `SCAN_AHEAD`.
const FIRST_SCAN_READ: u64 = 16 * 1024;

/// Where a log ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEnd {
    /// Where the next record goes.
    pub next: Lsn,
    /// What was cut off there, if the tail was a damaged record rather than
    /// unwritten space.
    pub torn: Option<CorruptionKind>,
    /// Records of an unfinished write still lie past the end in its segment
    /// (a crash may persist a write's pages in any order). They name their
    /// own positions, so a writer must erase them before appending, or new
    /// records that happen to end where one of them begins would make it
    /// reachable again.
    pub leftovers: bool,
}

/// Whether a log's owner still holds its directory lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerStatus {
    /// The owning process holds the lock: it is alive and may still write.
    Alive,
    /// Nobody holds the lock: the owner is gone (or never opened the log).
    Gone,
}

/// A read-only view of a log directory.
pub struct LogReader {
    io: Io,
    dir: PathBuf,
    layout: Layout,
    node_id: u32,
    start: Lsn,
    checkpoint: Option<Lsn>,
    /// The control file's batch bound (0 = not recorded).
    max_batch: u32,
    /// The log's identity (0 = not recorded).
    log_id: u32,
    files: BTreeMap<u64, IoFile>,
}

/// How far past a position where the records stop the next flush can
/// start, or the last flush's leftovers can lie: one flush. With the batch
/// bound recorded in the control file that is the bound; without it, the
/// largest flush any writer makes, plus one record (a lone record may be
/// larger than a writer's pending limit).
pub(crate) fn search_window(max_batch: u32) -> u64 {
    match max_batch {
        0 => record::MAX_BATCH_BYTES + (HEADER_LEN + record::MAX_PAYLOAD) as u64,
        b => u64::from(b),
    }
}

impl LogReader {
    /// Opens the log in `dir` for reading. Takes no lock.
    pub fn open(dir: &Path, io: Io) -> Result<LogReader> {
        let ctl = control::read(&io, dir)?.ok_or_else(|| WalError::BadControl {
            path: control::control_path(dir),
            reason: "missing: this is not a log directory, or its creation never finished".into(),
        })?;
        let listing = segment::list_segments(dir, false)?;
        Self::from_parts(dir, io, &ctl, listing, false)
    }

    /// A reader from a control record and a segment listing already read
    /// (a writer opening its log has both).
    pub(crate) fn from_parts(
        dir: &Path,
        io: Io,
        ctl: &control::Control,
        listing: Vec<(u64, PathBuf)>,
        writable: bool,
    ) -> Result<LogReader> {
        let layout = Layout::new(ctl.segment_size).map_err(|e| WalError::BadControl {
            path: control::control_path(dir),
            reason: e.to_string(),
        })?;
        let first = layout.segment_of(ctl.start_lsn);
        let mut files = BTreeMap::new();
        for (n, path) in listing {
            if n >= first {
                files.insert(n, IoFile::open(&path, writable, false)?);
            }
        }
        Ok(LogReader {
            io,
            dir: dir.to_path_buf(),
            layout,
            node_id: ctl.node_id,
            start: ctl.start_lsn,
            checkpoint: ctl.checkpoint_lsn,
            max_batch: ctl.max_batch,
            log_id: ctl.log_id,
            files,
        })
    }

    /// Whether the owner of the log in `dir` still holds its lock.
    pub fn owner_status(dir: &Path) -> Result<OwnerStatus> {
        let path = dir.join("LOCK");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OwnerStatus::Gone),
            Err(e) => return Err(IoError::new(OpKind::Open, &path, None, e).into()),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(OwnerStatus::Gone),
            Err(std::fs::TryLockError::WouldBlock) => Ok(OwnerStatus::Alive),
            Err(std::fs::TryLockError::Error(e)) => Err(IoError::new(OpKind::Open, &path, None, e).into()),
        }
    }

    /// The log directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node whose log this is, as its control file says.
    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// The log's segment layout (its segment size).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The log's identity, chosen when it was created (0: not recorded).
    pub fn log_id(&self) -> u32 {
        self.log_id
    }

    /// The first LSN of the log (everything before was truncated).
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The last checkpoint recorded in the control file.
    pub fn checkpoint_lsn(&self) -> Option<Lsn> {
        self.checkpoint
    }

    pub(crate) fn into_files(self) -> BTreeMap<u64, IoFile> {
        self.files
    }

    /// Records from `from` (the LSN of a record, or of the log's start) to
    /// the end. After the iterator is exhausted, [`Scan::end`] says where the
    /// log ended.
    pub fn scan(&self, from: Lsn) -> Scan<'_> {
        Scan {
            r: self,
            pos: from.max(self.start),
            buf: Vec::new(),
            buf_start: Lsn(0),
            ahead: FIRST_SCAN_READ,
            checked_seg: None,
            end: None,
            done: false,
        }
    }

    /// Scans the whole log and returns where it ends.
    pub fn find_end(&self) -> Result<LogEnd> {
        self.find_end_visiting(&mut |_| {})
    }

    /// [`Self::find_end`], handing every record to `visit` on the way: one
    /// pass for a caller that needs the records too.
    pub fn find_end_visiting(&self, visit: &mut dyn FnMut(Record)) -> Result<LogEnd> {
        let mut scan = self.scan(self.start);
        for rec in scan.by_ref() {
            visit(rec?);
        }
        Ok(scan.end.expect("an exhausted scan without error has an end"))
    }

    /// The record at `lsn`.
    pub fn read(&self, lsn: Lsn) -> Result<Record> {
        if lsn < self.start || !lsn.0.is_multiple_of(record::RECORD_ALIGN) {
            return Err(WalError::NoRecord(lsn));
        }
        let seg = self.layout.segment_of(lsn);
        let file = self.files.get(&seg).ok_or(WalError::NoRecord(lsn))?;
        self.check_segment(file, seg)?;
        let room = self.layout.segment_end(seg).0 - lsn.0;
        let (p, buf) = probe_at(&self.io, file, self.layout, lsn, room)?;
        match p {
            Probe::Valid { len } => {
                let (rec, kind) =
                    record::decode(&buf[..len as usize]).map_err(|kind| WalError::Corruption { lsn, kind })?;
                if kind == Kind::SegmentEnd {
                    return Err(WalError::NoRecord(lsn));
                }
                Ok(rec)
            }
            Probe::Unwritten => Err(WalError::NoRecord(lsn)),
            Probe::Damaged(kind) | Probe::BadLength(kind) => Err(WalError::Corruption { lsn, kind }),
            Probe::NeedMore { len } => Err(WalError::Corruption {
                lsn,
                kind: CorruptionKind::Truncated {
                    have: buf.len() as u64,
                    need: len as u64,
                },
            }),
        }
    }

    /// Walks a transaction backward from its record at `last` along the
    /// `prev_lsn` chain.
    pub fn chain(&self, last: Lsn) -> Chain<'_> {
        Chain {
            r: self,
            next: Some(last),
        }
    }

    fn check_segment(&self, file: &IoFile, seg: u64) -> Result<()> {
        let info = segment::read_header(&self.io, file, seg)?;
        if info.node_id != self.node_id || info.layout != self.layout {
            return Err(WalError::BadSegment {
                path: file.path().to_path_buf(),
                reason: format!(
                    "belongs to node {} with segment size {}, the log to node {} with {}",
                    info.node_id, info.layout.segment_size, self.node_id, self.layout.segment_size
                ),
            });
        }
        Ok(())
    }

    /// Whether segment `n` begins with a valid record.
    pub(crate) fn segment_has_first_record(io: &Io, file: &IoFile, layout: Layout, n: u64) -> Result<bool> {
        Ok(first_record_starts_batch(io, file, layout, n)?.is_some())
    }

    /// What lies after `pos`: the first valid record that starts a flush
    /// batch, if any (proof that the log went on after `pos` was durable),
    /// and whether any valid record follows in `pos`'s segment.
    fn records_after(&self, pos: Lsn) -> Result<After> {
        let mut after = After::default();
        let seg = self.layout.segment_of(pos);
        if let Some(file) = self.files.get(&seg) {
            // The next flush starts within one flush of any position of the
            // previous one: no need to look further.
            let window = search_window(self.max_batch);
            let end = Lsn(self.layout.segment_end(seg).0.min(pos.0.saturating_add(window)));
            let from = Lsn(pos.0 + record::RECORD_ALIGN);
            // Read in chunks through one buffer: the window is megabytes,
            // and a fresh buffer of that size costs more in page faults
            // than the reading itself.
            const CHUNK: u64 = SCAN_CHUNK;
            const BLOCK: usize = 4096;
            let mut buf = vec![0u8; CHUNK.min(end.0.saturating_sub(from.0)) as usize];
            let mut base = from;
            while base < end {
                let n = (end.0 - base.0).min(CHUNK) as usize;
                let chunk = &mut buf[..n];
                self.io.read_exact_at(file, chunk, self.layout.file_offset(base))?;
                let mut at = 0usize;
                while at < n && base.0 + (at + HEADER_LEN) as u64 <= end.0 {
                    // Unwritten space is most of the window: skip zeroed
                    // blocks whole (a header is never all zeros).
                    if at.is_multiple_of(BLOCK)
                        && n - at >= BLOCK
                        && chunk[at..at + BLOCK].iter().fold(0, |a, &b| a | b) == 0
                    {
                        at += BLOCK;
                        continue;
                    }
                    let lsn = Lsn(base.0 + at as u64);
                    // Cheap filter first: almost no slot names its own LSN.
                    let named = if at + 16 <= n {
                        u64::from_le_bytes(chunk[at + 8..at + 16].try_into().expect("8 bytes"))
                    } else {
                        let mut word = [0u8; 8];
                        self.io
                            .read_exact_at(file, &mut word, self.layout.file_offset(lsn) + 8)?;
                        u64::from_le_bytes(word)
                    };
                    if named == !lsn.0 {
                        if let (Probe::Valid { .. }, bytes) = probe_at(&self.io, file, self.layout, lsn, end.0 - lsn.0)?
                        {
                            after.any_in_segment = true;
                            if record::is_batch_start(&bytes) {
                                after.batch_start = Some(lsn);
                                return Ok(after);
                            }
                        }
                    }
                    at += record::RECORD_ALIGN as usize;
                }
                base = Lsn(base.0 + n as u64);
            }
        }
        for (&n, file) in self.files.range(seg + 1..) {
            if segment::read_header(&self.io, file, n).is_err() {
                continue;
            }
            if first_record_starts_batch(&self.io, file, self.layout, n)? == Some(true) {
                after.batch_start = Some(self.layout.segment_start(n));
                break;
            }
        }
        Ok(after)
    }
}

#[derive(Default)]
struct After {
    batch_start: Option<Lsn>,
    any_in_segment: bool,
}

/// `None` when segment `n` does not begin with a valid record; otherwise
/// whether that record starts a flush batch.
fn first_record_starts_batch(io: &Io, file: &IoFile, layout: Layout, n: u64) -> Result<Option<bool>> {
    let lsn = layout.segment_start(n);
    Ok(match probe_at(io, file, layout, lsn, layout.capacity())? {
        (Probe::Valid { .. }, bytes) => Some(record::is_batch_start(&bytes)),
        _ => None,
    })
}

/// Reads and probes the record at `lsn` of `file`, with `room` bytes before
/// the segment (or the searched window) ends: its header first, then the
/// whole record if the header names a length. Returns what the probe says
/// and the bytes read.
fn probe_at(io: &Io, file: &IoFile, layout: Layout, lsn: Lsn, room: u64) -> Result<(Probe, Vec<u8>)> {
    let offset = layout.file_offset(lsn);
    let mut buf = vec![0u8; HEADER_LEN.min(room as usize)];
    io.read_exact_at(file, &mut buf, offset)?;
    let mut p = record::probe(&buf, lsn, room);
    if let Probe::NeedMore { len } = p {
        buf.resize(len as usize, 0);
        io.read_exact_at(file, &mut buf, offset)?;
        p = record::probe(&buf, lsn, room);
    }
    Ok((p, buf))
}

/// A forward scan; see [`LogReader::scan`].
pub struct Scan<'r> {
    r: &'r LogReader,
    pos: Lsn,
    /// Bytes of the segment being read, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: Lsn,
    /// How much the next read asks for (see `FIRST_SCAN_READ`).
    ahead: u64,
    checked_seg: Option<u64>,
    end: Option<LogEnd>,
    done: bool,
}

impl Scan<'_> {
    /// Where the log ended, once the scan has returned `None`.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    /// The position the scan has reached.
    pub fn position(&self) -> Lsn {
        self.pos
    }

    /// Makes `buf` hold `[pos, pos + len)` of segment `seg`, reading ahead.
    fn fill(&mut self, file: &IoFile, seg: u64, pos: Lsn, len: u64) -> Result<()> {
        let have = pos >= self.buf_start && pos.0 + len <= self.buf_start.0 + self.buf.len() as u64;
        if have && self.r.layout.segment_of(self.buf_start) == seg {
            return Ok(());
        }
        let seg_end = self.r.layout.segment_end(seg).0;
        let want = len.max(self.ahead).min(seg_end - pos.0);
        self.ahead = (self.ahead * 2).min(SCAN_AHEAD);
        self.buf.resize(want as usize, 0);
        let at = self.r.layout.file_offset(pos);
        if want <= SCAN_CHUNK {
            self.r.io.read_exact_at(file, &mut self.buf, at)?;
        } else {
            let mut reads: Vec<ReadOp<'_>> = self
                .buf
                .chunks_mut(SCAN_CHUNK as usize)
                .enumerate()
                .map(|(i, buf)| ReadOp {
                    file,
                    offset: at + i as u64 * SCAN_CHUNK,
                    buf,
                })
                .collect();
            self.r.io.read_write_batch(&mut reads, &[])?;
        }
        self.buf_start = pos;
        Ok(())
    }

    fn window(&self, pos: Lsn) -> &[u8] {
        &self.buf[(pos.0 - self.buf_start.0) as usize..]
    }

    fn step(&mut self) -> Result<Option<Record>> {
        let layout = self.r.layout;
        loop {
            let pos = self.pos;
            let seg = layout.segment_of(pos);
            let Some(file) = self.r.files.get(&seg).cloned() else {
                // The segment holding the log's start always exists: a new
                // log is created with its first segment, and a truncation
                // keeps the one holding the records it keeps. Without it,
                // the log's segments were lost, not never written.
                if pos == layout.segment_start(seg) && pos != self.r.start {
                    // The stream stops exactly where a segment that was never
                    // created would begin.
                    self.end = Some(LogEnd {
                        next: pos,
                        torn: None,
                        leftovers: false,
                    });
                    return Ok(None);
                }
                return Err(WalError::Corruption {
                    lsn: pos,
                    kind: CorruptionKind::MissingSegment { segment: seg },
                });
            };
            if self.checked_seg != Some(seg) {
                self.r.check_segment(&file, seg)?;
                self.checked_seg = Some(seg);
            }
            if !pos.0.is_multiple_of(record::RECORD_ALIGN) {
                return Err(WalError::NoRecord(pos));
            }
            let room = layout.segment_end(seg).0 - pos.0;
            self.fill(&file, seg, pos, (HEADER_LEN as u64).min(room))?;
            let mut p = record::probe(self.window(pos), pos, room);
            if let Probe::NeedMore { len } = p {
                self.fill(&file, seg, pos, len as u64)?;
                p = record::probe(self.window(pos), pos, room);
            }
            match p {
                Probe::Valid { len } => {
                    let bytes = &self.window(pos)[..len as usize];
                    let (rec, kind) = record::decode(bytes).map_err(|kind| WalError::Corruption { lsn: pos, kind })?;
                    if kind == Kind::SegmentEnd {
                        let next = layout.segment_start(seg + 1);
                        if !self.r.files.contains_key(&(seg + 1)) {
                            return Err(WalError::Corruption {
                                lsn: next,
                                kind: CorruptionKind::MissingSegment { segment: seg + 1 },
                            });
                        }
                        self.pos = next;
                        continue;
                    }
                    self.pos = Lsn(pos.0 + record::align_up(len as u64));
                    return Ok(Some(rec));
                }
                Probe::BadLength(kind) => return Err(WalError::Corruption { lsn: pos, kind }),
                Probe::Unwritten => return self.finish(pos, None),
                Probe::Damaged(kind) => return self.finish(pos, Some(kind)),
                Probe::NeedMore { len } => {
                    let kind = CorruptionKind::Truncated {
                        have: self.window(pos).len() as u64,
                        need: len as u64,
                    };
                    return self.finish(pos, Some(kind));
                }
            }
        }
    }

    /// The records stop at `pos`: a torn tail, or a hole in durable data.
    fn finish(&mut self, pos: Lsn, damage: Option<CorruptionKind>) -> Result<Option<Record>> {
        let after = self.r.records_after(pos)?;
        if let Some(next_valid) = after.batch_start {
            return Err(WalError::Corruption {
                lsn: pos,
                kind: damage.unwrap_or(CorruptionKind::Hole { next_valid }),
            });
        }
        self.end = Some(LogEnd {
            next: pos,
            torn: damage,
            leftovers: after.any_in_segment,
        });
        Ok(None)
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(rec)) => Some(Ok(rec)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A backward walk along a transaction's chain; see [`LogReader::chain`].
pub struct Chain<'r> {
    r: &'r LogReader,
    next: Option<Lsn>,
}

impl Iterator for Chain<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let lsn = self.next.take()?;
        match self.r.read(lsn) {
            Ok(rec) => {
                match rec.meta.prev_lsn {
                    // A chain only points backward; anything else would loop.
                    Some(prev) if prev >= lsn => {
                        return Some(Err(WalError::Corruption {
                            lsn,
                            kind: CorruptionKind::BadPayload("prev_lsn does not point backward"),
                        }))
                    }
                    prev => self.next = prev,
                }
                Some(Ok(rec))
            }
            Err(e) => Some(Err(e)),
        }
    }
}
