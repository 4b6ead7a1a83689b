//! The engine's errors. Corruption (bytes on disk are wrong) is kept apart
//! from I/O failures and from conditions a caller handles by retrying the
//! transaction (`Retained`, `Deadlock`, `LockTimeout`, `Conflict`).

use std::path::PathBuf;

use lockmgr::{ClientError, ResourceId};

/// Errors of the engine's API. Corruption names the file and page;
/// [`Error::is_retryable`] tells which errors a retry of the whole
/// transaction may cure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A page failed its checksum or does not belong where it was read.
    #[error("corrupt page {page} of {}: {detail}", file.display())]
    CorruptPage {
        /// The table file.
        file: PathBuf,
        /// The page number in it.
        page: u64,
        /// What is wrong with it.
        detail: String,
    },

    /// A file other than a page (catalog, config) is malformed.
    #[error("corrupt {}: {detail}", file.display())]
    CorruptFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// A page that committed data refers to (a table's header, a bucket, a
    /// page of an overflow chain) reads as never written: a hole in the
    /// file, or past the end of a file cut short. Never read as an empty
    /// page, which would lose the rows it held.
    #[error("page {page} of {} is missing: committed data refers to it, but it reads as never written (the file was cut short or zeroed)", file.display())]
    MissingPage {
        /// The table file.
        file: PathBuf,
        /// The page number.
        page: u64,
    },

    /// A table file the catalog lists does not exist.
    #[error("table file {} is missing (the catalog lists it)", file.display())]
    TableFileMissing {
        /// The file.
        file: PathBuf,
    },

    /// A table file shorter than its header and buckets, which its creation
    /// wrote: it was cut short.
    #[error("table file {} holds {len} bytes, fewer than the {min_len} its creation wrote: it was cut short", file.display())]
    TableFileTruncated {
        /// The file.
        file: PathBuf,
        /// Its length, in bytes.
        len: u64,
        /// The least it must have, in bytes.
        min_len: u64,
    },

    /// A table file that is not the one the catalog means: another table's,
    /// another cluster's, or a replacement.
    #[error("table file {} is not the file the catalog lists: {detail}", file.display())]
    TableFileMismatch {
        /// The file.
        file: PathBuf,
        /// What differs.
        detail: String,
    },

    /// A page number whose byte offset does not fit a file (a damaged
    /// overflow chain or log record names it).
    #[error("page {page} of {} lies beyond any possible file offset", file.display())]
    PageOutOfRange {
        /// The table file.
        file: PathBuf,
        /// The page number.
        page: u64,
    },

    /// A read, write, sync or open failed.
    #[error(transparent)]
    Io(#[from] wal::io::IoError),

    /// A node's log lost records that were durable: a data page carries the
    /// stamp of a commit intent at or past where the log now ends (the
    /// page could only be written once that intent was durable). What was
    /// cut there was taken for a torn tail, but it was acknowledged work;
    /// backing out by what is left could undo a committed transaction. The
    /// node's retained locks stay. After inspection, an operator may let
    /// the pages decide (`--accept-log-damage`, [`crate::NodeOptions`]).
    #[error(
        "the log of node {node} lost durable records: {detail}. Its retained locks stay. Inspect the log \
         (`understudy inspect-log --dir <cluster>/logs/{node}`) and the pages it names; to keep what the pages \
         say, run `understudy restart-light --node {node} --accept-log-damage` (or `recover --node {node} \
         --accept-log-damage`)"
    )]
    LogDamaged {
        /// The node whose log it is.
        node: u32,
        /// Where the log now ends.
        end: wal::Lsn,
        /// Which page proves it, and what was cut.
        detail: String,
    },

    /// The log of a node that must be recovered is missing: its in-flight
    /// work cannot be backed out. Its retained locks stay.
    #[error(
        "the log of node {node} is missing ({}): its in-flight work cannot be backed out. Its retained locks \
         stay. Restore the log directory, or accept the data files as they are with `understudy restart-light \
         --node {node} --accept-log-damage`",
        dir.display()
    )]
    LogMissing {
        /// The node whose log it is.
        node: u32,
        /// Its log directory.
        dir: PathBuf,
    },

    /// The node's log failed or is corrupt.
    #[error("log: {0}")]
    Log(#[from] wal::WalError),

    /// The resource is held by a failed node whose recovery has not finished;
    /// retry the transaction later.
    #[error("{resource:?}{} is retained by failed node {node}; retry later", site(at))]
    Retained {
        /// The failed node.
        node: u32,
        /// The locked resource.
        resource: ResourceId,
        /// The table and key of the call that wanted it.
        at: Option<LockSite>,
    },

    /// This transaction was chosen as a deadlock victim; it was rolled back.
    #[error("deadlock{}: the transaction was chosen as the victim; retry it", site(at))]
    Deadlock {
        /// The table and key of the call whose lock request closed the
        /// cycle.
        at: Option<LockSite>,
    },

    /// A lock could not be had within the wait limit.
    #[error("lock wait on {resource:?}{} timed out", site(at))]
    LockTimeout {
        /// The resource waited for.
        resource: ResourceId,
        /// The table and key of the call that waited.
        at: Option<LockSite>,
    },

    /// A lock requested without waiting is held in a conflicting mode.
    #[error("{resource:?}{} is locked in a conflicting mode", site(at))]
    Conflict {
        /// The resource.
        resource: ResourceId,
        /// The table and key of the call that wanted it.
        at: Option<LockSite>,
    },

    /// The node's lease lapsed or its coordinator connection is gone: it
    /// must not write, and stops.
    #[error("the node lost its lease and stopped writing")]
    LeaseLost,

    /// The node id is live already: a process on this host holds its log.
    #[error("node {node} is running: a live process on this host holds its log; stop it first, or use another id")]
    NodeRunning {
        /// The node id.
        node: u32,
    },

    /// No coordinator answers at the cluster's address.
    #[error("no coordinator answers at {endpoint}: {reason}")]
    NoCoordinator {
        /// Where the node looked for it.
        endpoint: String,
        /// What the connection attempt said.
        reason: String,
    },

    /// Any other coordinator refusal or failure.
    #[error("coordinator: {0}")]
    Coordinator(ClientError),

    /// No table has this name.
    #[error("no table named {0:?}")]
    NoSuchTable(String),

    /// A table of this name exists already.
    #[error("a table named {0:?} exists already")]
    TableExists(String),

    /// A table name that is empty or too long.
    #[error("table names are 1 to {max} bytes; {name:?} is not")]
    InvalidTableName {
        /// The name given.
        name: String,
        /// The longest name, in bytes.
        max: usize,
    },

    /// A hash table's bucket count out of bounds.
    #[error("a table has 1 to {max} buckets, not {buckets}")]
    InvalidBucketCount {
        /// The count given.
        buckets: u32,
        /// The largest count.
        max: u32,
    },

    /// A key longer than the limit.
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },

    /// A value longer than the limit: for a hash table it depends on the
    /// key's length and the page size, for an ordered table it is
    /// [`crate::MAX_VALUE`].
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },

    /// A range, prefix, first/last or count asked of a hash table, which
    /// keeps no order (create the table with `create_ordered_table`).
    #[error("table {0:?} is a hash table: ranges, prefixes, first/last and counts need an ordered table")]
    NotOrdered(String),

    /// A range whose start lies after its end, or that excludes the one key
    /// both bounds name.
    #[error("invalid range: {0}")]
    InvalidRange(String),

    /// The transaction was committed or rolled back already.
    #[error("the transaction has ended")]
    TransactionEnded,

    /// A savepoint of another transaction, or one a rollback to an earlier
    /// savepoint removed.
    #[error("the savepoint belongs to another transaction or is gone")]
    InvalidSavepoint,

    /// A node cannot close while transactions of it are running.
    #[error("transactions are still running")]
    TransactionsRunning,

    /// A node id that is not one of the cluster's nodes.
    #[error("node {node} is not one of the cluster's nodes {nodes:?}")]
    UnknownNode {
        /// The id given.
        node: u32,
        /// The cluster's node ids.
        nodes: Vec<u32>,
    },

    /// Node ids for a new cluster that are missing, zero or repeated.
    #[error("node ids must be given, non-zero and distinct: {ids:?}")]
    InvalidNodeIds {
        /// The ids given.
        ids: Vec<u32>,
    },

    /// A page size the engine does not support.
    #[error("page size must be one of {supported:?}, not {page_size}")]
    UnsupportedPageSize {
        /// The size given, in bytes.
        page_size: usize,
        /// The supported sizes, in bytes.
        supported: &'static [usize],
    },

    /// Another process has the database directory open ([`crate::open`]).
    #[error("{} is open in another process (it holds {}); close it there first", dir.display(), dir.join(crate::database::LOCK_FILE).display())]
    DatabaseInUse {
        /// The database directory.
        dir: PathBuf,
    },

    /// A directory that holds a cluster already.
    #[error("{} already holds a cluster", dir.display())]
    ClusterExists {
        /// The directory.
        dir: PathBuf,
    },

    /// The log of node `node` holds in-flight work of transaction `txn` on
    /// resource `resource`, and no recovery agent is registered for that
    /// resource on the node recovering it. Recovery stopped before writing
    /// anything: the work stays undone and the retained locks stay, until a
    /// node that registers the agent recovers the log.
    #[error(
        "the log of node {node} holds in-flight work of transaction {txn} on resource {resource}, and this node \
         registers no recovery agent for resource {resource}; recovery stopped before writing anything and the \
         retained locks stay. Recover it from a node that registers that agent (the `understudy` program registers \
         the file outbox with `--outbox <dir>`)"
    )]
    MissingAgent {
        /// The resource (agent id) the work belongs to.
        resource: wal::AgentId,
        /// The node whose log it is.
        node: u32,
        /// The transaction the work belongs to.
        txn: wal::TxnId,
    },

    /// A transaction asked to act on a resource no agent is registered for
    /// on this node ([`crate::Agents`]); nothing was logged.
    #[error("no recovery agent is registered for resource {resource} on this node")]
    UnknownAgent {
        /// The resource asked for.
        resource: wal::AgentId,
    },

    /// A registration the agent registry refuses: resource 0 (the data
    /// pages' own agent), or a resource registered twice.
    #[error("cannot register a recovery agent for resource {resource}: {reason}")]
    InvalidAgent {
        /// The resource.
        resource: wal::AgentId,
        /// Why not.
        reason: &'static str,
    },

    /// A work identifier longer than an agent record holds.
    #[error("a work identifier of {len} bytes exceeds the limit of {max}")]
    WorkTooLarge {
        /// Its length, in bytes.
        len: usize,
        /// The limit, in bytes ([`wal::record::MAX_AGENT_WORK`]).
        max: usize,
    },

    /// A recovery agent failed to make work on its resource final
    /// (`step` "commit") or to undo it (`step` "undo"). In a live
    /// transaction the node stopped: the work stays in the log, and
    /// recovery (the node's restart or a peer) asks the agent again; in a
    /// recovery, the recovery stopped and the retained locks stay.
    #[error("recovery agent of resource {resource} failed to {step} work of transaction {txn}: {source}")]
    Agent {
        /// The resource.
        resource: wal::AgentId,
        /// The transaction the work belongs to.
        txn: wal::TxnId,
        /// `"commit"` or `"undo"`.
        step: &'static str,
        /// The agent's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The transaction is committed (its pages are durable), but making
    /// its agents' work final failed. The node stopped; the work stays in
    /// the log, and recovery (the node's restart or a peer) finishes it.
    #[error("transaction {txn} committed, but finishing its agents' work failed and the node stopped (recovery finishes it): {cause}")]
    CommittedUnfinished {
        /// The transaction.
        txn: wal::TxnId,
        /// What failed.
        cause: String,
    },

    /// The work of a nested scope panicked ([`crate::Transaction::scope`]);
    /// the scope was backed out and the transaction goes on.
    #[error("the work of a nested scope panicked and was backed out: {message}")]
    ScopePanicked {
        /// The panic's message, when it had one.
        message: String,
    },

    /// A thread to run a nested scope on could not be started
    /// ([`crate::Transaction::scope_on_thread`]); the scope was not opened.
    #[error("a thread for a nested scope could not be started: {0}")]
    ScopeThread(#[source] std::io::Error),

    /// A transaction opened more nested scopes than a scope token numbers
    /// (2^31 - 1).
    #[error("a transaction opens at most {max} nested scopes")]
    TooManyScopes {
        /// The most scopes one transaction may open.
        max: u32,
    },

    /// A file name the file outbox refuses: empty, over 255 bytes, with a
    /// `/` or NUL, starting with `.`, or `..`.
    #[error(
        "{name:?} is not a name the file outbox publishes (1 to 255 bytes, no '/', no NUL, not starting with '.')"
    )]
    InvalidOutboxName {
        /// The name given.
        name: String,
    },

    /// A commit's log flush, page write or sync failed; the node stopped
    /// and leaves itself to recovery. The transaction is not committed if
    /// its `Abort` record became durable. If the log failed too, recovery
    /// decides by what reached the disk: its intent's pages, or — for a
    /// transaction that changed no page and acted through agents only —
    /// its intent, which a failed flush may have written all the same.
    #[error("commit failed and the node stopped: {0}")]
    CommitFailed(String),

    /// Redo for shipping was asked of a node of a cluster of several
    /// nodes: their commits are not yet put in one order.
    #[error("redo for shipping needs a cluster of one node; this one has {nodes}")]
    RedoNeedsOneNode {
        /// The cluster's node count.
        nodes: usize,
    },

    /// The transaction committed here, but the commit gate (synchronous
    /// replication) did not confirm it: it may be missing on standbys.
    #[error("transaction {seq} of the commit order committed here but is not known replicated: {cause}")]
    NotReplicated {
        /// Its commit sequence number.
        seq: u64,
        /// What the gate said.
        cause: String,
    },

    /// The node stopped after an unrecoverable I/O failure.
    #[error("the node stopped after an earlier failure: {0}")]
    Stopped(String),
}

impl Error {
    /// An error opening node `node`'s log: one that had to exist and does
    /// not is [`Error::LogMissing`].
    pub(crate) fn opening_log(e: wal::WalError, node: u32) -> Error {
        match e {
            wal::WalError::NoLog { dir } => Error::LogMissing { node, dir },
            other => other.into(),
        }
    }

    /// Whether retrying the whole transaction may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Retained { .. } | Error::Deadlock { .. } | Error::LockTimeout { .. } | Error::Conflict { .. }
        )
    }

    /// The lock errors' site: a lock error raised by a call on `table`
    /// (for `key`, when the call names one) says so, unless it says where
    /// already. Other errors are returned as they are.
    pub(crate) fn at(mut self, table: &str, key: Option<&[u8]>) -> Error {
        if let Error::Retained { at, .. }
        | Error::Deadlock { at }
        | Error::LockTimeout { at, .. }
        | Error::Conflict { at, .. } = &mut self
        {
            if at.is_none() {
                *at = Some(LockSite {
                    table: table.to_string(),
                    key: key.map(<[u8]>::to_vec),
                });
            }
        }
        self
    }

    /// Where a lock error arose, if it says.
    pub fn lock_site(&self) -> Option<&LockSite> {
        match self {
            Error::Retained { at, .. }
            | Error::Deadlock { at }
            | Error::LockTimeout { at, .. }
            | Error::Conflict { at, .. } => at.as_ref(),
            _ => None,
        }
    }
}

/// Where a lock was wanted: the table, and the key, of the call that
/// wanted it (`Transaction::get`, `put`, `delete`, …); no key for a call
/// over a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSite {
    /// The table.
    pub table: String,
    /// The key, when the call named one.
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Display for LockSite {
    /// `table "t", key "k"`: the key as text when it is printable UTF-8,
    /// else as hex, either cut at 64 bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table {:?}", self.table)?;
        let Some(key) = &self.key else { return Ok(()) };
        let shown = &key[..key.len().min(64)];
        let more = if key.len() > shown.len() { "…" } else { "" };
        match std::str::from_utf8(shown) {
            Ok(text) if !text.chars().any(char::is_control) => write!(f, ", key {text:?}{more}"),
            _ => {
                write!(f, ", key 0x")?;
                shown.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
                write!(f, "{more}")
            }
        }
    }
}

/// ` (table "t", key "k")`, or nothing when the site is unknown.
fn site(at: &Option<LockSite>) -> String {
    at.as_ref().map_or_else(String::new, |s| format!(" ({s})"))
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match e {
            ClientError::Retained { node, resource } => Error::Retained {
                node,
                resource,
                at: None,
            },
            ClientError::Deadlock { .. } => Error::Deadlock { at: None },
            ClientError::Timeout { resource } => Error::LockTimeout { resource, at: None },
            ClientError::Conflict { resource } => Error::Conflict { resource, at: None },
            ClientError::LeaseLost | ClientError::Disconnected => Error::LeaseLost,
            other => Error::Coordinator(other),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
