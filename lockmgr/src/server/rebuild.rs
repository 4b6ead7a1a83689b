//! Rebuilding the retained locks of a node whose locks were unknown
//! ("blind": it failed while no coordinator knew them, see the module docs
//! of [`server`](super)).
//!
//! Its counterpart has read its private log: the in-flight transactions'
//! undo records name every page it changed, and only those pages can hold
//! its uncommitted work (a transaction's pages stay X-locked until its
//! commit or end record is durable). `RebuildRetained` makes those locks
//! the node's retained locks and ends the pause every lock request took
//! while the node was blind: from then on only its own pages are refused,
//! as for any failed node, until its recovery releases them.
//!
//! This file owns that hand-over. It must never take a node out of the
//! blind set before its locks are in the table and the record, and never
//! for anyone but the node's registered counterpart.

use super::refusal::lock_error;
use super::session::Request;
use super::state::Shared;
use crate::ids::{NodeId, ResourceId};
use crate::mode::LockMode;
use crate::sync::lock_std;
use crate::wire::Msg;

impl Shared {
    /// `RebuildRetained` from `failed`'s counterpart (grant `token`).
    pub(super) fn on_rebuild_retained(
        &self,
        req: &Request,
        failed: NodeId,
        token: u64,
        locks: &[(ResourceId, LockMode)],
    ) {
        if self
            .registration(req, failed, |g| g.token() == token && g.counterpart() == req.node)
            .is_none()
        {
            return;
        }
        let member_guard = lock_std(&self.member_changes);
        if !lock_std(&self.blind).contains(&failed) {
            // Its locks are known: nothing to rebuild.
            drop(member_guard);
            req.reply(Msg::Ok);
            return;
        }
        match self.table.retain_rebuilt(failed, locks) {
            Ok(()) => {
                lock_std(&self.blind).remove(&failed);
                self.persist();
                drop(member_guard);
                tracing::info!(failed, locks = locks.len(), "retained locks rebuilt from the log");
                req.reply(Msg::Ok);
            }
            Err(e) => {
                drop(member_guard);
                tracing::warn!(failed, error = %e, "rebuilt locks conflict; the node stays blind");
                req.reply(lock_error(&e));
            }
        }
    }
}
