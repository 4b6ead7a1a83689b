//! What ordered tables add to rows: ranges and prefixes, iterated either
//! way ([`Range`]), the first and last rows, and counts.
//!
//! Every leaf a scan steps onto stays locked S until the transaction ends,
//! so a range it read cannot change under it, nor gain a row (no phantoms;
//! see `crate::btree`). A count reads every leaf, and so locks the whole
//! table's rows against writers until the transaction ends.

use std::ops::{Bound, RangeBounds};

use lockmgr::LockMode;

use super::Transaction;
use crate::btree::cursor::{Backward, Forward};
use crate::catalog::{TableInfo, TableKind};
use crate::error::{Error, Result};
use crate::store::Access;

/// A row: its key and its value.
pub type Row = (Vec<u8>, Vec<u8>);

impl Transaction {
    /// The ordered table `name`, locked IS (its root S).
    fn ordered(&mut self, name: &str) -> Result<TableInfo> {
        self.check_open()?;
        let t = self.table(name, false, None, LockMode::S)?;
        if t.kind != TableKind::Ordered {
            return Err(Error::NotOrdered(name.into()));
        }
        Ok(t)
    }

    /// The rows of ordered table `table` whose keys lie in `range`, in key
    /// order; iterate backward with `.rev()` (or from both ends). A start
    /// after the end, or one key excluded at both ends, is
    /// [`Error::InvalidRange`].
    ///
    /// ```no_run
    /// # fn demo(txn: &mut understudy::Transaction) -> understudy::Result<()> {
    /// for row in txn.range("orders", b"2024-01".as_slice()..b"2024-02".as_slice())? {
    ///     let (key, value) = row?;
    /// #   let _ = (key, value);
    /// }
    /// let newest = txn.range("orders", b"2024-01".as_slice()..)?.next_back().transpose()?;
    /// # let _ = newest;
    /// # Ok(()) }
    /// ```
    pub fn range<K: AsRef<[u8]>>(&mut self, table: &str, range: impl RangeBounds<K>) -> Result<Range<'_>> {
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let (start, end) = (owned(range.start_bound()), owned(range.end_bound()));
        check_bounds(&start, &end)?;
        let table = self.ordered(table).map_err(|e| e.at(table, None))?;
        Ok(Range {
            txn: self,
            table,
            access: Access::Read,
            start,
            end,
            front: None,
            back: None,
            front_last: None,
            back_last: None,
            done: false,
        })
    }

    /// [`Transaction::range`] for rows the transaction means to change:
    /// each leaf the scan steps onto is locked X at once, as a change of
    /// its rows will (a read for update, as [`Transaction::get_for_update`]
    /// is for one key). Two transactions scanning the same rows to change
    /// some then queue for them instead of both holding S and deadlocking
    /// when each wants X; the price is that readers of those leaves wait
    /// too.
    pub fn range_for_update<K: AsRef<[u8]>>(&mut self, table: &str, range: impl RangeBounds<K>) -> Result<Range<'_>> {
        let mut r = self.range(table, range)?;
        r.access = Access::Write;
        Ok(r)
    }

    /// Every row of ordered table `table`, in key order.
    pub fn iter(&mut self, table: &str) -> Result<Range<'_>> {
        self.range::<&[u8]>(table, ..)
    }

    /// The rows of ordered table `table` whose keys begin with `prefix`.
    pub fn prefix(&mut self, table: &str, prefix: &[u8]) -> Result<Range<'_>> {
        let end = prefix_end(prefix);
        let mut r = self.range::<&[u8]>(table, (Bound::Included(prefix), Bound::Unbounded))?;
        r.end = end.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(r)
    }

    /// The row with the smallest key of ordered table `table`.
    pub fn first(&mut self, table: &str) -> Result<Option<Row>> {
        self.iter(table)?.next().transpose()
    }

    /// The row with the largest key of ordered table `table`.
    pub fn last(&mut self, table: &str) -> Result<Option<Row>> {
        self.iter(table)?.next_back().transpose()
    }

    /// How many rows ordered table `table` holds: every leaf is read (not
    /// the values), and stays locked S until the transaction ends.
    pub fn len(&mut self, table: &str) -> Result<u64> {
        let t = self.ordered(table)?;
        let mut s = self.store(&t);
        Forward::seek(&mut s, Bound::Unbounded, Access::Read)
            .and_then(|mut rows| rows.count_rest(&mut s))
            .map_err(|e| e.at(table, None))
    }

    /// Checks the whole tree of ordered table `table`
    /// (`crate::admin::check_ordered_table`).
    pub(crate) fn check_tree(&mut self, table: &str, values: bool) -> Result<crate::btree::check::TreeSummary> {
        let t = self.ordered(table)?;
        crate::btree::check::check(&mut self.store(&t), values)
    }

    /// Whether ordered table `table` holds no row.
    pub fn is_empty(&mut self, table: &str) -> Result<bool> {
        Ok(self.first(table)?.is_none())
    }
}

/// The first key past every key that begins with `prefix`; `None` when
/// there is none (the prefix is all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=keep].to_vec();
    end[keep] += 1;
    Some(end)
}

fn check_bounds(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Result<()> {
    let (s, e) = match (start, end) {
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => (s, e),
        _ => return Ok(()),
    };
    if s > e {
        return Err(Error::InvalidRange(format!("the start {s:?} lies after the end {e:?}")));
    }
    if s == e && matches!((start, end), (Bound::Excluded(_), Bound::Excluded(_))) {
        return Err(Error::InvalidRange(format!("{s:?} is excluded at both ends")));
    }
    Ok(())
}

/// Rows of an ordered table in key order, from [`Transaction::range`]: an
/// iterator of `Result`s, from either end. It borrows the transaction;
/// after an error it ends.
pub struct Range<'t> {
    txn: &'t mut Transaction,
    table: TableInfo,
    /// How each leaf is locked: S, or X ([`Transaction::range_for_update`]).
    access: Access,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    front: Option<Forward>,
    back: Option<Backward>,
    /// The last key each end gave: the two ends stop where they meet.
    front_last: Option<Vec<u8>>,
    back_last: Option<Vec<u8>>,
    done: bool,
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Range<'_> {
    fn step_front(&mut self) -> Result<Option<Row>> {
        self.txn.check_open()?;
        let mut s = self.txn.store(&self.table);
        if self.front.is_none() {
            self.front = Some(Forward::seek(&mut s, as_ref(&self.start), self.access)?);
        }
        let Some((key, value)) = self.front.as_mut().expect("set above").next(&mut s)? else {
            return Ok(None);
        };
        let past = match &self.end {
            Bound::Included(e) => key > *e,
            Bound::Excluded(e) => key >= *e,
            Bound::Unbounded => false,
        };
        if past || self.back_last.as_ref().is_some_and(|b| key >= *b) {
            return Ok(None);
        }
        let value = value.resolve(&mut s)?;
        self.front_last = Some(key.clone());
        Ok(Some((key, value)))
    }

    fn step_back(&mut self) -> Result<Option<Row>> {
        self.txn.check_open()?;
        let mut s = self.txn.store(&self.table);
        if self.back.is_none() {
            self.back = Some(Backward::seek(&mut s, as_ref(&self.end), self.access)?);
        }
        let Some((key, value)) = self.back.as_mut().expect("set above").prev(&mut s)? else {
            return Ok(None);
        };
        let before = match &self.start {
            Bound::Included(b) => key < *b,
            Bound::Excluded(b) => key <= *b,
            Bound::Unbounded => false,
        };
        if before || self.front_last.as_ref().is_some_and(|f| key <= *f) {
            return Ok(None);
        }
        let value = value.resolve(&mut s)?;
        self.back_last = Some(key.clone());
        Ok(Some((key, value)))
    }

    fn finish(&mut self, step: Result<Option<Row>>) -> Option<Result<Row>> {
        match step {
            Ok(Some(row)) => Some(Ok(row)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for Range<'_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.done {
            return None;
        }
        let step = self.step_front().map_err(|e| e.at(&self.table.name, None));
        self.finish(step)
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Result<Row>> {
        if self.done {
            return None;
        }
        let step = self.step_back().map_err(|e| e.at(&self.table.name, None));
        self.finish(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_where_keys_stop_beginning_with_them() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn inverted_and_empty_exclusive_ranges_are_refused() {
        let b = |s: &[u8]| Bound::Included(s.to_vec());
        let x = |s: &[u8]| Bound::Excluded(s.to_vec());
        assert!(check_bounds(&b(b"b"), &b(b"a")).is_err());
        assert!(check_bounds(&x(b"a"), &x(b"a")).is_err());
        assert!(check_bounds(&b(b"a"), &x(b"a")).is_ok(), "empty, as BTreeMap's");
        assert!(check_bounds(&Bound::Unbounded, &b(b"a")).is_ok());
    }
}
