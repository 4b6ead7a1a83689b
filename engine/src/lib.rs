//! Understudy: a transactional storage engine for several node processes on
//! shared data files, where a surviving peer backs out a failed node's
//! in-flight work from its private undo log in milliseconds.
//!
//! ## One process: open a directory
//!
//! [`open`] opens (or creates) a database directory in this process, with
//! nothing to configure: no socket, no lease, no heartbeats. Reopening
//! after a crash is immediate, the directory can be moved or copied while
//! closed, and a second process is refused ([`Error::DatabaseInUse`]).
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let db = understudy::open(dir.path())?;
//! db.create_ordered_table("users")?;
//! // A transaction, retried by `run` if a lock conflict asks for it.
//! db.run(|txn| {
//!     txn.put("users", b"ada", b"lovelace")?;
//!     txn.put("users", b"alan", b"turing")
//! })?;
//! let mut txn = db.begin()?;
//! let names: Vec<_> = txn
//!     .range("users", b"a".as_slice()..b"b".as_slice())?
//!     .map(|row| row.map(|(k, _)| k))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(names, [b"ada".to_vec(), b"alan".to_vec()]);
//! txn.rollback()?;
//! db.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same directory is a cluster of one node, and opens as one
//! ([`Node::open`]).
//!
//! ## Several processes: a cluster
//!
//! A cluster is a directory ([`Cluster`]): table files, one private
//! write-ahead undo log per node, and a coordinator (locks, membership,
//! leases, the counterpart registry) that the nodes reach over a Unix socket
//! or TCP. Each process opens a [`Node`] and runs [`Transaction`]s on hash
//! tables: serializable (strict two-phase page locks), write-ahead undo,
//! FORCE at commit, nested failure scopes, and actions on external
//! resources through stateless recovery agents.
//!
//! ```
//! use understudy::{Cluster, Node, NodeOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let sock = format!("unix:{}", dir.path().join("coord.sock").display());
//! Cluster::create(dir.path(), &[1], sock.parse().unwrap(), 4096)?;
//! // The first node runs the coordinator inside its own process.
//! let opts = NodeOptions { embed_coordinator: true, ..NodeOptions::default() };
//! let node = Node::open(dir.path(), 1, opts)?;
//! node.create_table("accounts", 16)?;
//!
//! let mut txn = node.begin()?;
//! txn.put("accounts", b"alice", b"100")?;
//! let sp = txn.savepoint()?;
//! txn.put("accounts", b"alice", b"0")?;
//! txn.rollback_to(sp)?; // back to 100
//! txn.commit()?;        // durable when this returns
//!
//! let mut txn = node.begin()?;
//! assert_eq!(txn.get("accounts", b"alice")?, Some(b"100".to_vec()));
//! txn.rollback()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Nested scopes and recovery agents
//!
//! A transaction opens nested failure scopes ([`Transaction::scope`],
//! [`Transaction::scope_on_thread`], savepoints) to any depth. A scope
//! whose work fails — an error, a panic, the death of the thread running
//! it — is backed out alone, and the transaction goes on. An external
//! resource (here a directory of files, [`FileOutbox`]) takes part through
//! a stateless [`RecoveryAgent`] every node registers for its resource id
//! ([`Agents`], [`NodeOptions::agents`]): a transaction logs each action
//! ([`Transaction::act`]) before it happens; commit makes it final, and a
//! failed scope, a rollback, the node's restart or a peer's recovery of the
//! node undoes it, from the log alone.
//!
//! ```
//! use std::sync::Arc;
//! use understudy::{Agents, Cluster, Error, FileOutbox, Node, NodeOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let sock = format!("unix:{}", dir.path().join("coord.sock").display());
//! Cluster::create(dir.path(), &[1], sock.parse().unwrap(), 4096)?;
//! // Files appear in `outbox/` exactly when their transaction commits.
//! let outbox = FileOutbox::open(1, &dir.path().join("outbox"))?;
//! let opts = NodeOptions {
//!     embed_coordinator: true,
//!     agents: Agents::new().with(1, Arc::new(outbox.clone()))?,
//!     ..NodeOptions::default()
//! };
//! let node = Node::open(dir.path(), 1, opts)?;
//! node.create_table("orders", 16)?;
//!
//! let mut txn = node.begin()?;
//! txn.put("orders", b"42", b"paid")?;
//! outbox.put(&mut txn, "invoice-42", b"42: paid")?; // aside until commit
//! let failed = txn.scope(|t| {
//!     t.put("orders", b"43", b"paid")?;
//!     outbox.put(t, "invoice-43", b"43: paid")?;
//!     t.put("orders", b"44", &vec![0; 1 << 20]) // too large: the scope fails
//! });
//! assert!(matches!(failed, Err(Error::ValueTooLarge { .. })));
//! txn.commit()?; // order 42 and its invoice; nothing of the failed scope
//! assert_eq!(outbox.published()?, ["invoice-42"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Errors are typed ([`Error`]): corruption is reported with the file and
//! page; `Retained` (a failed node's lock), `Deadlock`, `LockTimeout` and
//! `Conflict` mean "retry the transaction"; `LeaseLost` and `Stopped` mean
//! this node's incarnation has stopped writing. A cluster node that lost
//! its lease joins again by itself as a new incarnation
//! ([`NodeOptions::rejoin`]) and its handles serve that one: begin the
//! transaction again once [`Node::stopped`] is `None`.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod admin;
mod agent;
mod aligned;
mod btree;
mod catalog;
mod cluster;
#[doc(hidden)]
pub mod commit_rounds;
mod database;
mod datafile;
mod error;
mod fence;
mod freelist;
mod group_force;
mod large_value;
#[doc(hidden)]
pub mod ledger;
mod meta;
mod node;
mod page;
mod peer;
mod pool;
mod recovery;
pub mod redo;
mod restart;
mod retry;
mod scope;
mod store;
mod sync;
mod table;
mod timeline;
mod txn;
mod undo;

pub use agent::outbox::{FileOutbox, OutboxError};
pub use agent::{AgentError, Agents, RecoveryAgent, Work};
pub use cluster::{Cluster, PAGE_SIZES};
pub use database::{open, open_with, DATABASE_NODE, LOCK_FILE};
pub use error::{Error, LockSite, Result};
pub use large_value::MAX_VALUE;
pub use node::options::{Gate, NodeOptions, StartReport};
pub use node::state::MAX_KEPT_RECOVERIES;
pub use node::{Node, MAX_BUCKETS};
pub use page::MAX_KEY;
pub use peer::PeerError;
pub use pool::{PoolStats, MIN_POOL_PAGES};
pub use retry::{retry, RetryPolicy, Retryable};
pub use scope::{MAX_SCOPES, THREAD_SCOPE};
pub use timeline::{Fencing, Step, Timeline};
pub use txn::{Range, Savepoint, Transaction};
pub use wal::io::{BackendChoice, BackendKind, IoStats};
pub use wal::{AgentId, Lsn, ScopeToken, TxnId};
