//! The state of one resource — who holds it, who waits — and the rules that
//! decide grants. This is the only code that decides whether a lock is
//! granted; the table around it only finds the right resource and keeps its
//! indexes in step.
//!
//! The rules:
//!
//! * A **conversion** (a request by an owner that already holds the
//!   resource) is granted as soon as its target mode — the supremum of the
//!   held and the requested mode — is compatible with every *other* holder.
//!   It never waits behind queued requests: its owner already holds the
//!   resource, so anything queued is already waiting for it, and making it
//!   wait in turn would be a certain deadlock. It can be overtaken only by
//!   other holders' conversions, and each holder can convert at most four
//!   times (the height of the lattice), so it cannot starve.
//! * A **new request** is granted at once only if nothing is queued and it
//!   is compatible with every holder. Once anything waits, new requests
//!   queue behind it even when compatible, so a stream of S requests never
//!   starves a queued X.
//! * When locks go away, waiting conversions are granted first (each that is
//!   compatible with the holders), then — only if no conversion is left
//!   waiting — new requests in FIFO order, stopping at the first that cannot
//!   be granted.
//!
//! Retained locks of failed nodes are holders like any other, named by
//! [`HolderId::Retained`]; they only differ in how a refusal is reported and
//! in who may remove them.

use std::collections::VecDeque;

use crate::deadlock::WaitEdge;
use crate::error::LockError;
use crate::ids::{HolderId, NodeId, Owner, ResourceId, Ticket};
use crate::mode::LockMode;
use crate::shard::Vacant;

/// What a request does when it cannot be granted at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WaitPolicy {
    /// Fail at once with [`LockError::Conflict`] or [`LockError::Retained`].
    #[default]
    NoWait,
    /// Queue and wait for a grant. The table keeps no clocks: the caller
    /// owns the timeout and calls [`crate::LockTable::cancel`] when it fires.
    Wait,
    /// Wait for live holders only: refused at once with
    /// [`LockError::Retained`] when a failed node's retained lock is in the
    /// way, and — if already queued — refused as soon as a holder in the way
    /// fails and its lock becomes retained ([`crate::FailureReport::refused`]).
    /// A retained lock lasts as long as a recovery, which no transaction
    /// should sit out holding its own locks; the caller retries instead.
    WaitForLive,
}

/// The answer to a request that was not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The lock is held now, in mode `held` (the requested mode, or for a
    /// conversion or re-request the supremum of it and the mode held before).
    Granted {
        /// The mode the owner holds now.
        held: LockMode,
    },
    /// The request waits; a later call that frees the resource returns this
    /// ticket in its list of [`Woken`] requests.
    Queued(Ticket),
}

/// A queued request that a call has just granted. The caller tells its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Woken {
    /// The ticket handed out when the request was queued.
    pub ticket: Ticket,
    /// The mode the owner holds now.
    pub held: LockMode,
}

/// A granted lock, as seen by [`crate::LockTable::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// Who holds it.
    pub holder: HolderId,
    /// In which mode.
    pub mode: LockMode,
}

/// A queued request, as seen by [`crate::LockTable::snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitingRequest {
    /// Its ticket (which names the owner).
    pub ticket: Ticket,
    /// The mode the owner will hold once granted.
    pub mode: LockMode,
    /// Whether the owner already holds the resource in a weaker mode.
    pub conversion: bool,
}

/// Everything known about one resource at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceSnapshot {
    /// Granted locks, in the order they were granted.
    pub holders: Vec<HeldLock>,
    /// Queued requests in grant priority: conversions first, then new
    /// requests, each in arrival order.
    pub waiters: Vec<WaitingRequest>,
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    ticket: Ticket,
    /// The mode the owner will hold once granted.
    mode: LockMode,
    /// Refused when a retained lock comes to block it.
    live_only: bool,
}

/// One resource's holders and waiters.
///
/// Sizes: `holders` has at most one entry per owner and one per failed node;
/// each owner has at most one waiter per resource, and the total number of
/// waiters is bounded by the table's `max_waiters`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResourceState {
    holders: Vec<HeldLock>,
    conversions: VecDeque<Waiter>,
    requests: VecDeque<Waiter>,
}

impl Vacant for ResourceState {
    fn is_vacant(&self) -> bool {
        self.holders.is_empty() && !self.has_waiters()
    }
}

/// What [`ResourceState::fail_node`] did.
pub(crate) struct NodeFailure {
    pub(crate) cancelled: Vec<Ticket>,
    /// Other nodes' [`WaitPolicy::WaitForLive`] requests that the new
    /// retained lock blocks, now withdrawn: each is answered with
    /// [`LockError::Retained`].
    pub(crate) refused: Vec<Ticket>,
    /// The node's retained mode on this resource afterwards, if any.
    pub(crate) retained: Option<LockMode>,
    pub(crate) woken: Vec<Woken>,
}

impl ResourceState {
    pub(crate) fn has_waiters(&self) -> bool {
        !self.conversions.is_empty() || !self.requests.is_empty()
    }

    fn held_by(&self, holder: HolderId) -> Option<LockMode> {
        self.holders
            .iter()
            .find(|held| held.holder == holder)
            .map(|held| held.mode)
    }

    fn waiter_of(&self, owner: Owner) -> Option<&Waiter> {
        self.conversions
            .iter()
            .chain(&self.requests)
            .find(|waiter| waiter.ticket.owner() == owner)
    }

    /// Whether the owner holds or waits for this resource.
    pub(crate) fn involves(&self, owner: Owner) -> bool {
        self.held_by(HolderId::Owner(owner)).is_some() || self.waiter_of(owner).is_some()
    }

    /// Holders other than `me` whose mode conflicts with `mode`.
    fn blockers(&self, me: HolderId, mode: LockMode) -> impl Iterator<Item = &HeldLock> + '_ {
        self.holders
            .iter()
            .filter(move |held| held.holder != me && !held.mode.compatible(mode))
    }

    fn grantable(&self, me: HolderId, mode: LockMode) -> bool {
        self.blockers(me, mode).next().is_none()
    }

    /// Sets `holder`'s mode, adding it if it held nothing.
    fn hold(&mut self, holder: HolderId, mode: LockMode) {
        match self.holders.iter_mut().find(|held| held.holder == holder) {
            Some(held) => held.mode = mode,
            None => self.holders.push(HeldLock { holder, mode }),
        }
    }

    fn waiter_count(&self) -> usize {
        self.conversions.len() + self.requests.len()
    }

    /// Decides a request by `owner` for `mode`. `ticket_id` is called only if
    /// the request is queued.
    pub(crate) fn request(
        &mut self,
        owner: Owner,
        resource: ResourceId,
        mode: LockMode,
        policy: WaitPolicy,
        max_waiters: usize,
        ticket_id: impl FnOnce() -> u64,
    ) -> Result<RequestOutcome, LockError> {
        if let Some(waiter) = self.waiter_of(owner) {
            return Err(LockError::AlreadyWaiting { ticket: waiter.ticket });
        }
        let me = HolderId::Owner(owner);
        let held = self.held_by(me);
        let target = held.map_or(mode, |held| held.supremum(mode));
        if held == Some(target) {
            return Ok(RequestOutcome::Granted { held: target });
        }
        let may_jump = held.is_some() || !self.has_waiters();
        if may_jump && self.grantable(me, target) {
            self.hold(me, target);
            return Ok(RequestOutcome::Granted { held: target });
        }
        if policy != WaitPolicy::Wait {
            let retained = self.blockers(me, target).find_map(|held| match held.holder {
                HolderId::Retained(node) => Some(node),
                HolderId::Owner(_) => None,
            });
            match (retained, policy) {
                (Some(node), _) => return Err(LockError::Retained { node, resource }),
                (None, WaitPolicy::NoWait) => return Err(LockError::Conflict { resource }),
                (None, _) => {}
            }
        }
        if self.waiter_count() >= max_waiters {
            return Err(LockError::QueueFull {
                resource,
                limit: max_waiters,
            });
        }
        let ticket = Ticket::new(ticket_id(), owner, resource);
        let waiter = Waiter {
            ticket,
            mode: target,
            live_only: policy == WaitPolicy::WaitForLive,
        };
        if held.is_some() {
            self.conversions.push_back(waiter);
        } else {
            self.requests.push_back(waiter);
        }
        Ok(RequestOutcome::Queued(ticket))
    }

    /// Drops everything `owner` holds or waits for here. Returns whether
    /// there was anything, and the requests this granted.
    pub(crate) fn release(&mut self, owner: Owner) -> (bool, Vec<Woken>) {
        let before = self.holders.len() + self.waiter_count();
        self.holders.retain(|held| held.holder != HolderId::Owner(owner));
        self.conversions.retain(|waiter| waiter.ticket.owner() != owner);
        self.requests.retain(|waiter| waiter.ticket.owner() != owner);
        let changed = self.holders.len() + self.waiter_count() != before;
        let woken = if changed { self.grant_waiters() } else { Vec::new() };
        (changed, woken)
    }

    /// Withdraws the queued request with this ticket number. `None` if it
    /// was not waiting (already granted, cancelled or released).
    pub(crate) fn cancel(&mut self, ticket_id: u64) -> Option<Vec<Woken>> {
        let in_conversions = self
            .conversions
            .iter()
            .position(|waiter| waiter.ticket.id() == ticket_id);
        if let Some(index) = in_conversions {
            self.conversions.remove(index);
        } else {
            let index = self
                .requests
                .iter()
                .position(|waiter| waiter.ticket.id() == ticket_id)?;
            self.requests.remove(index);
        }
        Some(self.grant_waiters())
    }

    /// Applies the failure of `node`: its queued requests are cancelled, its
    /// S and IS locks dropped, and its write locks merged into one retained
    /// lock (merged with any retained lock the node already has here).
    pub(crate) fn fail_node(&mut self, node: NodeId) -> NodeFailure {
        let mut cancelled = Vec::new();
        for queue in [&mut self.conversions, &mut self.requests] {
            queue.retain(|waiter| {
                let keep = waiter.ticket.owner().node != node;
                if !keep {
                    cancelled.push(waiter.ticket);
                }
                keep
            });
        }
        let mut retained = self.held_by(HolderId::Retained(node));
        self.holders.retain(|held| match held.holder {
            HolderId::Owner(owner) if owner.node == node => {
                if held.mode.is_write() {
                    // Every holder is compatible with every other, and the
                    // supremum of compatible modes is compatible with
                    // whatever both were, so the merge conflicts with nobody.
                    retained = Some(retained.map_or(held.mode, |mode| mode.supremum(held.mode)));
                }
                false
            }
            _ => true,
        });
        let mut refused = Vec::new();
        if let Some(mode) = retained {
            self.hold(HolderId::Retained(node), mode);
            for queue in [&mut self.conversions, &mut self.requests] {
                queue.retain(|waiter| {
                    let keep = !waiter.live_only || mode.compatible(waiter.mode);
                    if !keep {
                        refused.push(waiter.ticket);
                    }
                    keep
                });
            }
        }
        let woken = self.grant_waiters();
        NodeFailure {
            cancelled,
            refused,
            retained,
            woken,
        }
    }

    /// Frees the retained lock of `node`. Returns its mode if there was one.
    pub(crate) fn release_retained(&mut self, node: NodeId) -> Option<(LockMode, Vec<Woken>)> {
        let mode = self.held_by(HolderId::Retained(node))?;
        self.holders.retain(|held| held.holder != HolderId::Retained(node));
        Some((mode, self.grant_waiters()))
    }

    /// Hands the retained lock of `node` to `owner`, a transaction of the
    /// restarted node. If `owner` already holds the resource the modes are
    /// merged; if it waits for it, the wait becomes a conversion from the
    /// reclaimed mode. Returns the reclaimed mode if there was one.
    pub(crate) fn reclaim_retained(&mut self, node: NodeId, owner: Owner) -> Option<(LockMode, Vec<Woken>)> {
        let mode = self.held_by(HolderId::Retained(node))?;
        self.holders.retain(|held| held.holder != HolderId::Retained(node));
        let me = HolderId::Owner(owner);
        let held = self.held_by(me).map_or(mode, |held| held.supremum(mode));
        self.hold(me, held);
        if let Some(index) = self.requests.iter().position(|waiter| waiter.ticket.owner() == owner) {
            if let Some(waiter) = self.requests.remove(index) {
                self.conversions.push_back(waiter);
            }
        }
        if let Some(waiter) = self
            .conversions
            .iter_mut()
            .find(|waiter| waiter.ticket.owner() == owner)
        {
            waiter.mode = waiter.mode.supremum(held);
        }
        // A wait the reclaimed mode already satisfies is granted (and
        // reported) by this pass, like any other conversion.
        Some((mode, self.grant_waiters()))
    }

    /// Adds a retained lock restored from a durable record. Refused if it
    /// conflicts with another holder.
    pub(crate) fn restore_retained(&mut self, node: NodeId, mode: LockMode) -> Result<LockMode, ()> {
        let me = HolderId::Retained(node);
        let merged = self.held_by(me).map_or(mode, |held| held.supremum(mode));
        if !self.grantable(me, merged) {
            return Err(());
        }
        self.hold(me, merged);
        Ok(merged)
    }

    /// Grants every waiter the rules allow, conversions first.
    fn grant_waiters(&mut self) -> Vec<Woken> {
        let mut woken = Vec::new();
        // Granting a conversion only strengthens a holder, which can never
        // unblock an earlier conversion, so one pass in order suffices.
        let mut index = 0;
        while let Some(waiter) = self.conversions.get(index).copied() {
            let me = HolderId::Owner(waiter.ticket.owner());
            if self.grantable(me, waiter.mode) {
                self.hold(me, waiter.mode);
                self.conversions.remove(index);
                woken.push(Woken {
                    ticket: waiter.ticket,
                    held: waiter.mode,
                });
            } else {
                index += 1;
            }
        }
        if !self.conversions.is_empty() {
            return woken;
        }
        while let Some(waiter) = self.requests.front().copied() {
            let me = HolderId::Owner(waiter.ticket.owner());
            if !self.grantable(me, waiter.mode) {
                break;
            }
            self.requests.pop_front();
            self.hold(me, waiter.mode);
            woken.push(Woken {
                ticket: waiter.ticket,
                held: waiter.mode,
            });
        }
        woken
    }

    /// The wait-for edges of this resource's waiters: each waits for the
    /// live holders it conflicts with; a new request also waits for the
    /// request queued just before it (strict FIFO makes that transitive) or,
    /// if it is the first, for every waiting conversion. Retained holders
    /// give no edge: they are released by recovery, not by a transaction, so
    /// no cycle can run through them.
    pub(crate) fn wait_edges(&self, resource: ResourceId, out: &mut Vec<WaitEdge>) {
        let mut edge = |waiter: &Waiter, holder: Owner| {
            if holder != waiter.ticket.owner() {
                out.push(WaitEdge {
                    waiter: waiter.ticket.owner(),
                    ticket: waiter.ticket,
                    holder,
                    resource,
                });
            }
        };
        for waiter in &self.conversions {
            for held in self.blockers(HolderId::Owner(waiter.ticket.owner()), waiter.mode) {
                if let HolderId::Owner(holder) = held.holder {
                    edge(waiter, holder);
                }
            }
        }
        let mut previous: Option<&Waiter> = None;
        for waiter in &self.requests {
            for held in self.blockers(HolderId::Owner(waiter.ticket.owner()), waiter.mode) {
                if let HolderId::Owner(holder) = held.holder {
                    edge(waiter, holder);
                }
            }
            match previous {
                Some(before) => edge(waiter, before.ticket.owner()),
                None => {
                    for conversion in &self.conversions {
                        edge(waiter, conversion.ticket.owner());
                    }
                }
            }
            previous = Some(waiter);
        }
    }

    pub(crate) fn snapshot(&self) -> ResourceSnapshot {
        let waiting = |conversion: bool| {
            move |waiter: &Waiter| WaitingRequest {
                ticket: waiter.ticket,
                mode: waiter.mode,
                conversion,
            }
        };
        ResourceSnapshot {
            holders: self.holders.clone(),
            waiters: self
                .conversions
                .iter()
                .map(waiting(true))
                .chain(self.requests.iter().map(waiting(false)))
                .collect(),
        }
    }

    /// Checks the invariants the rules above maintain; `Err` names the first
    /// one broken.
    pub(crate) fn check(&self, resource: ResourceId) -> Result<(), String> {
        for (i, a) in self.holders.iter().enumerate() {
            for b in self.holders.iter().skip(i + 1) {
                if a.holder == b.holder {
                    return Err(format!("{resource}: {:?} holds twice", a.holder));
                }
                if !a.mode.compatible(b.mode) {
                    return Err(format!("{resource}: {a:?} and {b:?} are incompatible"));
                }
            }
        }
        let mut owners = std::collections::BTreeSet::new();
        for waiter in self.conversions.iter().chain(&self.requests) {
            if !owners.insert(waiter.ticket.owner()) {
                return Err(format!("{resource}: {} waits twice", waiter.ticket.owner()));
            }
            if waiter.ticket.resource() != resource {
                return Err(format!("{resource}: {} is queued on the wrong resource", waiter.ticket));
            }
        }
        for waiter in &self.conversions {
            let me = HolderId::Owner(waiter.ticket.owner());
            match self.held_by(me) {
                Some(held) if waiter.mode.covers(held) && waiter.mode != held => {}
                other => return Err(format!("{resource}: conversion {waiter:?} from {other:?}")),
            }
            if self.grantable(me, waiter.mode) {
                return Err(format!("{resource}: conversion {waiter:?} could be granted"));
            }
        }
        for waiter in &self.requests {
            if self.held_by(HolderId::Owner(waiter.ticket.owner())).is_some() {
                return Err(format!("{resource}: new request {waiter:?} by a holder"));
            }
        }
        if let (true, Some(first)) = (self.conversions.is_empty(), self.requests.front()) {
            if self.grantable(HolderId::Owner(first.ticket.owner()), first.mode) {
                return Err(format!("{resource}: first request {first:?} could be granted"));
            }
        }
        Ok(())
    }
}
