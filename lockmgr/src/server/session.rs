//! An admitted connection: the member's [`Session`] (when it last heard from
//! the node), what the connection was admitted as ([`Admitted`]), and one
//! [`Request`] of it being handled.
//!
//! This file owns those per-connection facts; it must never change the
//! coordinator's shared state or decide an answer: the request handlers do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::Conn;
use crate::ids::NodeId;
use crate::sync::lock_std;
use crate::wire::{Msg, Purpose, NO_REPLY};

/// A member admitted on a connection: one incarnation of a node.
pub(super) struct Session {
    pub(super) conn: Arc<Conn>,
    pub(super) incarnation: u64,
    /// The node launches restarts of failed nodes (it said so in `Hello`).
    pub(super) launches_restarts: bool,
    /// Since when the coordinator has been waiting to hear from the node
    /// (the end of the last request it handled, or the admission), and how
    /// many of the node's requests are being handled now; the node is not
    /// silent while that count is above zero.
    ///
    /// A connection's thread reads nothing while it handles a request, and
    /// a request may wait on a write of the durable record, whose syncs can
    /// take more than a second on a busy disk. Heartbeats sent meanwhile
    /// wait unread in the socket: the node is not silent, the coordinator is
    /// not listening. So the failure timeout runs only while no request of
    /// the node is being handled (`Shared::expire_sessions`). Counting
    /// from the end of a request only ever declares a failure later than
    /// counting from a heartbeat's receipt, which keeps the lease argument
    /// of [`crate::client`]. A node in this process
    /// ([`LocalLink`](super::LocalLink)) has its requests handled on its own
    /// threads, several at once: hence a count.
    pub(super) last_heard: Mutex<Heard>,
}

/// See [`Session::last_heard`].
pub(super) struct Heard {
    /// The end of the last request handled, or the admission.
    pub(super) since: Instant,
    /// How many of the node's requests are being handled.
    pub(super) busy: usize,
}

impl Session {
    /// A request of the node starts being handled.
    pub(super) fn handling(&self) {
        lock_std(&self.last_heard).busy += 1;
    }

    /// A request of the node was handled.
    pub(super) fn listening(&self) {
        let mut h = lock_std(&self.last_heard);
        h.busy = h.busy.saturating_sub(1);
        h.since = Instant::now();
    }

    /// Whether the node has been silent for longer than `timeout` at `now`.
    pub(super) fn silent(&self, now: Instant, timeout: Duration) -> bool {
        let h = lock_std(&self.last_heard);
        h.busy == 0 && now.saturating_duration_since(h.since) > timeout
    }
}

/// What a connection turned out to be after its handshake.
#[derive(Clone)]
pub(super) enum Admitted {
    /// A member node (joined, rejoined or restarting).
    Member {
        node: NodeId,
        session: Arc<Session>,
        purpose: Purpose,
    },
    /// An operator tool: no member, no locks.
    Operator { node: NodeId },
}

impl Admitted {
    /// The node the connection speaks for.
    pub(super) fn node(&self) -> NodeId {
        match self {
            Admitted::Member { node, .. } | Admitted::Operator { node } => *node,
        }
    }

    /// The member's session; `None` for an operator.
    pub(super) fn session(&self) -> Option<&Arc<Session>> {
        match self {
            Admitted::Member { session, .. } => Some(session),
            Admitted::Operator { .. } => None,
        }
    }
}

/// One request of an admitted connection being handled: who sent it, and
/// where and under which id its answer goes.
pub(super) struct Request<'a> {
    pub(super) conn: &'a Arc<Conn>,
    pub(super) id: u64,
    pub(super) node: NodeId,
    /// The member's session; `None` for an operator.
    pub(super) member: Option<&'a Arc<Session>>,
    pub(super) purpose: Purpose,
}

impl<'a> Request<'a> {
    pub(super) fn new(conn: &'a Arc<Conn>, who: &'a Admitted, id: u64) -> Request<'a> {
        let (node, member, purpose) = match who {
            Admitted::Member { node, session, purpose } => (*node, Some(session), *purpose),
            Admitted::Operator { node } => (*node, None, Purpose::Operator),
        };
        Request {
            conn,
            id,
            node,
            member,
            purpose,
        }
    }

    /// Answers the request.
    pub(super) fn reply(&self, m: Msg) {
        self.conn.send(self.id, &m);
    }

    /// Whether the node wants an answer: a release sent with request id
    /// [`NO_REPLY`] is not answered, even with an error; its sender reads
    /// nothing for it.
    pub(super) fn wants_reply(&self) -> bool {
        self.id != NO_REPLY
    }
}
