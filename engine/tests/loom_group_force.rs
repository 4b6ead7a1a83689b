//! loom models of group FORCE's commit rounds (`understudy::commit_rounds`,
//! the very code `GroupForce` runs): committers, leaders and failures in
//! every interleaving loom explores. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p understudy --release --test loom_group_force`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use understudy::commit_rounds::Rounds;
use understudy::Error;

/// An entry that counts how often a round ran it and says when it is
/// dropped (its files let go).
struct Entry {
    id: usize,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Rounds whose runs are recorded: each round's entry ids, in order.
struct Fixture {
    rounds: Rounds<Entry>,
    ran: Mutex<Vec<Vec<usize>>>,
    dropped: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Arc<Fixture> {
        Arc::new(Fixture {
            rounds: Rounds::new(),
            ran: Mutex::new(Vec::new()),
            dropped: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn entry(&self, id: usize) -> Entry {
        Entry {
            id,
            dropped: self.dropped.clone(),
        }
    }

    /// Submits entry `id`; the round fails when `fail` says so.
    fn submit(&self, id: usize, fail: bool) -> Result<(), Error> {
        let run = |entries: &[Entry]| {
            self.ran.lock().unwrap().push(entries.iter().map(|e| e.id).collect());
            if fail {
                Err(Error::Stopped("the round's sync failed".into()))
            } else {
                Ok(())
            }
        };
        self.rounds.submit(self.entry(id), &run)
    }
}

#[test]
fn every_commit_is_in_exactly_one_round_and_returns_once_that_round_is_done() {
    loom::model(|| {
        let fx = Fixture::new();
        // Three: one leads, the others park behind its round, and one of
        // them must be woken to lead the next.
        let committers: Vec<_> = (0..3)
            .map(|id| {
                let fx = fx.clone();
                thread::spawn(move || {
                    fx.submit(id, false).unwrap();
                    // Returned: its round ran, with its entry in it.
                    let ran = fx.ran.lock().unwrap();
                    assert!(ran.iter().any(|r| r.contains(&id)), "returned before its round ran");
                })
            })
            .collect();
        for c in committers {
            c.join().unwrap();
        }
        let ran = fx.ran.lock().unwrap();
        let mut all: Vec<usize> = ran.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2], "each entry ran exactly once: {ran:?}");
        assert!(ran.iter().all(|r| !r.is_empty()), "no empty round");
        assert_eq!(fx.dropped.load(Ordering::SeqCst), 3, "every entry let go");
    });
}

#[test]
fn a_failed_round_fails_its_commits_and_every_later_one() {
    loom::model(|| {
        let fx = Fixture::new();
        let failing = {
            let fx = fx.clone();
            thread::spawn(move || fx.submit(0, true))
        };
        let other = {
            let fx = fx.clone();
            thread::spawn(move || fx.submit(1, false))
        };
        assert!(failing.join().unwrap().is_err(), "the failed round's commit succeeded");
        let other = other.join().unwrap();
        let ran = fx.ran.lock().unwrap().clone();
        // The other commit succeeded only in a round of its own, run
        // before the failed one.
        if other.is_ok() {
            assert_eq!(ran.first(), Some(&vec![1]), "{ran:?}");
        }
        assert!(
            matches!(fx.submit(2, false), Err(Error::Stopped(_))),
            "a failed sync is never retried"
        );
        assert_eq!(fx.dropped.load(Ordering::SeqCst), 3, "every entry let go");
    });
}

#[test]
fn closing_fails_the_waiting_commits_and_lets_go_of_their_entries() {
    loom::model(|| {
        let fx = Fixture::new();
        let committers: Vec<_> = (0..2)
            .map(|id| {
                let fx = fx.clone();
                thread::spawn(move || fx.submit(id, false))
            })
            .collect();
        fx.rounds.close("the node stopped");
        let results: Vec<_> = committers.into_iter().map(|c| c.join().unwrap()).collect();
        let ran = fx.ran.lock().unwrap();
        for (id, r) in results.iter().enumerate() {
            // A commit succeeds only if a round ran it.
            if r.is_ok() {
                assert!(ran.iter().any(|round| round.contains(&id)), "{id} ok, never run");
            }
        }
        assert_eq!(fx.dropped.load(Ordering::SeqCst), 2, "every entry let go");
        assert!(fx.submit(9, false).is_err(), "a closed node takes no commit");
    });
}
