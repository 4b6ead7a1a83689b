//! What a member just admitted is told, and where restart requests go.
//!
//! A failed node waits for a counterpart only as long as no live member
//! has heard of its failure: one that failed while no node was live, or
//! that a restarted coordinator restored from its record as failed, would
//! otherwise wait for an operator. So each member admitted (joined,
//! restarted or rejoined) hears a `NodeFailed` event for every failed node
//! still without a counterpart, and races to recover it like any other.
//!
//! A restart request goes to one member only, one that launches restarts
//! (it said so in its `Hello`): the lowest id among them. If none is live
//! when the node fails, the request waits in the durable record and goes to
//! the first such member admitted.
//!
//! This file owns those announcements. It must never change membership,
//! recovery status or the record: it only tells.

use std::sync::Arc;

use super::session::Session;
use super::state::Shared;
use crate::ids::NodeId;
use crate::membership::Liveness;
use crate::registry::RecoveryStatus;
use crate::sync::lock_std;
use crate::wire::{EventKind, Msg};

impl Shared {
    /// Tells `node`, admitted on `session`, of the failed nodes still to
    /// recover, and, if restart requests go to it, of the restarts due.
    pub(super) fn announce_to(&self, node: NodeId, session: &Session) {
        let statuses = self.registry.statuses();
        let waiting = statuses.iter().filter(|(n, st)| {
            *n != node && st.liveness == Liveness::Failed && st.recovery == Some(RecoveryStatus::Inactive)
        });
        for (failed, st) in waiting {
            session.conn.send(
                0,
                &Msg::Event {
                    kind: EventKind::NodeFailed,
                    node: *failed,
                    incarnation: st.incarnation,
                },
            );
        }
        let wanted: Vec<NodeId> = lock_std(&self.restart_wanted).iter().copied().collect();
        for target in wanted {
            let Some(st) = statuses.iter().find(|(n, _)| *n == target).map(|(_, st)| st) else {
                continue;
            };
            let due = st.liveness == Liveness::Failed && st.recovery != Some(RecoveryStatus::Recovered);
            if due && self.launcher(target).is_some_and(|(l, _)| l == node) {
                session.conn.send(
                    0,
                    &Msg::Event {
                        kind: EventKind::RestartRequested,
                        node: target,
                        incarnation: st.incarnation,
                    },
                );
            }
        }
    }

    /// The live member restart requests for `target` go to: the lowest id
    /// among those that launch restarts, other than `target`.
    pub(super) fn launcher(&self, target: NodeId) -> Option<(NodeId, Arc<Session>)> {
        lock_std(&self.sessions)
            .iter()
            .filter(|(n, s)| **n != target && s.launches_restarts)
            .min_by_key(|(n, _)| **n)
            .map(|(n, s)| (*n, s.clone()))
    }

    /// Sends `target`'s restart request (of its incarnation `incarnation`)
    /// to the member that launches restarts; `false` if none is live.
    pub(super) fn send_restart(&self, target: NodeId, incarnation: u64) -> bool {
        let Some((_, session)) = self.launcher(target) else {
            return false;
        };
        session.conn.send(
            0,
            &Msg::Event {
                kind: EventKind::RestartRequested,
                node: target,
                incarnation,
            },
        );
        true
    }
}
