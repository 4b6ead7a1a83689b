//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use lockmgr::{Coordinator, CoordinatorConfig};
use understudy::Cluster;
use wal::io::Io;

/// A cluster of `nodes` in `dir` and its coordinator, running in the test
/// process with short heartbeats and a lease that a busy machine keeps.
pub fn cluster_with_coordinator(dir: &Path, nodes: &[u32]) -> (Cluster, Coordinator) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    let cluster = Cluster::create(dir, nodes, ep.parse().unwrap(), 4096).unwrap();
    let mut cfg = CoordinatorConfig::new(
        vec![cluster.coordinator.clone()],
        cluster.secret().unwrap(),
        cluster.coordinator_dir(),
        Io::fallback(),
    );
    cfg.heartbeat_ms = 20;
    cfg.lease_ms = 500;
    cfg.failure_timeout_ms = 800;
    let coordinator = Coordinator::start(cfg).unwrap();
    (cluster, coordinator)
}
