//! The distributed lock manager of Understudy: its in-process core.
//!
//! This crate owns the lock table — modes IS, IX, S, SIX, X ([`LockMode`]);
//! conversions; FIFO grants; wait policies; deadlock detection
//! ([`LockTable::find_deadlock`]) — the retained locks of failed nodes
//! ([`LockTable::node_failed`] and the `failure` methods), and the
//! counterpart registry with the membership it needs ([`Registry`]). See
//! `shared/DESIGN.md`, "The lock manager and the coordinator".
//!
//! Around that core: the coordinator server ([`server`]) that nodes reach
//! over Unix sockets or TCP with the framed protocol of [`wire`] (a node in
//! the coordinator's own process calls it directly, [`server::LocalLink`]), the
//! client library nodes use ([`client`], with leases and self-fencing),
//! authentication by the cluster secret ([`auth`]), the coordinator's
//! durable record ([`persist`]) and the election of the one coordinator
//! that serves a cluster, with a standby that takes over ([`election`]).
//!
//! The lock table itself is event-driven: no call ever blocks waiting for a lock
//! or a node. A request is granted, queued (with a [`Ticket`]) or refused at
//! once; a call that frees something returns the queued requests it granted
//! ([`Woken`]), and the caller tells their owners. The coordinator server
//! that wraps this core (sockets, timers, leases) owns all waiting.
//!
//! The coordinator ties the two halves together: when a node fails it calls
//! both [`Registry::node_failed`] and [`LockTable::node_failed`]; when the
//! counterpart unregisters with [`RecoveryOutcome::Recovered`], the registry
//! answers [`RetainedLocks::Release`] and the coordinator calls
//! [`LockTable::release_retained`].
//!
//! What this crate must never do: touch a node's private log. It hands out
//! the [`Grant`] that entitles one counterpart to recover a failed node,
//! with the coordinator's proof that opens its log (signed with the cluster
//! secret in the format of [`wal::access`], which the log checks when it is
//! opened); an admitted node gets the proof for its own log. Opening,
//! reading and writing logs belong to the `engine` and `wal` crates.
//! `lockmgr` depends on `wal` for its I/O layer ([`wal::io`]: the
//! coordinator's durable record, [`persist`], reads, writes and syncs its
//! files through it) and for that proof's format. It never opens a log.
//!
//! It is a library and carries no program: the `understudy coordinator`
//! command, in its own package, runs the coordinator as a process of its
//! own.
//!
//! ```
//! use lockmgr::{LockMode, LockTable, Owner, RequestOutcome, ResourceId, WaitPolicy};
//!
//! let table = LockTable::new();
//! let page = ResourceId::new(1, 42);
//! let (reader, writer) = (Owner::new(1, 7), Owner::new(2, 9));
//! assert!(matches!(table.request(reader, page, LockMode::S, WaitPolicy::NoWait), Ok(RequestOutcome::Granted { .. })));
//! let Ok(RequestOutcome::Queued(ticket)) = table.request(writer, page, LockMode::X, WaitPolicy::Wait) else {
//!     panic!("X waits for S");
//! };
//! let woken = table.release_all(reader); // the reader commits
//! assert_eq!(woken[0].ticket, ticket); // the coordinator tells the writer
//! ```
//!
//! All concurrency goes through [`sync`], which switches to loom under
//! `cfg(loom)` (`tests/loom_lock_table.rs`).

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod auth;
pub mod client;
pub mod deadlock;
pub mod election;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod failure;
pub mod ids;
pub mod membership;
pub mod mode;
pub mod persist;
pub mod queue;
pub mod registry;
pub mod server;
mod shard;
pub mod store;
pub mod sync;
pub mod table;
pub mod transport;
pub mod wire;

pub use deadlock::{find_deadlock, Deadlock, WaitEdge};
pub use election::{Election, ElectionError, Leadership};
pub use error::{LockError, RegistryError};
pub use failure::{FailureReport, ReclaimReport, RetainedLock};
pub use ids::{HolderId, NodeId, Owner, ResourceId, Ticket};
pub use membership::{Liveness, Membership};
pub use mode::LockMode;
pub use queue::{HeldLock, RequestOutcome, ResourceSnapshot, WaitPolicy, WaitingRequest, Woken};
pub use registry::{AuthState, Grant, NodeStatus, RecoveryOutcome, RecoveryStatus, Registry, RetainedLocks};
pub use table::{CancelOutcome, LockTable, DEFAULT_MAX_WAITERS};

pub use auth::Secret;
pub use client::{Client, ClientConfig, ClientError, ClientEvent, CounterpartGrant, LockWait};
pub use server::{Coordinator, CoordinatorConfig, CoordinatorError, RESTART_TXN};
pub use transport::Endpoint;
pub use wire::{EventKind, Outcome, Purpose};
