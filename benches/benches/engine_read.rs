//! Read-only point-lookup transactions (begin, read one random row of a
//! 100 000-row table, commit) with 1 and 8 concurrent transactions: in one
//! node that runs the coordinator, its buffer pool warm (every page of the
//! table cached) and cold (a pool of `MIN_POOL_PAGES` frames, so that
//! nearly every lookup reads its page from the device past the kernel's
//! page cache), next to SQLite (through rusqlite, bundled, WAL mode, one
//! connection per thread) and to the floor of a cold lookup, one random
//! 4 KiB direct read through io_uring, all in the same run.
//!
//! SQLite reads through the kernel's page cache, which holds its whole
//! database here: its figure is a warm one. The pool's counters (hits,
//! misses) are printed after each engine case, so the warm and cold labels
//! can be checked against what the pool did.
//!
//! Run: `cargo bench -p benches --bench engine_read`. Time per element is
//! time per lookup transaction (throughput = its inverse).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use benches::rows::{self, ROWS, VALUE_LEN};
use benches::*;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rand::Rng;
use understudy::{Cluster, Node, NodeOptions, MIN_POOL_PAGES};
use wal::io::IoFile;

const THREADS: [usize; 2] = [1, 8];

/// One lookup transaction of a random row, which must be there.
fn lookup(node: &Node, rng: &mut impl Rng) {
    let k = rng.random_range(0..ROWS);
    let mut t = node.begin().expect("begin");
    let v = t.get(rows::TABLE, &rows::key(k)).expect("get");
    assert_eq!(v.map(|v| v.len()), Some(VALUE_LEN), "row {k}");
    t.commit().expect("commit");
}

/// `threads` concurrent lookups on `node` as `{name}/{threads}`, then what
/// the pool did meanwhile.
fn bench_lookups(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, node: &Node, threads: usize) {
    let before = node.pool_stats();
    g.bench_function(format!("{name}/{threads}"), |b| {
        b.iter_custom(|iters| {
            spread(threads, iters, |_, n| {
                let mut rng = rand::rng();
                for _ in 0..n {
                    lookup(node, &mut rng);
                }
            })
        })
    });
    let after = node.pool_stats();
    let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
    eprintln!(
        "{name}/{threads}: pool of {} frames: {hits} hits, {misses} misses ({:.1} % hits), {} evictions",
        after.frames,
        100.0 * hits as f64 / (hits + misses).max(1) as f64,
        after.evictions - before.evictions,
    );
}

fn sqlite(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open sqlite");
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .expect("configure sqlite");
    c
}

fn sqlite_lookup(c: &rusqlite::Connection, rng: &mut impl Rng) {
    let k = rng.random_range(0..ROWS);
    let tx = c.unchecked_transaction().expect("begin");
    let len: usize = tx
        .query_row("SELECT length(v) FROM t WHERE k = ?1", [k], |r| r.get(0))
        .expect("select");
    assert_eq!(len, VALUE_LEN, "row {k}");
    tx.commit().expect("commit");
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let cluster_dir = dir.path().join("cluster");
    std::fs::create_dir_all(&cluster_dir).expect("cluster dir");
    let ep = format!("unix:{}", cluster_dir.join("coord.sock").display());
    Cluster::create(&cluster_dir, &[1], ep.parse().expect("endpoint"), 4096).expect("cluster");
    let open = |pool_pages| {
        let opts = NodeOptions {
            embed_coordinator: true,
            pool_pages,
            ..NodeOptions::default()
        };
        Node::open(&cluster_dir, 1, opts).expect("node 1")
    };
    let node = open(NodeOptions::default().pool_pages);
    rows::load(&node).expect("load the table");
    eprintln!(
        "engine I/O backend: {}, table files direct: {:?}",
        node.io_backend(),
        node.direct_io()
    );

    let mut g = c.benchmark_group("lookup_one_row");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));

    // The floor of a cold lookup: one random 4 KiB page read from the
    // device, direct, through io_uring, at queue depth 1.
    if let Some(io) = uring() {
        let pages = 64 * 1024u64;
        drop(prealloc(dir.path(), "raw", pages * 4096));
        let file = IoFile::open_direct(&dir.path().join("raw"), false, false).expect("open the baseline file");
        let mut mem = vec![0u8; 2 * 4096];
        let at = mem.as_ptr().align_offset(4096);
        g.bench_function("baseline/io_uring direct 4KiB read", |b| {
            b.iter_custom(|iters| {
                let mut rng = rand::rng();
                let buf = &mut mem[at..at + 4096];
                let start = Instant::now();
                for _ in 0..iters {
                    io.read_exact_at(&file, buf, rng.random_range(0..pages) * 4096)
                        .expect("read");
                }
                start.elapsed()
            })
        });
    }

    // Warm: one pass over every row first, so every page is cached.
    {
        let mut t = node.begin().expect("begin");
        for k in 0..ROWS {
            t.get(rows::TABLE, &rows::key(k)).expect("warm up");
        }
        t.commit().expect("commit");
    }
    for threads in THREADS {
        bench_lookups(&mut g, "understudy_warm_pool", &node, threads);
    }
    node.close().expect("close node 1");

    // Cold: the same node reopened with the smallest pool.
    let node = open(MIN_POOL_PAGES);
    for threads in THREADS {
        bench_lookups(&mut g, "understudy_cold_pool", &node, threads);
    }
    node.close().expect("close node 1");

    let db = dir.path().join("sqlite.db");
    {
        let c = sqlite(&db);
        c.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL);")
            .expect("create");
        let tx = c.unchecked_transaction().expect("begin");
        {
            let mut ins = tx
                .prepare("INSERT INTO t(k, v) VALUES (?1, zeroblob(?2))")
                .expect("prepare");
            for i in 0..ROWS {
                ins.execute(rusqlite::params![i, VALUE_LEN]).expect("insert");
            }
        }
        tx.commit().expect("load sqlite");
    }
    // One connection per thread, as readers in WAL mode run concurrently.
    let conns: Vec<Mutex<rusqlite::Connection>> = (0..8).map(|_| Mutex::new(sqlite(&db))).collect();
    for threads in THREADS {
        g.bench_function(format!("sqlite_wal/{threads}"), |b| {
            b.iter_custom(|iters| {
                spread(threads, iters, |t, n| {
                    let c = conns[t].lock().expect("connection");
                    let mut rng = rand::rng();
                    for _ in 0..n {
                        sqlite_lookup(&c, &mut rng);
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
