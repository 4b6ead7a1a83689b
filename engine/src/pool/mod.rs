//! The buffer pool: each node's cache of table pages, in one page-aligned
//! anonymous mapping of a fixed number of frames (`frames`).
//!
//! ## Why a node caches pages itself
//! Table files are read and written with direct I/O (`crate::datafile`):
//! past the kernel's page cache, as nodes on different hosts sharing one
//! disk would. A node therefore keeps the pages it reads and writes in its
//! own pool, and the frames are the aligned memory direct reads land in.
//!
//! ## Coherence: the lock manager says which copy is current
//! A page is read only under a lock on it (S or X), and the lock manager
//! hands every grant the page's *value block*: the stamp of the commit that
//! last wrote the page (`crate::page::Stamp`: node, log identity, intent
//! LSN — unique to that write). The X holder that wrote the page publishes
//! its new stamp as it releases the lock (`crate::txn`). A cached copy is
//! current exactly when its own stamp equals the value block granted with
//! the lock ([`BufferPool::get`]); otherwise — another node wrote the page
//! since, or the value is unknown (never published, lost with a coordinator
//! restart, or dropped when a failed node's retained locks were released
//! after its recovery rewrote the pages) — the page is read from the device
//! again. No correctness depends on the kernel's page cache, nor on any
//! other node's memory.
//!
//! ## Eviction
//! CLOCK (second chance): a frame's reference bit is set at each hit and
//! cleared as the hand passes; the hand takes the first frame that is not
//! pinned and not referenced. A page read into the pool comes in without
//! its bit (on probation), so a scan through many pages once takes back
//! its own frames first, and pages read again — hot pages, and pages a
//! commit just wrote (installed with their bit) — keep their place as
//! long as they are read again within a turn of the hand
//! (`tests::a_hot_set_keeps_its_frames_through_a_long_scan`). A frame is
//! pinned while its bytes are copied out, loaded or installed, and never
//! chosen then.
//!
//! Counters (hits, misses, evictions, invalidations) tell how it does
//! ([`PoolStats`]).

mod frames;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use wal::io::Io;

use crate::aligned::AlignedPages;
use crate::datafile::DataFile;
use crate::error::Result;
use crate::page::{Page, Stamp};
use frames::Frames;

/// The fewest frames a pool has: each concurrent reader pins one frame at a
/// time, and a pool smaller than the threads reading would only bypass.
pub const MIN_POOL_PAGES: usize = 16;

/// A page's place: (file id, page number).
type Key = (u32, u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    /// Being read from the device (or installed); waiters wait.
    Loading,
    Ready,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: Option<Key>,
    /// The stamp of the copy the frame holds (see the module docs).
    stamp: u128,
    state: State,
    referenced: bool,
    pins: u32,
}

struct Meta {
    map: HashMap<Key, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

/// What the pool did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Frames in the pool.
    pub frames: u64,
    /// Reads served from a current cached copy.
    pub hits: u64,
    /// Reads that went to the device.
    pub misses: u64,
    /// Frames taken from one page for another.
    pub evictions: u64,
    /// Cached copies found stale (another write since) and read again.
    pub invalidations: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

/// See the module docs.
pub struct BufferPool {
    frames: Frames,
    meta: Mutex<Meta>,
    /// Signalled when a frame stops loading.
    loaded: Condvar,
    page_size: usize,
    counters: Counters,
    /// Test-only: take any cached copy as current, whatever the lock
    /// manager says (the negative test of coherence).
    trust_cached: bool,
}

/// Whether a copy stamped `stamp` is current, the lock manager having
/// granted `value`.
fn current(stamp: u128, value: Option<u128>) -> bool {
    value == Some(stamp)
}

impl BufferPool {
    /// A pool of `frames` page frames (at least [`MIN_POOL_PAGES`]) of
    /// `page_size` bytes. `trust_cached` is for the negative test of
    /// coherence only.
    pub fn new(frames: usize, page_size: usize, trust_cached: bool) -> Result<BufferPool> {
        let frames = frames.max(MIN_POOL_PAGES);
        let empty = Slot {
            key: None,
            stamp: 0,
            state: State::Empty,
            referenced: false,
            pins: 0,
        };
        Ok(BufferPool {
            frames: Frames::new(frames, page_size)?,
            meta: Mutex::new(Meta {
                map: HashMap::with_capacity(frames),
                slots: vec![empty; frames],
                hand: 0,
            }),
            loaded: Condvar::new(),
            page_size,
            counters: Counters::default(),
            trust_cached,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Meta> {
        crate::sync::lock(&self.meta)
    }

    /// Page `page_no` of `file`, checked, the lock manager having granted
    /// the lock on it with `value` (its value block): the cached copy when
    /// it is current, else read from the device (and cached).
    pub fn get(&self, io: &Io, file: &DataFile, page_no: u64, value: Option<u128>) -> Result<Page> {
        let key = (file.file_id, page_no);
        let mut m = self.lock();
        let frame = loop {
            match m.map.get(&key).copied() {
                Some(i) if m.slots[i].state == State::Loading => {
                    m = self.loaded.wait(m).unwrap_or_else(|e| e.into_inner());
                }
                Some(i) if self.trust_cached || current(m.slots[i].stamp, value) => {
                    let slot = &mut m.slots[i];
                    slot.referenced = true;
                    slot.pins += 1;
                    drop(m);
                    let page = self.frames.with(i, |b| Page::from_image(b.to_vec()));
                    self.unpin(i);
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(page);
                }
                Some(i) => {
                    // Stale: read again into the same frame.
                    self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
                    let slot = &mut m.slots[i];
                    slot.state = State::Loading;
                    slot.pins += 1;
                    break Some((i, true));
                }
                None => break self.claim(&mut m, key).map(|i| (i, false)),
            }
        };
        drop(m);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let Some((i, known)) = frame else {
            // Every frame pinned: read around the pool.
            let mut buf = AlignedPages::new(1, self.page_size)?;
            file.read_into(io, buf.page_mut(0), page_no)?;
            return Page::from_disk(buf.page(0).to_vec(), file.path(), file.file_id, page_no);
        };
        let read = self.frames.with(i, |b| {
            file.read_into(io, b, page_no)?;
            Page::from_disk(b.to_vec(), file.path(), file.file_id, page_no)
        });
        let mut m = self.lock();
        match &read {
            Ok(page) => {
                let stamp = page.stamp();
                if value.is_some_and(|v| v != stamp.as_u128()) {
                    // The device holds the truth under the lock; a value
                    // block that disagrees is a bug of the protocol, worth
                    // seeing, not a reason to refuse the page.
                    tracing::warn!(
                        file = file.file_id,
                        page_no,
                        ?stamp,
                        "a page's value block disagrees with the device"
                    );
                }
                let slot = &mut m.slots[i];
                slot.stamp = stamp.as_u128();
                slot.state = State::Ready;
                // A page new to the pool comes in on probation: only a
                // second read marks it, so a scan's pages are the first
                // taken back (see "Eviction"). One cached before, read
                // again because another node changed it, stays in use.
                slot.referenced = known;
                slot.pins -= 1;
            }
            Err(_) => Self::vacate(&mut m, i),
        }
        drop(m);
        self.loaded.notify_all();
        read
    }

    /// Makes `bytes` (sealed, just written to the device by a commit) the
    /// cached copy of page `page_no` of file `file_id`. A cache: when every
    /// frame is pinned the copy is simply not kept.
    pub fn install(&self, file_id: u32, page_no: u64, bytes: &[u8]) {
        let key = (file_id, page_no);
        let mut m = self.lock();
        let frame = match m.map.get(&key).copied() {
            // Its writer holds the page's X lock: nobody else loads it now.
            Some(i) if m.slots[i].state != State::Loading => {
                let slot = &mut m.slots[i];
                slot.state = State::Loading;
                slot.pins += 1;
                Some(i)
            }
            Some(_) => None,
            None => self.claim(&mut m, key),
        };
        let Some(i) = frame else { return };
        drop(m);
        self.frames.with(i, |b| b.copy_from_slice(bytes));
        let mut m = self.lock();
        let slot = &mut m.slots[i];
        slot.stamp = Stamp::of(bytes).as_u128();
        slot.state = State::Ready;
        slot.referenced = true;
        slot.pins -= 1;
        drop(m);
        self.loaded.notify_all();
    }

    /// Drops every cached page of file `file_id` (its table was dropped).
    pub fn forget_file(&self, file_id: u32) {
        let mut m = self.lock();
        let gone: Vec<usize> = m.map.iter().filter(|(k, _)| k.0 == file_id).map(|(_, &i)| i).collect();
        for i in gone {
            if m.slots[i].pins == 0 {
                Self::vacate(&mut m, i);
            }
        }
    }

    /// What the pool did so far.
    pub fn stats(&self) -> PoolStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolStats {
            frames: self.frames.count() as u64,
            hits: get(&self.counters.hits),
            misses: get(&self.counters.misses),
            evictions: get(&self.counters.evictions),
            invalidations: get(&self.counters.invalidations),
        }
    }

    /// A frame for `key`, pinned and loading: one found by the CLOCK hand
    /// (its old page evicted); `None` when every frame is pinned.
    fn claim(&self, m: &mut Meta, key: Key) -> Option<usize> {
        let n = m.slots.len();
        // Two turns of the hand: the first may only clear reference bits.
        let found = (0..2 * n).find_map(|_| {
            let i = m.hand;
            m.hand = (m.hand + 1) % n;
            let slot = &mut m.slots[i];
            if slot.pins > 0 || slot.state == State::Loading {
                None
            } else if slot.referenced {
                slot.referenced = false;
                None
            } else {
                Some(i)
            }
        })?;
        if let Some(old) = m.slots[found].key {
            m.map.remove(&old);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        m.slots[found] = Slot {
            key: Some(key),
            stamp: 0,
            state: State::Loading,
            referenced: false,
            pins: 1,
        };
        m.map.insert(key, found);
        Some(found)
    }

    /// Frame `i` holds nothing any more.
    fn vacate(m: &mut Meta, i: usize) {
        if let Some(key) = m.slots[i].key.take() {
            m.map.remove(&key);
        }
        m.slots[i] = Slot {
            key: None,
            stamp: 0,
            state: State::Empty,
            referenced: false,
            pins: 0,
        };
    }

    fn unpin(&self, i: usize) {
        self.lock().slots[i].pins -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datafile::DataFiles;
    use crate::page::Kind;

    fn written(files: &DataFiles, io: &Io, no: u64, stamp: Stamp, item: &[u8]) -> Vec<u8> {
        let f = files.get(7, true).unwrap();
        let mut p = Page::new(4096, Kind::Bucket, 7, no);
        assert!(p.insert(item, item));
        p.set_stamp(stamp);
        p.seal();
        let mut buf = AlignedPages::new(1, 4096).unwrap();
        buf.page_mut(0).copy_from_slice(p.bytes());
        crate::datafile::write_pages(io, &[(f.as_ref(), no, buf.page(0))]).unwrap();
        p.bytes().to_vec()
    }

    fn stamp(lsn: u64) -> Stamp {
        Stamp { node: 1, log: 9, lsn }
    }

    /// A copy is served while the lock manager's value says it is current,
    /// read again when the value moved (another node wrote the page) or is
    /// unknown, and never served stale.
    #[test]
    fn copies_are_served_only_while_current() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::new(Default::default()).unwrap();
        let files = DataFiles::new(dir.path().to_path_buf(), 4096, None);
        let pool = BufferPool::new(16, 4096, false).unwrap();
        written(&files, &io, 1, stamp(100), b"one");
        let f = files.get(7, false).unwrap();
        let v1 = Some(stamp(100).as_u128());
        assert!(pool.get(&io, &f, 1, v1).unwrap().find(b"one").is_some());
        assert!(pool.get(&io, &f, 1, v1).unwrap().find(b"one").is_some());
        assert_eq!((pool.stats().misses, pool.stats().hits), (1, 1));

        // Another writer (another node's process, through its own handle).
        let theirs = DataFiles::new(dir.path().to_path_buf(), 4096, None);
        written(&theirs, &io, 1, stamp(200), b"two");
        let v2 = Some(stamp(200).as_u128());
        let p = pool.get(&io, &f, 1, v2).unwrap();
        assert!(p.find(b"two").is_some(), "the new value block makes the old copy stale");
        assert_eq!(pool.stats().invalidations, 1);
        // An unknown value block never trusts a copy.
        assert!(pool.get(&io, &f, 1, None).unwrap().find(b"two").is_some());
        assert_eq!(pool.stats().misses, 3);

        // The negative switch serves the stale copy: what the coherence test
        // in `engine/tests` must catch.
        let trusting = BufferPool::new(16, 4096, true).unwrap();
        written(&files, &io, 2, stamp(300), b"old");
        assert!(trusting.get(&io, &f, 2, None).unwrap().find(b"old").is_some());
        written(&theirs, &io, 2, stamp(400), b"new");
        assert!(trusting
            .get(&io, &f, 2, Some(stamp(400).as_u128()))
            .unwrap()
            .find(b"old")
            .is_some());
    }

    /// CLOCK: pages read again keep their frames while a scan passes once
    /// through many more pages than the pool holds; installs replace copies.
    #[test]
    fn eviction_gives_a_second_chance_and_installs_replace() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::new(Default::default()).unwrap();
        let files = DataFiles::new(dir.path().to_path_buf(), 4096, None);
        let pool = BufferPool::new(16, 4096, false).unwrap();
        for no in 0..64 {
            written(&files, &io, no, stamp(no + 1), format!("p{no}").as_bytes());
        }
        let f = files.get(7, false).unwrap();
        let value = |no: u64| Some(stamp(no + 1).as_u128());
        for no in 0..64 {
            pool.get(&io, &f, no, value(no)).unwrap();
        }
        let s = pool.stats();
        assert_eq!((s.misses, s.evictions), (64, 48));
        // The last 16 pages are cached and hit.
        for no in 48..64 {
            pool.get(&io, &f, no, value(no)).unwrap();
        }
        assert_eq!(pool.stats().hits, 16);

        let bytes = written(&files, &io, 50, stamp(1000), b"installed");
        pool.install(7, 50, &bytes);
        let p = pool.get(&io, &f, 50, Some(stamp(1000).as_u128())).unwrap();
        assert!(p.find(b"installed").is_some());
        assert_eq!(pool.stats().hits, 17);
        pool.forget_file(7);
        pool.get(&io, &f, 50, Some(stamp(1000).as_u128())).unwrap();
        assert_eq!(pool.stats().hits, 17, "forgotten pages are read again");
    }

    /// Scan resistance: a hot set of pages, read again now and then, keeps
    /// its frames while a scan passes once through eight times as many
    /// pages as the pool holds; the scan's pages displace one another.
    #[test]
    fn a_hot_set_keeps_its_frames_through_a_long_scan() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::new(Default::default()).unwrap();
        let files = DataFiles::new(dir.path().to_path_buf(), 4096, None);
        let pool = BufferPool::new(16, 4096, false).unwrap();
        for no in 0..132 {
            written(&files, &io, no, stamp(no + 1), format!("p{no}").as_bytes());
        }
        let f = files.get(7, false).unwrap();
        let value = |no: u64| Some(stamp(no + 1).as_u128());
        let hot = 0..4u64;
        for no in hot.clone().chain(hot.clone()) {
            pool.get(&io, &f, no, value(no)).unwrap();
        }
        let before = pool.stats();
        for no in 4..132 {
            pool.get(&io, &f, no, value(no)).unwrap();
            // Every hot page read once for every 8 pages of the scan.
            if no % 8 == 0 {
                for h in hot.clone() {
                    pool.get(&io, &f, h, value(h)).unwrap();
                }
            }
        }
        let after = pool.stats();
        assert_eq!(
            after.misses - before.misses,
            128,
            "only the scan's pages were read: {after:?}"
        );
        assert_eq!(after.hits - before.hits, 16 * 4, "every hot read hit: {after:?}");
    }
}
