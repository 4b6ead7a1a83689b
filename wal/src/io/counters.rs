//! How the I/O layer moved the bytes: operations counted by the way they
//! ran — through io_uring, or as `pread`/`pwrite`/`fdatasync` system calls
//! on the calling thread ([`IoStats`]).
//!
//! Reports of which path wrote what (a node's I/O summary, the demo, a
//! recovery's timeline) come from these counters, never from which backend
//! was configured: the io_uring backend runs some writes as `pwrite`
//! (see `super::uring`), and a report that said "io_uring" for them would
//! be false. This file only counts; it must never decide a path.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// What this thread ran inside [`count_on_this_thread`], if it is in one.
    static THIS_THREAD: Cell<Option<IoStats>> = const { Cell::new(None) };
}

/// Runs `f` and returns, beside its result, the operations this thread
/// handed the I/O layer meanwhile, by path — whatever other threads ran
/// through the same backend (a node's commits during its peer recovery,
/// say). Every backend counts an operation on the thread that asked for it,
/// before it runs, by the same decision that routes it.
pub fn count_on_this_thread<R>(f: impl FnOnce() -> R) -> (R, IoStats) {
    let outer = THIS_THREAD.with(|c| c.replace(Some(IoStats::default())));
    let out = f();
    let mine = THIS_THREAD.with(|c| c.replace(outer)).unwrap_or_default();
    if let Some(mut outer) = outer {
        // Nested: what the inner scope counted counts for the outer too.
        outer.add(&mine);
        THIS_THREAD.with(|c| c.set(Some(outer)));
    }
    (out, mine)
}

/// Counters a backend keeps, one per path and operation.
#[derive(Debug, Default)]
pub struct IoCounters {
    ring_reads: AtomicU64,
    ring_writes: AtomicU64,
    ring_syncs: AtomicU64,
    call_reads: AtomicU64,
    call_writes: AtomicU64,
    call_syncs: AtomicU64,
}

/// Which way an operation ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPath {
    /// Submitted to io_uring.
    Ring,
    /// A `pread`, `pwrite` or `fdatasync` system call on the calling thread.
    Call,
}

impl fmt::Display for IoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoPath::Ring => "io_uring",
            IoPath::Call => "pwrite/fdatasync",
        })
    }
}

impl IoCounters {
    /// Counts `n` reads run by `path`.
    pub fn reads(&self, path: IoPath, n: usize) {
        self.pick(path, &self.ring_reads, &self.call_reads)
            .fetch_add(n as u64, Ordering::Relaxed);
        on_this_thread(|s| *pick_mut(path, &mut s.ring_reads, &mut s.call_reads) += n as u64);
    }

    /// Counts `n` writes run by `path`.
    pub fn writes(&self, path: IoPath, n: usize) {
        self.pick(path, &self.ring_writes, &self.call_writes)
            .fetch_add(n as u64, Ordering::Relaxed);
        on_this_thread(|s| *pick_mut(path, &mut s.ring_writes, &mut s.call_writes) += n as u64);
    }

    /// Counts `n` syncs run by `path`.
    pub fn syncs(&self, path: IoPath, n: usize) {
        self.pick(path, &self.ring_syncs, &self.call_syncs)
            .fetch_add(n as u64, Ordering::Relaxed);
        on_this_thread(|s| *pick_mut(path, &mut s.ring_syncs, &mut s.call_syncs) += n as u64);
    }

    fn pick<'a>(&self, path: IoPath, ring: &'a AtomicU64, call: &'a AtomicU64) -> &'a AtomicU64 {
        match path {
            IoPath::Ring => ring,
            IoPath::Call => call,
        }
    }

    /// What the counters say now.
    pub fn snapshot(&self) -> IoStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IoStats {
            ring_reads: get(&self.ring_reads),
            ring_writes: get(&self.ring_writes),
            ring_syncs: get(&self.ring_syncs),
            call_reads: get(&self.call_reads),
            call_writes: get(&self.call_writes),
            call_syncs: get(&self.call_syncs),
        }
    }
}

/// Adds to this thread's count, if it keeps one ([`count_on_this_thread`]).
fn on_this_thread(add: impl FnOnce(&mut IoStats)) {
    THIS_THREAD.with(|c| {
        if let Some(mut s) = c.get() {
            add(&mut s);
            c.set(Some(s));
        }
    });
}

fn pick_mut<'a>(path: IoPath, ring: &'a mut u64, call: &'a mut u64) -> &'a mut u64 {
    match path {
        IoPath::Ring => ring,
        IoPath::Call => call,
    }
}

/// Operations a backend ran, by path: requests as the caller made them (a
/// short transfer continued on the ring counts once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Reads submitted to io_uring.
    pub ring_reads: u64,
    /// Writes submitted to io_uring.
    pub ring_writes: u64,
    /// Syncs (fdatasync) submitted to io_uring.
    pub ring_syncs: u64,
    /// `pread` calls.
    pub call_reads: u64,
    /// `pwrite` calls.
    pub call_writes: u64,
    /// `fdatasync` calls.
    pub call_syncs: u64,
}

impl IoStats {
    fn add(&mut self, o: &IoStats) {
        self.ring_reads += o.ring_reads;
        self.ring_writes += o.ring_writes;
        self.ring_syncs += o.ring_syncs;
        self.call_reads += o.call_reads;
        self.call_writes += o.call_writes;
        self.call_syncs += o.call_syncs;
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &IoStats) -> IoStats {
        IoStats {
            ring_reads: self.ring_reads - earlier.ring_reads,
            ring_writes: self.ring_writes - earlier.ring_writes,
            ring_syncs: self.ring_syncs - earlier.ring_syncs,
            call_reads: self.call_reads - earlier.call_reads,
            call_writes: self.call_writes - earlier.call_writes,
            call_syncs: self.call_syncs - earlier.call_syncs,
        }
    }
}

impl fmt::Display for IoStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "io_uring: {} reads, {} writes, {} syncs; system calls: {} pread, {} pwrite, {} fdatasync",
            self.ring_reads, self.ring_writes, self.ring_syncs, self.call_reads, self.call_writes, self.call_syncs
        )
    }
}
