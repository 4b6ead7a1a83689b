//! A node: one process's membership of a cluster — its coordinator
//! connection, its private log, the shared data files — and the place
//! transactions begin.
//!
//! [`Node`] is the handle an embedder holds; what every handle, transaction
//! and background thread of the node shares is [`state::NodeState`].
//! Opening ([`open`]) joins the cluster and backs out the node's own
//! in-flight work if it had failed; two threads then run beside the
//! embedder's: the confirmer ([`confirmer`]), which releases committed
//! transactions' locks once their commit records are durable, and the
//! event thread ([`events`]), which stops the node when its lease goes and
//! starts peer recoveries.

mod confirmer;
mod events;
mod open;
pub(crate) mod options;
mod rejoin;
mod shared;
pub(crate) mod state;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockmgr::{LockMode, ResourceId};
use wal::{Lsn, TxnId};

use crate::catalog::{Catalog, TableInfo, TableKind, CATALOG_RESOURCE, MAX_NAME};
use crate::cluster::Cluster;
use crate::datafile::table_path;
use crate::error::{Error, Result};
use crate::peer::PeerError;
use crate::retry::{retry, RetryPolicy};
use crate::table;
use crate::timeline::Timeline;
use crate::txn::Transaction;
use options::{NodeOptions, StartReport};
use shared::Shared;
use state::NodeState;

/// The most bucket pages a hash table may have.
pub const MAX_BUCKETS: u32 = 1 << 24;

/// How long [`Node::close`] waits for committed transactions' locks to go.
const CLOSE_CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// A member of a cluster. Cheap to clone; transactions may run on many
/// threads at once.
///
/// When the last handle is dropped (without [`Node::close`]) and no
/// transaction is left, the node is gone by the time `drop` returns: a
/// checkpoint under way is waited for, and so is a background thread
/// briefly holding the node, so an embedded database can be opened again
/// at once ([`crate::open`]), its lock file let go.
///
/// A cluster node that loses its coordinator lease (a pause longer than
/// the lease: `SIGSTOP`, a suspended machine, a debugger) stops, and then
/// joins again by itself as a new incarnation ([`NodeOptions::rejoin`],
/// `crate::node::rejoin`): its transactions of the lost incarnation fail,
/// its in-flight work is backed out by its own restart or by a peer, and
/// the same handles serve the new incarnation.
pub struct Node {
    shared: Arc<Shared>,
    report: StartReport,
}

/// How long the drop of a node's last handle waits for its background
/// threads to let go of it (they hold it for one step of their work).
const DROP_WAIT: Duration = Duration::from_secs(2);

impl Clone for Node {
    fn clone(&self) -> Node {
        self.shared.handles.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Node {
            shared: self.shared.clone(),
            report: self.report.clone(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) != 1 {
            return;
        }
        // The last handle: no joining again from now on (a rejoin under way
        // sees this before it installs the new incarnation, and leaves).
        self.shared.close_for_good();
        let inner = self.shared.current();
        // An open transaction holds the node on purpose:
        // it goes with the transaction's end.
        if inner.transactions.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return;
        }
        // Otherwise only background threads hold it, each for one step: a
        // checkpoint, the confirmer confirming the last commits (they
        // count as active until it has), the event thread. No checkpoint
        // starts from now on; the one under way, if any, is waited for.
        // Two references are this one and the handles' shared one.
        inner.wind_down();
        let deadline = Instant::now() + DROP_WAIT;
        loop {
            inner.join_checkpoint();
            // A stopped node confirms nothing more: its transactions stay
            // active for its restart (or a peer) to back out.
            let confirming = inner.check_running().is_ok() && !inner.idle();
            let held = Arc::strong_count(&inner) > 2 || confirming || inner.checkpoint_running();
            if !held || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Node {
    /// Joins the cluster in `cluster_dir` as `node_id`, recovering the node's
    /// own in-flight work first if it had failed.
    pub fn open(cluster_dir: &Path, node_id: u32, opts: NodeOptions) -> Result<Node> {
        Node::open_holding(cluster_dir, node_id, opts, None)
    }

    /// [`Node::open`], the node holding `lock` (a file locked for it) until
    /// its last handle and thread are gone.
    pub(crate) fn open_holding(
        cluster_dir: &Path,
        node_id: u32,
        opts: NodeOptions,
        lock: Option<std::fs::File>,
    ) -> Result<Node> {
        let plan = shared::Plan::of(cluster_dir, node_id, &opts);
        let (inner, report) = open::incarnation(cluster_dir, node_id, opts, lock)?;
        let shared = Arc::new(Shared {
            cluster: inner.cluster.clone(),
            current: std::sync::RwLock::new(inner.clone()),
            handles: std::sync::atomic::AtomicUsize::new(1),
            rejoin: plan,
            rejoins: std::sync::atomic::AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        rejoin::arm(&shared, &inner);
        Ok(Node { shared, report })
    }

    /// The current incarnation's state.
    pub(crate) fn inner(&self) -> Arc<NodeState> {
        self.shared.current()
    }

    /// How many times the node joined again after losing its lease.
    pub fn rejoins(&self) -> u64 {
        self.shared.rejoins.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the node joins again after losing its lease
    /// ([`NodeOptions::rejoin`], and a coordinator in another process).
    pub fn will_rejoin(&self) -> bool {
        self.shared.rejoin.is_some()
    }

    /// Whether the node's incarnation stopped for a lost lease and the node
    /// is joining again ([`NodeOptions::rejoin`]): its calls fail until
    /// [`Node::stopped`] is `None` again.
    pub fn rejoining(&self) -> bool {
        self.shared.rejoin.is_some()
            && !self.shared.closed.load(std::sync::atomic::Ordering::Acquire)
            && self.inner().stopped().as_deref() == Some(state::LEASE_LOST)
    }

    /// The node's id in the cluster.
    pub fn id(&self) -> u32 {
        self.inner().node_id
    }

    /// The cluster's configuration.
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    /// The peer recoveries this node has run, oldest first (the last
    /// [`state::MAX_KEPT_RECOVERIES`]).
    pub fn recoveries(&self) -> Vec<Timeline> {
        self.inner().recoveries_after(0).1
    }

    /// How many peer recoveries this node has run in all, and those kept of
    /// the ones after the first `seen` (oldest first).
    pub fn recoveries_after(&self, seen: u64) -> (u64, Vec<Timeline>) {
        self.inner().recoveries_after(seen)
    }

    /// Recovers failed node `failed` now (what automatic recovery does on a
    /// failure event, and what an operator's `recover` runs).
    /// A node that is live, unknown, never joined or was recovered already
    /// is refused at once, saying which.
    pub fn recover_peer(&self, failed: u32) -> std::result::Result<Timeline, PeerError> {
        let inner = self.inner();
        crate::peer::check_recoverable(&inner, failed)?;
        let tl = crate::peer::recover(&inner, failed, Instant::now())?;
        inner.remember(tl.clone());
        Ok(tl)
    }

    /// Files a restart request for `node` (this node itself included): a
    /// live peer restarts it light as soon as it has failed — now, if it has
    /// already (see [`crate::restart`]).
    pub fn request_restart(&self, node: u32) -> Result<()> {
        Ok(self.inner().client.request_restart(node)?)
    }

    /// Whether the node stopped, and why.
    pub fn stopped(&self) -> Option<String> {
        self.inner().stopped()
    }

    /// This membership's incarnation number: it grows each time the node
    /// joins or restarts.
    pub fn incarnation(&self) -> u64 {
        self.inner().client.incarnation()
    }

    /// What opening did.
    pub fn start_report(&self) -> &StartReport {
        &self.report
    }

    /// Which I/O backend the node's files go through. What it did — how
    /// many operations went through io_uring and how many as system calls
    /// on the caller — is [`Node::io_stats`].
    pub fn io_backend(&self) -> wal::io::BackendKind {
        self.inner().io.kind()
    }

    /// The operations the node's I/O layer ran so far, counted by the path
    /// each took (io_uring, or `pread`/`pwrite`/`fdatasync` calls).
    pub fn io_stats(&self) -> wal::io::IoStats {
        self.inner().io.stats()
    }

    /// Whether the table files this node opened are read and written with
    /// direct I/O (`O_DIRECT`, past the kernel's page cache): `Some(false)`
    /// where the file system refused it (tmpfs), `None` before any table
    /// file was opened.
    pub fn direct_io(&self) -> Option<bool> {
        self.inner().files.direct()
    }

    /// What the node's buffer pool did so far.
    pub fn pool_stats(&self) -> crate::PoolStats {
        self.inner().pool.stats()
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<Transaction> {
        let inner = self.inner();
        inner.check_running()?;
        let id = inner.next_txn_id();
        Ok(Transaction::new(inner, id))
    }

    /// Runs `work` in a transaction and commits it; a retryable error
    /// ([`Error::is_retryable`]: a deadlock, a lock retained by a failed
    /// node, a lock wait that timed out) rolls the transaction back and runs
    /// `work` again in a new one after a short random backoff, up to
    /// [`RetryPolicy::default`]'s bound. Any other error rolls back and is
    /// returned. `work` may run several times, so it should have no effect
    /// outside the transaction.
    pub fn run<T>(&self, mut work: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        retry(&RetryPolicy::default(), |_| {
            let mut txn = self.begin()?;
            let out = work(&mut txn)?;
            txn.commit()?;
            Ok(out)
        })
    }

    /// Creates a hash table with `buckets` bucket pages (size it near the
    /// expected number of rows divided by rows per page): point reads and
    /// writes only, values up to about a page.
    ///
    /// A hash table never grows: past its buckets, rows go to overflow
    /// chains that every read of their bucket walks. For tables whose size
    /// is not known in advance, for ranges or for large values, use an
    /// ordered table ([`Node::create_ordered_table`]), which grows and
    /// shrinks with its rows.
    pub fn create_table(&self, name: &str, buckets: u32) -> Result<()> {
        if buckets == 0 || buckets > MAX_BUCKETS {
            return Err(Error::InvalidBucketCount {
                buckets,
                max: MAX_BUCKETS,
            });
        }
        self.create(name, TableKind::Hash, buckets)
    }

    /// Creates an ordered table (a B+tree): point reads and writes, range
    /// and prefix scans both ways, first/last and counts; values up to
    /// [`crate::MAX_VALUE`]. It grows and shrinks with its rows.
    pub fn create_ordered_table(&self, name: &str) -> Result<()> {
        self.create(name, TableKind::Ordered, 0)
    }

    fn create(&self, name: &str, kind: TableKind, buckets: u32) -> Result<()> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::InvalidTableName {
                name: name.into(),
                max: MAX_NAME,
            });
        }
        self.change_catalog(|inner, _, mut cat| {
            if cat.find(name).is_some() {
                return Err(Error::TableExists(name.into()));
            }
            let info = TableInfo {
                name: name.into(),
                file_id: cat.next_file_id,
                kind,
                buckets,
                uid: crate::catalog::new_uid(),
            };
            // A crash before the catalog is written leaves an orphan file that
            // the next create with this id overwrites.
            let _ = std::fs::remove_file(table_path(inner.files.dir(), info.file_id));
            inner.files.forget(info.file_id);
            table::create_file(&inner.io, &inner.files, &info)?;
            cat.next_file_id += 1;
            cat.tables.push(info);
            cat.store(&inner.io, inner.files.dir())
        })
    }

    /// Drops a table; waits for transactions using it to finish.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.change_catalog(|inner, txn, mut cat| {
            let info = cat.find(name).cloned().ok_or_else(|| Error::NoSuchTable(name.into()))?;
            inner.lock(txn, ResourceId::new(0, u64::from(info.file_id)), LockMode::X)?;
            cat.tables.retain(|t| t.name != name);
            cat.store(&inner.io, inner.files.dir())?;
            inner.files.forget(info.file_id);
            inner.pool.forget_file(info.file_id);
            let path = table_path(inner.files.dir(), info.file_id);
            std::fs::remove_file(&path).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Write, &path, None, e))?;
            Ok(())
        })
    }

    /// Runs `change` on the catalog as read under an X lock on it, taken by
    /// a transaction of its own (passed along, for further locks) and
    /// released afterwards whatever the outcome.
    fn change_catalog(&self, change: impl FnOnce(&NodeState, TxnId, Catalog) -> Result<()>) -> Result<()> {
        let inner = &*self.inner();
        inner.check_running()?;
        let txn = inner.next_txn_id();
        inner.lock(txn, CATALOG_RESOURCE, LockMode::X)?;
        let result = Catalog::load(&inner.io, inner.files.dir()).and_then(|cat| change(inner, txn, cat));
        inner.release_all(txn);
        result
    }

    /// Names of the tables.
    pub fn tables(&self) -> Result<Vec<String>> {
        let inner = self.inner();
        Ok(Catalog::load(&inner.io, inner.files.dir())?
            .tables
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// How far this node's redo is committed (`crate::redo`): `None` unless
    /// it writes redo ([`NodeOptions::redo`]).
    pub fn redo_watermark(&self) -> Option<std::sync::Arc<crate::redo::Watermark>> {
        self.inner().group_force.redo().map(|r| r.watermark().clone())
    }

    /// Takes a checkpoint now and truncates the log behind it.
    pub fn checkpoint(&self) -> Result<Lsn> {
        self.inner().checkpoint()
    }

    /// Leaves the cluster cleanly: no transaction may be running. The node
    /// stops; its log closes (flushing anything pending) when the last
    /// handle and background thread let go of it.
    ///
    /// Clones of a handle are one node with one lifetime: closing through
    /// any of them closes it for all (their later calls fail with
    /// [`Error::Stopped`]), and the node's files, threads and — for an
    /// embedded database — the directory's lock go when the last clone is
    /// dropped. A close that fails (transactions still running, say) leaves
    /// the node open and every handle usable; closing a closed node does
    /// nothing.
    pub fn close(&self) -> Result<()> {
        let inner = self.inner();
        if inner.closed() {
            return Ok(());
        }
        if self.rejoining() {
            // Its lease is gone and so is the incarnation: closing stops the
            // joining again, and says why nothing could be left cleanly.
            self.shared.close_for_good();
            inner.check_running()?;
        }
        // Committed transactions still holding their locks get them
        // released first; a node that stops meanwhile leaves them retained.
        inner.wait_confirmed(CLOSE_CONFIRM_WAIT)?;
        if !inner.idle() {
            return Err(Error::TransactionsRunning);
        }
        inner.check_running()?;
        // A checkpoint with nothing active: the next open reads the log from
        // here, and no record before it that never became durable (the end
        // of a rolled-back transaction, say) can look like work in flight.
        inner.checkpoint()?;
        // Marked first, so the end of the connection is not taken for a lost
        // lease (nor is it rejoined).
        self.shared.close_for_good();
        inner.mark_closed();
        let left = inner.client.leave();
        inner.let_go();
        Ok(left?)
    }
}
