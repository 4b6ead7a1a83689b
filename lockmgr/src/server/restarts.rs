//! Restarts of nodes: `RequestRestart` files a request that a node be
//! restarted light (announced now if it has failed, else when it fails),
//! and `RestartFinished` ends a restarting node's recovery of itself,
//! releasing the locks it took back on admission ([`RESTART_TXN`]).
//!
//! This file files the restart requests of live nodes (`departures`
//! announces them when the node fails). It must never release a node's
//! reclaimed locks before that node says its own recovery is done.

use super::refusal::{error_msg, NO_RESOURCE};
use super::session::Request;
use super::state::Shared;
use crate::ids::{NodeId, Owner};
use crate::membership::Liveness;
use crate::sync::lock_std;
use crate::wire::{ErrorCode, EventKind, Msg, Purpose};

/// The transaction id under which a restarting node holds its reclaimed
/// locks until it reports `RestartFinished`.
pub const RESTART_TXN: u64 = u64::MAX;

impl Shared {
    /// `RequestRestart` of `target`.
    pub(super) fn on_request_restart(&self, req: &Request, target: NodeId) {
        // A failed node's restart is announced now; a live node's is
        // kept and announced when it fails, so a node can file its
        // own in advance ("if I die, restart me light").
        let _member_guard = lock_std(&self.member_changes);
        match self.registry.status(target) {
            None => req.reply(error_msg(ErrorCode::UnknownNode, target, NO_RESOURCE, "no such node")),
            Some(s) if s.liveness == Liveness::Failed => {
                req.reply(Msg::Ok);
                self.broadcast(EventKind::RestartRequested, target, s.incarnation);
            }
            Some(_) => {
                lock_std(&self.restart_wanted).insert(target);
                req.reply(Msg::Ok);
            }
        }
    }

    /// `RestartFinished`, only from a node admitted to restart.
    pub(super) fn on_restart_finished(&self, req: &Request) {
        let node = req.node;
        if req.purpose != Purpose::Restart {
            req.reply(error_msg(
                ErrorCode::Refused,
                node,
                NO_RESOURCE,
                "only a restarting node finishes a restart",
            ));
            return;
        }
        // What it took back, its own recovery may have rewritten.
        let owner = Owner::new(node, RESTART_TXN);
        self.values
            .forget(self.table.locks_of(owner).into_iter().map(|(r, _)| r));
        let woken = self.table.release_all(owner);
        // Its own recovery is done: if its locks had been unknown,
        // the cluster need not pause for it any more.
        if lock_std(&self.blind).remove(&node) {
            self.persist();
        }
        self.notify(woken);
        req.reply(Msg::Ok);
        self.broadcast(
            EventKind::RecoveryFinished,
            node,
            req.member.map_or(0, |s| s.incarnation),
        );
    }
}
