//! The names the lock table deals in: resources, owners, nodes and tickets.
//!
//! All of them are small `Copy` values so that the coordinator can put them
//! in wire frames and durable records as they are, and so that the table can
//! hash and compare them without allocating.

use std::fmt;

/// A node of the cluster, as numbered in the cluster configuration.
pub type NodeId = u32;

/// A lockable resource: a fixed-size key. `space` says what kind of thing is
/// locked (a table, a page file, a row range...) and `id` which one; the lock
/// manager gives neither any meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// The name space the id belongs to.
    pub space: u32,
    /// The resource within its name space.
    pub id: u64,
}

impl ResourceId {
    /// Names resource `id` in name space `space`.
    pub const fn new(space: u32, id: u64) -> Self {
        Self { space, id }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.space, self.id)
    }
}

/// Who holds or waits for a lock: one transaction of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The node the transaction runs on.
    pub node: NodeId,
    /// The transaction, numbered by its node.
    pub txn: u64,
}

impl Owner {
    /// Transaction `txn` of node `node`.
    pub const fn new(node: NodeId, txn: u64) -> Self {
        Self { node, txn }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} txn {}", self.node, self.txn)
    }
}

/// Who holds a granted lock: a live owner, or a failed node whose write
/// locks are kept until its recovery is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HolderId {
    /// A transaction of a live node.
    Owner(Owner),
    /// The retained write locks of a failed node (all its transactions'
    /// locks on one resource merged into one).
    Retained(NodeId),
}

/// The receipt for a queued request. It names the request's owner and
/// resource, so the coordinator can route the grant to the right connection
/// and [`crate::LockTable::cancel`] can find the request without a lookup
/// table of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket {
    id: u64,
    owner: Owner,
    resource: ResourceId,
}

impl Ticket {
    pub(crate) const fn new(id: u64, owner: Owner, resource: ResourceId) -> Self {
        Self { id, owner, resource }
    }

    /// The number of the ticket, unique within one lock table.
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// Whose request this is.
    pub const fn owner(&self) -> Owner {
        self.owner
    }

    /// The resource the request waits for.
    pub const fn resource(&self) -> ResourceId {
        self.resource
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ticket {} ({} on {})", self.id, self.owner, self.resource)
    }
}
