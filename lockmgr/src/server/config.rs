//! How a coordinator is configured, and why one may fail to start.
//!
//! This file owns the settings and the start-up errors only; it must never
//! act on them: binding, restoring the record and serving are
//! `coordinator`'s.

use std::path::PathBuf;

use wal::io::Io;

use crate::auth::Secret;
use crate::election::{Election, ElectionError};
use crate::error::LockError;
use crate::persist::PersistError;
use crate::transport::Endpoint;

/// How a coordinator runs.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Where to listen. Empty for a coordinator only nodes in its own
    /// process reach ([`Coordinator::connect_local`](super::Coordinator::connect_local)). A TCP port 0 picks a free
    /// port ([`Coordinator::endpoints`](super::Coordinator::endpoints) says
    /// which).
    pub listen: Vec<Endpoint>,
    /// The cluster secret every node must prove it knows.
    pub secret: Secret,
    /// Where the durable record lives (created if missing).
    pub state_dir: PathBuf,
    /// The I/O layer the durable record is read and written through.
    pub io: Io,
    /// How long a heartbeat's lease lasts, measured by the node from when it
    /// sent the heartbeat, in milliseconds; above `heartbeat_ms`, 1000 by
    /// default.
    pub lease_ms: u32,
    /// How often nodes send heartbeats, in milliseconds; above 0, 100 by
    /// default.
    pub heartbeat_ms: u32,
    /// How this coordinator is elected to serve the cluster
    /// ([`Election::FileLock`] by default).
    pub election: Election,
    /// Stand by: wait to be elected instead of refusing to start while
    /// another coordinator serves the cluster. Off by default.
    pub standby: bool,
    /// Silence after which the coordinator declares a node failed, in
    /// milliseconds; must exceed `lease_ms` by the clock-drift margin (see
    /// [`crate::client`]), 1500 by default. Also the grace period after a
    /// restart.
    pub failure_timeout_ms: u32,
    /// Nodes known not to be running as this coordinator starts — the node
    /// whose process embeds it, when nothing holds that node's log. After
    /// a restart the coordinator does not wait for them to re-assert their
    /// locks: they are failed at once (their locks unknown, as for any node
    /// that stays away), so their own restart need not wait out the grace
    /// period. Empty by default.
    pub departed: Vec<crate::ids::NodeId>,
}

impl CoordinatorConfig {
    /// A coordinator listening on `listen`, authenticating with `secret`
    /// and keeping its record in `state_dir` through `io`; the timings take
    /// their defaults (see the fields).
    pub fn new(listen: Vec<Endpoint>, secret: Secret, state_dir: PathBuf, io: Io) -> CoordinatorConfig {
        CoordinatorConfig {
            listen,
            secret,
            state_dir,
            io,
            // Generous enough that a busy two-core machine does not starve a
            // live node into a false failure; a dropped connection (a dead
            // process) is still detected at once.
            lease_ms: 1000,
            heartbeat_ms: 100,
            failure_timeout_ms: 1500,
            election: Election::default(),
            standby: false,
            departed: Vec::new(),
        }
    }
}

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// An endpoint could not be bound.
    #[error("cannot listen on {endpoint}: {source}")]
    Listen {
        /// The endpoint.
        endpoint: Endpoint,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    /// The durable record could not be read or its directory made.
    #[error(transparent)]
    State(#[from] PersistError),
    /// The durable record's retained locks conflict with each other.
    #[error("the durable record contradicts itself: {0}")]
    Inconsistent(LockError),
    /// The configuration is unusable: no endpoint, or timings out of order
    /// (what is wrong, in words).
    #[error("bad configuration: {0}")]
    Config(String),
    /// Another coordinator serves the cluster, or taking leadership failed
    /// ([`crate::election`]).
    #[error(transparent)]
    Election(#[from] ElectionError),
}
