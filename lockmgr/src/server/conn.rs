//! One connection's write side: where the answers and events for one node
//! go, a socket or a node in the coordinator's own process ([`LocalPeer`]).
//!
//! This file owns the order in which they go out, their batching
//! ([`Conn::hold`]) and the closing of the connection. It must never read
//! from the connection or decide what to send: the connection's thread
//! reads, the request handlers decide.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, Msg};

/// One connection's write side, shared by the threads that answer on it.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) out: Mutex<Out>,
    pub(super) closed: AtomicBool,
    /// A node in this process ([`Out::Local`]), fixed at creation.
    pub(super) local: bool,
}

/// Where a connection's answers and events go.
pub(super) enum Out {
    /// A socket, with the replies held back while the connection's thread
    /// answers frames it read together (see [`Conn::hold`]).
    Stream {
        stream: Stream,
        held: Vec<u8>,
        holding: bool,
    },
    /// A node in this process ([`LocalLink`](super::LocalLink)): handed
    /// over as they are made. Until the node's client is attached (during
    /// admission) they are kept in `early`.
    Local {
        peer: Option<Arc<dyn LocalPeer>>,
        early: Vec<(u64, Msg)>,
    },
}

impl Conn {
    pub(super) fn new(id: u64, stream: Stream) -> Conn {
        Conn {
            id,
            out: Mutex::new(Out::Stream {
                stream,
                held: Vec::new(),
                holding: false,
            }),
            closed: AtomicBool::new(false),
            local: false,
        }
    }

    pub(super) fn local(id: u64) -> Conn {
        Conn {
            id,
            out: Mutex::new(Out::Local {
                peer: None,
                early: Vec::new(),
            }),
            closed: AtomicBool::new(false),
            local: true,
        }
    }

    pub(super) fn send(&self, request_id: u64, msg: &Msg) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut out = lock_std(&self.out);
        match &mut *out {
            Out::Local { peer: Some(peer), .. } => peer.deliver(request_id, msg.clone()),
            Out::Local { peer: None, early } => early.push((request_id, msg.clone())),
            Out::Stream { stream, held, holding } => {
                let bytes = wire::encode(request_id, msg);
                if *holding {
                    held.extend_from_slice(&bytes);
                    return;
                }
                let failed = if held.is_empty() {
                    stream.write_all(&bytes).is_err()
                } else {
                    held.extend_from_slice(&bytes);
                    let all = std::mem::take(held);
                    stream.write_all(&all).is_err()
                };
                if failed {
                    self.close_out(&mut out);
                }
            }
        }
    }

    /// While `on`, replies (whoever sends them) are held back, in order, and
    /// go out in one write when it is turned off. The connection's thread
    /// holds the answers to frames that arrived together, so a node that
    /// pipelined them reads them with one wake-up.
    pub(super) fn hold(&self, on: bool) {
        let mut out = lock_std(&self.out);
        let Out::Stream { stream, held, holding } = &mut *out else {
            return;
        };
        *holding = on;
        if !on && !held.is_empty() {
            let all = std::mem::take(held);
            if stream.write_all(&all).is_err() {
                self.close_out(&mut out);
            }
        }
    }

    pub(super) fn close(&self) {
        let mut out = lock_std(&self.out);
        self.close_out(&mut out);
    }

    fn close_out(&self, out: &mut Out) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        match out {
            Out::Stream { stream, .. } => stream.shutdown(),
            Out::Local { peer, .. } => {
                if let Some(peer) = peer.take() {
                    peer.closed();
                }
            }
        }
    }
}

/// The node side of a [`LocalLink`](super::LocalLink): what the coordinator
/// hands a node in its own process.
pub trait LocalPeer: Send + Sync {
    /// A reply (`request_id` of its request) or an event (`request_id` 0),
    /// in the order the coordinator made them.
    fn deliver(&self, request_id: u64, msg: Msg);
    /// The connection ended: the node left, was disconnected, or the
    /// coordinator stopped. Nothing is delivered after this.
    fn closed(&self);
}
