//! Shipping in one process: a primary node with redo on and a standby
//! thread over TCP on 127.0.0.1. The standby's copy ends equal to the
//! primary's data; a standby of another database and one with another
//! secret are refused with typed errors; a frame damaged on the way (by a
//! proxy that flips a payload byte) is asked for again and the copy is
//! still right; in sync mode a commit returns once the standby holds it,
//! and reports `NotReplicated` when no standby answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use replication::{
    seed, Primary, PrimaryConfig, Refusal, ReplicationError, ReplicationSecret, StandbyConfig, StandbyHandle,
};
use understudy::{Cluster, Node, NodeOptions};

const ROWS: usize = 150;

fn secret(s: &str) -> ReplicationSecret {
    ReplicationSecret::new(format!("{s:-<24}").into_bytes()).unwrap()
}

fn node_opts() -> NodeOptions {
    NodeOptions {
        embed_coordinator: true,
        ..NodeOptions::default()
    }
}

/// A one-node primary site with table `t` and a row, stopped.
fn primary_site(dir: &Path) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    Cluster::create(dir, &[1], ep.parse().unwrap(), 4096).unwrap();
    let node = Node::open(dir, 1, node_opts()).unwrap();
    node.create_table("t", 8).unwrap();
    put(&node, "first", "row");
    node.close().unwrap();
}

fn put(node: &Node, key: &str, value: &str) {
    let mut t = node.begin().unwrap();
    t.put("t", key.as_bytes(), value.as_bytes()).unwrap();
    t.commit().unwrap();
}

fn standby_seeded(primary: &Path, dir: &Path) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    seed(primary, dir, ep.parse().unwrap()).unwrap();
}

struct Running {
    handle: Arc<StandbyHandle>,
    thread: std::thread::JoinHandle<replication::Result<()>>,
}

fn start_standby(dir: &Path, primary: SocketAddr, s: &str) -> Running {
    let cfg = StandbyConfig {
        cluster_dir: dir.to_path_buf(),
        primary,
        secret: secret(s),
        standby_id: 7,
    };
    let handle = Arc::new(StandbyHandle::default());
    let h = handle.clone();
    let thread = std::thread::spawn(move || replication::run_standby(&cfg, &h));
    Running { handle, thread }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn primary_running(dir: &Path, sync: usize) -> (Node, Primary) {
    let mut primary = Primary::new(PrimaryConfig {
        cluster_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        secret: secret("group"),
        sync_standbys: sync,
        sync_timeout: Duration::from_millis(300),
    })
    .unwrap();
    let node = Node::open(
        dir,
        1,
        NodeOptions {
            redo: true,
            commit_gate: Some(primary.gate()),
            ..node_opts()
        },
    )
    .unwrap();
    primary.serve(node.redo_watermark().unwrap()).unwrap();
    (node, primary)
}

/// Every row of the standby's copy, read through a node of its own.
fn rows_of(dir: &Path) -> Vec<Option<Vec<u8>>> {
    let node = Node::open(dir, 1, node_opts()).unwrap();
    let mut t = node.begin().unwrap();
    let mut out = vec![t.get("t", b"first").unwrap()];
    for i in 0..ROWS {
        out.push(t.get("t", format!("k{i}").as_bytes()).unwrap());
    }
    t.rollback().unwrap();
    node.close().unwrap();
    out
}

#[test]
fn a_standby_applies_every_commit_in_order_and_resumes_after_a_stop() {
    let p = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    primary_site(p.path());
    standby_seeded(p.path(), s.path());
    let (node, primary) = primary_running(p.path(), 0);
    let standby = start_standby(s.path(), primary.local_addr(), "group");
    for i in 0..ROWS / 2 {
        put(&node, &format!("k{i}"), &format!("v{i}"));
    }
    // Stopped halfway, then started again: it resumes where it was.
    standby.handle.stop();
    standby.thread.join().unwrap().unwrap();
    let standby = start_standby(s.path(), primary.local_addr(), "group");
    for i in ROWS / 2..ROWS {
        put(&node, &format!("k{i}"), &format!("v{i}"));
    }
    let committed = node.redo_watermark().unwrap().committed();
    wait_for("the standby to apply every commit", || {
        standby.handle.status.lock().unwrap().applied == committed
    });
    let report = primary.status();
    assert_eq!(report.standbys.len(), 1);
    standby.handle.stop();
    standby.thread.join().unwrap().unwrap();
    let status = standby.handle.status.lock().unwrap().clone();
    assert_eq!(status.lag(), 0);
    assert!(status.connections >= 1);
    drop(primary);
    node.close().unwrap();
    assert_eq!(rows_of(s.path()), rows_of(p.path()));
}

#[test]
fn another_database_and_another_secret_are_refused() {
    let p = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    primary_site(p.path());
    primary_site(other.path());
    standby_seeded(other.path(), s.path());
    standby_seeded(p.path(), s2.path());
    let (node, primary) = primary_running(p.path(), 0);

    let wrong_db = start_standby(s.path(), primary.local_addr(), "group");
    match wrong_db.thread.join().unwrap() {
        Err(ReplicationError::Refused {
            refusal: Refusal::OtherDatabase,
            ..
        }) => {}
        other => panic!("expected OtherDatabase, got {other:?}"),
    }
    let wrong_secret = start_standby(s2.path(), primary.local_addr(), "not the group's");
    match wrong_secret.thread.join().unwrap() {
        Err(ReplicationError::WrongSecret) => {}
        other => panic!("expected WrongSecret, got {other:?}"),
    }
    assert!(!primary.status().refused.is_empty(), "the primary reports the refusal");
    drop(primary);
    node.close().unwrap();
}

/// Forwards `from` to `to`, flipping one payload byte of the `nth` frame
/// of at least 1 KiB (a redo record).
fn pump(mut from: TcpStream, mut to: TcpStream, nth: usize) {
    let mut seen = 0;
    loop {
        let mut h = [0u8; replication::frame::HEADER_LEN];
        if from.read_exact(&mut h).is_err() {
            break;
        }
        let len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        if from.read_exact(&mut payload).is_err() {
            break;
        }
        if len > 1024 {
            seen += 1;
            if seen == nth {
                payload[len / 2] ^= 0x40;
            }
        }
        if to.write_all(&h).and_then(|()| to.write_all(&payload)).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn damaging_proxy(primary: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, conn) in l.incoming().enumerate() {
            let Ok(standby) = conn else { return };
            let Ok(up) = TcpStream::connect(primary) else { return };
            let (s2, u2) = (standby.try_clone().unwrap(), up.try_clone().unwrap());
            // Only the first connection damages a frame.
            let nth = if i == 0 { 5 } else { usize::MAX };
            std::thread::spawn(move || pump(up, standby, nth));
            std::thread::spawn(move || pump(s2, u2, usize::MAX));
        }
    });
    addr
}

#[test]
fn a_damaged_frame_is_asked_for_again_and_the_copy_is_right() {
    let p = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    primary_site(p.path());
    standby_seeded(p.path(), s.path());
    let (node, primary) = primary_running(p.path(), 0);
    for i in 0..ROWS {
        put(&node, &format!("k{i}"), &format!("v{i}"));
    }
    let standby = start_standby(s.path(), damaging_proxy(primary.local_addr()), "group");
    let committed = node.redo_watermark().unwrap().committed();
    wait_for("the standby to apply every commit", || {
        standby.handle.status.lock().unwrap().applied == committed
    });
    standby.handle.stop();
    standby.thread.join().unwrap().unwrap();
    assert!(
        standby.handle.status.lock().unwrap().resends >= 1,
        "the damage was noticed"
    );
    assert!(primary.status().standbys[0].resends >= 1, "and the frame sent again");
    drop(primary);
    node.close().unwrap();
    assert_eq!(rows_of(s.path()), rows_of(p.path()));
}

#[test]
fn in_sync_mode_a_commit_returns_once_the_standby_holds_it() {
    let p = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    primary_site(p.path());
    standby_seeded(p.path(), s.path());
    let (node, primary) = primary_running(p.path(), 1);
    let standby = start_standby(s.path(), primary.local_addr(), "group");
    wait_for("the standby to connect", || {
        standby.handle.status.lock().unwrap().connected
    });
    for i in 0..20 {
        put(&node, &format!("k{i}"), "v");
        let seq = node.redo_watermark().unwrap().committed();
        let held = primary.status().standbys[0].durable;
        assert!(held >= seq, "commit {seq} returned, the standby holds {held}");
    }
    standby.handle.stop();
    standby.thread.join().unwrap().unwrap();
    let mut t = node.begin().unwrap();
    t.put("t", b"alone", b"v").unwrap();
    match t.commit() {
        Err(understudy::Error::NotReplicated { .. }) => {}
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    drop(primary);
    node.close().unwrap();
}
