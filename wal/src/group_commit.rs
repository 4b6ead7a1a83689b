//! Group commit: the concurrency core of the log writer, free of I/O so that
//! loom can check it.
//!
//! Appenders encode records into in-memory runs under one mutex and get their
//! LSN at once. A flush takes everything pending as a [`Batch`], writes and
//! syncs it outside the lock, and reports the batch's end as durable, waking
//! every waiter whose record it covered. A waiter therefore shares one sync
//! with everyone who appended before the batch was taken.
//!
//! Who flushes: a waiter that finds no flush under way leads one itself
//! ([`GroupCommit::wait_durable_with`]), so a lone committer pays no thread
//! hand-off; the background flusher covers the rest (pending bytes past the
//! threshold, close). One flush at a time (`flushing`), in LSN order: a
//! batch is only taken after the previous one is durable, which the
//! reader's batch-start rule relies on.
//!
//! Bounds: at most `max_pending` bytes may be appended but not yet durable;
//! an appender past that waits for the flusher. The flusher works when a
//! waiter asks, when `flush_threshold` bytes are pending, or at close.
//!
//! After a failure ([`GroupCommit::fail`]) nothing more is accepted: appends
//! and waits for records not already durable return `Poisoned`.

use std::sync::Arc;

use crate::error::{Result, WalError};
use crate::io::IoError;
use crate::record::{self, Lsn, RecordBody, RecordMeta};
use crate::segment::Layout;
use crate::sync::{Condvar, Mutex, MutexGuard};

/// Contiguous encoded bytes of the stream, inside one segment.
#[derive(Debug)]
pub struct Run {
    pub start: Lsn,
    pub bytes: Vec<u8>,
}

/// What the flusher writes in one go: runs in LSN order, ending at `end`.
#[derive(Debug)]
pub struct Batch {
    pub runs: Vec<Run>,
    pub end: Lsn,
}

impl Batch {
    /// The encoded bytes the batch carries.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.bytes.len() as u64).sum()
    }
}

struct State {
    runs: Vec<Run>,
    /// Bytes appended and not yet durable (pending plus in flight).
    undurable_bytes: u64,
    /// Where the next record goes.
    next: Lsn,
    /// Where the last record appended starts.
    last: Option<Lsn>,
    /// Everything before this is durable.
    durable: Lsn,
    /// Some waiter needs the stream durable past this LSN.
    wanted: Lsn,
    failed: Option<Arc<IoError>>,
    closed: bool,
    /// A batch is being written and synced.
    flushing: bool,
    /// Times the flusher woke up in `take_batch`.
    #[cfg(test)]
    flusher_wakeups: usize,
}

/// See the module docs.
pub struct GroupCommit {
    layout: Layout,
    max_pending: u64,
    flush_threshold: u64,
    state: Mutex<State>,
    /// The flusher waits here for work.
    work: Condvar,
    /// Waiters for durability and for buffer space wait here.
    progress: Condvar,
}

impl GroupCommit {
    /// A queue whose stream continues at `next` (everything before it is
    /// durable).
    pub fn new(layout: Layout, next: Lsn, max_pending: u64, flush_threshold: u64) -> GroupCommit {
        GroupCommit {
            layout,
            max_pending,
            flush_threshold,
            state: Mutex::new(State {
                runs: Vec::new(),
                undurable_bytes: 0,
                next,
                last: None,
                durable: next,
                wanted: next,
                failed: None,
                closed: false,
                flushing: false,
                #[cfg(test)]
                flusher_wakeups: 0,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module;
        // the state is still consistent at every unlock point, so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, cv: &Condvar, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(s: &State) -> Result<()> {
        if let Some(cause) = &s.failed {
            return Err(WalError::Poisoned { cause: cause.clone() });
        }
        if s.closed {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// Encodes the record at the end of the stream and returns its LSN.
    pub fn append(&self, meta: &RecordMeta, body: &RecordBody) -> Result<Lsn> {
        let size = self.check(meta, body)?;
        let mut s = self.lock();
        loop {
            Self::refuse(&s)?;
            if self.has_room(&s, size) {
                break;
            }
            s.wanted = s.wanted.max(s.next);
            self.work.notify_one();
            s = self.wait(&self.progress, s);
        }
        let lsn = self.push(&mut s, meta, body, size);
        if s.undurable_bytes >= self.flush_threshold {
            self.work.notify_one();
        }
        Ok(lsn)
    }

    /// Appends `records` and takes everything pending as a batch for the
    /// caller to flush at once — if no flush is under way and there is room;
    /// otherwise appends nothing and returns `None`. While the caller holds
    /// the batch nobody else flushes, so the records become durable through
    /// the caller's flush and no other: what the caller writes ahead of that
    /// batch is on disk before any of them.
    pub fn append_leading(&self, records: &[(RecordMeta, RecordBody)]) -> Result<Option<(Vec<Lsn>, Batch)>> {
        let sizes = records
            .iter()
            .map(|(meta, body)| self.check(meta, body))
            .collect::<Result<Vec<u64>>>()?;
        let total: u64 = sizes.iter().map(|&n| n + record::HEADER_LEN as u64).sum();
        let mut s = self.lock();
        Self::refuse(&s)?;
        if s.flushing || !self.has_room(&s, total) {
            return Ok(None);
        }
        let lsns = records
            .iter()
            .zip(sizes)
            .map(|((meta, body), size)| self.push(&mut s, meta, body, size))
            .collect();
        Ok(Some((lsns, Self::take(&mut s))))
    }

    /// The encoded size of a record this stream can take.
    fn check(&self, meta: &RecordMeta, body: &RecordBody) -> Result<u64> {
        record::validate(meta, body).map_err(|e| match e {
            record::EncodeError::TooLarge { payload, max } => WalError::RecordTooLarge { payload, max },
            record::EncodeError::AgentMismatch { agent, kind } => WalError::AgentMismatch { agent, kind },
        })?;
        let size = record::encoded_len(body);
        if size > self.layout.max_record() {
            return Err(WalError::RecordTooLarge {
                payload: size as usize,
                max: self.layout.max_record() as usize,
            });
        }
        Ok(size)
    }

    /// Room for `size` more bytes plus a possible segment-end filler.
    fn has_room(&self, s: &State, size: u64) -> bool {
        s.undurable_bytes == 0 || s.undurable_bytes + size + record::HEADER_LEN as u64 <= self.max_pending
    }

    /// Encodes a record of `size` bytes (checked) at the end of the stream.
    fn push(&self, s: &mut State, meta: &RecordMeta, body: &RecordBody, size: u64) -> Lsn {
        let seg = self.layout.segment_of(s.next);
        if s.next.0 + size > self.layout.record_limit(seg).0 {
            let filler_at = s.next;
            let run = Self::run_at(self.layout, s, filler_at);
            record::encode_segment_end(&mut run.bytes, filler_at);
            let filler = self.layout.segment_end(seg).0 - filler_at.0;
            s.undurable_bytes += record::HEADER_LEN as u64;
            s.next = self.layout.segment_start(seg + 1);
            debug_assert!(filler >= record::HEADER_LEN as u64, "segment reserve holds a filler");
        }
        let lsn = s.next;
        let run = Self::run_at(self.layout, s, lsn);
        let before = run.bytes.len();
        record::encode_into(&mut run.bytes, lsn, meta, body);
        debug_assert_eq!((run.bytes.len() - before) as u64, size, "encoded_len matches encoding");
        s.next = Lsn(lsn.0 + size);
        s.last = Some(lsn);
        s.undurable_bytes += size;
        lsn
    }

    /// Takes everything pending as a batch for the caller to flush at once,
    /// if the record at `lsn` is not durable yet, is the last one appended,
    /// and no flush is under way: the caller's record ends the batch, so
    /// whatever the caller has the flush do after it delays nobody who
    /// appended before. `None` otherwise.
    pub fn lead_as_last(&self, lsn: Lsn) -> Option<Batch> {
        let mut s = self.lock();
        if Self::settled(&s, lsn).is_some() || s.flushing || s.runs.is_empty() || s.last != Some(lsn) {
            return None;
        }
        Some(Self::take(&mut s))
    }

    /// Everything pending, as the batch of a flush that starts now.
    fn take(s: &mut State) -> Batch {
        s.flushing = true;
        Batch {
            runs: std::mem::take(&mut s.runs),
            end: s.next,
        }
    }

    /// The run that ends at `lsn` in the same segment, or a new one starting
    /// there (a run never crosses a segment boundary).
    fn run_at(layout: Layout, s: &mut State, lsn: Lsn) -> &mut Run {
        let continues = s.runs.last().is_some_and(|r| {
            r.start.0 + r.bytes.len() as u64 == lsn.0 && layout.segment_of(r.start) == layout.segment_of(lsn)
        });
        if !continues {
            s.runs.push(Run {
                start: lsn,
                bytes: Vec::new(),
            });
        }
        s.runs.last_mut().expect("a run was just ensured")
    }

    /// What a wait for `lsn` comes to without waiting: durable already, or
    /// never going to be (the log failed, or `lsn` was never appended).
    fn settled(s: &State, lsn: Lsn) -> Option<Result<()>> {
        if lsn < s.durable {
            return Some(Ok(()));
        }
        if let Some(cause) = &s.failed {
            return Some(Err(WalError::Poisoned { cause: cause.clone() }));
        }
        if lsn >= s.next {
            return Some(Err(WalError::InvalidArgument(format!(
                "LSN {lsn} was never appended (the log ends at {})",
                s.next
            ))));
        }
        if s.closed && s.runs.is_empty() && !s.flushing {
            // Closed and nothing left to write: it was abandoned.
            return Some(Err(WalError::Closed));
        }
        None
    }

    /// Blocks until the record at `lsn` is durable.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let mut s = self.lock();
        loop {
            if let Some(done) = Self::settled(&s, lsn) {
                return done;
            }
            if s.wanted <= lsn {
                s.wanted = Lsn(lsn.0 + 1);
                self.work.notify_one();
            }
            s = self.wait(&self.progress, s);
        }
    }

    /// Waits up to `patience` for the record at `lsn` to become durable
    /// through flushes others ask for, without asking for one: for records
    /// whose durability nobody is waiting on, which may as well ride on the
    /// next commit's flush. `None` if it was not settled in time.
    pub fn wait_durable_within(&self, lsn: Lsn, patience: std::time::Duration) -> Option<Result<()>> {
        let deadline = std::time::Instant::now() + patience;
        let mut s = self.lock();
        loop {
            if let Some(done) = Self::settled(&s, lsn) {
                return Some(done);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            s = self
                .progress
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Blocks until the record at `lsn` is durable, leading a flush with
    /// `flush` (write and sync a batch) when none is under way.
    pub fn wait_durable_with<F>(&self, lsn: Lsn, flush: F) -> Result<()>
    where
        F: Fn(&mut Batch) -> std::result::Result<(), Arc<IoError>>,
    {
        let mut s = self.lock();
        loop {
            if let Some(done) = Self::settled(&s, lsn) {
                return done;
            }
            if !s.flushing && !s.runs.is_empty() {
                let mut batch = Self::take(&mut s);
                drop(s);
                match flush(&mut batch) {
                    Ok(()) => self.complete(&batch),
                    Err(cause) => self.fail(cause),
                }
                s = self.lock();
                continue;
            }
            s = self.wait(&self.progress, s);
        }
    }

    /// Everything before this LSN is durable.
    pub fn durable(&self) -> Lsn {
        self.lock().durable
    }

    /// Where the next record goes.
    pub fn next(&self) -> Lsn {
        self.lock().next
    }

    /// For the flusher: blocks until there is work and hands it over; `None`
    /// once closed and drained, or after a failure.
    pub fn take_batch(&self) -> Option<Batch> {
        let mut s = self.lock();
        loop {
            if s.failed.is_some() {
                return None;
            }
            if self.flush_due(&s) {
                return Some(Self::take(&mut s));
            }
            if s.closed && s.runs.is_empty() && !s.flushing {
                return None;
            }
            s = self.wait(&self.work, s);
            #[cfg(test)]
            {
                s.flusher_wakeups += 1;
            }
        }
    }

    /// Whether the flusher has a batch to take: none is being flushed, and
    /// records are pending that someone waits for, that reach the
    /// threshold, or that a close must write.
    fn flush_due(&self, s: &State) -> bool {
        let pending: u64 = s.runs.iter().map(|r| r.bytes.len() as u64).sum();
        !s.flushing && !s.runs.is_empty() && (s.wanted > s.durable || pending >= self.flush_threshold || s.closed)
    }

    /// For whoever flushed `batch`: it is durable.
    pub fn complete(&self, batch: &Batch) {
        let (end, bytes) = (batch.end, batch.bytes());
        let mut s = self.lock();
        debug_assert!(end >= s.durable, "durable point only moves forward");
        s.durable = end;
        s.flushing = false;
        s.undurable_bytes -= bytes.min(s.undurable_bytes);
        self.progress.notify_all();
        // The flusher only when this flush leaves it something to do (or a
        // close to finish): after most flushes nothing is pending, and a
        // flusher woken for nothing takes the core from the committers the
        // flush's leader is about to wake.
        if s.closed || self.flush_due(&s) {
            self.work.notify_all();
        }
    }

    /// For the flusher: writing or syncing failed; nothing more is accepted.
    pub fn fail(&self, cause: Arc<IoError>) {
        let mut s = self.lock();
        s.failed = Some(cause);
        s.flushing = false;
        s.runs.clear();
        self.progress.notify_all();
        self.work.notify_all();
    }

    /// The failure that poisoned the queue, if any.
    pub fn failure(&self) -> Option<Arc<IoError>> {
        self.lock().failed.clone()
    }

    /// Accepts no more records and drops the pending ones (none was
    /// reported durable), then waits until no batch is being written: once
    /// it returns, nothing of this stream is written again.
    pub fn abandon(&self) {
        let mut s = self.lock();
        s.closed = true;
        let pending: u64 = s.runs.iter().map(|r| r.bytes.len() as u64).sum();
        s.runs.clear();
        s.undurable_bytes -= pending.min(s.undurable_bytes);
        self.work.notify_all();
        self.progress.notify_all();
        while s.flushing {
            s = self.wait(&self.progress, s);
        }
    }

    /// Accepts no more records; the flusher drains what is pending and stops.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        self.work.notify_all();
        self.progress.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn queue() -> GroupCommit {
        let layout = Layout::new(1 << 20).unwrap();
        GroupCommit::new(layout, layout.segment_start(0), 1 << 20, 1 << 19)
    }

    fn flusher_wakeups(gc: &GroupCommit) -> usize {
        gc.lock().flusher_wakeups
    }

    /// Waits (bounded) until the flusher is parked in `take_batch`: its
    /// wake-ups stop changing.
    fn settle(gc: &GroupCommit) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = flusher_wakeups(gc);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = flusher_wakeups(gc);
            if now == last {
                return;
            }
            assert!(Instant::now() < deadline, "the flusher never settled");
            last = now;
        }
    }

    #[test]
    fn a_flush_that_leaves_nothing_pending_does_not_wake_the_flusher() {
        let gc = queue();
        // Measured inside the scope, asserted after it: the flusher thread
        // only ends once the queue is closed.
        let (woken_for_nothing, durable, second) = std::thread::scope(|scope| {
            scope.spawn(|| {
                while let Some(batch) = gc.take_batch() {
                    gc.complete(&batch);
                }
            });
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                settle(&gc);
                let before = flusher_wakeups(&gc);
                // Waiters leading their own flushes, nothing appended behind.
                for txn in 1..=20 {
                    let lsn = gc.append(&RecordMeta::txn(txn, None), &RecordBody::Commit).unwrap();
                    gc.wait_durable_with(lsn, |_| Ok(())).unwrap();
                }
                settle(&gc);
                let woken = flusher_wakeups(&gc) - before;

                // A record someone waits for while a flush runs is the
                // flusher's to write once that flush completes.
                let (_, batch) = gc
                    .append_leading(&[(RecordMeta::txn(21, None), RecordBody::Commit)])
                    .unwrap()
                    .expect("no flush under way");
                let second = gc.append(&RecordMeta::txn(22, None), &RecordBody::Commit).unwrap();
                std::thread::scope(|inner| {
                    let waiter = inner.spawn(|| gc.wait_durable(second));
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while gc.lock().wanted <= second && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    gc.complete(&batch);
                    waiter.join().unwrap().unwrap();
                });
                (woken, gc.durable(), second)
            }));
            gc.close();
            outcome.unwrap_or_else(|p| std::panic::resume_unwind(p))
        });
        assert_eq!(woken_for_nothing, 0, "the flusher was woken for nothing");
        assert!(durable > second);
    }
}
