//! Ordered tables: a B+tree in the pages of a table file, changed through
//! a transaction's [`PageStore`] like every other page (strict two-phase
//! page locks, byte-range undo, FORCE at commit).
//!
//! Page 0 is the table's header (`crate::meta`), page 1 the root, which
//! never moves: a root that splits moves its halves into two new pages and
//! becomes their parent, and a root left with one child takes that child's
//! content. Leaves are chained left to right (`crate::btree::node`) for
//! forward scans; reverse scans descend again for each leaf (below the
//! leaf's low fence, the separator on its left), so a split or a merge
//! changes no page beside the ones it splits or merges and their parent.
//!
//! ## Locking, and why scans see no phantoms
//! A descent takes S on every node from the root down, and the leaf it
//! ends at S (a reader) or X (a writer). Leaf locks are held to the end of
//! the transaction (strict two-phase locking). A leaf's *key range* — the
//! keys the separators above it route to it — changes only when that leaf
//! is split or merged, and both take X on the leaf. So a transaction that
//! read keys `a..b` holds S on every leaf whose range meets `a..b` (a scan
//! locks each leaf it steps through, up to the one holding the first key
//! past `b`, or the last), and no other transaction can insert into that
//! range, delete from it, or move its bounds until it ends: no phantoms.
//! A point read that finds nothing holds S on the leaf where the key would
//! go, which covers a later insert of that key the same way. This is
//! next-key locking at the grain of a leaf: the lock on a leaf stands for
//! its whole key range, the gaps between its keys included.
//!
//! Branches only route: what a transaction read is covered by its leaf
//! locks, so the S it took on a branch goes once the operation is done
//! with it ([`release_path`]) — at once for a reading descent, at the end
//! of a put or delete for a writing one (a split converts the path's
//! locks it needs, so they must stay while it runs). A branch a split or
//! merge changed is X-locked and stays so to the end like any changed
//! page. Without this, a long scan's S on the root would stop every split
//! in the tree until the scan's transaction ended.
//!
//! Locking leaf ranges (pages) rather than keys follows from the undo:
//! before-images are byte ranges of pages, which are only safe to write
//! back over a page no other live transaction has changed since, so
//! writers hold X on every page they change anyway. Different keys on one
//! leaf therefore conflict.
//!
//! ## Splits and merges under undo
//! A split locks X every branch it may change (the parent, and up while a
//! node lacks room for one more separator) before it changes anything,
//! converting the S it holds; two writers converting the same branch is a
//! deadlock the coordinator resolves, and the victim retries. Every page a
//! split or merge changes is logged as byte ranges and stays X-locked, so
//! recovery — a node's own restart or a peer — puts each page back exactly
//! and the tree is as it was before the transaction, however far its split
//! got. New pages come fresh from the free list or past the allocated pages
//! (`crate::freelist`): their undo is "never written". Merges happen on
//! delete when a node falls below a quarter full and it and a sibling fit
//! in one page; they ask for their locks without waiting and are skipped
//! when one is busy, so a delete never waits or deadlocks for a merge. The
//! page merged away goes to the free list.
//!
//! ## Limits
//! Keys are at most [`crate::MAX_KEY`] bytes. A value whose item would take
//! more than a third of a node goes out of line into pages of its own
//! (`crate::large_value`), up to [`crate::MAX_VALUE`] bytes.

pub mod check;
pub mod cursor;
mod delete;
mod insert;
pub mod node;

pub use delete::delete;
pub use insert::put;

use crate::error::Result;
use crate::large_value::{self, ValueRef};
use crate::meta::ROOT;
use crate::page::Page;
use crate::store::{Access, PageStore};
use node::{Node, Stored, MAX_LEVEL};

/// A leaf item's value, copied out of its page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owned {
    /// The value's bytes.
    Inline(Vec<u8>),
    /// Where a large value lives.
    Large(ValueRef),
}

impl Owned {
    fn of(stored: Stored<'_>) -> Owned {
        match stored {
            Stored::Inline(v) => Owned::Inline(v.to_vec()),
            Stored::Large(r) => Owned::Large(r),
        }
    }

    /// The value's bytes, a large one read from its pages.
    pub fn resolve<S: PageStore>(self, s: &mut S) -> Result<Vec<u8>> {
        match self {
            Owned::Inline(v) => Ok(v),
            Owned::Large(r) => large_value::read(s, &r),
        }
    }
}

/// Runs `f` on node `no`, locked for `access` and checked
/// ([`Node::parse`]); a page that is no node is corruption of it.
pub fn with_node<S: PageStore, R>(s: &mut S, no: u64, access: Access, f: impl FnOnce(&Node<'_>) -> R) -> Result<R> {
    let page = s.page(no, access)?;
    match Node::parse(page.bytes()) {
        Ok(node) => Ok(f(&node)),
        Err(detail) => Err(s.corrupt(no, detail.into())),
    }
}

/// Which leaf a descent looks for.
#[derive(Clone, Copy, Debug)]
pub enum Target<'k> {
    /// The leaf whose range holds this key.
    Key(&'k [u8]),
    /// The leaf whose range holds the keys just below this one.
    Below(&'k [u8]),
    /// The first leaf.
    First,
    /// The last leaf.
    Last,
}

/// Where a descent ended.
#[derive(Clone, Debug)]
pub struct Descent {
    /// Each branch from the root down, with the child taken.
    pub path: Vec<(u64, usize)>,
    /// The leaf.
    pub leaf: u64,
    /// The leaf's low fence: the separator on its left, `None` for the
    /// first leaf.
    pub low: Option<Vec<u8>>,
}

/// Descends from the root to the leaf `target` names, taking S on the
/// branches and `leaf_access` on the leaf. A reading descent lets the
/// branches' S locks go once it holds the leaf; a writing one keeps them
/// for a split to convert, until [`release_path`].
pub fn descend<S: PageStore>(s: &mut S, target: Target<'_>, leaf_access: Access) -> Result<Descent> {
    let d = descend_locked(s, target, leaf_access)?;
    if leaf_access == Access::Read {
        release_path(s, &d);
    }
    Ok(d)
}

/// Lets the S locks on the branches of `d`'s path go, those a split or a
/// merge did not convert to X (see the module docs: leaf locks cover what
/// was read).
pub fn release_path<S: PageStore>(s: &mut S, d: &Descent) {
    for &(no, _) in &d.path {
        s.release_read(no);
    }
}

fn descend_locked<S: PageStore>(s: &mut S, target: Target<'_>, leaf_access: Access) -> Result<Descent> {
    let mut no = ROOT;
    let mut access = Access::Read;
    let mut path = Vec::new();
    let mut low: Option<Vec<u8>> = None;
    let mut above: Option<u16> = None;
    for _ in 0..=MAX_LEVEL + 1 {
        let (level, step) = with_node(s, no, access, |n| {
            if n.is_leaf() {
                return (0, None);
            }
            let j = match target {
                Target::Key(k) => n.route(k),
                Target::Below(k) => n.route_below(k),
                Target::First => 0,
                Target::Last => n.count(),
            };
            let fence = (j > 0).then(|| n.key(j - 1).to_vec());
            (n.level(), Some((j, n.child(j), fence)))
        })?;
        if above.is_some_and(|a| a != level + 1) {
            return Err(s.corrupt(no, format!("a node of level {level} under one of level {above:?}")));
        }
        let Some((j, child, fence)) = step else {
            if leaf_access == Access::Write && access == Access::Read {
                // The root is the only leaf: its S becomes X.
                s.page(no, Access::Write)?;
            }
            return Ok(Descent { path, leaf: no, low });
        };
        if fence.is_some() {
            low = fence;
        }
        path.push((no, j));
        above = Some(level);
        access = if level == 1 { leaf_access } else { Access::Read };
        no = child;
    }
    Err(s.corrupt(no, "the tree is deeper than any tree can be".into()))
}

/// The value of `key`.
pub fn get<S: PageStore>(s: &mut S, key: &[u8]) -> Result<Option<Vec<u8>>> {
    get_as(s, key, Access::Read)
}

/// [`get`] with `key`'s leaf locked for `access`: `Write` takes it X at
/// once, as a change of the key will (a read for update).
pub fn get_as<S: PageStore>(s: &mut S, key: &[u8], access: Access) -> Result<Option<Vec<u8>>> {
    let d = descend(s, Target::Key(key), access)?;
    if access == Access::Write {
        // Nothing changes the tree's shape here: the branches' S locks go
        // as a reader's do.
        release_path(s, &d);
    }
    let found = with_node(s, d.leaf, access, |n| n.search(key).ok().map(|i| Owned::of(n.value(i))))?;
    found.map(|v| v.resolve(s)).transpose()
}

/// Makes `page` the root of an empty tree: an empty leaf.
pub fn init_root(page: &mut Page) {
    node::init(page, 0, 0);
    page.set_next(0);
}

#[cfg(test)]
mod tests;
