//! SQL through GlueSQL on Understudy (`understudy-sql`) next to the same
//! SQL through GlueSQL on its own storages and through SQLite, in the same
//! run. The engines:
//!
//! - `understudy`: GlueSQL on [`UnderstudyStorage`], one node opened with
//!   `understudy::open` (embedded coordinator, durable commits). Each
//!   thread has its own storage on the node, so its own connection and
//!   transactions; a statement that fails with a lock error the storage
//!   calls retryable (a deadlock victim, a lock timeout) is run again, and
//!   the retries are counted and printed after each case;
//! - `gluesql_memory`: GlueSQL on its shared memory storage
//!   (`gluesql-shared-memory-storage`, one clone per thread). It is not
//!   durable and has no transactions: the floor, what GlueSQL itself costs
//!   with a storage that does nothing but keep rows in memory;
//! - `gluesql_redb`: GlueSQL on its redb storage (`gluesql-redb-storage`,
//!   redb's default durability: every commit synced). The threads share one
//!   `Mutex<Glue<RedbStorage>>`: the storage opens a redb write transaction
//!   for every statement, reads too, and redb has one writer at a time
//!   anyway;
//! - `sqlite_wal_full`: SQLite through rusqlite (bundled), WAL mode,
//!   `synchronous=FULL`, the same table, prepared statements cached on the
//!   connection. The threads share one connection behind a mutex, as its
//!   writers would queue for SQLite's one write lock anyway.
//!
//! Every engine starts from the table `items (id INTEGER PRIMARY KEY, name
//! TEXT, qty INTEGER)` holding 10 000 rows, loaded in statements of 500 rows
//! inside one transaction (the memory storage has no transactions: its
//! statements run on their own); the load is timed once per engine and
//! printed. The cases, each on every engine:
//!
//! - `point_select/{engine}`: `SELECT * FROM items WHERE id = k`, a random
//!   existing k, 1 thread;
//! - `range_select/{engine}`: `SELECT * FROM items WHERE id >= k AND id <
//!   k + 100`, 1 thread (time per row);
//! - `update/{engine}/{1,8}`: an autocommit `UPDATE items SET qty = qty + 1
//!   WHERE id = k`, a random existing k, 1 and 8 threads splitting the
//!   iterations (time per transaction);
//! - `insert/{engine}/{1,8}`: an autocommit `INSERT INTO items VALUES (k,
//!   'name', 1)` under a new key, 1 and 8 threads. It runs last, so that the
//!   other cases see the 10 000 rows on every engine.
//!
//! GlueSQL parses and plans every statement (its API has no prepared
//! statements to reuse), the same on each of its storages. Its planner
//! turns `WHERE id = k` of a `SELECT` into a read of one key, but neither a
//! range of the key nor any `UPDATE`'s `WHERE`: those read the whole table
//! and filter it, on every GlueSQL storage. SQLite seeks the key for all of
//! them. So the GlueSQL storages are judged against each other on
//! `range_select` and `update`, and the distance to SQLite there is mostly
//! GlueSQL's executor. On Understudy that whole-table read is also a read
//! lock on every page of the table, held to the commit (strict two-phase
//! locking), so concurrent `update`s deadlock one another and are retried:
//! the `update/understudy/8` figure is mostly that.
//!
//! Run: `cargo bench -p benches --bench sql`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use benches::{scratch_dir, spread};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use gluesql_core::error::Error as SqlError;
use gluesql_core::executor::Payload;
use gluesql_core::prelude::Glue;
use gluesql_core::store::{GStore, GStoreMut, Planner};
use gluesql_redb_storage::RedbStorage;
use gluesql_shared_memory_storage::SharedMemoryStorage;
use rand::Rng;
use understudy_sql::UnderstudyStorage;

const ROWS: i64 = 10_000;
const LOAD_BATCH: i64 = 500;
const RANGE: i64 = 100;
const THREADS: [usize; 2] = [1, 8];
const CREATE: &str = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)";

/// A GlueSQL engine: one `Glue` per thread (or one shared by all), and the
/// retries its statements needed.
struct GlueEngine<S: GStore + GStoreMut + Planner> {
    name: &'static str,
    /// Thread `t` runs its statements on `conns[t % conns.len()]`.
    conns: Vec<Mutex<Glue<S>>>,
    retries: AtomicU64,
}

impl<S: GStore + GStoreMut + Planner> GlueEngine<S> {
    fn new(name: &'static str, conns: Vec<Glue<S>>) -> Self {
        GlueEngine {
            name,
            conns: conns.into_iter().map(Mutex::new).collect(),
            retries: AtomicU64::new(0),
        }
    }

    /// Runs `sql` on thread `t`'s connection, again while it fails with an
    /// error saying it may be retried.
    fn exec(&self, t: usize, sql: &str) -> Vec<Payload> {
        let mut glue = self.conns[t % self.conns.len()].lock().expect("glue lock");
        loop {
            match glue.execute(sql) {
                Ok(out) => return out,
                Err(SqlError::StorageMsg(m)) if m.contains("retryable") => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("{}: {sql}: {e}", self.name),
            }
        }
    }

    /// Creates the table and loads `batches` in one transaction, if the
    /// storage has them.
    fn load(&self, batches: &[String], transactional: bool) -> Duration {
        self.exec(0, CREATE);
        let start = Instant::now();
        if transactional {
            self.exec(0, "BEGIN");
        }
        for b in batches {
            let out = self.exec(0, b);
            assert!(matches!(out[..], [Payload::Insert(n)] if n == LOAD_BATCH as usize));
        }
        if transactional {
            self.exec(0, "COMMIT");
        }
        start.elapsed()
    }
}

/// The rows of one `SELECT`, which must be one statement.
fn rows(out: &[Payload]) -> usize {
    match out {
        [Payload::Select { rows, .. }] => rows.len(),
        other => panic!("not one SELECT: {other:?}"),
    }
}

/// The `LOAD_BATCH`-row `INSERT` statements of the initial load.
fn load_batches() -> Vec<String> {
    (0..ROWS / LOAD_BATCH)
        .map(|b| {
            let values: Vec<String> = (b * LOAD_BATCH..(b + 1) * LOAD_BATCH)
                .map(|k| format!("({k}, 'item-{k}', 0)"))
                .collect();
            format!("INSERT INTO items VALUES {}", values.join(", "))
        })
        .collect()
}

/// A new key for the `insert` cases, never a loaded one nor one handed out
/// before: the counter times an odd constant is a bijection on `u32`, so
/// the keys are unique, and scattered over the key space rather than
/// appended at its end, where concurrent inserters would all lock the same
/// last page.
fn new_key(counter: &AtomicU32) -> i64 {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (1 << 40) + i64::from(n.wrapping_mul(0x9E37_79B1))
}

fn sqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open sqlite");
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        .expect("configure sqlite");
    c
}

/// The statements of the cases for SQLite, on its one connection.
struct Sqlite(Mutex<rusqlite::Connection>);

impl Sqlite {
    fn load(&self, batches: &[String]) -> Duration {
        let c = self.0.lock().expect("sqlite");
        c.execute_batch(CREATE).expect("create");
        let start = Instant::now();
        let tx = c.unchecked_transaction().expect("begin");
        for b in batches {
            assert_eq!(tx.execute(b, []).expect("load"), LOAD_BATCH as usize);
        }
        tx.commit().expect("commit");
        start.elapsed()
    }

    fn point(&self, k: i64) -> usize {
        let c = self.0.lock().expect("sqlite");
        let mut st = c
            .prepare_cached("SELECT id, name, qty FROM items WHERE id = ?1")
            .expect("prepare");
        let mut rows = st.query([k]).expect("select");
        let mut n = 0;
        while let Some(r) = rows.next().expect("row") {
            let _: (i64, String, i64) = (r.get(0).expect("id"), r.get(1).expect("name"), r.get(2).expect("qty"));
            n += 1;
        }
        n
    }

    fn range(&self, k: i64) -> usize {
        let c = self.0.lock().expect("sqlite");
        let mut st = c
            .prepare_cached("SELECT id, name, qty FROM items WHERE id >= ?1 AND id < ?2")
            .expect("prepare");
        let mut rows = st.query([k, k + RANGE]).expect("select");
        let mut n = 0;
        while let Some(r) = rows.next().expect("row") {
            let _: (i64, String, i64) = (r.get(0).expect("id"), r.get(1).expect("name"), r.get(2).expect("qty"));
            n += 1;
        }
        n
    }

    fn update(&self, k: i64) -> usize {
        let c = self.0.lock().expect("sqlite");
        let n = c
            .prepare_cached("UPDATE items SET qty = qty + 1 WHERE id = ?1")
            .expect("prepare")
            .execute([k])
            .expect("update");
        n
    }

    fn insert(&self, k: i64) -> usize {
        let c = self.0.lock().expect("sqlite");
        let n = c
            .prepare_cached("INSERT INTO items VALUES (?1, 'name', 1)")
            .expect("prepare")
            .execute([k])
            .expect("insert");
        n
    }
}

/// The four engines, loaded.
struct Engines {
    node: understudy::Node,
    understudy: GlueEngine<UnderstudyStorage>,
    memory: GlueEngine<SharedMemoryStorage>,
    redb: GlueEngine<RedbStorage>,
    sqlite: Sqlite,
}

fn setup(dir: &std::path::Path) -> Engines {
    let node = understudy::open(dir.join("understudy")).expect("open understudy");
    eprintln!(
        "engine I/O backend: {}, table files direct: {:?}",
        node.io_backend(),
        node.direct_io()
    );
    let max_threads = THREADS[THREADS.len() - 1];
    let understudy = GlueEngine::new(
        "understudy",
        (0..max_threads)
            .map(|_| Glue::new(UnderstudyStorage::new(node.clone()).expect("sql storage")))
            .collect(),
    );
    let shared = SharedMemoryStorage::new();
    let memory = GlueEngine::new(
        "gluesql_memory",
        (0..max_threads).map(|_| Glue::new(shared.clone())).collect(),
    );
    let redb = GlueEngine::new(
        "gluesql_redb",
        vec![Glue::new(
            RedbStorage::new(dir.join("gluesql.redb")).expect("open redb storage"),
        )],
    );
    let sqlite = Sqlite(Mutex::new(sqlite_open(&dir.join("sqlite.db"))));

    let batches = load_batches();
    let report = |what: &str, spent: Duration| {
        eprintln!(
            "initial load, {ROWS} rows, {LOAD_BATCH} per INSERT, one transaction: {what} {:.0} rows/s ({spent:.2?})",
            ROWS as f64 / spent.as_secs_f64()
        );
    };
    report("understudy", understudy.load(&batches, true));
    report("gluesql_memory", memory.load(&batches, false));
    report("gluesql_redb", redb.load(&batches, true));
    report("sqlite_wal_full", sqlite.load(&batches));
    Engines {
        node,
        understudy,
        memory,
        redb,
        sqlite,
    }
}

/// `iters` calls of `op(thread, rng)` spread over `threads` threads.
fn spread_ops(threads: usize, iters: u64, op: &(dyn Fn(usize, &mut rand::rngs::ThreadRng) + Sync)) -> Duration {
    spread(threads, iters, |t, n| {
        let mut rng = rand::rng();
        for _ in 0..n {
            op(t, &mut rng);
        }
    })
}

/// Runs `case` (the name of group `g`) for a GlueSQL engine: `sql(rng)` is
/// the statement, `check(payloads)` asserts its outcome. Prints the retries
/// it took.
fn glue_case<S: GStore + GStoreMut + Planner + Send>(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    case: &str,
    e: &GlueEngine<S>,
    threads: Option<usize>,
    sql: &(dyn Fn(&mut rand::rngs::ThreadRng) -> String + Sync),
    check: &(dyn Fn(&[Payload]) + Sync),
) {
    let id = match threads {
        Some(t) => format!("{}/{t}", e.name),
        None => e.name.to_owned(),
    };
    let statements = AtomicU64::new(0);
    let before = e.retries.load(Ordering::Relaxed);
    let op = |t: usize, rng: &mut rand::rngs::ThreadRng| {
        check(&e.exec(t, &sql(rng)));
        statements.fetch_add(1, Ordering::Relaxed);
    };
    g.bench_function(&id, |b| {
        b.iter_custom(|iters| spread_ops(threads.unwrap_or(1), iters, &op))
    });
    let retries = e.retries.load(Ordering::Relaxed) - before;
    if retries > 0 {
        eprintln!(
            "{case}/{id}: {retries} retries over {} statements",
            statements.load(Ordering::Relaxed)
        );
    }
}

/// The settings every group shares: short, so that the whole runs in
/// minutes.
fn group<'a>(c: &'a mut Criterion, name: &str, elements: u64) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(elements));
    g
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let e = setup(dir.path());

    let point =
        |rng: &mut rand::rngs::ThreadRng| format!("SELECT * FROM items WHERE id = {}", rng.random_range(0..ROWS));
    let one_row = |out: &[Payload]| assert_eq!(rows(out), 1, "one row");
    let mut g = group(c, "point_select", 1);
    glue_case(&mut g, "point_select", &e.understudy, None, &point, &one_row);
    glue_case(&mut g, "point_select", &e.memory, None, &point, &one_row);
    glue_case(&mut g, "point_select", &e.redb, None, &point, &one_row);
    g.bench_function("sqlite_wal_full", |b| {
        let mut rng = rand::rng();
        b.iter(|| assert_eq!(e.sqlite.point(rng.random_range(0..ROWS)), 1, "one row"))
    });
    g.finish();

    let range = |rng: &mut rand::rngs::ThreadRng| {
        let k = rng.random_range(0..=ROWS - RANGE);
        format!("SELECT * FROM items WHERE id >= {k} AND id < {}", k + RANGE)
    };
    let range_rows = |out: &[Payload]| assert_eq!(rows(out), RANGE as usize, "a range of rows");
    let mut g = group(c, "range_select", RANGE as u64);
    glue_case(&mut g, "range_select", &e.understudy, None, &range, &range_rows);
    glue_case(&mut g, "range_select", &e.memory, None, &range, &range_rows);
    glue_case(&mut g, "range_select", &e.redb, None, &range, &range_rows);
    g.bench_function("sqlite_wal_full", |b| {
        let mut rng = rand::rng();
        b.iter(|| {
            let n = e.sqlite.range(rng.random_range(0..=ROWS - RANGE));
            assert_eq!(n, RANGE as usize, "a range of rows");
        })
    });
    g.finish();

    let update = |rng: &mut rand::rngs::ThreadRng| {
        format!(
            "UPDATE items SET qty = qty + 1 WHERE id = {}",
            rng.random_range(0..ROWS)
        )
    };
    let updated = |out: &[Payload]| assert!(matches!(out, [Payload::Update(1)]), "one row updated: {out:?}");
    let mut g = group(c, "update", 1);
    for threads in THREADS {
        glue_case(&mut g, "update", &e.understudy, Some(threads), &update, &updated);
        glue_case(&mut g, "update", &e.memory, Some(threads), &update, &updated);
        glue_case(&mut g, "update", &e.redb, Some(threads), &update, &updated);
        let sq = |_: usize, rng: &mut rand::rngs::ThreadRng| {
            assert_eq!(e.sqlite.update(rng.random_range(0..ROWS)), 1, "one row updated");
        };
        g.bench_function(format!("sqlite_wal_full/{threads}"), |b| {
            b.iter_custom(|iters| spread_ops(threads, iters, &sq))
        });
    }
    g.finish();

    let keys = AtomicU32::new(0);
    let insert = |_: &mut rand::rngs::ThreadRng| format!("INSERT INTO items VALUES ({}, 'name', 1)", new_key(&keys));
    let inserted = |out: &[Payload]| assert!(matches!(out, [Payload::Insert(1)]), "one row inserted: {out:?}");
    let mut g = group(c, "insert", 1);
    for threads in THREADS {
        glue_case(&mut g, "insert", &e.understudy, Some(threads), &insert, &inserted);
        glue_case(&mut g, "insert", &e.memory, Some(threads), &insert, &inserted);
        glue_case(&mut g, "insert", &e.redb, Some(threads), &insert, &inserted);
        let sq = |_: usize, _: &mut rand::rngs::ThreadRng| {
            assert_eq!(e.sqlite.insert(new_key(&keys)), 1, "one row inserted");
        };
        g.bench_function(format!("sqlite_wal_full/{threads}"), |b| {
            b.iter_custom(|iters| spread_ops(threads, iters, &sq))
        });
    }
    g.finish();

    e.node.close().expect("close");
}

criterion_group!(benches, bench);
criterion_main!(benches);
