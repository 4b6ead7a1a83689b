//! Threads whose work can wait a moment: the log's flusher and a node's
//! commit confirmer.
//!
//! Such a thread is woken by a thread that has more urgent work to do next.
//! At the end of a commit round the round's leader makes the log durable,
//! which wakes the confirmer (the commit records it waits for are on disk),
//! and only then wakes the round's committers. As an ordinary thread the
//! confirmer took the core from the leader at once, and the two took turns
//! on it: measured with `sched_switch` at eight committers on two cores,
//! 70–130 µs of each ~1 ms round passed before the committers were woken.
//! A `SCHED_BATCH` thread is never given the core on a wake-up: it runs
//! when the waker sleeps or yields, and is otherwise scheduled as before.
//! So only *when* its work runs changes, never *whether*.

/// Marks the calling thread as background work (see the module docs). A
/// system that refuses the policy leaves the thread as it was.
pub fn run_in_background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel reads `param`, which lives on this frame, during
    // the call only; pid 0 names the calling thread, whose policy alone
    // changes.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "a background thread stays an ordinary one"
        );
    }
}
