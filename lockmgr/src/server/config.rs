//! How a coordinator is configured, and why one may fail to start.
//!
//! This file owns the settings and the start-up errors only; it must never
//! act on them: binding, restoring the record and serving are
//! `coordinator`'s.

use std::path::PathBuf;

use wal::io::Io;

use crate::auth::Secret;
use crate::error::LockError;
use crate::persist::PersistError;
use crate::transport::Endpoint;

/// How a coordinator runs.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub listen: Vec<Endpoint>,
    pub secret: Secret,
    /// Where the durable record lives.
    pub state_dir: PathBuf,
    pub io: Io,
    /// How long a heartbeat's lease lasts, measured by the node from when it
    /// sent the heartbeat.
    pub lease_ms: u32,
    pub heartbeat_ms: u32,
    /// Silence after which the coordinator declares a node failed; must
    /// exceed `lease_ms` by the clock-drift margin (see [`crate::client`]).
    pub failure_timeout_ms: u32,
}

impl CoordinatorConfig {
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
        }
    }
}

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    #[error("cannot listen on {endpoint}: {source}")]
    Listen { endpoint: Endpoint, source: std::io::Error },
    #[error(transparent)]
    State(#[from] PersistError),
    #[error("the durable record contradicts itself: {0}")]
    Inconsistent(LockError),
    #[error("bad configuration: {0}")]
    Config(String),
}
