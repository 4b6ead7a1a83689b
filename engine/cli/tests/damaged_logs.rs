//! Damaged and missing logs of a failed node, through the `understudy`
//! program: the node's own restart (`restart-light`) must refuse, naming
//! the damage, keep the node's retained locks, and go on only when the
//! operator accepts the damage (`--accept-log-damage`) — never start as if
//! the log were empty or its damaged tail torn, with acknowledged work
//! lost.
//!
//! The bugs they guard: deleting every segment of a crashed node's log was
//! taken for an empty log (its retained locks released with nothing backed
//! out), and a damaged commit intent at the tail was cut as torn, undoing
//! an acknowledged commit.

use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::ChildGuard;
use understudy::{Node, NodeOptions};
use wal::io::Io;
use wal::{Kind, LogReader};

mod support;

use support::{coordinator, member, run, text, EXE};

/// A node killed with SIGKILL mid-transfers; its log's segments, then its
/// whole log directory, taken away: `restart-light` refuses each time and
/// the node stays failed and unrecovered; with the log put back it
/// recovers and the bank checks whole.
#[test]
fn a_crashed_node_without_its_log_segments_or_its_log_is_not_restarted_as_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let d = dir.to_str().unwrap();
    assert!(run(&["cluster-init", "--dir", d, "--nodes", "1,2"]).status.success());
    let _coordinator = coordinator(d);
    let mut node = ChildGuard::spawn(
        Command::new(EXE)
            .args(["node", "--cluster", d, "--id", "1", "--bank-init", "--workload", "bank"])
            .args(["--think-ms", "5", "--no-auto-recovery"])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let (rx, all) = harness::read_lines(node.take_stdout().unwrap());
    let acked = rx.iter().filter(|l| l.starts_with("ACK ")).take(50).count();
    assert_eq!(acked, 50, "the node acknowledged transfers");
    node.kill().unwrap();
    let acks = tmp.path().join("acks");
    std::fs::write(&acks, all.join().unwrap().join("\n")).unwrap();
    assert!(harness::wait_for(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || { member(d, 1)["state"] == "failed" }
    ));

    let log_dir = dir.join("logs/1");
    let aside = tmp.path().join("aside");
    std::fs::create_dir(&aside).unwrap();
    let segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert!(!segments.is_empty());
    for s in &segments {
        std::fs::rename(s, aside.join(s.file_name().unwrap())).unwrap();
    }
    let refused = run(&["restart-light", "--cluster", d, "--node", "1"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("segment"),
        "{}",
        text(&refused)
    );
    assert_ne!(member(d, 1)["recovery"], "recovered");

    // The whole directory gone.
    std::fs::rename(&log_dir, tmp.path().join("log-aside")).unwrap();
    let refused = run(&["restart-light", "--cluster", d, "--node", "1"]);
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        !refused.status.success() && err.contains("log of node 1 is missing"),
        "{}",
        text(&refused)
    );
    assert!(err.contains("--accept-log-damage"), "{err}");
    assert!(!log_dir.exists(), "no empty log was made in its place");
    assert_ne!(member(d, 1)["recovery"], "recovered");

    // Put back, the node recovers itself and nothing acknowledged is lost.
    std::fs::rename(tmp.path().join("log-aside"), &log_dir).unwrap();
    for s in &segments {
        std::fs::rename(aside.join(s.file_name().unwrap()), s).unwrap();
    }
    let restarted = run(&["restart-light", "--cluster", d, "--node", "1"]);
    assert!(restarted.status.success(), "{}", text(&restarted));
    let check = run(&[
        "bank-check",
        "--cluster",
        d,
        "--id",
        "2",
        "--acks",
        acks.to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{}", text(&check));
}

/// An acknowledged commit whose intent is the log's last record, damaged
/// after the fact: `restart-light` refuses with the page that proves it,
/// the node's locks stay, and `--accept-log-damage` keeps the commit.
#[test]
fn a_damaged_intent_at_the_tail_is_refused_until_the_operator_accepts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let d = dir.to_str().unwrap();
    assert!(run(&["cluster-init", "--dir", d, "--nodes", "1,2"]).status.success());
    let _coordinator = coordinator(d);
    let opts = NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    };
    let node = Node::open(&dir, 1, opts.clone()).unwrap();
    node.create_table("t", 4).unwrap();
    node.run(|t| t.put("t", b"acknowledged", b"yes")).unwrap();
    // Fails: the connection drops without leaving.
    drop(node);
    let log_dir = dir.join("logs/1");
    assert!(harness::wait_for(
        Duration::from_secs(30),
        Duration::from_millis(5),
        || { LogReader::owner_status(&log_dir).unwrap() == wal::OwnerStatus::Gone }
    ));

    // A crash right after the intent was durable (its commit record was
    // not), then a byte of the intent damaged.
    let reader = LogReader::open(&log_dir, Io::fallback()).unwrap();
    let records: Vec<_> = reader.scan(reader.start_lsn()).map(|r| r.unwrap()).collect();
    let i = records
        .iter()
        .rposition(|r| r.body.kind() == Kind::CommitIntent)
        .unwrap();
    let layout = reader.layout();
    let segment = |lsn: wal::Lsn| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(wal::segment::segment_path(&log_dir, layout.segment_of(lsn)))
            .unwrap()
    };
    let after = records[i + 1].lsn;
    let f = segment(after);
    let from = layout.file_offset(after);
    f.write_all_at(&vec![0u8; (f.metadata().unwrap().len() - from) as usize], from)
        .unwrap();
    let intent = records[i].lsn;
    segment(intent)
        .write_all_at(&[0x5a], layout.file_offset(intent) + 20)
        .unwrap();

    let refused = run(&["restart-light", "--cluster", d, "--node", "1"]);
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{}", text(&refused));
    for w in ["lost durable records", "t-1.tbl", "--accept-log-damage"] {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
    assert_ne!(member(d, 1)["recovery"], "recovered");

    let accepted = run(&["restart-light", "--cluster", d, "--node", "1", "--accept-log-damage"]);
    assert!(accepted.status.success(), "{}", text(&accepted));
    let reader = Node::open(&dir, 2, opts).unwrap();
    let mut t = reader.begin().unwrap();
    assert_eq!(t.get("t", b"acknowledged").unwrap().as_deref(), Some(&b"yes"[..]));
    t.rollback().unwrap();
    reader.close().unwrap();
}
