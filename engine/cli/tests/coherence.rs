//! Cache coherence between node processes, through the `understudy`
//! program: three nodes, each with a buffer pool far smaller than the data
//! (so pages come and go), run bank transfers between the same few accounts
//! for a bounded time, and beside them read-only audits that sum every
//! balance in one transaction (each sum must be the starting total); then
//! the bank must check whole — the balances sum to the starting total,
//! every acknowledged transfer is in the journal.
//!
//! Nodes on one host share no page cache here: table files are read and
//! written with direct I/O, and each node keeps its own copies. What keeps
//! them from reading a page another node changed since is the lock value
//! block each grant carries (the stamp of the page's last write). The
//! negative test proves this test can fail: with the version check
//! switched off (`--trust-cached-pages`, for this test only), nodes take
//! their stale copies for current and the same run breaks the bank.

use std::process::{Command, Output, Stdio};

use harness::ChildGuard;

const EXE: &str = env!("CARGO_BIN_EXE_understudy");
/// Few accounts (a few pages of them): nodes keep meeting on the same pages.
const ACCOUNTS: &str = "24";
/// Far fewer frames than the pages the nodes touch (the journal alone has
/// over a thousand), so copies are evicted and read again as well.
const POOL_PAGES: &str = "16";
const SECONDS: &str = "3";

fn run(args: &[&str]) -> Output {
    Command::new(EXE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run understudy")
}

fn text(o: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or(""),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What a run found.
struct Run {
    /// `bank-check`'s output.
    check: Output,
    /// Audits each node made (its `AUDITS` line), `None` for a node that
    /// printed none (an audit found a wrong total, or the node failed).
    audits: Vec<Option<u64>>,
    /// Whether each node exited 0.
    succeeded: Vec<bool>,
}

/// Three nodes running transfers and audits for a while, each with `extra`
/// flags; then `bank-check` through a fourth member with every
/// acknowledgement.
fn transfers_then_check(extra: &[&str]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let d = dir.to_str().unwrap();
    assert!(run(&["cluster-init", "--dir", d, "--nodes", "1,2,3,4"])
        .status
        .success());
    let mut coordinator = ChildGuard::spawn(
        Command::new(EXE)
            .args(["coordinator", "--cluster", d])
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let (rx, _) = harness::read_lines(coordinator.take_stdout().unwrap());
    assert!(rx.iter().take(4).any(|l| l.starts_with("listening on")));
    let init = run(&[
        "node",
        "--cluster",
        d,
        "--id",
        "4",
        "--bank-init",
        "--accounts",
        ACCOUNTS,
        "--duration-secs",
        "0",
    ]);
    assert!(init.status.success(), "{}", text(&init));

    let nodes: Vec<ChildGuard> = ["1", "2", "3"]
        .iter()
        .map(|id| {
            ChildGuard::spawn(
                Command::new(EXE)
                    .args([
                        "node",
                        "--cluster",
                        d,
                        "--id",
                        id,
                        "--workload",
                        "bank",
                        "--threads",
                        "2",
                    ])
                    .args(["--accounts", ACCOUNTS, "--pool-pages", POOL_PAGES])
                    .args(["--audit-threads", "1"])
                    .args(["--duration-secs", SECONDS])
                    .args(extra)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null()),
            )
            .unwrap()
        })
        .collect();
    let mut acks = String::new();
    let (mut audits, mut succeeded) = (Vec::new(), Vec::new());
    for mut n in nodes {
        let (_, lines) = harness::read_lines(n.take_stdout().unwrap());
        let lines = lines.join().unwrap();
        // Bounded: the node stops by itself after its duration.
        let status = n.wait_timeout(std::time::Duration::from_secs(120)).unwrap();
        assert!(status.is_some(), "a node did not stop after its duration");
        let n_acks = lines.iter().filter(|l| l.starts_with("ACK ")).count();
        let n_audits = lines.iter().find_map(|l| {
            l.strip_prefix("AUDITS ")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
        eprintln!("node exited {status:?} after {n_acks} acknowledged transfers and {n_audits:?} audits");
        audits.push(n_audits);
        succeeded.push(status.is_some_and(|s| s.success()));
        for l in lines {
            acks.push_str(&l);
            acks.push('\n');
        }
    }
    let file = tmp.path().join("acks");
    std::fs::write(&file, acks).unwrap();
    let check = run(&[
        "bank-check",
        "--cluster",
        d,
        "--id",
        "4",
        "--accounts",
        ACCOUNTS,
        "--acks",
        file.to_str().unwrap(),
    ]);
    Run {
        check,
        audits,
        succeeded,
    }
}

#[test]
fn three_nodes_with_small_pools_keep_the_bank_whole() {
    let run = transfers_then_check(&[]);
    assert!(run.check.status.success(), "{}", text(&run.check));
    assert_eq!(
        run.succeeded,
        [true; 3],
        "every node ran to its end: {}",
        text(&run.check)
    );
    for (i, n) in run.audits.iter().enumerate() {
        assert!(
            n.is_some_and(|n| n > 0),
            "node {} made no audit: {:?}",
            i + 1,
            run.audits
        );
    }
}

/// The same run with the version check off must break the bank, or an
/// audit must read a wrong total: the test above can fail.
#[test]
fn without_the_version_check_stale_pages_break_the_bank() {
    let run = transfers_then_check(&["--trust-cached-pages"]);
    let audit_caught = run.audits.iter().any(Option::is_none);
    assert!(
        !run.check.status.success() || audit_caught,
        "stale copies went unnoticed: audits {:?}, {}",
        run.audits,
        text(&run.check)
    );
    eprintln!(
        "detected as expected: audits {:?}, check {}",
        run.audits,
        text(&run.check)
    );
}
