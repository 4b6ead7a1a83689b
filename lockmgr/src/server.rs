//! The coordinator server: the lock table, membership, leases and the
//! counterpart registry behind Unix-socket and TCP listeners.
//!
//! One thread per connection reads frames in order and answers each with the
//! request id it carried; a node may pipeline requests. A node in the
//! coordinator's own process has its requests handled on its own threads
//! instead ([`LocalLink`]). Lock waits are answered later, when the lock is
//! granted, times out, or its owner is chosen as a deadlock victim. A
//! ticker thread runs every [`TICK`]: it declares nodes whose heartbeats
//! stopped failed, expires waits, breaks deadlocks and ends the grace period
//! after a restart.
//!
//! ## Failure detection
//! A member is declared failed when its connection drops (the kernel closes
//! a killed process's sockets, so detection takes well under a millisecond on
//! one host), or when no heartbeat arrived for `failure_timeout_ms`, counted
//! only while none of the node's requests is being handled: time spent
//! handling one (a durable write's sync, say) is not the node's silence.
//! See [`crate::client`] for the lease argument that makes a cut-off node
//! stop writing before that.
//!
//! ## Authentication
//! The first frame must be `Hello`; the coordinator answers with a challenge
//! and admits nothing before a valid proof ([`crate::auth`]). Any other frame
//! first, a bad proof, or a malformed frame closes the connection with an
//! error and nothing the connection sent takes effect.
//!
//! ## Restart of the coordinator
//! The durable record ([`crate::persist`]) restores membership, recovery
//! status and every retained lock. Nodes that were live reconnect with
//! `Rejoin` and re-assert their locks; until all have (or `failure_timeout_ms`
//! has passed) no other lock is granted, so nothing can be granted over a
//! lock that is not re-asserted yet. A re-asserted lock that conflicts with
//! a retained lock of the record shows that record older than the lock's
//! release (a recovery's end is answered before it is recorded): that
//! retained lock is dropped, and the node's others stay until a recovery
//! that finds nothing left to do. A node that does not come back is
//! declared failed with its locks unknown ("blind"): until a counterpart has
//! recovered it, every lock request is refused with `Retained` naming it —
//! the cluster pauses rather than risk exposing its uncommitted pages.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wal::io::Io;

mod local;
pub use local::LocalLink;

use crate::auth::{self, Secret};
use crate::error::{LockError, RegistryError};
use crate::failure::RetainedLock;
use crate::ids::{NodeId, Owner, ResourceId, Ticket};
use crate::membership::Liveness;
use crate::persist::{self, CoordinatorState, PersistError, StateStore};
use crate::queue::{RequestOutcome, WaitPolicy, Woken};
use crate::registry::{AuthState, Grant, RecoveryOutcome, RecoveryStatus, Registry, RetainedLocks};
use crate::table::LockTable;
use crate::transport::{Endpoint, Stream};
use crate::wire::{self, ErrorCode, EventKind, MemberInfo, Msg, Outcome, Purpose};

/// How often the ticker runs.
pub const TICK: Duration = Duration::from_millis(2);
/// The transaction id under which a restarting node holds its reclaimed
/// locks until it reports `RestartFinished`.
pub const RESTART_TXN: u64 = u64::MAX;
/// How long a connection may take to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadlock detection runs every this many ticks.
const DEADLOCK_EVERY_TICKS: u64 = 5;

/// How a coordinator runs.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub listen: Vec<Endpoint>,
    pub secret: Secret,
    /// Where the durable record lives.
    pub state_dir: PathBuf,
    pub io: Io,
    /// How long a heartbeat's lease lasts, measured by the node from when it
    /// sent the heartbeat.
    pub lease_ms: u32,
    pub heartbeat_ms: u32,
    /// Silence after which the coordinator declares a node failed; must
    /// exceed `lease_ms` by the clock-drift margin (see [`crate::client`]).
    pub failure_timeout_ms: u32,
}

impl CoordinatorConfig {
    pub fn new(listen: Vec<Endpoint>, secret: Secret, state_dir: PathBuf, io: Io) -> CoordinatorConfig {
        CoordinatorConfig {
            listen,
            secret,
            state_dir,
            io,
            // Generous enough that a busy two-core machine does not starve a
            // live node into a false failure; a dropped connection (a dead
            // process) is still detected at once.
            lease_ms: 1000,
            heartbeat_ms: 100,
            failure_timeout_ms: 1500,
        }
    }
}

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    #[error("cannot listen on {endpoint}: {source}")]
    Listen { endpoint: Endpoint, source: std::io::Error },
    #[error(transparent)]
    State(#[from] PersistError),
    #[error("the durable record contradicts itself: {0}")]
    Inconsistent(LockError),
    #[error("bad configuration: {0}")]
    Config(String),
}

/// One connection's write side, shared by the threads that answer on it.
struct Conn {
    id: u64,
    out: Mutex<Out>,
    closed: AtomicBool,
}

/// Where a connection's answers and events go.
enum Out {
    /// A socket, with the replies held back while the connection's thread
    /// answers frames it read together (see [`Conn::hold`]).
    Stream {
        stream: Stream,
        held: Vec<u8>,
        holding: bool,
    },
    /// A node in this process ([`LocalLink`]): handed over as they are
    /// made. Until the node's client is attached (during admission) they
    /// are kept in `early`.
    Local {
        peer: Option<Arc<dyn LocalPeer>>,
        early: Vec<(u64, Msg)>,
    },
}

impl Conn {
    fn new(id: u64, stream: Stream) -> Conn {
        Conn {
            id,
            out: Mutex::new(Out::Stream {
                stream,
                held: Vec::new(),
                holding: false,
            }),
            closed: AtomicBool::new(false),
        }
    }

    fn local(id: u64) -> Conn {
        Conn {
            id,
            out: Mutex::new(Out::Local {
                peer: None,
                early: Vec::new(),
            }),
            closed: AtomicBool::new(false),
        }
    }

    fn send(&self, request_id: u64, msg: &Msg) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut out = lock(&self.out);
        match &mut *out {
            Out::Local { peer: Some(peer), .. } => peer.deliver(request_id, msg.clone()),
            Out::Local { peer: None, early } => early.push((request_id, msg.clone())),
            Out::Stream { stream, held, holding } => {
                let bytes = wire::encode(request_id, msg);
                if *holding {
                    held.extend_from_slice(&bytes);
                    return;
                }
                let failed = if held.is_empty() {
                    stream.write_all(&bytes).is_err()
                } else {
                    held.extend_from_slice(&bytes);
                    let all = std::mem::take(held);
                    stream.write_all(&all).is_err()
                };
                if failed {
                    self.close_out(&mut out);
                }
            }
        }
    }

    /// While `on`, replies (whoever sends them) are held back, in order, and
    /// go out in one write when it is turned off. The connection's thread
    /// holds the answers to frames that arrived together, so a node that
    /// pipelined them reads them with one wake-up.
    fn hold(&self, on: bool) {
        let mut out = lock(&self.out);
        let Out::Stream { stream, held, holding } = &mut *out else {
            return;
        };
        *holding = on;
        if !on && !held.is_empty() {
            let all = std::mem::take(held);
            if stream.write_all(&all).is_err() {
                self.close_out(&mut out);
            }
        }
    }

    fn close(&self) {
        let mut out = lock(&self.out);
        self.close_out(&mut out);
    }

    fn close_out(&self, out: &mut Out) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        match out {
            Out::Stream { stream, .. } => stream.shutdown(),
            Out::Local { peer, .. } => {
                if let Some(peer) = peer.take() {
                    peer.closed();
                }
            }
        }
    }
}

/// The node side of a [`LocalLink`]: what the coordinator hands a node in
/// its own process.
pub trait LocalPeer: Send + Sync {
    /// A reply (`request_id` of its request) or an event (`request_id` 0),
    /// in the order the coordinator made them.
    fn deliver(&self, request_id: u64, msg: Msg);
    /// The connection ended: the node left, was disconnected, or the
    /// coordinator stopped. Nothing is delivered after this.
    fn closed(&self);
}

struct Session {
    conn: Arc<Conn>,
    incarnation: u64,
    /// Since when the coordinator has been waiting to hear from the node
    /// (the end of the last request it handled, or the admission), and how
    /// many of the node's requests are being handled now; the node is not
    /// silent while that count is above zero.
    ///
    /// A connection's thread reads nothing while it handles a request, and
    /// a request may wait on a write of the durable record, whose syncs can
    /// take more than a second on a busy disk. Heartbeats sent meanwhile
    /// wait unread in the socket: the node is not silent, the coordinator is
    /// not listening. So the failure timeout runs only while no request of
    /// the node is being handled ([`Shared::expire_sessions`]). Counting
    /// from the end of a request only ever declares a failure later than
    /// counting from a heartbeat's receipt, which keeps the lease argument
    /// of [`crate::client`]. A node in this process ([`LocalLink`]) has its
    /// requests handled on its own threads, several at once: hence a count.
    last_heard: Mutex<Heard>,
}

struct Heard {
    since: Instant,
    busy: usize,
}

impl Session {
    /// A request of the node starts being handled.
    fn handling(&self) {
        lock(&self.last_heard).busy += 1;
    }

    /// A request of the node was handled.
    fn listening(&self) {
        let mut h = lock(&self.last_heard);
        h.busy = h.busy.saturating_sub(1);
        h.since = Instant::now();
    }

    /// Whether the node has been silent for longer than `timeout` at `now`.
    fn silent(&self, now: Instant, timeout: Duration) -> bool {
        let h = lock(&self.last_heard);
        h.busy == 0 && now.saturating_duration_since(h.since) > timeout
    }
}

/// How a member went (see `Shared::member_gone`).
enum Gone {
    Failed { blind: bool },
    Left,
}

struct Wait {
    ticket: Ticket,
    conn: Arc<Conn>,
    request_id: u64,
    deadline: Instant,
}

struct Shared {
    cfg: CoordinatorConfig,
    table: LockTable,
    registry: Registry,
    sessions: Mutex<HashMap<NodeId, Arc<Session>>>,
    waits: Mutex<HashMap<u64, Wait>>,
    /// Grants handed out, by failed node, to check unregistrations.
    grants: Mutex<HashMap<NodeId, Grant>>,
    /// Failed nodes whose locks are unknown (see the module docs).
    blind: Mutex<BTreeSet<NodeId>>,
    /// Live nodes with a restart request filed: announced when they fail.
    /// Kept in memory only; a coordinator restart forgets them.
    restart_wanted: Mutex<BTreeSet<NodeId>>,
    /// After a restart: live nodes not yet back, and until when to wait.
    awaiting: Mutex<(BTreeSet<NodeId>, Option<Instant>)>,
    /// The durable record's store; its lock serialises writes.
    persist_lock: Mutex<StateStore>,
    /// Serialises membership changes of nodes — one going (lock table,
    /// registry, announcement, then record; see `member_gone`) and one
    /// admitted (registry, then lock table and reclaimed locks, then
    /// record) — so a restart can
    /// never slip between the steps of its own failure. Taken after
    /// `awaiting` when both are needed, never before it.
    member_changes: Mutex<()>,
    stop: AtomicBool,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent; a panic elsewhere
    // must not take the coordinator down with poisoned locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running coordinator.
pub struct Coordinator {
    shared: Arc<Shared>,
    addrs: Vec<Endpoint>,
    threads: Vec<JoinHandle<()>>,
}

impl Coordinator {
    /// Loads the durable record, binds every endpoint and starts serving.
    pub fn start(cfg: CoordinatorConfig) -> Result<Coordinator, CoordinatorError> {
        if cfg.listen.is_empty() {
            return Err(CoordinatorError::Config("no endpoint to listen on".into()));
        }
        if cfg.heartbeat_ms == 0 || cfg.lease_ms <= cfg.heartbeat_ms || cfg.failure_timeout_ms <= cfg.lease_ms {
            return Err(CoordinatorError::Config(
                "need 0 < heartbeat_ms < lease_ms < failure_timeout_ms".into(),
            ));
        }
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| PersistError::Io(wal::io::IoError::new(wal::io::OpKind::Open, &cfg.state_dir, None, e)))?;
        let (store, restored) = StateStore::open(&cfg.io, &cfg.state_dir)?;
        let (table, registry, blind, awaiting) = match &restored {
            None => (LockTable::new(), Registry::default(), BTreeSet::new(), BTreeSet::new()),
            Some(state) => {
                let table = LockTable::from_retained(state.retained.iter().copied(), crate::table::DEFAULT_MAX_WAITERS)
                    .map_err(CoordinatorError::Inconsistent)?;
                let mut awaiting = BTreeSet::new();
                for (node, st) in &state.registry.nodes {
                    match st.liveness {
                        Liveness::Failed => {
                            table.node_failed(*node);
                        }
                        Liveness::Live => {
                            awaiting.insert(*node);
                        }
                    }
                }
                let registry = Registry::restore(&state.registry);
                tracing::info!(
                    retained = state.retained.len(),
                    awaiting = awaiting.len(),
                    "coordinator state restored"
                );
                (table, registry, state.blind.iter().copied().collect(), awaiting)
            }
        };
        let grace =
            (!awaiting.is_empty()).then(|| Instant::now() + Duration::from_millis(cfg.failure_timeout_ms as u64));
        let shared = Arc::new(Shared {
            cfg,
            table,
            registry,
            sessions: Mutex::new(HashMap::new()),
            waits: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            blind: Mutex::new(blind),
            restart_wanted: Mutex::new(BTreeSet::new()),
            awaiting: Mutex::new((awaiting, grace)),
            persist_lock: Mutex::new(store),
            member_changes: Mutex::new(()),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
        });
        shared.persist();
        let mut threads = Vec::new();
        let mut addrs = Vec::new();
        for ep in shared.cfg.listen.clone() {
            let (thread, addr) = listen(shared.clone(), ep)?;
            threads.push(thread);
            addrs.push(addr);
        }
        let ticker = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("coord-ticker".into())
                .spawn(move || ticker.tick_loop())
                .expect("spawn the ticker thread"),
        );
        Ok(Coordinator { shared, addrs, threads })
    }

    /// The endpoints actually bound (a TCP port 0 resolved).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.addrs
    }

    /// Blocks until the coordinator stops.
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Stops serving: listeners close, connections are dropped.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // A record write already under way finishes before the coordinator
        // is gone; any later one sees `stop` under this lock and skips.
        drop(lock(&self.shared.persist_lock));
        for ep in &self.addrs {
            // Wake the blocking accept.
            let _ = Stream::connect(ep, Duration::from_millis(100));
        }
        for s in lock(&self.shared.sessions).values() {
            s.conn.close();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ep in &self.addrs {
            if let Endpoint::Unix(p) = ep {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_threads();
        }
    }
}

fn listen(shared: Arc<Shared>, ep: Endpoint) -> Result<(JoinHandle<()>, Endpoint), CoordinatorError> {
    let err = |endpoint: &Endpoint, source| CoordinatorError::Listen {
        endpoint: endpoint.clone(),
        source,
    };
    match ep {
        Endpoint::Unix(path) => {
            // A socket file left by a dead coordinator refuses the bind.
            if std::os::unix::net::UnixStream::connect(&path).is_err() {
                let _ = std::fs::remove_file(&path);
            }
            let l = UnixListener::bind(&path).map_err(|e| err(&Endpoint::Unix(path.clone()), e))?;
            let addr = Endpoint::Unix(path);
            let t = std::thread::Builder::new()
                .name("coord-accept-unix".into())
                .spawn(move || {
                    for s in l.incoming() {
                        if shared.stop.load(Ordering::Acquire) {
                            return;
                        }
                        if let Ok(s) = s {
                            shared.clone().serve(Stream::Unix(s));
                        }
                    }
                })
                .expect("spawn an accept thread");
            Ok((t, addr))
        }
        Endpoint::Tcp(a) => {
            let l = std::net::TcpListener::bind(a).map_err(|e| err(&Endpoint::Tcp(a), e))?;
            let addr = Endpoint::Tcp(l.local_addr().map_err(|e| err(&Endpoint::Tcp(a), e))?);
            let t = std::thread::Builder::new()
                .name("coord-accept-tcp".into())
                .spawn(move || {
                    for s in l.incoming() {
                        if shared.stop.load(Ordering::Acquire) {
                            return;
                        }
                        if let Ok(s) = s {
                            let _ = s.set_nodelay(true);
                            shared.clone().serve(Stream::Tcp(s));
                        }
                    }
                })
                .expect("spawn an accept thread");
            Ok((t, addr))
        }
    }
}

fn error_msg(code: ErrorCode, node: NodeId, resource: ResourceId, message: impl Into<String>) -> Msg {
    Msg::Error {
        code,
        node,
        resource,
        message: message.into(),
    }
}

fn lock_error(e: &LockError) -> Msg {
    let none = ResourceId::new(0, 0);
    let (code, node, resource) = match *e {
        LockError::Conflict { resource, .. } => (ErrorCode::Conflict, 0, resource),
        LockError::Retained { node, resource, .. } => (ErrorCode::Retained, node, resource),
        LockError::QueueFull { resource, .. } => (ErrorCode::QueueFull, 0, resource),
        LockError::NotHeld { resource, .. } => (ErrorCode::NotHeld, 0, resource),
        LockError::NodeFailed { node, .. } => (ErrorCode::NodeFailed, node, none),
        _ => (ErrorCode::Refused, 0, none),
    };
    error_msg(code, node, resource, e.to_string())
}

fn registry_error(e: &RegistryError) -> Msg {
    let none = ResourceId::new(0, 0);
    let (code, node) = match *e {
        RegistryError::NotAuthenticated => (ErrorCode::NotAuthenticated, 0),
        RegistryError::UnknownNode { node } => (ErrorCode::UnknownNode, node),
        RegistryError::CallerIsFailedNode { node } => (ErrorCode::CallerIsFailedNode, node),
        RegistryError::CallerNotLive { caller } => (ErrorCode::CallerNotLive, caller),
        RegistryError::NodeNotFailed { node } => (ErrorCode::NodeNotFailed, node),
        RegistryError::AlreadyActive { counterpart, .. } => (ErrorCode::AlreadyActive, counterpart),
        RegistryError::AlreadyRecovered { node } => (ErrorCode::AlreadyRecovered, node),
        RegistryError::NotCounterpart { failed, .. } => (ErrorCode::NotCounterpart, failed),
        RegistryError::RecoveryInProgress { counterpart, .. } => (ErrorCode::RecoveryInProgress, counterpart),
        RegistryError::AlreadyLive { node } => (ErrorCode::AlreadyLive, node),
        _ => (ErrorCode::Refused, 0),
    };
    error_msg(code, node, none, e.to_string())
}

/// What a connection turned out to be after its handshake.
#[derive(Clone)]
enum Admitted {
    Member {
        node: NodeId,
        session: Arc<Session>,
        purpose: Purpose,
    },
    Operator {
        node: NodeId,
    },
}

impl Shared {
    fn serve(self: Arc<Self>, stream: Stream) {
        let Ok(reader) = stream.try_clone() else { return };
        let conn = Arc::new(Conn::new(self.next_conn.fetch_add(1, Ordering::Relaxed), stream));
        let _ = std::thread::Builder::new()
            .name(format!("coord-conn-{}", conn.id))
            .spawn(move || self.connection(conn, reader));
    }

    fn connection(self: Arc<Self>, conn: Arc<Conn>, mut reader: Stream) {
        let _ = reader.set_read_timeout(Some(AUTH_TIMEOUT));
        let admitted = match self.handshake(&conn, &mut reader) {
            Some(a) => a,
            None => {
                conn.close();
                return;
            }
        };
        let _ = reader.set_read_timeout(None);
        let node = match &admitted {
            Admitted::Member { node, .. } | Admitted::Operator { node } => *node,
        };
        // Frames a node pipelined arrive together and are read with one
        // call; the answers to those that only touch the lock table go out
        // together after the last of them (`Conn::hold`). Any other request
        // may wait on a durable write, so what is held goes out before it.
        // (A lock request can wait too, behind a membership change holding
        // the grace gate; the answers held then wait with it, as the
        // request's own would.)
        let mut reader = std::io::BufReader::with_capacity(wire::READ_BUFFER, reader);
        loop {
            match wire::read_frame(&mut reader) {
                Ok(Some((id, msg))) => {
                    let lock_table_only =
                        matches!(msg, Msg::Lock { .. } | Msg::Release { .. } | Msg::ReleaseAll { .. });
                    conn.hold(lock_table_only && !reader.buffer().is_empty());
                    if !self.handle(&conn, &admitted, id, msg) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(wire::FrameReadError::Wire(e)) => {
                    tracing::warn!(node, error = %e, "malformed frame; closing the connection");
                    conn.hold(false);
                    conn.send(
                        0,
                        &error_msg(ErrorCode::Malformed, 0, ResourceId::new(0, 0), e.to_string()),
                    );
                    break;
                }
                Err(wire::FrameReadError::Io(_)) => break,
            }
        }
        conn.hold(false);
        self.connection_ended(&conn, admitted);
    }

    /// Handles one request of an admitted connection; `false` closes it.
    fn handle(&self, conn: &Arc<Conn>, admitted: &Admitted, id: u64, msg: Msg) -> bool {
        // No failure timeout while the request is handled; it is counted
        // afresh afterwards (see `Session::last_heard`).
        let session = match admitted {
            Admitted::Member { session, .. } => Some(session),
            Admitted::Operator { .. } => None,
        };
        if let Some(s) = session {
            s.handling();
        }
        let go_on = self.request(conn, admitted, id, msg);
        if let Some(s) = session {
            s.listening();
        }
        go_on
    }

    /// A connection closes: a member's ending is its failure, unless it
    /// left first or the coordinator is shutting down (those nodes did not
    /// fail).
    fn connection_ended(&self, conn: &Arc<Conn>, admitted: Admitted) {
        conn.close();
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        if let Admitted::Member { node, session, .. } = admitted {
            self.connection_lost(node, &session);
        }
    }

    /// Hello, challenge, proof, admission. `None` closes the connection.
    fn handshake(&self, conn: &Arc<Conn>, reader: &mut Stream) -> Option<Admitted> {
        let none = ResourceId::new(0, 0);
        let (hello_id, node, purpose, incarnation) = match wire::read_frame(reader) {
            Ok(Some((
                id,
                Msg::Hello {
                    node,
                    purpose,
                    incarnation,
                    ..
                },
            ))) => (id, node, purpose, incarnation),
            Ok(Some((id, _))) => {
                conn.send(
                    id,
                    &error_msg(ErrorCode::NotAuthenticated, 0, none, "authenticate first"),
                );
                return None;
            }
            Ok(None) | Err(wire::FrameReadError::Io(_)) => return None,
            Err(wire::FrameReadError::Wire(e)) => {
                conn.send(0, &error_msg(ErrorCode::Malformed, 0, none, e.to_string()));
                return None;
            }
        };
        let nonce = auth::nonce();
        conn.send(hello_id, &Msg::Challenge { nonce });
        match wire::read_frame(reader) {
            Ok(Some((id, Msg::AuthProof { mac }))) => {
                if !self.cfg.secret.verify(&nonce, node, &mac) {
                    tracing::warn!(node, "authentication failed");
                    conn.send(
                        id,
                        &error_msg(ErrorCode::AuthFailed, node, none, "authentication failed"),
                    );
                    return None;
                }
                self.admit(conn, id, node, purpose, incarnation)
            }
            Ok(Some((id, _))) => {
                conn.send(
                    id,
                    &error_msg(ErrorCode::NotAuthenticated, 0, none, "expected the proof"),
                );
                None
            }
            Ok(None) | Err(wire::FrameReadError::Io(_)) => None,
            Err(wire::FrameReadError::Wire(e)) => {
                conn.send(0, &error_msg(ErrorCode::Malformed, 0, none, e.to_string()));
                None
            }
        }
    }

    fn admit(&self, conn: &Arc<Conn>, id: u64, node: NodeId, purpose: Purpose, incarnation: u64) -> Option<Admitted> {
        let none = ResourceId::new(0, 0);
        let refuse = |msg: Msg| {
            conn.send(id, &msg);
            None
        };
        if purpose == Purpose::Operator {
            conn.send(
                id,
                &Msg::Welcome {
                    incarnation: 0,
                    lease_ms: self.cfg.lease_ms,
                    heartbeat_ms: self.cfg.heartbeat_ms,
                },
            );
            return Some(Admitted::Operator { node });
        }
        let mut member_guard = None;
        let status = self.registry.status(node);
        let incarnation = match purpose {
            Purpose::Rejoin => {
                // Stays in the awaited set until its `Reassert` arrives: until
                // then its locks are not back and nothing else is granted.
                let awaiting = lock(&self.awaiting);
                let ok = status.is_some_and(|s| s.liveness == Liveness::Live && s.incarnation == incarnation)
                    && awaiting.0.contains(&node)
                    && !lock(&self.sessions).contains_key(&node);
                if !ok {
                    return refuse(error_msg(
                        ErrorCode::Refused,
                        node,
                        none,
                        "rejoin is only for live members after a coordinator restart",
                    ));
                }
                incarnation
            }
            Purpose::Join | Purpose::Restart => {
                let unrecovered = status.is_some_and(|s| {
                    s.liveness == Liveness::Failed && !matches!(s.recovery, Some(RecoveryStatus::Recovered))
                });
                if unrecovered && purpose == Purpose::Join {
                    return refuse(error_msg(
                        ErrorCode::NotRecovered,
                        node,
                        none,
                        "node failed and is not recovered yet; restart it to recover itself",
                    ));
                }
                if lock(&self.awaiting).0.contains(&node) {
                    return refuse(error_msg(
                        ErrorCode::AlreadyLive,
                        node,
                        none,
                        "node is live; after a coordinator restart use rejoin",
                    ));
                }
                member_guard = Some(lock(&self.member_changes));
                match self.registry.join(node) {
                    Ok(inc) => inc,
                    Err(e) => return refuse(registry_error(&e)),
                }
            }
            Purpose::Operator => unreachable!("handled above"),
        };
        self.table.node_joined(node);
        if purpose == Purpose::Restart {
            // The restarting node takes its retained locks back; it releases
            // them with RestartFinished once its own recovery is done.
            match self.table.reclaim_retained(node, Owner::new(node, RESTART_TXN)) {
                Ok(report) => self.notify(report.woken),
                Err(e) => tracing::error!(node, error = %e, "reclaiming retained locks failed"),
            }
        }
        self.persist();
        drop(member_guard);
        // Made after the record is written: a slow write must not count as
        // silence of the node (see `Session::last_heard`).
        let session = Arc::new(Session {
            conn: conn.clone(),
            incarnation,
            last_heard: Mutex::new(Heard {
                since: Instant::now(),
                busy: 0,
            }),
        });
        // Welcome first, then the session becomes visible to broadcasts: no
        // event may reach a node before its welcome.
        conn.send(
            id,
            &Msg::Welcome {
                incarnation,
                lease_ms: self.cfg.lease_ms,
                heartbeat_ms: self.cfg.heartbeat_ms,
            },
        );
        lock(&self.sessions).insert(node, session.clone());
        self.broadcast(EventKind::NodeJoined, node, incarnation);
        tracing::info!(node, incarnation, ?purpose, "node admitted");
        Some(Admitted::Member { node, session, purpose })
    }

    /// Handles one request; `false` closes the connection.
    fn request(&self, conn: &Arc<Conn>, who: &Admitted, id: u64, msg: Msg) -> bool {
        let none = ResourceId::new(0, 0);
        let (node, member, purpose) = match who {
            Admitted::Member { node, session, purpose } => (*node, Some(session), *purpose),
            Admitted::Operator { node } => (*node, None, Purpose::Operator),
        };
        let reply = |m: Msg| conn.send(id, &m);
        match msg {
            // The connection loop notes that the node was heard.
            Msg::Heartbeat => reply(Msg::Ok),
            Msg::Lock {
                txn,
                resource,
                mode,
                wait_ms,
                live_only,
            } => {
                if member.is_none() {
                    reply(error_msg(ErrorCode::Refused, node, resource, "operators hold no locks"));
                } else if let Some(m) = self.lock_gate(resource) {
                    reply(m);
                } else {
                    let policy = match (wait_ms, live_only) {
                        (0, _) => WaitPolicy::NoWait,
                        (_, false) => WaitPolicy::Wait,
                        (_, true) => WaitPolicy::WaitForLive,
                    };
                    // The wait is recorded before anyone can grant it: a
                    // release's `notify` takes this map's lock after the table
                    // is updated, so it cannot miss the entry.
                    let mut waits = lock(&self.waits);
                    match self.table.request(Owner::new(node, txn), resource, mode, policy) {
                        Ok(RequestOutcome::Granted { held }) => {
                            drop(waits);
                            reply(Msg::Granted { mode: held })
                        }
                        Ok(RequestOutcome::Queued(ticket)) => {
                            waits.insert(
                                ticket.id(),
                                Wait {
                                    ticket,
                                    conn: conn.clone(),
                                    request_id: id,
                                    deadline: Instant::now() + Duration::from_millis(wait_ms as u64),
                                },
                            );
                        }
                        Err(e) => {
                            drop(waits);
                            reply(lock_error(&e))
                        }
                    }
                }
            }
            // A release with request id `NO_REPLY` is not answered, even
            // with an error: its sender reads nothing for it.
            Msg::Release { txn, resource } => match self.table.release(Owner::new(node, txn), resource) {
                Ok(woken) => {
                    self.notify(woken);
                    if id != wire::NO_REPLY {
                        reply(Msg::Ok);
                    }
                }
                Err(e) if id != wire::NO_REPLY => reply(lock_error(&e)),
                Err(_) => {}
            },
            Msg::ReleaseAll { txn } => {
                let woken = self.table.release_all(Owner::new(node, txn));
                self.notify(woken);
                if id != wire::NO_REPLY {
                    reply(Msg::Ok);
                }
            }
            Msg::RegisterCounterpart { failed } => {
                let auth = if member.is_some() {
                    AuthState::Authenticated
                } else {
                    AuthState::Unauthenticated
                };
                match self.registry.register_counterpart(node, auth, failed) {
                    Ok(grant) => {
                        lock(&self.grants).insert(failed, grant);
                        // Not written to the durable record: a restarted
                        // coordinator restores an active registration as
                        // inactive anyway (its counterpart's connection is
                        // gone), so the write would buy nothing and compete
                        // with the counterpart's own syncs.
                        reply(Msg::CounterpartGrant {
                            failed,
                            incarnation: grant.incarnation(),
                            token: grant.token(),
                        });
                    }
                    Err(e) => reply(registry_error(&e)),
                }
            }
            Msg::UnregisterCounterpart { failed, token, outcome } => {
                let grant = lock(&self.grants).get(&failed).copied();
                let Some(grant) = grant.filter(|g| g.token() == token) else {
                    reply(error_msg(
                        ErrorCode::NotCounterpart,
                        failed,
                        none,
                        "no such registration",
                    ));
                    return true;
                };
                let outcome = match outcome {
                    Outcome::Recovered => RecoveryOutcome::Recovered,
                    Outcome::Abandoned => RecoveryOutcome::Abandoned,
                };
                match self
                    .registry
                    .unregister_counterpart(node, AuthState::Authenticated, &grant, outcome)
                {
                    Ok(locks) => {
                        lock(&self.grants).remove(&failed);
                        if locks == RetainedLocks::Release {
                            // Answered and granted before the record is
                            // durable: the recovery's end records already
                            // are, so its retained locks are free, and a
                            // record that outlives this one only holds
                            // locks back that a restarted coordinator then
                            // drops on evidence or frees after a recovery
                            // that finds nothing to do (see `Reassert`).
                            let woken = self.table.release_retained(failed);
                            lock(&self.blind).remove(&failed);
                            self.notify(woken);
                            reply(Msg::Ok);
                            self.broadcast(EventKind::RecoveryFinished, failed, grant.incarnation());
                            self.persist();
                        } else {
                            self.persist();
                            reply(Msg::Ok);
                            // Inactive again: invite another counterpart.
                            self.broadcast(EventKind::NodeFailed, failed, grant.incarnation());
                        }
                    }
                    Err(e) => reply(registry_error(&e)),
                }
            }
            Msg::RequestRestart { node: target } => {
                // A failed node's restart is announced now; a live node's is
                // kept and announced when it fails, so a node can file its
                // own in advance ("if I die, restart me light").
                let _member_guard = lock(&self.member_changes);
                match self.registry.status(target) {
                    None => reply(error_msg(ErrorCode::UnknownNode, target, none, "no such node")),
                    Some(s) if s.liveness == Liveness::Failed => {
                        reply(Msg::Ok);
                        self.broadcast(EventKind::RestartRequested, target, s.incarnation);
                    }
                    Some(_) => {
                        lock(&self.restart_wanted).insert(target);
                        reply(Msg::Ok);
                    }
                }
            }
            Msg::Status => reply(self.status()),
            Msg::ListRetained { node: target } => reply(Msg::RetainedList {
                locks: self.table.retained(target),
            }),
            Msg::Reassert { locks } => {
                // Only a node rejoining after a coordinator restart, and only
                // once: re-assertion is no way around the restart gate.
                if purpose != Purpose::Rejoin || !lock(&self.awaiting).0.contains(&node) {
                    reply(error_msg(
                        ErrorCode::Refused,
                        node,
                        none,
                        "only a node rejoining after a coordinator restart re-asserts locks",
                    ));
                    return true;
                }
                let mut refused = None;
                let mut stale = false;
                for l in locks {
                    let owner = Owner::new(node, l.txn);
                    let mut outcome = self.table.request(owner, l.resource, l.mode, WaitPolicy::NoWait);
                    // A lock a live node held before the restart that
                    // conflicts with a retained lock of the record proves
                    // the record older than that lock's release: no lock
                    // conflicting with a retained one is ever granted while
                    // it is retained, and a release is made durable only
                    // after it is answered (see `UnregisterCounterpart`).
                    // The recovery that released it had made its end records
                    // durable first, so the lock is dropped; the node's other
                    // retained locks stay until it is recovered again, which
                    // then finds nothing to do. Each round frees another
                    // failed node's lock here, once.
                    let mut dropped = Vec::new();
                    while let Err(LockError::Retained { node: failed, .. }) = outcome {
                        if dropped.contains(&failed) {
                            break;
                        }
                        dropped.push(failed);
                        let woken = self.table.release_stale_retained(failed, l.resource);
                        self.notify(woken);
                        stale = true;
                        outcome = self.table.request(owner, l.resource, l.mode, WaitPolicy::NoWait);
                    }
                    match outcome {
                        Ok(RequestOutcome::Granted { .. }) => {}
                        Ok(RequestOutcome::Queued(t)) => {
                            self.table.cancel(t);
                            refused.get_or_insert(l.resource);
                        }
                        Err(_) => {
                            refused.get_or_insert(l.resource);
                        }
                    }
                }
                lock(&self.awaiting).0.remove(&node);
                if stale {
                    self.persist();
                }
                match refused {
                    None => reply(Msg::Ok),
                    Some(r) => reply(error_msg(ErrorCode::Conflict, node, r, "re-asserted lock conflicts")),
                }
            }
            Msg::RestartFinished if purpose != Purpose::Restart => {
                reply(error_msg(
                    ErrorCode::Refused,
                    node,
                    none,
                    "only a restarting node finishes a restart",
                ));
            }
            Msg::RestartFinished => {
                let woken = self.table.release_all(Owner::new(node, RESTART_TXN));
                // Its own recovery is done: if its locks had been unknown,
                // the cluster need not pause for it any more.
                if lock(&self.blind).remove(&node) {
                    self.persist();
                }
                self.notify(woken);
                reply(Msg::Ok);
                self.broadcast(EventKind::RecoveryFinished, node, member.map_or(0, |s| s.incarnation));
            }
            Msg::Leave => {
                let Some(member) = member else {
                    reply(Msg::Ok);
                    return false;
                };
                lock(&self.sessions).remove(&node);
                self.member_gone(node, member.incarnation, Gone::Left);
                reply(Msg::Ok);
                return false;
            }
            Msg::Hello { .. } | Msg::AuthProof { .. } => {
                reply(error_msg(ErrorCode::Malformed, node, none, "already authenticated"));
            }
            _ => {
                reply(error_msg(ErrorCode::Malformed, node, none, "not a request"));
                return false;
            }
        }
        true
    }

    /// Refusals that apply to every lock request: after a restart until the
    /// live nodes re-asserted their locks, and while a blind node is
    /// unrecovered (module docs).
    fn lock_gate(&self, resource: ResourceId) -> Option<Msg> {
        if !lock(&self.awaiting).0.is_empty() {
            return Some(error_msg(
                ErrorCode::CoordinatorRecovering,
                0,
                resource,
                "coordinator restarted; waiting for live nodes to re-assert their locks",
            ));
        }
        if let Some(&blind) = lock(&self.blind).iter().next() {
            return Some(error_msg(
                ErrorCode::Retained,
                blind,
                resource,
                "a failed node's locks are unknown until it is recovered",
            ));
        }
        None
    }

    fn status(&self) -> Msg {
        let members = self
            .registry
            .statuses()
            .into_iter()
            .map(|(node, st)| {
                let (recovery, counterpart) = match st.recovery {
                    None => (0, 0),
                    Some(RecoveryStatus::Inactive) => (1, 0),
                    Some(RecoveryStatus::Active { counterpart }) => (2, counterpart),
                    Some(RecoveryStatus::Recovered) => (3, 0),
                };
                MemberInfo {
                    node,
                    live: st.liveness == Liveness::Live,
                    incarnation: st.incarnation,
                    recovery,
                    counterpart,
                    retained_locks: self.table.retained(node).len() as u32,
                }
            })
            .collect();
        Msg::StatusReply { members }
    }

    /// Answers granted waits.
    fn notify(&self, woken: Vec<Woken>) {
        if woken.is_empty() {
            return;
        }
        let mut waits = lock(&self.waits);
        for w in woken {
            if let Some(wait) = waits.remove(&w.ticket.id()) {
                wait.conn.send(wait.request_id, &Msg::Granted { mode: w.held });
            }
        }
    }

    /// Answers waits withdrawn because `failed`'s new retained lock blocks
    /// them (see [`WaitPolicy::WaitForLive`]).
    fn refuse_retained(&self, failed: NodeId, tickets: &[Ticket]) {
        let mut waits = lock(&self.waits);
        for t in tickets {
            if let Some(wait) = waits.remove(&t.id()) {
                let e = LockError::Retained {
                    node: failed,
                    resource: t.resource(),
                };
                wait.conn.send(wait.request_id, &lock_error(&e));
            }
        }
    }

    fn forget_waits(&self, tickets: &[Ticket]) {
        let mut waits = lock(&self.waits);
        for t in tickets {
            waits.remove(&t.id());
        }
    }

    fn broadcast(&self, kind: EventKind, node: NodeId, incarnation: u64) {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        let event = Msg::Event {
            kind,
            node,
            incarnation,
        };
        for s in sessions {
            s.conn.send(0, &event);
        }
    }

    /// A member's connection ended: if it is still the node's current
    /// session, the node has failed.
    fn connection_lost(&self, node: NodeId, session: &Arc<Session>) {
        let current = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(&node) {
                Some(s) if Arc::ptr_eq(s, session) => {
                    sessions.remove(&node);
                    true
                }
                _ => false,
            }
        };
        if current {
            self.member_gone(node, session.incarnation, Gone::Failed { blind: false });
        }
    }

    /// A member goes, by failing or by leaving: its S/IS locks go, its
    /// write locks are retained, its registrations as a counterpart are
    /// dropped (the nodes it was recovering are announced failed again, for
    /// another counterpart). A node that leaves holding no write lock is
    /// recovered at once; one that leaves holding some needs recovery like
    /// a failed one. Every live node hears of a failure, and the record is
    /// made durable; only then are the locks the departure freed granted.
    ///
    /// The announcement goes before the record's sync, which would
    /// otherwise delay every recovery by a device flush. That is safe:
    /// should this coordinator die before the record is durable, its
    /// successor restores the node as live, and as it never rejoins it is
    /// declared failed with its locks unknown — nothing is granted until a
    /// counterpart has recovered it again (recovery is idempotent), so the
    /// work of a counterpart that started on the announcement is never
    /// exposed. What is never sent before the record is durable is a grant.
    fn member_gone(&self, node: NodeId, incarnation: u64, how: Gone) {
        let member_guard = lock(&self.member_changes);
        // A departure is of one live incarnation: a newer one is not failed
        // by it, and one that already went (its connection ended and its
        // lease ran out, say) does not go twice.
        match self.registry.status(node) {
            Some(s) if s.incarnation == incarnation && s.liveness == Liveness::Live => {}
            _ => return,
        }
        let report = self.table.node_failed(node);
        let failed = !matches!(how, Gone::Left) || !report.retained.is_empty();
        let gone = if failed {
            self.registry.node_failed(node)
        } else {
            self.registry.leave(node)
        };
        let orphaned = gone.unwrap_or_else(|e| {
            // Checked live above, under the same lock: cannot happen.
            tracing::error!(node, error = %e, "departure of a node that is not live");
            Vec::new()
        });
        self.forget_waits(&report.cancelled);
        self.refuse_retained(node, &report.refused);
        lock(&self.grants).retain(|_, g| g.counterpart() != node);
        let blind = matches!(how, Gone::Failed { blind: true });
        if blind {
            lock(&self.blind).insert(node);
        }
        let wanted = lock(&self.restart_wanted).remove(&node);
        if failed {
            self.broadcast(EventKind::NodeFailed, node, incarnation);
            if wanted {
                self.broadcast(EventKind::RestartRequested, node, incarnation);
            }
        }
        for &orphan in &orphaned {
            let inc = self.registry.status(orphan).map_or(0, |s| s.incarnation);
            self.broadcast(EventKind::NodeFailed, orphan, inc);
        }
        self.persist();
        drop(member_guard);
        self.notify(report.woken);
        if failed {
            tracing::warn!(node, retained = report.retained.len(), blind, "node declared failed");
        }
    }

    /// Writes the durable record. A coordinator that cannot record a
    /// failure cannot promise retained locks survive it: it stops.
    fn persist(&self) {
        let mut store = lock(&self.persist_lock);
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let state = CoordinatorState {
            registry: self.registry.snapshot(),
            retained: self.table.export_retained(),
            blind: lock(&self.blind).iter().copied().collect(),
        };
        if let Err(e) = store.store(&state) {
            eprintln!("fatal: the coordinator cannot write its durable record: {e}");
            std::process::exit(70);
        }
    }

    fn tick_loop(&self) {
        let mut n: u64 = 0;
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(TICK);
            n = n.wrapping_add(1);
            let now = Instant::now();
            self.expire_sessions(now);
            self.expire_waits(now);
            if n.is_multiple_of(DEADLOCK_EVERY_TICKS) {
                self.break_deadlocks();
            }
            self.end_grace(now);
        }
    }

    fn expire_sessions(&self, now: Instant) {
        let timeout = Duration::from_millis(self.cfg.failure_timeout_ms as u64);
        let silent: Vec<(NodeId, Arc<Session>)> = lock(&self.sessions)
            .iter()
            .filter(|(_, s)| s.silent(now, timeout))
            .map(|(n, s)| (*n, s.clone()))
            .collect();
        for (node, session) in silent {
            tracing::warn!(node, "no heartbeat within the failure timeout");
            session.conn.close();
            self.connection_lost(node, &session);
        }
    }

    fn expire_waits(&self, now: Instant) {
        let expired: Vec<Wait> = {
            let mut waits = lock(&self.waits);
            let ids: Vec<u64> = waits
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| waits.remove(&id)).collect()
        };
        for w in expired {
            let r = w.ticket.resource();
            self.withdraw(w, error_msg(ErrorCode::Timeout, 0, r, "lock wait timed out"));
        }
    }

    /// Withdraws a wait already taken out of `waits`: its request is
    /// cancelled and answered with `refusal` — unless a release granted it
    /// in the meantime, in which case `notify` found no wait to answer and
    /// the grant is answered here.
    fn withdraw(&self, w: Wait, refusal: Msg) {
        let out = self.table.cancel(w.ticket);
        if out.was_waiting {
            w.conn.send(w.request_id, &refusal);
        } else if let Some(mode) = self
            .table
            .locks_of(w.ticket.owner())
            .iter()
            .find(|(r, _)| *r == w.ticket.resource())
            .map(|(_, m)| *m)
        {
            w.conn.send(w.request_id, &Msg::Granted { mode });
        }
        self.notify(out.woken);
    }

    fn break_deadlocks(&self) {
        // Each pass breaks one cycle; a few passes per tick clear more.
        for _ in 0..8 {
            let Some(d) = self.table.find_deadlock() else { return };
            tracing::info!(victim = ?d.victim, cycle = d.cycle.len(), "deadlock; aborting the youngest");
            for t in d.victim_tickets {
                // No entry: `notify` answered a grant, or the wait expired
                // and `expire_waits` withdrew it.
                let wait = lock(&self.waits).remove(&t.id());
                if let Some(w) = wait {
                    self.withdraw(w, error_msg(ErrorCode::Deadlock, 0, t.resource(), "deadlock victim"));
                }
            }
        }
    }

    fn end_grace(&self, now: Instant) {
        // Held until the late nodes are failed. `lock_gate` lets lock
        // requests through once the awaited set is empty; were it emptied
        // first and the late nodes made blind after, a request in between
        // would be granted over their unknown locks. Requests and admissions
        // that need this lock wait for the failures (a record write each)
        // instead; no path takes it while holding a lock `fail_node` takes.
        let mut awaiting = lock(&self.awaiting);
        match awaiting.1 {
            Some(deadline) if now >= deadline => awaiting.1 = None,
            _ => return,
        }
        let late = std::mem::take(&mut awaiting.0);
        for node in late {
            // A node that rejoined but never re-asserted is treated like one
            // that stayed away: its locks are unknown.
            if let Some(s) = lock(&self.sessions).remove(&node) {
                s.conn.close();
            }
            let inc = self.registry.status(node).map_or(0, |s| s.incarnation);
            tracing::warn!(
                node,
                "did not come back after the coordinator restarted; its locks are unknown"
            );
            self.member_gone(node, inc, Gone::Failed { blind: true });
        }
    }
}

/// Retained locks as the durable record has them (for tools and tests).
pub fn retained_in_record(io: &Io, dir: &std::path::Path) -> Result<Vec<RetainedLock>, PersistError> {
    Ok(persist::load(io, dir)?.map(|s| s.retained).unwrap_or_default())
}
