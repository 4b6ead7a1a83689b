//! `understudy node`: one node of a cluster as a process — join (or restart
//! and back out the node's own in-flight work), optionally create the bank,
//! then run a workload.
//!
//! Its stdout is meant for a program as much as for a person, one line per
//! event, each flushed at once:
//! `READY node=N incarnation=I restarted=B backed_out=K` after joining,
//! `INIT accounts=A total=T` after `--bank-init`, one `ACK ...` per committed
//! transfer (see [`crate::bank`]; with `--receipts`, the transfer's receipt is
//! published in the outbox by then), `REJOINED node=N incarnation=I` when the
//! node has joined again after losing its lease (a pause longer than the
//! lease; the transfers in flight then are lost, never acknowledged), and
//! `DONE ...` when `--duration-secs` elapses or SIGTERM or SIGINT asks the
//! node to stop. A process killed at
//! any moment has promised exactly its ACK lines.
//!
//! A stop asked for by SIGTERM or SIGINT is clean, as the end of
//! `--duration-secs` is: the transfer threads stop starting transfers,
//! those in flight are rolled back, the node leaves the cluster (nothing of
//! it is retained) and the process exits 0. A second signal while it stops
//! ends the process at once, with status 1.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use understudy::{Error, Node, NodeOptions};

use crate::bank::{self, TransferConfig};
use crate::cluster::outbox::OutboxArg;
use crate::error::CliError;

/// How often the node writes its report for `status` (see `stats`).
const STATS_EVERY: Duration = Duration::from_secs(1);

/// How often an idle node looks whether it has stopped.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// What the node does once it has joined.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkloadArg {
    /// Nothing: stay a member until the duration elapses or the process is
    /// killed.
    #[default]
    None,
    /// Transfers between the bank's accounts (create them with
    /// `--bank-init`, here or on another node).
    Bank,
}

/// Arguments of `understudy node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// This node's id, one of the cluster's nodes.
    #[arg(long)]
    pub id: u32,
    /// Run the coordinator inside this process (when no `understudy
    /// coordinator` serves the cluster).
    #[arg(long)]
    pub embed_coordinator: bool,
    /// What to run once joined.
    #[arg(long, value_enum, default_value_t)]
    pub workload: WorkloadArg,
    /// Transfer threads of the bank workload.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Stop after this many seconds, print a summary and leave the cluster
    /// cleanly. Without it the node runs until killed.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Accounts of the bank (the same number everywhere it is used).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub accounts: u32,
    /// Starting balance of each account, for `--bank-init`.
    #[arg(long, default_value_t = 1000)]
    pub init_balance: u64,
    /// Create the `bank` and `transfers` tables and the accounts first.
    #[arg(long)]
    pub bank_init: bool,
    /// Pause this many milliseconds between a transfer's first and second
    /// write: a process killed then leaves that transfer in flight, for its
    /// restart (or a peer) to back out.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub think_ms: u64,
    /// Transfers each thread keeps in flight at once, interleaved: while one
    /// pauses (`--think-ms`), the thread starts or finishes the others. With
    /// more than one, a lock wait gives up after 10 ms (and the transfer is
    /// retried), since a thread waiting for a lock holds up all of its
    /// transfers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub txns_per_thread: u16,
    /// Leave failed peers to an operator's `recover` (or a restart request)
    /// instead of racing to recover them.
    #[arg(long)]
    pub no_auto_recovery: bool,
    /// File a restart request for this node once joined: should it fail, a
    /// live peer restarts it light (`understudy restart-light`).
    #[arg(long)]
    pub restart_light_on_failure: bool,
    /// Pages the node's buffer pool holds (at least 16).
    #[arg(long, default_value_t = NodeOptions::default().pool_pages)]
    pub pool_pages: usize,
    /// For the negative test of cache coherence only: take every cached
    /// page as current, whatever other nodes wrote since. The node then
    /// reads stale pages and breaks the bank.
    #[arg(long, hide = true)]
    pub trust_cached_pages: bool,
    /// Threads that, beside the transfers, sum every balance in one
    /// read-only transaction again and again; a sum other than the starting
    /// total stops the node with an error.
    #[arg(long, default_value_t = 0)]
    pub audit_threads: u16,
    #[command(flatten)]
    pub outbox: OutboxArg,
    /// Each transfer writes a receipt through the outbox (needs
    /// `--outbox`): a file named after the transfer holding its journal
    /// entry, published exactly when the transfer commits.
    #[arg(long, requires = "outbox")]
    pub receipts: bool,
    #[command(flatten)]
    pub replication: crate::replication::PrimaryArgs,
}

/// How long a lock request of a thread running several transfers waits.
const INTERLEAVED_LOCK_WAIT: Duration = Duration::from_millis(10);

pub fn run(args: &NodeArgs) -> Result<(), CliError> {
    let opts = NodeOptions {
        embed_coordinator: args.embed_coordinator,
        auto_recovery: !args.no_auto_recovery,
        // Any peer's restart request is served with this binary, with the
        // agents this node registers.
        restart_command: crate::cluster::recover::restart_light_command().map(|mut words| {
            words.extend(args.outbox.words());
            words
        }),
        pool_pages: args.pool_pages,
        trust_cached_pages: args.trust_cached_pages,
        ..NodeOptions::default()
    };
    let (opts, outbox) = args.outbox.register(opts)?;
    let opts = if args.txns_per_thread > 1 {
        NodeOptions {
            lock_wait: INTERLEAVED_LOCK_WAIT,
            ..opts
        }
    } else {
        opts
    };
    let (opts, mut primary) = args.replication.prepare(&args.cluster, opts)?;
    let node = Node::open(&args.cluster, args.id, opts)?;
    if let Some(p) = primary.as_mut() {
        p.serve(&node)?;
    }
    if args.restart_light_on_failure {
        node.request_restart(args.id)?;
    }
    let deadline = args.duration_secs.map(|s| Instant::now() + Duration::from_secs(s));
    let stop = stop_on_signals()?;
    let receipts = if args.receipts { outbox } else { None };
    let result = serve(&node, args, deadline, &stop, receipts);
    // A node that stopped (lease lost, failed commit) must not pretend to
    // leave cleanly: dropping it drops the connection, the coordinator
    // declares it failed and its locks stay retained until it is recovered.
    if node.stopped().is_some() {
        return result;
    }
    match (result, node.close()) {
        (Err(e), _) => Err(e),
        (Ok(()), closed) => Ok(closed?),
    }
}

/// Prints `RECOVERED <timeline JSON>` for each peer this node recovers, and
/// writes the node's report for `status` every [`STATS_EVERY`], until the
/// returned guard is dropped. The thread holds a clone of the
/// node, and [`Node::close`] needs the only one: dropping the guard stops
/// the thread and waits for it to let go.
fn report_recoveries(node: &Node) -> Reporter {
    let node = node.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("recovery-report".into())
        .spawn(move || {
            let mut seen = 0;
            let mut rejoins_seen = 0;
            let mut next_stats = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(5));
                if Instant::now() >= next_stats {
                    next_stats = Instant::now() + STATS_EVERY;
                    if let Err(e) = crate::cluster::stats::write(&node) {
                        tracing::warn!(error = %e, "the node's report for status was not written");
                    }
                }
                // Read before the recoveries, so a recovery finished before
                // the stop is still printed.
                let last = stopping.load(Ordering::Acquire) || (node.stopped().is_some() && !node.rejoining());
                let rejoins = node.rejoins();
                if rejoins > rejoins_seen {
                    rejoins_seen = rejoins;
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "REJOINED node={} incarnation={}", node.id(), node.incarnation())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
                let (total, new) = node.recoveries_after(seen);
                for tl in &new {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "RECOVERED {}", tl.to_json())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
                seen = total;
                if last {
                    // The report as it stopped.
                    let _ = crate::cluster::stats::write(&node);
                    return;
                }
            }
        })
        .ok();
    Reporter { stop, thread }
}

/// Stops the recovery reporter when dropped; see [`report_recoveries`].
struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A flag SIGTERM and SIGINT set; the second of them while it is set ends
/// the process at once (status 1).
fn stop_on_signals() -> Result<Arc<AtomicBool>, CliError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // Registered first, the conditional exit acts on a second signal
        // only: on the first the flag is still clear.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .map_err(|e| CliError::os("handling SIGTERM and SIGINT", e))?;
    }
    Ok(stop)
}

fn serve(
    node: &Node,
    args: &NodeArgs,
    deadline: Option<Instant>,
    stop: &Arc<AtomicBool>,
    receipts: Option<understudy::FileOutbox>,
) -> Result<(), CliError> {
    let report = node.start_report();
    say!(
        "READY node={} incarnation={} restarted={} backed_out={}",
        node.id(),
        node.incarnation(),
        report.restarted,
        report.backed_out
    );
    flush()?;
    let _reporter = report_recoveries(node);
    if args.bank_init {
        let total = bank::init(node, args.accounts, args.init_balance)?;
        say!("INIT accounts={} total={total}", args.accounts);
        flush()?;
    }
    match args.workload {
        WorkloadArg::None => idle(node, deadline, stop),
        WorkloadArg::Bank => {
            let cfg = TransferConfig {
                threads: args.threads,
                accounts: args.accounts,
                deadline,
                stop: Some(stop.clone()),
                think: (args.think_ms > 0).then(|| Duration::from_millis(args.think_ms)),
                per_thread: args.txns_per_thread,
                receipts,
            };
            let expected = bank::expected_total(args.accounts, args.init_balance)?;
            let audits_stop = AtomicBool::new(false);
            let (t, audits) = std::thread::scope(|s| {
                let audits = (args.audit_threads > 0).then(|| {
                    s.spawn(|| {
                        let r = bank::run_audits(node, args.accounts, expected, args.audit_threads, &audits_stop);
                        if r.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                });
                let t = bank::run_transfers(node, &cfg);
                audits_stop.store(true, Ordering::Relaxed);
                let audits = audits.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(CliError::Invalid("the audits panicked".into())))
                });
                (t, audits)
            });
            let audits = audits.transpose()?;
            let t = t?;
            say!(
                "DONE transfers={} retries={} given_up={} skipped={}",
                t.transfers,
                t.retries,
                t.given_up,
                t.skipped
            );
            if let Some(n) = audits {
                say!("AUDITS {n} every one the starting total {expected}");
            }
            flush()
        }
    }
}

/// Stays a member until the deadline or a stop is asked for; fails if the
/// node stops meanwhile.
fn idle(node: &Node, deadline: Option<Instant>, stop: &AtomicBool) -> Result<(), CliError> {
    loop {
        if let Some(why) = node.stopped() {
            // A lost lease: the node joins again by itself meanwhile.
            if !node.rejoining() {
                return Err(Error::Stopped(why).into());
            }
        }
        if stop.load(Ordering::Relaxed) {
            say!("DONE stopped by a signal");
            return flush();
        }
        let nap = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(IDLE_POLL),
                _ => return Ok(()),
            },
            None => IDLE_POLL,
        };
        std::thread::sleep(nap);
    }
}

fn flush() -> Result<(), CliError> {
    std::io::stdout()
        .flush()
        .map_err(|e| CliError::os("writing to stdout", e))
}
