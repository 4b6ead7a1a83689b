//! A transaction's failure scopes: the stack of nested scopes open in it,
//! the token each record it logs carries, and what a failed scope must put
//! back.
//!
//! ## Scope tokens
//! Every log record carries a failure scope token (`wal`'s record header,
//! bytes 32..36). The engine defines it here:
//!
//! | bits | meaning |
//! |---|---|
//! | 0..=30 | the scope's serial number in its transaction: 0 is the transaction itself, its nested scopes (savepoints, [`crate::Transaction::scope`]) are numbered 1, 2, … in the order they open |
//! | 31 | [`THREAD_SCOPE`]: the scope's work runs on a thread of its own ([`crate::Transaction::scope_on_thread`]), whose death is the scope's failure |
//!
//! The node is the scope around every transaction of its log; a peer
//! recovers it when it dies. A record belongs to the innermost scope open
//! when it was logged, and to every scope around that one: a transaction
//! logs from one thread at a time, so a scope's records are exactly those
//! its transaction logged after the scope began — the stretch of the
//! transaction's backward chain down to the scope's start
//! ([`Level::start`]). That is what the supervisor reads back when a scope
//! fails (`crate::agent::supervisor`).
//!
//! This file holds bookkeeping only: it logs nothing and calls no agent.

use std::collections::HashMap;

use wal::{Lsn, ScopeToken};

use crate::error::{Error, Result};
use crate::page::Page;

/// Bit 31 of a scope token: the scope runs on a thread of its own.
pub const THREAD_SCOPE: ScopeToken = 1 << 31;

/// The most nested scopes one transaction may open: the serial numbers a
/// token holds.
pub const MAX_SCOPES: u32 = THREAD_SCOPE - 1;

/// A page of a table: (file id, page number).
pub(crate) type PageKey = (u32, u64);

/// A page as a scope first changed it; `None`: as a page never written
/// (a page the transaction took fresh, `crate::freelist`).
pub(crate) type ScopeImage = Option<Page>;

/// One open scope.
pub(crate) struct Level {
    /// Its token ([`THREAD_SCOPE`] included).
    pub(crate) token: ScopeToken,
    /// The transaction's last record when the scope began (`None`: nothing
    /// logged yet). The scope's records are those after it.
    pub(crate) start: Option<Lsn>,
    /// The image of each page before the scope first changed it (nested
    /// scopes that ended well fold theirs in).
    images: HashMap<PageKey, ScopeImage>,
    /// Agent records logged in this scope (nested scopes that ended well
    /// add theirs): a failure reads the log back only when there are some.
    agent_work: u32,
}

/// See the module docs.
pub(crate) struct Scopes {
    /// `levels[0]` is the transaction itself; the last is the innermost.
    levels: Vec<Level>,
    /// The last serial number handed out.
    serial: u32,
}

impl Scopes {
    /// A transaction's scopes when it begins: only itself (token 0).
    pub(crate) fn new() -> Scopes {
        Scopes {
            levels: vec![Level {
                token: 0,
                start: None,
                images: HashMap::new(),
                agent_work: 0,
            }],
            serial: 0,
        }
    }

    /// How deep the innermost open scope lies (0: the transaction itself).
    pub(crate) fn depth(&self) -> u32 {
        (self.levels.len() - 1) as u32
    }

    /// The token the transaction's next record carries.
    pub(crate) fn token(&self) -> ScopeToken {
        self.innermost().token
    }

    /// The open scope at `depth`, if there is one.
    pub(crate) fn level(&self, depth: u32) -> Option<&Level> {
        self.levels.get(depth as usize)
    }

    fn innermost(&self) -> &Level {
        self.levels.last().expect("the transaction's own scope is never closed")
    }

    /// Opens a scope inside the innermost one, beginning after `start`;
    /// returns its depth and token.
    pub(crate) fn open(&mut self, start: Option<Lsn>, on_thread: bool) -> Result<(u32, ScopeToken)> {
        if self.serial >= MAX_SCOPES {
            return Err(Error::TooManyScopes { max: MAX_SCOPES });
        }
        self.serial += 1;
        let token = self.serial | if on_thread { THREAD_SCOPE } else { 0 };
        self.levels.push(Level {
            token,
            start,
            images: HashMap::new(),
            agent_work: 0,
        });
        Ok((self.depth(), token))
    }

    /// Whether a change to page `key` now must give the innermost scope
    /// its image ([`Self::remember`]): not when it has one, nor at the
    /// transaction's own level, which keeps none (nothing rolls back to it
    /// in memory: a rollback drops every page).
    pub(crate) fn needs_image(&self, key: PageKey) -> bool {
        self.levels.len() > 1 && !self.innermost().images.contains_key(&key)
    }

    /// Keeps `before`, the image of page `key` before a change, if the
    /// innermost scope needs it ([`Self::needs_image`]).
    pub(crate) fn remember(&mut self, key: PageKey, before: ScopeImage) {
        if self.levels.len() > 1 {
            let level = self.levels.last_mut().expect("checked above");
            level.images.entry(key).or_insert(before);
        }
    }

    /// Opens a level for one call that changes rows (`crate::txn`), so a
    /// failed call can be put back alone: no scope of its own in the log —
    /// its records carry the enclosing scope's token, and no serial number
    /// is spent.
    pub(crate) fn open_statement(&mut self, start: Option<Lsn>) -> u32 {
        let token = self.token();
        self.levels.push(Level {
            token,
            start,
            images: HashMap::new(),
            agent_work: 0,
        });
        self.depth()
    }

    /// Counts an agent record logged in the innermost scope.
    pub(crate) fn note_agent_work(&mut self) {
        let level = self
            .levels
            .last_mut()
            .expect("the transaction's own scope is never closed");
        level.agent_work += 1;
    }

    /// Agent records logged in the scope at `depth` and the scopes inside it.
    pub(crate) fn agent_work_from(&self, depth: u32) -> u32 {
        self.levels.iter().skip(depth as usize).map(|l| l.agent_work).sum()
    }

    /// The scope at `depth` ended well: it and the scopes inside it fold
    /// into the scope around it, which keeps its own older images.
    pub(crate) fn close(&mut self, depth: u32) {
        debug_assert!(depth > 0, "the transaction's own scope is not closed this way");
        while self.levels.len() > depth as usize {
            let inner = self.levels.pop().expect("more levels than depth");
            let keeps_images = self.levels.len() > 1;
            let outer = self
                .levels
                .last_mut()
                .expect("depth > 0 leaves the transaction's scope");
            outer.agent_work += inner.agent_work;
            if keeps_images {
                for (key, image) in inner.images {
                    outer.images.entry(key).or_insert(image);
                }
            }
        }
    }

    /// The scope at `depth` failed: drops it and the scopes inside it, and
    /// returns the image of every page they changed as it was before the
    /// scope's first change to it. When `reopen`, the scope opens again,
    /// empty, with the same token and start (a savepoint stays valid after
    /// a rollback to it).
    pub(crate) fn fail(&mut self, depth: u32, reopen: bool) -> HashMap<PageKey, ScopeImage> {
        debug_assert!(depth > 0, "the transaction's own scope fails by rolling back");
        let mut restored: HashMap<PageKey, ScopeImage> = HashMap::new();
        let dropped: Vec<Level> = self.levels.drain(depth as usize..).collect();
        let (token, start) = (dropped[0].token, dropped[0].start);
        // Outermost first: its image is the oldest of each page.
        for level in dropped {
            for (key, image) in level.images {
                restored.entry(key).or_insert(image);
            }
        }
        if reopen {
            self.levels.push(Level {
                token,
                start,
                images: HashMap::new(),
                agent_work: 0,
            });
        }
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Kind;

    fn page(n: u64, fill: u8) -> Page {
        let mut p = Page::new(4096, Kind::Bucket, 1, n);
        assert!(p.insert(b"k", &[fill]));
        p
    }

    #[test]
    fn tokens_number_scopes_in_the_order_they_open_and_mark_threads() {
        let mut s = Scopes::new();
        assert_eq!(s.token(), 0);
        assert_eq!(s.open(None, false).unwrap(), (1, 1));
        assert_eq!(s.open(Some(Lsn(8)), true).unwrap(), (2, 2 | THREAD_SCOPE));
        s.close(2);
        assert_eq!(s.token(), 1);
        // A new scope at the same depth has a token of its own.
        assert_eq!(s.open(Some(Lsn(16)), false).unwrap(), (2, 3));
    }

    #[test]
    fn a_failed_scope_gives_back_the_oldest_image_of_each_page_nested_ones_included() {
        let mut s = Scopes::new();
        s.open(None, false).unwrap();
        s.remember((1, 0), Some(page(0, 1)));
        s.open(None, false).unwrap();
        s.remember((1, 0), Some(page(0, 2)));
        s.remember((1, 1), Some(page(1, 3)));
        s.note_agent_work();
        assert_eq!(s.agent_work_from(1), 1);
        let back = s.fail(1, false);
        assert_eq!(s.depth(), 0);
        assert_eq!(back[&(1, 0)].as_ref().unwrap().find(b"k").unwrap().1, [1]);
        assert_eq!(back[&(1, 1)].as_ref().unwrap().find(b"k").unwrap().1, [3]);
        assert_eq!(s.agent_work_from(0), 0, "the failed scopes' work went with them");
    }

    #[test]
    fn a_scope_that_ends_well_folds_into_the_one_around_it() {
        let mut s = Scopes::new();
        s.open(None, false).unwrap();
        s.remember((1, 0), Some(page(0, 1)));
        s.open(None, false).unwrap();
        s.remember((1, 0), Some(page(0, 2)));
        s.remember((1, 1), Some(page(1, 3)));
        s.note_agent_work();
        s.close(2);
        assert_eq!(s.agent_work_from(1), 1);
        let back = s.fail(1, true);
        assert_eq!(
            back[&(1, 0)].as_ref().unwrap().find(b"k").unwrap().1,
            [1],
            "the outer scope's image is older"
        );
        assert_eq!(back[&(1, 1)].as_ref().unwrap().find(b"k").unwrap().1, [3]);
        assert_eq!((s.depth(), s.token()), (1, 1), "reopened with its token");
    }

    #[test]
    fn the_serial_numbers_are_bounded() {
        let mut s = Scopes::new();
        s.serial = MAX_SCOPES - 1;
        s.open(None, false).unwrap();
        assert!(matches!(s.open(None, false), Err(Error::TooManyScopes { .. })));
    }
}
