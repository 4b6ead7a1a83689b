//! `understudy demo`: the main job.
//!
//! In a temporary cluster directory it starts a coordinator and three node
//! processes running bank transfers, kills node 1 with SIGKILL in the middle
//! of its work, and lets the survivors recover it: one registers as its
//! counterpart, backs out its in-flight transfers from its private log,
//! frees its retained locks and steps down. Node 1's transfers also write a
//! receipt each through the file outbox (`<cluster>/outbox`, registered on
//! every node): a file that appears exactly when its transfer commits, so
//! the recovery removes the receipts of the transfers it backs out. The
//! demo prints the recovery timeline and the survivors' commit rate before,
//! during and after the recovery, then checks that the total balance is
//! unchanged, every acknowledged transfer survived, and every published
//! receipt belongs to a committed transfer (each of node 1's acknowledged
//! ones there, none left aside); it exits non-zero if anything is wrong.
//! Every process it starts is killed and reaped, and the directory removed,
//! on every path.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use understudy::Node;

use crate::bank::{self, Ack};
use crate::cluster::demo_args::ClusterDemoArgs;
use crate::cluster::outbox::check_receipts;
use crate::cluster::processes::{check_bank, quiet, spawn, start_cluster, Line, CHECKER, INIT_BALANCE, VICTIM};
use crate::error::CliError;

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
        crate::cluster::recovery_bench::run(args, &exe, &dir, &d, &ep)
    } else {
        demo(args, &exe, &dir, &d, &ep)
    };
    if args.keep {
        let kept = tmp.keep();
        say!("cluster directory kept at {}", kept.display());
    }
    result
}

fn demo(args: &ClusterDemoArgs, exe: &Path, dir: &Path, d: &str, ep: &str) -> Result<(), CliError> {
    say!("== Understudy cluster demo ==");
    let (_coordinator, listening) = start_cluster(exe, dir, d, ep, args.accounts)?;
    say!("cluster directory {d}: nodes 1, 2, 3 run transfers; node {VICTIM} will be killed");
    say!("coordinator up ({listening})");
    say!("bank created: {} accounts", args.accounts);
    let expected = bank::expected_total(args.accounts, INIT_BALANCE)?;
    let outbox = dir.join("outbox");
    let outbox_words = ["--outbox".to_string(), outbox.display().to_string()];

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
        // Every node registers the outbox agent: any of them may recover
        // node 1, whose transfers write receipts through it.
        a.extend(outbox_words.iter().cloned());
        a
    };
    // Survivors run through the whole demo and leave cleanly at the end.
    let survivor_secs = 2 * args.seconds + 10;
    // Node 1 pauses inside each transfer, so the kill finds transfers in
    // flight on its log for the survivors to back out.
    let mut victim_args = node_args(VICTIM, None);
    victim_args.extend(["--think-ms".into(), "5".into(), "--receipts".into()]);
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
    let killed = Instant::now();
    victim.child.kill().map_err(|e| CliError::os("killing node 1", e))?;
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
    if let Some(io) = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v.get("io").cloned())
    {
        let n = |k: &str| io[k].as_u64().unwrap_or(0);
        say!(
            "  write-back I/O, as the I/O layer counted it: through io_uring {} reads, {} writes, {} syncs; as system \
             calls {} pread, {} pwrite, {} fdatasync",
            n("ring_reads"),
            n("ring_writes"),
            n("ring_syncs"),
            n("call_reads"),
            n("call_writes"),
            n("call_syncs")
        );
    }
    let agent_work = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v["agent_work"].as_u64())
        .unwrap_or(0);
    say!(
        "  receipts of node {VICTIM}'s in-flight transfers finished by the recovery: {agent_work} (removed, or \
         published where the transfer had committed)"
    );
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
    let receipts = match check_receipts(&node, &outbox, &promised, &format!("{VICTIM}-")) {
        Ok(r) => r,
        Err(e) => {
            let _ = node.close();
            return Err(e);
        }
    };
    say!(
        "outbox: {} receipts published, each for a committed transfer; all {} of node {VICTIM}'s acknowledged \
         transfers have theirs; none left aside",
        receipts.published,
        receipts.acknowledged
    );
    check_bank(node, args.accounts, expected, &promised)
}
