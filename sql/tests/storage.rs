//! What the GlueSQL suite does not ask of a storage: refusals as errors,
//! key order, durability across a reopen, large values, and isolation
//! between two connections on one node.

use std::time::{Duration, Instant};

use gluesql_core::error::Error;
use gluesql_core::prelude::{Glue, Payload, Value};
use understudy_sql::UnderstudyStorage;

fn glue(dir: &std::path::Path) -> Glue<UnderstudyStorage> {
    Glue::new(UnderstudyStorage::open(dir).expect("the database opens"))
}

/// The rows of the last statement's result.
fn rows(glue: &mut Glue<UnderstudyStorage>, sql: &str) -> Vec<Vec<Value>> {
    match glue.execute(sql).expect("the query runs").pop() {
        Some(Payload::Select { rows, .. }) => rows,
        other => panic!("not a select: {other:?}"),
    }
}

#[test]
fn a_key_too_long_is_an_error_and_its_statement_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = glue(dir.path());
    g.execute("CREATE TABLE t (k TEXT PRIMARY KEY)").unwrap();
    let long = "x".repeat(2 * understudy::MAX_KEY);
    let err = g
        .execute(format!("INSERT INTO t VALUES ('a'), ('{long}')"))
        .unwrap_err();
    assert!(matches!(err, Error::StorageMsg(_)), "{err:?}");
    assert_eq!(rows(&mut g, "SELECT COUNT(*) FROM t"), vec![vec![Value::I64(0)]]);
    g.execute("INSERT INTO t VALUES ('b')").unwrap();
    assert_eq!(rows(&mut g, "SELECT k FROM t"), vec![vec![Value::Str("b".into())]]);
}

#[test]
fn keys_and_indexes_come_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = glue(dir.path());
    g.execute("CREATE TABLE i (k INTEGER PRIMARY KEY)").unwrap();
    g.execute("INSERT INTO i VALUES (300), (-7), (0), (-300), (7), (256)")
        .unwrap();
    let got: Vec<_> = rows(&mut g, "SELECT k FROM i")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<_> = [-300, -7, 0, 7, 256, 300].into_iter().map(Value::I64).collect();
    assert_eq!(got, want);

    // GlueSQL refuses a float primary key, but indexes floats; the rows were
    // inserted out of order, so sorted ones came through the index.
    g.execute("CREATE TABLE f (k FLOAT)").unwrap();
    g.execute("INSERT INTO f VALUES (2.5), (-1.5), (0.0), (-100.0)")
        .unwrap();
    g.execute("CREATE INDEX f_k ON f (k)").unwrap();
    let got: Vec<_> = rows(&mut g, "SELECT k FROM f WHERE k > -50.0")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let want: Vec<_> = [-1.5, 0.0, 2.5].into_iter().map(Value::F64).collect();
    assert_eq!(got, want);
}

#[test]
fn committed_work_survives_a_reopen_and_rolled_back_work_does_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut g = glue(dir.path());
        g.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)").unwrap();
        g.execute("CREATE INDEX t_name ON t (name)").unwrap();
        g.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')").unwrap();
        g.execute("BEGIN; INSERT INTO t VALUES (3, 'c'); CREATE TABLE u (x INTEGER); ROLLBACK;")
            .unwrap();
        g.storage.node().close().unwrap();
    }
    let mut g = glue(dir.path());
    assert_eq!(
        rows(&mut g, "SELECT id FROM t WHERE name = 'b'"),
        vec![vec![Value::I64(2)]]
    );
    assert_eq!(rows(&mut g, "SELECT COUNT(*) FROM t"), vec![vec![Value::I64(2)]]);
    assert!(g.execute("SELECT * FROM u").is_err());
}

#[test]
fn a_large_value_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = glue(dir.path());
    g.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    let body = "0123456789abcdef".repeat(64 * 1024);
    g.execute(format!("INSERT INTO big VALUES (1, '{body}')")).unwrap();
    assert_eq!(rows(&mut g, "SELECT body FROM big"), vec![vec![Value::Str(body)]]);
}

#[test]
fn a_reader_waits_for_an_uncommitted_writer_and_sees_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let node = understudy::open(dir.path()).unwrap();
    let mut writer = Glue::new(UnderstudyStorage::new(node.clone()).unwrap());
    let mut reader = Glue::new(UnderstudyStorage::new(node.clone()).unwrap());
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
    writer.execute("INSERT INTO t VALUES (1)").unwrap();
    writer.execute("BEGIN; INSERT INTO t VALUES (2);").unwrap();

    let hold = Duration::from_millis(300);
    let started = Instant::now();
    let read = std::thread::spawn(move || rows(&mut reader, "SELECT COUNT(*) FROM t"));
    std::thread::sleep(hold);
    writer.execute("COMMIT").unwrap();
    let seen = read.join().unwrap();
    // Serializable: the reader neither saw the uncommitted row nor read
    // around it; it waited for the commit and counted both rows.
    assert_eq!(seen, vec![vec![Value::I64(2)]]);
    assert!(started.elapsed() >= hold);
}

#[test]
fn a_database_reopens_in_the_same_process_without_a_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut g = glue(dir.path());
        g.execute("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .unwrap();
        g.execute("BEGIN; INSERT INTO t VALUES (2);").unwrap();
    }
    let mut g = glue(dir.path());
    assert_eq!(rows(&mut g, "SELECT id FROM t"), vec![vec![Value::I64(1)]]);
}

#[test]
fn a_table_name_too_long_is_refused_and_a_schema_of_thousands_of_columns_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = glue(dir.path());
    g.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY); INSERT INTO kept VALUES (1);")
        .unwrap();
    let long = "n".repeat(2 * understudy::MAX_KEY);
    let err = g.execute(format!("CREATE TABLE {long} (id INTEGER)")).unwrap_err();
    assert!(
        matches!(&err, Error::StorageMsg(m) if m.contains("too long")),
        "{err:?}"
    );
    assert_eq!(rows(&mut g, "SELECT id FROM kept"), vec![vec![Value::I64(1)]]);

    // A schema far larger than a page goes out of line like a large value.
    let columns: Vec<String> = (0..3000).map(|i| format!("c{i} INTEGER")).collect();
    g.execute(format!("CREATE TABLE wide ({})", columns.join(", ")))
        .unwrap();
    let values: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    g.execute(format!("INSERT INTO wide VALUES ({})", values.join(", ")))
        .unwrap();
    drop(g);
    let mut g = glue(dir.path());
    assert_eq!(rows(&mut g, "SELECT c2999 FROM wide"), vec![vec![Value::I64(2999)]]);
}

#[test]
fn a_table_dropped_while_another_connection_scans_it_waits_for_the_scan() {
    use gluesql_core::store::{Store, Transaction};

    let dir = tempfile::tempdir().unwrap();
    let node = understudy::open(dir.path()).unwrap();
    let mut reader = UnderstudyStorage::new(node.clone()).unwrap();
    let mut dropper = Glue::new(UnderstudyStorage::new(node.clone()).unwrap());
    const N: i64 = 1000;
    dropper
        .execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let values: Vec<String> = (0..N).map(|i| format!("({i}, '{}')", "v".repeat(50))).collect();
    dropper
        .execute(format!("INSERT INTO t VALUES {}", values.join(", ")))
        .unwrap();

    // The reader is part-way through the table (past its first chunk) ...
    reader.begin(false).unwrap();
    let mut seen = Vec::new();
    {
        let mut scan = reader.scan_data("t").unwrap();
        for row in scan.by_ref().take(300) {
            seen.push(row.unwrap().0);
        }
        // ... when another connection drops the table: it waits for the
        // reader's locks ...
        let started = Instant::now();
        let drop_it = std::thread::spawn(move || {
            let out = dropper.execute("DROP TABLE t");
            (out, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!drop_it.is_finished(), "the drop did not wait for the scan");
        // ... and the reader reads every row to the end.
        for row in scan {
            seen.push(row.unwrap().0);
        }
        assert_eq!(seen.len(), N as usize);
        let want: Vec<_> = (0..N).map(gluesql_core::data::Key::I64).collect();
        assert_eq!(seen, want);
        reader.commit().unwrap();
        let (out, waited) = drop_it.join().unwrap();
        out.expect("the drop goes through once the reader has committed");
        assert!(waited >= Duration::from_millis(200));
    }
    let mut g = Glue::new(reader);
    let err = g.execute("SELECT * FROM t").unwrap_err();
    assert!(format!("{err:?}").contains("TableNotFound"), "{err:?}");
    // The name is free, with none of the old rows under it.
    g.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").unwrap();
    assert_eq!(rows(&mut g, "SELECT COUNT(*) FROM t"), vec![vec![Value::I64(0)]]);
}

#[test]
fn a_statement_that_fails_inside_begin_is_undone_alone_and_the_block_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = glue(dir.path());
    g.execute("CREATE TABLE t (k TEXT PRIMARY KEY); CREATE TABLE u (x INTEGER);")
        .unwrap();
    g.execute("BEGIN; INSERT INTO t VALUES ('a');").unwrap();
    // Refused by the storage after its first row was written ...
    let long = "x".repeat(2 * understudy::MAX_KEY);
    let err = g
        .execute(format!("INSERT INTO t VALUES ('b'), ('{long}')"))
        .unwrap_err();
    assert!(matches!(err, Error::StorageMsg(_)), "{err:?}");
    // ... and by GlueSQL after the storage dropped the first table.
    let err = g.execute("DROP TABLE u, missing").unwrap_err();
    assert!(format!("{err:?}").contains("TableNotFound"), "{err:?}");
    // The block goes on with what came before the failed statements.
    assert_eq!(rows(&mut g, "SELECT k FROM t"), vec![vec![Value::Str("a".into())]]);
    g.execute("INSERT INTO u VALUES (1); COMMIT;").unwrap();
    assert_eq!(rows(&mut g, "SELECT k FROM t"), vec![vec![Value::Str("a".into())]]);
    assert_eq!(rows(&mut g, "SELECT x FROM u"), vec![vec![Value::I64(1)]]);
}

/// GlueSQL reads the rows an `UPDATE` changes by scanning the whole
/// table; the storage scans it for update (exclusive locks), so
/// connections updating one table at once queue for it instead of each
/// holding shared locks the others' writes wait for — no statement fails
/// as a deadlock victim, and no increment is lost.
#[test]
fn concurrent_updates_queue_without_deadlocks() {
    const THREADS: i64 = 4;
    const EACH: i64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let node = understudy::open(dir.path()).unwrap();
    let mut g = Glue::new(UnderstudyStorage::new(node.clone()).unwrap());
    g.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER)").unwrap();
    let values: Vec<String> = (0..500).map(|i| format!("({i}, 0)")).collect();
    g.execute(format!("INSERT INTO c VALUES {}", values.join(", ")))
        .unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            let node = node.clone();
            std::thread::spawn(move || {
                let mut g = Glue::new(UnderstudyStorage::new(node).unwrap());
                for i in 0..EACH {
                    // No retry: a deadlock or a lock timeout fails the test.
                    let id = (w * 97 + i * 13) % 500;
                    // Every other one inside a block, in one call with
                    // other statements: GlueSQL plans them all before it
                    // runs the first.
                    let sql = if i % 2 == 0 {
                        format!("UPDATE c SET n = n + 1 WHERE id = {id}")
                    } else {
                        format!("BEGIN; UPDATE c SET n = n + 1 WHERE id = {id}; COMMIT;")
                    };
                    g.execute(sql).unwrap_or_else(|e| panic!("update: {e:?}"));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
    assert_eq!(
        rows(&mut g, "SELECT SUM(n), COUNT(*) FROM c"),
        vec![vec![Value::I64(THREADS * EACH), Value::I64(500)]]
    );
}
