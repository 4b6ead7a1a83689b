//! The buffer pool's memory: `count` page frames in one anonymous,
//! page-aligned mapping, each frame reachable only under its own lock.
//!
//! Frames are disjoint slices of one mapping. Handing several threads
//! mutable access to different frames at once needs a raw pointer into the
//! mapping; that is the one `unsafe` of the pool, and its soundness rests
//! on one rule this file enforces: frame `i`'s bytes are touched only while
//! frame `i`'s mutex is held ([`Frames::with`]). This file knows nothing of
//! pages, files or eviction.

use std::sync::{Mutex, MutexGuard};

use memmap2::MmapMut;

use crate::error::{Error, Result};

/// See the module docs.
pub(super) struct Frames {
    /// Owns the memory `base` points into; never remapped or moved while
    /// the frames live (an `MmapMut` keeps its address when moved).
    map: MmapMut,
    base: *mut u8,
    page_size: usize,
    locks: Vec<Mutex<()>>,
}

// SAFETY: `base` points into `map`, which `Frames` owns for its whole life;
// every access to the bytes goes through `Frames::with`, which holds the
// frame's mutex for it, so no two threads touch one frame at once, and no
// frame overlaps another. Sending or sharing `Frames` between threads is
// then as sound as sharing the mutexes.
unsafe impl Send for Frames {}
// SAFETY: as for `Send` above.
unsafe impl Sync for Frames {}

impl Frames {
    /// `count` frames of `page_size` bytes.
    pub(super) fn new(count: usize, page_size: usize) -> Result<Frames> {
        let mut map = MmapMut::map_anon(count * page_size).map_err(|e| {
            Error::Io(wal::io::IoError::new(
                wal::io::OpKind::Open,
                "the buffer pool's memory".as_ref(),
                None,
                e,
            ))
        })?;
        let base = map.as_mut_ptr();
        Ok(Frames {
            map,
            base,
            page_size,
            locks: (0..count).map(|_| Mutex::new(())).collect(),
        })
    }

    pub(super) fn count(&self) -> usize {
        self.locks.len()
    }

    /// Runs `f` on frame `i`'s bytes (page-aligned, `page_size` long) with
    /// the frame locked.
    pub(super) fn with<R>(&self, i: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let _held: MutexGuard<'_, ()> = crate::sync::lock(&self.locks[i]);
        debug_assert!(
            self.map.len() >= (i + 1) * self.page_size,
            "frame {i} lies in the mapping"
        );
        // SAFETY: frame `i` is `page_size` bytes at `base + i * page_size`,
        // inside the mapping (`locks` has one entry per frame, checked
        // above), disjoint from every other frame; its mutex is held until
        // `f` returns, so no other reference to these bytes exists meanwhile
        // (see the module docs and the `Send`/`Sync` comment).
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.base.add(i * self.page_size), self.page_size) };
        f(bytes)
    }
}
