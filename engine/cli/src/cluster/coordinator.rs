//! `understudy coordinator`: the cluster's coordinator as a process of its
//! own, for clusters whose nodes do not embed it (or for tests that kill
//! nodes and need the coordinator to outlive them).
//!
//! It listens on the cluster's configured endpoint, authenticates with the
//! cluster's secret and keeps its durable record in the cluster's
//! `coordinator/` directory, so a coordinator killed and started again
//! restores every retained lock, and the nodes ride through the restart.
//! Once it accepts connections it prints its `timing: ...` and one
//! `listening on <endpoint>` line per endpoint, then serves until killed.
//!
//! One coordinator serves a cluster at a time (it holds the lock of the
//! `coordinator/` directory: `lockmgr::election`). A second one is refused,
//! unless started with `--standby`: it prints `standing by for <dir>`,
//! waits, and takes over the moment the active one (a process, or a node
//! embedding it) dies — it restores the record and listens on the same
//! endpoint, and the nodes rejoin it.

use std::io::Write;
use std::path::PathBuf;

use lockmgr::{Coordinator, CoordinatorConfig};
use understudy::Cluster;
use wal::io::Io;

use crate::error::CliError;

/// Arguments of `understudy coordinator`.
#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// How long a node's lease lasts after each heartbeat it sends
    /// [default: the coordinator's own].
    #[arg(long)]
    pub lease_ms: Option<u32>,
    /// How often nodes send heartbeats [default: the coordinator's own].
    #[arg(long)]
    pub heartbeat_ms: Option<u32>,
    /// Silence after which a node is declared failed [default: the
    /// coordinator's own]. Must exceed the lease (a cut-off node stops
    /// writing before anyone is told it failed), which must exceed the
    /// heartbeat interval.
    #[arg(long)]
    pub failure_timeout_ms: Option<u32>,
    /// Stand by while another coordinator serves the cluster, and take over
    /// when it dies.
    #[arg(long)]
    pub standby: bool,
    /// Listen here instead of at the cluster's first coordinator endpoint
    /// (one of those `cluster.conf` lists, for a standby on another host).
    #[arg(long)]
    pub listen: Option<lockmgr::Endpoint>,
    /// Be elected on etcd at these client URLs (comma-separated), and keep
    /// the durable record there, instead of the lock and the files of the
    /// cluster's `coordinator/` directory: for coordinators on several
    /// hosts. Needs `--etcd-prefix`.
    #[cfg(feature = "etcd")]
    #[arg(long, value_delimiter = ',', requires = "etcd_prefix")]
    pub etcd: Vec<String>,
    /// The etcd key prefix of this cluster, the same for all its
    /// coordinators (for example `/understudy/bank`).
    #[cfg(feature = "etcd")]
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// The leader's etcd lease, in seconds: how long a standby waits after
    /// the leader's host died. Nodes ride through only a takeover within
    /// their lease (`--lease-ms`), so keep it well below that.
    #[cfg(feature = "etcd")]
    #[arg(long, default_value_t = 2)]
    pub etcd_ttl_secs: i64,
}

pub fn run(args: &CoordinatorArgs) -> Result<(), CliError> {
    let cluster = Cluster::open(&args.cluster)?;
    let listen = args.listen.clone().unwrap_or_else(|| cluster.coordinator.clone());
    let mut cfg = CoordinatorConfig::new(
        vec![listen],
        cluster.secret()?,
        cluster.coordinator_dir(),
        Io::new(Default::default())?,
    );
    // The defaults are the coordinator's own, so that they stay tuned in one
    // place.
    cfg.lease_ms = args.lease_ms.unwrap_or(cfg.lease_ms);
    cfg.heartbeat_ms = args.heartbeat_ms.unwrap_or(cfg.heartbeat_ms);
    cfg.failure_timeout_ms = args.failure_timeout_ms.unwrap_or(cfg.failure_timeout_ms);
    let timing = format!(
        "heartbeat {} ms, lease {} ms, failure timeout {} ms",
        cfg.heartbeat_ms, cfg.lease_ms, cfg.failure_timeout_ms
    );
    cfg.standby = args.standby;
    #[cfg(feature = "etcd")]
    if let (false, Some(prefix)) = (args.etcd.is_empty(), &args.etcd_prefix) {
        let mut etcd = lockmgr::etcd::EtcdConfig::new(args.etcd.clone(), prefix.clone());
        etcd.ttl_secs = args.etcd_ttl_secs;
        cfg.election = lockmgr::Election::Etcd(etcd);
    }
    if args.standby {
        say!("standing by for {}", cluster.coordinator_dir().display());
        // Whoever started this process may wait for this line.
        std::io::stdout()
            .flush()
            .map_err(|e| CliError::os("writing to stdout", e))?;
    }
    let coordinator = Coordinator::start(cfg)?;
    say!("timing: {timing}");
    for ep in coordinator.endpoints() {
        say!("listening on {ep}");
    }
    // Whoever started this process waits for the line above before it
    // starts nodes; it must not sit in a buffer.
    std::io::stdout()
        .flush()
        .map_err(|e| CliError::os("writing to stdout", e))?;
    coordinator.join();
    Ok(())
}
