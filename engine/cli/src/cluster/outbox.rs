//! The file outbox as the `understudy` program uses it: `--outbox <DIR>`
//! registers the engine's file outbox agent (`understudy::FileOutbox`) on
//! `DIR` as resource [`OUTBOX_RESOURCE`], on every command that opens a
//! node (`node`, `recover`, `restart-light`), and `node --receipts` makes
//! each bank transfer write a receipt through it: a file named after the
//! transfer, holding its journal entry, that appears exactly when the
//! transfer commits.
//!
//! Every node of a cluster whose transactions use the outbox must register
//! it: any of them may recover any other, and a recovery that meets outbox
//! work without the agent stops, naming the resource, until one that has it
//! recovers the node. [`check_receipts`] is the demo's check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use understudy::{AgentId, Agents, FileOutbox, Node, NodeOptions, RetryPolicy};

use crate::bank::{Ack, TRANSFERS_TABLE};
use crate::error::CliError;

/// The resource id the program registers the file outbox as.
pub const OUTBOX_RESOURCE: AgentId = 1;

/// `--outbox <DIR>`, for every command that opens a node.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutboxArg {
    /// Register the file outbox agent on this directory (the same on every
    /// node of the cluster): needed to run transactions that write outbox
    /// files (`node --receipts`) and to recover a node that ran them.
    #[arg(long, value_name = "DIR")]
    pub outbox: Option<PathBuf>,
}

impl OutboxArg {
    /// `opts` with the outbox agent registered when `--outbox` was given,
    /// and the outbox.
    pub fn register(&self, opts: NodeOptions) -> Result<(NodeOptions, Option<FileOutbox>), CliError> {
        let Some(dir) = &self.outbox else {
            return Ok((opts, None));
        };
        let outbox = FileOutbox::open(OUTBOX_RESOURCE, dir)?;
        let agents = Agents::new().with(OUTBOX_RESOURCE, Arc::new(outbox.clone()))?;
        Ok((NodeOptions { agents, ..opts }, Some(outbox)))
    }

    /// The words that pass this argument on to another command.
    pub fn words(&self) -> Vec<String> {
        match &self.outbox {
            Some(dir) => vec!["--outbox".into(), dir.display().to_string()],
            None => Vec::new(),
        }
    }
}

/// What [`check_receipts`] found.
#[derive(Clone, Copy, Debug)]
pub struct Receipts {
    /// Receipts published.
    pub published: usize,
    /// Of the acknowledged transfers, how many were checked for a receipt.
    pub acknowledged: usize,
}

/// Checks the outbox on `dir` against the bank, read through `node`: each
/// published receipt belongs to a committed transfer and holds its journal
/// entry; each transfer in `acks` whose id starts with `prefix` has its
/// receipt; nothing is left aside.
pub fn check_receipts(node: &Node, dir: &Path, acks: &[Ack], prefix: &str) -> Result<Receipts, CliError> {
    let outbox = FileOutbox::open(OUTBOX_RESOURCE, dir)?;
    let aside = outbox.aside()?;
    if !aside.is_empty() {
        return Err(CliError::Check(format!(
            "{} outbox files are left aside (unpublished, not removed)",
            aside.len()
        )));
    }
    let published = outbox.published()?;
    for batch in published.chunks(256) {
        let entries = understudy::retry(&RetryPolicy::default(), |_| {
            let mut txn = node.begin()?;
            let mut found = Vec::with_capacity(batch.len());
            for id in batch {
                found.push(txn.get(TRANSFERS_TABLE, id.as_bytes())?);
            }
            txn.rollback()?;
            Ok::<_, CliError>(found)
        })?;
        for (id, entry) in batch.iter().zip(entries) {
            let path = dir.join(id);
            let content = std::fs::read(&path).map_err(|e| CliError::os(format!("reading {}", path.display()), e))?;
            match entry {
                Some(e) if e == content => {}
                Some(_) => return Err(CliError::Check(format!("receipt {id} differs from its journal entry"))),
                None => {
                    return Err(CliError::Check(format!(
                        "receipt {id} is published, but its transfer is not committed"
                    )))
                }
            }
        }
    }
    let mine: Vec<&Ack> = acks.iter().filter(|a| a.id.starts_with(prefix)).collect();
    if let Some(a) = mine.iter().find(|a| published.binary_search(&a.id).is_err()) {
        return Err(CliError::Check(format!(
            "transfer {} was acknowledged, but its receipt is not published",
            a.id
        )));
    }
    Ok(Receipts {
        published: published.len(),
        acknowledged: mine.len(),
    })
}
