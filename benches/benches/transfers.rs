//! Read-then-write transfers between random accounts, 8 threads, next to
//! SQLite in the same run: the false-conflict and deadlock figure an
//! embedder meets first.
//!
//! 10 000 accounts of 8-byte balances in an ordered table (Understudy,
//! through [`understudy::open`]) and in a `WITHOUT ROWID` table (SQLite,
//! WAL mode, `synchronous=FULL`, `BEGIN IMMEDIATE`: one writer at a time,
//! the 8 threads queue for it). Each transfer reads two random accounts and
//! writes both back, durably:
//!
//! - `transfer/understudy_get/8`: read with `get`, then `put` — two readers
//!   of one page hold shared locks each other's write waits for, so some
//!   transfers are deadlock victims and `Node::run` runs them again;
//! - `transfer/understudy_get_for_update/8`: read with `get_for_update`
//!   (the pages X-locked at once), accounts taken in key order;
//! - `transfer/sqlite_wal_full/8`.
//!
//! After each Understudy case, the retries per committed transfer (every
//! extra try `Node::run` made, almost all deadlock victims) are printed.
//!
//! Run: `cargo bench -p benches --bench transfers`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use benches::{scratch_dir, spread};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::Rng;
use understudy::{Node, Transaction};

const ACCOUNTS: u32 = 10_000;
const THREADS: usize = 8;
const TABLE: &str = "accounts";

fn account(i: u32) -> Vec<u8> {
    format!("acct-{i:06}").into_bytes()
}

fn balance(v: Option<Vec<u8>>) -> u64 {
    u64::from_le_bytes(v.expect("an account").try_into().expect("8 bytes"))
}

/// Two distinct random accounts, in key order.
fn pair(rng: &mut impl Rng) -> (u32, u32) {
    loop {
        let (a, b) = (rng.random_range(0..ACCOUNTS), rng.random_range(0..ACCOUNTS));
        if a != b {
            return (a.min(b), a.max(b));
        }
    }
}

fn move_one(t: &mut Transaction, from: u32, to: u32, for_update: bool) -> understudy::Result<()> {
    let read = |t: &mut Transaction, k: &[u8]| {
        if for_update {
            t.get_for_update(TABLE, k)
        } else {
            t.get(TABLE, k)
        }
    };
    let (a, b) = (account(from), account(to));
    let x = balance(read(t, &a)?);
    let y = balance(read(t, &b)?);
    t.put(TABLE, &a, &x.wrapping_sub(1).to_le_bytes())?;
    t.put(TABLE, &b, &y.wrapping_add(1).to_le_bytes())
}

/// One transfer through `Node::run`, counting its tries and its commit.
fn us_transfer(db: &Node, tries: &AtomicU64, done: &AtomicU64, for_update: bool) {
    let (from, to) = pair(&mut rand::rng());
    db.run(|t| {
        tries.fetch_add(1, Ordering::Relaxed);
        move_one(t, from, to, for_update)
    })
    .expect("transfer");
    done.fetch_add(1, Ordering::Relaxed);
}

fn sq_transfer(c: &Mutex<rusqlite::Connection>) {
    let (from, to) = pair(&mut rand::rng());
    let c = c.lock().expect("sqlite");
    c.execute_batch("BEGIN IMMEDIATE").expect("begin");
    for (k, d) in [(from, -1i64), (to, 1)] {
        c.prepare_cached("UPDATE t SET v = v + ?2 WHERE k = ?1")
            .expect("prepare")
            .execute(rusqlite::params![account(k), d])
            .expect("update");
    }
    c.execute_batch("COMMIT").expect("commit");
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let db = understudy::open(dir.path().join("understudy")).expect("open");
    db.create_ordered_table(TABLE).expect("create");
    db.run(|t| {
        for i in 0..ACCOUNTS {
            t.put(TABLE, &account(i), &1_000u64.to_le_bytes())?;
        }
        Ok(())
    })
    .expect("load");
    let sq = rusqlite::Connection::open(dir.path().join("sqlite.db")).expect("sqlite");
    sq.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE t(k BLOB PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .expect("configure sqlite");
    {
        let tx = sq.unchecked_transaction().expect("begin");
        for i in 0..ACCOUNTS {
            tx.execute("INSERT INTO t(k, v) VALUES (?1, 1000)", [account(i)])
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let sq = Mutex::new(sq);

    let mut g = c.benchmark_group("transfer");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (name, for_update) in [("understudy_get", false), ("understudy_get_for_update", true)] {
        let tries = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        g.bench_function(format!("{name}/{THREADS}"), |b| {
            b.iter_custom(|iters| {
                spread(THREADS, iters, |_, n| {
                    for _ in 0..n {
                        us_transfer(&db, &tries, &done, for_update);
                    }
                })
            })
        });
        let (tries, done) = (tries.into_inner(), done.into_inner());
        eprintln!(
            "{name}: {} retries for {done} committed transfers ({:.2} %)",
            tries - done,
            100.0 * (tries - done) as f64 / done as f64
        );
    }
    g.bench_function(format!("sqlite_wal_full/{THREADS}"), |b| {
        b.iter_custom(|iters| {
            spread(THREADS, iters, |_, n| {
                for _ in 0..n {
                    sq_transfer(&sq);
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
