//! The counterpart registry: per failed node, who (if anyone) is recovering
//! it.
//!
//! ```text
//!             register(by live node ≠ failed)            unregister(recovered)
//!  inactive ────────────────────────────────▶ active ─────────────────────────▶ recovered
//!     ▲                                         │         (retained locks released)
//!     └──── unregister(abandoned) / counterpart failed ┘
//! ```
//!
//! Registering returns a [`Grant`] for the failed node's private log; as only
//! an inactive node can be registered for, exactly one of several racing
//! nodes wins. Automatic recovery (every live node races to register) and
//! operator-initiated recovery (a command that registers, recovers and
//! unregisters) use the same calls. All state sits behind one mutex of the
//! sync shim: registrations are rare, and one lock makes "the caller is live
//! and the node is inactive, so register" a single atomic step.

use std::collections::BTreeMap;

use crate::error::RegistryError;
use crate::ids::NodeId;
use crate::membership::{Liveness, Membership};
use crate::sync::{lock, Mutex};

/// Whether the caller of a registry call has authenticated with the cluster
/// secret. The coordinator knows this per connection and passes it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthState {
    /// The connection proved it knows the cluster secret.
    Authenticated,
    /// It did not (yet).
    Unauthenticated,
}

/// Where the recovery of a failed node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryStatus {
    /// Nobody is recovering it; its retained locks are held.
    Inactive,
    /// `counterpart` is recovering it.
    Active {
        /// The registered counterpart.
        counterpart: NodeId,
    },
    /// Its in-flight work has been backed out and its retained locks released.
    Recovered,
}

/// The entitlement of one counterpart to recover one failed node's log. The
/// counterpart shows it to end its registration; the coordinator signs it
/// into the proof (`wal::access`) that the failed node's log checks when
/// the counterpart opens it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    failed: NodeId,
    incarnation: u64,
    counterpart: NodeId,
    token: u64,
}

impl Grant {
    /// The failed node whose log this grant opens.
    pub const fn failed(&self) -> NodeId {
        self.failed
    }

    /// The incarnation of the failed node that died.
    pub const fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The node the grant was given to.
    pub const fn counterpart(&self) -> NodeId {
        self.counterpart
    }

    /// A number unique among the grants of one registry.
    pub const fn token(&self) -> u64 {
        self.token
    }
}

/// How a counterpart's recovery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecoveryOutcome {
    /// Every in-flight transaction was backed out and end records logged.
    Recovered,
    /// The counterpart gave up; another node may register.
    Abandoned,
}

/// What the coordinator must do with the failed node's retained locks after
/// an unregistration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetainedLocks {
    /// Release them: [`crate::LockTable::release_retained`].
    Release,
    /// Keep them: the node is still unrecovered.
    Keep,
}

/// Everything the registry knows about one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeStatus {
    /// Live or failed.
    pub liveness: Liveness,
    /// Its current (or last) incarnation.
    pub incarnation: u64,
    /// Its recovery, if it is failed.
    pub recovery: Option<RecoveryStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recovery {
    Inactive,
    Active(Grant),
    Recovered,
}

#[derive(Debug)]
struct Inner {
    members: Membership,
    /// One entry per failed node; removed when it rejoins.
    recoveries: BTreeMap<NodeId, Recovery>,
    next_token: u64,
}

/// The membership and the counterpart registry, shared between threads.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Registry {
    /// An empty registry whose first grant token is `first_token`. A
    /// restarted coordinator starts past every token it handed out before,
    /// so an old grant never matches a new registration.
    pub fn new(first_token: u64) -> Self {
        let inner = Inner {
            members: Membership::new(),
            recoveries: BTreeMap::new(),
            next_token: first_token,
        };
        Self {
            inner: Mutex::new(inner),
        }
    }

    /// `node` joins or rejoins the cluster; returns its incarnation. A
    /// failed node cannot rejoin while a counterpart is recovering it (two
    /// parties would back out the same log); otherwise its recovery record
    /// is dropped and its own restart deals with whatever is left.
    pub fn join(&self, node: NodeId) -> Result<u64, RegistryError> {
        let mut inner = lock(&self.inner);
        if let Some(Recovery::Active(grant)) = inner.recoveries.get(&node) {
            return Err(RegistryError::RecoveryInProgress {
                node,
                counterpart: grant.counterpart,
            });
        }
        let incarnation = inner.members.join(node)?;
        inner.recoveries.remove(&node);
        tracing::info!(node, incarnation, "node joined");
        Ok(incarnation)
    }

    /// Declares `node` failed: its recovery becomes inactive, and any
    /// registration it held as a counterpart is dropped. Returns the failed
    /// nodes that lost their counterpart (and need a new one).
    pub fn node_failed(&self, node: NodeId) -> Result<Vec<NodeId>, RegistryError> {
        let mut inner = lock(&self.inner);
        let incarnation = inner.members.fail(node)?;
        inner.recoveries.insert(node, Recovery::Inactive);
        let orphaned = drop_registrations_of(&mut inner, node);
        tracing::info!(node, incarnation, orphaned = orphaned.len(), "node failed");
        Ok(orphaned)
    }

    /// `caller` asks to become the counterpart of `failed`. Succeeds only if
    /// the caller is authenticated, live and not `failed` itself, and
    /// `failed` is a failed node whose recovery is inactive.
    pub fn register_counterpart(
        &self,
        caller: NodeId,
        auth: AuthState,
        failed: NodeId,
    ) -> Result<Grant, RegistryError> {
        if auth != AuthState::Authenticated {
            return Err(RegistryError::NotAuthenticated);
        }
        let mut inner = lock(&self.inner);
        let failed_liveness = inner
            .members
            .liveness(failed)
            .ok_or(RegistryError::UnknownNode { node: failed })?;
        if caller == failed {
            return Err(RegistryError::CallerIsFailedNode { node: failed });
        }
        match inner.members.liveness(caller) {
            None => return Err(RegistryError::UnknownNode { node: caller }),
            Some(Liveness::Failed) => return Err(RegistryError::CallerNotLive { caller }),
            Some(Liveness::Live) => {}
        }
        if failed_liveness != Liveness::Failed {
            return Err(RegistryError::NodeNotFailed { node: failed });
        }
        match inner.recoveries.get(&failed) {
            Some(Recovery::Active(grant)) => {
                return Err(RegistryError::AlreadyActive {
                    failed,
                    counterpart: grant.counterpart,
                })
            }
            Some(Recovery::Recovered) => return Err(RegistryError::AlreadyRecovered { node: failed }),
            Some(Recovery::Inactive) | None => {}
        }
        let incarnation = inner.members.incarnation(failed).unwrap_or_default();
        let token = inner.next_token;
        // 2^64 grants will not be handed out; wrapping keeps this panic-free.
        inner.next_token = token.wrapping_add(1);
        let grant = Grant {
            failed,
            incarnation,
            counterpart: caller,
            token,
        };
        inner.recoveries.insert(failed, Recovery::Active(grant));
        tracing::info!(failed, counterpart = caller, token, "counterpart registered");
        Ok(grant)
    }

    /// The counterpart holding `grant` ends its registration. `Recovered`
    /// marks the node recovered and answers [`RetainedLocks::Release`];
    /// `Abandoned` makes it inactive again, its locks still retained.
    pub fn unregister_counterpart(
        &self,
        caller: NodeId,
        auth: AuthState,
        grant: &Grant,
        outcome: RecoveryOutcome,
    ) -> Result<RetainedLocks, RegistryError> {
        if auth != AuthState::Authenticated {
            return Err(RegistryError::NotAuthenticated);
        }
        let failed = grant.failed;
        let mut inner = lock(&self.inner);
        if inner.members.liveness(failed).is_none() {
            return Err(RegistryError::UnknownNode { node: failed });
        }
        match inner.recoveries.get(&failed) {
            Some(Recovery::Active(active)) if active == grant && active.counterpart == caller => {}
            _ => return Err(RegistryError::NotCounterpart { failed, caller }),
        }
        let (next, locks) = match outcome {
            RecoveryOutcome::Recovered => (Recovery::Recovered, RetainedLocks::Release),
            RecoveryOutcome::Abandoned => (Recovery::Inactive, RetainedLocks::Keep),
        };
        inner.recoveries.insert(failed, next);
        tracing::info!(failed, counterpart = caller, ?outcome, "counterpart unregistered");
        Ok(locks)
    }

    /// Drops every registration held by `node` (it failed while recovering
    /// someone): those recoveries become inactive, so another node can take
    /// over. Returns the failed nodes concerned. [`Self::node_failed`] does
    /// this already; this is for a coordinator that learns of the failure
    /// some other way.
    pub fn counterpart_failed(&self, node: NodeId) -> Vec<NodeId> {
        drop_registrations_of(&mut lock(&self.inner), node)
    }

    /// Everything known about `node`; `None` if it never joined.
    pub fn status(&self, node: NodeId) -> Option<NodeStatus> {
        let inner = lock(&self.inner);
        status_of(&inner, node)
    }

    /// Every node's status, sorted by node id (for operators).
    pub fn statuses(&self) -> Vec<(NodeId, NodeStatus)> {
        all_statuses(&lock(&self.inner))
    }
}

fn all_statuses(inner: &Inner) -> Vec<(NodeId, NodeStatus)> {
    inner
        .members
        .nodes()
        .into_iter()
        .filter_map(|(node, _)| Some((node, status_of(inner, node)?)))
        .collect()
}

fn status_of(inner: &Inner, node: NodeId) -> Option<NodeStatus> {
    let recovery = inner.recoveries.get(&node).map(|recovery| match recovery {
        Recovery::Inactive => RecoveryStatus::Inactive,
        Recovery::Active(grant) => RecoveryStatus::Active {
            counterpart: grant.counterpart,
        },
        Recovery::Recovered => RecoveryStatus::Recovered,
    });
    Some(NodeStatus {
        liveness: inner.members.liveness(node)?,
        incarnation: inner.members.incarnation(node)?,
        recovery,
    })
}

/// What a restarted coordinator needs to rebuild a [`Registry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySnapshot {
    /// The next grant token; every token handed out is below it.
    pub next_token: u64,
    /// Every member and its status.
    pub nodes: Vec<(NodeId, NodeStatus)>,
}

impl Registry {
    /// `node` leaves cleanly, holding no write lock: it is failed and at once
    /// recovered (nothing of it needs backing out), so it may join again.
    pub fn leave(&self, node: NodeId) -> Result<Vec<NodeId>, RegistryError> {
        let mut inner = lock(&self.inner);
        inner.members.fail(node)?;
        inner.recoveries.insert(node, Recovery::Recovered);
        let orphaned = drop_registrations_of(&mut inner, node);
        tracing::info!(node, orphaned = orphaned.len(), "node left");
        Ok(orphaned)
    }

    /// The state to keep durably.
    pub fn snapshot(&self) -> RegistrySnapshot {
        let inner = lock(&self.inner);
        RegistrySnapshot {
            next_token: inner.next_token,
            nodes: all_statuses(&inner),
        }
    }

    /// Rebuilds a registry from a snapshot. An active registration comes
    /// back inactive: its counterpart's session died with the coordinator,
    /// and recovery is idempotent, so a counterpart simply registers again.
    pub fn restore(snapshot: &RegistrySnapshot) -> Registry {
        let mut members = Membership::new();
        let mut recoveries = BTreeMap::new();
        for (node, status) in &snapshot.nodes {
            members.restore(*node, status.incarnation, status.liveness);
            if let Some(r) = status.recovery {
                recoveries.insert(
                    *node,
                    match r {
                        RecoveryStatus::Recovered => Recovery::Recovered,
                        RecoveryStatus::Inactive | RecoveryStatus::Active { .. } => Recovery::Inactive,
                    },
                );
            }
        }
        Registry {
            inner: Mutex::new(Inner {
                members,
                recoveries,
                next_token: snapshot.next_token,
            }),
        }
    }
}

fn drop_registrations_of(inner: &mut Inner, counterpart: NodeId) -> Vec<NodeId> {
    let mut orphaned = Vec::new();
    for (failed, recovery) in &mut inner.recoveries {
        if matches!(recovery, Recovery::Active(grant) if grant.counterpart == counterpart) {
            *recovery = Recovery::Inactive;
            orphaned.push(*failed);
        }
    }
    for failed in &orphaned {
        tracing::warn!(failed, counterpart, "counterpart failed; recovery inactive again");
    }
    orphaned
}
