//! Segment files: where the log stream's bytes live.
//!
//! The stream is cut into fixed-size segments. Segment `n` holds LSNs
//! `[n * capacity, (n + 1) * capacity)` where `capacity = segment_size -
//! SEGMENT_HEADER_SIZE`, so an LSN names its segment and offset by arithmetic.
//! A record never spans two segments: when the next record does not fit, a
//! `SegmentEnd` record fills the rest and the stream resumes at the next
//! segment's first LSN. The last [`HEADER_LEN`] bytes of every segment are
//! kept free so that a `SegmentEnd` always fits.
//!
//! File name: `seg-<n as 16 hex digits>.wal`. A segment only ever carries its
//! final name once its header is written and synced (it is built under a
//! `.tmp` name and renamed), so a named segment with a bad header is damage.
//!
//! ## Header format (version 1, little-endian), at file offset 0
//!
//! | offset | size | field        |
//! |-------:|-----:|--------------|
//! | 0      | 8    | magic `UNDSTWAL` |
//! | 8      | 4    | format version (1) |
//! | 12     | 4    | node id      |
//! | 16     | 8    | segment number |
//! | 24     | 8    | first LSN (`segment number * capacity`) |
//! | 32     | 8    | segment size in bytes, header included |
//! | 40     | 20   | reserved, zero |
//! | 60     | 4    | CRC32C of bytes 0..60 |
//!
//! Records start at file offset [`SEGMENT_HEADER_SIZE`] (4096, so the record
//! area is page aligned); the rest of the first page is zero.

use std::path::{Path, PathBuf};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Result, WalError};
use crate::io::{Io, IoError, IoFile, OpKind};
use crate::record::{Lsn, HEADER_LEN};

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"UNDSTWAL";
/// The on-disk format version segment headers and control slots carry.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the record area of a segment.
pub const SEGMENT_HEADER_SIZE: u64 = 4096;
/// Smallest segment size in bytes, header included (64 KiB).
pub const MIN_SEGMENT_SIZE: u64 = 64 * 1024;
/// Largest segment size in bytes, header included (1 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct SegmentHeader {
    magic: [u8; 8],
    version: U32,
    node_id: U32,
    segment_no: U64,
    first_lsn: U64,
    segment_size: U64,
    reserved: [u8; 20],
    crc: U32,
}

const HEADER_BYTES: usize = std::mem::size_of::<SegmentHeader>();
const _: () = assert!(HEADER_BYTES == 64);

/// The arithmetic between LSNs and segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes per segment file, header included: a multiple of 4096 from
    /// [`MIN_SEGMENT_SIZE`] to [`MAX_SEGMENT_SIZE`].
    pub segment_size: u64,
}

impl Layout {
    /// The layout of segments of `segment_size` bytes, or
    /// [`WalError::InvalidArgument`] when that size is not allowed.
    pub fn new(segment_size: u64) -> Result<Layout> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) || !segment_size.is_multiple_of(4096) {
            return Err(WalError::InvalidArgument(format!(
                "segment size {segment_size} must be a multiple of 4096 between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}"
            )));
        }
        Ok(Layout { segment_size })
    }

    /// LSNs one segment holds.
    pub fn capacity(&self) -> u64 {
        self.segment_size - SEGMENT_HEADER_SIZE
    }

    /// The number of the segment that holds `lsn`.
    pub fn segment_of(&self, lsn: Lsn) -> u64 {
        lsn.0 / self.capacity()
    }

    /// The first LSN of segment `segment`.
    pub fn segment_start(&self, segment: u64) -> Lsn {
        Lsn(segment * self.capacity())
    }

    /// First LSN past the segment.
    pub fn segment_end(&self, segment: u64) -> Lsn {
        Lsn((segment + 1) * self.capacity())
    }

    /// Records other than `SegmentEnd` must end at or before this LSN.
    pub fn record_limit(&self, segment: u64) -> Lsn {
        Lsn(self.segment_end(segment).0 - HEADER_LEN as u64)
    }

    /// Where `lsn` lives in its segment file.
    pub fn file_offset(&self, lsn: Lsn) -> u64 {
        SEGMENT_HEADER_SIZE + lsn.0 % self.capacity()
    }

    /// Largest record (padding included) a segment can take.
    pub fn max_record(&self) -> u64 {
        self.capacity() - HEADER_LEN as u64
    }
}

/// The file of segment `segment` of the log in `dir`.
pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("seg-{segment:016x}.wal"))
}

fn tmp_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("seg-{segment:016x}.wal.tmp"))
}

/// The segment number a file name stands for, if it is a segment's name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Segment files of `dir` by number; with `remove_tmp`, half-built `.tmp`
/// segments left by a crash are deleted.
pub fn list_segments(dir: &Path, remove_tmp: bool) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| IoError::new(OpKind::Open, dir, None, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoError::new(OpKind::Open, dir, None, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = parse_segment_name(name) {
            out.push((n, entry.path()));
        } else if remove_tmp && name.starts_with("seg-") && name.ends_with(".wal.tmp") {
            std::fs::remove_file(entry.path()).map_err(|e| IoError::new(OpKind::Write, &entry.path(), None, e))?;
        }
    }
    out.sort();
    Ok(out)
}

fn encode_header(layout: Layout, node_id: u32, segment: u64) -> [u8; HEADER_BYTES] {
    let mut h = SegmentHeader {
        magic: SEGMENT_MAGIC,
        version: U32::new(FORMAT_VERSION),
        node_id: U32::new(node_id),
        segment_no: U64::new(segment),
        first_lsn: U64::new(layout.segment_start(segment).0),
        segment_size: U64::new(layout.segment_size),
        reserved: [0; 20],
        crc: U32::new(0),
    };
    h.crc = U32::new(crc32c::crc32c(&h.as_bytes()[..HEADER_BYTES - 4]));
    let mut out = [0u8; HEADER_BYTES];
    out.copy_from_slice(h.as_bytes());
    out
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The node the segment was written by.
    pub node_id: u32,
    /// The segment's number (checked against its file name).
    pub segment: u64,
    /// The segment size the header records.
    pub layout: Layout,
}

/// Reads and checks a segment header. `expect` is the segment number its name
/// gives.
pub fn read_header(io: &Io, file: &IoFile, expect: u64) -> Result<SegmentInfo> {
    let bad = |reason: String| WalError::BadSegment {
        path: file.path().to_path_buf(),
        reason,
    };
    let len = file.len()?;
    if len < SEGMENT_HEADER_SIZE {
        return Err(bad(format!("file is {len} bytes, shorter than a segment header")));
    }
    let mut buf = [0u8; HEADER_BYTES];
    io.read_exact_at(file, &mut buf, 0)?;
    let h = SegmentHeader::read_from_bytes(&buf).expect("buffer is exactly one header");
    if h.magic != SEGMENT_MAGIC {
        return Err(bad("bad magic".into()));
    }
    let crc = crc32c::crc32c(&buf[..HEADER_BYTES - 4]);
    if crc != h.crc.get() {
        return Err(bad(format!(
            "header checksum mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc.get()
        )));
    }
    if h.version.get() != FORMAT_VERSION {
        return Err(bad(format!("format version {} is not supported", h.version.get())));
    }
    let layout = Layout::new(h.segment_size.get()).map_err(|e| bad(e.to_string()))?;
    if h.segment_no.get() != expect {
        return Err(bad(format!(
            "header says segment {}, name says {expect}",
            h.segment_no.get()
        )));
    }
    if h.first_lsn.get() != layout.segment_start(expect).0 {
        return Err(bad(format!(
            "first LSN {} does not match segment {expect}",
            h.first_lsn.get()
        )));
    }
    if len < layout.segment_size {
        return Err(bad(format!(
            "file is {len} bytes, segment size is {}",
            layout.segment_size
        )));
    }
    Ok(SegmentInfo {
        node_id: h.node_id.get(),
        segment: expect,
        layout,
    })
}

/// Builds segment `segment` under a temporary name — zero-filled so later
/// writes need no block allocation, header written, synced — then gives it
/// its name and syncs the directory.
pub fn create(io: &Io, dir: &Path, layout: Layout, node_id: u32, segment: u64) -> Result<IoFile> {
    let tmp = tmp_path(dir, segment);
    let file = IoFile::open(&tmp, true, true)?;
    io.zero_fill(&file, 0, layout.segment_size)?;
    io.write_durable(&file, &encode_header(layout, node_id, segment), 0)?;
    publish(io, dir, &tmp, segment)?;
    // Same open file, now known by its final name.
    Ok(IoFile::from_std(
        file.std()
            .try_clone()
            .map_err(|e| IoError::new(OpKind::Open, &tmp, None, e))?,
        &segment_path(dir, segment),
    ))
}

/// Reuses the file of an old segment as segment `segment`: renamed to a
/// temporary name, header rewritten and synced, renamed into place. Its old
/// records stay, but their LSNs belong to the old segment, so no reader takes
/// them for records of the new one.
pub fn recycle(io: &Io, dir: &Path, old: &Path, layout: Layout, node_id: u32, segment: u64) -> Result<()> {
    let tmp = tmp_path(dir, segment);
    std::fs::rename(old, &tmp).map_err(|e| IoError::new(OpKind::Write, old, None, e))?;
    let file = IoFile::open(&tmp, true, false)?;
    io.write_durable(&file, &encode_header(layout, node_id, segment), 0)?;
    publish(io, dir, &tmp, segment)
}

fn publish(io: &Io, dir: &Path, tmp: &Path, segment: u64) -> Result<()> {
    let path = segment_path(dir, segment);
    std::fs::rename(tmp, &path).map_err(|e| IoError::new(OpKind::Write, tmp, None, e))?;
    io.sync_dir(dir)?;
    Ok(())
}
