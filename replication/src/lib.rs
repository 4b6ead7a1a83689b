//! Loosely-coupled mode: a primary site ships its committed redo to standby
//! sites over TCP; each standby keeps it durable and applies it, in commit
//! order, to its own full copy of the data files.
//!
//! ## What is built
//! - **Redo** (`understudy::redo`, written by the engine with
//!   `NodeOptions::redo`): one record per committed transaction, the
//!   after-images of its pages, numbered by a commit sequence number that
//!   is the site's commit order. Sites of one node only: ordering the
//!   commits of several nodes needs a clock in the lock value blocks, not
//!   built.
//! - **Shipping** ([`primary`], [`standby`]): a listener in the primary
//!   node's process; standbys connect, both sides prove the replication
//!   secret by challenge and response over the other's nonce ([`auth`]),
//!   and a standby of another database, with another secret, or ahead of
//!   the primary is refused with a typed [`Refusal`]. Frames carry a
//!   CRC32C of their header and of their payload ([`frame`]); a damaged
//!   payload is asked for again, a damaged header ends the connection and
//!   the standby resumes from its last durable commit. Async mode (the
//!   lag is reported: [`StandbyStatus::lag`], [`PrimaryStatus`]) or sync
//!   mode (`PrimaryConfig::sync_standbys`: a commit returns once that
//!   many standbys hold it durably, through the engine's commit gate).
//! - **The standby's copy** ([`store`]): received redo durable before it
//!   is acknowledged; applied page images synced before the applied
//!   position moves; a crash mid-apply is repaired by applying again. The
//!   data files hold a transaction-consistent prefix of the primary's
//!   commit order whenever no apply is under way.
//! - **A first copy** ([`seed`]) from a stopped primary site.
//!
//! ## Not built (issue 21)
//! Sites of several nodes; copies taken while the primary commits, and
//! incremental checkpoints; truncation of the primary's redo (it grows
//! until removed by hand); table creation and drops (not in the redo: a
//! standby refuses redo for a table its copy lacks); heartbeat failure
//! detection, election through etcd, promotion, failback and consistency
//! groups.
//!
//! Depends on `understudy` (and `wal`'s I/O layer, `lockmgr`'s endpoints);
//! nothing in the engine depends on it.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod auth;
mod durable;
pub mod error;
pub mod frame;
pub mod message;
pub mod primary;
pub mod standby;
pub mod store;

pub use auth::ReplicationSecret;
pub use error::{FrameError, Refusal, ReplicationError, Result};
pub use primary::{Primary, PrimaryConfig, PrimaryStatus, StandbyView};
pub use standby::{run as run_standby, StandbyConfig, StandbyHandle, StandbyStatus};
pub use store::{seed, StandbyStore};
