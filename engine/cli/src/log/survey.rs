//! Reading a whole log back and checking what the demo promises: the records
//! form one gap-free prefix in LSN order, every transaction's records chain
//! backward to its Begin, and every commit that was acknowledged is there.

use std::collections::{BTreeMap, HashMap};

use wal::record::encoded_len;
use wal::{Kind, LogEnd, LogReader, Lsn, RecordBody, TxnId};

use crate::error::CliError;

/// What one transaction left in the log.
#[derive(Clone, Debug)]
struct TxnTrail {
    /// Its records' LSNs in log order.
    lsns: Vec<Lsn>,
    committed: bool,
}

/// A whole log, read back and checked; see [`survey`].
#[derive(Debug)]
pub struct Survey {
    pub start: Lsn,
    pub end: LogEnd,
    pub records: u64,
    pub segments: u64,
    /// Commit records by LSN.
    commits: HashMap<Lsn, TxnId>,
    txns: BTreeMap<TxnId, TxnTrail>,
}

impl Survey {
    pub fn committed(&self) -> usize {
        self.commits.len()
    }

    /// Transactions that began and have no Commit in the log.
    pub fn in_flight(&self) -> usize {
        self.txns.values().filter(|t| !t.committed).count()
    }

    /// The highest transaction id in the log, 0 for an empty one.
    pub fn max_txn(&self) -> TxnId {
        self.txns.keys().next_back().copied().unwrap_or(0)
    }

    /// Committed transactions with an id of at least `first`.
    pub fn committed_from(&self, first: TxnId) -> usize {
        self.commits.values().filter(|&&t| t >= first).count()
    }

    /// Checks that every acknowledged `(txn, commit LSN)` is in the log as a
    /// Commit record of that transaction at that LSN.
    pub fn check_acks(&self, acks: &[(TxnId, Lsn)]) -> Result<(), CliError> {
        for &(txn, lsn) in acks {
            match self.commits.get(&lsn) {
                Some(&t) if t == txn => {}
                Some(&t) => {
                    return Err(CliError::Check(format!(
                        "acknowledged commit of txn {txn} at LSN {lsn}: the Commit there belongs to txn {t}"
                    )))
                }
                None => {
                    return Err(CliError::Check(format!(
                        "acknowledged commit of txn {txn} at LSN {lsn} is not in the log (it ends at {})",
                        self.end.next
                    )))
                }
            }
        }
        Ok(())
    }

    /// Walks every transaction's chain backward with [`LogReader::chain`]
    /// and compares it with what the forward scan saw.
    pub fn check_chains(&self, reader: &LogReader) -> Result<(), CliError> {
        for (&txn, trail) in &self.txns {
            let Some(&last) = trail.lsns.last() else { continue };
            let mut walked = Vec::with_capacity(trail.lsns.len());
            for rec in reader.chain(last) {
                let rec = rec?;
                if rec.meta.txn != txn {
                    return Err(CliError::Check(format!(
                        "the chain of txn {txn} reaches LSN {}, a record of txn {}",
                        rec.lsn, rec.meta.txn
                    )));
                }
                walked.push(rec.lsn);
                // A chain is never longer than the transaction; stop a
                // runaway walk instead of following it.
                if walked.len() > trail.lsns.len() {
                    break;
                }
            }
            walked.reverse();
            if walked != trail.lsns {
                return Err(CliError::Check(format!(
                    "the backward chain of txn {txn} from LSN {last} visits {walked:?}, the scan saw {:?}",
                    trail.lsns
                )));
            }
        }
        Ok(())
    }
}

/// Scans the whole log and checks its shape as it goes:
/// - each record starts where the previous one ended, or at the start of the
///   next segment when the previous segment was closed by a filler;
/// - a transaction's first record is a Begin without a previous LSN, every
///   later one points at the one before it, and nothing follows its Commit;
/// - the scan ends without error (a torn tail is reported in
///   [`Survey::end`], not an error).
pub fn survey(reader: &LogReader) -> Result<Survey, CliError> {
    let layout = reader.layout();
    let mut s = Survey {
        start: reader.start_lsn(),
        end: LogEnd {
            next: reader.start_lsn(),
            torn: None,
            leftovers: false,
        },
        records: 0,
        segments: 0,
        commits: HashMap::new(),
        txns: BTreeMap::new(),
    };
    // Where the previous record ended.
    let mut expect: Option<Lsn> = None;
    let mut scan = reader.scan(reader.start_lsn());
    while let Some(rec) = scan.next() {
        let rec = rec.map_err(|e| CliError::scan(scan.position(), e))?;
        if let Some(want) = expect {
            let next_segment = layout.segment_start(layout.segment_of(Lsn(want.0 - 1)) + 1);
            if rec.lsn != want && rec.lsn != next_segment {
                return Err(CliError::Check(format!(
                    "record at LSN {} does not follow the previous one, which ended at {want}",
                    rec.lsn
                )));
            }
        } else if rec.lsn < s.start {
            return Err(CliError::Check(format!(
                "record at LSN {} lies before the log's start {}",
                rec.lsn, s.start
            )));
        }
        expect = Some(Lsn(rec.lsn.0 + encoded_len(&rec.body)));
        s.records += 1;

        let txn = rec.meta.txn;
        if matches!(rec.body, RecordBody::Checkpoint(_)) {
            continue; // log-level record, no transaction
        }
        match s.txns.get_mut(&txn) {
            None => {
                if rec.body != RecordBody::Begin || rec.meta.prev_lsn.is_some() {
                    return Err(CliError::Check(format!(
                        "txn {txn} starts at LSN {} with a {:?} record (prev {:?}), not a Begin without a predecessor",
                        rec.lsn,
                        rec.body.kind(),
                        rec.meta.prev_lsn
                    )));
                }
                s.txns.insert(
                    txn,
                    TxnTrail {
                        lsns: vec![rec.lsn],
                        committed: false,
                    },
                );
            }
            Some(trail) => {
                let last = *trail.lsns.last().expect("a trail starts with its Begin");
                if trail.committed {
                    return Err(CliError::Check(format!(
                        "txn {txn} has a record at LSN {} after its Commit",
                        rec.lsn
                    )));
                }
                if rec.meta.prev_lsn != Some(last) {
                    return Err(CliError::Check(format!(
                        "record at LSN {} of txn {txn} points back to {:?}, but the txn's previous record is at {last}",
                        rec.lsn, rec.meta.prev_lsn
                    )));
                }
                if rec.body == RecordBody::Begin {
                    return Err(CliError::Check(format!(
                        "txn {txn} begins a second time at LSN {}",
                        rec.lsn
                    )));
                }
                trail.lsns.push(rec.lsn);
            }
        }
        if rec.body.kind() == Kind::Commit {
            s.commits.insert(rec.lsn, txn);
            if let Some(trail) = s.txns.get_mut(&txn) {
                trail.committed = true;
            }
        }
    }
    s.end = scan
        .end()
        .cloned()
        .ok_or_else(|| CliError::Check("the scan ended without saying where the log ends".into()))?;
    if let Some(want) = expect {
        let next_segment = layout.segment_start(layout.segment_of(Lsn(want.0 - 1)) + 1);
        if s.end.next != want && s.end.next != next_segment {
            return Err(CliError::Check(format!(
                "the log ends at {}, but its last record ended at {want}",
                s.end.next
            )));
        }
    }
    s.segments = layout.segment_of(s.end.next) - layout.segment_of(s.start) + 1;
    Ok(s)
}
