//! `understudy demo --bench`: peer recovery measured over many kills.
//!
//! A coordinator and three node processes run bank transfers. Round after
//! round, node 1 runs transfer threads that each keep several transfers in
//! flight and pause inside each (`--think-ms`), so that about threads ×
//! transfers per thread in-flight transactions are on its log when it is
//! killed with SIGKILL; the survivors
//! recover it, and it is started again for the next round. Per kill the
//! bench takes, on the host's monotonic clock (shared by the processes):
//!
//! * **detection**: the kill → the counterpart learning of the failure;
//! * **fenced**: the kill → the kernel's word that node 1 is gone;
//! * **released**: the kill → its retained locks freed (the timeline's last
//!   step);
//!
//! and the survivors' commit rate during each recovery (kill → released)
//! against the second before the kill. At the end the survivors are killed
//! too and recovered by a fourth member, and the bank is checked: the total
//! unchanged and every acknowledged transfer present. A failed check exits
//! non-zero; the figures are reported against their targets.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use understudy::admin::monotonic_ns;
use understudy::Node;

use crate::bank::{self, Ack};
use crate::cluster::demo_args::ClusterDemoArgs;
use crate::cluster::processes::{check_bank, quiet, spawn, start_cluster, Line, Proc, CHECKER, INIT_BALANCE, VICTIM};
use crate::error::CliError;

/// Targets from the product's requirements: detection, and kill → locks
/// released at the median and the 99th percentile.
const DETECTION_P99_MS: f64 = 5.0;
const RELEASED_P50_MS: f64 = 5.0;
const RELEASED_P99_MS: f64 = 12.0;
const THROUGHPUT_RATIO: f64 = 0.9;

/// One kill's figures.
struct Round {
    /// What the counterpart's timeline says.
    r: Recovered,
    /// The kill → the killed process reaped by the bench.
    reaped: Duration,
    /// Survivors' commits in the second before the kill, and during the
    /// recovery.
    before: usize,
    during: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What one `RECOVERED` line says, with times from the kill.
struct Recovered {
    detection: Duration,
    fenced: Duration,
    released: Duration,
    in_flight: u64,
    /// Pages put back, and of those the pages written (the others held
    /// their before-images already).
    pages: u64,
    pages_written: u64,
    steps: Vec<(String, Duration)>,
    /// The write-back's I/O, by path: (io_uring writes, pwrite calls).
    writes: (u64, u64),
}

/// Reads a survivor's `RECOVERED <json>` line: the round's figures
/// relative to `killed_ns`.
fn parse_recovered(json: &str, killed_ns: u64) -> Result<Recovered, CliError> {
    let bad = |what: &str| CliError::Check(format!("a recovery timeline without {what}: {json}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| CliError::Check(format!("{e}: {json}")))?;
    let detected = v["detected_mono_ns"].as_u64().ok_or_else(|| bad("detected_mono_ns"))?;
    let detection = Duration::from_nanos(detected.saturating_sub(killed_ns));
    let steps = v["steps"]
        .as_array()
        .ok_or_else(|| bad("steps"))?
        .iter()
        .map(|s| match (s["step"].as_str(), s["at_us"].as_u64()) {
            (Some(name), Some(at)) => Ok((name.to_string(), detection + Duration::from_micros(at))),
            _ => Err(bad("well-formed steps")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let step = |name: &str| {
        steps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, at)| *at)
            .ok_or_else(|| bad(name))
    };
    Ok(Recovered {
        detection,
        fenced: step("fenced")?,
        released: step("released")?,
        in_flight: v["in_flight"].as_u64().ok_or_else(|| bad("in_flight"))?,
        pages: v["pages"].as_u64().ok_or_else(|| bad("pages"))?,
        pages_written: v["pages_written"].as_u64().ok_or_else(|| bad("pages_written"))?,
        steps,
        writes: (
            v["io"]["ring_writes"].as_u64().ok_or_else(|| bad("io"))?,
            v["io"]["call_writes"].as_u64().ok_or_else(|| bad("io"))?,
        ),
    })
}

pub fn run(args: &ClusterDemoArgs, exe: &Path, dir: &Path, d: &str, ep: &str) -> Result<(), CliError> {
    // Enough accounts that node 1's many concurrent transfers seldom meet.
    let in_flight = u32::from(args.victim_threads) * u32::from(args.victim_txns_per_thread);
    let accounts = args.accounts.max(in_flight * 100);
    say!(
        "== Understudy recovery bench: {} kills of node {VICTIM} ({} transfer threads × {} transfers each, {} ms \
         inside each transfer) ==",
        args.kills,
        args.victim_threads,
        args.victim_txns_per_thread,
        args.think_ms
    );
    let _coordinator = start_cluster(exe, dir, d, ep, accounts)?;
    let expected = bank::expected_total(accounts, INIT_BALANCE)?;
    let node_args = |id: u32, threads: u16, per_thread: u16, think_ms: u64| -> Vec<String> {
        [
            "node",
            "--cluster",
            d,
            "--id",
            &id.to_string(),
            "--workload",
            "bank",
            "--threads",
            &threads.to_string(),
            "--accounts",
            &accounts.to_string(),
            "--think-ms",
            &think_ms.to_string(),
            "--txns-per-thread",
            &per_thread.to_string(),
        ]
        .map(String::from)
        .to_vec()
    };

    let (tx, rx) = mpsc::channel::<Line>();
    let mut survivors: Vec<Proc> = Vec::new();
    for id in [2, 3] {
        survivors.push(spawn(
            exe,
            &node_args(id, args.threads, 1, 0),
            &format!("node {id}"),
            id,
            Some(tx.clone()),
        )?);
    }
    let mut promised: Vec<Ack> = Vec::new();
    let mut survivor_acks: Vec<Instant> = Vec::new();
    let mut rounds: Vec<Round> = Vec::new();
    // Takes one line; returns a recovery timeline's JSON if it is one.
    let mut take = |l: Line, promised: &mut Vec<Ack>| -> Result<Option<String>, CliError> {
        if let Some(a) = Ack::parse(&l.text) {
            promised.push(a.map_err(CliError::Check)?);
            if l.node != VICTIM {
                survivor_acks.push(l.at);
            }
        } else if let Some(json) = l.text.strip_prefix("RECOVERED ") {
            return Ok(Some(json.to_string()));
        }
        Ok(None)
    };
    let mut recovered_at: Vec<(Instant, Duration)> = Vec::new();

    for round in 0..args.kills {
        let mut victim = spawn(
            exe,
            &node_args(VICTIM, args.victim_threads, args.victim_txns_per_thread, args.think_ms),
            "node 1",
            VICTIM,
            Some(tx.clone()),
        )?;
        // A second of work with the victim running: the "before" window,
        // and time for its threads to be mid-transfer.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1200) {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(10)) {
                if take(l, &mut promised)?.is_some() {
                    return Err(CliError::Check("a recovery before any kill".into()));
                }
            }
        }
        let killed_ns = monotonic_ns();
        let killed = Instant::now();
        victim.child.kill().map_err(|e| CliError::os("killing node 1", e))?;
        let reaped = killed.elapsed();
        let deadline = killed + Duration::from_secs(30);
        let json = loop {
            let l = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| CliError::Check(format!("round {round}: node 1 was not recovered within 30 s")))?;
            if let Some(json) = take(l, &mut promised)? {
                break json;
            }
        };
        let r = parse_recovered(&json, killed_ns)?;
        recovered_at.push((killed, r.released));
        say!(
            "  kill {:>2}: reaped {:>6.2} ms, detected {:>6.2} ms, fenced {:>6.2} ms, locks released {:>6.2} ms; \
             {} in flight, {} pages put back, {} written",
            round + 1,
            ms(reaped),
            ms(r.detection),
            ms(r.fenced),
            ms(r.released),
            r.in_flight,
            r.pages,
            r.pages_written
        );
        rounds.push(Round {
            r,
            reaped,
            before: 0,
            during: 0,
        });
    }
    // Late acknowledgements of the last round.
    let settle = Instant::now() + Duration::from_millis(200);
    while let Ok(l) = rx.recv_timeout(settle.saturating_duration_since(Instant::now())) {
        take(l, &mut promised)?;
    }
    for (r, (killed, released)) in rounds.iter_mut().zip(&recovered_at) {
        let from = killed.checked_sub(Duration::from_secs(1)).unwrap_or(*killed);
        r.before = survivor_acks.iter().filter(|t| **t >= from && *t < killed).count();
        r.during = survivor_acks
            .iter()
            .filter(|t| **t >= *killed && **t < *killed + *released)
            .count();
    }

    // The survivors die too; a fourth member recovers them, then checks.
    for s in &mut survivors {
        let _ = s.child.kill();
    }
    drop(tx);
    while rx.recv_timeout(Duration::from_millis(100)).is_ok() {}
    let checker = Node::open(dir, CHECKER, quiet())?;
    for id in [2, 3] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while understudy::admin::lock_client(&checker)
            .status()?
            .iter()
            .any(|m| m.node == id && m.live)
        {
            if Instant::now() > deadline {
                return Err(CliError::Check(format!("node {id} was never declared failed")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        checker
            .recover_peer(id)
            .map_err(|e| CliError::Check(format!("recovering node {id}: {e}")))?;
    }
    check_bank(checker, accounts, expected, &promised)?;
    report(&rounds, args.json)
}

fn report(rounds: &[Round], json: bool) -> Result<(), CliError> {
    let sorted = |f: &dyn Fn(&Round) -> Duration| {
        let mut v: Vec<f64> = rounds.iter().map(|r| ms(f(r))).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let reaped = sorted(&|r| r.reaped);
    let detection = sorted(&|r| r.r.detection);
    let fenced = sorted(&|r| r.r.fenced);
    let released = sorted(&|r| r.r.released);
    let in_flight = rounds.iter().map(|r| r.r.in_flight).sum::<u64>() as f64 / rounds.len().max(1) as f64;
    let pages = rounds.iter().map(|r| r.r.pages).sum::<u64>() as f64 / rounds.len().max(1) as f64;
    let pages_written = rounds.iter().map(|r| r.r.pages_written).sum::<u64>() as f64 / rounds.len().max(1) as f64;
    let before_rate = rounds.iter().map(|r| r.before).sum::<usize>() as f64 / rounds.len().max(1) as f64;
    let during_secs: f64 = rounds.iter().map(|r| r.r.released.as_secs_f64()).sum();
    let during_rate = rounds.iter().map(|r| r.during).sum::<usize>() as f64 / during_secs.max(1e-9);
    let ratio = during_rate / before_rate.max(1e-9);
    let ring_writes: u64 = rounds.iter().map(|r| r.r.writes.0).sum();
    let call_writes: u64 = rounds.iter().map(|r| r.r.writes.1).sum();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    if json {
        say!(
            "{}",
            serde_json::json!({
                "kills": rounds.len(),
                "mean_in_flight": in_flight,
                "mean_pages": pages,
                "mean_pages_written": pages_written,
                "reaped_ms": {"p50": percentile(&reaped, 50.0), "p99": percentile(&reaped, 99.0), "max": reaped.last()},
                "detection_ms": {"p50": percentile(&detection, 50.0), "p99": percentile(&detection, 99.0), "max": detection.last()},
                "fenced_ms": {"p50": percentile(&fenced, 50.0), "p99": percentile(&fenced, 99.0), "max": fenced.last()},
                "released_ms": {"p50": percentile(&released, 50.0), "p99": percentile(&released, 99.0), "max": released.last()},
                "survivor_commits_per_s": {"before": before_rate, "during": during_rate, "ratio": ratio},
                "write_back_writes": {"io_uring": ring_writes, "pwrite": call_writes},
            })
        );
        return Ok(());
    }
    say!(
        "{} kills, {in_flight:.1} transactions in flight and {pages:.1} pages put back per kill on average, \
         {pages_written:.1} of them written (the pages of a transaction short of its commit intent hold their \
         before-images on disk already)",
        rounds.len()
    );
    say!("{:<28} {:>9} {:>9} {:>9}", "kill →", "p50 ms", "p99 ms", "max ms");
    let mut rows = vec![
        ("process reaped".to_string(), reaped),
        ("failure detected".into(), detection.clone()),
    ];
    // Every timeline step, in order (the names of the first round's).
    for (name, _) in rounds.first().map(|r| r.r.steps.clone()).unwrap_or_default() {
        let v = sorted(&|r: &Round| {
            r.r.steps
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Duration::ZERO, |s| s.1)
        });
        rows.push((name, v));
    }
    for (name, v) in &rows {
        say!(
            "{:<28} {:>9.2} {:>9.2} {:>9.2}",
            name.as_str(),
            percentile(v, 50.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    say!(
        "survivors' commits: {before_rate:.0}/s before a kill, {during_rate:.0}/s during recoveries ({:.0} %)",
        ratio * 100.0
    );
    say!(
        "write-back writes over all kills, as the I/O layer counted them: {ring_writes} through io_uring, \
         {call_writes} as pwrite (the end records' log writes)"
    );
    say!(
        "targets: detection p99 ≤ {DETECTION_P99_MS} ms {}; kill → released p50 ≤ {RELEASED_P50_MS} ms {}, \
         p99 ≤ {RELEASED_P99_MS} ms {}; throughput during ≥ {:.0} % {}",
        verdict(percentile(&detection, 99.0) <= DETECTION_P99_MS),
        verdict(percentile(&released, 50.0) <= RELEASED_P50_MS),
        verdict(percentile(&released, 99.0) <= RELEASED_P99_MS),
        THROUGHPUT_RATIO * 100.0,
        verdict(ratio >= THROUGHPUT_RATIO)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v[..30], 99.0), 30.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn a_timeline_line_gives_times_from_the_kill() {
        let json = r#"{"failed":1,"counterpart":2,"fencing":"Kernel","in_flight":90,"pages":300,"pages_written":12,"records":500,"total_us":9000,"detected_mono_ns":1002000000,"steps":[{"step":"fenced","at_us":500},{"step":"released","at_us":9000}],"io":{"ring_reads":300,"ring_writes":300,"ring_syncs":1,"call_reads":0,"call_writes":1,"call_syncs":1}}"#;
        let r = parse_recovered(json, 1_000_000_000).unwrap();
        assert_eq!(r.detection, Duration::from_millis(2));
        assert_eq!(r.fenced, Duration::from_micros(2500));
        assert_eq!(r.released, Duration::from_micros(11_000));
        assert_eq!((r.in_flight, r.pages, r.pages_written, r.steps.len()), (90, 300, 12, 2));
        assert_eq!(r.writes, (300, 1));
        assert!(parse_recovered("{}", 0).is_err());
    }
}
