//! A node: one process's membership of a cluster — its coordinator
//! connection, its private log, the shared data files — and the place
//! transactions begin.
//!
//! Opening a node joins the cluster. A node that crashed is failed at the
//! coordinator, its write locks retained; it comes back with purpose
//! `Restart`, which hands those locks back to it, backs out its own in-flight
//! work with [`crate::recovery`], and only then lets them go. If a peer is
//! recovering it at that moment, the open waits for the peer to finish (the
//! peer's end records leave nothing to back out).
//!
//! A node that loses its lease (or its coordinator connection) stops: every
//! later call fails with [`Error::LeaseLost`] or [`Error::Stopped`], and no
//! page is written. So does a node whose commit failed to write or sync: the
//! device's state is unknown, and its own restart (or a peer) recovers it.
//! A stopped node lets go of its log and data files as soon as its last
//! write has completed, so a peer can recover it while the process lives on
//! (see [`crate::fence`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lockmgr::client::ClientEvent;
use lockmgr::wire::ErrorCode;
use lockmgr::{
    Client, ClientConfig, ClientError, Coordinator, CoordinatorConfig, LockMode, LockWait, Purpose, ResourceId,
};
use wal::io::{BackendChoice, Io};
use wal::{ActiveTxn, Log, LogConfig, Lsn, TxnId, WalError};

use crate::catalog::{Catalog, TableInfo, MAX_NAME};
use crate::cluster::Cluster;
use crate::datafile::{table_path, DataFiles};
use crate::error::{Error, Result};
use crate::group_force::GroupForce;
use crate::recovery::{self, Agents};
use crate::table;
use crate::txn::Transaction;

/// The catalog's lock resource.
pub const CATALOG_RESOURCE: ResourceId = ResourceId::new(0, 0);

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// How long a lock request waits for live holders before
    /// [`Error::LockTimeout`]; a retained page refuses at once. A committed
    /// transaction's pages stay locked until its commit record is durable:
    /// at once on a busy node, up to about a millisecond plus one log flush
    /// on an idle one (see [`crate::txn`]).
    pub lock_wait: Duration,
    /// Log bytes between automatic checkpoints.
    pub checkpoint_bytes: u64,
    pub backend: BackendChoice,
    pub log_segment_size: u64,
    /// Run the coordinator inside this process, listening on the cluster's
    /// coordinator address (the embedded default for a single host). Other
    /// nodes reach it over that address; this node calls it in-process,
    /// without a socket or a thread hop per lock request
    /// ([`lockmgr::server::LocalLink`]).
    pub embed_coordinator: bool,
    /// Coordinator timing when embedded.
    pub lease_ms: u32,
    pub heartbeat_ms: u32,
    pub failure_timeout_ms: u32,
    /// How long opening may wait for a peer's recovery of this node, or for
    /// the coordinator to notice this node's previous incarnation died.
    pub join_timeout: Duration,
    /// An I/O layer to use instead of one chosen by `backend` (tests inject
    /// faults through it).
    pub io: Option<Io>,
    /// Race to recover every node the coordinator reports failed (exactly
    /// one racer wins). Off: only an operator's `recover` does.
    pub auto_recovery: bool,
    /// How long a peer recovery waits for the kernel's word that a failed
    /// node on this host is gone (its process and every write it had in
    /// flight) before giving up with [`crate::peer::PeerError::NotFenced`].
    pub fence_patience: Duration,
    /// Reach the coordinator here instead of at the cluster's address (a
    /// second listener, or a proxy).
    pub coordinator: Option<lockmgr::Endpoint>,
    /// The command (program, then arguments; `{cluster}` and `{node}` are
    /// filled in) this node runs to restart a failed node light when a
    /// restart request for it is announced (see [`crate::restart`]). `None`:
    /// this node launches no restarts.
    pub restart_command: Option<Vec<String>>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            lock_wait: Duration::from_secs(2),
            // Bounds what a recovery reads: about 1 MiB of log past the last
            // checkpoint, some 1 500 two-row transactions (their records,
            // byte ranges, are small: a recovery's scan costs per record
            // more than per byte), read in a few milliseconds; a checkpoint
            // costs one small record and a control-file write.
            checkpoint_bytes: 1 << 20,
            backend: BackendChoice::Auto,
            // Small segments keep a peer's search past the end of a failed
            // log short; truncation recycles them.
            log_segment_size: 4 << 20,
            embed_coordinator: false,
            lease_ms: 1000,
            heartbeat_ms: 100,
            failure_timeout_ms: 1500,
            join_timeout: Duration::from_secs(30),
            io: None,
            auto_recovery: true,
            fence_patience: Duration::from_secs(30),
            coordinator: None,
            restart_command: None,
        }
    }
}

/// What opening found of the node's own past.
#[derive(Clone, Debug, Default)]
pub struct StartReport {
    /// Whether the node came back as `Restart` (it had failed).
    pub restarted: bool,
    /// Transactions its own recovery backed out.
    pub backed_out: usize,
    /// Transactions its own recovery found committed by their pages (they
    /// had forced every page, and the crash came before their `Commit`
    /// record was durable).
    pub committed: usize,
    /// Pages written back.
    pub pages_written: usize,
}

pub(crate) struct NodeInner {
    pub(crate) cluster: Cluster,
    pub(crate) node_id: u32,
    pub(crate) io: Io,
    pub(crate) log: Log,
    pub(crate) client: Client,
    pub(crate) files: DataFiles,
    pub(crate) group_force: GroupForce,
    pub(crate) opts: NodeOptions,
    /// The catalog as last read, with the stamp of the file it came from.
    catalog: Mutex<Option<(CatalogStamp, Arc<Catalog>)>>,
    next_txn: AtomicU64,
    /// Transactions that logged something, with their first LSN.
    active: Mutex<BTreeMap<TxnId, Lsn>>,
    stopped: Mutex<Option<String>>,
    last_checkpoint: Mutex<Lsn>,
    /// How many peer recoveries this node ran, and the last
    /// [`MAX_KEPT_RECOVERIES`] of them.
    recoveries: Mutex<(u64, std::collections::VecDeque<crate::peer::Timeline>)>,
    /// Committed transactions whose `Commit` record is not yet known to be
    /// durable, on their way to the confirmer (see [`confirmer`]).
    confirms: std::sync::mpsc::Sender<(TxnId, Lsn)>,
    /// How many of those there are; [`Node::close`] waits for none.
    confirming: Mutex<usize>,
    confirmed: std::sync::Condvar,
    _coordinator: Option<Coordinator>,
}

/// How long the confirmer lets a `Commit` record wait for a flush someone
/// else makes before making one itself. A committer's next intent flush
/// usually carries it; a flush of its own would instead delay that next
/// commit by a whole device flush. On an idle node, locks are released
/// this much later.
const CONFIRM_PATIENCE: Duration = Duration::from_millis(1);

/// Waits for committed transactions' `Commit` records to become durable,
/// then lets each transaction's locks go and ends it. Runs until the node's
/// last handle is gone. A log that fails on the way stops the node, and the
/// transactions' locks stay retained: recovery finds their intents, sees
/// every page stamped, and keeps them committed.
fn confirmer(node: std::sync::Weak<NodeInner>, queue: std::sync::mpsc::Receiver<(TxnId, Lsn)>) {
    // Woken when the log becomes durable, by a round's leader that has its
    // committers to wake next.
    wal::background::run_in_background();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter());
        let Some(inner) = node.upgrade() else {
            return;
        };
        let upto = batch.iter().map(|&(_, lsn)| lsn).max().expect("a batch is never empty");
        let durable = match inner.log.wait_durable_within(upto, CONFIRM_PATIENCE) {
            Some(r) => r,
            None => inner.log.wait_durable(upto),
        };
        if inner.logged(durable).is_ok() {
            let txns: Vec<TxnId> = batch.iter().map(|&(txn, _)| txn).collect();
            for &txn in &txns {
                inner.txn_finished(txn);
            }
            inner.release_many(&txns);
            inner.maybe_checkpoint();
        }
        let mut n = lock(&inner.confirming);
        *n -= batch.len();
        inner.confirmed.notify_all();
    }
}

/// How long [`Node::close`] waits for committed transactions' locks to go.
const CLOSE_CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// How many recovery timelines a node keeps for inspection.
pub const MAX_KEPT_RECOVERIES: usize = 64;

/// A member of a cluster. Cheap to clone; transactions may run on many
/// threads at once.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
    report: StartReport,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// Joins the cluster in `cluster_dir` as `node_id`, recovering the node's
    /// own in-flight work first if it had failed.
    pub fn open(cluster_dir: &Path, node_id: u32, opts: NodeOptions) -> Result<Node> {
        let cluster = Cluster::open(cluster_dir)?;
        if !cluster.nodes.contains(&node_id) {
            return Err(Error::InvalidArgument(format!(
                "node {node_id} is not one of the cluster's nodes {:?}",
                cluster.nodes
            )));
        }
        let io = match &opts.io {
            Some(io) => io.clone(),
            None => Io::new(opts.backend)?,
        };
        let secret = cluster.secret()?;
        let coordinator = if opts.embed_coordinator {
            let mut cfg = CoordinatorConfig::new(
                vec![cluster.coordinator.clone()],
                secret.clone(),
                cluster.coordinator_dir(),
                io.clone(),
            );
            cfg.lease_ms = opts.lease_ms;
            cfg.heartbeat_ms = opts.heartbeat_ms;
            cfg.failure_timeout_ms = opts.failure_timeout_ms;
            Some(Coordinator::start(cfg).map_err(|e| Error::Coordinator(ClientError::Protocol(e.to_string())))?)
        } else {
            None
        };
        let (client, restarted) = join(&cluster, node_id, &secret, &opts, coordinator.as_ref())?;
        // Opening finds the log's end by reading it through; the search for
        // in-flight work rides along on that one pass.
        let mut scan = recovery::InFlightScan::new();
        let log = open_log(&cluster, node_id, &io, &opts, &mut scan)?;
        crate::fence::mark_host(&cluster.log_dir(node_id))?;
        let files = DataFiles::new(cluster.data_dir(), cluster.page_size, Some(node_id));

        let reader = log.reader()?;
        let mut found = scan.finish(recovery::scan_start(&reader)?);
        let mut report = StartReport {
            restarted,
            ..StartReport::default()
        };
        if restarted {
            let wb = recovery::back_out(&io, &files, &log, &reader, &mut found, &Agents::new())?;
            client.restart_finished()?;
            report.committed = wb.committed;
            report.backed_out = found.txns.len() - wb.committed;
            report.pages_written = wb.pages;
            tracing::info!(
                node_id,
                txns = found.txns.len(),
                committed = wb.committed,
                pages = wb.pages,
                "own recovery finished"
            );
        } else if !found.is_empty() {
            // Admitted as recovered, yet the log holds in-flight work: backing
            // it out without the locks that protect it could destroy others'
            // commits, so refuse to start.
            return Err(Error::Stopped(format!(
                "the log holds {} in-flight transactions but the coordinator admitted the node as recovered",
                found.txns.len()
            )));
        }
        let cp = log.control().checkpoint_lsn.unwrap_or(Lsn(0));
        let (confirms, confirm_queue) = std::sync::mpsc::channel();
        let inner = Arc::new(NodeInner {
            next_txn: AtomicU64::new((client.incarnation() << 32) | 1),
            cluster,
            node_id,
            io,
            log,
            client,
            files,
            group_force: GroupForce::default(),
            opts,
            catalog: Mutex::new(None),
            active: Mutex::new(BTreeMap::new()),
            stopped: Mutex::new(None),
            last_checkpoint: Mutex::new(cp),
            recoveries: Mutex::new((0, std::collections::VecDeque::new())),
            confirms,
            confirming: Mutex::new(0),
            confirmed: std::sync::Condvar::new(),
            _coordinator: coordinator,
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name(format!("confirm-{node_id}"))
            .spawn(move || confirmer(weak, confirm_queue))
            .map_err(|e| {
                Error::Io(wal::io::IoError::new(
                    wal::io::OpKind::Open,
                    "confirmer thread".as_ref(),
                    None,
                    e,
                ))
            })?;
        watch_events(&inner);
        Ok(Node { inner, report })
    }

    pub fn id(&self) -> u32 {
        self.inner.node_id
    }

    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The peer recoveries this node has run, oldest first (the last
    /// [`MAX_KEPT_RECOVERIES`]).
    pub fn recoveries(&self) -> Vec<crate::peer::Timeline> {
        lock(&self.inner.recoveries).1.iter().cloned().collect()
    }

    /// How many peer recoveries this node has run in all, and those kept of
    /// the ones after the first `seen` (oldest first).
    pub fn recoveries_after(&self, seen: u64) -> (u64, Vec<crate::peer::Timeline>) {
        let r = lock(&self.inner.recoveries);
        let new = r.0.saturating_sub(seen).min(r.1.len() as u64) as usize;
        (r.0, r.1.iter().skip(r.1.len() - new).cloned().collect())
    }

    /// Recovers failed node `failed` now (what automatic recovery does on a
    /// failure event, and what an operator's `recover` runs).
    pub fn recover_peer(&self, failed: u32) -> std::result::Result<crate::peer::Timeline, crate::peer::PeerError> {
        let tl = crate::peer::recover(self, failed, Instant::now())?;
        self.inner.remember(tl.clone());
        Ok(tl)
    }

    /// Files a restart request for `node` (this node itself included): a
    /// live peer restarts it light as soon as it has failed — now, if it has
    /// already (see [`crate::restart`]).
    pub fn request_restart(&self, node: u32) -> Result<()> {
        Ok(self.inner.client.request_restart(node)?)
    }

    /// Whether the node stopped, and why.
    pub fn stopped(&self) -> Option<String> {
        lock(&self.inner.stopped).clone()
    }

    pub fn incarnation(&self) -> u64 {
        self.inner.client.incarnation()
    }

    /// What opening did.
    pub fn start_report(&self) -> &StartReport {
        &self.report
    }

    pub fn io_backend(&self) -> wal::io::BackendKind {
        self.inner.io.kind()
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<Transaction> {
        self.inner.check_running()?;
        let id = self.inner.next_txn.fetch_add(1, Ordering::Relaxed);
        Ok(Transaction::new(self.inner.clone(), id))
    }

    /// Creates a table with `buckets` bucket pages (size it near the
    /// expected number of rows divided by rows per page).
    pub fn create_table(&self, name: &str, buckets: u32) -> Result<()> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::InvalidArgument(format!("table names are 1 to {MAX_NAME} bytes")));
        }
        if buckets == 0 || buckets > 1 << 24 {
            return Err(Error::InvalidArgument("buckets must be between 1 and 2^24".into()));
        }
        self.change_catalog(|inner, _, mut cat| {
            if cat.find(name).is_some() {
                return Err(Error::TableExists(name.into()));
            }
            let info = TableInfo {
                name: name.into(),
                file_id: cat.next_file_id,
                buckets,
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
            let path = table_path(inner.files.dir(), info.file_id);
            std::fs::remove_file(&path).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Write, &path, None, e))?;
            Ok(())
        })
    }

    /// Runs `change` on the catalog as read under an X lock on it, taken by
    /// a transaction of its own (passed along, for further locks) and
    /// released afterwards whatever the outcome.
    fn change_catalog(&self, change: impl FnOnce(&NodeInner, TxnId, Catalog) -> Result<()>) -> Result<()> {
        let inner = &*self.inner;
        inner.check_running()?;
        let txn = inner.next_txn.fetch_add(1, Ordering::Relaxed);
        inner.lock(txn, CATALOG_RESOURCE, LockMode::X)?;
        let result = Catalog::load(&inner.io, inner.files.dir()).and_then(|cat| change(inner, txn, cat));
        inner.release_all(txn);
        result
    }

    /// Names of the tables.
    pub fn tables(&self) -> Result<Vec<String>> {
        Ok(Catalog::load(&self.inner.io, self.inner.files.dir())?
            .tables
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// Takes a checkpoint now and truncates the log behind it.
    pub fn checkpoint(&self) -> Result<Lsn> {
        self.inner.checkpoint()
    }

    /// Leaves the cluster cleanly: no transaction may be running. The node
    /// stops; its log closes (flushing anything pending) when the last
    /// handle and background thread let go of it.
    pub fn close(self) -> Result<()> {
        let inner = &self.inner;
        // Committed transactions still holding their locks get them
        // released first; a node that stops meanwhile leaves them retained.
        let deadline = Instant::now() + CLOSE_CONFIRM_WAIT;
        let mut pending = lock(&inner.confirming);
        while *pending > 0 && inner.check_running().is_ok() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Stopped(
                    "committed transactions' locks were not released in time".into(),
                ));
            }
            pending = inner
                .confirmed
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(pending);
        if !lock(&inner.active).is_empty() {
            return Err(Error::InvalidArgument("transactions are still running".into()));
        }
        inner.check_running()?;
        // Marked first, so the end of the connection is not taken for a lost
        // lease.
        *lock(&inner.stopped) = Some("the node was closed".into());
        inner.client.leave()?;
        Ok(())
    }
}

/// Joins the coordinator: the embedded one in-process, if this node runs
/// it, else the one at the configured address. A failed node restarts to
/// recover itself, waiting while a peer recovers it or while the
/// coordinator has not yet noticed its previous incarnation died. Returns
/// the client and whether it restarted.
fn join(
    cluster: &Cluster,
    node_id: u32,
    secret: &lockmgr::Secret,
    opts: &NodeOptions,
    embedded: Option<&Coordinator>,
) -> Result<(Client, bool)> {
    let deadline = Instant::now() + opts.join_timeout;
    let mut purpose = Purpose::Join;
    loop {
        let endpoint = opts.coordinator.clone().unwrap_or_else(|| cluster.coordinator.clone());
        let mut cfg = ClientConfig::new(endpoint, node_id, secret.clone());
        cfg.purpose = purpose;
        // In-process unless told to reach the coordinator elsewhere (a
        // proxy in front of it, say).
        let joined = match embedded.filter(|_| opts.coordinator.is_none()) {
            Some(coordinator) => Client::connect_local(coordinator, cfg),
            None => Client::connect(cfg),
        };
        match joined {
            Ok(c) => return Ok((c, purpose == Purpose::Restart)),
            Err(ClientError::Refused {
                code: ErrorCode::NotRecovered,
                ..
            }) => purpose = Purpose::Restart,
            Err(e) if Instant::now() < deadline && retry_join(&e) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn retry_join(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Refused {
            code: ErrorCode::RecoveryInProgress | ErrorCode::AlreadyLive,
            ..
        } | ClientError::Connect { .. }
            | ClientError::CoordinatorRecovering
    )
}

/// Opens the node's own log, handing its records to `scan`.
fn open_log(
    cluster: &Cluster,
    node_id: u32,
    io: &Io,
    opts: &NodeOptions,
    scan: &mut recovery::InFlightScan,
) -> Result<Log> {
    let cfg = LogConfig {
        segment_size: opts.log_segment_size,
        ..LogConfig::new(node_id, io.clone())
    };
    let deadline = Instant::now() + opts.join_timeout;
    loop {
        // A refused open visits no record, so the scan starts clean on retry.
        match Log::open_visiting(&cluster.log_dir(node_id), cfg.clone(), &mut |rec| scan.visit(rec)) {
            // A counterpart that just finished may hold the directory an
            // instant longer.
            Err(WalError::Locked { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            other => return Ok(other?),
        }
    }
}

/// What identifies one version of the catalog file: it is replaced by a
/// rename on every change, which gives it a new inode and change time.
type CatalogStamp = (u64, i64, i64, u64);

/// Stops the node when its lease goes; recovers failed peers when
/// automatic recovery is on.
fn watch_events(inner: &Arc<NodeInner>) {
    let Some(rx) = inner.client.events() else { return };
    let weak = Arc::downgrade(inner);
    let _ = std::thread::Builder::new()
        .name(format!("node-events-{}", inner.node_id))
        .spawn(move || {
            while let Ok(ev) = rx.recv() {
                let Some(inner) = weak.upgrade() else { return };
                match ev {
                    ClientEvent::LeaseLost | ClientEvent::Disconnected => {
                        inner.stop("the coordinator lease was lost");
                    }
                    ClientEvent::Coordinator {
                        kind: lockmgr::EventKind::NodeFailed,
                        node,
                        ..
                    } if node != inner.node_id && inner.opts.auto_recovery && inner.check_running().is_ok() => {
                        let detected = Instant::now();
                        let me = Node {
                            inner: inner.clone(),
                            report: StartReport::default(),
                        };
                        let _ = std::thread::Builder::new()
                            .name(format!("peer-recovery-{node}"))
                            .spawn(move || crate::peer::auto_recover(&me, node, detected));
                    }
                    ClientEvent::Coordinator {
                        kind: lockmgr::EventKind::RestartRequested,
                        node,
                        ..
                    } => crate::restart::on_request(&inner, node),
                    ClientEvent::Coordinator { .. } => {}
                }
            }
        });
}

impl NodeInner {
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
    /// a hint, to be confirmed with [`NodeInner::catalog`] once a lock
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

    pub(crate) fn lock_many(&self, txn: TxnId, requests: &[(ResourceId, LockMode)]) -> Result<Vec<LockMode>> {
        self.check_running()?;
        self.client
            .lock_many(txn, requests, self.lock_wait())
            .map_err(|e| self.client_error(e))
    }

    pub(crate) fn lock(&self, txn: TxnId, resource: ResourceId, mode: LockMode) -> Result<LockMode> {
        self.check_running()?;
        self.client
            .lock(txn, resource, mode, self.lock_wait())
            .map_err(|e| self.client_error(e))
    }

    /// A request that failed because the node stopped meanwhile (its
    /// connection is dropped on stopping) reports why it stopped.
    fn client_error(&self, e: ClientError) -> Error {
        match self.check_running() {
            Err(stopped) => stopped,
            Ok(()) => e.into(),
        }
    }

    pub(crate) fn release_all(&self, txn: TxnId) {
        self.release_many(&[txn]);
    }

    /// Releases every lock of each of `txns`, in one write and without
    /// waiting for an answer.
    pub(crate) fn release_many(&self, txns: &[TxnId]) {
        if let Err(e) = self.client.release_many_nowait(txns) {
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
        let mut active = lock(&self.active);
        let lsn = self.logged(
            self.log
                .append(wal::RecordMeta::txn(txn, None), &wal::RecordBody::Begin),
        )?;
        active.insert(txn, lsn);
        Ok(lsn)
    }

    /// A transaction committed under the intent at `intent`: logs its
    /// `Commit` record and hands it to the confirmer, which releases its
    /// locks once the record is durable.
    pub(crate) fn confirm_commit(&self, txn: TxnId, intent: Lsn) {
        let Ok(lsn) = self.logged(
            self.log
                .append(wal::RecordMeta::txn(txn, Some(intent)), &wal::RecordBody::Commit),
        ) else {
            return; // stopped: the locks stay retained, the intent decides
        };
        *lock(&self.confirming) += 1;
        if self.confirms.send((txn, lsn)).is_err() {
            *lock(&self.confirming) -= 1;
        }
    }

    pub(crate) fn txn_finished(&self, txn: TxnId) {
        lock(&self.active).remove(&txn);
    }

    pub(crate) fn remember(&self, tl: crate::peer::Timeline) {
        let mut r = lock(&self.recoveries);
        r.0 += 1;
        if r.1.len() == MAX_KEPT_RECOVERIES {
            r.1.pop_front();
        }
        r.1.push_back(tl);
    }

    /// Checkpoints when the log has grown enough since the last one.
    pub(crate) fn maybe_checkpoint(&self) {
        let due = self.log.next_lsn().0.saturating_sub(lock(&self.last_checkpoint).0) > self.opts.checkpoint_bytes;
        if due {
            if let Err(e) = self.checkpoint() {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
    }

    pub(crate) fn checkpoint(&self) -> Result<Lsn> {
        self.check_running()?;
        let mut last = lock(&self.last_checkpoint);
        let guard = lock(&self.active);
        let active: Vec<ActiveTxn> = guard
            .iter()
            .map(|(&txn, &first_lsn)| ActiveTxn { txn, first_lsn })
            .collect();
        let cp = self.log.checkpoint(&active)?;
        drop(guard);
        let keep = active.iter().map(|a| a.first_lsn).chain([cp]).min().unwrap_or(cp);
        self.log.truncate_before(keep)?;
        *last = cp;
        Ok(cp)
    }
}
