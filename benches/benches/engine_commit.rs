//! Durable commits of transactions that each update two random rows of a
//! 100 000-row table, with 1, 8 and 64 concurrent transactions: in one node
//! that runs the coordinator (the single-host deployment; its lock requests
//! are in-process calls), in one node reaching that coordinator over its
//! Unix socket, across three node processes, and in SQLite (through rusqlite, bundled) in
//! WAL mode with `synchronous=FULL` and in rollback-journal mode, all in the
//! same run; next to the floor of one durable write (4 KiB `pwrite` +
//! `fdatasync`, and the same through io_uring) and to the floor of one
//! commit of an undo-logging engine that forces its pages (the log's
//! before-images made durable, then both pages written and made durable).
//!
//! Run: `cargo bench -p benches --bench engine_commit`. Time per element is
//! time per committed transaction (throughput = its inverse).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use benches::rows::{self, ROWS, VALUE_LEN};
use benches::*;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use harness::ChildGuard;
use rand::Rng;
use understudy::{Cluster, Node, NodeOptions};
use wal::io::IoFile;

const THREADS: [usize; 3] = [1, 8, 64];

/// A `bench-worker` process, killed and reaped when dropped.
struct Worker {
    _child: ChildGuard,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(cluster: &Path, id: u32) -> Worker {
        let mut child = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_bench-worker"))
                .args(["--cluster", &cluster.display().to_string(), "--id", &id.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )
        .expect("start bench-worker");
        let stdin = child.take_stdin().expect("piped stdin");
        let mut stdout = BufReader::new(child.take_stdout().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("worker output");
        assert_eq!(line.trim(), "READY", "worker {id} did not start");
        Worker {
            _child: child,
            stdin,
            stdout,
        }
    }

    fn send_run(&mut self, n: u64, threads: usize) {
        writeln!(self.stdin, "RUN {n} {threads}").expect("command a worker");
    }

    fn wait_done(&mut self) -> Duration {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("worker output");
        let ns: u64 = line
            .trim()
            .strip_prefix("DONE ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("worker failed: {line:?}"));
        Duration::from_nanos(ns)
    }
}

fn sqlite(dir: &Path, name: &str, journal: &str) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join(name)).expect("open sqlite");
    c.execute_batch(&format!(
        "PRAGMA journal_mode={journal}; PRAGMA synchronous=FULL;
         CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL);"
    ))
    .expect("configure sqlite");
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
    c
}

fn sqlite_update_two(c: &Mutex<rusqlite::Connection>, rng: &mut impl Rng) {
    let (a, b) = (rng.random_range(0..ROWS), rng.random_range(0..ROWS));
    let v = [rng.random::<u8>(); VALUE_LEN];
    let mut c = c.lock().expect("sqlite mutex");
    let tx = c.transaction().expect("begin");
    for k in [a, b] {
        tx.execute("UPDATE t SET v = ?1 WHERE k = ?2", rusqlite::params![&v[..], k])
            .expect("update");
    }
    tx.commit().expect("commit");
}

/// `threads` concurrent two-row transactions on `node`, as `{name}/{threads}`.
fn bench_node(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, node: &Node, threads: usize) {
    g.bench_function(format!("{name}/{threads}"), |b| {
        b.iter_custom(|iters| {
            spread(threads, iters, |_, n| {
                let mut rng = rand::rng();
                for _ in 0..n {
                    rows::update_two(node, &mut rng).expect("transaction");
                }
            })
        })
    });
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let cluster_dir = dir.path().join("cluster");
    std::fs::create_dir_all(&cluster_dir).expect("cluster dir");
    let ep = format!("unix:{}", cluster_dir.join("coord.sock").display());
    Cluster::create(&cluster_dir, &[1, 2, 3, 4, 5], ep.parse().expect("endpoint"), 4096).expect("cluster");
    // Node 1 runs the coordinator, as a single-host deployment does, and
    // reaches it in-process; the others (node 5 here, the worker
    // processes) over its Unix socket.
    let opts = NodeOptions {
        embed_coordinator: true,
        ..NodeOptions::default()
    };
    let node = Node::open(&cluster_dir, 1, opts).expect("node 1");
    eprintln!("engine I/O backend: {}", node.io_backend());
    rows::load(&node).expect("load the table");

    let mut g = c.benchmark_group("commit_two_rows");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));

    let raw = prealloc(dir.path(), "raw", 1 << 20);
    g.bench_function("baseline/pwrite 4KiB+fdatasync", |b| {
        b.iter_custom(|iters| raw_write_fdatasync(&raw, 4096, iters))
    });
    // Per commit the engine logs the changed ranges of two pages (each
    // page's header and the 100-byte value, with the records' headers), a
    // begin record and the intent: about 0.7 KiB. Then it forces two pages
    // of the table file.
    let floor_log = prealloc(dir.path(), "floor-log", 4 << 20);
    let floor_data = prealloc(dir.path(), "floor-data", 32 << 20);
    g.bench_function("baseline/undo+FORCE commit floor", |b| {
        b.iter_custom(|iters| raw_undo_force_commit(&floor_log, &floor_data, 768, iters))
    });
    if let Some(io) = uring() {
        prealloc(dir.path(), "raw-uring", 1 << 20);
        let file = IoFile::open(&dir.path().join("raw-uring"), true, false).expect("open");
        g.bench_function("baseline/io_uring 4KiB write+fdatasync", |b| {
            b.iter_custom(|iters| raw_uring_write_sync(&io, &file, 4096, iters))
        });
    }

    // The commit call alone, of a transaction that already changed its two
    // rows: the latency an application waits for once its work is done.
    g.bench_function("understudy_1_node/commit_call_only", |b| {
        b.iter_custom(|iters| {
            let mut rng = rand::rng();
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let (a, c) = (rng.random_range(0..ROWS), rng.random_range(0..ROWS));
                // A fresh value: rewriting a row's own value changes nothing.
                let value = [rng.random::<u8>(); VALUE_LEN];
                let mut t = node.begin().expect("begin");
                for k in [a, c] {
                    t.put(rows::TABLE, &rows::key(k), &value).expect("put");
                }
                let start = std::time::Instant::now();
                t.commit().expect("commit");
                spent += start.elapsed();
            }
            spent
        })
    });
    for threads in THREADS {
        bench_node(&mut g, "understudy_1_node", &node, threads);
    }

    // The same, from a node that reaches the coordinator over its socket.
    {
        let socket_node = Node::open(&cluster_dir, 5, NodeOptions::default()).expect("node 5");
        for threads in [8, 64] {
            bench_node(&mut g, "understudy_1_node_over_socket", &socket_node, threads);
        }
        socket_node.close().expect("close node 5");
    }

    {
        let mut workers: Vec<Worker> = (2..=4).map(|id| Worker::start(&cluster_dir, id)).collect();
        for threads in THREADS {
            // `threads` concurrent transactions in all, spread over the three
            // processes (one process when there is one transaction).
            let used = threads.min(3);
            let per = threads.div_ceil(used);
            g.bench_function(format!("understudy_3_processes/{threads}"), |b| {
                b.iter_custom(|iters| {
                    let share = iters.div_ceil(used as u64);
                    for w in workers.iter_mut().take(used) {
                        w.send_run(share, per);
                    }
                    let slowest = workers
                        .iter_mut()
                        .take(used)
                        .map(|w| w.wait_done())
                        .max()
                        .unwrap_or_default();
                    slowest.mul_f64(iters as f64 / (share * used as u64) as f64)
                })
            });
        }
    }

    for (label, journal) in [("sqlite_wal_full", "WAL"), ("sqlite_rollback_journal_full", "DELETE")] {
        let conn = Mutex::new(sqlite(dir.path(), &format!("{label}.db"), journal));
        for threads in THREADS {
            g.bench_function(format!("{label}/{threads}"), |b| {
                b.iter_custom(|iters| {
                    spread(threads, iters, |_, n| {
                        let mut rng = rand::rng();
                        for _ in 0..n {
                            sqlite_update_two(&conn, &mut rng);
                        }
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
