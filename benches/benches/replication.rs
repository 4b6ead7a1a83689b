//! What log shipping costs a primary's commits, and how fast a standby
//! catches up, in one run: a one-node primary site (coordinator in the
//! node's process) committing one-row transactions on one thread,
//!
//! - `commit/plain`: redo off, no replication — the engine's own commit;
//! - `commit/redo_no_standby`: redo on (the primary writes the shippable
//!   after-images), no standby connected;
//! - `commit/async_standby`: one standby over TCP on 127.0.0.1, applying in
//!   the background; the commit does not wait for it;
//! - `commit/sync_standby`: the same standby, and every commit returns only
//!   once the standby has it durably (`sync_standbys = 1`);
//!
//! next to the floor of one durable write (4 KiB `pwrite` + `fdatasync`).
//! After the cases, 2 000 commits are made with the async standby
//! connected and the time until the standby has applied the last of them
//! is printed: the lag a burst leaves, and the standby's apply rate.
//!
//! Standby and primary share this machine's one disk, so every standby
//! fsync competes with the primary's.
//!
//! Run: `cargo bench -p benches --bench replication`. Time per element is
//! time per committed transaction.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::{prealloc, raw_write_fdatasync, scratch_dir};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use replication::{seed, Primary, PrimaryConfig, ReplicationSecret, StandbyConfig, StandbyHandle};
use understudy::{Cluster, Node, NodeOptions};

const VALUE: &[u8] = &[0x42; 100];
const BURST: u64 = 2_000;

fn secret() -> ReplicationSecret {
    ReplicationSecret::new(vec![0x5a; 32]).expect("a long enough secret")
}

fn node_opts() -> NodeOptions {
    NodeOptions {
        embed_coordinator: true,
        ..NodeOptions::default()
    }
}

/// A one-node site in `dir` with hash table `t`, stopped.
fn site(dir: &Path) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    Cluster::create(dir, &[1], ep.parse().expect("an endpoint"), 4096).expect("create the site");
    let node = Node::open(dir, 1, node_opts()).expect("open the site");
    node.create_table("t", 1024).expect("create t");
    node.close().expect("close the site");
}

/// One durable one-row commit under key `i`.
fn commit(node: &Node, i: u64) {
    let mut t = node.begin().expect("begin");
    t.put("t", &i.to_le_bytes(), VALUE).expect("put");
    t.commit().expect("commit");
}

/// The primary of the site in `dir`, serving standbys, with `sync`
/// standbys to wait for at each commit.
fn primary(dir: &Path, sync: usize) -> (Node, Primary) {
    let mut primary = Primary::new(PrimaryConfig {
        cluster_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        secret: secret(),
        sync_standbys: sync,
        sync_timeout: Duration::from_secs(5),
    })
    .expect("a primary");
    let node = Node::open(
        dir,
        1,
        NodeOptions {
            redo: true,
            commit_gate: Some(primary.gate()),
            ..node_opts()
        },
    )
    .expect("open the primary");
    primary
        .serve(node.redo_watermark().expect("redo is on"))
        .expect("serve standbys");
    (node, primary)
}

/// Seeds a standby's copy in `dir` from the stopped primary site in
/// `primary_dir`.
fn seeded(primary_dir: &Path, dir: &Path) {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    seed(primary_dir, dir, ep.parse().expect("an endpoint")).expect("seed the standby");
}

/// A standby (its copy seeded) running on a thread.
struct Standby {
    handle: Arc<StandbyHandle>,
    thread: Option<std::thread::JoinHandle<replication::Result<()>>>,
}

impl Standby {
    fn start(dir: &Path, primary: &Primary) -> Standby {
        let cfg = StandbyConfig {
            cluster_dir: dir.to_path_buf(),
            primary: primary.local_addr(),
            secret: secret(),
            standby_id: 7,
        };
        let handle = Arc::new(StandbyHandle::default());
        let h = handle.clone();
        let thread = Some(std::thread::spawn(move || replication::run_standby(&cfg, &h)));
        Standby { handle, thread }
    }

    fn applied(&self) -> u64 {
        self.handle.status.lock().expect("status").applied
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the standby has applied `upto`; how long that took.
fn wait_applied(standby: &Standby, upto: u64) -> Duration {
    let start = Instant::now();
    while standby.applied() < upto {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the standby stopped applying"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let floor_dir = scratch_dir();
    let floor = prealloc(floor_dir.path(), "floor", 1 << 20);
    g.bench_function("raw_pwrite_fdatasync", |b| {
        b.iter_custom(|iters| raw_write_fdatasync(&floor, 4096, iters))
    });

    let plain = scratch_dir();
    site(plain.path());
    {
        let node = Node::open(plain.path(), 1, node_opts()).expect("open");
        let mut i = 0u64;
        g.bench_function("plain", |b| {
            b.iter(|| {
                i += 1;
                commit(&node, i)
            })
        });
        node.close().expect("close");
    }

    // Redo on, nobody connected.
    let lone = scratch_dir();
    site(lone.path());
    {
        let (node, primary) = primary(lone.path(), 0);
        let mut i = 0u64;
        g.bench_function("redo_no_standby", |b| {
            b.iter(|| {
                i += 1;
                commit(&node, i)
            })
        });
        drop(primary);
        node.close().expect("close");
    }

    for (name, sync) in [("async_standby", 0), ("sync_standby", 1)] {
        let p = scratch_dir();
        let s = scratch_dir();
        site(p.path());
        seeded(p.path(), s.path());
        let (node, primary) = primary(p.path(), sync);
        let standby = Standby::start(s.path(), &primary);
        let mut i = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                commit(&node, i)
            })
        });
        if sync == 0 {
            // A burst, then the time the standby needs to apply it all.
            let wm = node.redo_watermark().expect("redo is on");
            wait_applied(&standby, wm.committed());
            let start = Instant::now();
            for k in 0..BURST {
                commit(&node, 1 << 40 | k);
            }
            let burst = start.elapsed();
            let drained = wait_applied(&standby, wm.committed());
            println!(
                "burst of {BURST} commits: primary {:.1} ms ({:.0} commits/s); standby done applying {:.1} ms after the last commit",
                burst.as_secs_f64() * 1e3,
                BURST as f64 / burst.as_secs_f64(),
                drained.as_secs_f64() * 1e3
            );
        }
        drop(standby);
        drop(primary);
        node.close().expect("close");
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
