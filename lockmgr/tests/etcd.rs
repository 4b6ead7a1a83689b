//! The coordinator on etcd (feature `etcd`): coordinators on different
//! "hosts" — each its own state directory and endpoint — elected through a
//! real etcd server this test starts on 127.0.0.1 with a temporary data
//! directory, and stops.
//!
//! A standby campaigns while the leader serves; when the leader's process
//! is killed with SIGKILL, its etcd lease runs out and the standby is
//! elected, reads the durable record the dead one kept in etcd (a failed
//! node's retained lock in it), and serves on its own endpoint. A node
//! riding through follows it there (its client knows both endpoints) and
//! re-asserts its lock. A coordinator that is not to stand by is refused
//! while another leads.
//!
//! Where no `etcd` program is installed (`.ci/run` installs Debian's
//! `etcd-server`), the test says so and checks nothing. Every process is
//! held in a [`harness::ChildGuard`]; every wait is bounded.

#![cfg(feature = "etcd")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::ChildGuard;
use lockmgr::etcd::EtcdConfig;
use lockmgr::{
    Client, ClientConfig, ClientError, ClientEvent, Coordinator, CoordinatorConfig, CoordinatorError, Election,
    ElectionError, Endpoint, LockMode, ResourceId, Secret,
};

const SECRET: &[u8] = b"etcd-test-cluster-secret-0123";
const PATIENCE: Duration = Duration::from_secs(30);
/// Set, to the etcd URL, in the coordinator child's environment.
const CHILD_ETCD: &str = "UNDERSTUDY_ETCD_CHILD_URL";
const CHILD_DIR: &str = "UNDERSTUDY_ETCD_CHILD_DIR";
const CHILD_PREFIX: &str = "UNDERSTUDY_ETCD_CHILD_PREFIX";

fn secret() -> Secret {
    Secret::new(SECRET.to_vec()).unwrap()
}

/// A free TCP port on 127.0.0.1 (free a moment ago).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An etcd server of this test.
struct Etcd {
    _child: ChildGuard,
    url: String,
    _data: tempfile::TempDir,
}

/// Starts etcd on 127.0.0.1, or says why not (no `etcd` program).
fn start_etcd() -> Option<Etcd> {
    let program = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let data = tempfile::tempdir().expect("a data dir");
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = ChildGuard::spawn(
        Command::new(program)
            .args(["--name", "t", "--data-dir"])
            .arg(data.path().join("etcd"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn etcd");
    let up = harness::wait_for(PATIENCE, Duration::from_millis(20), || {
        std::net::TcpStream::connect(("127.0.0.1", client)).is_ok()
    });
    assert!(up, "etcd did not listen on {url}");
    Some(Etcd {
        _child: child,
        url,
        _data: data,
    })
}

/// A coordinator of one "host": its own state directory and socket,
/// elected on etcd under `prefix`.
fn config(url: &str, dir: &Path, prefix: &str, standby: bool) -> CoordinatorConfig {
    let mut cfg = CoordinatorConfig::new(
        vec![Endpoint::Unix(dir.join("coord.sock"))],
        secret(),
        dir.join("state"),
        wal::io::Io::fallback(),
    );
    let mut etcd = EtcdConfig::new(vec![url.to_string()], prefix);
    etcd.ttl_secs = 1;
    cfg.election = Election::Etcd(etcd);
    cfg.standby = standby;
    cfg.heartbeat_ms = 20;
    // Long enough to span the etcd lease running out.
    cfg.lease_ms = 6000;
    cfg.failure_timeout_ms = 8000;
    cfg
}

/// The coordinator process: as a test of the parent it does nothing; run
/// with [`CHILD_ETCD`] set it leads on etcd and serves until killed.
#[test]
fn etcd_coordinator_child() {
    let Ok(url) = std::env::var(CHILD_ETCD) else { return };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("dir"));
    let prefix = std::env::var(CHILD_PREFIX).expect("prefix");
    let coordinator = Coordinator::start(config(&url, &dir, &prefix, false)).expect("lead");
    println!("listening on {}", coordinator.endpoints()[0]);
    std::io::stdout().flush().expect("flush");
    coordinator.join();
}

fn join(ep: &Endpoint, node: u32, also: &[Endpoint]) -> Client {
    let mut cfg = ClientConfig::new(ep.clone(), node, secret());
    cfg.ride_through = true;
    cfg.also = also.to_vec();
    Client::connect(cfg).unwrap_or_else(|e| panic!("node {node} cannot join: {e}"))
}

#[test]
fn a_standby_on_another_host_takes_over_through_etcd() {
    let Some(etcd) = start_etcd() else {
        eprintln!("SKIPPED: no etcd program installed (Debian: etcd-server); the etcd election is untested here");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (host_a, host_b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&host_a).unwrap();
    std::fs::create_dir_all(&host_b).unwrap();
    let prefix = format!("/understudy-test/{}", std::process::id());

    let mut leader = ChildGuard::spawn(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "etcd_coordinator_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ETCD, &etcd.url)
            .env(CHILD_DIR, &host_a)
            .env(CHILD_PREFIX, &prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let (lines, _) = harness::read_lines(leader.take_stdout().unwrap());
    let deadline = Instant::now() + PATIENCE;
    let a = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the leader prints its endpoint");
        if let Some(ep) = line.split("listening on ").nth(1) {
            break ep.parse::<Endpoint>().unwrap();
        }
    };
    let b = Endpoint::Unix(host_b.join("coord.sock"));

    // A node that rides through, knowing both hosts; and one that fails
    // holding a lock, which the record in etcd keeps retained.
    let (page, lost) = (ResourceId::new(30, 1), ResourceId::new(30, 2));
    let one = join(&a, 1, std::slice::from_ref(&b));
    let events = one.events().unwrap();
    assert_eq!(one.lock(1, page, LockMode::X, None), Ok(LockMode::X));
    let two = join(&a, 2, &[]);
    assert_eq!(two.lock(1, lost, LockMode::X, None), Ok(LockMode::X));
    drop(two);
    harness::wait_for(PATIENCE, Duration::from_millis(10), || {
        one.status().unwrap().iter().any(|m| m.node == 2 && !m.live)
    });

    // Another coordinator that is not to stand by is refused.
    assert!(matches!(
        Coordinator::start(config(&etcd.url, &host_b, &prefix, false)),
        Err(CoordinatorError::Election(ElectionError::Held { .. }))
    ));
    // The standby campaigns until the leader is gone.
    let standby = std::thread::spawn({
        let (url, dir, prefix) = (etcd.url.clone(), host_b.clone(), prefix.clone());
        move || Coordinator::start(config(&url, &dir, &prefix, true))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!standby.is_finished(), "elected while the leader lives");
    leader.kill().unwrap();
    let coordinator = standby.join().unwrap().expect("the standby takes over");
    assert_eq!(coordinator.endpoints(), std::slice::from_ref(&b));

    let rejoined = harness::wait_for(PATIENCE, Duration::from_millis(10), || {
        events.try_iter().any(|e| matches!(e, ClientEvent::Reconnected { .. }))
    });
    assert!(rejoined, "node 1 did not follow the coordinator to the other host");
    assert!(one.lease_valid());
    let three = join(&b, 3, &[]);
    let held = |r| {
        let mut answer = None;
        harness::wait_for(PATIENCE, Duration::from_millis(10), || {
            answer = Some(three.lock(1, r, LockMode::X, None));
            answer != Some(Err(ClientError::CoordinatorRecovering))
        });
        answer.unwrap()
    };
    assert_eq!(held(page), Err(ClientError::Conflict { resource: page }), "re-asserted");
    assert_eq!(
        held(lost),
        Err(ClientError::Retained {
            node: 2,
            resource: lost
        }),
        "kept in the record in etcd"
    );
    drop(coordinator);
}
