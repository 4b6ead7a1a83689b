//! What the coordinator sends the node: the reader thread of a socket
//! connection, and the in-process hand-over ([`LocalClient`]), both passing
//! each frame to `dispatch` — an event to the node's channel, a heartbeat's
//! answer to the lease, any other reply to the request that waits for it.
//!
//! This file owns the end of the connection as the node sees it: unless
//! the client rides through it (`rejoin`), the lease goes with it and every
//! waiting request learns it. It must never write to the coordinator.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use super::events::ClientEvent;
use super::link::Link;
use super::state::Inner;
use crate::server::LocalPeer;
use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, Msg};

/// Hands what an in-process coordinator sends to the client; weak, so the
/// coordinator's side does not keep a dropped client alive.
pub(super) struct LocalClient(pub(super) Weak<Inner>);

impl LocalPeer for LocalClient {
    fn deliver(&self, request_id: u64, msg: Msg) {
        if let Some(inner) = self.0.upgrade() {
            inner.dispatch(request_id, msg);
        }
    }

    fn closed(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.connection_closed();
        }
    }
}

impl Inner {
    pub(super) fn read_loop(&self, mut reader: Stream) {
        loop {
            // Replies the coordinator wrote together are read with one call.
            let mut buffered = std::io::BufReader::with_capacity(wire::READ_BUFFER, reader);
            while let Ok(Some((id, msg))) = wire::read_frame(&mut buffered) {
                self.dispatch(id, msg);
            }
            // Every answer read before the end has been dispatched (a grant
            // is in the ledger) before the client rejoins.
            match self.ride_through_drop() {
                Some(next) => reader = next,
                None => break,
            }
        }
        self.connection_closed();
    }

    /// A frame from the coordinator: an event, a heartbeat's answer, or the
    /// reply someone waits for (none for a request that wanted none).
    pub(super) fn dispatch(&self, id: u64, msg: Msg) {
        match (id, msg) {
            (
                0,
                Msg::Event {
                    kind,
                    node,
                    incarnation,
                },
            ) => self.events.emit(ClientEvent::Coordinator {
                kind,
                node,
                incarnation,
            }),
            (id, msg) => {
                if let Some(sent_at) = lock_std(&self.heartbeats).remove(&id) {
                    if msg == Msg::Ok {
                        self.extend_lease(sent_at);
                    }
                } else if let Some(p) = lock_std(&self.pending).remove(&id) {
                    // Into the ledger before anyone can learn of the grant.
                    if let (Msg::Granted { mode, .. }, Some(Msg::Lock { txn, resource, .. })) = (&msg, &p.resend) {
                        self.held.granted(*txn, *resource, *mode);
                    }
                    let _ = p.tx.send(msg);
                }
            }
        }
    }

    /// The connection is gone for good: the lease with it.
    pub(super) fn connection_closed(&self) {
        self.closed.store(true, Ordering::Release);
        if let Link::Socket(_) = &self.link {
            // Writers waiting for a connection give up.
            self.link.shut();
        }
        // Waiters see their channel close and report Disconnected.
        lock_std(&self.pending).clear();
        self.lose_lease();
        self.events.emit(ClientEvent::Disconnected);
    }
}
