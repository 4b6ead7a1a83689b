//! A log damaged on purpose, on disk, for the tests of recovery in every
//! crate: the stream zeroed from a position on (what a crash right before
//! that byte reached the disk leaves), or one byte of it flipped (damage
//! after the fact). Positions are stream positions ([`Lsn`]s), mapped to
//! segment files by the log's [`Layout`]. Nothing here is used by a log
//! in service.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::lsn::Lsn;
use crate::segment::{segment_path, Layout, SEGMENT_HEADER_SIZE};

/// Zeroes every byte of the stream in `dir` from `at` on (any byte,
/// aligned or not), through the last segment file there is.
pub fn zero_from(dir: &Path, layout: Layout, at: Lsn) -> std::io::Result<()> {
    let first = layout.segment_of(at);
    // Bounded: the segments that exist after the first end at the first
    // one missing.
    for n in first.. {
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(segment_path(dir, n)) else {
            break;
        };
        let from = if n == first {
            layout.file_offset(at)
        } else {
            SEGMENT_HEADER_SIZE
        };
        let len = f.metadata()?.len();
        if len > from {
            f.write_all_at(&vec![0u8; (len - from) as usize], from)?;
        }
    }
    Ok(())
}

/// XORs the byte at stream position `at` in `dir` with `mask` (non-zero);
/// `false` when no segment file holds that position.
pub fn flip(dir: &Path, layout: Layout, at: Lsn, mask: u8) -> std::io::Result<bool> {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir, layout.segment_of(at)))
    else {
        return Ok(false);
    };
    let off = layout.file_offset(at);
    if off >= f.metadata()?.len() {
        return Ok(false);
    }
    let mut b = [0u8];
    f.read_exact_at(&mut b, off)?;
    f.write_all_at(&[b[0] ^ mask], off)?;
    Ok(true)
}
