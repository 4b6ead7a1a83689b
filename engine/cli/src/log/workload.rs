//! The demo's transaction shape, shared by the in-process run and the child
//! process the crash rounds kill, so that both exercise the log the same way.

use std::time::Duration;

use rand::Rng;
use wal::record::encoded_len;
use wal::{Log, Lsn, PageUndo, RecordBody, RecordMeta, TxnId};

/// Page size the random byte ranges are drawn within.
const PAGE_SIZE: usize = 8192;

/// What one committed transaction put in the log.
#[derive(Clone, Copy, Debug)]
pub struct TxnOutcome {
    /// LSN of its Commit record, durable when [`run_txn`] returns.
    pub commit: Lsn,
    pub records: u64,
    /// Log bytes, padding included.
    pub bytes: u64,
}

/// Runs one transaction: Begin, one to four page before-images of random
/// ranges, Commit; then waits until the Commit is durable, which is the
/// moment a real engine would report the commit to its client.
///
/// With `think`, it pauses up to that long before each page change, as a
/// transaction that does work between its changes would. Without pauses a
/// transaction's records are appended within microseconds and a crash
/// almost never finds one half-logged; with them, crashes leave transactions
/// in flight, which is what the undo log exists for.
pub fn run_txn(log: &Log, txn: TxnId, rng: &mut impl Rng, think: Option<Duration>) -> wal::Result<TxnOutcome> {
    let mut bytes = encoded_len(&RecordBody::Begin);
    let mut prev = log.append(RecordMeta::txn(txn, None), &RecordBody::Begin)?;
    let undos: u64 = rng.random_range(1..=4);
    for _ in 0..undos {
        if let Some(max) = think {
            std::thread::sleep(rng.random_range(Duration::ZERO..=max));
        }
        let len = rng.random_range(16..=256usize);
        let mut before = vec![0u8; len];
        rng.fill(&mut before[..]);
        let body = RecordBody::Undo(PageUndo {
            file_id: rng.random_range(1..=4),
            page_no: rng.random_range(0..10_000),
            offset_in_page: rng.random_range(0..=(PAGE_SIZE - len)) as u32,
            before,
            after: None,
        });
        bytes += encoded_len(&body);
        prev = log.append(RecordMeta::txn(txn, Some(prev)), &body)?;
    }
    bytes += encoded_len(&RecordBody::Commit);
    let commit = log.append(RecordMeta::txn(txn, Some(prev)), &RecordBody::Commit)?;
    log.wait_durable(commit)?;
    Ok(TxnOutcome {
        commit,
        records: undos + 2,
        bytes,
    })
}
