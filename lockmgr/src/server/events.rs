//! Events the coordinator pushes to every admitted member: a node joined,
//! failed, was recovered, or is asked to restart.
//!
//! This file owns the fan-out of an event to the sessions; it must never
//! decide when an event is due (the paths that change membership and
//! recovery do), nor reach a connection not yet welcomed (admission makes a
//! session visible only after its `Welcome`).

use std::sync::Arc;

use super::session::Session;
use super::state::Shared;
use crate::ids::NodeId;
use crate::sync::lock_std;
use crate::wire::{EventKind, Msg};

impl Shared {
    /// Sends the event to every member admitted now.
    pub(super) fn broadcast(&self, kind: EventKind, node: NodeId, incarnation: u64) {
        let sessions: Vec<Arc<Session>> = lock_std(&self.sessions).values().cloned().collect();
        let event = Msg::Event {
            kind,
            node,
            incarnation,
        };
        for s in sessions {
            s.conn.send(0, &event);
        }
    }
}
