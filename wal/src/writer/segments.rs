//! The writer's segment files: opening or creating the one a flush enters,
//! keeping spares ready ahead of the end, and recycling those a truncation
//! left behind.
//!
//! This file owns which segment files the writer holds. It must never
//! write records into them (`super::flush` does) nor decide where the log
//! starts (the control file, written by [`Log::truncate_before`]).
//!
//! [`Log::truncate_before`]: super::Log::truncate_before

use crate::error::Result;
use crate::io::{IoError, IoFile, OpKind};
use crate::segment;

use super::shared::Shared;

impl Shared {
    /// The file of segment `n`, created if it does not exist yet.
    pub(super) fn segment_file(&self, n: u64) -> Result<IoFile> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&n) {
            return Ok(f.clone());
        }
        // A spare prepared after a flush may come after the log was given up.
        self.check_held()?;
        let path = segment::segment_path(&self.dir, n);
        let file = if path.exists() {
            let f = IoFile::open(&path, true, false)?;
            segment::read_header(&self.io, &f, n)?;
            f
        } else {
            segment::create(&self.io, &self.dir, self.layout, self.node_id, n)?
        };
        files.insert(n, file.clone());
        Ok(file)
    }

    /// Makes sure the segment after `n` is ready, so switching to it costs
    /// nothing on the commit path.
    pub(super) fn ensure_spare(&self, n: u64) -> Result<()> {
        // A log opened to append a few records (a peer's end records) asks
        // for no spare: zero-filling one would dominate its work.
        if self.spare_segments == 0 {
            return Ok(());
        }
        self.segment_file(n + 1).map(|_| ())
    }

    /// Recycles (or deletes, past the spare limit) every segment below `keep`.
    pub(super) fn recycle_below(&self, keep: u64) -> Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        self.check_held()?;
        let on_disk = segment::list_segments(&self.dir, false)?;
        let write_seg = self.layout.segment_of(self.gc.next());
        let mut highest = on_disk.last().map_or(write_seg, |(n, _)| *n).max(write_seg);
        let below: Vec<(u64, std::path::PathBuf)> = on_disk.into_iter().filter(|(n, _)| *n < keep).collect();
        if below.is_empty() {
            // Nothing renamed or removed: no directory sync to wait on.
            return Ok(());
        }
        for (n, path) in below {
            files.remove(&n);
            let spares = highest - write_seg;
            if (spares as usize) < self.spare_segments {
                highest += 1;
                segment::recycle(&self.io, &self.dir, &path, self.layout, self.node_id, highest)?;
            } else {
                std::fs::remove_file(&path).map_err(|e| IoError::new(OpKind::Write, &path, None, e))?;
            }
        }
        self.io.sync_dir(&self.dir)?;
        Ok(())
    }
}
