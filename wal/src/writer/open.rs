//! Opening a log: taking its directory, creating a brand-new log, finding
//! the end of an existing one (and erasing what an unfinished write left
//! past it), and starting the flusher.
//!
//! This file owns the path from a directory to a running writer. It must
//! never append: a log is only written once it is open and its tail clean.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::control::{self, Control};
use crate::error::{Result, WalError};
use crate::group_commit::GroupCommit;
use crate::io::{Io, IoError, IoFile, OpKind};
use crate::reader::{search_window, LogEnd, LogReader};
use crate::record::{Lsn, Record};
use crate::segment::{self, Layout};

use super::config::LogConfig;
use super::shared::Shared;

/// Takes the directory lock, or says who holds it.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    crate::lock_file::try_lock(&path)
        .map_err(|e| IoError::new(OpKind::Open, &path, None, e))?
        .ok_or_else(|| WalError::Locked { dir: dir.to_path_buf() })
}

/// The batch bound a new log starts with: flushes of a few transactions fit
/// without raising it, and a reader's search past the end stays this small.
const INITIAL_BATCH_BOUND: u32 = 64 * 1024;

/// Opens (creating if needed) the log in `dir`, handing every record from
/// the log's start to `visit` while finding its end, and starts the
/// flusher; see [`Log::open_visiting`](super::Log::open_visiting).
pub(super) fn open(dir: &Path, cfg: LogConfig, visit: &mut dyn FnMut(Record)) -> Result<(Arc<Shared>, JoinHandle<()>)> {
    Layout::new(cfg.segment_size)?;
    if cfg.max_pending_bytes < cfg.flush_threshold_bytes || cfg.flush_threshold_bytes == 0 {
        return Err(WalError::InvalidArgument(
            "flush threshold must be positive and at most max_pending_bytes".into(),
        ));
    }
    if cfg.max_pending_bytes > crate::record::MAX_BATCH_BYTES {
        return Err(WalError::InvalidArgument(format!(
            "max_pending_bytes may be at most {} (it bounds a reader's search past damage in logs without a recorded batch bound)",
            crate::record::MAX_BATCH_BYTES
        )));
    }
    if !cfg.create && !dir.exists() {
        return Err(WalError::NoLog { dir: dir.to_path_buf() });
    }
    // A log is its node's alone: a directory made for it is 0700.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(|e| IoError::new(OpKind::Open, dir, None, e))?;
    let lock = lock_dir(dir)?;
    let io = cfg.io.clone();
    // The right to write, before anything is created or read (the node id
    // is checked against the control file's below).
    crate::access::admit(&io, dir, cfg.node_id, cfg.access.as_ref())?;
    let ctl = match control::read(&io, dir)? {
        Some(c) => c,
        None if cfg.create => create_log(&io, dir, &cfg)?,
        None => return Err(WalError::NoLog { dir: dir.to_path_buf() }),
    };
    if ctl.node_id != cfg.node_id {
        return Err(WalError::WrongNode {
            expected: cfg.node_id,
            found: ctl.node_id,
        });
    }
    let layout = Layout::new(ctl.segment_size)?;
    let listing = segment::list_segments(dir, true)?;
    // Segments left below the start by a crash mid-truncation.
    let below_start = listing.iter().any(|&(n, _)| n < layout.segment_of(ctl.start_lsn));
    let reader = LogReader::from_parts(dir, io.clone(), &ctl, listing, true)?;
    let end: LogEnd = reader.find_end_visiting(visit)?;
    if let Some(torn) = &end.torn {
        tracing::warn!(dir = %dir.display(), lsn = %end.next, damage = %torn, "torn log tail cut off");
    }
    let mut files = reader.into_files();
    let end_seg = layout.segment_of(end.next);
    // Segments past the end are spares; a crash may have left one whose
    // header is unusable — rebuild those on demand instead.
    for (&n, file) in files.range(end_seg + 1..) {
        if segment::read_header(&io, file, n).is_err() {
            std::fs::remove_file(file.path()).map_err(|e| IoError::new(OpKind::Write, file.path(), None, e))?;
        }
    }
    files.retain(|&n, f| n <= end_seg || f.path().exists());
    let gc = GroupCommit::new(layout, end.next, cfg.max_pending_bytes, cfg.flush_threshold_bytes);
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        io,
        node_id: cfg.node_id,
        layout,
        spare_segments: cfg.spare_segments,
        gc,
        files: Mutex::new(files),
        spare_due: Mutex::new(None),
        batch_bound: AtomicU32::new(ctl.max_batch),
        control: Mutex::new(ctl),
        lock: Mutex::new(Some(lock)),
        opened_end: end.clone(),
    });
    let tail_file = shared.segment_file(end_seg)?;
    if end.torn.is_some() || end.leftovers {
        // Erase what the unfinished write left past the end, durably,
        // before anything is appended over it (see `LogEnd::leftovers`).
        // Leftovers lie within one flush of the end (see
        // `reader::search_window`).
        let from = layout.file_offset(end.next);
        let last = Lsn((layout.segment_end(end_seg).0).min(end.next.0 + search_window(ctl.max_batch)) - 1);
        let to = layout.file_offset(last) + 1;
        // Only up to the window's last non-zero byte: past it there is
        // nothing to erase, and a whole window of zeros written and
        // synced would dominate the open (a peer's recovery waits on it).
        if let Some(dirty_to) = last_nonzero(&shared.io, &tail_file, from, to)? {
            shared.io.zero_fill(&tail_file, from, dirty_to - from)?;
            shared.io.sync(&tail_file)?;
        }
    }
    // A crash between a truncation's control write and its recycling
    // leaves segments below the start; finish the job.
    if below_start {
        shared.recycle_below(layout.segment_of(ctl.start_lsn))?;
    }
    shared.ensure_spare(end_seg)?;
    let flusher = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("wal-flusher-{}", cfg.node_id))
            .spawn(move || shared.flusher())
            .map_err(|e| IoError::new(OpKind::Open, dir, None, e))?
    };
    Ok((shared, flusher))
}

/// The end (exclusive, rounded up to 4 KiB within `to`) of the last
/// non-zero byte of `file` in `from..to`, read backwards in chunks; `None`
/// if the range is all zeros.
fn last_nonzero(io: &Io, file: &IoFile, from: u64, to: u64) -> Result<Option<u64>> {
    const CHUNK: u64 = 1 << 20;
    let len = file.len()?;
    let to = to.min(len);
    let mut buf = vec![0u8; CHUNK as usize];
    let mut hi = to;
    while hi > from {
        let lo = hi.saturating_sub(CHUNK).max(from);
        let chunk = &mut buf[..(hi - lo) as usize];
        io.read_exact_at(file, chunk, lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            let end = lo + i as u64 + 1;
            return Ok(Some(end.next_multiple_of(4096).min(to)));
        }
        hi = lo;
    }
    Ok(None)
}

/// A fresh log identity: random, never 0 (which means "not recorded").
fn new_log_id() -> u32 {
    let mut seed = [0u8; 4];
    // The identity only has to differ from an earlier log's of the same
    // node; the time and the process id make a collision practically
    // impossible without a random-number dependency in this crate.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = crc32c::crc32c_append(crc32c::crc32c(&t.to_le_bytes()), &std::process::id().to_le_bytes());
    seed.copy_from_slice(&mixed.to_le_bytes());
    u32::from_le_bytes(seed).max(1)
}

/// Lays out a brand-new log: segment 0 and a spare, then the control file,
/// last, which marks creation complete.
fn create_log(io: &Io, dir: &Path, cfg: &LogConfig) -> Result<Control> {
    let layout = Layout::new(cfg.segment_size)?;
    let existing = segment::list_segments(dir, true)?;
    if let Some((n, path)) = existing.first() {
        // Creation only ever stops short before the control file is written,
        // when no record can exist yet. Refuse to wipe anything else.
        let file = IoFile::open(path, false, false)?;
        let info = segment::read_header(io, &file, *n);
        let has_record = info.is_ok() && LogReader::segment_has_first_record(io, &file, layout, *n)?;
        if *n != 0 || has_record || existing.len() > 2 {
            return Err(WalError::BadControl {
                path: control::control_path(dir),
                reason: "control file missing but the directory holds a log; restore the control file \
                         or move the segments away"
                    .into(),
            });
        }
        for (_, p) in &existing {
            std::fs::remove_file(p).map_err(|e| IoError::new(OpKind::Write, p, None, e))?;
        }
    }
    segment::create(io, dir, layout, cfg.node_id, 0)?;
    let ctl = Control {
        node_id: cfg.node_id,
        seq: 1,
        segment_size: cfg.segment_size,
        start_lsn: Lsn(0),
        checkpoint_lsn: None,
        max_batch: INITIAL_BATCH_BOUND,
        log_id: new_log_id(),
    };
    control::create(io, dir, &ctl)?;
    Ok(ctl)
}
