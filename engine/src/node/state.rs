//! The state every handle, transaction, background thread and recovery of
//! one node shares: its coordinator client, private log, data files, commit
//! rounds, the catalog as last read, the active transactions, whether it
//! stopped, and the peer recoveries it ran.
//!
//! This is the engine's hub, so it depends on no part of the engine that
//! acts on it (transactions, recovery, the background threads): they take
//! it, never the other way round.
//!
//! A node that loses its lease stops (a dropped coordinator connection is
//! ridden through while the lease holds: see `lockmgr::client`): every
//! later call fails with [`Error::LeaseLost`] or [`Error::Stopped`], and no
//! page is written. So does a node whose commit failed to write or sync: the
//! device's state is unknown, and its own restart (or a peer) recovers it.
//! A stopped node lets go of its log and data files as soon as its last
//! write has completed, so a peer can recover it while the process lives on
//! (see [`crate::fence`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use lockmgr::{Client, ClientError, Coordinator, LockMode, LockWait, ResourceId};
use wal::io::Io;
use wal::{Log, Lsn, TxnId, WalError};

use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::datafile::DataFiles;
use crate::error::{Error, Result};
use crate::group_force::GroupForce;
use crate::ledger::Ledger;
use crate::node::options::NodeOptions;
use crate::pool::BufferPool;
use crate::sync::lock;
use crate::timeline::Timeline;

/// A lock granted, with the resource's lock value block as the grant
/// carried it.
pub(crate) type Granted = (LockMode, Option<u128>);

/// A committed transaction on its way to the confirmer: its id, its
/// `Commit` record's LSN, and the value blocks to publish as its locks go.
pub(crate) type Confirm = (TxnId, Lsn, Vec<(ResourceId, u128)>);

/// Why a closed node's calls fail.
const CLOSED: &str = "the node was closed";

/// Why a node that lost its lease stopped.
pub(super) const LEASE_LOST: &str = "the coordinator lease was lost";

/// How many recovery timelines a node keeps for inspection.
pub const MAX_KEPT_RECOVERIES: usize = 64;

/// What identifies one version of the catalog file: it is replaced by a
/// rename on every change, which gives it a new inode and change time.
type CatalogStamp = (u64, i64, i64, u64);

/// See the module docs.
pub(crate) struct NodeState {
    pub(crate) cluster: Cluster,
    pub(crate) node_id: u32,
    /// The identity of the node's log, stamped on the pages its commits
    /// write (`crate::page::Stamp`).
    pub(crate) log_id: u32,
    pub(crate) io: Io,
    pub(crate) log: Log,
    pub(crate) client: Client,
    pub(crate) files: DataFiles,
    pub(crate) group_force: GroupForce,
    /// The node's cache of table pages (see `crate::pool`).
    pub(crate) pool: BufferPool,
    pub(crate) opts: NodeOptions,
    /// The catalog as last read, with the stamp of the file it came from.
    pub(super) catalog: Mutex<Option<(CatalogStamp, Arc<Catalog>)>>,
    pub(super) next_txn: AtomicU64,
    /// The transactions that logged something and have not ended, those
    /// on their way to the confirmer, and the last checkpoint.
    pub(super) ledger: Ledger,
    pub(super) stopped: Mutex<Option<String>>,
    /// How many peer recoveries this node ran, and the last
    /// [`MAX_KEPT_RECOVERIES`] of them.
    pub(super) recoveries: Mutex<(u64, VecDeque<Timeline>)>,
    /// Committed transactions whose `Commit` record is not yet known to be
    /// durable, on their way to the confirmer (`crate::node::confirmer`);
    /// the ledger counts them, and closing waits for none.
    pub(super) confirms: Sender<Confirm>,
    /// The pages committed transactions of this node wrote and still hold
    /// X-locked, each with the LSN of the `Commit` record whose durability
    /// lets the lock go: a request of this node for one of them makes the
    /// log durable up to that record at once, instead of waiting for the
    /// confirmer's patience to run out ([`NodeState::lock`]).
    pub(super) unconfirmed: DashMap<ResourceId, Lsn>,
    /// A checkpoint is under way ([`NodeState::maybe_checkpoint`]).
    pub(super) checkpointing: AtomicBool,
    /// The thread of the last checkpoint started, for the drop of the last
    /// handle to wait for ([`NodeState::join_checkpoint`]).
    pub(super) checkpoint_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The last handle was dropped ([`NodeState::wind_down`]).
    pub(super) winding_down: AtomicBool,
    /// What to do once the node has stopped for a lost lease: join again
    /// (`crate::node::rejoin`). Taken, so it runs once.
    pub(super) on_lease_lost: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The [`crate::Transaction`]s of the node not yet dropped.
    pub(crate) transactions: std::sync::atomic::AtomicUsize,
    /// The key the coordinator's log-access proofs check with (the cluster
    /// secret's): a peer recovery opens the failed node's log with it.
    pub(crate) log_key: wal::AccessKey,
    /// The coordinator this node runs in its own process, if it does.
    /// Shut down when the node closes (see [`NodeState::let_go`]).
    pub(super) coordinator: Mutex<Option<Coordinator>>,
    /// A file locked for the node (an embedded database's, `crate::database`),
    /// held until the node closes or everything above is dropped: declared
    /// last, dropped last.
    pub(super) held_lock: Mutex<Option<std::fs::File>>,
}

impl NodeState {
    /// `Ok` while the node runs; once it stopped, why.
    pub(crate) fn check_running(&self) -> Result<()> {
        match lock(&self.stopped).as_ref() {
            None => Ok(()),
            Some(why) => Err(Error::Stopped(why.clone())),
        }
    }

    /// Stops the node for good: nothing more is written, and the coordinator
    /// is told at once (by dropping the connection) so recovery can start.
    ///
    /// Then the node lets go of what fences it (see [`crate::fence`]), so a
    /// peer can recover it while this process lives on: the log is
    /// relinquished once no flush is in flight, and the data files are
    /// dropped — each file's fencing lock goes with its last user, so a
    /// commit still writing pages keeps it until its writes are done.
    pub(crate) fn stop(&self, why: &str) {
        {
            let mut s = lock(&self.stopped);
            if s.is_some() {
                return;
            }
            tracing::error!(node = self.node_id, why, "node stopped");
            *s = Some(why.to_string());
        }
        self.client.disconnect();
        self.log.relinquish();
        self.files.close();
        self.group_force.close(why);
    }

    /// Passes a log call's result on; a failed log (poisoned by an I/O
    /// error) stops the node, since nothing more can be made durable.
    pub(crate) fn logged<T>(&self, r: std::result::Result<T, WalError>) -> Result<T> {
        if let Err(e @ (WalError::Poisoned { .. } | WalError::Io(_))) = &r {
            self.stop(&format!("the log failed: {e}"));
        }
        Ok(r?)
    }

    /// The catalog as last read, without asking whether it changed since:
    /// a hint, to be confirmed with [`NodeState::catalog`] once a lock
    /// pins what was found in it. Read now if it never was.
    pub(crate) fn catalog_hint(&self) -> Result<Arc<Catalog>> {
        if let Some((_, c)) = lock(&self.catalog).as_ref() {
            return Ok(c.clone());
        }
        self.catalog()
    }

    /// The catalog, read again only when its file changed (one `stat`
    /// instead of a read per lookup).
    pub(crate) fn catalog(&self) -> Result<Arc<Catalog>> {
        use std::os::unix::fs::MetadataExt;
        let path = crate::catalog::catalog_path(self.files.dir());
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => (m.ino(), m.ctime(), m.ctime_nsec(), m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0, 0, 0),
            Err(e) => return Err(wal::io::IoError::new(wal::io::OpKind::Read, &path, None, e).into()),
        };
        let mut cached = lock(&self.catalog);
        if let Some((s, c)) = cached.as_ref() {
            if *s == stamp {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(Catalog::load(&self.io, self.files.dir())?);
        *cached = Some((stamp, c.clone()));
        Ok(c)
    }

    /// Several locks at once (one round trip).
    /// Transactions wait for live holders only: a page retained by a failed
    /// node is refused with [`Error::Retained`] at once (or the moment its
    /// holder fails), since waiting would hold this transaction's own locks
    /// for the length of a recovery; the caller retries instead.
    fn lock_wait(&self) -> LockWait {
        LockWait::WaitForLive(self.opts.lock_wait)
    }

    /// Locks `requests` for `txn` in one round trip; each grant with the
    /// resource's lock value block (see `crate::pool`).
    pub(crate) fn lock_many(&self, txn: TxnId, requests: &[(ResourceId, LockMode)]) -> Result<Vec<Granted>> {
        self.check_running()?;
        for &(resource, _) in requests {
            self.hasten_confirmation(resource)?;
        }
        self.client
            .lock_many_valued(txn, requests, self.lock_wait())
            .map_err(|e| self.client_error(e))
    }

    /// Locks `resource` for `txn`, the grant with the resource's lock value
    /// block.
    pub(crate) fn lock(&self, txn: TxnId, resource: ResourceId, mode: LockMode) -> Result<Granted> {
        self.check_running()?;
        self.hasten_confirmation(resource)?;
        self.client
            .lock_valued(txn, resource, mode, self.lock_wait())
            .map_err(|e| self.client_error(e))
    }

    /// A committed transaction keeps its locks until its `Commit` record is
    /// durable, which the confirmer lets ride on the next flush for up to
    /// its patience (`crate::node::confirmer`). A request of this node for
    /// a page such a transaction wrote — the same row updated again and
    /// again, a page every transaction writes — would wait all that
    /// patience; it makes the log durable up to that record instead, and
    /// the confirmer lets the lock go at once. Pages of other nodes'
    /// transactions, and pages nobody committed lately, cost one lookup.
    fn hasten_confirmation(&self, resource: ResourceId) -> Result<()> {
        let Some(lsn) = self.unconfirmed.get(&resource).map(|e| *e.value()) else {
            return Ok(());
        };
        self.logged(self.log.wait_durable(lsn))
    }

    /// The confirmer let the locks of the commits up to the `Commit` record
    /// at `upto` go: their pages no longer wait for it.
    pub(super) fn confirmed_pages(&self, pages: impl Iterator<Item = ResourceId>, upto: Lsn) {
        for resource in pages {
            // A later commit of the same page keeps its entry.
            self.unconfirmed.remove_if(&resource, |_, lsn| *lsn <= upto);
        }
    }

    /// Locks `resource` for `txn` only if it can be had at once: `None`
    /// when another transaction holds it in a conflicting mode or a failed
    /// node retains it.
    pub(crate) fn try_lock(&self, txn: TxnId, resource: ResourceId, mode: LockMode) -> Result<Option<Granted>> {
        self.check_running()?;
        match self.client.lock_valued(txn, resource, mode, LockWait::NoWait) {
            Ok(granted) => Ok(Some(granted)),
            Err(ClientError::Conflict { .. } | ClientError::Retained { .. }) => Ok(None),
            Err(e) => Err(self.client_error(e)),
        }
    }

    /// A request that failed because the node stopped meanwhile (its
    /// connection is dropped on stopping) reports why it stopped.
    fn client_error(&self, e: ClientError) -> Error {
        match self.check_running() {
            Err(stopped) => stopped,
            Ok(()) => e.into(),
        }
    }

    /// Releases one lock of `txn` without waiting for an answer: a shared
    /// lock on a B+tree branch its operation no longer needs
    /// (`crate::btree`).
    pub(crate) fn release_one(&self, txn: TxnId, resource: ResourceId) {
        if let Err(e) = self.client.release_nowait(txn, resource) {
            // The connection is gone: the node stops, and the coordinator
            // drops the lock with the node's failure.
            tracing::warn!(txn, ?resource, error = %e, "releasing a lock failed");
        }
    }

    pub(crate) fn release_all(&self, txn: TxnId) {
        self.release_many(&[txn]);
    }

    /// Releases every lock of each of `txns`, in one write and without
    /// waiting for an answer.
    pub(crate) fn release_many(&self, txns: &[TxnId]) {
        self.publish_and_release(Vec::new(), txns);
    }

    /// Publishes `values` — the stamps committed transactions of `txns`
    /// wrote their pages with, each page X-locked by one of them — as the
    /// pages' lock value blocks, then releases every lock of `txns`: in one
    /// write, without waiting for an answer (see `crate::pool`).
    pub(crate) fn publish_and_release(&self, values: Vec<(ResourceId, u128)>, txns: &[TxnId]) {
        if let Err(e) = self.client.publish_and_release_nowait(values, txns) {
            // The connection is gone: the coordinator retains or drops the
            // locks with the node's failure.
            tracing::warn!(?txns, error = %e, "releasing locks failed");
        }
    }

    /// Logs a transaction's begin record and counts it active. Done under
    /// the active-set lock, which a checkpoint holds while it lists the
    /// active transactions and logs its record, so no begin can fall between
    /// the two and be truncated away.
    pub(crate) fn log_begin(&self, txn: TxnId) -> Result<Lsn> {
        self.ledger.begin(txn, || {
            self.logged(
                self.log
                    .append(wal::RecordMeta::txn(txn, None), &wal::RecordBody::Begin),
            )
        })
    }

    /// A transaction committed under the intent at `intent`: logs its
    /// `Commit` record and hands it to the confirmer, which releases its
    /// locks once the record is durable.
    pub(crate) fn confirm_commit(&self, txn: TxnId, intent: Lsn, published: Vec<(ResourceId, u128)>) {
        let Ok(lsn) = self.logged(
            self.log
                .append(wal::RecordMeta::txn(txn, Some(intent)), &wal::RecordBody::Commit),
        ) else {
            return; // stopped: the locks stay retained, the intent decides
        };
        self.ledger.committing();
        for &(resource, _) in &published {
            self.unconfirmed.insert(resource, lsn);
        }
        if self.confirms.send((txn, lsn, published)).is_err() {
            self.ledger.confirmed(1);
        }
    }

    /// A new transaction id: the incarnation in the high half, so ids never
    /// repeat in the node's log across restarts.
    pub(crate) fn next_txn_id(&self) -> TxnId {
        self.next_txn.fetch_add(1, Ordering::Relaxed)
    }

    /// Why the node stopped, if it did.
    pub(crate) fn stopped(&self) -> Option<String> {
        lock(&self.stopped).clone()
    }

    /// The transaction no longer counts as active (its end is logged).
    pub(crate) fn txn_finished(&self, txn: TxnId) {
        self.ledger.ended(txn);
    }

    /// Keeps the timeline of a peer recovery this node ran.
    pub(crate) fn remember(&self, tl: Timeline) {
        let mut r = lock(&self.recoveries);
        r.0 += 1;
        if r.1.len() == MAX_KEPT_RECOVERIES {
            r.1.pop_front();
        }
        r.1.push_back(tl);
    }

    /// Checkpoints when the log has grown enough since the last one, on a
    /// thread of its own: the flush and the control-file write it waits
    /// for would otherwise hold up the caller — the confirmer, whose lock
    /// releases every other commit of the node waits for. One at a time.
    pub(crate) fn maybe_checkpoint(self: &Arc<Self>) {
        let due = self.log.next_lsn().0.saturating_sub(self.ledger.last_checkpoint().0) > self.opts.checkpoint_bytes;
        if !due || self.checkpointing.swap(true, Ordering::SeqCst) {
            return;
        }
        // Checked after the flag is set, as `wind_down`'s caller checks the
        // flag after setting its own: one of the two sees the other.
        if self.winding_down.load(Ordering::SeqCst) {
            self.checkpointing.store(false, Ordering::SeqCst);
            return;
        }
        let node = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("checkpoint-{}", self.node_id))
            .spawn(move || {
                let Some(node) = node.upgrade() else { return };
                if let Err(e) = node.checkpoint() {
                    // A node stopping refuses it; that is no news.
                    if node.check_running().is_ok() {
                        tracing::warn!(error = %e, "checkpoint failed");
                    }
                }
                node.checkpointing.store(false, Ordering::SeqCst);
            });
        match spawned {
            // The one before, if any, has finished its checkpoint: letting
            // its handle go detaches nothing still at work.
            Ok(thread) => *lock(&self.checkpoint_thread) = Some(thread),
            Err(e) => {
                self.checkpointing.store(false, Ordering::SeqCst);
                tracing::warn!(error = %e, "could not start a checkpoint");
            }
        }
    }

    /// The last handle is gone: no checkpoint starts from now on.
    pub(super) fn wind_down(&self) {
        self.winding_down.store(true, Ordering::SeqCst);
    }

    /// Whether a checkpoint thread is at work.
    pub(super) fn checkpoint_running(&self) -> bool {
        self.checkpointing.load(Ordering::SeqCst)
    }

    /// Waits for the checkpoint thread last started, unless this is it.
    pub(super) fn join_checkpoint(&self) {
        let thread = lock(&self.checkpoint_thread).take();
        if let Some(t) = thread.filter(|t| t.thread().id() != std::thread::current().id()) {
            let _ = t.join();
        }
    }

    /// Holds every table file against its catalog entry
    /// ([`crate::table::open_checked`]), under a shared lock on the catalog
    /// so no table is created or dropped meanwhile.
    pub(crate) fn check_tables(&self) -> Result<()> {
        let txn = self.next_txn_id();
        self.lock(txn, crate::catalog::CATALOG_RESOURCE, LockMode::S)?;
        let checked = Catalog::load(&self.io, self.files.dir()).and_then(|cat| {
            cat.tables
                .iter()
                .try_for_each(|t| crate::table::open_checked(&self.io, &self.files, t).map(drop))
        });
        self.release_all(txn);
        checked
    }

    /// Takes a checkpoint listing the active transactions, then truncates
    /// the log before the oldest record still needed.
    pub(crate) fn checkpoint(&self) -> Result<Lsn> {
        self.check_running()?;
        self.ledger.checkpoint(
            |active| Ok(self.log.append_checkpoint(active)?),
            |cp| Ok(self.log.complete_checkpoint(cp).map(drop)?),
            |keep| Ok(self.log.truncate_before(keep)?),
        )
    }

    /// The peer recoveries this node has run in all, and those kept of the
    /// ones after the first `seen` (oldest first).
    pub(crate) fn recoveries_after(&self, seen: u64) -> (u64, Vec<Timeline>) {
        let r = lock(&self.recoveries);
        let new = r.0.saturating_sub(seen).min(r.1.len() as u64) as usize;
        (r.0, r.1.iter().skip(r.1.len() - new).cloned().collect())
    }

    /// Waits up to `limit` until every committed transaction's locks are
    /// released (its `Commit` record durable), or the node stopped (its
    /// locks then stay retained).
    pub(crate) fn wait_confirmed(&self, limit: Duration) -> Result<()> {
        if self.ledger.wait_confirmed(limit, || self.check_running().is_ok()) {
            Ok(())
        } else {
            Err(Error::Stopped(
                "committed transactions' locks were not released in time".into(),
            ))
        }
    }

    /// Whether no transaction has logged anything it has not ended.
    pub(crate) fn idle(&self) -> bool {
        self.ledger.idle()
    }

    /// Marks the node stopped because it left the cluster; nothing is
    /// written afterwards.
    pub(crate) fn mark_closed(&self) {
        *lock(&self.stopped) = Some(CLOSED.into());
    }

    /// After a clean close: lets go of everything another process (or a
    /// new open in this one) needs — the log, the data files, the embedded
    /// coordinator with its election lock, the held lock — without waiting
    /// for the last handle to be dropped.
    pub(crate) fn let_go(&self) {
        self.log.relinquish();
        self.files.close();
        if let Some(c) = lock(&self.coordinator).take() {
            c.shutdown();
        }
        lock(&self.held_lock).take();
    }

    /// Whether [`NodeState::mark_closed`] ended the node.
    pub(crate) fn closed(&self) -> bool {
        lock(&self.stopped).as_deref() == Some(CLOSED)
    }

    /// The confirmer took `n` commits off the queue and is done with them.
    pub(super) fn confirmed(&self, n: usize) {
        self.ledger.confirmed(n);
    }
}
