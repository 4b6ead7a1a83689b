//! Peer recovery under SQL: two node processes of one cluster run SQL
//! (`understudy sql --cluster DIR --id N`, statements on standard input) on
//! one database; one is killed with SIGKILL in the middle of a transaction
//! that inserted, updated and deleted rows, created a table, created an
//! index and added a column. The other keeps running and committing; its
//! node recovers the dead one, and the dead one's transaction is gone —
//! rows, schema changes and index alike — for the survivor and for the
//! killed node when it comes back.
//!
//! Every wait is bounded; every process is killed and reaped on every path
//! out of the test (`ChildGuard`).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use harness::ChildGuard;
use support::{member, run_ok, Coordinator, EXE, PATIENCE};

/// Statements the survivor commits after the kill.
const AFTER: u32 = 20;
/// Rows of the survivor's table.
const S_ROWS: u32 = 400;
/// Rows of the table between the two nodes' tables.
const M_ROWS: u32 = 200;

/// A line a node printed: a result on stdout, or an error on stderr.
#[derive(Debug)]
enum Line {
    Out(String),
    Err(String),
}

/// One `understudy sql --cluster` process, fed statements one group at a
/// time.
struct SqlNode {
    id: u32,
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
}

fn forward(out: impl Read + Send + 'static, tx: Sender<Line>, tag: fn(String) -> Line) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(tag(line)).is_err() {
                break;
            }
        }
    });
}

impl SqlNode {
    fn start(dir: &Path, id: u32) -> SqlNode {
        let mut child = ChildGuard::spawn(
            Command::new(EXE)
                .args([
                    "sql",
                    "--cluster",
                    dir.to_str().expect("UTF-8"),
                    "--id",
                    &id.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .expect("spawn understudy sql");
        let (tx, lines) = mpsc::channel();
        forward(child.take_stdout().expect("piped"), tx.clone(), Line::Out);
        let stderr = child.child_mut().and_then(|c| c.stderr.take()).expect("piped");
        forward(stderr, tx, Line::Err);
        let stdin = child.take_stdin();
        SqlNode {
            id,
            child,
            stdin,
            lines,
        }
    }

    /// Runs one statement group and returns the lines it printed up to and
    /// including the first that `last` accepts, or the error it printed.
    fn run(&mut self, sql: &str, last: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{sql}")
            .and_then(|_| stdin.flush())
            .expect("write a statement");
        let deadline = Instant::now() + PATIENCE;
        let mut got = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Line::Out(l)) => {
                    let done = last(&l);
                    got.push(l);
                    if done {
                        return Ok(got);
                    }
                }
                Ok(Line::Err(l)) if l.starts_with("error: ") => return Err(l),
                // Warnings of the node's log, say: not a statement's result.
                Ok(Line::Err(_)) => {}
                Err(e) => panic!("node {}: no answer to {sql:?} ({e:?}); so far {got:?}", self.id),
            }
        }
    }

    /// Runs a statement that must succeed, printing `want` last.
    fn ok(&mut self, sql: &str, want: &str) -> Vec<String> {
        self.run(sql, |l| l == want)
            .unwrap_or_else(|e| panic!("node {}: {sql:?} failed: {e}", self.id))
    }

    /// Runs a SELECT that must succeed; its table's lines.
    fn select(&mut self, sql: &str) -> Vec<String> {
        self.run(sql, |l| l.starts_with('(') && l.ends_with(')'))
            .unwrap_or_else(|e| panic!("node {}: {sql:?} failed: {e}", self.id))
    }

    /// Runs an autocommit statement until it succeeds, retrying it while
    /// it fails with a retryable error (a lock the killed node left
    /// retained, before its recovery frees it); returns the retries.
    fn ok_retrying(&mut self, sql: &str, want: &str) -> u32 {
        let deadline = Instant::now() + PATIENCE;
        let mut retries = 0;
        loop {
            match self.run(sql, |l| l == want) {
                Ok(_) => return retries,
                Err(e) if e.contains("retryable") && Instant::now() < deadline => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("node {}: {sql:?} failed after {retries} retries: {e}", self.id),
            }
        }
    }

    /// Closes its standard input: the program rolls back nothing (no
    /// transaction is open), leaves the cluster and exits.
    fn finish(&mut self) {
        self.stdin = None;
        let status = self.child.wait_timeout(PATIENCE).expect("wait");
        assert!(status.is_some(), "node {} did not exit after its input closed", self.id);
    }
}

#[test]
fn a_sql_node_killed_mid_transaction_is_rolled_back_by_its_peer_while_the_peer_keeps_committing() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("cluster");
    let d = dir.to_str().expect("UTF-8");
    run_ok(&["cluster-init", "--dir", d, "--nodes", "1,2"]);
    let mut coord = Coordinator::start(&dir, &[]);
    coord.wait_serving();

    // The survivor's table `s`, and a table `m` between it and the killed
    // node's table `a` in key order. Rows of all tables share one B+tree
    // (`sql.rows`, keyed by table name, then row key) whose locks are
    // leaf pages: `m` fills leaves of its own, so `a`'s leaves and `s`'s
    // are different pages.
    let mut b = SqlNode::start(&dir, 2);
    let filler = "b".repeat(100);
    for (table, rows) in [("s", S_ROWS), ("m", M_ROWS)] {
        b.ok(
            &format!("CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT);"),
            "CREATE",
        );
        let values: Vec<String> = (0..rows).map(|i| format!("({i}, '{filler}')")).collect();
        b.ok(
            &format!("INSERT INTO {table} VALUES {};", values.join(", ")),
            &format!("INSERT {rows}"),
        );
    }

    let mut a = SqlNode::start(&dir, 1);
    a.ok("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);", "CREATE");
    a.ok("INSERT INTO a VALUES (1, 'one'), (2, 'two'), (3, 'three');", "INSERT 3");
    let before = b.select("SELECT * FROM a ORDER BY id;");

    // The transaction the kill interrupts: rows first ...
    a.ok("BEGIN;", "BEGIN");
    a.ok("INSERT INTO a VALUES (4, 'four');", "INSERT 1");
    a.ok("UPDATE a SET v = 'uno' WHERE id = 1;", "UPDATE 1");
    a.ok("DELETE FROM a WHERE id = 2;", "DELETE 1");
    // ... meanwhile the peer commits on rows of its own, without waiting
    // (a lock wait timing out would fail the statement) ...
    b.ok(
        &format!("UPDATE s SET v = 'during' WHERE id = {};", S_ROWS - 1),
        "UPDATE 1",
    );
    // ... then schema changes and an index, which lock the catalog: the
    // peer's statements wait for it from here on.
    a.ok("CREATE TABLE n (id INTEGER PRIMARY KEY);", "CREATE");
    a.ok("INSERT INTO n VALUES (1);", "INSERT 1");
    a.ok("CREATE INDEX a_v ON a (v);", "CREATE INDEX");
    a.ok("ALTER TABLE a ADD COLUMN w INTEGER DEFAULT 0;", "ALTER TABLE");
    a.ok("SELECT * FROM n;", "(1 row)");

    let killed = a.child.kill().expect("SIGKILL node 1");
    assert!(!killed.success(), "node 1 ended by itself: {killed}");

    // The survivor keeps committing: its first statements may meet the
    // locks node 1 left retained, until its own node recovers node 1.
    let mut retries = 0;
    for i in 0..AFTER {
        retries += b.ok_retrying(&format!("INSERT INTO s VALUES ({}, 'after');", S_ROWS + i), "INSERT 1");
    }
    let m = member(d, 1);
    assert_eq!(m["recovery"], "recovered", "node 1 after its peer's commits: {m}");
    assert_eq!(m["retained_locks"], 0, "{m}");
    eprintln!("survivor: {retries} retries of its statements after the kill");

    // Node 1's transaction is gone: rows, the new table, the index, the
    // new column.
    assert_eq!(b.select("SELECT * FROM a ORDER BY id;"), before);
    assert_eq!(
        before,
        [
            "| id | v     |",
            "|----|-------|",
            "| 1  | one   |",
            "| 2  | two   |",
            "| 3  | three |",
            "(3 rows)"
        ]
    );
    let missing = b
        .run("SELECT * FROM n;", |l| l.starts_with('('))
        .expect_err("table n rolled back");
    assert!(missing.contains("not found"), "{missing}");
    let indexes = b.select("SHOW INDEXES FROM a;");
    assert_eq!(
        indexes[2..],
        [
            "| a          | PRIMARY    | BOTH  | id         | TRUE       |",
            "(1 row)"
        ]
    );
    // The survivor's own work is all there.
    assert_eq!(
        b.select("SELECT COUNT(*) FROM s;")[2],
        format!("| {:<8} |", S_ROWS + AFTER),
        "every row the survivor committed"
    );
    assert_eq!(
        b.select(&format!("SELECT v FROM s WHERE id = {};", S_ROWS - 1))[2],
        "| during |"
    );
    // The table and index names are free again, and the catalog takes new
    // schema changes.
    b.ok("CREATE TABLE n (id INTEGER PRIMARY KEY, note TEXT);", "CREATE");
    b.ok("CREATE INDEX a_v ON a (v);", "CREATE INDEX");
    // Through the new index (the planner scans it for `v = ...`): the rows
    // as they were, none of the killed transaction's.
    assert_eq!(
        b.select("SELECT id FROM a WHERE v = 'two';")[2..],
        ["| 2  |", "(1 row)"]
    );
    for gone in ["four", "uno"] {
        assert_eq!(
            b.select(&format!("SELECT id FROM a WHERE v = '{gone}';"))
                .last()
                .map(String::as_str),
            Some("(0 rows)")
        );
    }

    // Node 1 comes back and sees the same database.
    let mut a = SqlNode::start(&dir, 1);
    assert_eq!(a.select("SELECT * FROM a ORDER BY id;"), before);
    assert_eq!(a.select("SELECT * FROM n;")[0], "| id | note |");
    a.finish();
    b.finish();
}
