//! `understudy demo`: the main job.
//!
//! In a temporary cluster directory it starts a coordinator and three node
//! processes running bank transfers, kills node 1 with SIGKILL in the middle
//! of its work, and lets the survivors recover it: one registers as its
//! counterpart, backs out its in-flight transfers from its private log,
//! frees its retained locks and steps down. The demo prints the recovery
//! timeline and the survivors' commit rate before, during and after the
//! recovery, then checks that the total balance is unchanged and every
//! acknowledged transfer survived; it exits non-zero if anything is wrong.
//! Every process it starts is killed and reaped, and the directory removed,
//! on every path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use understudy::{Cluster, Node, NodeOptions};

use super::bank::{self, Ack};
use super::CliError;

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct ClusterDemoArgs {
    /// Transfer threads per node.
    #[arg(long, default_value_t = 2)]
    pub threads: u16,
    /// Bank accounts.
    #[arg(long, default_value_t = 200)]
    pub accounts: u32,
    /// Seconds of transfers before the kill, and again after the recovery.
    #[arg(long, default_value_t = 2)]
    pub seconds: u64,
    /// Keep the cluster directory (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Measure instead: kill node 1 `--kills` times and report percentiles
    /// of failure detection and of kill → locks released, and the
    /// survivors' commit rate during recoveries. The bank gets at least 100
    /// accounts per transfer node 1 keeps in flight.
    #[arg(long)]
    pub bench: bool,
    /// Kills the bench makes.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub kills: u32,
    /// Transfer threads of node 1 in the bench.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub victim_threads: u16,
    /// Transfers each of node 1's threads keeps in flight in the bench,
    /// interleaved (`node --txns-per-thread`): threads × this is about the
    /// transactions in flight when it is killed, a little less since each
    /// is between transfers part of the time (10 × 15 leaves about 100).
    /// 100 threads of one each is the same load, slower to kill: the
    /// kernel tears every thread down before the process's sockets close.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub victim_txns_per_thread: u16,
    /// Milliseconds node 1 pauses inside each transfer in the bench.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub think_ms: u64,
    /// Print the bench's figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(super) const INIT_BALANCE: u64 = 1000;
/// The node killed, and the member the demo checks the bank from.
pub(super) const VICTIM: u32 = 1;
pub(super) const CHECKER: u32 = 4;

/// A child process killed and reaped when dropped.
pub(super) struct Proc {
    pub(super) child: Child,
    name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line a node printed, and when.
pub(super) struct Line {
    pub(super) node: u32,
    pub(super) at: Instant,
    pub(super) text: String,
}

pub(super) fn spawn(
    exe: &Path,
    args: &[String],
    name: &str,
    node: u32,
    tx: Option<mpsc::Sender<Line>>,
) -> Result<Proc, CliError> {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CliError::os(format!("starting {name}"), e))?;
    let out = child.stdout.take().expect("stdout is piped");
    if let Some(tx) = tx {
        std::thread::spawn(move || {
            for text in BufReader::new(out).lines().map_while(Result::ok) {
                if tx
                    .send(Line {
                        node,
                        at: Instant::now(),
                        text,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    Ok(Proc {
        child,
        name: name.into(),
    })
}

fn rate(acks: &[(u32, Instant)], from: Instant, to: Instant) -> f64 {
    let n = acks.iter().filter(|(_, t)| *t >= from && *t < to).count();
    let secs = to.saturating_duration_since(from).as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

pub fn run(args: &ClusterDemoArgs) -> Result<(), CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::os("locating this program", e))?;
    let tmp = tempfile::tempdir().map_err(|e| CliError::os("creating a temporary directory", e))?;
    let dir: PathBuf = tmp.path().to_path_buf();
    let d = dir.display().to_string();
    let ep = format!("unix:{}", dir.join("coordinator.sock").display());
    let result = if args.bench {
        super::recovery_bench::run(args, &exe, &dir, &d, &ep)
    } else {
        demo(args, &exe, &dir, &d, &ep)
    };
    if args.keep {
        let kept = tmp.keep();
        say!("cluster directory kept at {}", kept.display());
    }
    result
}

/// Creates the cluster in `dir` (nodes 1–3 and the checker), starts its
/// coordinator process and creates the bank from the checker's member id.
/// Returns the coordinator and the line it printed when it listened.
pub(super) fn start_cluster(
    exe: &Path,
    dir: &Path,
    d: &str,
    ep: &str,
    accounts: u32,
) -> Result<(Proc, String), CliError> {
    Cluster::create(dir, &[1, 2, 3, CHECKER], ep.parse().map_err(CliError::Invalid)?, 4096)?;
    let (ctx, crx) = mpsc::channel();
    let coordinator = spawn(
        exe,
        &["coordinator".into(), "--cluster".into(), d.into()],
        "coordinator",
        0,
        Some(ctx),
    )?;
    let listening = crx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| CliError::Child("the coordinator did not start".into()))?;
    let node = Node::open(dir, CHECKER, quiet())?;
    bank::init(&node, accounts, INIT_BALANCE)?;
    node.close()?;
    Ok((coordinator, listening.text))
}

fn demo(args: &ClusterDemoArgs, exe: &Path, dir: &Path, d: &str, ep: &str) -> Result<(), CliError> {
    say!("== Understudy cluster demo ==");
    let (_coordinator, listening) = start_cluster(exe, dir, d, ep, args.accounts)?;
    say!("cluster directory {d}: nodes 1, 2, 3 run transfers; node {VICTIM} will be killed");
    say!("coordinator up ({listening})");
    say!("bank created: {} accounts", args.accounts);
    let expected = bank::expected_total(args.accounts, INIT_BALANCE)?;

    let (tx, rx) = mpsc::channel::<Line>();
    let node_args = |id: u32, seconds: Option<u64>| {
        let mut a = vec![
            "node".to_string(),
            "--cluster".into(),
            d.into(),
            "--id".into(),
            id.to_string(),
            "--workload".into(),
            "bank".into(),
            "--threads".into(),
            args.threads.to_string(),
            "--accounts".into(),
            args.accounts.to_string(),
        ];
        if let Some(s) = seconds {
            a.extend(["--duration-secs".into(), s.to_string()]);
        }
        a
    };
    // Survivors run through the whole demo and leave cleanly at the end.
    let survivor_secs = 2 * args.seconds + 10;
    // Node 1 pauses inside each transfer, so the kill finds transfers in
    // flight on its log for the survivors to back out.
    let mut victim_args = node_args(VICTIM, None);
    victim_args.extend(["--think-ms".into(), "5".into()]);
    let mut victim = spawn(exe, &victim_args, "node 1", VICTIM, Some(tx.clone()))?;
    let mut survivors = Vec::new();
    for id in [2, 3] {
        survivors.push(spawn(
            exe,
            &node_args(id, Some(survivor_secs)),
            &format!("node {id}"),
            id,
            Some(tx.clone()),
        )?);
    }
    drop(tx);

    let mut acks: Vec<(u32, Instant)> = Vec::new();
    let mut promised: Vec<Ack> = Vec::new();
    let mut timeline: Option<(u32, String, Instant)> = None;
    let mut done = 0;
    let take = |l: Line,
                acks: &mut Vec<(u32, Instant)>,
                promised: &mut Vec<Ack>|
     -> Result<Option<(u32, String, Instant)>, CliError> {
        if let Some(a) = Ack::parse(&l.text) {
            promised.push(a.map_err(CliError::Check)?);
            acks.push((l.node, l.at));
        } else if let Some(json) = l.text.strip_prefix("RECOVERED ") {
            return Ok(Some((l.node, json.to_string(), l.at)));
        }
        Ok(None)
    };

    // Before: everyone commits.
    let started = Instant::now();
    let kill_at = started + Duration::from_secs(args.seconds);
    let mut next_progress = started + Duration::from_secs(1);
    while Instant::now() < kill_at {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(10)) {
            take(l, &mut acks, &mut promised)?;
        }
        if Instant::now() >= next_progress {
            say!(
                "  {:>4.1}s  {} transfers acknowledged",
                started.elapsed().as_secs_f64(),
                acks.len()
            );
            next_progress += Duration::from_secs(1);
        }
    }
    // Kill node 1 in the middle of its work.
    victim.child.kill().map_err(|e| CliError::os("killing node 1", e))?;
    let killed = Instant::now();
    let _ = victim.child.wait();
    say!(
        "node {VICTIM} killed with SIGKILL at {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // During: wait for a survivor to report the recovery.
    let deadline = killed + Duration::from_secs(30);
    while timeline.is_none() && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(10)) {
            timeline = take(l, &mut acks, &mut promised)?;
        }
    }
    let Some((by, json, recovered)) = timeline else {
        return Err(CliError::Check(
            "no survivor reported recovering node 1 within 30 s".into(),
        ));
    };
    say!("node {by} recovered node {VICTIM}; timeline:\n  {json}");
    say!(
        "  kill → locks released seen by the demo: {:.2} ms",
        recovered.duration_since(killed).as_secs_f64() * 1e3
    );

    // After: the survivors go on until they leave.
    while done < survivors.len() {
        match rx.recv_timeout(Duration::from_secs(survivor_secs + 30)) {
            Ok(l) if l.text.starts_with("DONE") => done += 1,
            Ok(l) => {
                take(l, &mut acks, &mut promised)?;
            }
            Err(_) => return Err(CliError::Child("a survivor stopped reporting".into())),
        }
    }
    for s in &mut survivors {
        let status = s
            .child
            .wait()
            .map_err(|e| CliError::os(format!("waiting for {}", s.name), e))?;
        if !status.success() {
            return Err(CliError::Child(format!("{} exited with {status}", s.name)));
        }
    }

    let survivors_only: Vec<(u32, Instant)> = acks.iter().copied().filter(|(n, _)| *n != VICTIM).collect();
    let window = Duration::from_secs(1);
    let before = rate(&survivors_only, killed.checked_sub(window).unwrap_or(started), killed);
    let during_n = survivors_only
        .iter()
        .filter(|(_, t)| *t >= killed && *t < recovered)
        .count();
    let after = rate(&survivors_only, recovered, recovered + window);
    say!(
        "survivors' commits: {before:.0}/s before the kill, {during_n} during the {:.2} ms recovery, {after:.0}/s after",
        recovered.duration_since(killed).as_secs_f64() * 1e3
    );

    // The check, from a member that took no part.
    let node = Node::open(dir, CHECKER, quiet())?;
    check_bank(node, args.accounts, expected, &promised)
}

/// Checks the bank from `node` (then closes it): the total is `expected`,
/// every promised transfer is there, and no node keeps a retained lock.
pub(super) fn check_bank(node: Node, accounts: u32, expected: u64, promised: &[Ack]) -> Result<(), CliError> {
    let total = bank::total_balance(&node, accounts)?;
    bank::check_acks(&node, promised)?;
    let statuses = node.client().status()?;
    node.close()?;
    if total != expected {
        return Err(CliError::Check(format!("total balance {total}, expected {expected}")));
    }
    if let Some(m) = statuses.iter().find(|m| m.retained_locks > 0) {
        return Err(CliError::Check(format!("node {} still has retained locks", m.node)));
    }
    say!(
        "check passed: total balance {total} unchanged; all {} acknowledged transfers present; no retained locks",
        promised.len()
    );
    Ok(())
}

pub(super) fn quiet() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        log_segment_size: 1 << 20,
        ..NodeOptions::default()
    }
}
