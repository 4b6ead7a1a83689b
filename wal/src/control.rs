//! The control file: where the log starts (after truncation) and where its
//! last checkpoint is, so recovery need not search for either.
//!
//! ## Format (version 1, little-endian)
//! Two 512-byte slots at offsets 0 and 512; each write goes to the slot
//! `seq % 2` and is synced, so a torn write can only damage the slot being
//! written while the other still holds the previous state. A reader takes the
//! valid slot with the highest `seq`. Slot layout (64 bytes used, rest zero):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `UNDSTCTL` |
//! | 8  | 4 | format version (1) |
//! | 12 | 4 | node id |
//! | 16 | 8 | seq (write counter, starts at 1) |
//! | 24 | 8 | segment size |
//! | 32 | 8 | start LSN: nothing before it is part of the log |
//! | 40 | 8 | LSN of the last durable checkpoint record, `u64::MAX` if none |
//! | 48 | 4 | batch bound: no flush of this log was larger (0 = not recorded) |
//! | 52 | 4 | log identity: random, non-zero, fixed when the log is created (0 = not recorded) |
//! | 56 | 4 | reserved, zero |
//! | 60 | 4 | CRC32C of bytes 0..60 |
//!
//! The batch bound is raised (and made durable) before a larger flush is
//! written. It bounds how far past a log's end a reader must look for what
//! the last, unfinished flush may have left, or for a later flush's start
//! (see `crate::reader`): a few kilobytes for most logs, not a segment.
//!
//! The file is written last when a log is created, so a directory holding
//! segments but no control file is a creation that never finished.
//!
//! The log identity tells this log apart from another log of the same node
//! made later (after the first was deleted): LSNs start again from 0 in a
//! new log, so an LSN alone does not say which log it belongs to. The
//! engine stamps the pages a commit writes with it.

use std::path::{Path, PathBuf};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WalError};
use crate::io::{Io, IoFile};
use crate::record::Lsn;
use crate::segment::FORMAT_VERSION;

/// The first 8 bytes of each control slot.
pub const CONTROL_MAGIC: [u8; 8] = *b"UNDSTCTL";
const SLOT_SIZE: u64 = 512;
const NO_LSN: u64 = u64::MAX;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct Slot {
    magic: [u8; 8],
    version: U32,
    node_id: U32,
    seq: U64,
    segment_size: U64,
    start_lsn: U64,
    checkpoint_lsn: U64,
    max_batch: U32,
    log_id: U32,
    reserved: [u8; 4],
    crc: U32,
}

const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
const _: () = assert!(SLOT_BYTES == 64);

/// What the control file records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// The node whose log this is.
    pub node_id: u32,
    /// Write counter, from 1: write `seq` goes to slot `seq % 2`, and the
    /// valid slot with the highest `seq` is the current record.
    pub seq: u64,
    /// Bytes per segment file, header included.
    pub segment_size: u64,
    /// Nothing before this LSN is part of the log (it was truncated).
    pub start_lsn: Lsn,
    /// The last durable checkpoint record, where recovery starts reading.
    pub checkpoint_lsn: Option<Lsn>,
    /// The batch bound, in bytes: no flush of this log wrote more than
    /// this; 0 when not recorded (then only
    /// [`crate::record::MAX_BATCH_BYTES`] bounds it).
    pub max_batch: u32,
    /// The log's identity: random and non-zero, chosen when the log was
    /// created; 0 for a log created before identities were recorded.
    pub log_id: u32,
}

/// The control file of the log in `dir`.
pub fn control_path(dir: &Path) -> PathBuf {
    dir.join("control")
}

fn encode(c: &Control) -> [u8; SLOT_BYTES] {
    let mut s = Slot {
        magic: CONTROL_MAGIC,
        version: U32::new(FORMAT_VERSION),
        node_id: U32::new(c.node_id),
        seq: U64::new(c.seq),
        segment_size: U64::new(c.segment_size),
        start_lsn: U64::new(c.start_lsn.0),
        checkpoint_lsn: U64::new(c.checkpoint_lsn.map_or(NO_LSN, |l| l.0)),
        max_batch: U32::new(c.max_batch),
        log_id: U32::new(c.log_id),
        reserved: [0; 4],
        crc: U32::new(0),
    };
    s.crc = U32::new(crc32c::crc32c(&s.as_bytes()[..SLOT_BYTES - 4]));
    let mut out = [0u8; SLOT_BYTES];
    out.copy_from_slice(s.as_bytes());
    out
}

fn decode(buf: &[u8; SLOT_BYTES]) -> Option<Control> {
    let s = Slot::read_from_bytes(buf).ok()?;
    if s.magic != CONTROL_MAGIC
        || s.version.get() != FORMAT_VERSION
        || crc32c::crc32c(&buf[..SLOT_BYTES - 4]) != s.crc.get()
    {
        return None;
    }
    Some(Control {
        node_id: s.node_id.get(),
        seq: s.seq.get(),
        segment_size: s.segment_size.get(),
        start_lsn: Lsn(s.start_lsn.get()),
        checkpoint_lsn: match s.checkpoint_lsn.get() {
            NO_LSN => None,
            l => Some(Lsn(l)),
        },
        max_batch: s.max_batch.get(),
        log_id: s.log_id.get(),
    })
}

/// Reads the control file; `None` when there is none.
pub fn read(io: &Io, dir: &Path) -> Result<Option<Control>> {
    let path = control_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let file = IoFile::open(&path, false, false)?;
    let len = file.len()?;
    let mut best: Option<Control> = None;
    for slot in 0..2u64 {
        if len < slot * SLOT_SIZE + SLOT_BYTES as u64 {
            continue;
        }
        let mut buf = [0u8; SLOT_BYTES];
        io.read_exact_at(&file, &mut buf, slot * SLOT_SIZE)?;
        if let Some(c) = decode(&buf) {
            if best.is_none_or(|b| c.seq > b.seq) {
                best = Some(c);
            }
        }
    }
    best.map(Some).ok_or_else(|| WalError::BadControl {
        path,
        reason: "neither slot holds a valid record".into(),
    })
}

/// Creates the control file holding `c`: written and synced under a
/// temporary name, then renamed into place, so it never exists half-written.
pub fn create(io: &Io, dir: &Path, c: &Control) -> Result<()> {
    let tmp = dir.join("control.tmp");
    let file = IoFile::open(&tmp, true, true)?;
    io.write_durable(&file, &encode(c), (c.seq % 2) * SLOT_SIZE)?;
    std::fs::rename(&tmp, control_path(dir))
        .map_err(|e| crate::io::IoError::new(crate::io::OpKind::Write, &tmp, None, e))?;
    io.sync_dir(dir)?;
    Ok(())
}

/// Writes `c` (whose `seq` picks the slot) into the existing control file
/// and makes it durable.
pub fn write(io: &Io, dir: &Path, c: &Control) -> Result<()> {
    let file = IoFile::open(&control_path(dir), true, false)?;
    io.write_durable(&file, &encode(c), (c.seq % 2) * SLOT_SIZE)?;
    Ok(())
}
