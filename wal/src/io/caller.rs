//! Which threads run their own io_uring writes and syncs
//! ([`on_this_thread`]) instead of handing them to a submitter thread.
//!
//! A caller that waits on its writes anyway, such as the leader of a commit
//! round, may ask to run them itself ([`on_this_thread`]): the hand-off to a
//! submitter and back costs two thread wake-ups, about 75 µs of a 450 µs
//! commit on a small virtual machine. At most [`MAX_CALLER_THREADS`]
//! threads of a process do so at a time (the first to ask keep the right
//! while they live), so the kernel workers stay bounded however many
//! threads lead rounds; the others go through the submitters. Eight: a
//! commit round is led by whichever committer finds none under way, so with
//! eight transactions committing, a bound of two sent three rounds in four
//! through the submitters (measured over three runs each: 17 % more CPU per
//! commit and 13 % fewer commits per second than with eight). Eight
//! callers and two submitters carry about as many kernel workers as the ten
//! threads for which SIGKILL tore a process down in 1.4 ms
//! (`super::submitters`).
//!
//! This file owns the per-thread rights only. It must never run an
//! operation: the io_uring backend asks [`runs_on_caller`] and decides.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most threads of a process that run their own writes and syncs
/// ([`on_this_thread`]); each carries its own kernel workers.
pub const MAX_CALLER_THREADS: usize = 8;

/// Threads holding the right to run their own writes and syncs.
static CALLER_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The right to run writes and syncs on this thread, given back when the
/// thread ends (and its kernel workers with it).
struct CallerSlot;

impl Drop for CallerSlot {
    fn drop(&mut self) {
        CALLER_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    /// Inside [`on_this_thread`].
    static WANTS_CALLER: Cell<bool> = const { Cell::new(false) };
    static CALLER_SLOT: RefCell<Option<CallerSlot>> = const { RefCell::new(None) };
}

/// Runs `f`, whose io_uring writes and syncs run on this thread rather than
/// on a submitter when this thread holds, or can take, one of the
/// [`MAX_CALLER_THREADS`] rights to (see the module docs). For callers that
/// block on those writes anyway; nothing else changes.
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = WANTS_CALLER.try_with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(WANTS_CALLER.replace(true));
    f()
}

/// Whether this thread's writes and syncs run here: it is inside
/// [`on_this_thread`] and holds a right, taking one if any is left.
pub(super) fn runs_on_caller() -> bool {
    if !WANTS_CALLER.try_with(Cell::get).unwrap_or(false) {
        return false;
    }
    CALLER_SLOT
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                let taken = CALLER_THREADS
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < MAX_CALLER_THREADS).then_some(n + 1)
                    })
                    .is_ok();
                if taken {
                    *slot = Some(CallerSlot);
                }
            }
            slot.is_some()
        })
        .unwrap_or(false)
}
