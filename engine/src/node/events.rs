//! The node's event thread: what the coordinator tells a node and how the
//! node answers.
//!
//! - The lease is lost: the node stops writing (see
//!   [`crate::node::state`]). A dropped connection alone stops nothing: the
//!   client rejoins the restarted (or standby) coordinator while the lease
//!   holds and re-asserts the node's locks (`lockmgr::client`), and the
//!   node's transactions carry on; only a client that cannot rejoin in time
//!   loses the lease, and that stops the node.
//! - A peer failed: with automatic recovery on, a recovery of it starts on
//!   a thread of its own ([`crate::peer`]); every live node races, and the
//!   coordinator's registry lets exactly one win.
//! - An operator asks this node to recover a failed one (`recover --by`):
//!   it recovers it, automatic recovery or not.
//! - A restart of a failed node is requested: the coordinator sends it to
//!   one node that launches restarts, and [`crate::restart`] launches it.
//!
//! The thread holds only a weak reference to the node's state, so it never
//! keeps a closed node alive; it ends when the client's event stream does.

use std::sync::Arc;
use std::time::Instant;

use lockmgr::{ClientEvent, EventKind};

use crate::node::state::NodeState;

/// Starts the event thread of `node`.
pub(super) fn watch(node: &Arc<NodeState>) {
    let Some(rx) = node.client.events() else { return };
    let weak = Arc::downgrade(node);
    let _ = std::thread::Builder::new()
        .name(format!("node-events-{}", node.node_id))
        .spawn(move || {
            while let Ok(ev) = rx.recv() {
                let Some(node) = weak.upgrade() else { return };
                match ev {
                    ClientEvent::LeaseLost => {
                        node.stop(crate::node::state::LEASE_LOST);
                        let then = crate::sync::lock(&node.on_lease_lost).take();
                        if let Some(rejoin) = then {
                            rejoin();
                        }
                    }
                    ClientEvent::Reconnected { gap } => {
                        tracing::info!(
                            node = node.node_id,
                            gap_ms = gap.as_millis() as u64,
                            "rode through a coordinator restart"
                        );
                    }
                    ClientEvent::Coordinator {
                        kind: EventKind::NodeFailed,
                        node: failed,
                        ..
                    } if failed != node.node_id && node.opts.auto_recovery && node.check_running().is_ok() => {
                        let detected = Instant::now();
                        let _ = std::thread::Builder::new()
                            .name(format!("peer-recovery-{failed}"))
                            .spawn(move || crate::peer::auto_recover(&node, failed, detected));
                    }
                    // An operator's `recover --by`: this node was asked,
                    // automatic recovery or not.
                    ClientEvent::Coordinator {
                        kind: EventKind::RecoveryAsked,
                        node: failed,
                        ..
                    } if failed != node.node_id && node.check_running().is_ok() => {
                        let detected = Instant::now();
                        let _ = std::thread::Builder::new()
                            .name(format!("peer-recovery-{failed}"))
                            .spawn(move || crate::peer::asked_recover(&node, failed, detected));
                    }
                    ClientEvent::Coordinator {
                        kind: EventKind::RestartRequested,
                        node: failed,
                        ..
                    } => crate::restart::on_request(&node, failed),
                    // The end of the connection (`Disconnected`) comes with
                    // the lease's when the node did not end it itself.
                    _ => {}
                }
            }
        });
}
