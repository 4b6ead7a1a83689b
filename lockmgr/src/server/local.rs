//! A node in the coordinator's own process: requests are handled on the
//! node's calling thread, and answers are handed to it in memory.
//!
//! Over a socket every lock request costs three thread wake-ups (the
//! coordinator's connection thread, the client's reader, then the caller)
//! and four system calls; on a small machine that is most of a
//! transaction's CPU. A node that embeds the coordinator needs none of
//! them: [`Coordinator::connect_local`] admits it without a socket, and
//! [`LocalLink::request`] runs the same request handling the connection
//! thread runs, so a lock granted at once is answered before the call
//! returns. Waits, grants made later, deadlock victims, events and the
//! lease work exactly as over a socket, with the same messages
//! ([`LocalPeer`] receives them).
//!
//! Authentication is skipped: it proves knowledge of the cluster secret to
//! a coordinator across a socket, and a caller holding the [`Coordinator`]
//! is already inside it. Membership rules (joining, restarting, rejoining)
//! apply unchanged.
//!
//! Requests of one node may be handled on several of its threads at once
//! (the coordinator's state is shared between connections anyway); each
//! call returns only once its request was handled, so a request made after
//! another returned sees its effect, as over a socket.
//!
//! This file owns the in-process link only. It must never handle a request
//! otherwise than a socket's connection thread does: it calls the same
//! admission and request handling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::conn::{Conn, LocalPeer, Out};
use super::coordinator::Coordinator;
use super::refusal::{error_msg, NO_RESOURCE};
use super::session::Admitted;
use super::state::Shared;
use crate::ids::NodeId;
use crate::sync::lock_std;
use crate::wire::{ErrorCode, Msg, Purpose};

/// The request id of the admission: what a socket handshake's proof uses.
const ADMISSION_ID: u64 = 2;

/// An admitted in-process connection (see the module docs). Dropping it
/// ends the connection, which, as a socket's closing, is the node's failure
/// unless it left first.
pub struct LocalLink {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    admitted: Admitted,
    ended: AtomicBool,
}

impl Coordinator {
    /// Admits `node` for `purpose` over an in-process link. `Ok` carries
    /// the link and the `Welcome`; `Err` the refusal (an `Error` message),
    /// exactly what a socket connection would have been answered.
    /// `launches_restarts`: the node launches restarts of failed nodes, as
    /// `Hello` says over a socket.
    pub fn connect_local(
        &self,
        node: NodeId,
        purpose: Purpose,
        incarnation: u64,
        launches_restarts: bool,
    ) -> Result<(LocalLink, Msg), Msg> {
        let shared = self.shared.clone();
        let conn = Arc::new(Conn::local(shared.next_conn.fetch_add(1, Ordering::Relaxed)));
        let admitted = shared.admit(&conn, ADMISSION_ID, node, purpose, incarnation, launches_restarts);
        let answer = match &mut *lock_std(&conn.out) {
            Out::Local { early, .. } => early
                .iter()
                .position(|(id, _)| *id == ADMISSION_ID)
                .map(|i| early.remove(i).1),
            Out::Stream { .. } => None,
        };
        let answer = answer.unwrap_or_else(|| {
            error_msg(
                ErrorCode::Refused,
                node,
                NO_RESOURCE,
                "the coordinator gave no answer to the admission",
            )
        });
        match admitted {
            Some(admitted) => Ok((
                LocalLink {
                    shared,
                    conn,
                    admitted,
                    ended: AtomicBool::new(false),
                },
                answer,
            )),
            None => {
                conn.close();
                Err(answer)
            }
        }
    }
}

impl LocalLink {
    /// Whether the node holds a lease and sends heartbeats as over a socket
    /// (see `Shared::local_members_leased`).
    pub fn leased(&self) -> bool {
        self.shared.local_members_leased()
    }

    /// Where answers and events go from now on; those made since the
    /// admission (events) are handed over first, in order.
    pub fn attach(&self, peer: Arc<dyn LocalPeer>) {
        let mut out = lock_std(&self.conn.out);
        if let Out::Local { peer: slot, early } = &mut *out {
            for (id, msg) in early.drain(..) {
                peer.deliver(id, msg);
            }
            if self.conn.closed.load(Ordering::Acquire) {
                peer.closed();
            } else {
                *slot = Some(peer);
            }
        }
    }

    /// Handles one request on the calling thread; its answer (if it is
    /// answered at once) has been delivered when this returns. `false`:
    /// the connection is closed (now, or before), as after a `Leave`.
    pub fn request(&self, id: u64, msg: Msg) -> bool {
        if self.conn.closed.load(Ordering::Acquire) || self.shared.stop.load(Ordering::Acquire) {
            self.close();
            return false;
        }
        if !self.shared.handle(&self.conn, &self.admitted, id, msg) {
            self.close();
            return false;
        }
        true
    }

    /// Ends the connection (see [`LocalLink`]).
    pub fn close(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.shared.connection_ended(&self.conn, self.admitted.clone());
        }
    }
}

impl Drop for LocalLink {
    fn drop(&mut self) {
        self.close();
    }
}
