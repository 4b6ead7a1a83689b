//! The lock table: every resource's holders and waiters (see [`crate::queue`]), found through a
//! sharded concurrent map, plus the small indexes that make "all of a
//! transaction's locks" and "all of a failed node's locks" cheap to find.
//!
//! Nothing here blocks waiting for a lock. A request is granted, queued or
//! refused at once; a call that frees a resource returns the queued requests
//! it granted, and the caller (the coordinator) tells their owners. So the
//! table can sit behind any event loop.
//!
//! Lock order: a resource's shard lock may be held while the `failed`,
//! `waiting` and `retained` indexes are touched, never the other way round;
//! the `owners` index is never touched while a resource is locked. No path
//! holds two resources at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::deadlock::{find_deadlock, Deadlock, WaitEdge};
use crate::error::LockError;
use crate::ids::{NodeId, Owner, ResourceId, Ticket};
use crate::mode::LockMode;
use crate::queue::{RequestOutcome, ResourceSnapshot, ResourceState, WaitPolicy, Woken};
use crate::shard::ShardedMap;
use crate::sync::atomic::{AtomicU64, Ordering};

/// The default bound on queued requests per resource.
pub const DEFAULT_MAX_WAITERS: usize = 4096;

/// What [`LockTable::cancel`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CancelOutcome {
    /// Whether the request was still waiting. `false` means it was granted
    /// (or cancelled, or released) before the cancel arrived; a timed-out
    /// caller that gets `false` holds the lock after all.
    pub was_waiting: bool,
    /// Requests that the cancelled one was holding up and that are now granted.
    pub woken: Vec<Woken>,
}

/// The lock table of the whole cluster. Shared between threads by reference
/// (it is `Sync`); every method takes `&self`.
pub struct LockTable {
    pub(crate) resources: ShardedMap<ResourceId, ResourceState>,
    /// For each owner, the resources it holds or waits for (possibly a few
    /// more, left by a refused request; never fewer).
    pub(crate) owners: ShardedMap<Owner, BTreeSet<ResourceId>>,
    /// For each failed node, its retained locks. Changed only while the
    /// resource concerned is locked, so it always agrees with the resources.
    pub(crate) retained: ShardedMap<NodeId, BTreeMap<ResourceId, LockMode>>,
    /// Nodes declared failed and not yet rejoined.
    pub(crate) failed: ShardedMap<NodeId, ()>,
    /// Resources with queued requests, so that deadlock detection does not
    /// scan the whole table. Changed only while the resource is locked.
    pub(crate) waiting: ShardedMap<ResourceId, ()>,
    next_ticket: AtomicU64,
    max_waiters: usize,
}

impl Default for LockTable {
    fn default() -> Self {
        Self::new()
    }
}

impl LockTable {
    /// An empty table with the default bound of [`DEFAULT_MAX_WAITERS`]
    /// queued requests per resource.
    pub fn new() -> Self {
        Self::with_max_waiters(DEFAULT_MAX_WAITERS)
    }

    /// An empty table that queues at most `max_waiters` requests per
    /// resource; further requests that would wait get [`LockError::QueueFull`].
    pub fn with_max_waiters(max_waiters: usize) -> Self {
        Self {
            resources: ShardedMap::new(),
            owners: ShardedMap::new(),
            retained: ShardedMap::new(),
            failed: ShardedMap::new(),
            waiting: ShardedMap::new(),
            next_ticket: AtomicU64::new(1),
            max_waiters,
        }
    }

    /// Runs `f` on the state of `resource` (created if absent, dropped if
    /// left empty), keeping the `waiting` index in step.
    pub(crate) fn with_resource<R>(&self, resource: ResourceId, f: impl FnOnce(&mut ResourceState) -> R) -> R {
        self.resources
            .update(resource, |state| self.tracking_waiters(resource, state, f))
    }

    /// Like [`Self::with_resource`], but does nothing if the resource has no state.
    pub(crate) fn with_existing<R>(&self, resource: ResourceId, f: impl FnOnce(&mut ResourceState) -> R) -> Option<R> {
        self.resources
            .update_existing(&resource, |state| self.tracking_waiters(resource, state, f))
    }

    fn tracking_waiters<R>(
        &self,
        resource: ResourceId,
        state: &mut ResourceState,
        f: impl FnOnce(&mut ResourceState) -> R,
    ) -> R {
        let waited = state.has_waiters();
        let out = f(state);
        match (waited, state.has_waiters()) {
            (false, true) => {
                self.waiting.insert(resource, ());
            }
            (true, false) => {
                self.waiting.remove(&resource);
            }
            _ => {}
        }
        out
    }

    /// Forgets that `owner` touches `resource`, if it no longer does.
    fn forget_if_absent(&self, owner: Owner, resource: ResourceId, present: bool) {
        if !present {
            self.owners
                .update_existing(&owner, |resources| resources.remove(&resource));
        }
    }

    /// Asks for `resource` in `mode` on behalf of `owner`.
    ///
    /// If the owner already holds the resource, this is a conversion (or a
    /// no-op re-request): the owner ends up holding the supremum of the two
    /// modes. See the [`crate::queue`] module for the grant rules.
    pub fn request(
        &self,
        owner: Owner,
        resource: ResourceId,
        mode: LockMode,
        policy: WaitPolicy,
    ) -> Result<RequestOutcome, LockError> {
        // Indexed before the resource is touched: `node_failed` reads this
        // index after marking the node failed, so either it finds this
        // resource or this request sees the mark (see `failure.rs`).
        self.owners.update(owner, |resources| resources.insert(resource));
        let (outcome, present) = self.with_resource(resource, |state| {
            let outcome = if self.failed.contains(&owner.node) {
                Err(LockError::NodeFailed { node: owner.node })
            } else {
                state.request(owner, resource, mode, policy, self.max_waiters, || {
                    self.next_ticket.fetch_add(1, Ordering::Relaxed)
                })
            };
            (outcome, state.involves(owner))
        });
        self.forget_if_absent(owner, resource, present);
        outcome
    }

    /// Releases `owner`'s lock on `resource`, and withdraws its queued
    /// request there if it has one. Returns the requests this granted.
    pub fn release(&self, owner: Owner, resource: ResourceId) -> Result<Vec<Woken>, LockError> {
        let released = self.with_existing(resource, |state| state.release(owner));
        self.forget_if_absent(owner, resource, false);
        match released {
            Some((true, woken)) => Ok(woken),
            _ => Err(LockError::NotHeld { owner, resource }),
        }
    }

    /// Releases every lock of `owner` and withdraws all its queued requests:
    /// the end of a transaction. Returns the requests this granted.
    ///
    /// The caller must not run a request of the same owner concurrently (a
    /// transaction does not ask for locks while it ends); such a request
    /// could be granted after this call and outlive it.
    pub fn release_all(&self, owner: Owner) -> Vec<Woken> {
        let resources = self.owners.remove(&owner).unwrap_or_default();
        let mut woken = Vec::new();
        for resource in resources {
            if let Some((_, granted)) = self.with_existing(resource, |state| state.release(owner)) {
                woken.extend(granted);
            }
        }
        woken
    }

    /// Withdraws a queued request, typically when its timeout fires.
    pub fn cancel(&self, ticket: Ticket) -> CancelOutcome {
        let owner = ticket.owner();
        let cancelled = self.with_existing(ticket.resource(), |state| {
            (state.cancel(ticket.id()), state.involves(owner))
        });
        let (woken, present) = cancelled.unwrap_or((None, false));
        self.forget_if_absent(owner, ticket.resource(), present);
        CancelOutcome {
            was_waiting: woken.is_some(),
            woken: woken.unwrap_or_default(),
        }
    }

    /// Every current wait-for edge (see [`crate::deadlock`]).
    pub fn wait_for_edges(&self) -> Vec<WaitEdge> {
        let resources = self.waiting.filter_map(|resource, ()| Some(*resource));
        let mut edges = Vec::new();
        for resource in resources {
            self.resources
                .read(&resource, |state| state.wait_edges(resource, &mut edges));
        }
        edges
    }

    /// Looks for a cycle of waits and picks the victim (see [`Deadlock`]).
    pub fn find_deadlock(&self) -> Option<Deadlock> {
        find_deadlock(&self.wait_for_edges())
    }

    /// The holders and waiters of one resource, or `None` if nobody holds or
    /// waits for it.
    pub fn snapshot(&self, resource: ResourceId) -> Option<ResourceSnapshot> {
        self.resources.read(&resource, ResourceState::snapshot)
    }

    /// The resources `owner` holds, with their modes, sorted.
    pub fn locks_of(&self, owner: Owner) -> Vec<(ResourceId, LockMode)> {
        let resources = self.owners.read(&owner, Clone::clone).unwrap_or_default();
        let holder = crate::ids::HolderId::Owner(owner);
        resources
            .into_iter()
            .filter_map(|resource| {
                let snapshot = self.snapshot(resource)?;
                let held = snapshot.holders.iter().find(|held| held.holder == holder)?;
                Some((resource, held.mode))
            })
            .collect()
    }

    /// Checks every invariant of the table: each resource's grant rules (no
    /// two incompatible holders, no waiter that could be granted, ...) and
    /// the agreement of the indexes with the resources. Meant for tests and
    /// debugging, on a quiescent table; `Err` names the first broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        let states = self
            .resources
            .filter_map(|resource, state| Some((*resource, state.clone())));
        for (resource, state) in &states {
            state.check(*resource)?;
            let snapshot = state.snapshot();
            for held in &snapshot.holders {
                match held.holder {
                    crate::ids::HolderId::Owner(owner) => {
                        if self.owners.read(&owner, |set| set.contains(resource)) != Some(true) {
                            return Err(format!("{owner} holds {resource} but the owner index lacks it"));
                        }
                    }
                    crate::ids::HolderId::Retained(node) => {
                        if self.retained.read(&node, |map| map.get(resource).copied()) != Some(Some(held.mode)) {
                            return Err(format!("retained lock of node {node} on {resource} not indexed"));
                        }
                    }
                }
            }
            for waiter in &snapshot.waiters {
                let owner = waiter.ticket.owner();
                if self.owners.read(&owner, |set| set.contains(resource)) != Some(true) {
                    return Err(format!("{owner} waits for {resource} but the owner index lacks it"));
                }
            }
            if state.has_waiters() != self.waiting.contains(resource) {
                return Err(format!("waiting index wrong for {resource}"));
            }
        }
        let indexed = self.retained.filter_map(|node, map| Some((*node, map.clone())));
        for (node, map) in indexed {
            for (resource, mode) in map {
                let holds = self.snapshot(resource).is_some_and(|snapshot| {
                    snapshot
                        .holders
                        .iter()
                        .any(|held| held.holder == crate::ids::HolderId::Retained(node) && held.mode == mode)
                });
                if !holds {
                    return Err(format!(
                        "index says node {node} retains {resource} in {mode}, table disagrees"
                    ));
                }
            }
        }
        for resource in self.waiting.filter_map(|resource, ()| Some(*resource)) {
            if !states.iter().any(|(r, state)| *r == resource && state.has_waiters()) {
                return Err(format!("waiting index lists {resource}, which has no waiters"));
            }
        }
        Ok(())
    }
}
