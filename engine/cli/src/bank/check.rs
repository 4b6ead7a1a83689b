//! Checking acknowledgements: every transfer a node acknowledged is in the
//! journal with the value it was acknowledged with.

use std::path::Path;

use understudy::{Node, RetryPolicy};

use crate::bank::ack::Ack;
use crate::bank::schema::TRANSFERS_TABLE;
use crate::error::CliError;

/// Journal entries checked per transaction by [`check_acks`], so that one
/// transaction does not hold an unbounded number of page locks.
const ACK_CHECK_BATCH: usize = 256;

/// Checks that every acknowledged transfer is in the journal with the value
/// it was acknowledged with; the error names the first few that are not.
pub fn check_acks(node: &Node, acks: &[Ack]) -> Result<(), CliError> {
    let mut wrong = Vec::new();
    for batch in acks.chunks(ACK_CHECK_BATCH) {
        let found = understudy::retry(&RetryPolicy::default(), |_| {
            let mut txn = node.begin()?;
            let mut found = Vec::with_capacity(batch.len());
            for ack in batch {
                found.push(txn.get(TRANSFERS_TABLE, ack.id.as_bytes())?);
            }
            txn.rollback()?;
            Ok::<_, CliError>(found)
        })?;
        for (ack, value) in batch.iter().zip(found) {
            let want = ack.journal_value();
            match value {
                Some(v) if v == want.as_bytes() => {}
                Some(v) => wrong.push(format!(
                    "{} holds {:?}, acknowledged as {want:?}",
                    ack.id,
                    String::from_utf8_lossy(&v)
                )),
                None => wrong.push(format!("{} is missing", ack.id)),
            }
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = wrong.iter().take(5).map(String::as_str).collect();
    Err(CliError::Check(format!(
        "{} of {} acknowledged transfers are not in the journal as acknowledged: {}{}",
        wrong.len(),
        acks.len(),
        shown.join("; "),
        if wrong.len() > shown.len() { "; ..." } else { "" }
    )))
}

/// Reads the acknowledgements in `path`: every `ACK` line (the stdout of
/// `node --workload bank` processes; other lines are skipped).
pub fn read_acks(path: &Path) -> Result<Vec<Ack>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::os(format!("reading {}", path.display()), e))?;
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| Ack::parse(line).map(|r| (i, r)))
        .map(|(i, r)| r.map_err(|e| CliError::Invalid(format!("{} line {}: {e}", path.display(), i + 1))))
        .collect()
}
