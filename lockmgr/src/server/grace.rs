//! After a restart of the coordinator: the grace period in which the nodes
//! that were live rejoin and re-assert their locks (`Reassert`), its end,
//! which fails the nodes that stayed away with their locks unknown
//! ("blind"), and the gate that refuses every lock request meanwhile and
//! while a blind node's locks are neither rebuilt from its log nor
//! recovered (see the module docs of [`server`](super) and `rebuild`).
//!
//! This file owns the awaited set and the gate. It must never let a lock
//! be granted over one that is not re-asserted yet or that a blind node may
//! hold, and re-assertion must never be a way around the gate.

use std::time::Instant;

use super::departures::Gone;
use super::refusal::{error_msg, NO_RESOURCE};
use super::session::Request;
use super::state::Shared;
use crate::error::LockError;
use crate::ids::{Owner, ResourceId};
use crate::queue::{RequestOutcome, WaitPolicy};
use crate::sync::lock_std;
use crate::wire::{ErrorCode, HeldLock, Msg, Purpose};

impl Shared {
    /// Refusals that apply to every lock request: after a restart until the
    /// live nodes re-asserted their locks, and while a blind node is
    /// unrecovered (see the module docs of [`server`](super)).
    pub(super) fn lock_gate(&self, resource: ResourceId) -> Option<Msg> {
        if !lock_std(&self.awaiting).0.is_empty() {
            return Some(error_msg(
                ErrorCode::CoordinatorRecovering,
                0,
                resource,
                "coordinator restarted; waiting for live nodes to re-assert their locks",
            ));
        }
        if let Some(&blind) = lock_std(&self.blind).iter().next() {
            return Some(error_msg(
                ErrorCode::Retained,
                blind,
                resource,
                "a failed node's locks are unknown until it is recovered",
            ));
        }
        None
    }

    /// `Reassert`: the locks a node rejoining after a coordinator restart
    /// held before it.
    pub(super) fn on_reassert(&self, req: &Request, locks: Vec<HeldLock>) {
        let node = req.node;
        // Only a node rejoining after a coordinator restart, and only
        // once: re-assertion is no way around the restart gate.
        if req.purpose != Purpose::Rejoin || !lock_std(&self.awaiting).0.contains(&node) {
            req.reply(error_msg(
                ErrorCode::Refused,
                node,
                NO_RESOURCE,
                "only a node rejoining after a coordinator restart re-asserts locks",
            ));
            return;
        }
        let mut refused = None;
        let mut stale = false;
        for l in locks {
            let owner = Owner::new(node, l.txn);
            let mut outcome = self.table.request(owner, l.resource, l.mode, WaitPolicy::NoWait);
            // A lock a live node held before the restart that
            // conflicts with a retained lock of the record proves
            // the record older than that lock's release: no lock
            // conflicting with a retained one is ever granted while
            // it is retained, and a release is made durable only
            // after it is answered (see `UnregisterCounterpart`).
            // The recovery that released it had made its end records
            // durable first, so the lock is dropped; the node's other
            // retained locks stay until it is recovered again, which
            // then finds nothing to do. Each round frees another
            // failed node's lock here, once.
            let mut dropped = Vec::new();
            while let Err(LockError::Retained { node: failed, .. }) = outcome {
                if dropped.contains(&failed) {
                    break;
                }
                dropped.push(failed);
                let woken = self.table.release_stale_retained(failed, l.resource);
                self.notify(woken);
                stale = true;
                outcome = self.table.request(owner, l.resource, l.mode, WaitPolicy::NoWait);
            }
            match outcome {
                Ok(RequestOutcome::Granted { .. }) => {}
                Ok(RequestOutcome::Queued(t)) => {
                    self.table.cancel(t);
                    refused.get_or_insert(l.resource);
                }
                Err(_) => {
                    refused.get_or_insert(l.resource);
                }
            }
        }
        lock_std(&self.awaiting).0.remove(&node);
        if stale {
            self.persist();
        }
        match refused {
            None => req.reply(Msg::Ok),
            Some(r) => req.reply(error_msg(ErrorCode::Conflict, node, r, "re-asserted lock conflicts")),
        }
    }

    /// Fails at once the awaited nodes known not to be running
    /// ([`CoordinatorConfig::departed`](super::CoordinatorConfig::departed)),
    /// as [`Shared::end_grace`] fails the late ones; the grace period ends
    /// if no other node is awaited.
    pub(super) fn fail_departed(&self) {
        // Held until they are failed, for the reason `end_grace` gives.
        let mut awaiting = lock_std(&self.awaiting);
        for &node in &self.cfg.departed {
            if !awaiting.0.remove(&node) {
                continue;
            }
            tracing::info!(
                node,
                "known to have stopped before the coordinator restarted; failed at once"
            );
            self.fail_blind(node);
        }
        if awaiting.0.is_empty() {
            awaiting.1 = None;
        }
    }

    /// Ends the grace period once its deadline has passed: the live nodes
    /// that did not re-assert their locks fail, blind.
    pub(super) fn end_grace(&self, now: Instant) {
        // Held until the late nodes are failed. `lock_gate` lets lock
        // requests through once the awaited set is empty; were it emptied
        // first and the late nodes made blind after, a request in between
        // would be granted over their unknown locks. Requests and admissions
        // that need this lock wait for the failures (a record write each)
        // instead; no path takes it while holding a lock `member_gone` takes.
        let mut awaiting = lock_std(&self.awaiting);
        match awaiting.1 {
            Some(deadline) if now >= deadline => awaiting.1 = None,
            _ => return,
        }
        let late = std::mem::take(&mut awaiting.0);
        for node in late {
            tracing::warn!(
                node,
                "did not come back after the coordinator restarted; its locks are unknown"
            );
            self.fail_blind(node);
        }
    }

    /// Fails an awaited node with its locks unknown; called with the
    /// awaited set held (see [`Shared::end_grace`]). A node that rejoined
    /// but never re-asserted is treated like one that stayed away: its
    /// connection is closed.
    fn fail_blind(&self, node: crate::ids::NodeId) {
        if let Some(s) = lock_std(&self.sessions).remove(&node) {
            s.conn.close();
        }
        let inc = self.registry.status(node).map_or(0, |s| s.incarnation);
        self.member_gone(node, inc, Gone::Failed { blind: true });
    }
}
