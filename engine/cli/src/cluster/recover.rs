//! Operator commands for failed nodes.
//!
//! `recover --node N` joins the cluster as a member node (one of the
//! cluster's ids that is not running), registers as N's counterpart,
//! recovers N from its log, unregisters, prints the timeline and exits —
//! non-zero, with the reason and what to do, if it could not.
//!
//! `restart-light --node N` starts node N itself with minimal resources (no
//! workload, automatic recovery off): it backs out its own in-flight work
//! and releases its retained locks, then leaves the cluster and exits.
//!
//! Both take `--outbox DIR` to register the file outbox agent: a log whose
//! in-flight transactions wrote outbox files cannot be recovered without it
//! (the recovery stops, naming the resource, and the locks stay retained).
//!
//! `request-restart --node N` files a restart request: a live node restarts
//! N light as soon as it has failed (see `understudy::restart`).
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
    #[arg(long = "as")]
    pub as_node: Option<u32>,
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
    let candidates: Vec<u32> = match args.as_node {
        Some(id) => vec![id],
        None => cluster.nodes.iter().copied().filter(|&n| n != args.node).collect(),
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
