//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::ChildGuard;

use lockmgr::{Coordinator, CoordinatorConfig};
use std::sync::Arc;

use understudy::{Cluster, Node, NodeOptions};
use wal::io::fault::FaultInjector;
use wal::io::{Io, OpKind};

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

/// Node 2 of the cluster in `dir`, fencing a failed peer with little
/// patience, with table `t` (4 buckets) created: the node that watches a
/// node 1 run in a child process.
pub fn watching_node(dir: &Path) -> Node {
    let n2 = Node::open(
        dir,
        2,
        NodeOptions {
            fence_patience: Duration::from_millis(200),
            ..NodeOptions::default()
        },
    )
    .unwrap();
    n2.create_table("t", 4).unwrap();
    n2
}

/// Waits (up to 30 s, then panics naming `what`) until `done` holds.
pub fn wait_for(what: &str, done: impl FnMut() -> bool) {
    let held = harness::wait_for(Duration::from_secs(30), Duration::from_millis(5), done);
    assert!(held, "timed out waiting for {what}");
}

/// `key` of table `t`, read in a transaction of its own.
pub fn read(node: &Node, key: &[u8]) -> Option<Vec<u8>> {
    let mut t = node.begin().unwrap();
    let v = t.get("t", key).unwrap();
    t.rollback().unwrap();
    v
}

/// Node `id` of the cluster in `dir`, doing its I/O through a fault
/// injector (returned with it) over the plain backend.
pub fn node_with_faults(dir: &Path, id: u32, opts: NodeOptions) -> (Node, Arc<FaultInjector>) {
    let device = FaultInjector::new(Io::fallback());
    let node = Node::open(
        dir,
        id,
        NodeOptions {
            io: Some(device.io()),
            ..opts
        },
    )
    .unwrap();
    (node, device)
}

/// Node 1 of the cluster in `dir` (on a fault-injecting device, returned)
/// commits `k = committed` in table `t`, which must exist; then a commit of
/// `k = value` writes its page and fails on the page's sync, and the node
/// stops with that transaction aborted and its lock retained.
pub fn node_1_fails_mid_commit(dir: &Path, opts: NodeOptions, value: &[u8]) -> Arc<FaultInjector> {
    let (n1, device) = node_with_faults(dir, 1, opts);
    let mut t = n1.begin().unwrap();
    t.put("t", b"k", b"committed").unwrap();
    t.commit().unwrap();
    let mut t = n1.begin().unwrap();
    t.put("t", b"k", value).unwrap();
    n1.checkpoint().unwrap(); // the undo record is durable now
    let before = device.count(OpKind::Write);
    // Write 1: the commit intent, synced (sync 1). Write 2: the changed
    // page, whose sync (sync 2) fails.
    device.fail_nth(OpKind::Sync, 2, libc::EIO);
    assert!(matches!(t.commit(), Err(understudy::Error::CommitFailed(_))));
    assert!(device.count(OpKind::Write) >= before + 2, "the page was written");
    device
}

/// Runs test `name` of this test binary as a child process with `vars` in
/// its environment and its stdout piped; killed and reaped when dropped (on
/// every path out of a test, panics included).
pub fn child_test(name: &str, vars: &[(&str, &OsStr)]) -> ChildGuard {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    ChildGuard::spawn(cmd.stdout(Stdio::piped())).unwrap()
}

/// The resource id the tests register the file outbox as.
pub const OUTBOX: understudy::AgentId = 1;

/// Options for node of a cluster in `dir` that registers the file outbox on
/// `dir/outbox` (returned with them) as resource [`OUTBOX`].
pub fn outbox_opts(dir: &Path, opts: NodeOptions) -> (NodeOptions, understudy::FileOutbox) {
    let outbox = understudy::FileOutbox::open(OUTBOX, &dir.join("outbox")).unwrap();
    let agents = understudy::Agents::new()
        .with(OUTBOX, Arc::new(outbox.clone()))
        .unwrap();
    (NodeOptions { agents, ..opts }, outbox)
}

/// A one-node cluster in `dir` with the coordinator in the node's process,
/// table `t` (4 buckets) and the file outbox registered.
pub fn outbox_cluster(dir: &Path) -> (Node, understudy::FileOutbox) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    Cluster::create(dir, &[1], ep.parse().unwrap(), 4096).unwrap();
    let base = NodeOptions {
        embed_coordinator: true,
        auto_recovery: false,
        log_segment_size: 1 << 20,
        ..NodeOptions::default()
    };
    let (opts, outbox) = outbox_opts(dir, base);
    let node = Node::open(dir, 1, opts).unwrap();
    node.create_table("t", 4).unwrap();
    (node, outbox)
}

/// Sends `sig` (`-STOP`, `-CONT`, …) to `child` with `kill`.
pub fn signal(child: &ChildGuard, sig: &str) {
    let pid = child.id().expect("the child is not reaped");
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} failed");
}

/// Node `id` as the coordinator `node` is connected to reports it.
pub fn member(node: &Node, id: u32) -> lockmgr::wire::MemberInfo {
    understudy::admin::lock_client(node)
        .status()
        .unwrap()
        .into_iter()
        .find(|m| m.node == id)
        .unwrap()
}

/// The lines a child says (read by `harness::read_lines`) before one
/// ending with `until`, waiting at most `limit` in all. A line is matched
/// by its end: libtest may print the test's name, without a newline, ahead
/// of the child's first line.
pub fn said_until(lines: &std::sync::mpsc::Receiver<String>, until: &str, limit: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.ends_with(until) => return seen,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    panic!("the child never said {until:?}; it said {seen:?}");
}

/// Whether `e` is one of the typed errors damage to a log may end a
/// restart in.
pub fn is_damage_error(e: &understudy::Error) -> bool {
    use understudy::Error;
    matches!(
        e,
        Error::LogDamaged { .. } | Error::Log(_) | Error::CorruptPage { .. } | Error::MissingPage { .. }
    )
}

/// On `node` (opened through `device`, [`node_with_faults`]): one
/// transaction sets every key of `keys` in `table` to `value`, its undo made
/// durable by a checkpoint; its commit writes every page, and their sync
/// fails — so the node stops with the transaction in flight, its pages on
/// disk and its locks retained. (Sync 1 is the intent's, sync 2 the
/// pages'.) Returns the writes the commit made.
pub fn stop_mid_commit(node: &Node, device: &FaultInjector, table: &str, keys: &[Vec<u8>], value: &[u8]) -> u64 {
    let mut t = node.begin().unwrap();
    for k in keys {
        t.put(table, k, value).unwrap();
    }
    node.checkpoint().unwrap();
    let before = device.count(OpKind::Write);
    device.fail_nth(OpKind::Sync, 2, libc::EIO);
    assert!(matches!(t.commit(), Err(understudy::Error::CommitFailed(_))));
    let writes = device.count(OpKind::Write) - before;
    assert!(writes > 1, "the intent and the pages were written");
    writes
}

/// Waits until `observer`'s coordinator has declared `node` failed.
pub fn wait_declared_failed(observer: &Node, node: u32) {
    wait_for(&format!("node {node} to be declared failed"), || {
        understudy::admin::lock_client(observer)
            .status()
            .unwrap()
            .iter()
            .any(|m| m.node == node && !m.live)
    });
}
