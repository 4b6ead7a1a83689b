//! Commit rounds: the concurrency core of group FORCE
//! ([`crate::group_force`]), free of I/O so loom can check it
//! (`tests/loom_group_force.rs`, `tests/loom_commit_recovery.rs`).
//!
//! Committers submit entries ([`Rounds::submit`]); entries are gathered in
//! rounds, one round at a time, in order. A committer that finds no round
//! under way leads one at once with every entry waiting; one that finds a
//! round under way parks behind it, and then either finds its entry done by
//! the next round's leader or leads that round itself. The leader runs the
//! round (the closure it was given: the log flush, the page writes and the
//! sync) outside the lock, and on success wakes exactly the committers it
//! finished and one of the next round's to lead it. The woken see that
//! their round is done without taking the lock: on two cores, seven
//! committers woken at once and queueing for one mutex cost more than the
//! wake-ups themselves.
//!
//! A failed round fails every entry in it, and every later one: a failed
//! sync is never retried. Entries still queued then are dropped at once
//! (with them the files they hold, and so the node's fencing locks,
//! `crate::fence`), as they are when the node stops ([`Rounds::close`]). A
//! leader that unwinds fails its round rather than leave every later
//! committer waiting for a leader that is gone.
//!
//! A round's leader waits a little for more entries when the round before
//! it carried several ([`Rounds::gather`], see `crate::group_force` for why);
//! the wait is bounded in time, which loom does not model, so under
//! `cfg(loom)` a leader never gathers.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::thread::{self, Thread, ThreadId};
use crate::sync::{lock_core, Condvar, Mutex, MutexGuard};

/// A committer parked until its round is done, or until it may lead the
/// next one.
struct Waiter {
    round: u64,
    thread: Thread,
}

struct State<E> {
    /// Entries for the next round.
    queue: Vec<E>,
    /// A round is under way.
    leading: bool,
    /// The number the next round will have; rounds run one at a time, in
    /// order, so round `r` is done once `Rounds::finished > r`.
    next_round: u64,
    failed: Option<String>,
    /// Committers parked behind the round under way.
    waiters: Vec<Waiter>,
    /// Entries in the last round.
    last_round: usize,
    /// The threads that committed in the last [`RECENT_ROUNDS`] rounds, with
    /// the last round each did: when every one of them has an entry in the
    /// queue, nobody else is likely to come, and the leader stops gathering.
    committers: HashMap<ThreadId, u64>,
    /// The leader is gathering entries for its round.
    gathering: Option<Gathering>,
    /// Times a gathering leader went to sleep.
    #[cfg(all(test, not(loom)))]
    gather_sleeps: usize,
}

/// What a gathering leader waits for.
struct Gathering {
    /// It wants to be woken once the queue holds this many entries.
    wanted: usize,
    /// When the last entry joined the queue (or the gathering began).
    last_arrival: std::time::Instant,
}

impl<E> State<E> {
    /// Registers the calling committer, whose entry is in `round`, as
    /// parked behind the round under way (once, however often it wakes).
    fn park_behind(&mut self, round: u64, me: &Thread) {
        if !self.waiters.iter().any(|w| w.thread.id() == me.id()) {
            self.waiters.push(Waiter {
                round,
                thread: me.clone(),
            });
        }
    }

    fn forget_waiter(&mut self, me: ThreadId) {
        self.waiters.retain(|w| w.thread.id() != me);
    }
}

/// Fails the round under way if its leader unwinds (see `submit`).
struct RoundGuard<'a, E> {
    rounds: &'a Rounds<E>,
}

impl<E> Drop for RoundGuard<'_, E> {
    fn drop(&mut self) {
        let mut s = self.rounds.lock();
        s.leading = false;
        self.rounds.fail(&mut s, "a commit round's leader panicked".into());
    }
}

/// See the module docs.
pub struct Rounds<E> {
    state: Mutex<State<E>>,
    /// Every round below this one is done (written under `state`).
    finished: AtomicU64,
    /// An entry joined the queue while the leader gathers.
    arrived: Condvar,
}

impl<E> Default for Rounds<E> {
    fn default() -> Self {
        Rounds {
            state: Mutex::new(State {
                queue: Vec::new(),
                leading: false,
                next_round: 0,
                failed: None,
                waiters: Vec::new(),
                last_round: 0,
                committers: HashMap::new(),
                gathering: None,
                #[cfg(all(test, not(loom)))]
                gather_sleeps: 0,
            }),
            finished: AtomicU64::new(0),
            arrived: Condvar::new(),
        }
    }
}

impl<E> Rounds<E> {
    /// No round run yet.
    pub fn new() -> Rounds<E> {
        Rounds::default()
    }

    fn lock(&self) -> MutexGuard<'_, State<E>> {
        lock_core(&self.state)
    }

    /// Refuses every entry from now on; those queued fail with it and are
    /// dropped now, and every parked committer wakes.
    fn fail(&self, s: &mut State<E>, why: String) {
        s.failed.get_or_insert(why);
        s.queue.clear();
        self.wake(s);
    }

    /// Wakes the committers whose round is done (all of them, once
    /// failed), and, when no round is under way, one committer of the next
    /// round to lead it.
    fn wake(&self, s: &mut State<E>) {
        let finished = self.finished.load(Ordering::Acquire);
        let failed = s.failed.is_some();
        let mut leader_wanted = !s.leading && !failed;
        s.waiters.retain(|w| {
            let wake = failed || w.round < finished || std::mem::take(&mut leader_wanted);
            if wake {
                w.thread.unpark();
            }
            !wake
        });
    }

    /// Has `entry` done by a round, and returns once that round is: `Ok`
    /// if the round's `run` succeeded. A committer that leads a round runs
    /// it with its own `run`, given every entry of the round; the entries
    /// are dropped once the round is done.
    pub fn submit(&self, entry: E, run: &dyn Fn(&[E]) -> Result<()>) -> Result<()> {
        let mut s = self.lock();
        if let Some(why) = &s.failed {
            return Err(Error::Stopped(format!("an earlier commit round failed: {why}")));
        }
        let mine = s.next_round;
        s.queue.push(entry);
        let queued = s.queue.len();
        if let Some(g) = &mut s.gathering {
            g.last_arrival = std::time::Instant::now();
            if queued >= g.wanted {
                self.arrived.notify_one();
            }
        }
        let me = thread::current();
        s.committers.insert(me.id(), mine);
        loop {
            // Done before anything failed after it: the round succeeded.
            if self.finished.load(Ordering::Acquire) > mine {
                return Ok(());
            }
            if let Some(why) = &s.failed {
                return Err(Error::Stopped(format!("a commit round failed: {why}")));
            }
            if s.leading {
                s.park_behind(mine, &me);
                drop(s);
                // Woken by `wake` (or spuriously: then the lock is taken
                // again to see where things stand).
                thread::park();
                if self.finished.load(Ordering::Acquire) > mine {
                    return Ok(());
                }
                s = self.lock();
                continue;
            }
            // No round under way, and this entry's is not done: it is the
            // next one, and this committer leads it.
            s.forget_waiter(me.id());
            s.leading = true;
            if s.last_round > 1 {
                s = self.gather(s);
            }
            let round = s.next_round;
            s.next_round += 1;
            let entries = std::mem::take(&mut s.queue);
            drop(s);
            // Should the round panic, the guard fails it rather than leave
            // every later committer waiting for a leader that is gone.
            let guard = RoundGuard { rounds: self };
            let outcome = run(&entries);
            std::mem::forget(guard);
            // Done with the round's entries (and the files they hold)
            // before anyone learns how it went.
            let count = entries.len();
            drop(entries);
            s = self.lock();
            s.leading = false;
            s.last_round = count;
            s.committers.retain(|_, &mut r| r + RECENT_ROUNDS > round);
            match &outcome {
                Ok(()) => {
                    self.finished.store(round + 1, Ordering::Release);
                    self.wake(&mut s);
                }
                Err(e) => self.fail(&mut s, e.to_string()),
            }
            outcome?;
        }
    }

    /// No round runs any more: the entries waiting for one fail and are
    /// dropped now (letting go of their files, and with them the node's
    /// fencing locks, `crate::fence`).
    pub fn close(&self, why: &str) {
        let mut s = self.lock();
        self.fail(&mut s, format!("the node stopped: {why}"));
    }

    /// Entries waiting for a round.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Lets the committers of the round just finished join this one: they
    /// come back within a transaction's work, and a round pays its flush
    /// and its sync once whatever its size. Waits until every recent
    /// committer is in the round, while entries keep arriving a step apart,
    /// up to a bound.
    #[cfg(not(loom))]
    fn gather<'a>(&'a self, mut s: MutexGuard<'a, State<E>>) -> MutexGuard<'a, State<E>> {
        let start = std::time::Instant::now();
        let deadline = start + MAX_GATHER;
        let wanted = s.committers.len();
        s.gathering = Some(Gathering {
            wanted,
            last_arrival: start,
        });
        loop {
            if s.queue.len() >= wanted {
                break;
            }
            // Until the bound, or a step after the last arrival. Committers
            // wake the leader only once the queue holds what it wants, so
            // it does not wake at every arrival.
            let last_arrival = s.gathering.as_ref().map_or(start, |g| g.last_arrival);
            let until = deadline.min(last_arrival + GATHER_STEP);
            let now = std::time::Instant::now();
            if now >= until {
                break;
            }
            #[cfg(test)]
            {
                s.gather_sleeps += 1;
            }
            s = self
                .arrived
                .wait_timeout(s, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.gathering = None;
        s
    }

    /// Under loom a leader never gathers: the wait is bounded in time,
    /// which loom does not model.
    #[cfg(loom)]
    fn gather<'a>(&'a self, s: MutexGuard<'a, State<E>>) -> MutexGuard<'a, State<E>> {
        s
    }
}

/// How many recent rounds tell a leader which threads commit.
const RECENT_ROUNDS: u64 = 16;
/// How long a round's leader waits for one more entry to join.
#[cfg(not(loom))]
const GATHER_STEP: std::time::Duration = std::time::Duration::from_micros(40);
/// The longest a round's leader gathers.
#[cfg(not(loom))]
const MAX_GATHER: std::time::Duration = std::time::Duration::from_micros(300);

// Under loom these would run outside a model; `tests/loom_group_force.rs`
// explores the same code there.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_leader_stops_gathering_once_every_recent_committer_is_in_its_round() {
        let rounds: Rounds<()> = Rounds::new();
        let thread = || std::thread::spawn(|| std::thread::current().id()).join().unwrap();
        let mut s = rounds.lock();
        for round in [3, 5, 9] {
            s.committers.insert(thread(), round);
        }
        s.queue = vec![(), (), ()];
        let mut s = rounds.gather(s);
        assert_eq!(s.gather_sleeps, 0, "an entry from each of the three recent committers");
        assert!(s.gathering.is_none());
        // One short: the leader waits (a step, as nobody else comes).
        s.queue.pop();
        let s = rounds.gather(s);
        assert!(s.gather_sleeps > 0, "a round short of a recent committer waits for it");
        assert_eq!(s.queue.len(), 2);
    }

    #[test]
    fn a_leader_that_panics_fails_its_round_and_every_later_one() {
        let rounds: Rounds<u32> = Rounds::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rounds.submit(1, &|_| panic!("the round's I/O panicked"))
        }));
        assert!(panicked.is_err());
        assert!(matches!(rounds.submit(2, &|_| Ok(())), Err(Error::Stopped(_))));
    }
}
