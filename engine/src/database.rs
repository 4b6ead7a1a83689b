//! The embedded database: one process opens a directory and works
//! ([`open`]). No socket, no lease, no heartbeats, nothing to configure.
//!
//! A database directory is a cluster directory of one node (node 1), so
//! the same files can later be opened as a cluster
//! ([`crate::Node::open`], `understudy node`): its `cluster.conf` names the
//! coordinator socket `coordinator.sock` relative to the directory, and
//! nothing in it stores an absolute path, so it can be moved, copied while
//! closed, and restored.
//!
//! Opened as a database, the node runs the coordinator in its own process
//! and reaches it by a call, not a socket; the coordinator listens nowhere.
//! A crash is detected by a file lock: `DATABASE.lock` is held
//! (`flock`, exclusive) by the process that has the database open, and the
//! kernel lets it go when that process dies, however it dies. A second
//! process is refused at once ([`Error::DatabaseInUse`]). Reopening after a
//! crash is immediate: holding the lock proves the old process gone, so
//! the coordinator fails its old membership at once (no failure timeout
//! waited out, `lockmgr::CoordinatorConfig::departed`), and the node's own
//! restart backs out what it had in flight. With the coordinator in the same
//! process the node holds no lease (`lockmgr::server::LocalLink::leased`):
//! a long pause (`SIGSTOP`, a suspended laptop, a debugger) pauses both,
//! and the database goes on afterwards.

use std::fs::File;
use std::path::Path;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::node::options::NodeOptions;
use crate::node::Node;

/// The file whose exclusive lock the process with the database open holds.
pub const LOCK_FILE: &str = "DATABASE.lock";

/// The node id a database runs as.
pub const DATABASE_NODE: u32 = 1;

/// The page size of a database created by [`open`].
const PAGE_SIZE: usize = 4096;

/// Opens the database in `dir`, creating the directory and an empty
/// database if there is none; see the module docs.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = understudy::open(dir.path())?;
/// db.create_ordered_table("users")?;
/// db.run(|txn| txn.put("users", b"ada", b"lovelace"))?;
/// let mut txn = db.begin()?;
/// assert_eq!(txn.get("users", b"ada")?, Some(b"lovelace".to_vec()));
/// txn.rollback()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open(dir: impl AsRef<Path>) -> Result<Node> {
    open_with(dir, NodeOptions::default())
}

/// [`open`] with options (buffer pool size, recovery agents, lock wait…).
/// The coordinator is always embedded and listens nowhere, whatever
/// `opts` says of it.
pub fn open_with(dir: impl AsRef<Path>, mut opts: NodeOptions) -> Result<Node> {
    let dir = dir.as_ref();
    let io_err = |p: &Path, e| Error::Io(wal::io::IoError::new(wal::io::OpKind::Open, p, None, e));
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(|e| io_err(dir, e))?;
    let lock = take_lock(dir)?;
    if !dir.join("cluster.conf").exists() {
        let endpoint = lockmgr::Endpoint::Unix("coordinator.sock".into());
        Cluster::create(dir, &[DATABASE_NODE], endpoint, PAGE_SIZE)?;
    }
    opts.embed_coordinator = true;
    opts.listen = false;
    opts.coordinator = None;
    Node::open_holding(dir, DATABASE_NODE, opts, Some(lock))
}

/// The exclusive lock on `dir`'s [`LOCK_FILE`], or
/// [`Error::DatabaseInUse`] if another process holds it.
fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    wal::lock_file::try_lock(&path)
        .map_err(|e| Error::Io(wal::io::IoError::new(wal::io::OpKind::Open, &path, None, e)))?
        .ok_or_else(|| Error::DatabaseInUse { dir: dir.to_path_buf() })
}
