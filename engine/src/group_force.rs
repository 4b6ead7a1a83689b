//! Group FORCE: concurrent commits share one log flush and one data sync
//! per round, in one submission.
//!
//! A committing transaction hands its commit intent's LSN and sealed copies
//! of its pages to [`GroupForce::commit`]. Commits are gathered in rounds.
//! A committer that finds no round under way leads one at once with every
//! commit waiting; one that finds a round under way waits for it, and then
//! either finds its commit done by the next round's leader or leads that
//! round itself. A round makes the log durable up to its last intent, then
//! writes every page of its commits and syncs their files: one staged
//! submission ([`wal::Log::wait_durable_then`]) when the round's last intent
//! is the log's last record and no flush is under way, else a log flush
//! followed by one staged write-and-sync ([`wal::io::Io::write_stages`]).
//! Either way no page is written before the undo records and the intent
//! that cover it are durable (the WAL rule), and a commit returns only once
//! its pages are durable.
//!
//! Why rounds rather than a log group commit followed by a data group sync:
//! each of those batches only the commits that arrived while the one before
//! it ran, and a commit waits for both in turn, so under load most commits
//! paid for a flush and a sync of their own. On a disk whose cache flush is
//! the cost of a commit, that halves what one device flush carries. A round
//! carries every commit that arrived during the previous round, and costs
//! one log flush and one data sync whatever its size; a lone commit costs
//! what it did before (one submission with both).
//!
//! Who leads a round, who waits and who is woken is the concurrency core in
//! [`crate::commit_rounds`] (free of I/O, and loom-checked); this file adds
//! what a round does.
//!
//! A round's leader waits a little for more commits when the round before
//! it carried several (`Rounds::gather`): the committers of the round
//! just ended come back after a transaction's work, and without the wait
//! a busy node settles into two half-size rounds taking turns. The wait
//! ends as soon as the round holds a commit from every thread that
//! committed in the last few rounds (nobody else is likely to come, and
//! waiting out a last step left both cores idle for a tenth of each round
//! at eight committers), after a step with no new commit, or at a bound.
//! Committers wake the gathering leader only when the round is full, not
//! at each arrival. After a round of one commit nobody waits, so a node
//! committing one transaction at a time never does; the first commit after
//! a busy round waits one step if nobody joins.
//!
//! A failed round fails every commit in it, and every later one: a failed
//! sync is never retried, and the node stops (see [`crate::txn`]). Commits
//! still queued then fail at once and drop their files, as they do when
//! the node stops for another reason ([`GroupForce::close`]). The round's
//! leader asks, right before the round writes, whether the node may still
//! write (running, lease held): a commit can wait a round or two after its
//! own check, and no page is written once the node must stop.
//!
//! With redo on (`crate::redo`), the round also numbers its commits and
//! writes one redo record each, as a stage between the log and the pages:
//! the redo is durable before any page, and reported committed once the
//! pages are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wal::io::{Io, Stage, WriteOp};
use wal::{Followed, Log, Lsn};

use crate::aligned::AlignedPages;
use crate::commit_rounds::Rounds;
pub use crate::datafile::Forced;
use crate::error::Result;
use crate::pool::BufferPool;
use crate::redo::RedoWriter;

/// One commit waiting for its round: its intent and its sealed pages, and
/// where the round puts its commit sequence number (with redo on).
struct Entry {
    intent: Lsn,
    pages: Vec<Forced>,
    seq: Arc<AtomicU64>,
}

/// See the module docs. The rounds themselves — who leads, who waits, who
/// is woken, what a failure does — are [`Rounds`]; this adds what a round
/// does.
#[derive(Default)]
pub struct GroupForce {
    rounds: Rounds<Entry>,
    /// Page-aligned memory the round's leader copies the round's pages into
    /// and writes them from: direct I/O takes aligned buffers only
    /// (`crate::datafile`). One round runs at a time, so one buffer, grown
    /// to the largest round, serves them all.
    staging: std::sync::Mutex<Option<AlignedPages>>,
    /// The node's redo, when it writes one (`crate::redo`).
    redo: Option<RedoWriter>,
}

impl GroupForce {
    /// Rounds that also write `redo`, when given.
    pub(crate) fn new(redo: Option<RedoWriter>) -> GroupForce {
        GroupForce {
            redo,
            ..GroupForce::default()
        }
    }

    /// The node's redo writer, if it writes redo.
    pub(crate) fn redo(&self) -> Option<&RedoWriter> {
        self.redo.as_ref()
    }

    /// Makes the log durable up to `intent`, then `pages` (sealed, stamped
    /// with that intent) durable; returns once both are. `may_write` is
    /// asked by the round's leader right before the round writes anything
    /// (the node still running, its lease still held): a commit may wait a
    /// round or two, and none of its pages may be written once the node
    /// must stop writing. Returns the commit's sequence number in the redo
    /// (0 without redo).
    pub fn commit(
        &self,
        io: &Io,
        log: &Log,
        intent: Lsn,
        pages: Vec<Forced>,
        pool: &BufferPool,
        may_write: &dyn Fn() -> Result<()>,
    ) -> Result<u64> {
        // The leader waits for the round anyway: it runs its I/O itself
        // where the I/O layer lets it, sparing a hand-off each way.
        let run = |entries: &[Entry]| {
            may_write().and_then(|()| {
                let mut staging = crate::sync::lock(&self.staging);
                let redo = self.redo.as_ref();
                let done = wal::io::on_this_thread(|| run_round(io, log, entries, &mut staging, pool, redo));
                // A round of a transaction that wrote a large value leaves
                // no buffer of its size behind.
                if staging.as_ref().is_some_and(|s| s.capacity() > MAX_KEPT_STAGING) {
                    *staging = None;
                }
                done
            })
        };
        let seq = Arc::new(AtomicU64::new(0));
        self.rounds.submit(
            Entry {
                intent,
                pages,
                seq: seq.clone(),
            },
            &run,
        )?;
        Ok(seq.load(Ordering::Acquire))
    }

    /// The node stopped: no round runs any more, and the commits waiting
    /// for one fail, letting go of their files (and with them the node's
    /// fencing locks, `crate::fence`).
    pub fn close(&self, why: &str) {
        self.rounds.close(why);
    }
}

/// Pages of staging memory kept between rounds (16 MiB of 4 KiB pages).
const MAX_KEPT_STAGING: usize = 4096;

/// The log durable up to the round's last intent, then every page of the
/// round written (from `staging`, page-aligned) and its files synced; then
/// the written pages are the node's cached copies (`pool`). With `redo`,
/// the round's redo is written and synced between the log and the pages.
fn run_round(
    io: &Io,
    log: &Log,
    entries: &[Entry],
    staging: &mut Option<AlignedPages>,
    pool: &BufferPool,
    redo: Option<&RedoWriter>,
) -> Result<()> {
    let Some(last) = entries.iter().map(|e| e.intent).max() else {
        return Ok(());
    };
    let mut pages: Vec<&Forced> = entries.iter().flat_map(|e| &e.pages).collect();
    // In file and page order: neighbours in one file are written in order.
    pages.sort_unstable_by_key(|f| (f.file.file_id, f.page.page_no()));
    let page_size = pages.first().map_or(4096, |f| f.page.bytes().len());
    let staging = match staging {
        Some(s) => {
            s.reserve(pages.len())?;
            s
        }
        none => none.insert(AlignedPages::new(pages.len().next_power_of_two(), page_size)?),
    };
    for (slot, f) in staging.pages_mut(pages.len()).zip(&pages) {
        slot.copy_from_slice(f.page.bytes());
    }
    let pending = redo.map(|r| r.round(entries.iter().map(|e| (e.intent, e.pages.as_slice()))));
    let redo_stage = redo.zip(pending.as_ref());
    let written = write_staged(io, log, last, &pages, staging, redo_stage);
    if let (Ok(()), Some((r, p))) = (&written, redo_stage) {
        r.ended(p);
        for (i, e) in entries.iter().enumerate() {
            e.seq.store(p.first_seq + i as u64, Ordering::Release);
        }
    }
    if written.is_ok() {
        for f in pages.iter().filter(|f| f.cache) {
            pool.install(f.file.file_id, f.page.page_no(), f.page.bytes());
        }
    }
    written
}

/// Writes and syncs the round's `pages`, staged in `staging`, once the log
/// is durable up to `last` and, with `redo`, the round's redo after it.
fn write_staged(
    io: &Io,
    log: &Log,
    last: Lsn,
    pages: &[&Forced],
    staging: &AlignedPages,
    redo: Option<(&RedoWriter, &crate::redo::PendingRound)>,
) -> Result<()> {
    let writes: Vec<WriteOp<'_>> = pages
        .iter()
        .enumerate()
        .map(|(i, f)| f.file.write_op(f.page.page_no(), staging.page(i)))
        .collect();
    let syncs = wal::io::distinct_files(&writes);
    let redo_write = redo.map(|(r, p)| [r.write_op(p)]);
    let redo_sync = redo.map(|(r, _)| [r.file()]);
    let mut stages = Vec::with_capacity(2);
    if let (Some(w), Some(s)) = (&redo_write, &redo_sync) {
        stages.push(Stage { writes: w, sync: s });
    }
    stages.push(Stage {
        writes: &writes,
        sync: &syncs,
    });
    match log.wait_durable_then(last, &stages)? {
        Followed::Done => Ok(()),
        Followed::Failed(e) => Err(e.into()),
        Followed::NotRun => {
            io.write_stages(&stages).map_err(wal::io::IoError::from)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use wal::io::fault::FaultInjector;
    use wal::io::OpKind;
    use wal::{LogConfig, RecordBody, RecordMeta};

    use super::*;
    use crate::datafile::{DataFile, DataFiles};
    use crate::error::Error;
    use crate::page::Kind;
    use crate::page::Page;

    const PS: usize = 4096;

    struct Fixture {
        _dir: tempfile::TempDir,
        fi: Arc<FaultInjector>,
        io: Io,
        log: Log,
        file: Arc<DataFile>,
        gf: GroupForce,
        pool: BufferPool,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fi = FaultInjector::new(Io::fallback());
        let io = fi.io();
        let log = Log::open(&dir.path().join("log"), LogConfig::new(1, io.clone())).unwrap();
        let files = DataFiles::new(dir.path().join("data"), PS, None);
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let file = files.get(7, true).unwrap();
        Fixture {
            _dir: dir,
            fi,
            io,
            log,
            file,
            gf: GroupForce::default(),
            pool: BufferPool::new(16, PS, false).unwrap(),
        }
    }

    impl Fixture {
        /// Commit `n`: an intent in the log and page `n` stamped with it.
        fn commit(&self, n: u64) -> Result<u64> {
            self.commit_if(n, &|| Ok(()))
        }

        fn commit_if(&self, n: u64, may_write: &dyn Fn() -> Result<()>) -> Result<u64> {
            let intent = self
                .log
                .append(RecordMeta::txn(n + 1, None), &RecordBody::Commit)
                .unwrap();
            let mut page = Page::new(PS, Kind::Bucket, 7, n);
            assert!(page.insert(b"k", &n.to_le_bytes()));
            page.set_stamp(crate::page::Stamp {
                node: 1,
                log: 0,
                lsn: intent.0,
            });
            page.seal();
            self.gf.commit(
                &self.io,
                &self.log,
                intent,
                vec![Forced {
                    file: self.file.clone(),
                    page,
                    cache: true,
                }],
                &self.pool,
                may_write,
            )
        }

        fn on_disk(&self, n: u64) -> Option<u64> {
            let page = self.file.read_page(&self.io, n).ok()?;
            page.find(b"k").map(|(_, v)| u64::from_le_bytes(v.try_into().unwrap()))
        }

        fn queued(&self) -> usize {
            self.gf.rounds.queued()
        }
    }

    /// Waits (bounded) for `what` to hold.
    fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Starts commit `first` with its round stalled at the page write, then
    /// `behind` more commits, queued behind that round; returns the
    /// threads of the first and of the others.
    fn behind_a_stalled_round<'scope>(
        fx: &'scope Fixture,
        s: &'scope std::thread::Scope<'scope, '_>,
        first: u64,
        behind: u64,
    ) -> (Committer<'scope>, Vec<Committer<'scope>>) {
        fx.fi.stall_writes(".tbl");
        let lead = s.spawn(move || fx.commit(first));
        until("the first round to reach its page write", || fx.fi.stalled() > 0);
        let rest = (first + 1..=first + behind)
            .map(|n| s.spawn(move || fx.commit(n)))
            .collect();
        until("the commits to queue behind the round", || {
            fx.queued() == behind as usize
        });
        (lead, rest)
    }

    type Committer<'scope> = std::thread::ScopedJoinHandle<'scope, Result<u64>>;

    #[test]
    fn commits_that_arrive_during_a_round_share_the_next_one() {
        let fx = &fixture();
        std::thread::scope(|s| {
            let syncs_before = fx.fi.count(OpKind::Sync);
            let (first, rest) = behind_a_stalled_round(fx, s, 0, 6);
            fx.fi.release_stalled();
            first.join().unwrap().unwrap();
            for r in rest {
                r.join().unwrap().unwrap();
            }
            // The first round's log flush and data sync, then one round for
            // the six: one log flush and one data sync.
            assert_eq!(fx.fi.count(OpKind::Sync) - syncs_before, 4);
        });
        for n in 0..=6 {
            assert_eq!(fx.on_disk(n), Some(n), "page {n}");
        }
        assert!(fx.log.durable_lsn() >= fx.log.next_lsn(), "every intent is durable");
    }

    #[test]
    fn a_failed_round_fails_every_commit_in_it_and_every_later_one() {
        let fx = &fixture();
        fx.commit(0).unwrap();
        std::thread::scope(|s| {
            let (first, rest) = behind_a_stalled_round(fx, s, 1, 3);
            // The first round's data sync and the next round's log flush go
            // through; the next round's data sync fails.
            fx.fi.fail_nth(OpKind::Sync, 3, libc::EIO);
            fx.fi.release_stalled();
            first.join().unwrap().unwrap();
            for r in rest {
                assert!(r.join().unwrap().is_err(), "a commit of the failed round succeeded");
            }
        });
        assert!(
            matches!(fx.commit(5), Err(Error::Stopped(_))),
            "a failed sync is never retried"
        );
        assert_eq!(fx.on_disk(1), Some(1));
    }

    #[test]
    fn a_round_whose_node_may_no_longer_write_writes_nothing() {
        let fx = &fixture();
        let writes = fx.fi.count(OpKind::Write);
        let refused = fx.commit_if(0, &|| Err(Error::LeaseLost));
        assert!(matches!(refused, Err(Error::LeaseLost)), "{refused:?}");
        assert_eq!(fx.fi.count(OpKind::Write), writes, "nothing written, not even the log");
        assert_eq!(fx.on_disk(0), None);
        assert!(fx.commit(1).is_err(), "a node that may not write stays refused");
    }

    #[test]
    fn closing_fails_the_queued_commits_at_once_and_lets_go_of_their_files() {
        let fx = &fixture();
        std::thread::scope(|s| {
            let (first, rest) = behind_a_stalled_round(fx, s, 0, 2);
            fx.gf.close("test");
            for r in rest {
                assert!(r.join().unwrap().is_err(), "a queued commit survived the close");
            }
            // The fixture's handle and the stalled round's page: the queued
            // commits let go of theirs.
            assert_eq!(Arc::strong_count(&fx.file), 2);
            fx.fi.release_stalled();
            // The round under way was durable before anything failed.
            first.join().unwrap().unwrap();
        });
        assert_eq!(fx.on_disk(0), Some(0));
        assert!(fx.commit(3).is_err(), "a closed group force takes no commit");
    }
}
