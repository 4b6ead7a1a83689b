//! Which nodes are members of the cluster, which of them are live, and
//! their incarnation numbers.
//!
//! Kept deliberately small: leases and heartbeats belong to the coordinator
//! server, which decides *when* a node has failed; this only records that it
//! has. Not thread-safe on its own: the [`crate::Registry`] keeps it behind
//! its mutex, so that a liveness check and the registration that depends on
//! it are one atomic step.

use std::collections::BTreeMap;

use crate::error::RegistryError;
use crate::ids::NodeId;

/// Whether a member node is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Joined, and not declared failed since.
    Live,
    /// Declared failed (missed heartbeats or a dropped connection), and not
    /// rejoined since.
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    incarnation: u64,
    liveness: Liveness,
}

/// The members of the cluster. One entry per node that ever joined (the
/// cluster configuration bounds the number of nodes).
#[derive(Clone, Debug, Default)]
pub struct Membership {
    nodes: BTreeMap<NodeId, Member>,
}

impl Membership {
    /// No members.
    pub fn new() -> Self {
        Self::default()
    }

    /// `node` joins (or rejoins after a failure) and gets its incarnation
    /// number: 1 the first time, one more on every rejoin. A node that is
    /// still live must first be declared failed: its old incarnation may
    /// still hold locks.
    pub fn join(&mut self, node: NodeId) -> Result<u64, RegistryError> {
        let incarnation = match self.nodes.get(&node) {
            None => 1,
            Some(Member {
                liveness: Liveness::Live,
                ..
            }) => return Err(RegistryError::AlreadyLive { node }),
            Some(Member { incarnation, .. }) => incarnation
                .checked_add(1)
                .ok_or(RegistryError::IncarnationExhausted { node })?,
        };
        self.nodes.insert(
            node,
            Member {
                incarnation,
                liveness: Liveness::Live,
            },
        );
        Ok(incarnation)
    }

    /// Declares `node` failed. Returns the incarnation that failed.
    pub fn fail(&mut self, node: NodeId) -> Result<u64, RegistryError> {
        let member = self.nodes.get_mut(&node).ok_or(RegistryError::UnknownNode { node })?;
        if member.liveness != Liveness::Live {
            return Err(RegistryError::NodeNotLive { node });
        }
        member.liveness = Liveness::Failed;
        Ok(member.incarnation)
    }

    /// Whether `node` is live or failed; `None` if it never joined.
    pub fn liveness(&self, node: NodeId) -> Option<Liveness> {
        self.nodes.get(&node).map(|member| member.liveness)
    }

    /// The current (or, for a failed node, last) incarnation of `node`.
    pub fn incarnation(&self, node: NodeId) -> Option<u64> {
        self.nodes.get(&node).map(|member| member.incarnation)
    }

    /// Puts a member back as a durable record saw it (a restarted
    /// coordinator restoring its state).
    pub fn restore(&mut self, node: NodeId, incarnation: u64, liveness: Liveness) {
        self.nodes.insert(node, Member { incarnation, liveness });
    }

    /// Every node, sorted, with its liveness.
    pub fn nodes(&self) -> Vec<(NodeId, Liveness)> {
        self.nodes
            .iter()
            .map(|(node, member)| (*node, member.liveness))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_grow_across_rejoins() {
        let mut members = Membership::new();
        assert_eq!(members.join(1), Ok(1));
        assert_eq!(members.join(1), Err(RegistryError::AlreadyLive { node: 1 }));
        assert_eq!(members.fail(1), Ok(1));
        assert_eq!(members.fail(1), Err(RegistryError::NodeNotLive { node: 1 }));
        assert_eq!(members.liveness(1), Some(Liveness::Failed));
        assert_eq!(members.join(1), Ok(2));
        assert_eq!(members.liveness(1), Some(Liveness::Live));
        assert_eq!(members.fail(9), Err(RegistryError::UnknownNode { node: 9 }));
        assert_eq!(members.nodes(), vec![(1, Liveness::Live)]);
    }
}
