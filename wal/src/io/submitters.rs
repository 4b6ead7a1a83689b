//! Submitter threads: where the io_uring backend runs the operations that
//! may block in the kernel (writes to the page cache of a file system
//! without asynchronous buffered writes, and every fdatasync).
//!
//! The kernel runs such an operation on a worker thread of the *submitting*
//! thread's io_uring context, and keeps those workers for seconds. A process
//! whose hundred transaction threads each led a flush at some point carries
//! hundreds of such workers, and SIGKILL must tear all of them down before
//! the process's sockets close: measured, 8 ms from the kill to the process
//! reaped with 100 transaction threads (about 400 threads in all), against
//! 1.4 ms with 10. Handing those operations to a fixed pool of submitter
//! threads keeps the worker count bounded, however many threads the engine
//! runs (a few callers may still run their own, see
//! [`super::on_this_thread`]); reads of cached pages, which complete
//! inline, stay on the caller.
//!
//! A submitter that finishes a job polls briefly for the next one before it
//! sleeps: a commit's second flush follows its first within microseconds,
//! and waking a sleeping thread costs tens of them on this kind of host.
//!
//! ## Why the `unsafe` here is sound
//! A job carries raw pointers into buffers its caller borrows. The caller
//! blocks in [`Submitters::run`] until the job's outcome is set, which the
//! submitter does only after `execute` returned — and `execute` returns only
//! once every submitted operation has completed (see the `ring` module).
//! A submitter that panicked in between could leave operations in the kernel
//! while the caller frees their buffers, so a panic aborts the process.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use io_uring::IoUring;

use super::ring::{execute, RawOp, RING_DEPTH};

/// How many submitter threads an io_uring backend runs: one per core of the
/// machine this is built for keeps both busy with deep queues.
const SUBMITTERS: usize = 2;
/// How long an idle submitter polls for the next job before sleeping.
const POLL_FOR: Duration = Duration::from_micros(30);

/// A batch of operations and, once run, what became of them.
struct Job {
    ops: Vec<RawOp>,
    outcome: Mutex<Option<io::Result<Vec<i32>>>>,
    done: Condvar,
}

// SAFETY: a job's raw pointers are only dereferenced by the kernel while the
// job runs, and its caller keeps their buffers borrowed until it has run
// (module docs); nothing else in a job is tied to a thread.
unsafe impl Send for Job {}
// SAFETY: as above; the outcome is behind a mutex.
unsafe impl Sync for Job {}

struct Shared {
    queue: Mutex<VecDeque<Arc<Job>>>,
    work: Condvar,
    /// Jobs queued, readable without the lock by a polling submitter.
    queued: AtomicUsize,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// See the module docs.
pub(super) struct Submitters {
    shared: Arc<Shared>,
}

impl Submitters {
    pub(super) fn start() -> io::Result<Submitters> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            work: Condvar::new(),
            queued: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        for i in 0..SUBMITTERS {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("uring-submit-{i}"))
                .spawn(move || submitter(&shared))?;
        }
        Ok(Submitters { shared })
    }

    /// Runs `ops` on a submitter thread and stores each op's result in
    /// `results`; returns once every op has completed.
    pub(super) fn run(&self, ops: &[RawOp], results: &mut [i32]) -> io::Result<()> {
        let job = Arc::new(Job {
            ops: ops.to_vec(),
            outcome: Mutex::new(None),
            done: Condvar::new(),
        });
        lock(&self.shared.queue).push_back(job.clone());
        self.shared.queued.fetch_add(1, Ordering::Release);
        self.shared.work.notify_one();
        let mut outcome = lock(&job.outcome);
        loop {
            if let Some(o) = outcome.take() {
                let got = o?;
                results.copy_from_slice(&got);
                return Ok(());
            }
            outcome = job.done.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Submitters {
    fn drop(&mut self) {
        // Every caller has returned (each holds the backend while it waits),
        // so the queue is empty: the submitters just leave.
        self.shared.stop.store(true, Ordering::Release);
        let _guard = lock(&self.shared.queue);
        self.shared.work.notify_all();
    }
}

fn submitter(shared: &Shared) {
    let mut ring: Option<IoUring> = None;
    while let Some(job) = next_job(shared) {
        let mut results = vec![0i32; job.ops.len()];
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = match ring.as_mut() {
                Some(r) => r,
                None => ring.insert(IoUring::new(RING_DEPTH)?),
            };
            execute(r, &job.ops, &mut results)
        }));
        let outcome = match ran {
            Ok(r) => r,
            // Operations may still be in the kernel: see the module docs.
            Err(_) => std::process::abort(),
        };
        if outcome.is_err() {
            // A failed ring is never reused (see the `ring` module).
            ring = None;
        }
        *lock(&job.outcome) = Some(outcome.map(|()| results));
        job.done.notify_one();
    }
}

/// The next job, polling briefly before sleeping; `None` once stopped.
fn next_job(shared: &Shared) -> Option<Arc<Job>> {
    let poll_until = Instant::now() + POLL_FOR;
    while shared.queued.load(Ordering::Acquire) == 0 && Instant::now() < poll_until {
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        std::hint::spin_loop();
    }
    let mut queue = lock(&shared.queue);
    loop {
        if let Some(job) = queue.pop_front() {
            shared.queued.fetch_sub(1, Ordering::Release);
            return Some(job);
        }
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        queue = shared.work.wait(queue).unwrap_or_else(|e| e.into_inner());
    }
}
