//! How a node runs ([`NodeOptions`]) and what opening it found of its own
//! past ([`StartReport`]).
//!
//! Options are read when the node opens and never change afterwards; this
//! module holds plain data and no behaviour.

use std::sync::Arc;
use std::time::Duration;

use wal::io::{BackendChoice, Io};

use crate::agent::Agents;
use crate::redo::CommitGate;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// How long a lock request waits for live holders before
    /// [`crate::Error::LockTimeout`]; a retained page refuses at once. A committed
    /// transaction's pages stay locked until its commit record is durable:
    /// at once on a busy node, up to about a millisecond plus one log flush
    /// on an idle one, one flush for a request of the same node (see
    /// [`crate::txn`]).
    pub lock_wait: Duration,
    /// Log bytes between automatic checkpoints. A recovery of this node's
    /// log reads it from the oldest record still needed — the last
    /// checkpoint, or the first record of a transaction active at it —
    /// so this bounds the log a peer reads before it can write anything
    /// back: 256 KiB reads in well under a millisecond, where 1 MiB took
    /// 1–4 ms of a peer recovery (`understudy demo --bench`). A checkpoint
    /// runs on a thread of its own and holds up no commit.
    pub checkpoint_bytes: u64,
    /// Which I/O backend the node's files go through (ignored when
    /// [`NodeOptions::io`] is given).
    pub backend: BackendChoice,
    /// Bytes per log segment of a log this node creates.
    pub log_segment_size: u64,
    /// Run the coordinator inside this process, listening on the cluster's
    /// coordinator address. Other nodes reach it over that address; this
    /// node calls it in-process, without a socket or a thread hop per lock
    /// request ([`lockmgr::server::LocalLink`]). Off by default: a node
    /// reaches a coordinator running elsewhere (its own process, or another
    /// node that embeds it) at the cluster's address.
    pub embed_coordinator: bool,
    /// With [`NodeOptions::embed_coordinator`]: listen on the cluster's
    /// coordinator address for other nodes and operator tools. Off, only
    /// this node reaches the coordinator (an embedded database,
    /// [`crate::open`]). On by default.
    pub listen: bool,
    /// The lease an embedded coordinator grants, in milliseconds.
    pub lease_ms: u32,
    /// How often nodes of an embedded coordinator send heartbeats, in
    /// milliseconds.
    pub heartbeat_ms: u32,
    /// How long an embedded coordinator waits without a heartbeat before it
    /// declares a node failed, in milliseconds; opening also waits twice
    /// this long, at most, for a coordinator to notice that this node's
    /// previous incarnation died before it is admitted again.
    pub failure_timeout_ms: u32,
    /// How long opening may wait for a peer's recovery of this node, or for
    /// the coordinator to notice this node's previous incarnation died.
    pub join_timeout: Duration,
    /// How long opening may wait for a coordinator that does not answer at
    /// all (one starting at the same moment) before
    /// [`crate::Error::NoCoordinator`], and for a process on this host that
    /// holds the node's log to let it go (one dying) before
    /// [`crate::Error::NodeRunning`].
    pub coordinator_wait: Duration,
    /// An I/O layer to use instead of one chosen by `backend` (tests inject
    /// faults through it).
    pub io: Option<Io>,
    /// Race to recover every node the coordinator reports failed (exactly
    /// one racer wins). Off: only an operator's `recover` does.
    pub auto_recovery: bool,
    /// A node that loses its coordinator lease joins again by itself, as a
    /// new incarnation, once it can (`crate::node::rejoin`); its handles
    /// serve the new one. Off: it stays stopped, every call failing, until
    /// it is dropped and opened again. Never for a node whose coordinator
    /// runs in its own process, which holds no lease.
    pub rejoin: bool,
    /// How long a peer recovery waits for the kernel's word that a failed
    /// node on this host is gone (its process and every write it had in
    /// flight) before giving up with [`crate::PeerError::NotFenced`].
    pub fence_patience: Duration,
    /// Reach the coordinator here instead of at the cluster's address (a
    /// second listener, or a proxy).
    pub coordinator: Option<lockmgr::Endpoint>,
    /// The command (program, then arguments; `{cluster}` and `{node}` are
    /// filled in) this node runs to restart a failed node light when a
    /// restart request for it is announced (see [`crate::restart`]); the
    /// coordinator sends restart requests only to nodes that have one.
    /// `None`: this node launches no restarts.
    pub restart_command: Option<Vec<String>>,
    /// For an operator, after inspection: let recovery (this node's own
    /// restart, and the peer recoveries it runs) go on past damage to a log
    /// that lost durable records, deciding by the pages' stamps which
    /// in-flight transactions committed under a lost intent, and accept a
    /// missing log (the data files are then taken as they are). Off: such
    /// damage stops recovery with [`crate::Error::LogDamaged`] or
    /// [`crate::Error::LogMissing`], and the retained locks stay.
    pub accept_log_damage: bool,
    /// Pages the node's buffer pool holds (at least
    /// [`crate::MIN_POOL_PAGES`]): its cache of table pages, read and
    /// written past the kernel's page cache (see `crate::pool`).
    pub pool_pages: usize,
    /// For the negative test of coherence only: take any cached page as
    /// current, whatever the lock manager says another node wrote since.
    /// A node with this on reads stale pages.
    #[doc(hidden)]
    pub trust_cached_pages: bool,
    /// The recovery agents of the external resources this node's
    /// transactions act on ([`crate::Transaction::act`]), by resource id:
    /// the same on every node, since any node may recover any node's log.
    /// A recovery that meets work of a resource without an agent here stops
    /// with [`crate::Error::MissingAgent`]. None by default.
    pub agents: Agents,
    /// Write redo for shipping to standby sites (`crate::redo`): the
    /// after-images of every committed transaction, in commit order, in
    /// `<cluster>/redo/<node>/redo.log`. Only in a cluster of one node
    /// ([`crate::Error::RedoNeedsOneNode`] otherwise). Off by default:
    /// nothing is written and nothing changes.
    pub redo: bool,
    /// With [`NodeOptions::redo`]: what each commit waits for once it is
    /// committed here, before it returns (synchronous replication: the
    /// `replication` crate's primary waits for enough standbys). `None`:
    /// commits return as soon as they are committed here.
    pub commit_gate: Option<Gate>,
}

/// A [`CommitGate`], shared, in [`NodeOptions`].
#[derive(Clone)]
pub struct Gate(pub Arc<dyn CommitGate>);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate(..)")
    }
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
            checkpoint_bytes: 256 << 10,
            backend: BackendChoice::Auto,
            // Small segments keep a peer's search past the end of a failed
            // log short; truncation recycles them.
            log_segment_size: 4 << 20,
            embed_coordinator: false,
            listen: true,
            lease_ms: 1000,
            heartbeat_ms: 100,
            failure_timeout_ms: 1500,
            join_timeout: Duration::from_secs(30),
            // Long enough for a coordinator started together with the node
            // to bind its socket; short enough that a missing one is said
            // at once.
            coordinator_wait: Duration::from_millis(300),
            io: None,
            auto_recovery: true,
            rejoin: true,
            fence_patience: Duration::from_secs(30),
            coordinator: None,
            restart_command: None,
            accept_log_damage: false,
            // 64 MiB of 4 KiB pages.
            pool_pages: 16 * 1024,
            trust_cached_pages: false,
            agents: Agents::new(),
            redo: false,
            commit_gate: None,
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
    /// The I/O its own recovery ran, by the path each operation took.
    pub io: wal::io::IoStats,
    /// Pieces of agent work (actions on external resources) its own
    /// recovery had the agents make final or undo.
    pub agent_work: usize,
}
