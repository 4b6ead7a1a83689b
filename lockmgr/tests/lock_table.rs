//! The lock table's behaviour, scenario by scenario: conversions, FIFO and
//! starvation, wait policies, cancels, node failure and retained locks,
//! reclaims, deadlock detection, the durable export of retained locks, and a
//! multi-threaded mutual-exclusion check.
#![cfg(not(loom))]

use lockmgr::LockMode::{IS, IX, S, SIX, X};
use lockmgr::{
    HolderId, LockError, LockMode, LockTable, Owner, RequestOutcome, ResourceId, RetainedLock, Ticket, WaitPolicy,
};

const WAIT: WaitPolicy = WaitPolicy::Wait;
const NO_WAIT: WaitPolicy = WaitPolicy::NoWait;
const R: ResourceId = ResourceId::new(1, 1);
const R2: ResourceId = ResourceId::new(1, 2);

fn o(node: u32, txn: u64) -> Owner {
    Owner::new(node, txn)
}

fn granted(table: &LockTable, owner: Owner, resource: ResourceId, mode: LockMode) -> LockMode {
    match table.request(owner, resource, mode, NO_WAIT) {
        Ok(RequestOutcome::Granted { held }) => held,
        other => panic!("{owner} {mode} on {resource}: expected a grant, got {other:?}"),
    }
}

fn queued(table: &LockTable, owner: Owner, resource: ResourceId, mode: LockMode) -> Ticket {
    match table.request(owner, resource, mode, WAIT) {
        Ok(RequestOutcome::Queued(ticket)) => ticket,
        other => panic!("{owner} {mode} on {resource}: expected to queue, got {other:?}"),
    }
}

fn tickets(woken: &[lockmgr::Woken]) -> Vec<Ticket> {
    woken.iter().map(|w| w.ticket).collect()
}

fn holders(table: &LockTable, resource: ResourceId) -> Vec<(HolderId, LockMode)> {
    let mut all: Vec<_> = table
        .snapshot(resource)
        .map(|s| s.holders.iter().map(|h| (h.holder, h.mode)).collect())
        .unwrap_or_default();
    all.sort();
    all
}

#[test]
fn shared_locks_coexist_and_rerequests_are_free() {
    let table = LockTable::new();
    assert_eq!(granted(&table, o(1, 1), R, S), S);
    assert_eq!(granted(&table, o(2, 1), R, S), S);
    assert_eq!(granted(&table, o(2, 1), R, IS), S, "IS is covered by S");
    assert_eq!(granted(&table, o(3, 1), R, IS), IS);
    table.check_invariants().expect("invariants");
}

#[test]
fn conversions_take_the_supremum() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    assert_eq!(granted(&table, o(1, 1), R, IX), SIX);
    assert_eq!(granted(&table, o(1, 1), R, X), X);
    assert_eq!(holders(&table, R), vec![(HolderId::Owner(o(1, 1)), X)]);
}

#[test]
fn conversion_waits_for_other_holders_then_is_granted() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    granted(&table, o(2, 1), R, S);
    let ticket = queued(&table, o(1, 1), R, X);
    let snapshot = table.snapshot(R).expect("R is held");
    assert!(snapshot.waiters[0].conversion);
    let woken = table.release(o(2, 1), R).expect("held");
    assert_eq!(tickets(&woken), vec![ticket]);
    assert_eq!(woken[0].held, X);
    assert_eq!(holders(&table, R), vec![(HolderId::Owner(o(1, 1)), X)]);
}

#[test]
fn a_stream_of_readers_does_not_starve_a_writer() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    let writer = queued(&table, o(2, 1), R, X);
    // Compatible with the holder, but something waits: they queue behind.
    let reader = queued(&table, o(3, 1), R, S);
    assert_eq!(
        table.request(o(4, 1), R, S, NO_WAIT),
        Err(LockError::Conflict { resource: R })
    );
    assert_eq!(tickets(&table.release_all(o(1, 1))), vec![writer]);
    assert_eq!(tickets(&table.release_all(o(2, 1))), vec![reader]);
}

#[test]
fn conversions_go_before_queued_new_requests() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    granted(&table, o(2, 1), R, S);
    let newcomer = queued(&table, o(3, 1), R, X);
    let conversion = queued(&table, o(1, 1), R, X);
    let waiters: Vec<_> = table
        .snapshot(R)
        .expect("held")
        .waiters
        .iter()
        .map(|w| w.ticket)
        .collect();
    assert_eq!(waiters, vec![conversion, newcomer]);
    assert_eq!(tickets(&table.release_all(o(2, 1))), vec![conversion]);
    assert_eq!(tickets(&table.release_all(o(1, 1))), vec![newcomer]);
}

#[test]
fn a_holder_converting_to_a_compatible_mode_is_not_made_to_wait() {
    // Owner 1 waits to convert S → X because of owner 2's IS. Owner 2's own
    // IS → S conversion fits the holders and is granted at once: making it
    // wait behind owner 1, who waits for owner 2, would be a deadlock.
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    granted(&table, o(2, 1), R, IS);
    queued(&table, o(1, 1), R, X);
    assert_eq!(granted(&table, o(2, 1), R, S), S);
}

#[test]
fn wait_policies_and_refusals() {
    let table = LockTable::with_max_waiters(1);
    granted(&table, o(1, 1), R, X);
    assert_eq!(
        table.request(o(2, 1), R, S, NO_WAIT),
        Err(LockError::Conflict { resource: R })
    );
    let ticket = queued(&table, o(2, 1), R, S);
    assert_eq!(
        table.request(o(2, 1), R, X, WAIT),
        Err(LockError::AlreadyWaiting { ticket })
    );
    assert_eq!(
        table.request(o(3, 1), R, S, WAIT),
        Err(LockError::QueueFull { resource: R, limit: 1 })
    );
    assert_eq!(
        table.release(o(3, 1), R),
        Err(LockError::NotHeld {
            owner: o(3, 1),
            resource: R
        })
    );
    assert_eq!(
        table.release(o(3, 1), R2),
        Err(LockError::NotHeld {
            owner: o(3, 1),
            resource: R2
        })
    );
    table.check_invariants().expect("invariants");
}

#[test]
fn cancel_grants_what_it_was_blocking() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    let writer = queued(&table, o(2, 1), R, X);
    let reader = queued(&table, o(3, 1), R, S);
    let cancelled = table.cancel(writer);
    assert!(cancelled.was_waiting);
    assert_eq!(tickets(&cancelled.woken), vec![reader]);
    // A second cancel, or a cancel of a granted request, finds nothing.
    assert!(!table.cancel(writer).was_waiting);
    assert!(!table.cancel(reader).was_waiting);
    assert_eq!(table.locks_of(o(3, 1)), vec![(R, S)]);
    assert_eq!(table.locks_of(o(2, 1)), vec![]);
    table.check_invariants().expect("invariants");
}

#[test]
fn release_all_ends_a_transaction() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, X);
    granted(&table, o(1, 1), R2, S);
    let a = queued(&table, o(2, 1), R, S);
    let b = queued(&table, o(2, 2), R2, X);
    let mut woken = tickets(&table.release_all(o(1, 1)));
    woken.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(woken, expected);
    assert!(table.locks_of(o(1, 1)).is_empty());
    assert!(table.release_all(o(1, 1)).is_empty());
}

#[test]
fn node_failure_drops_reads_and_retains_writes() {
    let table = LockTable::new();
    let failing = o(1, 1);
    granted(&table, failing, R, S);
    granted(&table, failing, R2, IX);
    granted(&table, o(1, 2), R2, IX);
    let writer = queued(&table, o(2, 1), R, X);
    granted(&table, o(3, 1), ResourceId::new(9, 9), S);
    let own_wait = queued(&table, o(1, 2), ResourceId::new(9, 9), X);

    let report = table.node_failed(1);
    assert_eq!(tickets(&report.woken), vec![writer], "the S lock went at once");
    assert_eq!(report.cancelled, vec![own_wait]);
    assert_eq!(report.retained, vec![(R2, IX)], "two transactions' IX merged into one");
    assert_eq!(holders(&table, R2), vec![(HolderId::Retained(1), IX)]);
    assert!(table.locks_of(failing).is_empty());

    // Conflicting: refused with the typed error, or queued if asked to wait.
    assert_eq!(
        table.request(o(2, 2), R2, S, NO_WAIT),
        Err(LockError::Retained { node: 1, resource: R2 })
    );
    let patient = queued(&table, o(3, 2), R2, X);
    // Not conflicting: unaffected... except by the FIFO queue behind X.
    assert_eq!(
        table.request(o(2, 3), R2, IS, NO_WAIT),
        Err(LockError::Conflict { resource: R2 })
    );
    // The failed node itself can ask for nothing.
    assert_eq!(
        table.request(o(1, 3), R, IS, WAIT),
        Err(LockError::NodeFailed { node: 1 })
    );
    table.check_invariants().expect("invariants");

    assert_eq!(tickets(&table.release_retained(1)), vec![patient]);
    assert!(table.retained(1).is_empty());
    table.check_invariants().expect("invariants");
}

#[test]
fn non_conflicting_requests_pass_a_retained_lock() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, IX);
    table.node_failed(1);
    assert_eq!(granted(&table, o(2, 1), R, IS), IS);
    assert_eq!(granted(&table, o(3, 1), R, IX), IX);
}

#[test]
fn the_restarted_node_takes_its_locks_back() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, X);
    granted(&table, o(1, 1), R2, SIX);
    table.node_failed(1);
    let recovery = o(1, 100);
    assert_eq!(
        table.reclaim_retained(1, o(2, 100)),
        Err(LockError::ForeignReclaim {
            node: 1,
            owner: o(2, 100)
        })
    );
    assert_eq!(
        table.reclaim_retained(1, recovery),
        Err(LockError::NodeFailed { node: 1 })
    );
    table.node_joined(1);
    let report = table.reclaim_retained(1, recovery).expect("joined");
    assert_eq!(report.reclaimed, vec![(R, X), (R2, SIX)]);
    assert!(table.retained(1).is_empty());
    assert_eq!(table.locks_of(recovery), vec![(R, X), (R2, SIX)]);
    table.check_invariants().expect("invariants");
    table.release_all(recovery);
    assert!(table.snapshot(R).is_none() && table.snapshot(R2).is_none());
}

#[test]
fn reclaiming_satisfies_the_reclaimers_own_wait() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, X);
    table.node_failed(1);
    table.node_joined(1);
    let recovery = o(1, 2);
    let ticket = queued(&table, recovery, R, S);
    let other = queued(&table, o(2, 1), R, S);
    let report = table.reclaim_retained(1, recovery).expect("joined");
    assert_eq!(tickets(&report.woken), vec![ticket]);
    assert_eq!(report.woken[0].held, X);
    assert_eq!(table.locks_of(recovery), vec![(R, X)]);
    assert_eq!(tickets(&table.release_all(recovery)), vec![other]);
    table.check_invariants().expect("invariants");
}

#[test]
fn cross_node_deadlock_is_found_and_broken() {
    let table = LockTable::new();
    let (older, younger) = (o(1, 5), o(2, 8));
    granted(&table, older, R, X);
    granted(&table, younger, R2, X);
    queued(&table, older, R2, X);
    assert!(table.find_deadlock().is_none());
    let victim_wait = queued(&table, younger, R, S);
    let deadlock = table.find_deadlock().expect("a two-node cycle");
    assert_eq!(deadlock.victim, younger);
    assert_eq!(deadlock.victim_tickets, vec![victim_wait]);
    assert!(table.cancel(victim_wait).was_waiting);
    assert!(table.find_deadlock().is_none());
}

#[test]
fn a_request_queued_behind_another_waits_for_it() {
    // Owner 3's IS is compatible with everything held, but queued behind
    // owner 2's X it cannot go before it: the edge 3 → 2 closes the cycle.
    let table = LockTable::new();
    granted(&table, o(1, 1), R, S);
    queued(&table, o(2, 1), R, X);
    queued(&table, o(3, 1), R, IS);
    granted(&table, o(3, 1), R2, X);
    queued(&table, o(1, 1), R2, S);
    let deadlock = table.find_deadlock().expect("1 → 3 → 2 → 1");
    assert_eq!(deadlock.cycle.len(), 3);
}

#[test]
fn retained_locks_survive_a_coordinator_restart() {
    let table = LockTable::new();
    granted(&table, o(1, 1), R, X);
    granted(&table, o(2, 1), R2, IX);
    granted(&table, o(3, 1), R2, IX);
    table.node_failed(1);
    table.node_failed(2);
    let record = table.export_retained();
    assert_eq!(
        record,
        vec![
            RetainedLock {
                node: 1,
                resource: R,
                mode: X
            },
            RetainedLock {
                node: 2,
                resource: R2,
                mode: IX
            },
        ]
    );
    let restored = LockTable::from_retained(record.clone(), 16).expect("consistent record");
    assert_eq!(restored.export_retained(), record);
    assert!(restored.is_failed(1) && restored.is_failed(2) && !restored.is_failed(3));
    assert_eq!(
        restored.request(o(3, 1), R, S, NO_WAIT),
        Err(LockError::Retained { node: 1, resource: R })
    );
    restored.check_invariants().expect("invariants");

    let contradictory = [
        RetainedLock {
            node: 1,
            resource: R,
            mode: X,
        },
        RetainedLock {
            node: 2,
            resource: R,
            mode: IX,
        },
    ];
    assert_eq!(
        LockTable::from_retained(contradictory, 16).err(),
        Some(LockError::InconsistentRetained {
            node: 2,
            resource: R,
            mode: IX
        })
    );
}

/// Real threads fight over X locks on two resources. Each waits when it must
/// and immediately cancels (as if its timeout fired at once); a cancel that
/// finds the request no longer waiting means it was granted meanwhile. Every
/// holder checks that it is alone.
#[test]
fn threads_never_share_an_exclusive_lock() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let table = LockTable::new();
    let inside = [AtomicUsize::new(0), AtomicUsize::new(0)];
    std::thread::scope(|scope| {
        for node in 1..=4_u32 {
            let (table, inside) = (&table, &inside);
            scope.spawn(move || {
                for txn in 0..300_u64 {
                    let owner = Owner::new(node, txn);
                    let index = usize::try_from((txn + u64::from(node)) % 2).expect("0 or 1");
                    let resource = ResourceId::new(0, index as u64);
                    let holds = match table.request(owner, resource, X, WAIT) {
                        Ok(RequestOutcome::Granted { .. }) => true,
                        Ok(RequestOutcome::Queued(ticket)) => !table.cancel(ticket).was_waiting,
                        Err(error) => panic!("{error}"),
                    };
                    if holds {
                        assert_eq!(inside[index].fetch_add(1, Ordering::SeqCst), 0, "X shared");
                        inside[index].fetch_sub(1, Ordering::SeqCst);
                        table.release(owner, resource).expect("held");
                    }
                }
            });
        }
    });
    table.check_invariants().expect("invariants");
    assert!(table.snapshot(ResourceId::new(0, 0)).is_none());
    assert!(table.snapshot(ResourceId::new(0, 1)).is_none());
}

#[test]
fn waiting_for_live_holders_only_is_refused_by_a_retained_lock_now_or_later() {
    const LIVE: WaitPolicy = WaitPolicy::WaitForLive;
    let table = LockTable::new();
    granted(&table, o(2, 1), R, X);
    granted(&table, o(2, 1), R2, IX);
    granted(&table, o(4, 1), R2, IX);
    // Behind a live holder a live-only request waits like any other.
    let Ok(RequestOutcome::Queued(blocked)) = table.request(o(1, 1), R, S, LIVE) else {
        panic!("a live holder is waited for");
    };
    let patient = queued(&table, o(3, 1), R, S);
    let writer = queued(&table, o(4, 2), R2, X);
    let Ok(RequestOutcome::Queued(fits)) = table.request(o(1, 2), R2, IS, LIVE) else {
        panic!("a new request queues behind a waiter");
    };

    let report = table.node_failed(2);
    assert_eq!(
        report.refused,
        vec![blocked],
        "only the live-only wait that the retained X blocks is withdrawn"
    );
    assert!(report.woken.is_empty());
    let waiters = |r: ResourceId| -> Vec<Ticket> {
        table
            .snapshot(r)
            .map(|s| s.waiters.iter().map(|w| w.ticket).collect())
            .unwrap_or_default()
    };
    assert_eq!(waiters(R), vec![patient], "a plain wait keeps waiting for the recovery");
    assert_eq!(
        waiters(R2),
        vec![writer, fits],
        "IS fits the retained IX: it still waits, behind a live node's request"
    );
    // A new live-only request is refused at once, naming the failed node.
    assert_eq!(
        table.request(o(1, 3), R, IS, LIVE),
        Err(LockError::Retained { node: 2, resource: R })
    );
    table.check_invariants().expect("invariants");
    assert_eq!(tickets(&table.release_retained(2)), vec![patient]);
}
