//! `understudy status`: asking a cluster's running coordinator who the
//! members are — live or failed, incarnation, recovery status, retained
//! locks.
//!
//! `status` connects as an operator (node id 0, purpose `Operator`): it
//! authenticates with the cluster secret like a node, but holds no locks,
//! sends no heartbeats and is never taken for a failed member when it
//! disconnects.

use std::path::PathBuf;

use lockmgr::wire::MemberInfo;
use lockmgr::{Client, ClientConfig, Purpose};
use serde_json::json;
use understudy::Cluster;

use crate::error::CliError;

/// The node id an operator tool connects under; no member may have it
/// (cluster node ids are non-zero).
pub const OPERATOR_NODE_ID: u32 = 0;

/// Arguments of `understudy status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// Print one JSON object: `{"coordinator": ..., "members": [...]}`, with
    /// configured nodes that never joined listed as `"state": "absent"`.
    #[arg(long)]
    pub json: bool,
}

/// Connects to `cluster`'s coordinator as an operator: at its first
/// endpoint, or the next that answers (a standby on another host that took
/// over).
pub fn operator_client(cluster: &Cluster) -> Result<Client, CliError> {
    let secret = cluster.secret()?;
    let mut first_err = None;
    for ep in std::iter::once(&cluster.coordinator).chain(&cluster.also) {
        let mut cfg = ClientConfig::new(ep.clone(), OPERATOR_NODE_ID, secret.clone());
        cfg.purpose = Purpose::Operator;
        match Client::connect(cfg) {
            Ok(c) => return Ok(c),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.expect("at least one endpoint was tried").into())
}

/// How a member's recovery stands, as the status commands spell it.
fn recovery(m: &MemberInfo) -> String {
    match m.recovery {
        0 => "none".into(),
        1 => "inactive".into(),
        2 => format!("active({})", m.counterpart),
        3 => "recovered".into(),
        other => format!("unknown({other})"),
    }
}

/// Runs `understudy status`.
pub fn status(args: &StatusArgs) -> Result<(), CliError> {
    let cluster = Cluster::open(&args.cluster)?;
    let client = operator_client(&cluster)?;
    let mut members = client.status()?;
    members.sort_by_key(|m| m.node);
    // Configured nodes the coordinator has never seen are worth showing too:
    // an operator looking for node 3 should learn it never joined.
    let absent: Vec<u32> = cluster
        .nodes
        .iter()
        .copied()
        .filter(|n| !members.iter().any(|m| m.node == *n))
        .collect();
    if args.json {
        let mut list: Vec<serde_json::Value> = members
            .iter()
            .map(|m| {
                json!({
                    "node": m.node,
                    "state": if m.live { "live" } else { "failed" },
                    "incarnation": m.incarnation,
                    "recovery": recovery(m),
                    "counterpart": (m.recovery == 2).then_some(m.counterpart),
                    "retained_locks": m.retained_locks,
                    // What the node last reported of its own pool and I/O
                    // (`understudy node` writes it; see `stats`).
                    "stats": crate::cluster::stats::read(&cluster.dir, m.node),
                })
            })
            .collect();
        list.extend(absent.iter().map(|n| json!({ "node": n, "state": "absent" })));
        let doc = json!({
            "coordinator": cluster.coordinator.to_string(),
            "members": list,
        });
        say!("{doc}");
        return Ok(());
    }
    say!("coordinator: {}", cluster.coordinator);
    say!(
        "{:>6}  {:<7}  {:>11}  {:<12}  {:>8}",
        "node",
        "state",
        "incarnation",
        "recovery",
        "retained"
    );
    for m in &members {
        say!(
            "{:>6}  {:<7}  {:>11}  {:<12}  {:>8}",
            m.node,
            if m.live { "live" } else { "failed" },
            m.incarnation,
            recovery(m),
            m.retained_locks
        );
    }
    for n in absent {
        say!("{n:>6}  {:<7}  {:>11}  {:<12}  {:>8}", "absent", "-", "-", "-");
    }
    Ok(())
}
