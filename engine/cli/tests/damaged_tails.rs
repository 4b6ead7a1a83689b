//! A byte flipped in the last record of every kind a killed node's log
//! holds, through the `understudy` program: the node restarts through
//! `restart-light` and must either refuse, naming the damage, with its
//! retained locks kept, or start and leave every acknowledged transfer in
//! the bank's journal with the balances conserved. Never a start with an
//! acknowledged transfer gone.
//!
//! Node 1 runs bank transfers that each write a receipt through the file
//! outbox (so the log holds agent records next to page undo records) and
//! is killed with SIGKILL once its log has crossed into a second segment
//! (so a `SegmentEnd` lies between its records). The killed cluster is
//! saved. Then, for each kind, on a fresh copy of it: the last record of
//! that kind is damaged where it lies, with the rest of the log intact,
//! and — the case a torn tail is made of — with the log also cut right
//! after it, as though that record were the last thing written (what the
//! cut removes was durable and acknowledged too: the pages' stamps, or
//! the control file's checkpoint, must give it away).
//!
//! A second test cuts the same kind of killed log at arbitrary bytes of
//! its tail (inside records, across the segment's end) and flips an
//! arbitrary byte near the cut, a bounded number of proptest cases, each
//! checked the same way against the acknowledgement journal.
//!
//! Kinds that cannot appear here, and why: `Abort` is written only after
//! a commit's own I/O failed (the node then stops), never by a kill;
//! `Compensation` only by a rollback to a savepoint or a failed nested
//! scope, which the bank's transfers do not use. `log_damage.rs` covers
//! both in-process (a damaged `Abort` is refused: a checkpoint the control
//! file names follows it, see `recovery/witness.rs`). Should either appear
//! here anyway, it is damaged like the rest.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::ChildGuard;
use wal::io::Io;
use wal::segment::{segment_path, Layout, SEGMENT_HEADER_SIZE};
use wal::{Kind, LogReader, Lsn, RecordBody};

mod support;

use support::{coordinator, member, run, text, EXE};

/// Limits only a hung process or a stuck workload reaches.
const PATIENCE: Duration = Duration::from_secs(120);
/// Where in a record the byte is flipped: inside its 40-byte header (the
/// transaction id), which every kind has.
const FLIP_AT: u64 = 20;

/// Copies the directory tree `from` to `to`: its directories and regular
/// files (the coordinator's socket is left behind; the next coordinator
/// makes its own).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (kind, target) = (e.file_type().unwrap(), to.join(e.file_name()));
        if kind.is_dir() {
            copy_tree(&e.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Whether the first record of segment `seg` of the log in `log_dir` is
/// written: the bytes there name their own position (a record's
/// complemented LSN, 8 bytes into it), which zeroes or stale bytes do not.
/// One read: cheap enough to poll a live log every millisecond.
fn first_record_written(log_dir: &Path, layout: Layout, seg: u64) -> bool {
    let Ok(f) = std::fs::File::open(segment_path(log_dir, seg)) else {
        return false;
    };
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, SEGMENT_HEADER_SIZE + 8).is_ok() && u64::from_le_bytes(b) == !layout.segment_start(seg).0
}

/// A record's `len` header field: its bytes without the padding.
fn record_len(log_dir: &Path, layout: Layout, lsn: Lsn) -> u64 {
    let f = std::fs::File::open(segment_path(log_dir, layout.segment_of(lsn))).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, layout.file_offset(lsn) + 4).unwrap();
    u32::from_le_bytes(b) as u64
}

/// The kind byte of the record at `lsn`.
fn kind_byte(log_dir: &Path, layout: Layout, lsn: Lsn) -> u8 {
    let f = std::fs::File::open(segment_path(log_dir, layout.segment_of(lsn))).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, layout.file_offset(lsn) + 38).unwrap();
    b[0]
}

/// The last record of each kind in the log (agent undo records apart from
/// page undo records), with where the record after it starts; the last
/// `SegmentEnd` too, which a scan steps over: it follows the last record
/// of a segment whose successor holds records.
fn last_of_each_kind(log_dir: &Path) -> (Layout, BTreeMap<&'static str, (Lsn, Lsn)>) {
    let reader = LogReader::open(log_dir, Io::fallback()).unwrap();
    let layout = reader.layout();
    let mut scan = reader.scan(reader.start_lsn());
    let records: Vec<wal::Record> = scan.by_ref().map(|r| r.unwrap()).collect();
    let end = scan.end().unwrap().next;
    let mut last = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let next = records.get(i + 1).map_or(end, |n| n.lsn);
        let name = match (&r.body, r.body.kind()) {
            (RecordBody::AgentUndo(_), _) => "agent undo",
            (_, Kind::Begin) => "begin",
            (_, Kind::Undo) => "page undo",
            (_, Kind::Commit) => "commit",
            (_, Kind::Abort) => "abort",
            (_, Kind::End) => "end",
            (_, Kind::Compensation) => "compensation",
            (_, Kind::Checkpoint) => "checkpoint",
            (_, Kind::CommitIntent) => "commit intent",
            (_, Kind::SegmentEnd) => unreachable!("a scan steps over segment ends"),
        };
        last.insert(name, (r.lsn, next));
        if layout.segment_of(next) > layout.segment_of(r.lsn) {
            let at = Lsn((r.lsn.0 + record_len(log_dir, layout, r.lsn)).next_multiple_of(8));
            assert_eq!(
                kind_byte(log_dir, layout, at),
                Kind::SegmentEnd as u8,
                "no SegmentEnd at {at}"
            );
            last.insert("segment end", (at, layout.segment_start(layout.segment_of(next))));
        }
    }
    (layout, last)
}

/// Node 1 of a bank cluster, killed with SIGKILL as its log entered its
/// second segment, and the whole cluster as the kill left it (coordinator
/// stopped), saved aside: each case damages a fresh copy of it.
struct Killed {
    /// Holds everything below; removed when dropped.
    tmp: tempfile::TempDir,
    /// Node 1's acknowledged transfers: its `ACK` lines.
    acks: String,
    /// Node 1's retained locks once it was declared failed.
    retained: u64,
}

impl Killed {
    /// The cluster directory the cases run in.
    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("c")
    }

    fn log_dir(&self) -> std::path::PathBuf {
        self.dir().join("logs/1")
    }

    /// Runs the bank on node 1 until its log crosses into segment 1, kills
    /// it, and saves the cluster.
    fn new() -> Killed {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let d = dir.to_str().unwrap();
        let o = dir.join("outbox");
        let o = o.to_str().unwrap();
        assert!(run(&["cluster-init", "--dir", d, "--nodes", "1,2"]).status.success());
        let log_dir = dir.join("logs/1");
        let coordinator_process = coordinator(d);
        let mut node = ChildGuard::spawn(
            Command::new(EXE)
                .args(["node", "--cluster", d, "--id", "1", "--bank-init", "--workload", "bank"])
                .args(["--threads", "2", "--txns-per-thread", "2", "--think-ms", "1"])
                .args(["--no-auto-recovery", "--outbox", o, "--receipts"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        )
        .unwrap();
        let (_, all) = harness::read_lines(node.take_stdout().unwrap());
        assert!(harness::wait_for(PATIENCE, Duration::from_millis(20), || {
            LogReader::open(&log_dir, Io::fallback()).is_ok()
        }));
        let layout = LogReader::open(&log_dir, Io::fallback()).unwrap().layout();
        // Killed the moment the stream enters segment 1: the log must still
        // start in segment 0, whose SegmentEnd then lies among its records.
        // The node's next checkpoint (every MiB of log) moves the start,
        // and with 4 MiB segments it comes some 4 KiB, a few transfers,
        // after the crossing: hence a poll every millisecond.
        let crossed = harness::wait_for(PATIENCE, Duration::from_millis(1), || {
            first_record_written(&log_dir, layout, 1)
        });
        node.kill().unwrap();
        assert!(crossed, "node 1's log never reached a second segment");
        let lines = all.join().unwrap();
        let acked = lines.iter().filter(|l| l.starts_with("ACK ")).count();
        assert!(acked > 0, "node 1 acknowledged nothing");
        let acks = tmp.path().join("acks");
        std::fs::write(&acks, lines.join("\n") + "\n").unwrap();
        eprintln!("node 1 killed after {acked} acknowledged transfers");
        assert!(harness::wait_for(PATIENCE, Duration::from_millis(20), || {
            member(d, 1)["state"] == "failed"
        }));
        let retained = member(d, 1)["retained_locks"].as_u64().unwrap();
        // Stopped: its durable record keeps node 1 failed with its locks
        // retained, for every copy.
        drop(coordinator_process);
        copy_tree(&dir, &tmp.path().join("saved"));
        Killed {
            acks: acks.to_str().unwrap().to_string(),
            tmp,
            retained,
        }
    }

    /// A fresh copy of the killed cluster, damaged by `damage` (given node
    /// 1's log directory), restarted through `restart-light`. `Ok` with
    /// what happened when the outcome is allowed: a refusal naming the
    /// damage with node 1 still failed and its locks retained, or a start
    /// after which the bank checks whole against the acknowledgements.
    /// `Err` saying what went wrong otherwise.
    fn restart_damaged(&self, damage: impl FnOnce(&Path)) -> Result<String, String> {
        let dir = self.dir();
        let d = dir.to_str().unwrap();
        let o = dir.join("outbox");
        let o = o.to_str().unwrap();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        copy_tree(&self.tmp.path().join("saved"), &dir);
        damage(&self.log_dir());
        let _coordinator = coordinator(d);
        if member(d, 1)["state"] != "failed" {
            return Err("node 1 is not failed in the restored cluster".into());
        }
        let restarted = run(&["restart-light", "--cluster", d, "--node", "1", "--outbox", o]);
        if restarted.status.success() {
            let check = run(&["bank-check", "--cluster", d, "--id", "2", "--acks", &self.acks]);
            if !check.status.success() {
                return Err(format!(
                    "restarted, and the bank check failed\nrestart: {}\ncheck: {}",
                    text(&restarted),
                    text(&check)
                ));
            }
            return Ok("restarted, bank whole".into());
        }
        let err = String::from_utf8_lossy(&restarted.stderr).into_owned();
        if !(err.contains("lost durable records") || err.contains("log corrupt")) {
            return Err(format!("refused without naming the damage\n{}", text(&restarted)));
        }
        let m = member(d, 1);
        if m["state"] != "failed" || m["recovery"] == "recovered" || m["retained_locks"] != self.retained {
            return Err(format!(
                "refused, but node 1 is no longer failed with its locks retained: {m}"
            ));
        }
        let said = err.lines().find(|l| l.starts_with("error")).unwrap_or_default();
        Ok(format!("refused: {said}"))
    }
}

/// One program test at a time: each runs a bank node flat out, and the
/// kill must land within a few transfers.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_flipped_byte_in_the_last_record_of_every_kind_is_refused_or_loses_no_acknowledged_transfer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let killed = Killed::new();
    let log_dir = killed.log_dir();
    let (layout, last) = last_of_each_kind(&log_dir);
    eprintln!("last of each kind: {last:?}");
    for kind in [
        "begin",
        "page undo",
        "agent undo",
        "commit intent",
        "commit",
        "checkpoint",
        "segment end",
    ] {
        assert!(last.contains_key(kind), "no {kind} record in node 1's log: {last:?}");
    }

    let mut outcomes = Vec::new();
    for (&kind, &(lsn, next)) in &last {
        for cut_after in [false, true] {
            let case = format!(
                "{kind} at LSN {lsn}{}",
                if cut_after { ", log cut after it" } else { "" }
            );
            let outcome = killed.restart_damaged(|log_dir| {
                if cut_after {
                    wal::damage::zero_from(log_dir, layout, next).unwrap();
                }
                assert!(wal::damage::flip(log_dir, layout, Lsn(lsn.0 + FLIP_AT), 0x5a).unwrap());
            });
            match outcome {
                Ok(said) => outcomes.push(format!("{case}: {said}")),
                Err(wrong) => panic!("{case}: {wrong}"),
            }
        }
    }
    for o in &outcomes {
        eprintln!("{o}");
    }

    // The control: undamaged, the same copy restarts and checks whole, so
    // the checks above could have passed a start.
    let undamaged = killed.restart_damaged(|_| {});
    assert_eq!(undamaged.as_deref(), Ok("restarted, bank whole"));
}

/// How far back from the log's end the property test cuts: the last
/// flushes, where a crash leaves its torn write — here across the end of
/// segment 0 and its SegmentEnd into segment 1.
const TAIL: u64 = 64 << 10;

/// The same killed node, its log cut at an arbitrary byte of its tail and,
/// mostly, one byte flipped by an arbitrary mask near the cut (before it or
/// in the zeroes past it): every restart is refused naming the damage, or
/// loses no acknowledged transfer. Proptest cases, bounded (each is a
/// coordinator, a restart and a bank check); a failure shrinks boundedly.
#[test]
fn a_log_tail_cut_at_any_byte_and_flipped_anywhere_is_refused_or_loses_no_acknowledged_transfer() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let killed = Killed::new();
    let log_dir = killed.log_dir();
    let (start, end, layout) = {
        let reader = LogReader::open(&log_dir, Io::fallback()).unwrap();
        (reader.start_lsn(), reader.find_end().unwrap().next, reader.layout())
    };
    let from = |back: u64| start.0.max(end.0.saturating_sub(back));
    let mut runner = TestRunner::new(Config {
        cases: 16,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    // Half the cuts within the last 512 bytes: after the last commit's
    // intent too, where nothing acknowledged is lost and a start is right.
    let cases = (
        prop_oneof![from(TAIL)..=end.0, from(512)..=end.0],
        prop::option::weighted(0.8, (0u64..4 << 10, 0u64..512, 1u8..=255)),
    );
    // The runner takes a `Fn`: the outcomes go through a cell.
    let outcomes = std::cell::RefCell::new(Vec::new());
    let result = runner.run(&cases, |(at, flip_at)| {
        let at = Lsn(at);
        // A flip up to 4 KiB before the cut or 512 bytes past it, in the
        // stream the log holds.
        let flipped =
            flip_at.map(|(back, ahead, mask)| (Lsn((at.0.saturating_sub(back) + ahead).clamp(start.0, end.0)), mask));
        let outcome = killed.restart_damaged(|log_dir| {
            wal::damage::zero_from(log_dir, layout, at).unwrap();
            if let Some((pos, mask)) = flipped {
                assert!(wal::damage::flip(log_dir, layout, pos, mask).unwrap());
            }
        });
        let case = format!("cut at {at}, flipped {flipped:?}");
        match outcome {
            Ok(said) => {
                outcomes.borrow_mut().push(format!("{case}: {said}"));
                Ok(())
            }
            Err(wrong) => Err(TestCaseError::fail(format!("{case}: {wrong}"))),
        }
    });
    for o in outcomes.borrow().iter() {
        eprintln!("{o}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}
