//! The typed refusals of the lock table and the counterpart registry, and
//! why a coordinator does not lead ([`ElectionError`], see
//! [`crate::election`]).
//!
//! Every refusal says why in terms the caller can act on: a coordinator turns
//! them into wire error codes, so they carry ids, never formatted text.

use crate::ids::{NodeId, Owner, ResourceId, Ticket};
use crate::mode::LockMode;

/// Why the lock table refused a call.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The request asked not to wait and could not be granted at once: it
    /// conflicts with a lock held by a live owner, or other requests are
    /// already queued for the resource.
    #[error("lock on {resource} not available at once")]
    Conflict {
        /// The resource asked for.
        resource: ResourceId,
    },
    /// The request asked not to wait and conflicts with a lock retained by a
    /// failed node: the resource stays unavailable until that node's
    /// recovery is done.
    #[error("lock on {resource} is retained by failed node {node}")]
    Retained {
        /// The failed node whose retained lock is in the way.
        node: NodeId,
        /// The resource asked for.
        resource: ResourceId,
    },
    /// The owner already has a request queued for this resource; it must
    /// wait for it (or cancel it) before asking again.
    #[error("{} already waits for {}", ticket.owner(), ticket.resource())]
    AlreadyWaiting {
        /// The request already queued.
        ticket: Ticket,
    },
    /// The requester's node has been declared failed and has not rejoined;
    /// nothing may be granted to it.
    #[error("node {node} has failed")]
    NodeFailed {
        /// The failed node.
        node: NodeId,
    },
    /// The resource's wait queue is full.
    #[error("too many requests wait for {resource} (limit {limit})")]
    QueueFull {
        /// The resource asked for.
        resource: ResourceId,
        /// The configured bound on waiters per resource.
        limit: usize,
    },
    /// The owner holds no lock on, and waits for nothing of, this resource.
    #[error("{owner} holds no lock on {resource}")]
    NotHeld {
        /// Who asked to release.
        owner: Owner,
        /// The resource named.
        resource: ResourceId,
    },
    /// Retained locks can only be taken back by a transaction of the node
    /// that left them.
    #[error("{owner} cannot take back the retained locks of node {node}")]
    ForeignReclaim {
        /// The failed node whose locks were asked for.
        node: NodeId,
        /// The owner that asked.
        owner: Owner,
    },
    /// A set of retained locks to restore contradicts itself: two nodes'
    /// retained locks on one resource are incompatible.
    #[error("retained {mode} lock of node {node} on {resource} conflicts with another retained lock")]
    InconsistentRetained {
        /// The node whose lock could not be restored.
        node: NodeId,
        /// The resource.
        resource: ResourceId,
        /// The mode that could not be restored.
        mode: LockMode,
    },
}

/// Why the counterpart registry or the membership refused a call.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The caller has not authenticated with the cluster secret.
    #[error("caller is not authenticated")]
    NotAuthenticated,
    /// The node named is not a member of the cluster.
    #[error("node {node} is unknown")]
    UnknownNode {
        /// The node named.
        node: NodeId,
    },
    /// A failed node may not register as its own counterpart: its restart
    /// takes its locks back instead.
    #[error("node {node} cannot be its own counterpart")]
    CallerIsFailedNode {
        /// The failed node, which was also the caller.
        node: NodeId,
    },
    /// Only a live node can be a counterpart.
    #[error("caller node {caller} is not live")]
    CallerNotLive {
        /// The caller.
        caller: NodeId,
    },
    /// The node to recover has not failed.
    #[error("node {node} has not failed")]
    NodeNotFailed {
        /// The node named.
        node: NodeId,
    },
    /// Another node is already registered as the failed node's counterpart.
    #[error("node {counterpart} is already the counterpart of node {failed}")]
    AlreadyActive {
        /// The failed node.
        failed: NodeId,
        /// Its registered counterpart.
        counterpart: NodeId,
    },
    /// The failed node has already been recovered; nothing is left to do
    /// until it fails again.
    #[error("node {node} has already been recovered")]
    AlreadyRecovered {
        /// The failed node.
        node: NodeId,
    },
    /// The caller does not hold the registration it tried to end (it was
    /// never registered, or its registration was dropped when it failed).
    #[error("node {caller} is not the registered counterpart of node {failed}")]
    NotCounterpart {
        /// The failed node.
        failed: NodeId,
        /// The caller.
        caller: NodeId,
    },
    /// A failed node cannot rejoin while a counterpart is recovering it.
    #[error("node {node} is being recovered by node {counterpart}")]
    RecoveryInProgress {
        /// The node that asked to rejoin.
        node: NodeId,
        /// Its counterpart.
        counterpart: NodeId,
    },
    /// A node asked to join while it is still live: its previous incarnation
    /// must first be declared failed.
    #[error("node {node} is already live")]
    AlreadyLive {
        /// The node.
        node: NodeId,
    },
    /// The node named is not live, so it cannot be declared failed.
    #[error("node {node} is not live")]
    NodeNotLive {
        /// The node.
        node: NodeId,
    },
    /// The node's incarnation number cannot grow any further.
    #[error("node {node} has no incarnation numbers left")]
    IncarnationExhausted {
        /// The node.
        node: NodeId,
    },
}

/// Why a coordinator does not lead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// Another coordinator serves the cluster: it holds the lock of the
    /// state directory, or leads on etcd (`place` says which); start this
    /// one as a standby to take over when it dies.
    #[error("another coordinator serves the cluster ({place})")]
    Held {
        /// The state directory, or the etcd prefix and its leader.
        place: String,
    },
    /// Taking or holding leadership failed, or its settings are unusable
    /// (what, in words).
    #[error("coordinator election: {0}")]
    Failed(String),
}
