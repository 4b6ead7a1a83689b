//! Joining again after a lost lease.
//!
//! A node whose lease lapsed (its process paused longer than the lease: a
//! `SIGSTOP`, a suspended machine, a debugger) has been declared failed by
//! the coordinator, and its peers wait to recover it; it stops at once
//! (`NodeState::stop`: no more writes, its log and data files let go), so
//! a peer can now fence and recover it. What its handles need is a node
//! again. So the event thread, having stopped it, starts a rejoin here:
//! the node opens again — exactly what `Node::open` does after a crash —
//! as a new incarnation: it restarts, backing out its own in-flight work,
//! or waits while a peer does, and then joins. Its handles are then given
//! the new incarnation's state. Transactions of the old incarnation keep
//! failing (their work is backed out); new ones run on the new one.
//!
//! Opening is retried with a growing pause (a coordinator still away, a
//! peer's recovery taking long) until it succeeds, the node is closed,
//! every handle is gone, or [`MAX_ATTEMPTS`] have failed. A rejoin under
//! way when the last handle is dropped finishes its open and then leaves
//! the cluster cleanly; the drop does not wait for it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::node::open;
use crate::node::shared::Shared;
use crate::node::state::{NodeState, LEASE_LOST};
use crate::sync::lock;

/// The first pause between two failed attempts to join again; it doubles
/// up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Attempts to join again before giving up (about three minutes of
/// pauses): an error that does not go away — a table file missing, say —
/// leaves the node stopped, as it was before rejoining existed.
const MAX_ATTEMPTS: u32 = 100;

/// Arms `state` (the incarnation `shared` now serves) to join again once
/// its lease is lost.
pub(crate) fn arm(shared: &Arc<Shared>, state: &Arc<NodeState>) {
    if shared.rejoin.is_none() {
        return;
    }
    let weak = Arc::downgrade(shared);
    *lock(&state.on_lease_lost) = Some(Box::new(move || start(weak)));
    // Lost already, before the hook was in place: run it now (it is taken,
    // so it runs once either way).
    if state.stopped().as_deref() == Some(LEASE_LOST) {
        let hook = lock(&state.on_lease_lost).take();
        if let Some(rejoin) = hook {
            rejoin();
        }
    }
}

/// Starts the thread that joins again.
fn start(shared: Weak<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("rejoin".into())
        .spawn(move || rejoin(&shared));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start joining again after the lease was lost");
    }
}

fn rejoin(weak: &Weak<Shared>) {
    let mut pause = FIRST_PAUSE;
    let mut attempts = 0u32;
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(plan) = shared.rejoin.as_ref() else { return };
        let old = shared.current();
        // The old incarnation's last checkpoint is done before its log is
        // opened again.
        old.join_checkpoint();
        match open::incarnation(&plan.dir, plan.node_id, plan.opts.clone(), None) {
            Ok((state, report)) => {
                let mut current = shared
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Checked under the lock `Shared::close_for_good` takes.
                if shared.closed.load(Ordering::Acquire) {
                    drop(current);
                    // Nobody is left to serve: leave cleanly.
                    state.mark_closed();
                    let _ = state.client.leave();
                    state.let_go();
                    return;
                }
                *current = state.clone();
                drop(current);
                tracing::warn!(
                    node = plan.node_id,
                    incarnation = state.client.incarnation(),
                    restarted = report.restarted,
                    backed_out = report.backed_out,
                    "joined again after the lease was lost"
                );
                shared.rejoins.fetch_add(1, Ordering::AcqRel);
                arm(&shared, &state);
                return;
            }
            Err(e) => {
                attempts += 1;
                if attempts >= MAX_ATTEMPTS {
                    tracing::error!(node = plan.node_id, error = %e, attempts, "joining again failed; giving up: the node stays stopped until it is opened again");
                    return;
                }
                tracing::warn!(node = plan.node_id, error = %e, pause_ms = pause.as_millis() as u64, "joining again failed; trying again");
            }
        }
        drop(shared);
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
