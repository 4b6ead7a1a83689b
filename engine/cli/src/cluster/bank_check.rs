//! `understudy bank-check`: joins the cluster as a node and checks the bank's
//! invariants — the balances sum to what the bank started with, and every
//! acknowledged transfer is in the journal as it was acknowledged.
//!
//! Reconciling each account against the journal would need to scan the
//! journal, which the engine cannot do yet; the sum and the acknowledged
//! entries are what any crash must preserve.

use std::path::PathBuf;

use understudy::{Node, NodeOptions};

use crate::bank::{self, Ack};
use crate::error::CliError;

/// Arguments of `understudy bank-check`.
#[derive(clap::Args, Debug)]
pub struct BankCheckArgs {
    /// The cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The node id to check through; no process may be running as it. If
    /// that node had failed, it backs out its own in-flight work first.
    #[arg(long)]
    pub id: u32,
    /// Accounts of the bank.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub accounts: u32,
    /// Starting balance of each account.
    #[arg(long, default_value_t = 1000)]
    pub init_balance: u64,
    /// A file of `ACK <id> <from> <to> <amount>` lines (the stdout of `node
    /// --workload bank` processes; other lines are skipped). Each transfer
    /// must be in the journal with that value.
    #[arg(long)]
    pub acks: Option<PathBuf>,
    /// Run the coordinator inside this process (no other serves the
    /// cluster: a standby's copy, once its standby stopped).
    #[arg(long)]
    pub embed_coordinator: bool,
}

/// Runs `understudy bank-check`.
pub fn run(args: &BankCheckArgs) -> Result<(), CliError> {
    let expected = bank::expected_total(args.accounts, args.init_balance)?;
    let acks = match &args.acks {
        Some(path) => bank::read_acks(path)?,
        None => Vec::new(),
    };
    let opts = NodeOptions {
        embed_coordinator: args.embed_coordinator,
        ..NodeOptions::default()
    };
    let node = Node::open(&args.cluster, args.id, opts)?;
    let result = check(&node, args.accounts, expected, &acks);
    if node.stopped().is_some() {
        return result;
    }
    // Leave cleanly whatever the verdict, so the node id is free again.
    match (result, node.close()) {
        (Err(e), _) => Err(e),
        (Ok(()), closed) => Ok(closed?),
    }
}

fn check(node: &Node, accounts: u32, expected: u64, acks: &[Ack]) -> Result<(), CliError> {
    let total = bank::total_balance(node, accounts)?;
    if total != expected {
        return Err(CliError::Check(format!(
            "the {accounts} balances sum to {total}, not {expected}"
        )));
    }
    bank::check_acks(node, acks)?;
    say!("CHECK ok total={total} acks={}", acks.len());
    Ok(())
}
