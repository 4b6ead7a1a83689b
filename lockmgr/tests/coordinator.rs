//! The coordinator and its client in one process over real sockets: the
//! protocol paths. Multi-process behaviour (kill -9, coordinator restarts) is
//! in `tests/cluster.rs`.

use std::time::Duration;

use lockmgr::client::ClientEvent;
use lockmgr::wire::ErrorCode;
use lockmgr::{
    Client, ClientConfig, ClientError, Coordinator, CoordinatorConfig, Endpoint, EventKind, LockMode, LockWait,
    Outcome, Purpose, ResourceId, Secret,
};

fn secret() -> Secret {
    Secret::new(b"test-cluster-secret-0123456789".to_vec()).unwrap()
}

fn start(dir: &std::path::Path) -> Coordinator {
    let cfg = CoordinatorConfig::new(
        vec![
            Endpoint::Unix(dir.join("coord.sock")),
            Endpoint::Tcp("127.0.0.1:0".parse().unwrap()),
        ],
        secret(),
        dir.join("state"),
        wal::io::Io::fallback(),
    );
    Coordinator::start(cfg).unwrap()
}

fn join(ep: &Endpoint, node: u32) -> Client {
    Client::connect(ClientConfig::new(ep.clone(), node, secret())).unwrap()
}

fn wait_event(rx: &std::sync::mpsc::Receiver<ClientEvent>, kind: EventKind, node: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(ClientEvent::Coordinator { kind: k, node: n, .. }) = rx.recv_timeout(Duration::from_millis(100)) {
            if k == kind && n == node {
                return;
            }
        }
    }
    panic!("no {kind:?} event for node {node}");
}

#[test]
fn locks_waits_and_conflicts_over_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let unix = coord.endpoints()[0].clone();
    let tcp = coord.endpoints()[1].clone();
    let a = join(&unix, 1);
    let b = join(&tcp, 2);
    let page = ResourceId::new(1, 10);
    assert_eq!(a.lock(1, page, LockMode::S, None).unwrap(), LockMode::S);
    assert_eq!(b.lock(1, page, LockMode::S, None).unwrap(), LockMode::S);
    assert_eq!(
        b.lock(2, page, LockMode::X, None),
        Err(ClientError::Conflict { resource: page })
    );
    assert_eq!(
        b.lock(2, page, LockMode::X, Some(Duration::from_millis(50))),
        Err(ClientError::Timeout { resource: page })
    );
    std::thread::scope(|s| {
        let waiter = s.spawn(|| b.lock(2, page, LockMode::X, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        a.release_all(1).unwrap();
        b.release(1, page).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), LockMode::X);
    });
}

#[test]
fn a_cross_node_deadlock_picks_a_victim() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let a = join(&ep, 1);
    let b = join(&ep, 2);
    let (p, q) = (ResourceId::new(1, 1), ResourceId::new(1, 2));
    a.lock(5, p, LockMode::X, None).unwrap();
    b.lock(6, q, LockMode::X, None).unwrap();
    std::thread::scope(|s| {
        let ta = s.spawn(|| a.lock(5, q, LockMode::X, Some(Duration::from_secs(20))));
        let tb = s.spawn(|| b.lock(6, p, LockMode::X, Some(Duration::from_secs(20))));
        // The youngest transaction (6, on node 2) is the victim; once it
        // aborts and releases, the other gets its lock.
        let rb = tb.join().unwrap();
        assert!(matches!(rb, Err(ClientError::Deadlock { .. })), "{rb:?}");
        b.release_all(6).unwrap();
        assert_eq!(ta.join().unwrap(), Ok(LockMode::X));
    });
}

#[test]
fn a_dropped_connection_retains_write_locks_until_a_counterpart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let survivor = join(&ep, 1);
    let third = join(&ep, 3);
    let events = survivor.events().unwrap();
    let doomed = join(&ep, 2);
    let (x, s) = (ResourceId::new(2, 1), ResourceId::new(2, 2));
    doomed.lock(9, x, LockMode::X, None).unwrap();
    doomed.lock(9, s, LockMode::S, None).unwrap();
    drop(doomed);
    wait_event(&events, EventKind::NodeFailed, 2);
    assert_eq!(
        survivor.lock(1, x, LockMode::S, None),
        Err(ClientError::Retained { node: 2, resource: x })
    );
    assert_eq!(survivor.lock(1, s, LockMode::X, None).unwrap(), LockMode::X);
    assert_eq!(survivor.retained(2).unwrap(), vec![(x, LockMode::X)]);

    // Rejoining as a normal member is refused until recovered.
    let refused = Client::connect(ClientConfig::new(ep.clone(), 2, secret()))
        .err()
        .unwrap();
    assert!(matches!(
        refused,
        ClientError::Refused {
            code: ErrorCode::NotRecovered,
            ..
        }
    ));

    let grant = survivor.register_counterpart(2).unwrap();
    assert!(matches!(
        third.register_counterpart(2),
        Err(ClientError::Refused {
            code: ErrorCode::AlreadyActive,
            node: 1,
            ..
        })
    ));
    survivor.unregister_counterpart(&grant, Outcome::Recovered).unwrap();
    wait_event(&events, EventKind::RecoveryFinished, 2);
    survivor.release_all(1).unwrap();
    assert_eq!(survivor.lock(1, x, LockMode::X, None).unwrap(), LockMode::X);
    // Recovered: it may join again.
    let back = join(&ep, 2);
    assert_eq!(back.incarnation(), 2);
}

#[test]
fn a_wrong_secret_is_refused_and_has_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let bad = Client::connect(ClientConfig::new(
        ep.clone(),
        7,
        Secret::new(b"not-the-cluster-secret!!".to_vec()).unwrap(),
    ));
    assert!(matches!(bad, Err(ClientError::AuthFailed)), "{:?}", bad.err());
    let ok = join(&ep, 1);
    assert!(
        ok.status().unwrap().iter().all(|m| m.node != 7),
        "the refused node is no member"
    );
}

#[test]
fn a_restarting_node_takes_its_locks_back_and_releases_them() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let peer = join(&ep, 1);
    let events = peer.events().unwrap();
    let n2 = join(&ep, 2);
    let x = ResourceId::new(3, 3);
    n2.lock(4, x, LockMode::X, None).unwrap();
    drop(n2);
    wait_event(&events, EventKind::NodeFailed, 2);
    let mut cfg = ClientConfig::new(ep.clone(), 2, secret());
    cfg.purpose = Purpose::Restart;
    let restarted = Client::connect(cfg).unwrap();
    assert!(
        peer.lock(1, x, LockMode::S, None).is_err(),
        "still protected during its own recovery"
    );
    restarted.restart_finished().unwrap();
    wait_event(&events, EventKind::RecoveryFinished, 2);
    assert_eq!(peer.lock(1, x, LockMode::X, None).unwrap(), LockMode::X);
}

#[test]
fn a_wait_for_live_holders_ends_with_retained_when_the_holder_fails() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let survivor = join(&ep, 1);
    let doomed = join(&ep, 2);
    let page = ResourceId::new(4, 1);
    doomed.lock(9, page, LockMode::X, None).unwrap();
    let patience = Duration::from_secs(20);
    let refused = std::thread::scope(|s| {
        let waiter = s.spawn(|| survivor.lock(1, page, LockMode::S, LockWait::WaitForLive(patience)));
        // Give the request time to queue, so the failure (not the request)
        // usually meets the other; either order must end in `Retained`, and
        // a wait that stayed queued would end in `LockTimeout` instead.
        std::thread::sleep(Duration::from_millis(100));
        drop(doomed);
        waiter.join().unwrap()
    });
    assert_eq!(
        refused,
        Err(ClientError::Retained {
            node: 2,
            resource: page
        })
    );
    // And a new one is refused at once.
    assert_eq!(
        survivor.lock(2, page, LockMode::S, LockWait::WaitForLive(patience)),
        Err(ClientError::Retained {
            node: 2,
            resource: page
        })
    );
}

/// A member that launches restarts (restart requests go to such a node).
fn join_launcher(ep: &Endpoint, node: u32) -> Client {
    let mut cfg = ClientConfig::new(ep.clone(), node, secret());
    cfg.launches_restarts = true;
    Client::connect(cfg).unwrap()
}

fn restart_requested(e: &ClientEvent) -> bool {
    matches!(
        e,
        ClientEvent::Coordinator {
            kind: EventKind::RestartRequested,
            ..
        }
    )
}

#[test]
fn a_restart_request_is_announced_when_its_node_has_failed() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let plain = join(&ep, 3);
    let plain_events = plain.events().unwrap();
    let doomed = join(&ep, 2);
    // Nobody could act on it: refused, saying so.
    assert!(matches!(
        doomed.request_restart(2),
        Err(ClientError::Refused {
            code: ErrorCode::NoRestarter,
            node: 2,
            ..
        })
    ));
    let peer = join_launcher(&ep, 1);
    let events = peer.events().unwrap();
    // Its admission is announced once it counts as a member.
    wait_event(&events, EventKind::NodeJoined, 1);
    // Filed while node 2 is live: kept until it fails.
    doomed.request_restart(2).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !events.try_iter().any(|e| restart_requested(&e)),
        "announced before the node failed"
    );
    drop(doomed);
    wait_event(&events, EventKind::NodeFailed, 2);
    wait_event(&events, EventKind::RestartRequested, 2);
    // Filed for a failed node: announced at once.
    peer.request_restart(2).unwrap();
    wait_event(&events, EventKind::RestartRequested, 2);
    // Only to the node that launches restarts.
    wait_event(&plain_events, EventKind::NodeFailed, 2);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!plain_events.try_iter().any(|e| restart_requested(&e)));
    assert!(matches!(
        peer.request_restart(99),
        Err(ClientError::Refused {
            code: ErrorCode::UnknownNode,
            ..
        })
    ));
}

/// Restart requests are in the durable record: one filed for a live node
/// before the coordinator restarted is sent, once that node has failed, to
/// the first node admitted afterwards that launches restarts; so is every
/// failed node still to recover (a `NodeFailed` event), to any member.
#[test]
fn a_restart_request_survives_a_coordinator_restart() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let launcher = join_launcher(&ep, 1);
    let launcher_events = launcher.events().unwrap();
    wait_event(&launcher_events, EventKind::NodeJoined, 1);
    let doomed = join(&ep, 2);
    doomed.request_restart(2).unwrap();
    assert_eq!(
        doomed.lock(1, ResourceId::new(3, 3), LockMode::X, None),
        Ok(LockMode::X)
    );
    drop(doomed);
    coord.shutdown();

    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    // Node 1 never rejoins either: both fail when the grace period ends.
    let plain = join(&ep, 3);
    let events = plain.events().unwrap();
    wait_event(&events, EventKind::NodeFailed, 2);
    plain.leave().unwrap();
    let again = join_launcher(&ep, 4);
    let events = again.events().unwrap();
    wait_event(&events, EventKind::NodeFailed, 2);
    wait_event(&events, EventKind::RestartRequested, 2);
}

fn join_local(coord: &Coordinator, node: u32, purpose: Purpose) -> Result<Client, ClientError> {
    let mut cfg = ClientConfig::new(coord.endpoints()[0].clone(), node, secret());
    cfg.purpose = purpose;
    Client::connect_local(coord, cfg)
}

#[test]
fn an_in_process_node_shares_locks_waits_events_and_failure_with_socket_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let local = join_local(&coord, 1, Purpose::Join).unwrap();
    let local_events = local.events().unwrap();
    let remote = join(&ep, 2);
    let remote_events = remote.events().unwrap();
    wait_event(&local_events, EventKind::NodeJoined, 2);
    assert!(local.lease_valid(), "admission starts the lease");

    // Conflicts both ways, and waits granted by the other side's release.
    let page = ResourceId::new(1, 10);
    assert_eq!(local.lock(1, page, LockMode::X, None).unwrap(), LockMode::X);
    assert_eq!(
        remote.lock(5, page, LockMode::S, None),
        Err(ClientError::Conflict { resource: page })
    );
    std::thread::scope(|s| {
        let waiter = s.spawn(|| remote.lock(5, page, LockMode::S, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        // Unanswered release: it has taken effect when the call returns.
        local.release_all_nowait(1).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), LockMode::S);
    });
    std::thread::scope(|s| {
        let waiter = s.spawn(|| local.lock(2, page, LockMode::X, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        remote.release_all(5).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), LockMode::X);
    });
    let granted = local
        .lock_many(
            2,
            &[
                (ResourceId::new(1, 11), LockMode::X),
                (ResourceId::new(1, 12), LockMode::S),
            ],
            None,
        )
        .unwrap();
    assert_eq!(granted, vec![LockMode::X, LockMode::S]);
    assert_eq!(local.status().unwrap().len(), 2);

    // Heartbeats over the link keep the lease past its first term.
    std::thread::sleep(Duration::from_millis(1300));
    assert!(local.lease_valid(), "heartbeats must extend the lease in-process");

    // Dropped without leaving: failed, and its write locks retained.
    drop(local);
    wait_event(&remote_events, EventKind::NodeFailed, 1);
    assert_eq!(
        remote.lock(7, page, LockMode::S, None),
        Err(ClientError::Retained {
            node: 1,
            resource: page
        })
    );
    assert_eq!(
        remote.lock(7, ResourceId::new(1, 12), LockMode::X, None).unwrap(),
        LockMode::X
    );
    // Membership rules hold in-process: refused until recovered, then a
    // restart takes the retained locks back.
    assert!(matches!(
        join_local(&coord, 1, Purpose::Join).err(),
        Some(ClientError::Refused {
            code: ErrorCode::NotRecovered,
            ..
        })
    ));
    let restarted = join_local(&coord, 1, Purpose::Restart).unwrap();
    assert_eq!(restarted.incarnation(), 2);
    restarted.restart_finished().unwrap();
    assert_eq!(remote.lock(7, page, LockMode::X, None).unwrap(), LockMode::X);

    // Leaving is no failure; the link is closed afterwards.
    restarted.leave().unwrap();
    assert!(matches!(restarted.status(), Err(ClientError::Disconnected)));
    assert_eq!(remote.status().unwrap().iter().filter(|m| m.node == 1).count(), 1);
    assert!(!remote_events.try_iter().any(|e| matches!(
        e,
        ClientEvent::Coordinator {
            kind: EventKind::NodeFailed,
            node: 1,
            incarnation: 2
        }
    )));
}

#[test]
fn an_in_process_node_is_disconnected_when_its_coordinator_stops() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let local = join_local(&coord, 1, Purpose::Join).unwrap();
    let events = local.events().unwrap();
    coord.shutdown();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.contains(&ClientEvent::Disconnected) && std::time::Instant::now() < deadline {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(100)) {
            seen.push(e);
        }
    }
    assert!(seen.contains(&ClientEvent::Disconnected), "events: {seen:?}");
    assert!(!local.lease_valid(), "no coordinator, no lease");
    assert_eq!(
        local.lock(1, ResourceId::new(1, 1), LockMode::S, None),
        Err(ClientError::Disconnected)
    );
}

/// `c`'s registration as the counterpart of `failed`, once the
/// coordinator has declared it failed (within 10 s).
fn register_once_failed(c: &Client, failed: u32) -> lockmgr::CounterpartGrant {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match c.register_counterpart(failed) {
            Ok(g) => return g,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("no counterpart registration: {e}"),
        }
    }
}

/// Lock value blocks: the X holder's published value reaches every later
/// grant — at once, or to a waiter woken by the release it came with; a
/// value published without the X lock is ignored; and a failed node's
/// retained lock, once recovered, leaves its value unknown, unless its
/// counterpart publishes the value it read (for what the failed node held
/// in X mode only).
#[test]
fn value_blocks_follow_the_x_holder_and_go_with_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let coord = start(dir.path());
    let ep = coord.endpoints()[0].clone();
    let a = join(&ep, 1);
    let b = join(&ep, 2);
    let page = ResourceId::new(1, 7);
    assert_eq!(b.lock_valued(1, page, LockMode::S, None).unwrap(), (LockMode::S, None));
    b.release_all(1).unwrap();

    assert_eq!(a.lock_valued(1, page, LockMode::X, None).unwrap().1, None);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| b.lock_valued(2, page, LockMode::S, Some(Duration::from_secs(10))));
        std::thread::sleep(Duration::from_millis(50));
        a.publish_and_release_nowait(vec![(page, 42)], &[1]).unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), (LockMode::S, Some(42)));
    });
    // Held in S only: a value from it is ignored.
    b.publish_and_release_nowait(vec![(page, 99)], &[]).unwrap();
    b.release_all(2).unwrap();
    assert_eq!(a.lock_valued(3, page, LockMode::S, None).unwrap().1, Some(42));
    a.release_all(3).unwrap();

    // Node 1 fails holding X after writing: recovered, the value is unknown.
    let (_, value) = a.lock_valued(4, page, LockMode::X, None).unwrap();
    assert_eq!(value, Some(42));
    drop(a);
    let c = join(&ep, 3);
    let grant = register_once_failed(&c, 1);
    c.unregister_counterpart(&grant, Outcome::Recovered).unwrap();
    assert_eq!(b.lock_valued(5, page, LockMode::S, None).unwrap(), (LockMode::S, None));
    b.release_all(5).unwrap();

    // Node 2 fails holding X on `page` and S on `other`; its counterpart
    // publishes what it read as it unregisters: the X page's value is
    // taken; the S page's is ignored (only an X holder's word counts), and
    // the value it had stays.
    let other = ResourceId::new(1, 8);
    c.lock_valued(6, other, LockMode::X, None).unwrap();
    c.publish_and_release_nowait(vec![(other, 5)], &[6]).unwrap();
    b.lock_valued(7, page, LockMode::X, None).unwrap();
    // Waits for `c`'s release of `other`, sent without a reply.
    b.lock_valued(7, other, LockMode::S, Some(Duration::from_secs(10)))
        .unwrap();
    drop(b);
    let grant = register_once_failed(&c, 2);
    c.unregister_counterpart_publishing(&grant, Outcome::Recovered, vec![(page, 77), (other, 78)])
        .unwrap();
    assert_eq!(
        c.lock_valued(8, page, LockMode::S, None).unwrap(),
        (LockMode::S, Some(77))
    );
    assert_eq!(
        c.lock_valued(8, other, LockMode::S, None).unwrap(),
        (LockMode::S, Some(5))
    );
}
