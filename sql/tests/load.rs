//! Larger tables than the suite's (scans of many chunks, B+tree splits and
//! merges under rows and index entries) and two connections moving money
//! between accounts at once.

use gluesql_core::prelude::{Glue, Payload, Value};
use understudy_sql::UnderstudyStorage;

fn one(glue: &mut Glue<UnderstudyStorage>, sql: &str) -> Value {
    match glue.execute(sql).expect("the query runs").pop() {
        Some(Payload::Select { mut rows, .. }) => rows.remove(0).remove(0),
        other => panic!("not a select: {other:?}"),
    }
}

#[test]
fn thousands_of_rows_keep_key_and_index_order_through_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Glue::new(UnderstudyStorage::open(dir.path()).unwrap());
    g.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, pad TEXT)")
        .unwrap();
    g.execute("CREATE INDEX t_v ON t (v)").unwrap();
    const N: i64 = 3000;
    let values: Vec<String> = (0..N)
        .map(|i| {
            let id = (i * 7919) % N; // every id once, out of order
            format!("({id}, {}, '{}')", N - id, "p".repeat(40))
        })
        .collect();
    g.execute(format!("INSERT INTO t VALUES {}", values.join(","))).unwrap();
    g.execute("UPDATE t SET v = v + 1").unwrap();
    g.execute("DELETE FROM t WHERE id % 2 = 0").unwrap();

    let ids: Vec<i64> = match g.execute("SELECT id FROM t").unwrap().pop() {
        Some(Payload::Select { rows, .. }) => rows
            .into_iter()
            .map(|r| match r[0] {
                Value::I64(i) => i,
                ref v => panic!("{v:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ids, (0..N).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    // v = N - id + 1 for odd ids; v > N - 99 holds for ids below 100.
    assert_eq!(
        one(&mut g, &format!("SELECT COUNT(*) FROM t WHERE v > {}", N - 99)),
        Value::I64(50)
    );

    g.execute("DROP TABLE t").unwrap();
    g.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)").unwrap();
    assert_eq!(one(&mut g, "SELECT COUNT(*) FROM t"), Value::I64(0));
    let mut txn = g.storage.node().begin().unwrap();
    assert_eq!(
        txn.len(understudy_sql::INDEXES).unwrap(),
        0,
        "a dropped table's index entries are gone"
    );
    txn.rollback().unwrap();
}

#[test]
fn concurrent_transfers_keep_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let node = understudy::open(dir.path()).unwrap();
    let mut setup = Glue::new(UnderstudyStorage::new(node.clone()).unwrap());
    setup
        .execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER)")
        .unwrap();
    let accounts: Vec<String> = (0..8).map(|i| format!("({i}, 100)")).collect();
    setup
        .execute(format!("INSERT INTO acct VALUES {}", accounts.join(",")))
        .unwrap();

    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let mut g = Glue::new(UnderstudyStorage::new(node.clone()).unwrap());
            std::thread::spawn(move || {
                let mut retries = 0;
                for n in 0..40u64 {
                    let (from, to) = ((n + w) % 8, (n * 3 + w + 1) % 8);
                    if from == to {
                        continue;
                    }
                    let transfer = format!(
                        "BEGIN; UPDATE acct SET bal = bal - 1 WHERE id = {from}; \
                         UPDATE acct SET bal = bal + 1 WHERE id = {to}; COMMIT;"
                    );
                    loop {
                        match g.execute(&transfer) {
                            Ok(_) => break,
                            Err(e) => {
                                assert!(e.to_string().contains("retryable"), "{e}");
                                g.execute("ROLLBACK").unwrap();
                                retries += 1;
                            }
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let retries: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    println!("transactions run again after a deadlock or lock timeout: {retries}");
    assert_eq!(one(&mut setup, "SELECT SUM(bal) FROM acct"), Value::I64(800));
}
