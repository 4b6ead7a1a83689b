//! Opening a node: joining the cluster, opening the node's own log, and
//! backing out the node's own in-flight work if it had failed.
//!
//! A node that crashed is failed at the coordinator, its write locks
//! retained; it comes back with purpose `Restart`, which hands those locks
//! back to it, backs out its own in-flight work with [`crate::recovery`],
//! and only then lets them go. If a peer is recovering it at that moment,
//! the open waits for the peer to finish (the peer's end records leave
//! nothing to back out).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockmgr::wire::ErrorCode;
use lockmgr::{Client, ClientConfig, ClientError, Coordinator, CoordinatorConfig, Purpose};
use wal::io::Io;
use wal::{Log, LogConfig, Lsn, WalError};

use crate::cluster::Cluster;
use crate::datafile::DataFiles;
use crate::error::{Error, Result};
use crate::group_force::GroupForce;
use crate::ledger::Ledger;
use crate::node::options::{NodeOptions, StartReport};
use crate::node::state::NodeState;
use crate::pool::BufferPool;
use crate::recovery;
use crate::redo::RedoWriter;
use crate::retry;

/// Committed transactions on their way to the confirmer: each with the LSN
/// of its `Commit` record.
pub(super) type ConfirmQueue = Receiver<crate::node::state::Confirm>;

/// Opens one incarnation of the node: joins (or restarts), checks its
/// table files, starts its threads.
pub(super) fn incarnation(
    cluster_dir: &Path,
    node_id: u32,
    opts: NodeOptions,
    lock: Option<std::fs::File>,
) -> Result<(Arc<NodeState>, StartReport)> {
    let (state, confirm_queue, report) = open(cluster_dir, node_id, opts, lock)?;
    let inner = Arc::new(state);
    // Every table file is held against the catalog before the node
    // serves anything: one missing, cut short or replaced is refused
    // now, naming it, not found later as missing rows.
    inner.check_tables()?;
    start_threads(&inner, confirm_queue)?;
    Ok((inner, report))
}

/// Joins the cluster in `cluster_dir` as `node_id` and recovers the node's
/// own in-flight work first if it had failed; starts nothing yet. Returns
/// the node's state, the queue its confirmer will read, and what opening
/// found.
pub(super) fn open(
    cluster_dir: &Path,
    node_id: u32,
    opts: NodeOptions,
    held_lock: Option<std::fs::File>,
) -> Result<(NodeState, ConfirmQueue, StartReport)> {
    let cluster = Cluster::open(cluster_dir)?;
    if !cluster.nodes.contains(&node_id) {
        return Err(Error::UnknownNode {
            node: node_id,
            nodes: cluster.nodes.clone(),
        });
    }
    if opts.redo && cluster.nodes.len() != 1 {
        return Err(Error::RedoNeedsOneNode {
            nodes: cluster.nodes.len(),
        });
    }
    let io = match &opts.io {
        Some(io) => io.clone(),
        None => Io::new(opts.backend)?,
    };
    let secret = cluster.secret()?;
    let coordinator = if opts.embed_coordinator {
        let listen = if opts.listen {
            vec![cluster.coordinator.clone()]
        } else {
            Vec::new()
        };
        let mut cfg = CoordinatorConfig::new(listen, secret.clone(), cluster.coordinator_dir(), io.clone());
        cfg.lease_ms = opts.lease_ms;
        cfg.heartbeat_ms = opts.heartbeat_ms;
        cfg.failure_timeout_ms = opts.failure_timeout_ms;
        // This node's previous incarnation, if nothing holds its log now,
        // is gone (a dying process lets go of its log; a living one keeps
        // it): the restarted coordinator need not wait for it to re-assert
        // its locks, and its own restart goes ahead at once.
        if wal::LogReader::owner_status(&cluster.log_dir(node_id))? == wal::OwnerStatus::Gone {
            cfg.departed = vec![node_id];
        }
        Some(Coordinator::start(cfg).map_err(|e| Error::Coordinator(ClientError::Protocol(e.to_string())))?)
    } else {
        None
    };
    let (client, restarted) = join(&cluster, node_id, &secret, &opts, coordinator.as_ref())?;
    // Opening finds the log's end by reading it through; the search for
    // in-flight work rides along on that one pass.
    let mut scan = recovery::InFlightScan::new();
    // A node that failed had a log, and its in-flight work is in it: one
    // missing now is refused, not created empty, unless the operator
    // accepted it.
    let must_exist = restarted && !opts.accept_log_damage;
    // The coordinator's word that this incarnation owns the log: without
    // it the log refuses the writer (`wal::access`).
    let log_key = secret.log_key();
    let access = wal::LogAccess {
        key: log_key.clone(),
        proof: client.log_access(),
    };
    let log = open_log(&cluster, node_id, &io, &opts, must_exist, access, &mut scan)?;
    crate::fence::mark_host(&cluster.log_dir(node_id))?;
    let files = DataFiles::new(cluster.data_dir(), cluster.page_size, Some(node_id));

    let reader = log.reader()?;
    let mut found = scan.finish(recovery::scan_start_accepting(&reader, opts.accept_log_damage)?);
    let mut report = StartReport {
        restarted,
        ..StartReport::default()
    };
    if restarted {
        let (wb, ran) = wal::io::count_on_this_thread(|| {
            recovery::back_out(
                &io,
                &files,
                &log,
                &reader,
                &mut found,
                &opts.agents,
                opts.accept_log_damage,
            )
        });
        let wb = wb?;
        report.io = ran;
        client.restart_finished()?;
        report.committed = wb.committed;
        report.backed_out = found.txns.len() - wb.committed;
        report.pages_written = wb.pages_written;
        report.agent_work = wb.agent_work;
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
    // After the own restart: the last commit round's redo is checked
    // against the pages as recovery left them (`crate::redo`).
    let redo = if opts.redo {
        let log_id = log.control().log_id;
        Some(RedoWriter::open(&io, &cluster.dir, node_id, log_id, &files)?)
    } else {
        None
    };
    let cp = log.control().checkpoint_lsn.unwrap_or(Lsn(0));
    let cluster_page_size = cluster.page_size;
    let (confirms, confirm_queue) = std::sync::mpsc::channel();
    let state = NodeState {
        next_txn: AtomicU64::new((client.incarnation() << 32) | 1),
        cluster,
        node_id,
        log_id: log.control().log_id,
        io,
        log,
        client,
        files,
        group_force: GroupForce::new(redo),
        pool: BufferPool::new(opts.pool_pages, cluster_page_size, opts.trust_cached_pages)?,
        opts,
        catalog: Mutex::new(None),
        ledger: Ledger::new(cp),
        stopped: Mutex::new(None),
        recoveries: Mutex::new((0, VecDeque::new())),
        confirms,
        unconfirmed: dashmap::DashMap::new(),
        checkpointing: std::sync::atomic::AtomicBool::new(false),
        checkpoint_thread: Mutex::new(None),
        winding_down: std::sync::atomic::AtomicBool::new(false),
        on_lease_lost: Mutex::new(None),
        transactions: std::sync::atomic::AtomicUsize::new(0),
        log_key,
        coordinator: Mutex::new(coordinator),
        held_lock: Mutex::new(held_lock),
    };
    Ok((state, confirm_queue, report))
}

/// Starts the node's background threads: the confirmer and the event
/// thread.
pub(super) fn start_threads(state: &Arc<NodeState>, confirm_queue: ConfirmQueue) -> Result<()> {
    let weak = Arc::downgrade(state);
    std::thread::Builder::new()
        .name(format!("confirm-{}", state.node_id))
        .spawn(move || crate::node::confirmer::confirmer(weak, confirm_queue))
        .map_err(|e| {
            Error::Io(wal::io::IoError::new(
                wal::io::OpKind::Open,
                "confirmer thread".as_ref(),
                None,
                e,
            ))
        })?;
    crate::node::events::watch(state);
    Ok(())
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
    let started = Instant::now();
    let deadline = started + opts.join_timeout;
    let already_live_patience = Duration::from_millis(2 * u64::from(opts.failure_timeout_ms));
    let log_dir = cluster.log_dir(node_id);
    let held_here = || wal::LogReader::owner_status(&log_dir).ok();
    let mut purpose = Purpose::Join;
    let attempt = || loop {
        let endpoint = opts.coordinator.clone().unwrap_or_else(|| cluster.coordinator.clone());
        let mut cfg = ClientConfig::new(endpoint, node_id, secret.clone());
        cfg.purpose = purpose;
        // A coordinator restart (or a standby taking over) is ridden
        // through: the node rejoins while its lease holds.
        cfg.ride_through = true;
        if opts.coordinator.is_none() {
            cfg.also = cluster.also.clone();
        }
        // Restart requests go only to a node that can launch them.
        cfg.launches_restarts = opts.restart_command.as_ref().is_some_and(|c| !c.is_empty());
        // In-process unless told to reach the coordinator elsewhere (a
        // proxy in front of it, say).
        let joined = match embedded.filter(|_| opts.coordinator.is_none()) {
            Some(coordinator) => Client::connect_local(coordinator, cfg),
            None => Client::connect(cfg),
        };
        match joined {
            Ok(c) => return Ok((c, purpose == Purpose::Restart)),
            // Failed: come back as a restart, at once (and from now on).
            Err(ClientError::Refused {
                code: ErrorCode::NotRecovered,
                ..
            }) if purpose == Purpose::Join => purpose = Purpose::Restart,
            Err(e) => return Err(e),
        }
    };
    let temporary = |e: &ClientError| match e {
        // Live as far as the coordinator knows. A process on this host that
        // still holds the node's log after a moment (one dying lets go
        // within milliseconds) is live; one whose process is gone is about
        // to be declared failed, which the retry waits for — as long as a
        // coordinator takes to notice a silent node (its failure timeout,
        // twice over), not the whole join timeout: a node live elsewhere is
        // not waited out for a minute.
        ClientError::Refused {
            code: ErrorCode::AlreadyLive,
            ..
        } => {
            started.elapsed() < opts.coordinator_wait
                || (held_here() != Some(wal::OwnerStatus::Alive) && started.elapsed() < already_live_patience)
        }
        // Nobody answers: a coordinator may be starting this instant.
        ClientError::Connect { .. } => started.elapsed() < opts.coordinator_wait,
        other => join_refused_for_now(other),
    };
    retry::until(deadline, Duration::from_millis(20), attempt, temporary).map_err(|e| match e {
        ClientError::Refused {
            code: ErrorCode::AlreadyLive,
            ..
        } if held_here() == Some(wal::OwnerStatus::Alive) => Error::NodeRunning { node: node_id },
        ClientError::Connect { endpoint, message } => Error::NoCoordinator {
            endpoint,
            reason: message,
        },
        other => other.into(),
    })
}

/// Whether a refused join may succeed in a moment: a peer is recovering the
/// node, or the coordinator is recovering its own state after a restart.
fn join_refused_for_now(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Refused {
            code: ErrorCode::RecoveryInProgress,
            ..
        } | ClientError::CoordinatorRecovering
    )
}

/// Opens the node's own log, handing its records to `scan`; one that
/// `must_exist` and does not is [`Error::LogMissing`].
fn open_log(
    cluster: &Cluster,
    node_id: u32,
    io: &Io,
    opts: &NodeOptions,
    must_exist: bool,
    access: wal::LogAccess,
    scan: &mut recovery::InFlightScan,
) -> Result<Log> {
    let cfg = LogConfig {
        segment_size: opts.log_segment_size,
        create: !must_exist,
        access: Some(access),
        ..LogConfig::new(node_id, io.clone())
    };
    let deadline = Instant::now() + opts.join_timeout;
    // A refused open visits no record, so the scan starts clean on retry.
    // A counterpart that just finished may hold the directory an instant
    // longer.
    let log = retry::until(
        deadline,
        Duration::from_millis(10),
        || Log::open_visiting(&cluster.log_dir(node_id), cfg.clone(), &mut |rec| scan.visit(rec)),
        |e| matches!(e, WalError::Locked { .. }),
    )
    .map_err(|e| Error::opening_log(e, node_id))?;
    Ok(log)
}
