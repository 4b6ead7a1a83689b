//! Coordinators on two "hosts" elected on etcd, tried through the program
//! (feature `etcd`): each listens on an endpoint of its own, both listed
//! in `cluster.conf` (`coordinator = A, B`), and keeps the durable record
//! in an etcd server this test starts on 127.0.0.1 and stops. Three bank
//! nodes run while the active coordinator is killed with SIGKILL; the
//! standby is elected once the dead one's etcd lease has run out, and the
//! nodes follow it to its endpoint, back and forth. Nothing acknowledged is
//! lost, no node stops, and the pauses — the etcd lease's length, mostly —
//! are printed, never asserted.
//!
//! The nodes' lease must outlast the etcd lease: the coordinators grant
//! 4 s, with a 1 s etcd lease. Where no `etcd` program is installed
//! (`.ci/run` installs Debian's `etcd-server`), the test says so and checks
//! nothing.

#![cfg(feature = "etcd")]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::ChildGuard;
use support::{bank_cluster, check_bank, longest_pause, percentile, BankNode, Coordinator, PATIENCE};

const FAILOVERS: usize = 4;
const PROGRESS: usize = 5;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// etcd on 127.0.0.1 with a temporary data directory; `None` where it is
/// not installed.
fn start_etcd(data: &Path) -> Option<(ChildGuard, String)> {
    let program = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = ChildGuard::spawn(
        Command::new(program)
            .args(["--name", "t", "--data-dir"])
            .arg(data)
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
    Some((child, url))
}

#[test]
fn nodes_follow_a_coordinator_elected_on_etcd_to_another_host() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let Some((_etcd, url)) = start_etcd(&tmp.path().join("etcd")) else {
        eprintln!("SKIPPED: no etcd program installed (Debian: etcd-server); the etcd election is untested here");
        return;
    };
    let dir = bank_cluster(tmp.path());
    let hosts = [tmp.path().join("a.sock"), tmp.path().join("b.sock")];
    let eps: Vec<String> = hosts.iter().map(|p| format!("unix:{}", p.display())).collect();
    // Both hosts' endpoints, the first where nodes go first.
    let conf = dir.join("cluster.conf");
    let text = std::fs::read_to_string(&conf).expect("cluster.conf");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("coordinator") {
                format!("coordinator = {}", eps.join(", "))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, text + "\n").expect("write cluster.conf");
    let prefix = format!("/understudy-test/{}", std::process::id());
    let on = |host: usize, standby: bool| {
        let mut args = vec![
            "--listen",
            eps[host].as_str(),
            "--etcd",
            url.as_str(),
            "--etcd-prefix",
            prefix.as_str(),
            "--etcd-ttl-secs",
            "1",
            "--lease-ms",
            "4000",
            "--failure-timeout-ms",
            "6000",
        ];
        if standby {
            args.push("--standby");
        }
        let mut c = Coordinator::start(&dir, &args);
        if standby {
            c.wait_line("standing by for ");
        } else {
            c.wait_serving();
        }
        c
    };
    let mut active = on(0, false);
    let mut next = on(1, true);
    let mut nodes: Vec<BankNode> = (1..=3).map(|id| BankNode::start(&dir, id, &[])).collect();
    let mut failovers = Vec::new();
    for round in 0..FAILOVERS {
        for n in nodes.iter_mut() {
            let seen = n.acks();
            assert!(
                n.progress(seen, PROGRESS),
                "node {} made no progress after failover {round}",
                n.id
            );
        }
        active.child.kill().expect("kill the active coordinator");
        failovers.push(Instant::now());
        next.wait_serving();
        // The next standby on the host whose coordinator just died.
        active = std::mem::replace(&mut next, on(round % 2, true));
    }
    for n in nodes.iter_mut() {
        let seen = n.acks();
        assert!(
            n.progress(seen, PROGRESS),
            "node {} made no progress after the last failover",
            n.id
        );
    }
    let end = Instant::now();
    let all: Vec<&BankNode> = nodes.iter().collect();
    let pauses: Vec<Duration> = failovers
        .iter()
        .enumerate()
        .map(|(i, &k)| longest_pause(&all, k, failovers.get(i + 1).copied().unwrap_or(end)))
        .collect();
    println!(
        "failed over on etcd {} times (1 s etcd lease): survivors' longest pause p50 {} ms, max {} ms",
        failovers.len(),
        percentile(&pauses, 50).as_millis(),
        percentile(&pauses, 100).as_millis()
    );
    for n in nodes.iter_mut() {
        assert_eq!(n.stop(), Some(0), "node {} stopped instead of riding through", n.id);
    }
    let all: Vec<&BankNode> = nodes.iter().collect();
    check_bank(&dir, &all, &tmp.path().join("acks.txt"));
    drop(active);
}
