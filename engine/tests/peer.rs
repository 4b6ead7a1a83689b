//! Peer recovery end to end: node 1 runs in a child process (this test
//! binary re-run as `child_node`) writing groups of keys, and is killed with
//! SIGKILL mid-transaction; the two survivors, nodes 2 and 3 in this process
//! with automatic recovery, race to recover it. Checked after each kill:
//! exactly one of them recovered it, every acknowledged group is there whole,
//! no group is half applied, every retained lock is released, and node 1's
//! own restart afterwards finds nothing to back out.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use rand::Rng;
use understudy::admin::lock_client;
use understudy::{Node, NodeOptions};

const CHILD_VAR: &str = "UNDERSTUDY_PEER_CHILD_CLUSTER";
const ROUND_VAR: &str = "UNDERSTUDY_PEER_CHILD_ROUND";
const GROUPS: u32 = 8;
const KEYS_PER_GROUP: u32 = 4;

fn opts() -> NodeOptions {
    NodeOptions {
        log_segment_size: 1 << 20,
        lock_wait: Duration::from_millis(200),
        ..NodeOptions::default()
    }
}

fn key(group: u32, k: u32) -> Vec<u8> {
    format!("g{group}-k{k}").into_bytes()
}

/// The child: node 1 writing one group per transaction, pausing inside the
/// transaction so that kills land mid-flight; prints `ACK <group> <value>`
/// once a commit returned.
#[test]
fn child_node() {
    let Ok(dir) = std::env::var(CHILD_VAR) else { return };
    let round: u64 = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
    let node = Node::open(Path::new(&dir), 1, opts()).expect("child joins");
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut rng = rand::rng();
    for seq in 0u64.. {
        let group = rng.random_range(0..GROUPS);
        let value = format!("{round}-{seq}").into_bytes();
        let result = (|| -> understudy::Result<()> {
            let mut t = node.begin()?;
            for k in 0..KEYS_PER_GROUP {
                t.put("t", &key(group, k), &value)?;
                std::thread::sleep(Duration::from_micros(300));
            }
            // A checkpoint makes the log durable up to here, undo records
            // included: a kill in the pause leaves this transaction in flight
            // on disk, for the survivors to back out.
            node.checkpoint()?;
            std::thread::sleep(Duration::from_millis(2));
            t.commit()
        })();
        match result {
            Ok(()) => {
                println!("ACK {group} {}", String::from_utf8_lossy(&value));
                std::io::stdout().flush().unwrap();
            }
            Err(e) if e.is_retryable() => {}
            Err(e) => panic!("child node failed: {e}"),
        }
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn survivors_recover_a_killed_node_exactly_once_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coord) = common::cluster_with_coordinator(dir.path(), &[1, 2, 3]);
    let n2 = Node::open(dir.path(), 2, opts()).unwrap();
    let n3 = Node::open(dir.path(), 3, opts()).unwrap();
    n2.create_table("t", 4).unwrap();

    let mut acked: std::collections::BTreeMap<u32, String> = Default::default();
    let mut recovered_in_flight = 0;
    // A kill leaves work in flight on disk only when it lands after the
    // child's undo records are durable: go on (bounded) until one has, after
    // at least three rounds (a disk busy with other work makes such kills
    // rarer: the bound is generous).
    for round in 0..20usize {
        if round >= 3 && recovered_in_flight > 0 {
            break;
        }
        let round_var = round.to_string();
        let mut child = common::child_test(
            "child_node",
            &[(CHILD_VAR, dir.path().as_os_str()), (ROUND_VAR, round_var.as_ref())],
        );
        let out = child.take_stdout().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // The test harness prints its own lines first, and the test's name
        // without a newline before the child's first line.
        while !rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child output")
            .ends_with("READY")
        {}
        let first_ack = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("a first commit");
            if line.starts_with("ACK ") {
                break line;
            }
        };
        std::thread::sleep(Duration::from_millis(rand::rng().random_range(5..60)));
        child.kill().unwrap();
        for line in std::iter::once(first_ack).chain(rx.try_iter()) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (g, v) = rest.split_once(' ').unwrap();
                acked.insert(g.parse().unwrap(), v.to_string());
            }
        }

        // Exactly one survivor recovers node 1.
        let before = n2.recoveries().len() + n3.recoveries().len();
        wait_for("the recovery of node 1", || {
            (n2.recoveries().len() + n3.recoveries().len() > before).then_some(())
        });
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            n2.recoveries().len() + n3.recoveries().len(),
            before + 1,
            "round {round}: exactly one counterpart"
        );
        let tl = n2.recoveries().into_iter().chain(n3.recoveries()).last().unwrap();
        assert_eq!(tl.failed, 1);
        assert_eq!(
            tl.steps.iter().map(|s| s.name).collect::<Vec<_>>(),
            [
                "fenced",
                "registered",
                "log opened",
                "in-flight found",
                "written back",
                "synced",
                "ended",
                "released"
            ]
        );
        recovered_in_flight += tl.in_flight;
        assert!(
            lock_client(&n2).retained(1).unwrap().is_empty(),
            "every retained lock released"
        );

        // Every acknowledged group is whole; no group is half applied.
        let mut t = n2.begin().unwrap();
        for g in 0..GROUPS {
            let vals: Vec<_> = (0..KEYS_PER_GROUP).map(|k| t.get("t", &key(g, k)).unwrap()).collect();
            assert!(
                vals.windows(2).all(|w| w[0] == w[1]),
                "group {g} half applied: {vals:?}"
            );
            if let Some(v) = acked.get(&g) {
                let have = vals[0].as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                // A later commit of the same group may have been durable
                // without its ACK being read; an older value never. Values
                // are "<round>-<sequence>".
                let order = |s: &str| -> (u64, u64) {
                    let (r, q) = s.split_once('-').unwrap_or(("0", "0"));
                    (r.parse().unwrap_or(0), q.parse().unwrap_or(0))
                };
                let have = have.unwrap_or_default();
                assert!(order(&have) >= order(v), "group {g}: acknowledged {v}, found {have}");
            }
        }
        t.rollback().unwrap();
    }
    assert!(recovered_in_flight > 0, "some kill landed inside a transaction");

    // Node 1's own restart finds nothing left to back out.
    let n1 = Node::open(dir.path(), 1, opts()).unwrap();
    assert!(!n1.start_report().restarted);
    assert_eq!(n1.start_report().backed_out, 0);
}
