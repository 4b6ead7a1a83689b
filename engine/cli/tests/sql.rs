//! `understudy sql`: statements from `-e` and from standard input, results
//! as tables, errors as a failed exit, and data kept between runs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_understudy");

fn sql_e(dir: &std::path::Path, sql: &str) -> Output {
    Command::new(EXE)
        .arg("sql")
        .arg(dir)
        .args(["-e", sql])
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn statements_from_e_print_tables_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = sql_e(
        &db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (2, 'bo'), (1, 'ada');",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "CREATE\nINSERT 2\n");

    let out = sql_e(&db, "SELECT id, name FROM t");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "| id | name |\n|----|------|\n| 1  | ada  |\n| 2  | bo   |\n(2 rows)\n"
    );

    let out = sql_e(&db, "SELECT * FROM missing");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: sql: "), "{}", text(&out.stderr));
}

#[test]
fn statements_from_stdin_run_group_by_group_and_go_on_after_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(EXE)
        .arg("sql")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = "CREATE TABLE t (x INTEGER);\nINSERT INTO nope VALUES (1);\nBEGIN;\nINSERT INTO t\n  VALUES (1);\nCOMMIT;\nSELECT x FROM t;\nBEGIN; INSERT INTO t VALUES (2);\n";
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "one group failed");
    assert_eq!(
        text(&out.stdout),
        "CREATE\nBEGIN\nINSERT 1\nCOMMIT\n| x |\n|---|\n| 1 |\n(1 row)\nBEGIN\nINSERT 1\n"
    );
    assert!(text(&out.stderr).contains("error: "), "{}", text(&out.stderr));

    // The transaction left open at exit was rolled back.
    let out = sql_e(dir.path(), "SELECT COUNT(*) FROM t");
    assert!(text(&out.stdout).contains("| 1        |"), "{}", text(&out.stdout));
}

#[test]
fn a_cluster_node_runs_sql_and_bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster");
    let c = cluster.to_str().unwrap();
    let init = Command::new(EXE)
        .args(["cluster-init", "--dir", c, "--nodes", "1,2"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init.stderr));
    let on_node = |id: &str, sql: &str| {
        Command::new(EXE)
            .args(["sql", "--cluster", c, "--id", id, "--embed-coordinator", "-e", sql])
            .output()
            .unwrap()
    };

    let out = on_node(
        "1",
        "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (7);",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "CREATE\nINSERT 1\n");
    // Another node of the cluster, later, reads what node 1 committed.
    let out = on_node("2", "SELECT id FROM t");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "| id |\n|----|\n| 7  |\n(1 row)\n");

    // A node the cluster does not have: a typed error, exit 1.
    let out = on_node("9", "SELECT id FROM t");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("node 9"), "{}", text(&out.stderr));
    // A directory and a cluster at once, or a cluster without an id: usage
    // errors (exit 2).
    for args in [
        vec!["sql", "x", "--cluster", c, "--id", "1"],
        vec!["sql", "--cluster", c],
    ] {
        let out = Command::new(EXE).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
    }
}
