//! Restarts of nodes: `RequestRestart` files a request that a node be
//! restarted light (sent now if it has failed, else when it fails), and
//! `RestartFinished` ends a restarting node's recovery of itself, releasing
//! the locks it took back on admission ([`RESTART_TXN`]).
//!
//! A request is kept in the durable record until it is served (the node is
//! admitted again, or recovered), and goes to a member that launches
//! restarts (see `announce`); with none live, it is refused
//! (`NoRestarter`), so nobody files a request that nobody can act on.
//!
//! This file files the restart requests (`departures` sends them when the
//! node fails). It must never release a node's reclaimed locks before that
//! node says its own recovery is done.

use super::refusal::{error_msg, NO_RESOURCE};
use super::session::Request;
use super::state::Shared;
use crate::ids::{NodeId, Owner};
use crate::membership::Liveness;
use crate::registry::RecoveryStatus;
use crate::sync::lock_std;
use crate::wire::{ErrorCode, EventKind, Msg, Purpose};

/// The transaction id under which a restarting node holds its reclaimed
/// locks until it reports `RestartFinished`.
pub const RESTART_TXN: u64 = u64::MAX;

impl Shared {
    /// `RequestRestart` of `target`.
    pub(super) fn on_request_restart(&self, req: &Request, target: NodeId) {
        // A failed node's restart is sent now; a live node's is kept and
        // sent when it fails, so a node can file its own in advance ("if
        // I die, restart me light").
        let _member_guard = lock_std(&self.member_changes);
        let Some(s) = self.registry.status(target) else {
            req.reply(error_msg(ErrorCode::UnknownNode, target, NO_RESOURCE, "no such node"));
            return;
        };
        if self.launcher(target).is_none() {
            req.reply(error_msg(
                ErrorCode::NoRestarter,
                target,
                NO_RESOURCE,
                "no live node launches restarts; start one that does (`understudy node`) and ask again",
            ));
            return;
        }
        let recovered = s.recovery == Some(RecoveryStatus::Recovered);
        if !(s.liveness == Liveness::Failed && recovered) {
            lock_std(&self.restart_wanted).insert(target);
            // Durable before it is acknowledged.
            self.persist();
        }
        req.reply(Msg::Ok);
        if s.liveness == Liveness::Failed {
            self.send_restart(target, s.incarnation);
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
