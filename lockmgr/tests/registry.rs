//! The counterpart registry: every refusal reason, exactly-once registration,
//! and the inactive → active → recovered / inactive transitions.
#![cfg(not(loom))]

use lockmgr::{
    AuthState, Liveness, NodeStatus, RecoveryOutcome, RecoveryStatus, Registry, RegistryError, RetainedLocks,
};
use proptest::prelude::*;

const AUTH: AuthState = AuthState::Authenticated;

/// Nodes 1, 2 and 3 live, then node 3 failed.
fn cluster() -> Registry {
    let registry = Registry::default();
    for node in 1..=3 {
        assert_eq!(registry.join(node), Ok(1));
    }
    assert_eq!(registry.node_failed(3), Ok(vec![]));
    registry
}

fn recovery(registry: &Registry, node: u32) -> Option<RecoveryStatus> {
    registry.status(node).and_then(|status| status.recovery)
}

#[test]
fn register_then_recover() {
    let registry = cluster();
    assert_eq!(recovery(&registry, 3), Some(RecoveryStatus::Inactive));
    let grant = registry
        .register_counterpart(1, AUTH, 3)
        .expect("node 1 may recover node 3");
    assert_eq!((grant.failed(), grant.counterpart(), grant.incarnation()), (3, 1, 1));
    assert_eq!(recovery(&registry, 3), Some(RecoveryStatus::Active { counterpart: 1 }));
    assert_eq!(
        registry.unregister_counterpart(1, AUTH, &grant, RecoveryOutcome::Recovered),
        Ok(RetainedLocks::Release)
    );
    assert_eq!(recovery(&registry, 3), Some(RecoveryStatus::Recovered));
    assert_eq!(
        registry.register_counterpart(2, AUTH, 3),
        Err(RegistryError::AlreadyRecovered { node: 3 })
    );
    // The grant is spent.
    assert_eq!(
        registry.unregister_counterpart(1, AUTH, &grant, RecoveryOutcome::Recovered),
        Err(RegistryError::NotCounterpart { failed: 3, caller: 1 })
    );
    // The recovered node restarts with a new incarnation.
    assert_eq!(registry.join(3), Ok(2));
    assert_eq!(
        registry.status(3),
        Some(NodeStatus {
            liveness: Liveness::Live,
            incarnation: 2,
            recovery: None
        })
    );
}

#[test]
fn abandon_makes_it_inactive_again() {
    let registry = cluster();
    let grant = registry.register_counterpart(1, AUTH, 3).expect("first registration");
    assert_eq!(
        registry.unregister_counterpart(1, AUTH, &grant, RecoveryOutcome::Abandoned),
        Ok(RetainedLocks::Keep)
    );
    assert_eq!(recovery(&registry, 3), Some(RecoveryStatus::Inactive));
    let again = registry
        .register_counterpart(2, AUTH, 3)
        .expect("another node may take over");
    assert_ne!(again.token(), grant.token());
}

#[test]
fn refused_when_already_active() {
    let registry = cluster();
    registry.register_counterpart(1, AUTH, 3).expect("first registration");
    assert_eq!(
        registry.register_counterpart(2, AUTH, 3),
        Err(RegistryError::AlreadyActive {
            failed: 3,
            counterpart: 1
        })
    );
    // Not even the counterpart itself registers twice.
    assert_eq!(
        registry.register_counterpart(1, AUTH, 3),
        Err(RegistryError::AlreadyActive {
            failed: 3,
            counterpart: 1
        })
    );
}

#[test]
fn refused_for_the_failed_node_itself() {
    let registry = cluster();
    assert_eq!(
        registry.register_counterpart(3, AUTH, 3),
        Err(RegistryError::CallerIsFailedNode { node: 3 })
    );
}

#[test]
fn refused_when_the_node_has_not_failed() {
    let registry = cluster();
    assert_eq!(
        registry.register_counterpart(1, AUTH, 2),
        Err(RegistryError::NodeNotFailed { node: 2 })
    );
    assert_eq!(
        registry.register_counterpart(1, AUTH, 1),
        Err(RegistryError::CallerIsFailedNode { node: 1 })
    );
}

#[test]
fn refused_for_unknown_nodes() {
    let registry = cluster();
    assert_eq!(
        registry.register_counterpart(1, AUTH, 9),
        Err(RegistryError::UnknownNode { node: 9 })
    );
    assert_eq!(
        registry.register_counterpart(9, AUTH, 3),
        Err(RegistryError::UnknownNode { node: 9 })
    );
    assert_eq!(registry.node_failed(9), Err(RegistryError::UnknownNode { node: 9 }));
}

#[test]
fn refused_when_not_authenticated() {
    let registry = cluster();
    let unauthenticated = AuthState::Unauthenticated;
    assert_eq!(
        registry.register_counterpart(1, unauthenticated, 3),
        Err(RegistryError::NotAuthenticated)
    );
    let grant = registry.register_counterpart(1, AUTH, 3).expect("authenticated");
    assert_eq!(
        registry.unregister_counterpart(1, unauthenticated, &grant, RecoveryOutcome::Recovered),
        Err(RegistryError::NotAuthenticated)
    );
}

#[test]
fn refused_when_the_caller_is_not_live() {
    let registry = cluster();
    registry.node_failed(2).expect("node 2 was live");
    assert_eq!(
        registry.register_counterpart(2, AUTH, 3),
        Err(RegistryError::CallerNotLive { caller: 2 })
    );
}

#[test]
fn only_the_counterpart_with_its_grant_unregisters() {
    let registry = cluster();
    let grant = registry.register_counterpart(1, AUTH, 3).expect("first registration");
    assert_eq!(
        registry.unregister_counterpart(2, AUTH, &grant, RecoveryOutcome::Recovered),
        Err(RegistryError::NotCounterpart { failed: 3, caller: 2 })
    );
    assert_eq!(recovery(&registry, 3), Some(RecoveryStatus::Active { counterpart: 1 }));
}

#[test]
fn counterpart_failure_drops_its_registration() {
    let registry = cluster();
    let old = registry.register_counterpart(1, AUTH, 3).expect("first registration");
    assert_eq!(registry.node_failed(1), Ok(vec![3]));
    assert_eq!(recovery(&registry, 3), Some(RecoveryStatus::Inactive));
    // The stale counterpart, even restarted, cannot end someone else's recovery.
    let new = registry.register_counterpart(2, AUTH, 3).expect("node 2 takes over");
    assert_eq!(registry.join(1), Ok(2));
    assert_eq!(
        registry.unregister_counterpart(1, AUTH, &old, RecoveryOutcome::Recovered),
        Err(RegistryError::NotCounterpart { failed: 3, caller: 1 })
    );
    // A coordinator that learns of node 2's failure some other way drops
    // its registration as well.
    assert_eq!(registry.counterpart_failed(2), vec![3]);
    assert_eq!(
        registry.unregister_counterpart(2, AUTH, &new, RecoveryOutcome::Recovered),
        Err(RegistryError::NotCounterpart { failed: 3, caller: 2 })
    );
}

#[test]
fn no_rejoin_while_being_recovered() {
    let registry = cluster();
    let grant = registry.register_counterpart(1, AUTH, 3).expect("first registration");
    assert_eq!(
        registry.join(3),
        Err(RegistryError::RecoveryInProgress {
            node: 3,
            counterpart: 1
        })
    );
    assert_eq!(
        registry.unregister_counterpart(1, AUTH, &grant, RecoveryOutcome::Abandoned),
        Ok(RetainedLocks::Keep)
    );
    // Unrecovered and inactive: the node's own restart takes over.
    assert_eq!(registry.join(3), Ok(2));
    assert_eq!(registry.join(3), Err(RegistryError::AlreadyLive { node: 3 }));
    assert_eq!(
        registry.register_counterpart(1, AUTH, 3),
        Err(RegistryError::NodeNotFailed { node: 3 })
    );
}

#[test]
fn exactly_one_of_racing_threads_registers() {
    let registry = cluster();
    let results: Vec<_> = std::thread::scope(|scope| {
        let registry = &registry;
        let handles = [1, 2].map(|caller| scope.spawn(move || registry.register_counterpart(caller, AUTH, 3)));
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no panic"))
            .collect()
    });
    let winners: Vec<_> = results.iter().filter_map(|result| result.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    let winner = winners[0].counterpart();
    for result in &results {
        if let Err(error) = result {
            assert_eq!(
                *error,
                RegistryError::AlreadyActive {
                    failed: 3,
                    counterpart: winner
                }
            );
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Join(u32),
    Fail(u32),
    Register { caller: u32, failed: u32 },
    Unregister { caller: u32, failed: u32, recovered: bool },
}

proptest! {
    /// Whatever the sequence: a registration succeeds only for a failed,
    /// inactive node and a live caller other than it, and afterwards at most
    /// one counterpart is active per failed node, live, and not the node itself.
    #[test]
    fn registrations_stay_exclusive(ops in prop::collection::vec(
        prop_oneof![
            (1..=4_u32).prop_map(Op::Join),
            (1..=4_u32).prop_map(Op::Fail),
            (1..=4_u32, 1..=4_u32).prop_map(|(caller, failed)| Op::Register { caller, failed }),
            (1..=4_u32, 1..=4_u32, any::<bool>())
                .prop_map(|(caller, failed, recovered)| Op::Unregister { caller, failed, recovered }),
        ],
        1..60,
    )) {
        let registry = Registry::default();
        let mut grants = std::collections::BTreeMap::new();
        for op in ops {
            match op {
                Op::Join(node) => { let _ = registry.join(node); }
                Op::Fail(node) => { let _ = registry.node_failed(node); }
                Op::Register { caller, failed } => {
                    let before_caller = registry.status(caller);
                    let before_failed = registry.status(failed);
                    if let Ok(grant) = registry.register_counterpart(caller, AUTH, failed) {
                        prop_assert_ne!(caller, failed);
                        prop_assert_eq!(before_caller.map(|s| s.liveness), Some(Liveness::Live));
                        prop_assert_eq!(before_failed.and_then(|s| s.recovery), Some(RecoveryStatus::Inactive));
                        grants.insert(failed, grant);
                    }
                }
                Op::Unregister { caller, failed, recovered } => {
                    if let Some(grant) = grants.get(&failed) {
                        let outcome = if recovered { RecoveryOutcome::Recovered } else { RecoveryOutcome::Abandoned };
                        let _ = registry.unregister_counterpart(caller, AUTH, grant, outcome);
                    }
                }
            }
            for (node, status) in registry.statuses() {
                if let Some(RecoveryStatus::Active { counterpart }) = status.recovery {
                    prop_assert_eq!(status.liveness, Liveness::Failed);
                    prop_assert_ne!(counterpart, node);
                    prop_assert_eq!(registry.status(counterpart).map(|s| s.liveness), Some(Liveness::Live));
                }
                prop_assert_eq!(status.recovery.is_some(), status.liveness == Liveness::Failed);
            }
        }
    }
}
