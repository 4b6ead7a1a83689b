//! The state every thread of a coordinator shares ([`Shared`]): the lock
//! table, the registry, the sessions, the waits, the grants, the blind
//! nodes, the grace period after a restart and the durable record's store,
//! with the locks that order their changes.
//!
//! This file owns that data and the order of its locks. It must never
//! handle a request or run a thread: the other files of the server do,
//! each through the methods of `Shared` it defines for its concern.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::config::CoordinatorConfig;
use super::conn::Conn;
use super::session::Session;
use crate::ids::{NodeId, Ticket};
use crate::registry::{Grant, Registry};
use crate::store::RecordStore;
use crate::table::LockTable;

/// A lock request queued in the table, to be answered when it is granted,
/// times out or is chosen as a deadlock victim.
pub(super) struct Wait {
    pub(super) ticket: Ticket,
    pub(super) conn: Arc<Conn>,
    pub(super) request_id: u64,
    pub(super) deadline: Instant,
}

/// What every thread of a coordinator shares (see the module docs).
pub(super) struct Shared {
    pub(super) cfg: CoordinatorConfig,
    pub(super) table: LockTable,
    pub(super) registry: Registry,
    pub(super) sessions: Mutex<HashMap<NodeId, Arc<Session>>>,
    pub(super) waits: Mutex<HashMap<u64, Wait>>,
    /// Grants handed out, by failed node, to check unregistrations.
    pub(super) grants: Mutex<HashMap<NodeId, Grant>>,
    /// Failed nodes whose locks are unknown (see the module docs of
    /// [`server`](super)).
    pub(super) blind: Mutex<BTreeSet<NodeId>>,
    /// Nodes with a restart request not yet served: sent to the node that
    /// launches restarts when they fail (or when such a node is admitted
    /// while they are failed), until they are admitted again or recovered.
    /// Kept in the durable record.
    pub(super) restart_wanted: Mutex<BTreeSet<NodeId>>,
    /// After a restart: live nodes not yet back, and until when to wait.
    pub(super) awaiting: Mutex<(BTreeSet<NodeId>, Option<Instant>)>,
    /// The durable record's store; its lock serialises writes.
    pub(super) persist_lock: Mutex<RecordStore>,
    /// Serialises membership changes of nodes — one going (lock table,
    /// registry, announcement, then record; see `member_gone`) and one
    /// admitted (registry, then lock table and reclaimed locks, then
    /// record) — so a restart can
    /// never slip between the steps of its own failure. Taken after
    /// `awaiting` when both are needed, never before it.
    pub(super) member_changes: Mutex<()>,
    /// The lock value blocks (see `values`).
    pub(super) values: super::values::ValueBlocks,
    pub(super) stop: AtomicBool,
    pub(super) next_conn: AtomicU64,
}
