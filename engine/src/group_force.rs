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
//! A round's leader waits a little for more commits when the round before
//! it carried several (`GroupForce::gather`): the committers of the round
//! just ended come back after a transaction's work, and without the wait
//! a busy node settles into two half-size rounds taking turns. A lone
//! committer never waits.
//!
//! A failed round fails every commit in it, and every later one: a failed
//! sync is never retried, and the node stops (see [`crate::txn`]).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use wal::io::{Io, IoFile, Stage, WriteOp};
use wal::{Followed, Log, Lsn};

use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::page::Page;

/// One commit waiting for its round: its intent and its sealed pages.
struct Entry {
    intent: Lsn,
    pages: Vec<(Arc<DataFile>, Page)>,
}

#[derive(Default)]
struct State {
    /// Commits for the next round.
    queue: Vec<Entry>,
    /// A round is under way.
    leading: bool,
    /// The number the next round will have; rounds run one at a time, in
    /// order, so round `r` is done once `finished > r`.
    next_round: u64,
    finished: u64,
    failed: Option<String>,
    /// Commits in the last round.
    last_round: usize,
    /// The leader is gathering commits for its round.
    gathering: bool,
}

/// See the module docs.
#[derive(Default)]
pub struct GroupForce {
    state: Mutex<State>,
    done: Condvar,
    /// A commit joined the queue while the leader gathers.
    arrived: Condvar,
}

impl GroupForce {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the log durable up to `intent`, then `pages` (sealed, stamped
    /// with that intent) durable; returns once both are.
    pub fn commit(&self, io: &Io, log: &Log, intent: Lsn, pages: Vec<(Arc<DataFile>, Page)>) -> Result<()> {
        let mut s = self.lock();
        let mine = s.next_round;
        s.queue.push(Entry { intent, pages });
        if s.gathering {
            self.arrived.notify_one();
        }
        loop {
            if let Some(why) = &s.failed {
                return Err(Error::Stopped(format!("an earlier commit round failed: {why}")));
            }
            if s.finished > mine {
                return Ok(());
            }
            if s.leading {
                s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // No round under way, and this commit's is not done: it is the
            // next one, and this committer leads it.
            s.leading = true;
            if s.last_round > 1 {
                s = self.gather(s);
            }
            let round = s.next_round;
            s.next_round += 1;
            let entries = std::mem::take(&mut s.queue);
            drop(s);
            let outcome = run_round(io, log, &entries);
            s = self.lock();
            s.leading = false;
            s.last_round = entries.len();
            match &outcome {
                Ok(()) => s.finished = round + 1,
                Err(e) => s.failed = Some(e.to_string()),
            }
            self.done.notify_all();
            outcome?;
        }
    }

    /// Lets the committers of the round just finished join this one: they
    /// come back within a transaction's work, and a round pays its flush
    /// and its sync once whatever its size. Waits while commits keep
    /// arriving, a step at a time, up to a bound.
    fn gather<'a>(&'a self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let deadline = std::time::Instant::now() + MAX_GATHER;
        s.gathering = true;
        loop {
            let before = s.queue.len();
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            s = self
                .arrived
                .wait_timeout(s, GATHER_STEP.min(deadline - now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if s.queue.len() == before {
                break;
            }
        }
        s.gathering = false;
        s
    }
}

/// How long a round's leader waits for one more commit to join.
const GATHER_STEP: std::time::Duration = std::time::Duration::from_micros(40);
/// The longest a round's leader gathers.
const MAX_GATHER: std::time::Duration = std::time::Duration::from_micros(300);

/// The log durable up to the round's last intent, then every page of the
/// round written and its files synced.
fn run_round(io: &Io, log: &Log, entries: &[Entry]) -> Result<()> {
    let Some(last) = entries.iter().map(|e| e.intent).max() else {
        return Ok(());
    };
    let mut pages: Vec<&(Arc<DataFile>, Page)> = entries.iter().flat_map(|e| &e.pages).collect();
    // In file and page order: neighbours in one file are written in order.
    pages.sort_unstable_by_key(|(f, p)| (f.file_id, p.page_no()));
    let writes: Vec<WriteOp<'_>> = pages.iter().map(|(f, p)| f.write_op(p)).collect();
    let mut files: Vec<&Arc<DataFile>> = pages.iter().map(|(f, _)| f).collect();
    files.dedup_by_key(|f| f.file_id);
    let syncs: Vec<&IoFile> = files.iter().map(|f| f.io_file()).collect();
    let stages = [Stage {
        writes: &writes,
        sync: &syncs,
    }];
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
    use crate::datafile::DataFiles;
    use crate::page::Kind;

    const PS: usize = 4096;

    struct Fixture {
        _dir: tempfile::TempDir,
        fi: Arc<FaultInjector>,
        io: Io,
        log: Log,
        file: Arc<DataFile>,
        gf: GroupForce,
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
        }
    }

    impl Fixture {
        /// Commit `n`: an intent in the log and page `n` stamped with it.
        fn commit(&self, n: u64) -> Result<()> {
            let intent = self
                .log
                .append(RecordMeta::txn(n + 1, None), &RecordBody::Commit)
                .unwrap();
            let mut page = Page::new(PS, Kind::Bucket, 7, n);
            assert!(page.insert(b"k", &n.to_le_bytes()));
            page.set_stamp(1, intent.0);
            page.seal();
            self.gf
                .commit(&self.io, &self.log, intent, vec![(self.file.clone(), page)])
        }

        fn on_disk(&self, n: u64) -> Option<u64> {
            let page = self.file.read_page(&self.io, n).ok()?;
            page.find(b"k").map(|(_, v)| u64::from_le_bytes(v.try_into().unwrap()))
        }

        fn queued(&self) -> usize {
            self.gf.lock().queue.len()
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

    #[test]
    fn commits_that_arrive_during_a_round_share_the_next_one() {
        let fx = &fixture();
        fx.fi.stall_writes(".tbl");
        std::thread::scope(|s| {
            let first = s.spawn(|| fx.commit(0));
            until("the first round to reach its page write", || fx.fi.stalled() > 0);
            let syncs_before = fx.fi.count(OpKind::Sync);
            let rest: Vec<_> = (1..=6).map(|n| s.spawn(move || fx.commit(n))).collect();
            until("six commits to queue behind the round", || fx.queued() == 6);
            fx.fi.release_stalled();
            first.join().unwrap().unwrap();
            for r in rest {
                r.join().unwrap().unwrap();
            }
            // The first round's data sync, then one round for the six: one
            // log flush and one data sync.
            assert_eq!(fx.fi.count(OpKind::Sync) - syncs_before, 3);
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
        fx.fi.stall_writes(".tbl");
        std::thread::scope(|s| {
            let first = s.spawn(|| fx.commit(1));
            until("the first round to reach its page write", || fx.fi.stalled() > 0);
            let rest: Vec<_> = (2..=4).map(|n| s.spawn(move || fx.commit(n))).collect();
            until("three commits to queue behind the round", || fx.queued() == 3);
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
}
