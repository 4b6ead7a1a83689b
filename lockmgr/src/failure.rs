//! What the lock table does when a node fails, recovers or restarts:
//! retained locks.
//!
//! When a node fails its S and IS locks are dropped at once (they protect
//! nothing now), its queued requests are cancelled, and its IX, SIX and X
//! locks become one retained lock per resource, held by the node rather than
//! by any transaction. A conflicting request is refused with
//! [`LockError::Retained`] or, if it asked to [`WaitPolicy::Wait`], queues
//! until recovery is done; a [`WaitPolicy::WaitForLive`] request is refused
//! too, including one already queued behind a lock that becomes retained. Retained locks leave the table only by [`LockTable::release_retained`]
//! (the counterpart finished recovery) or [`LockTable::reclaim_retained`] (the
//! node's own restart takes them back); a restarted coordinator restores them
//! with [`LockTable::from_retained`]. No other path drops them.

use std::collections::BTreeSet;

use crate::error::LockError;
use crate::ids::{NodeId, Owner, ResourceId, Ticket};
use crate::mode::LockMode;
#[cfg(doc)]
use crate::queue::WaitPolicy;
use crate::queue::Woken;
use crate::table::LockTable;

/// A retained lock: what a durable record of them holds, one line each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RetainedLock {
    /// The failed node that left it.
    pub node: NodeId,
    /// The resource it protects.
    pub resource: ResourceId,
    /// Its mode (IX, SIX or X).
    pub mode: LockMode,
}

/// What [`LockTable::node_failed`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureReport {
    /// Requests of other nodes granted because the node's locks went away.
    pub woken: Vec<Woken>,
    /// The node's own queued requests, now cancelled (their timers can go).
    pub cancelled: Vec<Ticket>,
    /// Other nodes' queued [`WaitPolicy::WaitForLive`] requests that a new
    /// retained lock now blocks: withdrawn, and to be answered with
    /// [`LockError::Retained`] naming this node and the ticket's resource.
    pub refused: Vec<Ticket>,
    /// The node's retained locks afterwards, sorted by resource.
    pub retained: Vec<(ResourceId, LockMode)>,
}

/// What [`LockTable::reclaim_retained`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// The locks now held by the reclaiming owner, in their retained modes.
    pub reclaimed: Vec<(ResourceId, LockMode)>,
    /// Queued requests granted by the hand-over (only the reclaiming owner's
    /// own, when the reclaimed mode satisfies them).
    pub woken: Vec<Woken>,
}

impl LockTable {
    /// Declares `node` failed: refuses its further requests with
    /// [`LockError::NodeFailed`] until [`Self::node_joined`], cancels its
    /// queued requests, drops its S and IS locks, and turns its IX, SIX and X
    /// locks into retained locks.
    pub fn node_failed(&self, node: NodeId) -> FailureReport {
        // Mark first, then read the owner index: a request indexes its
        // resource before locking it and checks the mark while holding that
        // lock. So a request either indexed in time to be found below, and
        // its resource is swept after it (or it sees the mark if it comes
        // later), or it indexed after this read and so sees the mark.
        self.failed.insert(node, ());
        let owners = self
            .owners
            .filter_map(|owner, _| (owner.node == node).then_some(*owner));
        let mut resources = BTreeSet::new();
        for owner in owners {
            resources.extend(self.owners.remove(&owner).unwrap_or_default());
        }
        let mut report = FailureReport::default();
        for resource in resources {
            self.with_existing(resource, |state| {
                let failure = state.fail_node(node);
                if let Some(mode) = failure.retained {
                    self.retained.update(node, |locks| locks.insert(resource, mode));
                }
                report.cancelled.extend(failure.cancelled);
                report.refused.extend(failure.refused);
                report.woken.extend(failure.woken);
            });
        }
        report.retained = self.retained(node);
        tracing::info!(
            node,
            retained = report.retained.len(),
            woken = report.woken.len(),
            cancelled = report.cancelled.len(),
            refused = report.refused.len(),
            "node failed"
        );
        report
    }

    /// Lets `node` make requests again after it rejoined the cluster with a
    /// new incarnation. Its retained locks, if any, stay retained until
    /// released or reclaimed.
    pub fn node_joined(&self, node: NodeId) {
        self.failed.remove(&node);
    }

    /// Whether `node` has been declared failed and has not rejoined.
    pub fn is_failed(&self, node: NodeId) -> bool {
        self.failed.contains(&node)
    }

    /// Frees every retained lock of `node`: its recovery is done. Returns
    /// the requests this granted.
    ///
    /// Must not race with a new [`Self::node_failed`] of the same node (the
    /// registry lets a recovered node rejoin only after its recovery was
    /// unregistered, and the coordinator calls this before that).
    pub fn release_retained(&self, node: NodeId) -> Vec<Woken> {
        let resources = self.retained_resources(node);
        let mut woken = Vec::new();
        let mut released = 0_usize;
        for resource in resources {
            self.with_existing(resource, |state| {
                if let Some((_, granted)) = state.release_retained(node) {
                    released += 1;
                    woken.extend(granted);
                }
                self.retained.update_existing(&node, |locks| locks.remove(&resource));
            });
        }
        tracing::info!(node, released, woken = woken.len(), "retained locks released");
        woken
    }

    /// Frees `node`'s retained lock on `resource` alone, when a coordinator
    /// restarted from a record older than that lock's release finds it
    /// contradicted by a lock a live node re-asserts (see the coordinator's
    /// re-assertion). Returns the requests this granted.
    pub fn release_stale_retained(&self, node: NodeId, resource: ResourceId) -> Vec<Woken> {
        let woken = self.with_existing(resource, |state| {
            let granted = state.release_retained(node).map(|(_, granted)| granted);
            self.retained.update_existing(&node, |locks| locks.remove(&resource));
            granted.unwrap_or_default()
        });
        tracing::warn!(node, %resource, "a stale retained lock was dropped");
        woken.unwrap_or_default()
    }

    /// Hands every retained lock of `node` to `owner`, a transaction of the
    /// same node after its restart, which then backs out the old work itself
    /// and releases them with [`Self::release_all`]. The node must have
    /// rejoined ([`Self::node_joined`]) first.
    pub fn reclaim_retained(&self, node: NodeId, owner: Owner) -> Result<ReclaimReport, LockError> {
        if owner.node != node {
            return Err(LockError::ForeignReclaim { node, owner });
        }
        if self.is_failed(node) {
            return Err(LockError::NodeFailed { node });
        }
        let resources = self.retained_resources(node);
        // Indexed before the resources are touched, as for a request.
        self.owners
            .update(owner, |owned| owned.extend(resources.iter().copied()));
        let mut report = ReclaimReport::default();
        for resource in resources {
            let present = self.with_existing(resource, |state| {
                if let Some((mode, granted)) = state.reclaim_retained(node, owner) {
                    report.reclaimed.push((resource, mode));
                    report.woken.extend(granted);
                }
                self.retained.update_existing(&node, |locks| locks.remove(&resource));
                state.involves(owner)
            });
            if present != Some(true) {
                self.owners.update_existing(&owner, |owned| owned.remove(&resource));
            }
        }
        tracing::info!(node, %owner, reclaimed = report.reclaimed.len(), "retained locks reclaimed");
        Ok(report)
    }

    /// Adds `locks` to the retained locks of failed node `node`, whose
    /// locks were unknown: what its log says it held (write modes only; a
    /// read lock protects nothing of a failed node). Refused, naming the
    /// first, if one conflicts with a lock held now; those added before it
    /// stay, released with the rest.
    pub fn retain_rebuilt(&self, node: NodeId, locks: &[(ResourceId, LockMode)]) -> Result<(), LockError> {
        let writes = locks
            .iter()
            .filter(|(_, mode)| matches!(mode, LockMode::IX | LockMode::SIX | LockMode::X));
        for &(resource, mode) in writes {
            self.with_resource(resource, |state| {
                let merged = state
                    .restore_retained(node, mode)
                    .map_err(|()| LockError::InconsistentRetained { node, resource, mode })?;
                self.retained.update(node, |held| held.insert(resource, merged));
                Ok::<(), LockError>(())
            })?;
        }
        Ok(())
    }

    /// The retained locks of `node`, sorted by resource (for operators).
    pub fn retained(&self, node: NodeId) -> Vec<(ResourceId, LockMode)> {
        self.retained
            .read(&node, |locks| {
                locks.iter().map(|(resource, mode)| (*resource, *mode)).collect()
            })
            .unwrap_or_default()
    }

    fn retained_resources(&self, node: NodeId) -> Vec<ResourceId> {
        self.retained
            .read(&node, |locks| locks.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every retained lock of every node, sorted: what the coordinator
    /// writes to its durable record.
    pub fn export_retained(&self) -> Vec<RetainedLock> {
        let mut all: Vec<RetainedLock> = self
            .retained
            .filter_map(|node, locks| {
                let node = *node;
                Some(
                    locks
                        .iter()
                        .map(|(resource, mode)| RetainedLock {
                            node,
                            resource: *resource,
                            mode: *mode,
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .into_iter()
            .flatten()
            .collect();
        all.sort_unstable();
        all
    }

    /// A new table holding exactly `locks` as retained locks, each of their
    /// nodes marked failed (until it rejoins): how a restarted coordinator
    /// restores the retained locks from its durable record. Several locks of
    /// one node on one resource are merged. Refused if the record
    /// contradicts itself (two nodes' locks on one resource incompatible).
    pub fn from_retained(
        locks: impl IntoIterator<Item = RetainedLock>,
        max_waiters: usize,
    ) -> Result<LockTable, LockError> {
        let table = LockTable::with_max_waiters(max_waiters);
        for lock in locks {
            table.failed.insert(lock.node, ());
            table.with_resource(lock.resource, |state| {
                let merged =
                    state
                        .restore_retained(lock.node, lock.mode)
                        .map_err(|()| LockError::InconsistentRetained {
                            node: lock.node,
                            resource: lock.resource,
                            mode: lock.mode,
                        })?;
                table
                    .retained
                    .update(lock.node, |held| held.insert(lock.resource, merged));
                Ok(())
            })?;
        }
        Ok(table)
    }
}
