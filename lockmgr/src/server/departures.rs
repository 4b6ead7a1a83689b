//! Members going: a `Leave`, a connection that ended, a node silent past
//! the failure timeout, or one that did not come back after a restart. A
//! node that goes holding write locks fails: they are retained, and every
//! live node hears of it.
//!
//! This file owns the one path by which a member goes (`member_gone`). It
//! must never drop a retained lock, and never let the locks a departure
//! freed be granted before the record of the departure is durable.

use std::sync::Arc;

use super::session::{Request, Session};
use super::state::Shared;
use crate::ids::NodeId;
use crate::membership::Liveness;
use crate::sync::lock_std;
use crate::wire::{EventKind, Msg};

/// How a member went (see `Shared::member_gone`).
pub(super) enum Gone {
    /// Failed; `blind`: with its locks unknown (it did not come back after
    /// a coordinator restart).
    Failed { blind: bool },
    /// Left by `Leave`.
    Left,
}

impl Shared {
    /// `Leave`: the member goes without failing (unless it holds write
    /// locks); the connection closes after the answer (`false`).
    pub(super) fn on_leave(&self, req: &Request) -> bool {
        let Some(member) = req.member else {
            req.reply(Msg::Ok);
            return false;
        };
        lock_std(&self.sessions).remove(&req.node);
        self.member_gone(req.node, member.incarnation, Gone::Left);
        req.reply(Msg::Ok);
        false
    }

    /// A member's connection ended: if it is still the node's current
    /// session, the node has failed.
    pub(super) fn connection_lost(&self, node: NodeId, session: &Arc<Session>) {
        let current = {
            let mut sessions = lock_std(&self.sessions);
            match sessions.get(&node) {
                Some(s) if Arc::ptr_eq(s, session) => {
                    sessions.remove(&node);
                    true
                }
                _ => false,
            }
        };
        if current {
            self.member_gone(node, session.incarnation, Gone::Failed { blind: false });
        }
    }

    /// A member goes, by failing or by leaving: its S/IS locks go, its
    /// write locks are retained, its registrations as a counterpart are
    /// dropped (the nodes it was recovering are announced failed again, for
    /// another counterpart). A node that leaves holding no write lock is
    /// recovered at once; one that leaves holding some needs recovery like
    /// a failed one. Every live node hears of a failure, and the record is
    /// made durable; only then are the locks the departure freed granted.
    ///
    /// The announcement goes before the record's sync, which would
    /// otherwise delay every recovery by a device flush. That is safe:
    /// should this coordinator die before the record is durable, its
    /// successor restores the node as live, and as it never rejoins it is
    /// declared failed with its locks unknown — nothing is granted until a
    /// counterpart has recovered it again (recovery is idempotent), so the
    /// work of a counterpart that started on the announcement is never
    /// exposed. What is never sent before the record is durable is a grant.
    pub(super) fn member_gone(&self, node: NodeId, incarnation: u64, how: Gone) {
        let member_guard = lock_std(&self.member_changes);
        // A departure is of one live incarnation: a newer one is not failed
        // by it, and one that already went (its connection ended and its
        // lease ran out, say) does not go twice.
        match self.registry.status(node) {
            Some(s) if s.incarnation == incarnation && s.liveness == Liveness::Live => {}
            _ => return,
        }
        let report = self.table.node_failed(node);
        let failed = !matches!(how, Gone::Left) || !report.retained.is_empty();
        let gone = if failed {
            self.registry.node_failed(node)
        } else {
            self.registry.leave(node)
        };
        let orphaned = gone.unwrap_or_else(|e| {
            // Checked live above, under the same lock: cannot happen.
            tracing::error!(node, error = %e, "departure of a node that is not live");
            Vec::new()
        });
        self.forget_waits(&report.cancelled);
        self.refuse_retained(node, &report.refused);
        lock_std(&self.grants).retain(|_, g| g.counterpart() != node);
        let blind = matches!(how, Gone::Failed { blind: true });
        if blind {
            lock_std(&self.blind).insert(node);
        }
        let wanted = lock_std(&self.restart_wanted).contains(&node);
        if failed {
            self.broadcast(EventKind::NodeFailed, node, incarnation);
            // Kept until served; with no member to launch it now, the
            // first one admitted gets it (see `announce`).
            if wanted {
                self.send_restart(node, incarnation);
            }
        } else {
            lock_std(&self.restart_wanted).remove(&node);
        }
        for &orphan in &orphaned {
            let inc = self.registry.status(orphan).map_or(0, |s| s.incarnation);
            self.broadcast(EventKind::NodeFailed, orphan, inc);
        }
        self.persist();
        drop(member_guard);
        self.notify(report.woken);
        if failed {
            tracing::warn!(node, retained = report.retained.len(), blind, "node declared failed");
        }
    }
}
