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
