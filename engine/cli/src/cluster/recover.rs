//! Operator commands for failed nodes.
//!
//! `recover --node N --by M` asks live node M to recover N: the
//! coordinator tells M alone, M recovers N as its counterpart (automatic
//! recovery or not), and the command waits until N is recovered — no spare
//! member id needed.
//!
//! `recover --node N` without `--by` joins the cluster as a member node
//! (one of the cluster's ids the coordinator does not know as live; none
//! is tried that is), registers as N's counterpart, recovers N from its
//! log, unregisters, prints the timeline and exits — non-zero, with the
//! reason and what to do, if it could not.
//!
//! `restart-light --node N` starts node N itself with minimal resources (no
//! workload, automatic recovery off): it backs out its own in-flight work
//! and releases its retained locks, then leaves the cluster and exits.
//!
//! Both take `--outbox DIR` to register the file outbox agent: a log whose
//! in-flight transactions wrote outbox files cannot be recovered without it
//! (the recovery stops, naming the resource, and the locks stay retained).
//!
//! `request-restart --node N` files a restart request, kept in the
//! coordinator's durable record: a live node that launches restarts
//! restarts N light as soon as it has failed (see `understudy::restart`).
//! With no such node live, the request is refused and the command fails.
//!
//! A recovery that finds N's log damaged past its end (records that were
//! durable are gone: a data page carries the stamp of a lost commit intent)
//! or missing stops, and N's retained locks stay. After inspecting the log
//! (`inspect-log`), the operator decides: `--accept-log-damage` on `recover`
//! or `restart-light` lets the pages' stamps decide which in-flight
//! transactions committed, and takes a missing log as empty.

use std::path::PathBuf;

use understudy::{Node, NodeOptions};

use crate::cluster::outbox::OutboxArg;
use crate::error::CliError;

/// Arguments of `recover`.
#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The failed node to recover.
    #[arg(long)]
    pub node: u32,
    /// The member id to join as (a configured node that is not running);
    /// by default the first such id other than `--node`.
    #[arg(long = "as", conflicts_with = "by")]
    pub as_node: Option<u32>,
    /// Ask this live node to recover `--node` instead of joining as one.
    #[arg(long)]
    pub by: Option<u32>,
    /// With `--by`: how long to wait for the recovery, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
    /// Print the timeline as JSON.
    #[arg(long)]
    pub json: bool,
    /// Go on past damage to the failed node's log that lost durable records
    /// (the pages' stamps decide which in-flight transactions committed),
    /// and take a missing log as empty. Only after inspecting the log.
    #[arg(long)]
    pub accept_log_damage: bool,
    #[command(flatten)]
    pub outbox: OutboxArg,
}

/// Arguments of `restart-light`.
#[derive(clap::Args, Debug)]
pub struct RestartLightArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The failed node to restart.
    #[arg(long)]
    pub node: u32,
    /// Go on past damage to the node's log that lost durable records (the
    /// pages' stamps decide which in-flight transactions committed), and
    /// take a missing log as empty. Only after inspecting the log.
    #[arg(long)]
    pub accept_log_damage: bool,
    #[command(flatten)]
    pub outbox: OutboxArg,
}

/// Arguments of `request-restart`.
#[derive(clap::Args, Debug)]
pub struct RequestRestartArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The node to restart light (now if it has failed, else when it does).
    #[arg(long)]
    pub node: u32,
}

/// The command a node runs to restart a failed peer light: this binary's
/// `restart-light`.
pub fn restart_light_command() -> Option<Vec<String>> {
    let exe = std::env::current_exe().ok()?;
    Some(vec![
        exe.display().to_string(),
        "restart-light".into(),
        "--cluster".into(),
        "{cluster}".into(),
        "--node".into(),
        "{node}".into(),
    ])
}

pub fn request_restart(args: &RequestRestartArgs) -> Result<(), CliError> {
    let cluster = understudy::Cluster::open(&args.cluster)?;
    if !cluster.nodes.contains(&args.node) {
        return Err(CliError::Invalid(format!(
            "node {} is not one of the cluster's nodes {:?}",
            args.node, cluster.nodes
        )));
    }
    let client = crate::cluster::status::operator_client(&cluster)?;
    client.request_restart(args.node)?;
    say!(
        "restart requested for node {}: a live node restarts it light once it has failed",
        args.node
    );
    Ok(())
}

fn light(accept_log_damage: bool, outbox: &OutboxArg) -> Result<NodeOptions, CliError> {
    let opts = NodeOptions {
        auto_recovery: false,
        log_segment_size: 1 << 20,
        join_timeout: std::time::Duration::from_secs(60),
        accept_log_damage,
        ..NodeOptions::default()
    };
    Ok(outbox.register(opts)?.0)
}

pub fn recover(args: &RecoverArgs) -> Result<(), CliError> {
    let cluster = understudy::Cluster::open(&args.cluster)?;
    if !cluster.nodes.contains(&args.node) {
        return Err(understudy::Error::UnknownNode {
            node: args.node,
            nodes: cluster.nodes,
        }
        .into());
    }
    if args.as_node == Some(args.node) {
        return Err(CliError::Invalid(format!(
            "node {} cannot recover itself as a peer; run `understudy restart-light --node {}`",
            args.node, args.node
        )));
    }
    if let Some(by) = args.by {
        return recover_by(&cluster, args, by);
    }
    let candidates: Vec<u32> = match args.as_node {
        Some(id) => vec![id],
        None => {
            // Only ids the coordinator does not know as live: joining as a
            // live one is refused (AlreadyLive), and nothing is gained by
            // waiting for it to die.
            let live: Vec<u32> = crate::cluster::status::operator_client(&cluster)?
                .status()?
                .iter()
                .filter(|m| m.live)
                .map(|m| m.node)
                .collect();
            cluster
                .nodes
                .iter()
                .copied()
                .filter(|&n| n != args.node && !live.contains(&n))
                .collect()
        }
    };
    let mut last_err = None;
    for id in candidates {
        let node = match Node::open(&args.cluster, id, light(args.accept_log_damage, &args.outbox)?) {
            Ok(n) => n,
            // Running already, or refused for now by the coordinator: try
            // the next id.
            Err(e @ (understudy::Error::NodeRunning { .. } | understudy::Error::Coordinator(_)))
                if args.as_node.is_none() =>
            {
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let result = node.recover_peer(args.node);
        let closed = node.close();
        let tl = result.map_err(|e| CliError::Invalid(format!("node {} was not recovered: {e}", args.node)))?;
        if args.json {
            say!("{}", tl.to_json());
        } else {
            say!("{}", tl.summary());
        }
        closed?;
        return Ok(());
    }
    Err(CliError::Invalid(format!(
        "no free member id to recover node {} from{}; pass --as ID with a configured node that is not running",
        args.node,
        last_err.map(|e| format!(" (last: {e})")).unwrap_or_default()
    )))
}

/// `recover --by`: asks live node `by` to recover `args.node`, then waits
/// (up to `--wait-secs`) until the coordinator says it is recovered.
fn recover_by(cluster: &understudy::Cluster, args: &RecoverArgs, by: u32) -> Result<(), CliError> {
    if by == args.node {
        return Err(CliError::Invalid(format!(
            "node {by} cannot recover itself as a peer; run `understudy restart-light --node {by}`"
        )));
    }
    let client = crate::cluster::status::operator_client(cluster)?;
    client.ask_recovery(args.node, by)?;
    let asked = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(args.wait_secs);
    loop {
        let member = client.status()?.into_iter().find(|m| m.node == args.node);
        if member
            .as_ref()
            .is_some_and(|m| m.recovery == 3 && m.retained_locks == 0)
        {
            let took = asked.elapsed();
            if args.json {
                say!(
                    "{}",
                    serde_json::json!({ "failed": args.node, "counterpart": by, "waited_us": took.as_micros() as u64 })
                );
            } else {
                say!(
                    "node {} recovered by node {by} ({} ms after asking)",
                    args.node,
                    took.as_millis()
                );
            }
            return Ok(());
        }
        if asked.elapsed() >= limit {
            let how = match member.map(|m| m.recovery) {
                Some(1) => "no counterpart (node {by} gave up: its log says why)".replace("{by}", &by.to_string()),
                Some(2) => "a recovery still under way".into(),
                _ => "an unknown state".into(),
            };
            return Err(CliError::Invalid(format!(
                "node {} is not recovered {}s after node {by} was asked: {how}",
                args.node, args.wait_secs
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn restart_light(args: &RestartLightArgs) -> Result<(), CliError> {
    let node = Node::open(&args.cluster, args.node, light(args.accept_log_damage, &args.outbox)?)?;
    let r = node.start_report().clone();
    node.close()?;
    say!(
        "node {} restarted light: restarted={} backed_out={} pages_written={} agent_work={}; retained locks released",
        args.node,
        r.restarted,
        r.backed_out,
        r.pages_written,
        r.agent_work
    );
    Ok(())
}
