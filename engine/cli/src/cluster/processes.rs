//! The processes of the cluster demo and the recovery bench: a cluster
//! directory with its coordinator as a process of its own, node processes
//! whose output lines are forwarded with the time they were read, the
//! checker member that creates the bank and checks it at the end.
//!
//! Every process is held in a [`ChildGuard`], so it is killed and reaped on
//! every path out of a run, errors and panics included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::ChildGuard;
use understudy::{Cluster, Node, NodeOptions};

use crate::bank::{self, Ack};
use crate::error::CliError;

/// Each account's starting balance.
pub const INIT_BALANCE: u64 = 1000;
/// The node killed.
pub const VICTIM: u32 = 1;
/// The member the demo creates and checks the bank from; it runs no
/// transfers.
pub const CHECKER: u32 = 4;

/// A process of the demo (the coordinator, a node), killed and reaped when
/// dropped, with the name the demo reports it by.
pub struct Proc {
    /// The process.
    pub child: ChildGuard,
    /// `coordinator`, `node 2`, ...
    pub name: String,
}

/// One line a node printed, and when.
pub struct Line {
    /// The node (0: the coordinator).
    pub node: u32,
    /// When the demo read it.
    pub at: Instant,
    /// The line.
    pub text: String,
}

/// Starts `exe` with `args` as process `name` (node `node`, 0 for the
/// coordinator); with `tx`, each line it prints goes there with its time.
pub fn spawn(
    exe: &Path,
    args: &[String],
    name: &str,
    node: u32,
    tx: Option<mpsc::Sender<Line>>,
) -> Result<Proc, CliError> {
    let mut child = ChildGuard::spawn(
        Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .map_err(|e| CliError::os(format!("starting {name}"), e))?;
    let out = child.take_stdout().expect("stdout is piped");
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

/// Creates the cluster in `dir` (nodes 1–3 and the checker), starts its
/// coordinator process and creates the bank from the checker's member id.
/// Returns the coordinator and the line it printed when it listened.
pub fn start_cluster(exe: &Path, dir: &Path, d: &str, ep: &str, accounts: u32) -> Result<(Proc, String), CliError> {
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

/// Checks the bank from `node` (then closes it): the total is `expected`,
/// every promised transfer is there, and no node keeps a retained lock.
pub fn check_bank(node: Node, accounts: u32, expected: u64, promised: &[Ack]) -> Result<(), CliError> {
    let total = bank::total_balance(&node, accounts)?;
    bank::check_acks(&node, promised)?;
    let statuses = understudy::admin::lock_client(&node).status()?;
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

/// Options of the checker member: it recovers nobody by itself.
pub fn quiet() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        log_segment_size: 1 << 20,
        ..NodeOptions::default()
    }
}
