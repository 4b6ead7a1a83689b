//! What a node or an operator may ask about the cluster: `Status` (every
//! member and its state) and `ListRetained` (a failed node's retained
//! locks).
//!
//! This file only reads the coordinator's state; it must never change it.

use super::session::Request;
use super::state::Shared;
use crate::ids::NodeId;
use crate::membership::Liveness;
use crate::registry::RecoveryStatus;
use crate::wire::{MemberInfo, Msg};

impl Shared {
    /// `Status`: every member as [`MemberInfo`].
    pub(super) fn on_status(&self, req: &Request) {
        let members = self
            .registry
            .statuses()
            .into_iter()
            .map(|(node, st)| {
                let (recovery, counterpart) = match st.recovery {
                    None => (0, 0),
                    Some(RecoveryStatus::Inactive) => (1, 0),
                    Some(RecoveryStatus::Active { counterpart }) => (2, counterpart),
                    Some(RecoveryStatus::Recovered) => (3, 0),
                };
                MemberInfo {
                    node,
                    live: st.liveness == Liveness::Live,
                    incarnation: st.incarnation,
                    recovery,
                    counterpart,
                    retained_locks: self.table.retained(node).len() as u32,
                }
            })
            .collect();
        req.reply(Msg::StatusReply { members });
    }

    /// `ListRetained` of `target`.
    pub(super) fn on_list_retained(&self, req: &Request, target: NodeId) {
        req.reply(Msg::RetainedList {
            locks: self.table.retained(target),
        });
    }
}
