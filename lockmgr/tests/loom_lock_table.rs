//! loom models of the lock table's and the registry's concurrency: every
//! interleaving of a few threads over the same code that runs in production
//! (under `cfg(loom)` the sharded map is built from the sync shim's mutexes).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p lockmgr --release --test loom_lock_table`
#![cfg(loom)]

use lockmgr::sync::atomic::{AtomicUsize, Ordering};
use lockmgr::sync::Arc;
use lockmgr::{
    AuthState, HolderId, LockError, LockMode, LockTable, Owner, Registry, RegistryError, RequestOutcome, ResourceId,
    WaitPolicy,
};
use loom::thread;

const R: ResourceId = ResourceId::new(1, 1);
const R2: ResourceId = ResourceId::new(1, 2);

/// Every model is small (two or three threads, a few calls each), so loom
/// explores all its interleavings, unbounded, in well under a second.
fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model(f);
}

fn holders(table: &LockTable, resource: ResourceId) -> Vec<(HolderId, LockMode)> {
    table
        .snapshot(resource)
        .map(|s| s.holders.iter().map(|h| (h.holder, h.mode)).collect())
        .unwrap_or_default()
}

#[test]
fn conflicting_exclusive_locks_are_held_one_at_a_time() {
    model(|| {
        let table = Arc::new(LockTable::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = [1_u32, 2]
            .into_iter()
            .map(|node| {
                let (table, inside) = (table.clone(), inside.clone());
                thread::spawn(move || {
                    let owner = Owner::new(node, 1);
                    match table.request(owner, R, LockMode::X, WaitPolicy::Wait) {
                        Ok(RequestOutcome::Granted { .. }) => {
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "X granted twice");
                            inside.fetch_sub(1, Ordering::SeqCst);
                            let woken = table.release(owner, R).expect("held");
                            (None, woken)
                        }
                        Ok(RequestOutcome::Queued(ticket)) => (Some(ticket), Vec::new()),
                        Err(error) => panic!("{error}"),
                    }
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("no panic")).collect();
        let queued: Vec<_> = results.iter().filter_map(|(ticket, _)| *ticket).collect();
        let woken: Vec<_> = results
            .iter()
            .flat_map(|(_, woken)| woken.iter().map(|w| w.ticket))
            .collect();
        assert!(queued.len() <= 1, "one of them got the lock at once");
        // A queued request is granted by exactly the release that freed it.
        assert_eq!(woken, queued);
        match queued.first() {
            Some(ticket) => {
                assert_eq!(holders(&table, R), vec![(HolderId::Owner(ticket.owner()), LockMode::X)]);
                table.release(ticket.owner(), R).expect("granted by the wake-up");
            }
            None => assert!(holders(&table, R).is_empty()),
        }
        assert!(table.snapshot(R).is_none());
        table.check_invariants().expect("invariants");
    });
}

#[test]
fn release_racing_cancel_grants_or_cancels_exactly_once() {
    model(|| {
        let table = Arc::new(LockTable::new());
        let (holder, waiter) = (Owner::new(1, 1), Owner::new(2, 1));
        table.request(holder, R, LockMode::X, WaitPolicy::NoWait).expect("free");
        let Ok(RequestOutcome::Queued(ticket)) = table.request(waiter, R, LockMode::X, WaitPolicy::Wait) else {
            panic!("X waits for X");
        };
        let releaser = {
            let table = table.clone();
            thread::spawn(move || table.release(holder, R).expect("held"))
        };
        let canceller = {
            let table = table.clone();
            thread::spawn(move || table.cancel(ticket))
        };
        let woken = releaser.join().expect("no panic");
        let cancelled = canceller.join().expect("no panic");
        let granted = woken.iter().any(|w| w.ticket == ticket);
        assert!(
            granted != cancelled.was_waiting,
            "granted {granted}, cancelled {}",
            cancelled.was_waiting
        );
        assert!(cancelled.woken.is_empty());
        if granted {
            assert_eq!(holders(&table, R), vec![(HolderId::Owner(waiter), LockMode::X)]);
        } else {
            assert!(table.snapshot(R).is_none());
        }
        table.check_invariants().expect("invariants");
    });
}

#[test]
fn node_failure_racing_a_conflicting_request_never_grants_it() {
    model(|| {
        let table = Arc::new(LockTable::new());
        table
            .request(Owner::new(1, 1), R, LockMode::X, WaitPolicy::NoWait)
            .expect("free");
        let failer = {
            let table = table.clone();
            thread::spawn(move || table.node_failed(1))
        };
        let requester = {
            let table = table.clone();
            thread::spawn(move || table.request(Owner::new(2, 1), R, LockMode::S, WaitPolicy::NoWait))
        };
        let report = failer.join().expect("no panic");
        let outcome = requester.join().expect("no panic");
        assert!(
            matches!(
                outcome,
                Err(LockError::Conflict { resource: R }) | Err(LockError::Retained { node: 1, resource: R })
            ),
            "{outcome:?}"
        );
        assert_eq!(report.retained, vec![(R, LockMode::X)]);
        assert_eq!(holders(&table, R), vec![(HolderId::Retained(1), LockMode::X)]);
        table.check_invariants().expect("invariants");
    });
}

#[test]
fn node_failure_racing_a_waiting_request_leaves_it_for_recovery() {
    model(|| {
        let table = Arc::new(LockTable::new());
        table
            .request(Owner::new(1, 1), R, LockMode::IX, WaitPolicy::NoWait)
            .expect("free");
        let failer = {
            let table = table.clone();
            thread::spawn(move || table.node_failed(1))
        };
        let requester = {
            let table = table.clone();
            thread::spawn(move || table.request(Owner::new(2, 1), R, LockMode::X, WaitPolicy::Wait))
        };
        let report = failer.join().expect("no panic");
        let Ok(RequestOutcome::Queued(ticket)) = requester.join().expect("no panic") else {
            panic!("X conflicts with IX, live or retained");
        };
        assert!(report.woken.is_empty(), "a retained IX still blocks X");
        table.check_invariants().expect("invariants");
        let woken = table.release_retained(1);
        assert_eq!(woken.iter().map(|w| w.ticket).collect::<Vec<_>>(), vec![ticket]);
    });
}

#[test]
fn a_failing_nodes_own_request_is_swept_or_refused() {
    // The failed node's request races the failure: it must either be
    // refused, or granted early enough to be dropped by the sweep. A granted
    // S lock of a failed node left behind would block writers forever.
    model(|| {
        let table = Arc::new(LockTable::new());
        table
            .request(Owner::new(1, 1), R, LockMode::X, WaitPolicy::NoWait)
            .expect("free");
        let failer = {
            let table = table.clone();
            thread::spawn(move || table.node_failed(1))
        };
        let requester = {
            let table = table.clone();
            thread::spawn(move || table.request(Owner::new(1, 2), R2, LockMode::S, WaitPolicy::NoWait))
        };
        failer.join().expect("no panic");
        let outcome = requester.join().expect("no panic");
        assert!(
            matches!(
                outcome,
                Ok(RequestOutcome::Granted { .. }) | Err(LockError::NodeFailed { node: 1 })
            ),
            "{outcome:?}"
        );
        assert!(table.snapshot(R2).is_none(), "no lock of the failed node survives");
        assert!(table.locks_of(Owner::new(1, 2)).is_empty());
        assert_eq!(table.retained(1), vec![(R, LockMode::X)]);
        table.check_invariants().expect("invariants");
    });
}

#[test]
fn release_racing_two_requests_loses_neither() {
    model(|| {
        let table = Arc::new(LockTable::new());
        let holder = Owner::new(1, 1);
        table.request(holder, R, LockMode::X, WaitPolicy::NoWait).expect("free");
        let releaser = {
            let table = table.clone();
            thread::spawn(move || table.release(holder, R).expect("held"))
        };
        let requesters: Vec<_> = [(2_u32, LockMode::S), (3, LockMode::X)]
            .into_iter()
            .map(|(node, mode)| {
                let table = table.clone();
                thread::spawn(move || table.request(Owner::new(node, 1), R, mode, WaitPolicy::Wait))
            })
            .collect();
        let woken: Vec<_> = releaser.join().expect("no panic").iter().map(|w| w.ticket).collect();
        let queued: Vec<_> = requesters
            .into_iter()
            .filter_map(|h| match h.join().expect("no panic") {
                Ok(RequestOutcome::Queued(ticket)) => Some(ticket),
                Ok(RequestOutcome::Granted { .. }) => None,
                Err(error) => panic!("{error}"),
            })
            .collect();
        let still: Vec<_> = table
            .snapshot(R)
            .map(|s| s.waiters.iter().map(|w| w.ticket).collect())
            .unwrap_or_default();
        // Every queued request was either granted by the release, or still waits.
        for ticket in &queued {
            assert!(woken.contains(ticket) != still.contains(ticket), "{ticket} lost");
        }
        assert!(woken.iter().all(|ticket| queued.contains(ticket)));
        // At most one holder: S and X never share, and X went away.
        assert!(holders(&table, R).len() <= 1);
        table.check_invariants().expect("invariants");
    });
}

#[test]
fn exactly_one_racing_node_registers_as_counterpart() {
    model(|| {
        let registry = Arc::new(Registry::default());
        for node in 1..=3 {
            registry.join(node).expect("new node");
        }
        registry.node_failed(3).expect("live");
        let handles: Vec<_> = [1_u32, 2]
            .into_iter()
            .map(|caller| {
                let registry = registry.clone();
                thread::spawn(move || registry.register_counterpart(caller, AuthState::Authenticated, 3))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("no panic")).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1);
        let counterpart = winners[0].counterpart();
        for result in &results {
            if let Err(error) = result {
                assert_eq!(*error, RegistryError::AlreadyActive { failed: 3, counterpart });
            }
        }
    });
}
