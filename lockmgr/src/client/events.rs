//! What the coordinator (or the connection) tells the node unasked
//! ([`ClientEvent`]), and the channel that carries it to the node.
//!
//! This file owns the events' channel; it must never decide that an event
//! happened (the reader and the lease do).

use std::sync::mpsc::Sender;
use std::sync::Mutex;

use crate::ids::NodeId;
use crate::sync::lock_std;
use crate::wire::EventKind;

/// What the coordinator (or the connection) tells the node unasked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An event the coordinator pushed to every member.
    Coordinator {
        /// What happened.
        kind: EventKind,
        /// The node it happened to.
        node: NodeId,
        /// That node's incarnation it happened to.
        incarnation: u64,
    },
    /// The lease is about to lapse or has: stop writing.
    LeaseLost,
    /// The connection to the coordinator is gone for good (with the lease:
    /// `LeaseLost` comes too, unless the node ended it itself).
    Disconnected,
    /// The connection dropped and the client is rejoining while its lease
    /// holds ([`ClientConfig::ride_through`](super::ClientConfig::ride_through)).
    CoordinatorLost,
    /// The client rejoined a coordinator and re-asserted its locks, `gap`
    /// after the connection dropped.
    Reconnected {
        /// From the drop being found to the locks re-asserted.
        gap: std::time::Duration,
    },
}

/// The sending end of [`Client::events`](super::Client::events).
pub(super) struct Events(pub(super) Mutex<Option<Sender<ClientEvent>>>);

impl Events {
    /// Hands `e` to the node, if it still listens.
    pub(super) fn emit(&self, e: ClientEvent) {
        if let Some(tx) = lock_std(&self.0).as_ref() {
            let _ = tx.send(e);
        }
    }
}
