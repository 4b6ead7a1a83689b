//! The in-flight search: which transactions of a log were in flight —
//! records but neither a commit nor an end record — and where the
//! before-images of every page they changed lie.
//!
//! It keeps what lies from the last checkpoint (and from the first record
//! of any transaction active at that checkpoint). A transaction whose last
//! records are `CommitIntent`s (one, or several in a row when its pages did
//! not fit one) is kept apart ([`Intent`]): its pages decide whether it
//! committed. This file reads records only; it never reads a
//! page or writes anything.
//!
//! The search keeps each transaction's before-images themselves as it
//! meets them, and lets them go when the transaction's commit or end record
//! comes: what is left at the log's end is exactly what a recovery writes
//! back, read in the one pass opening the log makes anyway
//! ([`wal::Log::open_visiting`]). Its memory is bounded by the log from the
//! scan's start (a checkpoint interval, plus transactions open across it).

use std::collections::{BTreeMap, HashMap};

use wal::{LogReader, Lsn, PageRef, RecordBody, TxnId};

use crate::error::{Error, Result};

/// An in-flight transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightTxn {
    /// The transaction.
    pub txn: TxnId,
    /// Its first record in the log.
    pub first_lsn: Lsn,
    /// Its last record in the log.
    pub last_lsn: Lsn,
}

/// One before-image: the record it came from, the offset in the page it
/// goes back to, and the bytes.
pub(crate) type Image = (Lsn, usize, Vec<u8>);

/// A transaction caught between its commit intent and its commit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The transaction.
    pub txn: TxnId,
    /// Where the intent lies: the stamp its pages carry once written.
    pub lsn: Lsn,
    /// The pages the intent lists.
    pub pages: Vec<PageRef>,
    /// (file id, page) → its before-images, oldest first, put back if the
    /// transaction turns out not committed.
    pub(super) images: HashMap<(u32, u64), Vec<Image>>,
    /// Whether it logged agent records: their agents make the work final if
    /// it committed, and undo it if not.
    pub(super) agents: bool,
}

/// An in-flight transaction that logged agent records, and what becomes of
/// its agents' work: made final (it committed under its intent) or undone.
/// The records themselves are read back along its chain
/// (`crate::agent::supervisor`), which passes over work a failed scope
/// undid already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentTxn {
    /// The transaction.
    pub txn: TxnId,
    /// Its last record in the log.
    pub last_lsn: Lsn,
    /// It committed: its agents' work is made final, not undone.
    pub committed: bool,
}

/// What [`find_in_flight`] found.
#[derive(Debug, Default)]
pub struct InFlight {
    /// The in-flight transactions, by id.
    pub txns: Vec<InFlightTxn>,
    /// In-flight transactions that had logged their commit intent; decided
    /// by `back_out`, which moves the images of those not committed into
    /// the pages to write back.
    pub intents: Vec<Intent>,
    /// (file id, page) → its before-images (byte ranges, `crate::undo`),
    /// oldest first.
    pub(crate) pages: BTreeMap<(u32, u64), Vec<Image>>,
    /// In-flight transactions without an intent that logged agent records
    /// (those with one join when [`back_out`] decides their intents).
    pub agent_txns: Vec<AgentTxn>,
    /// How many records the search read.
    pub records: u64,
    /// (file id, page) → the in-flight transaction (without an intent)
    /// that changed it: a page has one, since each held its pages' X locks
    /// to the end.
    pub(super) owners: BTreeMap<(u32, u64), TxnId>,
}

impl InFlight {
    /// Whether no transaction was in flight.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }
}

#[derive(Default)]
struct TxnScan {
    first: Option<Lsn>,
    last: Lsn,
    pages: HashMap<(u32, u64), Vec<Image>>,
    agents: bool,
    intent: Option<(Lsn, Vec<PageRef>)>,
}

/// Scans `reader`'s log and returns its in-flight transactions and the
/// before-images of every page they changed.
pub fn find_in_flight(reader: &LogReader) -> Result<InFlight> {
    let from = scan_start(reader)?;
    let mut scan = InFlightScan::new();
    for rec in reader.scan(from) {
        scan.visit(rec?);
    }
    Ok(scan.finish(from))
}

/// [`scan_start`], or — when the checkpoint it needs is gone and the
/// operator accepted log damage — the log's start: a scan from there sees
/// every record the checkpoint would have let it skip, too.
pub fn scan_start_accepting(reader: &LogReader, accept_log_damage: bool) -> Result<Lsn> {
    match scan_start(reader) {
        Err(Error::LogDamaged { detail, .. }) if accept_log_damage => {
            tracing::warn!(
                node = reader.node_id(),
                detail,
                "log damage accepted: scanning from the log's start"
            );
            Ok(reader.start_lsn())
        }
        other => other,
    }
}

/// Where a scan for in-flight work starts: the last checkpoint, or the
/// first record of a transaction active at it if that is older.
pub fn scan_start(reader: &LogReader) -> Result<Lsn> {
    let Some(cp) = reader.checkpoint_lsn() else {
        return Ok(reader.start_lsn());
    };
    // The checkpoint was durable before the control file named it: gone or
    // damaged now, the log lost durable records.
    let rec = reader.read(cp).map_err(|e| match e {
        e @ (wal::WalError::NoRecord(_) | wal::WalError::Corruption { .. }) => Error::LogDamaged {
            node: reader.node_id(),
            end: cp,
            detail: format!(
                "the control file names the checkpoint at LSN {cp}, where recovery starts, and it is gone ({e})"
            ),
        },
        other => other.into(),
    })?;
    let RecordBody::Checkpoint(active) = rec.body else {
        return Err(Error::Log(wal::WalError::Corruption {
            lsn: cp,
            kind: wal::CorruptionKind::BadPayload("control file points at a record that is no checkpoint"),
        }));
    };
    Ok(active
        .iter()
        .map(|a| a.first_lsn)
        .chain([cp])
        .min()
        .unwrap_or(cp)
        .max(reader.start_lsn()))
}

/// The in-flight search, fed one record at a time in log order — by a scan
/// of its own ([`find_in_flight`]) or by the scan that opening a log makes
/// anyway ([`wal::Log::open_visiting`]), so a recovery reads the log once.
pub struct InFlightScan {
    txns: BTreeMap<TxnId, TxnScan>,
    records: u64,
}

impl Default for InFlightScan {
    fn default() -> Self {
        Self::new()
    }
}

impl InFlightScan {
    pub fn new() -> InFlightScan {
        InFlightScan {
            txns: BTreeMap::new(),
            records: 0,
        }
    }

    /// Takes the next record.
    pub fn visit(&mut self, rec: wal::Record) {
        self.records += 1;
        if rec.meta.txn == 0 {
            return;
        }
        if matches!(rec.body, RecordBody::Commit | RecordBody::End) {
            self.txns.remove(&rec.meta.txn);
            return;
        }
        let t = self.txns.entry(rec.meta.txn).or_default();
        t.first.get_or_insert(rec.lsn);
        t.last = rec.lsn;
        match rec.body {
            RecordBody::Undo(u) => {
                t.pages
                    .entry((u.file_id, u.page_no))
                    .or_default()
                    .push((rec.lsn, u.offset_in_page as usize, u.before));
            }
            RecordBody::AgentUndo(_) => t.agents = true,
            // A run of intents is one intent: the pages of all, stamped
            // with the last (`crate::txn`). An intent cut short by the crash
            // names a stamp none of its pages can carry, since pages are
            // written only once the last is durable.
            RecordBody::CommitIntent(pages) => match &mut t.intent {
                Some((lsn, listed)) => {
                    *lsn = rec.lsn;
                    listed.extend(pages);
                }
                None => t.intent = Some((rec.lsn, pages)),
            },
            // The commit failed and said so: back it out like any other.
            RecordBody::Abort => t.intent = None,
            _ => {}
        }
    }

    /// What was found. A scan that began before `from` ([`scan_start`])
    /// keeps only transactions with records from there on: one that ends
    /// before it finished before the checkpoint (an active one is listed
    /// in it, and `from` is no later than its first record).
    pub fn finish(self, from: Lsn) -> InFlight {
        let mut out = InFlight {
            records: self.records,
            ..InFlight::default()
        };
        for (txn, t) in self.txns.into_iter().filter(|(_, t)| t.last >= from) {
            out.txns.push(InFlightTxn {
                txn,
                first_lsn: t.first.unwrap_or(t.last),
                last_lsn: t.last,
            });
            if let Some((lsn, pages)) = t.intent {
                out.intents.push(Intent {
                    txn,
                    lsn,
                    pages,
                    images: t.pages,
                    agents: t.agents,
                });
                continue;
            }
            for (key, lsns) in t.pages {
                out.owners.insert(key, txn);
                out.pages.entry(key).or_default().extend(lsns);
            }
            if t.agents {
                out.agent_txns.push(AgentTxn {
                    txn,
                    last_lsn: t.last,
                    committed: false,
                });
            }
        }
        for images in out.pages.values_mut() {
            images.sort_unstable_by_key(|i| i.0);
        }
        out
    }
}
