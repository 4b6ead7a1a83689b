//! Walking the leaves in key order, forward along the leaf chain or
//! backward by descending below each leaf's low fence (see
//! `crate::btree`). Every leaf a cursor steps onto is locked S for the rest
//! of the transaction: what makes a scanned range safe from phantoms (the
//! branches a descent passed are released, `crate::btree::release_path`).
//! A cursor for update locks each leaf X instead, as a change of its rows
//! will: a transaction that scans rows to change some of them then never
//! holds S where it wants X, so two of them queue rather than deadlock.
//!
//! A cursor leaves each leaf's copy behind when it moves on (its lock
//! stays), so a scan of a large table holds locks, not pages. It reads the
//! rest of a leaf's items at once when it steps onto it, and hands them
//! out one by one: a leaf is parsed (and checked whole) once per walk, not
//! once per item. The leaf stays locked by the transaction, and the walk
//! borrows the transaction, so nothing changes the items meanwhile.
//!
//! Damage that would make a walk endless is caught: the keys of successive
//! leaves must keep rising (falling, backward), and no more than
//! [`MAX_EMPTY_RUN`] empty leaves may follow each other.

use std::collections::VecDeque;
use std::ops::Bound;

use crate::error::Result;
use crate::store::{Access, PageStore};

use super::{descend, release_path, with_node, Descent, Owned, Target};

/// Most empty leaves in a row a walk crosses before it calls the chain
/// damaged (merges leave few: an empty leaf merges with a sibling unless a
/// lock is busy at that moment).
pub const MAX_EMPTY_RUN: usize = 1 << 16;

/// One item read from a leaf: its key and its value as stored.
pub type Entry = (Vec<u8>, Owned);

/// A forward walk.
#[derive(Clone, Debug)]
pub struct Forward {
    /// How each leaf is locked: S, or X for update.
    access: Access,
    leaf: u64,
    /// The next item of the leaf to read into `ahead`.
    idx: usize,
    /// Items of the leaf read and not yet handed out, in order.
    ahead: VecDeque<Entry>,
    /// The last key of the last non-empty leaf left.
    left_behind: Option<Vec<u8>>,
}

/// A backward walk.
#[derive(Clone, Debug)]
pub struct Backward {
    /// How each leaf is locked: S, or X for update.
    access: Access,
    leaf: u64,
    /// Items below this index of the leaf are still to read into `ahead`.
    idx: usize,
    /// Items of the leaf read and not yet handed out, last first.
    ahead: VecDeque<Entry>,
    /// The leaf's low fence, where the next leaf to the left ends.
    low: Option<Vec<u8>>,
}

/// Descends to `target`'s leaf, locked for `access`, letting the branches
/// go either way: a walk changes no branch.
fn descend_to_leaf<S: PageStore>(s: &mut S, target: Target<'_>, access: Access) -> Result<Descent> {
    let d = descend(s, target, access)?;
    if access == Access::Write {
        release_path(s, &d);
    }
    Ok(d)
}

fn first_at_or_after(bound: Bound<&[u8]>, search: Result<usize, usize>) -> usize {
    match (bound, search) {
        (Bound::Excluded(_), Ok(i)) => i + 1,
        (_, Ok(i) | Err(i)) => i,
    }
}

impl Forward {
    /// Positioned at the first key within `start`, each leaf locked for
    /// `access`.
    pub fn seek<S: PageStore>(s: &mut S, start: Bound<&[u8]>, access: Access) -> Result<Forward> {
        let target = match start {
            Bound::Unbounded => Target::First,
            Bound::Included(k) | Bound::Excluded(k) => Target::Key(k),
        };
        let d = descend_to_leaf(s, target, access)?;
        let idx = with_node(s, d.leaf, access, |n| match start {
            Bound::Unbounded => 0,
            Bound::Included(k) | Bound::Excluded(k) => first_at_or_after(start, n.search(k)),
        })?;
        Ok(Forward {
            access,
            leaf: d.leaf,
            idx,
            ahead: VecDeque::new(),
            left_behind: None,
        })
    }

    /// The next item, or `None` past the last leaf. With `values` false a
    /// large value's reference is not followed either way: `Owned` is what
    /// the leaf holds.
    pub fn next<S: PageStore>(&mut self, s: &mut S) -> Result<Option<Entry>> {
        if let Some(entry) = self.ahead.pop_front() {
            return Ok(Some(entry));
        }
        for _ in 0..MAX_EMPTY_RUN {
            let (idx, leaf) = (self.idx, self.leaf);
            let step = with_node(s, leaf, self.access, |n| {
                if idx < n.count() {
                    let rest: VecDeque<Entry> = (idx..n.count())
                        .map(|i| (n.key(i).to_vec(), Owned::of(n.value(i))))
                        .collect();
                    Ok(rest)
                } else {
                    let last = n.count().checked_sub(1).map(|i| n.key(i).to_vec());
                    Err((n.next(), last))
                }
            })?;
            match step {
                Ok(mut rest) => {
                    let first = rest.pop_front().expect("idx < count");
                    if idx == 0 && self.left_behind.as_deref().is_some_and(|b| b >= first.0.as_slice()) {
                        return Err(s.corrupt(leaf, "the leaf chain goes back to smaller keys".into()));
                    }
                    self.idx += 1 + rest.len();
                    self.ahead = rest;
                    return Ok(Some(first));
                }
                Err((next, last)) => {
                    if last.is_some() {
                        self.left_behind = last;
                    }
                    if next == 0 {
                        return Ok(None);
                    }
                    s.forget_copy(leaf);
                    self.leaf = next;
                    self.idx = 0;
                }
            }
        }
        Err(s.corrupt(self.leaf, "too many empty leaves in a row".into()))
    }

    /// Counts the items from here to the end, reading no value.
    pub fn count_rest<S: PageStore>(&mut self, s: &mut S) -> Result<u64> {
        let mut total = self.ahead.len() as u64;
        self.ahead.clear();
        loop {
            let (idx, leaf) = (self.idx, self.leaf);
            let (count, next) = with_node(s, leaf, self.access, |n| (n.count(), n.next()))?;
            total += count.saturating_sub(idx) as u64;
            if next == 0 {
                return Ok(total);
            }
            if next == leaf || total > u64::from(u32::MAX) * 1024 {
                return Err(s.corrupt(leaf, "the leaf chain loops".into()));
            }
            s.forget_copy(leaf);
            self.leaf = next;
            self.idx = 0;
        }
    }
}

impl Backward {
    /// Positioned after the last key within `end`, each leaf locked for
    /// `access`.
    pub fn seek<S: PageStore>(s: &mut S, end: Bound<&[u8]>, access: Access) -> Result<Backward> {
        let target = match end {
            Bound::Unbounded => Target::Last,
            Bound::Included(k) | Bound::Excluded(k) => Target::Key(k),
        };
        let d = descend_to_leaf(s, target, access)?;
        let idx = with_node(s, d.leaf, access, |n| match end {
            Bound::Unbounded => n.count(),
            Bound::Included(k) => match n.search(k) {
                Ok(i) => i + 1,
                Err(i) => i,
            },
            Bound::Excluded(k) => n.search(k).unwrap_or_else(|i| i),
        })?;
        Ok(Backward {
            access,
            leaf: d.leaf,
            idx,
            ahead: VecDeque::new(),
            low: d.low,
        })
    }

    /// The previous item, or `None` before the first leaf.
    pub fn prev<S: PageStore>(&mut self, s: &mut S) -> Result<Option<Entry>> {
        for _ in 0..MAX_EMPTY_RUN {
            if let Some(entry) = self.ahead.pop_front() {
                return Ok(Some(entry));
            }
            if self.idx > 0 {
                let idx = self.idx;
                self.ahead = with_node(s, self.leaf, self.access, |n| {
                    (0..idx.min(n.count()))
                        .rev()
                        .map(|i| (n.key(i).to_vec(), Owned::of(n.value(i))))
                        .collect()
                })?;
                self.idx = 0;
                continue;
            }
            let Some(low) = self.low.take() else {
                return Ok(None);
            };
            let d = descend_to_leaf(s, Target::Below(&low), self.access)?;
            if d.low.as_deref().is_some_and(|l| l >= low.as_slice()) {
                return Err(s.corrupt(d.leaf, "fences do not fall leaf by leaf".into()));
            }
            s.forget_copy(self.leaf);
            self.idx = with_node(s, d.leaf, self.access, |n| {
                // Keys at or past the fence would be another leaf's.
                n.search(&low).unwrap_or_else(|i| i)
            })?;
            self.leaf = d.leaf;
            self.low = d.low;
        }
        Err(s.corrupt(self.leaf, "too many empty leaves in a row".into()))
    }
}
