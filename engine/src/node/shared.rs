//! What every handle of a node shares across its incarnations.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::node::options::NodeOptions;
use crate::node::state::NodeState;

/// What every handle of a node shares: the state of its current
/// incarnation, replaced when it rejoins after a lease loss.
pub(crate) struct Shared {
    pub(super) current: std::sync::RwLock<Arc<NodeState>>,
    pub(super) cluster: Cluster,
    /// The [`crate::Node`] handles (clones included).
    pub(super) handles: std::sync::atomic::AtomicUsize,
    /// How to join again after a lease loss; `None` when the node does not
    /// ([`NodeOptions::rejoin`] off, or a coordinator in this process).
    pub(super) rejoin: Option<Plan>,
    /// Incarnations joined after a lease loss.
    pub(super) rejoins: std::sync::atomic::AtomicU64,
    /// Closed by [`crate::Node::close`]: no rejoining.
    pub(super) closed: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// No joining again from now on: the node was closed, or its last
    /// handle dropped. Set under the lock a rejoin installs its new
    /// incarnation under, so a rejoin either installed it before (and the
    /// caller sees it) or sees this and leaves.
    pub(crate) fn close_for_good(&self) {
        let _current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.closed.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The current incarnation's state.
    pub(crate) fn current(&self) -> Arc<NodeState> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How a node opens again (`crate::node::rejoin`).
pub(crate) struct Plan {
    pub(super) dir: PathBuf,
    pub(super) node_id: u32,
    pub(super) opts: NodeOptions,
}

impl Plan {
    /// The plan of a node opened so, or `None` if it does not rejoin.
    pub(crate) fn of(dir: &std::path::Path, node_id: u32, opts: &NodeOptions) -> Option<Plan> {
        (opts.rejoin && !opts.embed_coordinator).then(|| Plan {
            dir: dir.to_path_buf(),
            node_id,
            opts: opts.clone(),
        })
    }
}
