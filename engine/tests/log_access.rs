//! Private logs are guarded by `wal` itself, not by the engine's good
//! manners.
//!
//! Before, the counterpart's grant never reached `wal`: any process that
//! could read the cluster directory could open any node's log for writing
//! once its owner had let go of it. Now a cluster's log opens for writing
//! only with the coordinator's word (`wal::access`): its own node's
//! admission, or the grant of the counterpart registered to recover it. A
//! live node's log is refused to every second writer by its directory
//! lock, whatever proof it shows. (A process holding the cluster secret can
//! sign that word itself, as it can join the cluster; the door is closed to
//! everyone else, and to a proof for a life of the node that is over.)

mod common;

use std::time::Duration;

use lockmgr::Outcome;
use understudy::admin::lock_client;
use understudy::{Node, NodeOptions};
use wal::{AccessKey, LogAccess, LogConfig, Role, WalError};

fn opts() -> NodeOptions {
    NodeOptions {
        // Only this test decides who recovers whom.
        auto_recovery: false,
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        ..NodeOptions::default()
    }
}

fn open(dir: &std::path::Path, access: Option<LogAccess>) -> Result<wal::Log, WalError> {
    let cfg = LogConfig {
        create: false,
        access,
        ..LogConfig::new(1, wal::io::Io::fallback())
    };
    wal::Log::open(dir, cfg)
}

#[test]
fn only_the_registered_counterpart_opens_a_failed_nodes_log_and_nobody_a_live_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (cluster, _coordinator) = common::cluster_with_coordinator(dir, &[1, 2]);
    let key = cluster.secret().unwrap().log_key();
    let log_dir = cluster.log_dir(1);
    let peer = Node::open(dir, 2, opts()).unwrap();
    peer.create_table("t", 4).unwrap();

    // Node 1 lives: its log refuses a second writer, even one holding the
    // coordinator's word for node 1's very incarnation.
    let live = Node::open(dir, 1, opts()).unwrap();
    let own = key.sign(1, Role::Owner, 1, live.incarnation(), 0);
    let with_key = |proof| {
        Some(LogAccess {
            key: key.clone(),
            proof,
        })
    };
    assert!(matches!(open(&log_dir, with_key(own)), Err(WalError::Locked { .. })));
    assert!(matches!(open(&log_dir, None), Err(WalError::Locked { .. })));
    drop(live);

    // Node 1 fails mid-commit, its write lock retained; it lets go of its
    // log, which now refuses whoever has not the coordinator's word.
    common::node_1_fails_mid_commit(dir, opts(), b"in flight");
    common::wait_for("node 1 to be declared failed", || {
        lock_client(&peer)
            .status()
            .unwrap()
            .iter()
            .any(|m| m.node == 1 && !m.live)
    });
    let denied = |r: Result<wal::Log, WalError>| matches!(r, Err(WalError::AccessDenied { .. }));
    assert!(denied(open(&log_dir, None)), "no proof");
    let forger = AccessKey::new(b"not the cluster's secret".to_vec());
    let forged = LogAccess {
        key: forger.clone(),
        proof: forger.sign(1, Role::Counterpart, 2, 9, 1),
    };
    assert!(denied(open(&log_dir, Some(forged))), "a proof signed with another key");
    let failed_incarnation = lock_client(&peer)
        .status()
        .unwrap()
        .iter()
        .find(|m| m.node == 1)
        .map(|m| m.incarnation)
        .unwrap();
    let older = key.sign(1, Role::Counterpart, 2, failed_incarnation - 1, 1);
    assert!(
        denied(open(&log_dir, with_key(older))),
        "a grant for an older life of node 1"
    );
    let itself = key.sign(1, Role::Counterpart, 1, failed_incarnation, 1);
    assert!(
        denied(open(&log_dir, with_key(itself))),
        "node 1 as its own counterpart"
    );

    // The registered counterpart's grant opens it.
    let client = lock_client(&peer);
    let grant = client.register_counterpart(1).unwrap();
    let log = open(&log_dir, with_key(grant.log_access(2))).expect("the counterpart opens the log");
    log.close().unwrap();
    client.unregister_counterpart(&grant, Outcome::Abandoned).unwrap();
    // And the engine's own recovery, which goes through the same door, works.
    peer.recover_peer(1).unwrap();
    assert_eq!(common::read(&peer, b"k").as_deref(), Some(&b"committed"[..]));
}
