//! The whole-tree check: every invariant of an ordered table's file, read
//! under S locks like any scan. What tests assert after crashes and
//! recoveries, and what an operator runs on a table
//! (`crate::admin::check_ordered_table`).
//!
//! Checked: every node decodes (`crate::btree::node`); levels fall by one
//! from the root to the leaves, all leaves at level 0; every key lies
//! within the fences its ancestors' separators give it, in order; the leaf
//! chain visits exactly the leaves in key order; every large value's pages
//! decode and hold its length; the free list decodes; and every allocated
//! page is exactly one of these: the header, a node, a large value's page,
//! a trunk, or a free page — none lost, none used twice.

use std::collections::HashSet;

use crate::error::Result;
use crate::freelist;
use crate::large_value;
use crate::meta::ROOT;
use crate::page::Kind;
use crate::store::{Access, PageStore};

use super::node::MAX_LEVEL;
use super::{with_node, Owned};

/// What [`check`] found in a whole tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSummary {
    /// Keys in the table.
    pub keys: u64,
    /// Leaf pages.
    pub leaves: u64,
    /// Branch pages.
    pub branches: u64,
    /// Levels from the root to the leaves, both counted.
    pub height: u16,
    /// Values stored out of line.
    pub large_values: u64,
    /// Pages of large values (directories and data).
    pub value_pages: u64,
    /// Pages on the free list, its trunks included.
    pub free_pages: u64,
    /// Pages allocated in the file, the header included.
    pub page_count: u64,
}

struct Walk {
    summary: TreeSummary,
    seen: HashSet<u64>,
    leaves: Vec<u64>,
}

impl Walk {
    fn claim<S: PageStore>(&mut self, s: &S, no: u64, what: &str) -> Result<()> {
        if no == 0 || no >= self.summary.page_count || !self.seen.insert(no) {
            return Err(s.corrupt(no, format!("{what} is outside the table or used twice")));
        }
        Ok(())
    }
}

/// Checks the whole tree; see the module docs. With `values`, every large
/// value is read whole too.
pub fn check<S: PageStore>(s: &mut S, values: bool) -> Result<TreeSummary> {
    let meta = freelist::read_meta_shared(s)?;
    let mut w = Walk {
        summary: TreeSummary {
            page_count: meta.page_count,
            ..TreeSummary::default()
        },
        seen: HashSet::from([0]),
        leaves: Vec::new(),
    };
    w.claim(s, ROOT, "the root")?;
    w.summary.height = subtree(s, &mut w, ROOT, None, None, None, values)? + 1;
    // The chain from the first leaf visits the leaves in key order.
    let mut at = w.leaves.first().copied();
    for (i, &leaf) in w.leaves.iter().enumerate() {
        if at != Some(leaf) {
            return Err(s.corrupt(leaf, format!("leaf {i} in key order is not the chain's {i}th")));
        }
        let next = with_node(s, leaf, Access::Read, |n| n.next())?;
        at = (next != 0).then_some(next);
    }
    if at.is_some() {
        return Err(s.corrupt(
            *w.leaves.last().expect("a tree has a leaf"),
            "the chain goes on past the last leaf".into(),
        ));
    }
    // The free list: its trunks and the pages they list.
    let mut trunk = meta.free_trunk;
    while trunk != 0 {
        w.claim(s, trunk, "a free-list trunk")?;
        let page = s.page(trunk, Access::Read)?;
        if page.kind() != Kind::FreeTrunk || page.count() > freelist::trunk_capacity(page.bytes().len()) {
            return Err(s.corrupt(trunk, "the free list names a page that is not a trunk".into()));
        }
        let (listed, next) = (freelist::trunk_entries(page), page.next());
        w.summary.free_pages += 1 + listed.len() as u64;
        for no in listed {
            w.claim(s, no, "a free page")?;
        }
        trunk = next;
    }
    let accounted = w.seen.len() as u64;
    if accounted != meta.page_count {
        return Err(s.corrupt(
            0,
            format!(
                "{} of {} allocated pages are neither in the tree nor free",
                meta.page_count - accounted.min(meta.page_count),
                meta.page_count
            ),
        ));
    }
    Ok(w.summary)
}

/// Checks the subtree at `no` (keys within `low..high`, at `level` when
/// known); returns its level.
fn subtree<S: PageStore>(
    s: &mut S,
    w: &mut Walk,
    no: u64,
    low: Option<&[u8]>,
    high: Option<&[u8]>,
    level: Option<u16>,
    values: bool,
) -> Result<u16> {
    #[allow(clippy::type_complexity)]
    let (leaf, at, keys, children, large): (bool, u16, Vec<Vec<u8>>, Vec<u64>, Vec<Owned>) =
        with_node(s, no, Access::Read, |n| {
            let keys = (0..n.count()).map(|i| n.key(i).to_vec()).collect();
            let children = if n.is_leaf() {
                Vec::new()
            } else {
                (0..=n.count()).map(|j| n.child(j)).collect()
            };
            let large = if n.is_leaf() {
                (0..n.count())
                    .map(|i| Owned::of(n.value(i)))
                    .filter(|v| matches!(v, Owned::Large(_)))
                    .collect()
            } else {
                Vec::new()
            };
            (n.is_leaf(), n.level(), keys, children, large)
        })?;
    if level.is_some_and(|l| l != at) || at > MAX_LEVEL {
        return Err(s.corrupt(no, format!("a node of level {at} where level {level:?} belongs")));
    }
    let outside = |k: &[u8]| low.is_some_and(|l| k < l) || high.is_some_and(|h| k >= h);
    if let Some(k) = keys.iter().find(|k| outside(k)) {
        return Err(s.corrupt(no, format!("key {k:?} lies outside the node's fences")));
    }
    if leaf {
        w.leaves.push(no);
        w.summary.leaves += 1;
        w.summary.keys += keys.len() as u64;
        for v in large {
            let Owned::Large(r) = v else { continue };
            w.summary.large_values += 1;
            for page in large_value::pages(s, &r)? {
                w.claim(s, page, "a large value's page")?;
                w.summary.value_pages += 1;
            }
            if values {
                large_value::read(s, &r)?;
            }
        }
        return Ok(0);
    }
    w.summary.branches += 1;
    for (j, &child) in children.iter().enumerate() {
        w.claim(s, child, "a child")?;
        let lo = if j == 0 { low } else { Some(keys[j - 1].as_slice()) };
        let hi = if j == keys.len() {
            high
        } else {
            Some(keys[j].as_slice())
        };
        subtree(s, w, child, lo, hi, Some(at - 1), values)?;
        s.forget_copy(child);
    }
    Ok(at)
}
