//! The coordinator and its nodes as separate processes over real sockets.
//!
//! The coordinator is a child process on a temporary state directory,
//! listening on a Unix socket and a TCP port: this test binary runs itself
//! as the `coordinator_child` test, which starts [`Coordinator::start`]
//! with the settings its environment carries, prints `listening on
//! <endpoint>` for each endpoint and serves until it is killed. Nodes are
//! child processes too: the test binary runs itself as the `node_child`
//! test, which connects with
//! [`lockmgr::Client`], prints `@@ READY <incarnation>` (or `@@ REFUSED
//! <code>`) and then executes one command per stdin line (`lock`,
//! `release_all`, `register`, `unregister`, `restart_finished`,
//! `await_lease_lost`), answering each with one `@@ ` line. Nodes die by
//! SIGKILL, the coordinator by SIGKILL or SIGSTOP.
//!
//! Covered: lock waits and timeouts across processes; a cross-node
//! deadlock; retained locks after a node is killed; nodes racing to become a
//! failed node's counterpart; refusals while a recovery is active; a
//! counterpart killed mid-recovery; a coordinator killed and restarted on
//! its durable record (retained locks kept, a live node that does not come
//! back treated as failed with unknown locks, re-assertion of locks by
//! rejoining nodes); authentication; malformed, truncated and random frames
//! on both transports; lease self-fencing while the coordinator is stopped;
//! nodes admitted at the same time; and nodes that ride through a
//! coordinator killed and started again (their locks re-asserted by their
//! clients, a lock asked for meanwhile granted by the next coordinator) or
//! lose their lease when it stays away.
//!
//! A node counts as ready once it has heard the announcement of its own
//! admission, and a test admits a further node only after the events it
//! caused have been heard: the coordinator can push an event onto a
//! connection ahead of its welcome, which fails the connect (the last test
//! shows it).
//!
//! Every wait is bounded in time and count, and every child process is
//! killed and reaped on every path by its [`harness::ChildGuard`].

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use harness::ChildGuard;
use lockmgr::wire::{self, ErrorCode, HeldLock, MemberInfo, Msg};
use lockmgr::{
    Client, ClientConfig, ClientError, ClientEvent, Coordinator, CoordinatorConfig, CounterpartGrant, Endpoint,
    EventKind, LockMode, NodeId, Outcome, Purpose, ResourceId, Secret,
};
use rand::{Rng, SeedableRng};

/// Set (to the coordinator's endpoint) in a node child's environment.
const CHILD_ENV: &str = "UNDERSTUDY_CLUSTER_CHILD_ENDPOINT";
const CHILD_NODE_ENV: &str = "UNDERSTUDY_CLUSTER_CHILD_NODE";
const CHILD_SECRET_ENV: &str = "UNDERSTUDY_CLUSTER_CHILD_SECRET_FILE";
const CHILD_PURPOSE_ENV: &str = "UNDERSTUDY_CLUSTER_CHILD_PURPOSE";
/// Set (to the endpoints to listen on, one per line) in a coordinator
/// child's environment.
const COORD_LISTEN_ENV: &str = "UNDERSTUDY_CLUSTER_COORD_LISTEN";
const COORD_SECRET_ENV: &str = "UNDERSTUDY_CLUSTER_COORD_SECRET_FILE";
const COORD_STATE_ENV: &str = "UNDERSTUDY_CLUSTER_COORD_STATE_DIR";
const COORD_HEARTBEAT_ENV: &str = "UNDERSTUDY_CLUSTER_COORD_HEARTBEAT_MS";
const COORD_LEASE_ENV: &str = "UNDERSTUDY_CLUSTER_COORD_LEASE_MS";
const COORD_FAILURE_TIMEOUT_ENV: &str = "UNDERSTUDY_CLUSTER_COORD_FAILURE_TIMEOUT_MS";
/// What a coordinator child prints before each endpoint it listens on.
const LISTENING: &str = "listening on ";
/// Marks the lines of a node child's protocol among the test harness's own.
const MARK: &str = "@@ ";
const SECRET: &[u8] = b"cluster-test-secret-0123456789";
/// How long anything that should happen may take before a test gives up.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The coordinator child.

/// The coordinator process. As a test of the parent run it does nothing;
/// run by [`Cluster::start`] with [`COORD_LISTEN_ENV`] set, it is the
/// coordinator (module docs), until it is killed.
#[test]
fn coordinator_child() {
    let Ok(listen) = std::env::var(COORD_LISTEN_ENV) else {
        return;
    };
    run_coordinator_child(&listen);
}

fn run_coordinator_child(listen: &str) {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let ms = |k: &str| -> u32 { var(k).parse().unwrap_or_else(|_| panic!("{k} is not a number")) };
    // Its warnings go to its log, which a failing test prints.
    tracing::subscriber::set_global_default(StderrWarnings).expect("the only subscriber");
    let listen = listen.lines().map(|ep| ep.parse().expect("an endpoint")).collect();
    let secret = Secret::from_file(Path::new(&var(COORD_SECRET_ENV))).expect("the secret file");
    let io = wal::io::Io::new(Default::default()).expect("the I/O layer");
    let mut cfg = CoordinatorConfig::new(listen, secret, PathBuf::from(var(COORD_STATE_ENV)), io);
    cfg.heartbeat_ms = ms(COORD_HEARTBEAT_ENV);
    cfg.lease_ms = ms(COORD_LEASE_ENV);
    cfg.failure_timeout_ms = ms(COORD_FAILURE_TIMEOUT_ENV);
    let coordinator = Coordinator::start(cfg).expect("start the coordinator");
    {
        let mut out = std::io::stdout().lock();
        for ep in coordinator.endpoints() {
            // The parent reads the bound addresses from here.
            writeln!(out, "{LISTENING}{ep}").expect("write to the parent");
        }
        out.flush().expect("flush to the parent");
    }
    coordinator.join();
}

/// Writes the coordinator's events of level WARN and above to stderr, one
/// line each.
struct StderrWarnings;

impl tracing::Subscriber for StderrWarnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.0.push_str(&format!(" {value:?}")),
                    name => self.0.push_str(&format!(" {name}={value:?}")),
                }
            }
        }
        let mut line = Line(format!("{} {}:", event.metadata().level(), event.metadata().target()));
        event.record(&mut line);
        eprintln!("{}", line.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

// ---------------------------------------------------------------------------
// The node child.

/// A node process. As a test of the parent run it does nothing; run by
/// [`NodeProc`] with [`CHILD_ENV`] set, it is a scripted node (module docs).
#[test]
fn node_child() {
    let Ok(endpoint) = std::env::var(CHILD_ENV) else {
        return;
    };
    run_node_child(&endpoint);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

fn error_name(e: &ClientError) -> String {
    match e {
        ClientError::Retained { node, resource } => format!("Retained {node} {resource}"),
        ClientError::Conflict { .. } => "Conflict".into(),
        ClientError::Deadlock { .. } => "Deadlock".into(),
        ClientError::Timeout { .. } => "Timeout".into(),
        ClientError::CoordinatorRecovering => "CoordinatorRecovering".into(),
        ClientError::AuthFailed => "AuthFailed".into(),
        ClientError::Refused { code, .. } => format!("{code:?}"),
        other => format!("{other:?}").replace('\n', " "),
    }
}

fn parse_mode(s: &str) -> LockMode {
    *LockMode::ALL
        .iter()
        .find(|m| m.to_string() == s)
        .unwrap_or_else(|| panic!("no lock mode {s:?}"))
}

fn run_node_child(endpoint: &str) {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let endpoint: Endpoint = endpoint.parse().expect("an endpoint");
    let node: NodeId = var(CHILD_NODE_ENV).parse().expect("a node id");
    let secret = Secret::from_file(Path::new(&var(CHILD_SECRET_ENV))).expect("the secret file");
    let mut cfg = ClientConfig::new(endpoint, node, secret);
    cfg.purpose = match var(CHILD_PURPOSE_ENV).as_str() {
        "join" => Purpose::Join,
        "restart" => Purpose::Restart,
        other => panic!("unknown purpose {other:?}"),
    };
    let client = match Client::connect(cfg) {
        Ok(c) => c,
        Err(e) => {
            say(&format!("REFUSED {}", error_name(&e)));
            return;
        }
    };
    let events = client.events().expect("events are taken once");
    // As `Member::new`: the next node is admitted after this announcement.
    wait_event(&events, EventKind::NodeJoined, node);
    say(&format!("READY {}", client.incarnation()));
    let mut grant: Option<CounterpartGrant> = None;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")) };
        let reply = match words.as_slice() {
            ["lock", txn, space, id, mode, wait] => {
                let txn = num(txn);
                let resource = ResourceId::new(num(space) as u32, num(id));
                let wait = (*wait != "-").then(|| Duration::from_millis(num(wait)));
                match client.lock(txn, resource, parse_mode(mode), wait) {
                    Ok(m) => format!("GRANTED {m}"),
                    Err(e @ ClientError::Deadlock { .. }) => {
                        // The victim's transaction aborts, releasing its locks.
                        client.release_all(txn).expect("abort the deadlock victim");
                        format!("ERR {}", error_name(&e))
                    }
                    Err(e) => format!("ERR {}", error_name(&e)),
                }
            }
            ["release_all", txn] => match client.release_all(num(txn)) {
                Ok(()) => "OK".into(),
                Err(e) => format!("ERR {}", error_name(&e)),
            },
            ["register", failed] => match client.register_counterpart(num(failed) as NodeId) {
                Ok(g) => {
                    grant = Some(g);
                    format!("WON {} {}", g.token, g.incarnation)
                }
                Err(e) => format!("LOST {}", error_name(&e)),
            },
            ["unregister", outcome] => {
                let outcome = match *outcome {
                    "recovered" => Outcome::Recovered,
                    "abandoned" => Outcome::Abandoned,
                    other => panic!("unknown outcome {other:?}"),
                };
                let g = grant.take().expect("unregister needs a registration");
                match client.unregister_counterpart(&g, outcome) {
                    Ok(()) => "OK".into(),
                    Err(e) => format!("ERR {}", error_name(&e)),
                }
            }
            ["restart_finished"] => match client.restart_finished() {
                Ok(()) => "OK".into(),
                Err(e) => format!("ERR {}", error_name(&e)),
            },
            ["await_lease_lost"] => {
                let deadline = Instant::now() + PATIENCE;
                let mut seen = false;
                while !seen && Instant::now() < deadline {
                    seen = matches!(
                        events.recv_timeout(Duration::from_millis(50)),
                        Ok(ClientEvent::LeaseLost)
                    );
                }
                if seen {
                    format!("LEASE_LOST valid={}", client.lease_valid())
                } else {
                    "LEASE_KEPT".into()
                }
            }
            ["exit"] => break,
            _ => format!("BAD {line}"),
        };
        say(&reply);
    }
}

// ---------------------------------------------------------------------------
// Processes of the parent.

#[derive(Clone, Copy)]
struct Timings {
    heartbeat_ms: u32,
    lease_ms: u32,
    failure_timeout_ms: u32,
}

/// Heartbeats every 20 ms. The lease and the failure timeout are wide
/// enough that a loaded machine does not fail nodes spuriously; the failure
/// timeout is also the grace period after a coordinator restart.
const FAST: Timings = Timings {
    heartbeat_ms: 20,
    lease_ms: 200,
    failure_timeout_ms: 1000,
};

/// For tests that never wait for a heartbeat to be missed.
const PATIENT: Timings = Timings {
    heartbeat_ms: 20,
    lease_ms: 400,
    failure_timeout_ms: 5000,
};

/// One cluster's files: the secret, the socket, the coordinator's state.
struct Cluster {
    dir: tempfile::TempDir,
    secret_file: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let secret_file = dir.path().join("secret");
        // Surrounding whitespace is not part of the secret.
        let mut text = b"  ".to_vec();
        text.extend_from_slice(SECRET);
        text.push(b'\n');
        std::fs::write(&secret_file, text).expect("write the secret file");
        Cluster { dir, secret_file }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts a coordinator process on this cluster's state directory and
    /// waits until it has printed both endpoints.
    fn start(&self, t: Timings) -> Coord {
        let log = self.dir.path().join("coordinator.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the coordinator log");
        let listen = format!("unix:{}\ntcp:127.0.0.1:0", self.dir.path().join("coord.sock").display());
        let mut proc = ChildGuard::spawn(
            Command::new(std::env::current_exe().expect("the test binary"))
                .args(["--exact", "coordinator_child", "--nocapture", "--test-threads=1"])
                .env(COORD_LISTEN_ENV, listen)
                .env(COORD_SECRET_ENV, &self.secret_file)
                .env(COORD_STATE_ENV, self.state_dir())
                .env(COORD_HEARTBEAT_ENV, t.heartbeat_ms.to_string())
                .env(COORD_LEASE_ENV, t.lease_ms.to_string())
                .env(COORD_FAILURE_TIMEOUT_ENV, t.failure_timeout_ms.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log_file)),
        )
        .expect("spawn the coordinator");
        let (lines, _) = harness::read_lines(proc.take_stdout().expect("piped stdout"));
        let (mut unix, mut tcp) = (None, None);
        let deadline = Instant::now() + PATIENCE;
        while unix.is_none() || tcp.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => match after(&l, LISTENING).map(str::parse::<Endpoint>) {
                    None => {}
                    Some(Ok(ep @ Endpoint::Unix(_))) => unix = Some(ep),
                    Some(Ok(ep @ Endpoint::Tcp(_))) => tcp = Some(ep),
                    Some(Err(e)) => panic!("the coordinator printed a bad endpoint {l:?}: {e}"),
                },
                Err(e) => {
                    let _ = proc.kill();
                    panic!(
                        "the coordinator did not print its endpoints ({e:?}); its log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        Coord {
            proc,
            unix: unix.expect("unix endpoint"),
            tcp: tcp.expect("tcp endpoint"),
            log,
        }
    }

    /// Spawns a node process; it prints `READY` or `REFUSED` first.
    fn spawn_node(&self, ep: &Endpoint, node: NodeId, purpose: &str) -> NodeProc {
        NodeProc::spawn(&self.secret_file, ep, node, purpose)
    }

    /// A node process that has joined.
    fn node(&self, ep: &Endpoint, node: NodeId) -> NodeProc {
        let n = self.spawn_node(ep, node, "join");
        let first = n.expect();
        assert!(first.starts_with("READY "), "node {node} did not join: {first}");
        n
    }
}

/// The coordinator process; on a panic its guard prints its log's tail
/// before the process is killed.
struct Coord {
    proc: ChildGuard,
    unix: Endpoint,
    tcp: Endpoint,
    log: PathBuf,
}

impl Coord {
    fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// SIGKILL and reap.
    fn kill(mut self) {
        let _ = self.proc.kill();
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("--- the coordinator's log, last lines ---\n{tail}");
        }
    }
}

/// A node process and its protocol lines.
struct NodeProc {
    node: NodeId,
    proc: ChildGuard,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl NodeProc {
    fn spawn(secret_file: &Path, ep: &Endpoint, node: NodeId, purpose: &str) -> NodeProc {
        let exe = std::env::current_exe().expect("the test binary");
        let mut proc = ChildGuard::spawn(
            Command::new(exe)
                .args(["--exact", "node_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, ep.to_string())
                .env(CHILD_NODE_ENV, node.to_string())
                .env(CHILD_SECRET_ENV, secret_file)
                .env(CHILD_PURPOSE_ENV, purpose)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("spawn a node process");
        let stdin = proc.take_stdin().expect("piped stdin");
        let (lines, _) = harness::read_lines(proc.take_stdout().expect("piped stdout"));
        NodeProc {
            node,
            proc,
            stdin,
            lines,
        }
    }

    fn send(&mut self, cmd: &str) {
        let node = self.node;
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("node {node} takes no command {cmd:?}: {e}"));
    }

    /// The node's next protocol line.
    fn expect(&self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    if let Some(line) = after(&l, MARK) {
                        return line.to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("node {} said nothing within {PATIENCE:?}", self.node),
                Err(RecvTimeoutError::Disconnected) => panic!("node {} exited", self.node),
            }
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.expect()
    }

    fn kill(&mut self) {
        let _ = self.proc.kill();
    }
}

/// What follows `mark` in a line a child printed, if it holds it. The test
/// harness of the child may have begun the line (`test node_child ... `)
/// first.
fn after<'a>(line: &'a str, mark: &str) -> Option<&'a str> {
    line.find(mark).map(|at| &line[at + mark.len()..])
}

fn lock_cmd(txn: u64, r: ResourceId, mode: LockMode, wait_ms: Option<u64>) -> String {
    let wait = wait_ms.map_or_else(|| "-".to_owned(), |w| w.to_string());
    format!("lock {txn} {} {} {mode} {wait}", r.space, r.id)
}

/// Stops a process with SIGSTOP; continues it with SIGCONT when dropped.
struct Stopped(u32);

fn signal(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid} failed: {status}");
}

impl Stopped {
    fn new(pid: u32) -> Stopped {
        signal("-STOP", pid);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

// ---------------------------------------------------------------------------
// Clients of the parent and waiting.

fn secret() -> Secret {
    Secret::new(SECRET.to_vec()).expect("a valid secret")
}

fn connect_as(ep: &Endpoint, node: NodeId, purpose: Purpose, incarnation: u64) -> Result<Client, ClientError> {
    let mut cfg = ClientConfig::new(ep.clone(), node, secret());
    cfg.purpose = purpose;
    cfg.incarnation = incarnation;
    Client::connect(cfg)
}

/// A client of the parent whose admission has been announced, and its
/// events.
struct Member {
    client: Client,
    events: Receiver<ClientEvent>,
}

impl std::ops::Deref for Member {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Member {
    /// Waits until the coordinator has announced the admission. Who hears
    /// an announcement is settled before it is sent, so a node admitted
    /// afterwards is not among them; an event that reaches a node ahead of
    /// its welcome fails its connect (see
    /// `nodes_joining_at_the_same_time_are_all_admitted`).
    fn new(client: Client) -> Member {
        let events = client.events().expect("events are taken once");
        wait_event(&events, EventKind::NodeJoined, client.node());
        Member { client, events }
    }

    fn leave(self) -> Result<(), ClientError> {
        self.client.leave()
    }
}

fn join(ep: &Endpoint, node: NodeId) -> Member {
    Member::new(connect_as(ep, node, Purpose::Join, 0).unwrap_or_else(|e| panic!("node {node} cannot join: {e}")))
}

/// Waits for a coordinator event about `node`; returns its incarnation.
fn wait_event(rx: &Receiver<ClientEvent>, kind: EventKind, node: NodeId) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(ClientEvent::Coordinator {
                kind: k,
                node: n,
                incarnation,
            }) if k == kind && n == node => return incarnation,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("the event channel closed waiting for {kind:?} of {node}"),
        }
    }
    panic!("no {kind:?} event for node {node} within {PATIENCE:?}");
}

/// Polls `f` every 10 ms until it answers, within [`PATIENCE`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut answer = None;
    harness::wait_for(PATIENCE, Duration::from_millis(10), || {
        answer = f();
        answer.is_some()
    });
    answer.unwrap_or_else(|| panic!("{what}: not within {PATIENCE:?}"))
}

/// A lock request retried while the restarted coordinator waits for its
/// live nodes.
fn lock_after_grace(c: &Client, txn: u64, r: ResourceId, mode: LockMode) -> Result<LockMode, ClientError> {
    eventually("the coordinator to end its grace period", || {
        match c.lock(txn, r, mode, None) {
            Err(ClientError::CoordinatorRecovering) => None,
            other => Some(other),
        }
    })
}

fn status_of(c: &Client, node: NodeId) -> Option<MemberInfo> {
    c.status().expect("status").into_iter().find(|m| m.node == node)
}

fn retained_err(node: NodeId, resource: ResourceId) -> Result<LockMode, ClientError> {
    Err(ClientError::Retained { node, resource })
}

/// Parses a node's `WON <token> <incarnation>`.
fn won_grant(failed: NodeId, line: &str) -> CounterpartGrant {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["WON", token, incarnation] => CounterpartGrant {
            failed,
            incarnation: incarnation.parse().expect("an incarnation"),
            token: token.parse().expect("a token"),
            // Only the token names a registration when it is ended.
            blind: false,
            log_proof: [0; 32],
        },
        _ => panic!("expected WON <token> <incarnation>, got {line:?}"),
    }
}

// ---------------------------------------------------------------------------
// Raw connections.

/// A connection that speaks bytes, not the client library.
enum Raw {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Raw {
    fn connect(ep: &Endpoint, read_timeout: Duration) -> Raw {
        let raw = match ep {
            Endpoint::Unix(p) => Raw::Unix(UnixStream::connect(p).expect("connect over unix")),
            Endpoint::Tcp(a) => Raw::Tcp(TcpStream::connect_timeout(a, PATIENCE).expect("connect over tcp")),
        };
        match &raw {
            Raw::Unix(s) => s.set_read_timeout(Some(read_timeout)),
            Raw::Tcp(s) => s.set_read_timeout(Some(read_timeout)),
        }
        .expect("set a read timeout");
        raw
    }

    /// Half-closes: the peer reads end-of-stream, replies still arrive.
    fn finish_writing(&self) {
        let _ = match self {
            Raw::Unix(s) => s.shutdown(Shutdown::Write),
            Raw::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// The next frame that is not a pushed event; `None` at end of stream.
    fn next(&mut self, what: &str) -> Option<(u64, Msg)> {
        for _ in 0..1000 {
            match wire::read_frame(self) {
                Ok(Some((_, Msg::Event { .. }))) => {}
                Ok(frame) => return frame,
                Err(e) => panic!("{what}: reading a reply failed: {e}"),
            }
        }
        panic!("{what}: nothing but events");
    }

    /// The coordinator answered with error `code`, then closed.
    fn expect_error_then_close(&mut self, code: ErrorCode, what: &str) {
        match self.next(what) {
            Some((_, Msg::Error { code: c, .. })) if c == code => {}
            other => panic!("{what}: expected an {code:?} error, got {other:?}"),
        }
        let end = self.next(what);
        assert_eq!(end, None, "{what}: the connection must be closed after the error");
    }

    /// Authenticates as `node` by hand; returns the connection admitted.
    fn admitted(ep: &Endpoint, node: NodeId) -> Raw {
        let mut raw = Raw::connect(ep, PATIENCE);
        let hello = Msg::Hello {
            node,
            purpose: Purpose::Join,
            incarnation: 0,
            pid: std::process::id(),
            launches_restarts: false,
        };
        raw.write_all(&wire::encode(1, &hello)).expect("send hello");
        let nonce = match raw.next("handshake") {
            Some((1, Msg::Challenge { nonce })) => nonce,
            other => panic!("expected a challenge, got {other:?}"),
        };
        let proof = Msg::AuthProof {
            mac: secret().prove(&nonce, node),
        };
        raw.write_all(&wire::encode(2, &proof)).expect("send the proof");
        match raw.next("handshake") {
            Some((2, Msg::Welcome { .. })) => raw,
            other => panic!("expected welcome, got {other:?}"),
        }
    }
}

impl Read for Raw {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Raw::Unix(s) => s.read(buf),
            Raw::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Raw {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Raw::Unix(s) => s.write(buf),
            Raw::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Raw::Unix(s) => s.flush(),
            Raw::Tcp(s) => s.flush(),
        }
    }
}

/// A frame with a correct header and checksum around any type and payload.
fn frame(msg_type: u8, request_id: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(wire::HEADER_LEN + payload.len());
    f.extend_from_slice(&wire::MAGIC);
    f.push(wire::VERSION);
    f.push(msg_type);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&request_id.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&f[..16]), payload);
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// The malformed inputs every connection must survive: name, bytes, and
/// whether the sender half-closes after them.
fn malformed_inputs() -> Vec<(&'static str, Vec<u8>, bool)> {
    let hello = wire::encode(
        1,
        &Msg::Hello {
            node: 9,
            purpose: Purpose::Join,
            incarnation: 0,
            pid: 1,
            launches_restarts: false,
        },
    );
    let mut too_large = wire::encode(1, &Msg::Status);
    too_large[4..8].copy_from_slice(&(wire::MAX_PAYLOAD as u32 + 1).to_le_bytes());
    let mut bad_crc = hello.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    let mut bad_version = wire::encode(1, &Msg::Status);
    bad_version[2] = wire::VERSION + 1;
    vec![
        // Exactly one header's worth, so the coordinator reads all of it.
        ("garbage", b"GET / HTTP/1.1\r\nHost".to_vec(), false),
        ("payload length above the limit", too_large, false),
        ("bad checksum", bad_crc, false),
        ("bad version", bad_version, false),
        ("unknown message type", frame(0x7E, 1, &[1, 2, 3]), false),
        ("payload with bytes left over", frame(0x0A, 1, &[0]), false),
        ("truncated payload", hello[..hello.len() - 5].to_vec(), true),
        ("truncated header", hello[..9].to_vec(), true),
    ]
}

// ---------------------------------------------------------------------------
// 1. Waits and timeouts.

#[test]
fn lock_waits_time_out_or_are_granted_across_processes() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let mut a = cluster.node(&coord.unix, 1);
    let b = join(&coord.tcp, 2);
    let (p, q) = (ResourceId::new(1, 10), ResourceId::new(1, 11));

    assert_eq!(a.ask(&lock_cmd(1, p, LockMode::X, None)), "GRANTED X");
    assert_eq!(
        b.lock(1, p, LockMode::S, None),
        Err(ClientError::Conflict { resource: p })
    );
    assert_eq!(
        b.lock(1, p, LockMode::S, Some(Duration::from_millis(100))),
        Err(ClientError::Timeout { resource: p })
    );
    std::thread::scope(|s| {
        let b = &b.client;
        let waiter = s.spawn(|| b.lock(2, p, LockMode::X, Some(PATIENCE)));
        // Let the request queue first (the outcome is the same either way).
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(a.ask("release_all 1"), "OK");
        assert_eq!(waiter.join().expect("the waiter"), Ok(LockMode::X));
    });

    // And the other way round: the node process waits for the parent.
    assert_eq!(b.lock(9, q, LockMode::X, None), Ok(LockMode::X));
    assert_eq!(a.ask(&lock_cmd(3, q, LockMode::S, Some(100))), "ERR Timeout");
    a.send(&lock_cmd(4, q, LockMode::S, Some(PATIENCE.as_millis() as u64)));
    std::thread::sleep(Duration::from_millis(100));
    b.release_all(9).expect("release");
    assert_eq!(a.expect(), "GRANTED S");
    assert_eq!(b.lock(9, q, LockMode::S, None), Ok(LockMode::S), "S is shared");
}

// ---------------------------------------------------------------------------
// 2. A deadlock spanning two node processes.

#[test]
fn a_deadlock_across_two_node_processes_aborts_exactly_one() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let mut a = cluster.node(&coord.unix, 1);
    let mut b = cluster.node(&coord.tcp, 2);
    let observer = join(&coord.unix, 3);
    let (p, q) = (ResourceId::new(1, 1), ResourceId::new(1, 2));
    assert_eq!(a.ask(&lock_cmd(5, p, LockMode::X, None)), "GRANTED X");
    assert_eq!(b.ask(&lock_cmd(6, q, LockMode::X, None)), "GRANTED X");
    let long = Some(PATIENCE.as_millis() as u64);
    a.send(&lock_cmd(5, q, LockMode::X, long));
    b.send(&lock_cmd(6, p, LockMode::X, long));
    // A victim aborts its transaction before it answers, so the survivor's
    // answer follows without further help.
    let (ra, rb) = (a.expect(), b.expect());
    let outcomes = [ra.as_str(), rb.as_str()];
    assert_eq!(
        outcomes.iter().filter(|o| **o == "ERR Deadlock").count(),
        1,
        "exactly one victim: {outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "GRANTED X").count(),
        1,
        "the other is granted: {outcomes:?}"
    );
    // The survivor holds both pages now; the victim holds nothing.
    for r in [p, q] {
        assert_eq!(
            observer.lock(1, r, LockMode::S, None),
            Err(ClientError::Conflict { resource: r })
        );
    }
    let (survivor, txn) = if ra == "GRANTED X" { (&mut a, 5) } else { (&mut b, 6) };
    assert_eq!(survivor.ask(&format!("release_all {txn}")), "OK");
    for r in [p, q] {
        assert_eq!(observer.lock(1, r, LockMode::X, None), Ok(LockMode::X));
    }
}

// ---------------------------------------------------------------------------
// 3. Retained locks after kill -9.

#[test]
fn a_killed_node_leaves_retained_write_locks_only() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let survivor = join(&coord.unix, 1);
    let events = &survivor.events;
    let mut doomed = cluster.node(&coord.tcp, 2);
    let (p, q) = (ResourceId::new(2, 1), ResourceId::new(2, 2));
    assert_eq!(doomed.ask(&lock_cmd(7, p, LockMode::X, None)), "GRANTED X");
    assert_eq!(doomed.ask(&lock_cmd(7, q, LockMode::S, None)), "GRANTED S");
    doomed.kill();
    wait_event(events, EventKind::NodeFailed, 2);

    assert_eq!(survivor.lock(1, p, LockMode::S, None), retained_err(2, p));
    assert_eq!(survivor.lock(1, p, LockMode::IS, None), retained_err(2, p));
    assert_eq!(
        survivor.lock(1, q, LockMode::X, None),
        Ok(LockMode::X),
        "its S lock is gone"
    );
    assert_eq!(survivor.retained(2).expect("retained"), vec![(p, LockMode::X)]);
    let m = status_of(&survivor, 2).expect("node 2 is a member");
    assert!(!m.live);
    assert_eq!(
        (m.recovery, m.retained_locks),
        (1, 1),
        "inactive recovery, one retained lock: {m:?}"
    );
    // Asking to wait queues behind the retained lock instead of a refusal.
    assert_eq!(
        survivor.lock(2, p, LockMode::S, Some(Duration::from_millis(150))),
        Err(ClientError::Timeout { resource: p })
    );

    // A waiter is granted when a counterpart finishes the recovery.
    let third = join(&coord.tcp, 3);
    std::thread::scope(|s| {
        let survivor = &survivor.client;
        let waiter = s.spawn(|| survivor.lock(3, p, LockMode::X, Some(PATIENCE)));
        std::thread::sleep(Duration::from_millis(100));
        let grant = third.register_counterpart(2).expect("register");
        third
            .unregister_counterpart(&grant, Outcome::Recovered)
            .expect("unregister");
        assert_eq!(waiter.join().expect("the waiter"), Ok(LockMode::X));
    });
    wait_event(events, EventKind::RecoveryFinished, 2);
    assert_eq!(survivor.retained(2).expect("retained"), vec![]);
}

// ---------------------------------------------------------------------------
// 4. Racing registrations.

#[test]
fn of_two_nodes_racing_to_register_exactly_one_wins() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let observer = join(&coord.unix, 1);
    let events = &observer.events;
    let mut racers = [cluster.node(&coord.unix, 2), cluster.node(&coord.tcp, 3)];
    let mut wins = [0u32; 2];
    let started = Instant::now();
    let mut rounds = 0;
    for i in 0..20u64 {
        if started.elapsed() > Duration::from_secs(45) {
            break;
        }
        let dead = 100 + i as NodeId;
        let page = ResourceId::new(4, i);
        let ep = if i % 2 == 0 { &coord.unix } else { &coord.tcp };
        let mut victim = cluster.node(ep, dead);
        assert_eq!(victim.ask(&lock_cmd(1, page, LockMode::X, None)), "GRANTED X");
        victim.kill();
        wait_event(events, EventKind::NodeFailed, dead);

        // Both go at once.
        for r in racers.iter_mut() {
            r.send(&format!("register {dead}"));
        }
        let answers = [racers[0].expect(), racers[1].expect()];
        let winners: Vec<usize> = (0..2).filter(|&k| answers[k].starts_with("WON ")).collect();
        assert_eq!(winners.len(), 1, "round {i}: exactly one winner: {answers:?}");
        let (w, l) = (winners[0], 1 - winners[0]);
        assert_eq!(answers[l], "LOST AlreadyActive", "round {i}: {answers:?}");
        wins[w] += 1;
        let m = status_of(&observer, dead).expect("a member");
        assert_eq!((m.recovery, m.counterpart), (2, racers[w].node), "round {i}: {m:?}");
        assert_eq!(observer.lock(1, page, LockMode::S, None), retained_err(dead, page));

        assert_eq!(racers[w].ask("unregister recovered"), "OK");
        wait_event(events, EventKind::RecoveryFinished, dead);
        assert_eq!(observer.lock(1, page, LockMode::X, None), Ok(LockMode::X));
        observer.release_all(1).expect("release");
        rounds += 1;
    }
    assert!(rounds >= 3, "only {rounds} rounds ran (wins {wins:?})");
}

/// A coordinator, node 1 joined (returned, to watch events), and node 2
/// killed while holding X on `page`, announced failed.
fn node_2_failed_holding(cluster: &Cluster, page: ResourceId) -> (Coord, Member) {
    let coord = cluster.start(FAST);
    let observer = join(&coord.unix, 1);
    let mut failed = cluster.node(&coord.tcp, 2);
    assert_eq!(failed.ask(&lock_cmd(1, page, LockMode::X, None)), "GRANTED X");
    failed.kill();
    wait_event(&observer.events, EventKind::NodeFailed, 2);
    (coord, observer)
}

// ---------------------------------------------------------------------------
// 5. Refusals while a counterpart is active.

#[test]
fn while_a_counterpart_recovers_the_failed_node_and_others_are_refused() {
    let cluster = Cluster::new();
    let page = ResourceId::new(5, 1);
    let (coord, counterpart) = node_2_failed_holding(&cluster, page);
    let events = &counterpart.events;
    let grant = counterpart.register_counterpart(2).expect("register");
    assert_eq!(grant.failed, 2);

    let rejoin = cluster.spawn_node(&coord.unix, 2, "join");
    assert_eq!(rejoin.expect(), "REFUSED NotRecovered");
    let restart = cluster.spawn_node(&coord.tcp, 2, "restart");
    assert_eq!(restart.expect(), "REFUSED RecoveryInProgress");
    let mut third = cluster.node(&coord.unix, 3);
    assert_eq!(third.ask("register 2"), "LOST AlreadyActive");
    assert_eq!(counterpart.lock(1, page, LockMode::S, None), retained_err(2, page));
    assert_eq!(
        status_of(&counterpart, 2).map(|m| (m.live, m.recovery, m.counterpart)),
        Some((false, 2, 1))
    );

    counterpart
        .unregister_counterpart(&grant, Outcome::Recovered)
        .expect("unregister");
    wait_event(events, EventKind::RecoveryFinished, 2);
    assert_eq!(counterpart.lock(1, page, LockMode::X, None), Ok(LockMode::X));
    // Recovered, it may join again, as a new incarnation.
    let back = cluster.spawn_node(&coord.tcp, 2, "join");
    assert_eq!(back.expect(), "READY 2");
}

// ---------------------------------------------------------------------------
// 6. A counterpart killed mid-recovery.

#[test]
fn a_counterpart_killed_mid_recovery_is_replaced() {
    let cluster = Cluster::new();
    let page = ResourceId::new(6, 1);
    let (coord, observer) = node_2_failed_holding(&cluster, page);
    let events = &observer.events;

    let mut first = cluster.node(&coord.unix, 3);
    let old = won_grant(2, &first.ask("register 2"));
    first.kill();
    wait_event(events, EventKind::NodeFailed, 3);
    // Node 2 lost its counterpart: it is announced again.
    wait_event(events, EventKind::NodeFailed, 2);
    assert_eq!(
        status_of(&observer, 2).map(|m| (m.recovery, m.counterpart, m.retained_locks)),
        Some((1, 0, 1))
    );
    assert_eq!(observer.lock(1, page, LockMode::S, None), retained_err(2, page));
    // The dead counterpart's grant is void.
    assert!(
        matches!(
            observer.unregister_counterpart(&old, Outcome::Recovered),
            Err(ClientError::Refused {
                code: ErrorCode::NotCounterpart,
                ..
            })
        ),
        "a dropped registration cannot be ended"
    );
    assert_eq!(observer.lock(1, page, LockMode::S, None), retained_err(2, page));

    let mut second = cluster.node(&coord.tcp, 4);
    let new = won_grant(2, &second.ask("register 2"));
    assert_ne!(new.token, old.token);
    assert_eq!(second.ask("unregister recovered"), "OK");
    wait_event(events, EventKind::RecoveryFinished, 2);
    assert_eq!(observer.lock(1, page, LockMode::X, None), Ok(LockMode::X));
}

/// A counterpart that leaves cleanly in the middle of a recovery drops its
/// registration like one that dies: the failed node is announced again,
/// inactive, for another counterpart; the one that left holds no lock, so
/// it is not announced itself.
#[test]
fn a_counterpart_that_leaves_mid_recovery_is_replaced() {
    let cluster = Cluster::new();
    let page = ResourceId::new(6, 1);
    let (coord, observer) = node_2_failed_holding(&cluster, page);
    let events = &observer.events;

    let leaving = join(&coord.unix, 3);
    let grant = leaving.register_counterpart(2).expect("register");
    assert_eq!(grant.failed, 2);
    leaving.leave().expect("leave");
    wait_event(events, EventKind::NodeFailed, 2);
    assert_eq!(
        status_of(&observer, 2).map(|m| (m.recovery, m.counterpart, m.retained_locks)),
        Some((1, 0, 1)),
        "node 2 is failed, inactive, its lock retained"
    );
    assert_eq!(status_of(&observer, 3).map(|m| m.live), Some(false), "node 3 left");
    let mut next = cluster.node(&coord.tcp, 4);
    won_grant(2, &next.ask("register 2"));
    assert_eq!(next.ask("unregister recovered"), "OK");
    wait_event(events, EventKind::RecoveryFinished, 2);
    assert_eq!(observer.lock(1, page, LockMode::X, None), Ok(LockMode::X));
}

// ---------------------------------------------------------------------------
// 7. The coordinator killed and restarted.

#[test]
fn a_restarted_coordinator_keeps_every_retained_lock_and_fails_nodes_that_stay_away() {
    let cluster = Cluster::new();
    let timings = Timings {
        failure_timeout_ms: 1500,
        ..FAST
    };
    let coord = cluster.start(timings);
    let pages: Vec<ResourceId> = (1..=3).map(|i| ResourceId::new(7, i)).collect();
    let shared_page = ResourceId::new(7, 4);
    {
        let observer = join(&coord.unix, 1);
        let events = &observer.events;
        let mut dead = cluster.node(&coord.tcp, 2);
        for &p in &pages {
            assert_eq!(dead.ask(&lock_cmd(1, p, LockMode::X, None)), "GRANTED X");
        }
        assert_eq!(dead.ask(&lock_cmd(1, shared_page, LockMode::S, None)), "GRANTED S");
        dead.kill();
        wait_event(events, EventKind::NodeFailed, 2);
        // No live member remains to be waited for after the restart.
        observer.leave().expect("leave");
    }
    let recorded: Vec<(NodeId, ResourceId, LockMode)> =
        lockmgr::server::retained_in_record(&wal::io::Io::fallback(), &cluster.state_dir())
            .expect("read the durable record")
            .into_iter()
            .map(|l| (l.node, l.resource, l.mode))
            .collect();
    let expected: Vec<(NodeId, ResourceId, LockMode)> = pages.iter().map(|&p| (2, p, LockMode::X)).collect();
    assert_eq!(recorded, expected, "the durable record before the kill");
    coord.kill();

    let coord = cluster.start(timings);
    let n = join(&coord.tcp, 3);
    assert_eq!(
        lock_after_grace(&n, 1, pages[0], LockMode::S),
        retained_err(2, pages[0])
    );
    for &p in &pages {
        assert_eq!(n.lock(1, p, LockMode::S, None), retained_err(2, p));
        assert_eq!(n.lock(1, p, LockMode::IS, None), retained_err(2, p));
    }
    assert_eq!(n.lock(1, shared_page, LockMode::X, None), Ok(LockMode::X));
    assert_eq!(
        n.retained(2).expect("retained"),
        pages.iter().map(|&p| (p, LockMode::X)).collect::<Vec<_>>()
    );
    assert_eq!(status_of(&n, 2).map(|m| (m.live, m.retained_locks)), Some((false, 3)));
    let grant = n.register_counterpart(2).expect("register");
    n.unregister_counterpart(&grant, Outcome::Recovered)
        .expect("unregister");
    for &p in &pages {
        assert_eq!(n.lock(1, p, LockMode::X, None), Ok(LockMode::X));
    }
    assert_eq!(n.retained(2).expect("retained"), vec![]);
    n.release_all(1).expect("release");
    wait_event(&n.events, EventKind::RecoveryFinished, 2);

    // A live node that does not come back after the next restart.
    let mut stays_away = cluster.node(&coord.unix, 4);
    let its_page = ResourceId::new(7, 10);
    let elsewhere = ResourceId::new(8, 1);
    assert_eq!(stays_away.ask(&lock_cmd(1, its_page, LockMode::X, None)), "GRANTED X");
    let incarnation = n.incarnation();
    coord.kill();
    drop(n);

    let coord = cluster.start(timings);
    let n = Member::new(connect_as(&coord.unix, 3, Purpose::Rejoin, incarnation).expect("rejoin"));
    n.reassert(vec![]).expect("nothing to re-assert");
    assert_eq!(
        lock_after_grace(&n, 1, elsewhere, LockMode::S),
        retained_err(4, elsewhere)
    );
    assert_eq!(n.lock(1, its_page, LockMode::X, None), retained_err(4, its_page));
    assert_eq!(n.lock(2, elsewhere, LockMode::IS, None), retained_err(4, elsewhere));
    assert!(stays_away.proc.alive(), "the node process itself is still running");
    assert_eq!(status_of(&n, 4).map(|m| m.live), Some(false));
    assert_eq!(n.retained(4).expect("retained"), vec![], "its locks are unknown");
    let grant = n.register_counterpart(4).expect("register");
    n.unregister_counterpart(&grant, Outcome::Recovered)
        .expect("unregister");
    assert_eq!(n.lock(1, elsewhere, LockMode::S, None), Ok(LockMode::S));
    assert_eq!(n.lock(1, its_page, LockMode::X, None), Ok(LockMode::X));
    stays_away.kill();
}

/// A recovery's end is answered before the coordinator records it. If the
/// coordinator dies before the record is written, the one it restarts from
/// still holds the released locks: a lock a live node took meanwhile and
/// re-asserts must then win over the stale retained lock (it proves the
/// release), the failed node's other locks stay retained, and a second
/// recovery frees them. The lost write is made real by putting the record
/// files of before the recovery back while the coordinator is down.
#[test]
fn a_recovery_end_lost_with_the_coordinator_gives_way_to_locks_taken_after_it() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let (taken, untouched) = (ResourceId::new(12, 1), ResourceId::new(12, 2));
    let live = join(&coord.unix, 3);
    let mut dead = cluster.node(&coord.tcp, 2);
    for p in [taken, untouched] {
        assert_eq!(dead.ask(&lock_cmd(1, p, LockMode::X, None)), "GRANTED X");
    }
    dead.kill();
    wait_event(&live.events, EventKind::NodeFailed, 2);
    let io = wal::io::Io::fallback();
    eventually("the failure to be recorded", || {
        let recorded = lockmgr::server::retained_in_record(&io, &cluster.state_dir()).ok()?;
        (recorded.len() == 2).then_some(())
    });
    let before_recovery = cluster.dir.path().join("record-before-recovery");
    copy_files(&cluster.state_dir(), &before_recovery);

    let grant = live.register_counterpart(2).expect("register");
    live.unregister_counterpart(&grant, Outcome::Recovered)
        .expect("unregister");
    assert_eq!(live.lock(1, taken, LockMode::X, None), Ok(LockMode::X));
    let incarnation = live.incarnation();
    coord.kill();
    drop(live);
    copy_files(&before_recovery, &cluster.state_dir());

    let coord = cluster.start(FAST);
    let back = Member::new(connect_as(&coord.unix, 3, Purpose::Rejoin, incarnation).expect("rejoin"));
    back.reassert(vec![HeldLock {
        txn: 1,
        resource: taken,
        mode: LockMode::X,
    }])
    .expect("a lock taken after the release is re-asserted over the stale record");
    assert_eq!(back.retained(2).expect("retained"), vec![(untouched, LockMode::X)]);
    let recorded: Vec<ResourceId> = lockmgr::server::retained_in_record(&io, &cluster.state_dir())
        .expect("record")
        .into_iter()
        .map(|l| l.resource)
        .collect();
    assert_eq!(recorded, vec![untouched], "the dropped lock is recorded as gone");
    assert_eq!(
        lock_after_grace(&back, 2, untouched, LockMode::S),
        retained_err(2, untouched)
    );
    let grant = back.register_counterpart(2).expect("register again");
    back.unregister_counterpart(&grant, Outcome::Recovered)
        .expect("unregister");
    assert_eq!(back.lock(2, untouched, LockMode::X, None), Ok(LockMode::X));
}

/// Copies every file of `from` into `to` (created if missing).
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

// ---------------------------------------------------------------------------
// 8. Authentication.

#[test]
fn unauthenticated_and_wrong_secret_connections_are_refused() {
    let cluster = Cluster::new();
    let mut coord = cluster.start(PATIENT);
    let wrong = cluster.dir.path().join("wrong-secret");
    std::fs::write(&wrong, b"not-the-cluster-secret-at-all").expect("write");
    let impostor = NodeProc::spawn(&wrong, &coord.unix, 7, "join");
    assert_eq!(impostor.expect(), "REFUSED AuthFailed");
    let bad = Client::connect(ClientConfig::new(
        coord.tcp.clone(),
        8,
        Secret::new(b"another-wrong-secret!!".to_vec()).expect("secret"),
    ));
    assert!(matches!(bad, Err(ClientError::AuthFailed)), "{:?}", bad.err());
    let good = join(&coord.unix, 1);
    let members = good.status().expect("status");
    assert!(members.iter().all(|m| m.node != 7 && m.node != 8), "{members:?}");

    let page = ResourceId::new(9, 1);
    let lock = Msg::Lock {
        txn: 1,
        resource: page,
        mode: LockMode::X,
        wait_ms: 0,
        live_only: false,
    };
    for ep in [&coord.unix, &coord.tcp] {
        // A request before any Hello.
        let mut raw = Raw::connect(ep, PATIENCE);
        raw.write_all(&wire::encode(7, &lock)).expect("send");
        match raw.next("lock before hello") {
            Some((7, Msg::Error { code, .. })) => assert_eq!(code, ErrorCode::NotAuthenticated),
            other => panic!("expected NotAuthenticated for request 7, got {other:?}"),
        }
        assert_eq!(raw.next("lock before hello"), None, "closed after the refusal");

        // A Hello, then a request instead of the proof.
        let mut raw = Raw::connect(ep, PATIENCE);
        let hello = Msg::Hello {
            node: 9,
            purpose: Purpose::Join,
            incarnation: 0,
            pid: 1,
            launches_restarts: false,
        };
        raw.write_all(&wire::encode(1, &hello)).expect("send");
        assert!(matches!(raw.next("hello"), Some((1, Msg::Challenge { .. }))));
        raw.write_all(&wire::encode(2, &lock)).expect("send");
        raw.expect_error_then_close(ErrorCode::NotAuthenticated, "lock instead of proof");

        // A proof made with another secret.
        let mut raw = Raw::connect(ep, PATIENCE);
        raw.write_all(&wire::encode(1, &hello)).expect("send");
        let Some((1, Msg::Challenge { nonce })) = raw.next("hello") else {
            panic!("no challenge");
        };
        let forged = Secret::new(b"a-guess-at-the-secret".to_vec()).expect("secret");
        let proof = Msg::AuthProof {
            mac: forged.prove(&nonce, 9),
        };
        raw.write_all(&wire::encode(2, &proof)).expect("send");
        raw.expect_error_then_close(ErrorCode::AuthFailed, "forged proof");
    }
    // Nothing they sent took effect, and the coordinator serves on.
    assert!(coord.alive());
    assert!(good.status().expect("status").iter().all(|m| m.node != 9));
    assert_eq!(good.lock(1, page, LockMode::X, None), Ok(LockMode::X));
    let other = join(&coord.tcp, 2);
    assert_eq!(
        other.lock(1, page, LockMode::S, None),
        Err(ClientError::Conflict { resource: page })
    );
}

// ---------------------------------------------------------------------------
// 9. Malformed frames.

#[test]
fn malformed_truncated_and_random_frames_close_only_their_connection() {
    let cluster = Cluster::new();
    let mut coord = cluster.start(PATIENT);
    assert_eq!(frame(0x0A, 1, &[]), wire::encode(1, &Msg::Status), "the frame helper");
    let observer = join(&coord.unix, 1);
    let events = &observer.events;
    let mut next_node: NodeId = 100;
    for ep in [coord.unix.clone(), coord.tcp.clone()] {
        for (name, bytes, half_close) in malformed_inputs() {
            // Before authentication.
            let what = format!("{name} over {ep}, unauthenticated");
            let mut raw = Raw::connect(&ep, PATIENCE);
            raw.write_all(&bytes).expect("send");
            if half_close {
                raw.finish_writing();
            }
            raw.expect_error_then_close(ErrorCode::Malformed, &what);

            // After authentication: the node is failed as well.
            let what = format!("{name} over {ep}, authenticated");
            let node = next_node;
            next_node += 1;
            let mut raw = Raw::admitted(&ep, node);
            raw.write_all(&bytes).expect("send");
            if half_close {
                raw.finish_writing();
            }
            raw.expect_error_then_close(ErrorCode::Malformed, &what);
            wait_event(events, EventKind::NodeFailed, node);
            assert!(coord.alive(), "{what}: the coordinator died");
        }
    }

    // Random bytes, random frames with valid checksums, damaged real frames.
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let samples = [
        wire::encode(
            3,
            &Msg::Lock {
                txn: 1,
                resource: ResourceId::new(1, 1),
                mode: LockMode::X,
                wait_ms: 100,
                live_only: true,
            },
        ),
        wire::encode(
            3,
            &Msg::Reassert {
                locks: vec![HeldLock {
                    txn: 1,
                    resource: ResourceId::new(1, 2),
                    mode: LockMode::S,
                }],
            },
        ),
        wire::encode(3, &Msg::RegisterCounterpart { failed: 100 }),
        wire::encode(3, &Msg::ListRetained { node: 100 }),
    ];
    let started = Instant::now();
    let mut thrown = 0;
    for i in 0..200u32 {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let mut bytes = match i % 3 {
            0 => {
                let n = rng.random_range(0..80);
                (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>()
            }
            1 => {
                let n = rng.random_range(0..48);
                let payload: Vec<u8> = (0..n).map(|_| rng.random::<u8>()).collect();
                frame(rng.random(), rng.random(), &payload)
            }
            _ => {
                let mut b = samples[rng.random_range(0..samples.len())].clone();
                let bit = rng.random_range(0..b.len() * 8);
                b[bit / 8] ^= 1 << (bit % 8);
                b
            }
        };
        if rng.random_bool(0.3) {
            bytes.truncate(rng.random_range(0..=bytes.len()));
        }
        let ep = if i % 2 == 0 { &coord.unix } else { &coord.tcp };
        let admitted = (i % 4 >= 2).then(|| {
            next_node += 1;
            next_node - 1
        });
        let mut raw = match admitted {
            None => Raw::connect(ep, Duration::from_secs(10)),
            Some(node) => Raw::admitted(ep, node),
        };
        let _ = raw.write_all(&bytes);
        raw.finish_writing();
        // Drain whatever the coordinator answers until it closes.
        let mut sink = [0u8; 4096];
        for _ in 0..10_000 {
            match raw.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // A member's connection closing fails it (unless it left): wait for
        // the announcement, so that no broadcast is still under way when the
        // next node is admitted.
        let left = matches!(wire::decode_frame(&bytes), Ok(Some((_, Msg::Leave, _))));
        if let (Some(node), false) = (admitted, left) {
            wait_event(events, EventKind::NodeFailed, node);
        }
        thrown += 1;
        assert!(coord.alive(), "the coordinator died on input {i} (seed {seed})");
    }
    assert!(thrown >= 50, "only {thrown} inputs were thrown (seed {seed})");

    assert!(coord.alive(), "seed {seed}");
    for (node, ep) in [(2, &coord.unix), (3, &coord.tcp)] {
        let c = join(ep, node);
        let page = ResourceId::new(50, node as u64);
        assert_eq!(c.lock(1, page, LockMode::X, None), Ok(LockMode::X), "seed {seed}");
        c.release_all(1).expect("release");
        assert!(status_of(&c, node).is_some_and(|m| m.live));
    }
    assert!(observer.status().is_ok(), "an old session is still served");
}

// ---------------------------------------------------------------------------
// 10. Lease self-fencing.

#[test]
fn nodes_fence_themselves_while_the_coordinator_is_stopped() {
    let cluster = Cluster::new();
    let mut coord = cluster.start(PATIENT);
    let client = join(&coord.unix, 1);
    let events = &client.events;
    let mut node = cluster.node(&coord.tcp, 2);
    assert!(client.lease_valid(), "a fresh member holds a lease");
    assert_eq!(client.check_lease(), Ok(()));

    let stopped = Stopped::new(coord.proc.id().expect("the coordinator's pid"));
    let deadline = Instant::now() + PATIENCE;
    let mut lost = false;
    while !lost && Instant::now() < deadline {
        lost = matches!(
            events.recv_timeout(Duration::from_millis(50)),
            Ok(ClientEvent::LeaseLost)
        );
    }
    assert!(lost, "no LeaseLost event while the coordinator was stopped");
    assert!(!client.lease_valid());
    assert_eq!(client.check_lease(), Err(ClientError::LeaseLost));
    assert_eq!(node.ask("await_lease_lost"), "LEASE_LOST valid=false");
    assert!(coord.alive(), "stopped, not dead");
    drop(stopped);

    // Continued, it serves again.
    let fresh = eventually("the continued coordinator to admit a node", || {
        connect_as(&coord.tcp, 3, Purpose::Join, 0).ok()
    });
    assert!(fresh.lease_valid());
    assert!(status_of(&fresh, 3).is_some_and(|m| m.live));
}

// ---------------------------------------------------------------------------
// Further rules of a coordinator restart.

/// A rejoining node's locks are not re-asserted at the moment it is
/// admitted; until it has re-asserted them, nothing may be granted over them.
#[test]
fn a_rejoining_node_is_not_overtaken_before_it_reasserts() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let page = ResourceId::new(10, 1);
    let holder = join(&coord.unix, 1);
    assert_eq!(holder.lock(1, page, LockMode::X, None), Ok(LockMode::X));
    let incarnation = holder.incarnation();
    coord.kill();
    drop(holder);

    let coord = cluster.start(FAST);
    let back = Member::new(connect_as(&coord.unix, 1, Purpose::Rejoin, incarnation).expect("rejoin"));
    let other = join(&coord.tcp, 2);
    let before = other.lock(1, page, LockMode::X, None);
    let reasserted = back.reassert(vec![HeldLock {
        txn: 1,
        resource: page,
        mode: LockMode::X,
    }]);
    assert!(
        before.is_err() && reasserted.is_ok(),
        "granted {before:?} over a lock its holder had not re-asserted yet; the re-assertion then got {reasserted:?}"
    );
    assert_eq!(
        other.lock(1, page, LockMode::X, None),
        Err(ClientError::Conflict { resource: page })
    );
}

/// Re-assertion is for nodes rejoining after a restart: it is no way
/// around the refusals of the grace period or of a node whose locks are
/// unknown.
#[test]
fn reassert_is_no_way_around_the_restart_gate() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let page = ResourceId::new(11, 1);
    let mut stays_away = cluster.node(&coord.unix, 1);
    assert_eq!(stays_away.ask(&lock_cmd(1, page, LockMode::X, None)), "GRANTED X");
    coord.kill();

    let coord = cluster.start(FAST);
    let newcomer = join(&coord.tcp, 2);
    let refused = newcomer.lock(1, page, LockMode::X, None);
    assert!(
        matches!(
            refused,
            Err(ClientError::CoordinatorRecovering) | Err(ClientError::Retained { node: 1, .. })
        ),
        "{refused:?}"
    );
    let sneaked = newcomer.reassert(vec![HeldLock {
        txn: 1,
        resource: page,
        mode: LockMode::X,
    }]);
    assert!(
        sneaked.is_err(),
        "a node that never held {page} took it by re-assertion while lock requests were refused"
    );
    stays_away.kill();
}

/// A node failed with unknown locks may restart to recover itself; once its
/// restart is finished the cluster must not stay paused on its account.
#[test]
fn a_node_with_unknown_locks_that_restarts_itself_unpauses_the_cluster() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let (its_page, elsewhere) = (ResourceId::new(12, 1), ResourceId::new(12, 2));
    let mut stays_away = cluster.node(&coord.unix, 1);
    assert_eq!(stays_away.ask(&lock_cmd(1, its_page, LockMode::X, None)), "GRANTED X");
    coord.kill();

    let coord = cluster.start(FAST);
    let other = join(&coord.tcp, 2);
    assert_eq!(
        lock_after_grace(&other, 1, elsewhere, LockMode::S),
        retained_err(1, elsewhere)
    );
    wait_event(&other.events, EventKind::NodeFailed, 1);
    stays_away.kill();

    let mut restarted = cluster.spawn_node(&coord.unix, 1, "restart");
    let first = restarted.expect();
    assert!(first.starts_with("READY "), "the restart was refused: {first}");
    assert_eq!(restarted.ask("restart_finished"), "OK");
    assert_eq!(status_of(&other, 1).map(|m| m.live), Some(true));
    assert_eq!(
        other.lock(1, elsewhere, LockMode::S, None),
        Ok(LockMode::S),
        "node 1 recovered itself and is live, yet locks are refused in its name"
    );
}

// ---------------------------------------------------------------------------
// Admission while the coordinator announces something.

/// Nodes joining together: each is admitted, even when another node's
/// admission (or failure) is announced while its own handshake is under way.
#[test]
fn nodes_joining_at_the_same_time_are_all_admitted() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let mut refused = Vec::new();
    for round in 0..5u32 {
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<(NodeId, Result<Client, ClientError>)> = std::thread::scope(|s| {
            let joins: Vec<_> = (0..8u32)
                .map(|k| {
                    let node = 100 * (round + 1) + k;
                    let ep = if k % 2 == 0 { &coord.unix } else { &coord.tcp };
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        (node, connect_as(ep, node, Purpose::Join, 0))
                    })
                })
                .collect();
            joins.into_iter().map(|j| j.join().expect("a joining thread")).collect()
        });
        for (node, r) in results {
            match r {
                Ok(c) => c.leave().expect("leave"),
                Err(e) => refused.push((node, e)),
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} of 40 concurrent joins failed, for example {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_and_releases_without_a_reply_stay_silent() {
    let cluster = Cluster::new();
    let coord = cluster.start(PATIENT);
    let (r1, r2) = (ResourceId::new(7, 1), ResourceId::new(7, 2));
    let lock = |txn, resource| Msg::Lock {
        txn,
        resource,
        mode: LockMode::X,
        wait_ms: 0,
        live_only: false,
    };
    for ep in [coord.unix.clone(), coord.tcp.clone()] {
        let mut raw = Raw::admitted(&ep, 1);
        // One write: the coordinator reads all of it at once. The release
        // of txn 1 asks for no reply, yet must take effect before txn 2's
        // request for the same page, which comes after it.
        let mut bytes = Vec::new();
        for (id, m) in [
            (10, lock(1, r1)),
            (11, lock(1, r2)),
            (wire::NO_REPLY, Msg::ReleaseAll { txn: 1 }),
            (12, lock(2, r1)),
            (wire::NO_REPLY, Msg::Release { txn: 9, resource: r2 }),
            (13, Msg::ReleaseAll { txn: 2 }),
            (14, Msg::Status),
        ] {
            bytes.extend_from_slice(&wire::encode(id, &m));
        }
        raw.write_all(&bytes).expect("send the pipeline");
        let mut seen = Vec::new();
        while seen.last() != Some(&14) {
            match raw.next("pipelined replies") {
                Some((id, msg)) => {
                    let expected_ok = match id {
                        10..=12 => {
                            msg == Msg::Granted {
                                mode: LockMode::X,
                                value: None,
                            }
                        }
                        13 => msg == Msg::Ok,
                        14 => matches!(msg, Msg::StatusReply { .. }),
                        _ => false,
                    };
                    assert!(expected_ok, "over {ep}: unexpected reply {id}: {msg:?}");
                    seen.push(id);
                }
                None => panic!("over {ep}: the connection closed after {seen:?}"),
            }
        }
        assert_eq!(seen, [10, 11, 12, 13, 14], "over {ep}: one reply each, in order");
        // Nothing else follows: the unanswered releases, the one that
        // released nothing included, sent nothing.
        if let Raw::Unix(s) = &raw {
            s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        }
        if let Raw::Tcp(s) = &raw {
            s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        }
        loop {
            match wire::read_frame(&mut raw) {
                Ok(Some((_, Msg::Event { .. }))) => continue,
                Ok(other) => panic!("over {ep}: a frame nobody asked for: {other:?}"),
                Err(wire::FrameReadError::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) => panic!("over {ep}: {e}"),
            }
        }
        raw.write_all(&wire::encode(15, &Msg::Leave)).expect("leave");
        assert_eq!(raw.next("leave").map(|(id, _)| id), Some(15));
    }
}

// ---------------------------------------------------------------------------
// 11. Riding through a coordinator restart.

/// A lease long enough to span a coordinator child's restart (a debug test
/// binary starting on a loaded machine); the grace period after it is the
/// failure timeout.
const RIDE: Timings = Timings {
    heartbeat_ms: 20,
    lease_ms: 4000,
    failure_timeout_ms: 6000,
};

/// A member that rides through coordinator restarts.
fn ride(ep: &Endpoint, node: NodeId) -> Member {
    let mut cfg = ClientConfig::new(ep.clone(), node, secret());
    cfg.ride_through = true;
    Member::new(Client::connect(cfg).unwrap_or_else(|e| panic!("node {node} cannot join: {e}")))
}

/// Waits for the client's `Reconnected` event, within [`PATIENCE`].
fn wait_reconnected(m: &Member) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match m.events.recv_timeout(Duration::from_millis(50)) {
            Ok(ClientEvent::Reconnected { .. }) => return,
            Ok(ClientEvent::LeaseLost) => panic!("node {} lost its lease instead of rejoining", m.node()),
            _ => {}
        }
    }
    panic!("node {} did not rejoin within {PATIENCE:?}", m.node());
}

/// Nodes whose coordinator is killed by SIGKILL and started again keep
/// their membership (same incarnation), their lease and their locks: each
/// client rejoins by itself and re-asserts what it holds, so a node that
/// joins afterwards is refused the locks they held and granted the rest. A
/// lock asked for while no coordinator runs waits for the next one instead
/// of failing.
#[test]
fn nodes_ride_through_a_coordinator_restart_keeping_their_locks() {
    let cluster = Cluster::new();
    let coord = cluster.start(RIDE);
    let (page, shared, later) = (ResourceId::new(20, 1), ResourceId::new(20, 2), ResourceId::new(20, 3));
    let one = ride(&coord.unix, 1);
    let two = ride(&coord.unix, 2);
    assert_eq!(one.lock(1, page, LockMode::X, None), Ok(LockMode::X));
    assert_eq!(two.lock(1, shared, LockMode::S, None), Ok(LockMode::S));
    // Taken and given back before the restart: never re-asserted.
    assert_eq!(one.lock(2, later, LockMode::X, None), Ok(LockMode::X));
    one.release_all_nowait(2).expect("release");
    let (inc1, inc2) = (one.incarnation(), two.incarnation());
    coord.kill();

    std::thread::scope(|s| {
        // Asked while no coordinator runs: it waits for the next one.
        let client: &Client = &one;
        let waiting = s.spawn(move || client.lock(3, later, LockMode::X, Some(PATIENCE)));
        let coord = cluster.start(RIDE);
        wait_reconnected(&one);
        wait_reconnected(&two);
        assert_eq!(waiting.join().expect("the waiting thread"), Ok(LockMode::X));
        assert!(one.lease_valid() && two.lease_valid(), "rejoined within the lease");

        let three = join(&coord.unix, 3);
        let held = |r| lock_after_grace(&three, 1, r, LockMode::X);
        assert_eq!(held(page), Err(ClientError::Conflict { resource: page }));
        assert_eq!(held(shared), Err(ClientError::Conflict { resource: shared }));
        assert_eq!(held(later), Err(ClientError::Conflict { resource: later }));
        assert_eq!(three.lock(1, shared, LockMode::S, None), Ok(LockMode::S));
        for (node, inc) in [(1, inc1), (2, inc2)] {
            let m = status_of(&three, node).expect("a member");
            assert!(m.live && m.incarnation == inc, "node {node} after the restart: {m:?}");
        }
        // What a ridden-through node releases is free for the others.
        one.release_all(1).expect("release");
        assert_eq!(three.lock(2, page, LockMode::X, None), Ok(LockMode::X));
    });
}

/// A node whose coordinator does not come back rides through only while
/// its lease holds: then it loses the lease, as without riding through,
/// and its requests fail.
#[test]
fn a_node_whose_coordinator_stays_away_loses_its_lease() {
    let cluster = Cluster::new();
    let coord = cluster.start(FAST);
    let one = ride(&coord.unix, 1);
    assert_eq!(one.lock(1, ResourceId::new(21, 1), LockMode::X, None), Ok(LockMode::X));
    coord.kill();
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !seen.contains(&ClientEvent::LeaseLost) && Instant::now() < deadline {
        if let Ok(ev) = one.events.recv_timeout(Duration::from_millis(50)) {
            seen.push(ev);
        }
    }
    assert!(
        seen.starts_with(&[ClientEvent::CoordinatorLost]) && seen.contains(&ClientEvent::LeaseLost),
        "events: {seen:?}"
    );
    assert!(!one.lease_valid());
    assert_eq!(
        one.lock(1, ResourceId::new(21, 2), LockMode::X, None),
        Err(ClientError::Disconnected)
    );
}
