//! Read for update ([`Transaction::get_for_update`]): threads that each
//! read a counter and write it back plus one, without retrying, all
//! commit when they read it for update — the second reader waits at its
//! read instead of holding a shared lock the first one's write must wait
//! for, which would make one of them a deadlock victim — and no increment
//! is lost. Both table kinds; the ordered table holds enough rows that
//! its root is a branch (a tree that is one leaf takes its root shared
//! first, and two writers converting that lock to exclusive can still
//! deadlock: see `get_for_update`'s docs), and the counter exists before
//! the threads start (see below).

use std::sync::Arc;

use understudy::{Node, Transaction};

const THREADS: usize = 4;
const INCREMENTS: u64 = 25;

fn increment(t: &mut Transaction, table: &str) -> understudy::Result<()> {
    let now = t.get_for_update(table, b"counter")?.expect("the counter exists");
    let now = u64::from_le_bytes(now.try_into().expect("8 bytes"));
    t.put(table, b"counter", &(now + 1).to_le_bytes())
}

fn run(db: &Arc<Node>, table: &str) {
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let db = db.clone();
            let table = table.to_string();
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    let mut t = db.begin().unwrap();
                    // No retry: any deadlock or timeout fails the test.
                    if let Err(e) = increment(&mut t, &table) {
                        panic!("{table}: {e:?}");
                    }
                    t.commit().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
    let mut t = db.begin().unwrap();
    let v = t.get(table, b"counter").unwrap().unwrap();
    t.rollback().unwrap();
    assert_eq!(u64::from_le_bytes(v.try_into().unwrap()), THREADS as u64 * INCREMENTS);
}

#[test]
fn increments_read_for_update_all_commit_without_retries_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(understudy::open(dir.path()).unwrap());
    db.create_ordered_table("ordered").unwrap();
    db.create_table("hash", 4).unwrap();
    db.run(|t| {
        for i in 0..2_000u32 {
            t.put("ordered", format!("row-{i:06}").as_bytes(), &[7; 100])?;
        }
        // The counters exist before the threads start: the first insert of
        // a key may split a full leaf, which takes the parent exclusively —
        // a change of the tree's shape that can meet another reader's
        // descent in a deadlock, read for update or not.
        t.put("ordered", b"counter", &0u64.to_le_bytes())?;
        t.put("hash", b"counter", &0u64.to_le_bytes())
    })
    .unwrap();
    run(&db, "ordered");
    run(&db, "hash");
}

#[test]
fn read_for_update_of_a_missing_key_or_table_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let db = understudy::open(dir.path()).unwrap();
    db.create_ordered_table("t").unwrap();
    let mut t = db.begin().unwrap();
    assert_eq!(t.get_for_update("t", b"nothing").unwrap(), None);
    assert!(matches!(
        t.get_for_update("missing", b"k"),
        Err(understudy::Error::NoSuchTable(_))
    ));
    t.rollback().unwrap();
}

/// Scans for update ([`Transaction::range_for_update`]): threads that each
/// scan a range of rows, find the one to change by its value and change
/// it — what a SQL `UPDATE … WHERE` on a column without an index does —
/// all commit without retrying, and no change is lost. Scanned plainly
/// (shared locks), the same transactions deadlock, which the last part
/// shows happens for real.
#[test]
fn scans_for_update_queue_instead_of_deadlocking() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(understudy::open(dir.path()).unwrap());
    db.create_ordered_table("t").unwrap();
    db.run(|t| {
        for i in 0..2_000u32 {
            t.put("t", format!("row-{i:06}").as_bytes(), &0u64.to_le_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    // Bumps the first row of the range whose value is `below`, scanning
    // the range for update or not.
    fn bump(t: &mut Transaction, for_update: bool, below: u64) -> understudy::Result<()> {
        let (lo, hi) = (b"row-000100".as_slice(), b"row-000300".as_slice());
        let mut found = None;
        let rows = if for_update {
            t.range_for_update("t", lo..hi)?
        } else {
            t.range("t", lo..hi)?
        };
        for row in rows {
            let (k, v) = row?;
            let v = u64::from_le_bytes(v.try_into().expect("8 bytes"));
            if found.is_none() && v < below {
                found = Some((k, v));
            }
        }
        let (k, v) = found.expect("a row to bump");
        t.put("t", &k, &(v + 1).to_le_bytes())
    }

    let workers: Vec<_> = (0..THREADS as u64)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..INCREMENTS {
                    let mut t = db.begin().unwrap();
                    if let Err(e) = bump(&mut t, true, u64::MAX) {
                        panic!("a scan for update failed: {e:?}");
                    }
                    t.commit().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
    let mut t = db.begin().unwrap();
    let total: u64 = t
        .iter("t")
        .unwrap()
        .map(|r| u64::from_le_bytes(r.unwrap().1.try_into().unwrap()))
        .sum();
    t.rollback().unwrap();
    assert_eq!(total, THREADS as u64 * INCREMENTS);

    // Plain scans: two transactions hold S on the range, then each wants
    // X on a row of it — one of them is the deadlock victim.
    let mut a = db.begin().unwrap();
    let mut b = db.begin().unwrap();
    let (ra, rb) = (a.iter("t").unwrap().count(), b.iter("t").unwrap().count());
    assert_eq!((ra, rb), (2_000, 2_000));
    // Each side rolls back when it is the victim (its locks go), or
    // commits.
    let other = std::thread::spawn(move || match b.put("t", b"row-000001", b"b") {
        Ok(()) => b.commit(),
        Err(e) => Err(e),
    });
    let mine = match a.put("t", b"row-001999", b"a") {
        Ok(()) => a.commit(),
        Err(e) => {
            drop(a);
            Err(e)
        }
    };
    let theirs = other.join().unwrap();
    let victims = [&mine, &theirs]
        .iter()
        .filter(|r| matches!(r, Err(understudy::Error::Deadlock { .. })))
        .count();
    assert_eq!(victims, 1, "{mine:?} {theirs:?}");
    assert!(mine.is_ok() || theirs.is_ok(), "{mine:?} {theirs:?}");
}
