//! The log's witnesses: data pages stamped by commits of the log being
//! recovered.
//!
//! A commit writes its pages only after its intent record is durable, and
//! stamps each with the intent's place (`crate::page::Stamp`: the node, its
//! log's identity, the intent's LSN). Opening the log cuts what follows the
//! last good record as a torn tail — bytes of a write that never finished.
//! A page stamped by this log at or past that end contradicts it: the
//! intent that stamped it was durable, so what was cut was acknowledged
//! work, damaged after the fact. Backing out by what is left could undo a
//! committed transaction (its intent gone, its undo records would send its
//! pages back), so recovery stops with [`Error::LogDamaged`] instead, and
//! the retained locks stay.
//!
//! Recovery reads every page it puts back anyway; the check costs no read
//! of its own ([`LogWitness::check`]).
//!
//! After inspection an operator may accept the damage: then the pages
//! decide, as an intent's would have ([`LogWitness::accept`]). An in-flight
//! transaction whose every changed page (each has an undo record) carries
//! one stamp of this log past its end committed under the lost intent, and
//! keeps its pages; any other is backed out, a page of it stamped past the
//! end included — a commit the crash cut short is not kept in part. (What
//! the operator accepts: were the stamp past the end another transaction's,
//! written after this one ended and its end record was lost too, that
//! commit's bytes on this page would go.)
//!
//! A durable `Abort` (a commit that failed after its intent) is never the
//! tail: a checkpoint follows it, and the control file names that
//! checkpoint, so an `Abort` damaged later leaves the log ending before
//! the named checkpoint, which recovery refuses (`scan_start`) — without
//! it, the commit's pages carry stamps below the end, the intent would
//! decide, and a commit reported failed could be kept over an acknowledged
//! one. What no witness can show: a damaged `End` of a rollback
//! at the very tail (the rolled-back transaction is backed out again; its
//! before-images, written over pages another node changed since, fail the
//! page check and stop the recovery as corruption of that page).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use wal::io::Io;
use wal::{Log, Lsn, TxnId};

use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::page::Stamp;
use crate::recovery::scan::InFlight;

/// Where the log being recovered ends, and whose stamps would contradict it.
pub(super) struct LogWitness {
    node: u32,
    log_id: u32,
    end: Lsn,
    /// What opening the log cut at its end.
    torn: Option<wal::CorruptionKind>,
}

impl LogWitness {
    /// The witness for `log` of node `node`, as it was opened.
    pub(super) fn of(log: &Log, node: u32) -> LogWitness {
        let end = log.end_at_open();
        LogWitness {
            node,
            log_id: log.control().log_id,
            end: end.next,
            torn: end.torn.clone(),
        }
    }

    /// Whether `stamp` proves durable records of this log past its end.
    fn contradicts(&self, stamp: Stamp) -> bool {
        stamp.of_log(self.node, self.log_id) && stamp.lsn >= self.end.0
    }

    fn damaged(&self, file: &Path, page: u64, stamp: Stamp) -> Error {
        let cut = match &self.torn {
            Some(kind) => format!("the record there was cut as a torn tail ({kind})"),
            None => "nothing follows it".into(),
        };
        Error::LogDamaged {
            node: self.node,
            end: self.end,
            detail: format!(
                "page {page} of {} carries the stamp of a commit intent at LSN {}, at or past the log's end at {}; \
                 {cut}",
                file.display(),
                stamp.lsn,
                self.end
            ),
        }
    }

    /// Checks a page image about to be put back, as read (before any
    /// before-image is written over it).
    pub(super) fn check(&self, file: &DataFile, page: u64, raw: &[u8]) -> Result<()> {
        let stamp = Stamp::of(raw);
        if self.contradicts(stamp) {
            return Err(self.damaged(file.path(), page, stamp));
        }
        Ok(())
    }

    /// The operator accepted the damage: decides, by their pages, which
    /// in-flight transactions committed under a lost intent (module docs),
    /// takes their pages out of `found` and marks their agents' work to be
    /// made final. Returns how many did.
    pub(super) fn accept(&self, io: &Io, opened: &HashMap<u32, Arc<DataFile>>, found: &mut InFlight) -> Result<usize> {
        let keys: Vec<(u32, u64)> = found.pages.keys().copied().collect();
        let targets: Vec<(&DataFile, u64)> = keys.iter().map(|&(f, no)| (opened[&f].as_ref(), no)).collect();
        let mut images =
            crate::aligned::AlignedPages::new(keys.len(), opened.values().next().map_or(4096, |f| f.page_size()))?;
        crate::datafile::read_raw_pages(io, &targets, &mut images)?;
        // Per transaction: the one stamp past the end all its pages carry,
        // or None once one page does not.
        let mut verdict: BTreeMap<TxnId, Option<u64>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            let image = images.page(i);
            let Some(&txn) = found.owners.get(key) else { continue };
            let stamp = Stamp::of(image);
            let past = self.contradicts(stamp).then_some(stamp.lsn);
            verdict
                .entry(txn)
                .and_modify(|v| {
                    if *v != past {
                        *v = None;
                    }
                })
                .or_insert(past);
        }
        let committed: Vec<TxnId> = verdict.into_iter().filter_map(|(txn, v)| v.map(|_| txn)).collect();
        for txn in &committed {
            tracing::warn!(
                node = self.node,
                txn,
                "log damage accepted: every page of the transaction carries a stamp past the log's end; kept as \
                 committed"
            );
        }
        found
            .pages
            .retain(|key, _| found.owners.get(key).is_none_or(|t| !committed.contains(t)));
        for t in found.agent_txns.iter_mut().filter(|t| committed.contains(&t.txn)) {
            t.committed = true;
        }
        Ok(committed.len())
    }
}
