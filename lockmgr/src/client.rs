//! The node side of the coordinator connection: authentication, membership,
//! pipelined requests, pushed events, heartbeats and the lease.
//!
//! Any number of threads may call the client at once; each request carries
//! its own id and waits for its own reply while others are in flight.
//!
//! ## The lease, and why a cut-off node stops writing first
//! Every `heartbeat_ms` the client sends a heartbeat and notes the time `s`
//! on its own monotonic clock before sending. When the coordinator's reply
//! arrives, the lease is valid until `s + lease_ms` (the later of that and the
//! current expiry). [`Client::lease_valid`] is false from
//! `lease_ms - fence_margin_ms` after the last acknowledged send; the node
//! checks it before each write and stops writing (self-fencing) once it is
//! false. The connection dropping ends the lease at once.
//!
//! The coordinator declares the node failed when it has received nothing
//! for `failure_timeout_ms`, measured from the *receipt* `r ≥ s` of the last
//! heartbeat on the coordinator's clock. With both clocks' rates within a
//! relative drift `ρ` of real time, the node stops at real time at most
//! `s + (lease_ms − margin)(1 + ρ)`, and the coordinator declares failure no
//! earlier than `r + failure_timeout_ms (1 − ρ) ≥ s + failure_timeout_ms
//! (1 − ρ)`. So the node has stopped before anyone can be told it failed
//! whenever `(lease_ms − margin)(1 + ρ) < failure_timeout_ms (1 − ρ)`. The
//! defaults (lease 1000 ms, margin 100 ms, failure timeout 1500 ms) satisfy
//! this for any ρ below 20 %; real clock drift is below 0.01 %. A write
//! already submitted to the kernel when the lease lapses is the one thing
//! this cannot stop: peer recovery fences those by the kernel's word on the
//! same host, and by waiting out the lease otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::auth::Secret;
use crate::ids::{NodeId, ResourceId};
use crate::mode::LockMode;
use crate::server::{Coordinator, LocalLink, LocalPeer};
use crate::transport::{Endpoint, Stream};
use crate::wire::{self, ErrorCode, EventKind, HeldLock, MemberInfo, Msg, Outcome, Purpose};

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    pub node: NodeId,
    pub secret: Secret,
    pub purpose: Purpose,
    /// For `Rejoin`: the incarnation the node had.
    pub incarnation: u64,
    pub connect_timeout: Duration,
    /// How long before the lease lapses the node stops writing.
    pub fence_margin_ms: u32,
    /// Upper bound on waiting for any reply beyond a request's own wait.
    pub reply_timeout: Duration,
}

impl ClientConfig {
    pub fn new(endpoint: Endpoint, node: NodeId, secret: Secret) -> ClientConfig {
        ClientConfig {
            endpoint,
            node,
            secret,
            purpose: Purpose::Join,
            incarnation: 0,
            connect_timeout: Duration::from_secs(5),
            fence_margin_ms: 100,
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// Errors of coordinator requests.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The resource is locked by failed node `node` until it is recovered.
    #[error("{resource:?} is retained by failed node {node}")]
    Retained { node: NodeId, resource: ResourceId },
    #[error("{resource:?} is locked in a conflicting mode")]
    Conflict { resource: ResourceId },
    #[error("deadlock: this transaction was chosen as the victim")]
    Deadlock { resource: ResourceId },
    #[error("lock wait on {resource:?} timed out")]
    Timeout { resource: ResourceId },
    #[error("the coordinator restarted and is waiting for nodes to re-assert their locks; retry")]
    CoordinatorRecovering,
    #[error("authentication failed: wrong cluster secret")]
    AuthFailed,
    /// Refused by the registry or membership rules; `code` says which.
    #[error("refused ({code:?}, node {node}): {message}")]
    Refused {
        code: ErrorCode,
        node: NodeId,
        message: String,
    },
    #[error("the lease lapsed; this node must not write")]
    LeaseLost,
    #[error("disconnected from the coordinator")]
    Disconnected,
    #[error("cannot reach the coordinator at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    fn from_reply(code: ErrorCode, node: NodeId, resource: ResourceId, message: String) -> ClientError {
        match code {
            ErrorCode::Retained => ClientError::Retained { node, resource },
            ErrorCode::Conflict => ClientError::Conflict { resource },
            ErrorCode::Deadlock => ClientError::Deadlock { resource },
            ErrorCode::Timeout => ClientError::Timeout { resource },
            ErrorCode::CoordinatorRecovering => ClientError::CoordinatorRecovering,
            ErrorCode::AuthFailed => ClientError::AuthFailed,
            code => ClientError::Refused { code, node, message },
        }
    }
}

/// What the coordinator (or the connection) tells the node unasked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Coordinator {
        kind: EventKind,
        node: NodeId,
        incarnation: u64,
    },
    /// The lease is about to lapse or has: stop writing.
    LeaseLost,
    /// The connection to the coordinator is gone.
    Disconnected,
}

/// A registration as counterpart of a failed node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterpartGrant {
    pub failed: NodeId,
    /// The failed node's incarnation that died.
    pub incarnation: u64,
    pub token: u64,
}

/// How requests reach the coordinator.
enum Link {
    Socket(Mutex<Stream>),
    /// The coordinator runs in this process (see [`crate::server::LocalLink`]).
    Local(LocalLink),
}

struct Inner {
    node: NodeId,
    link: Link,
    pending: Mutex<HashMap<u64, Sender<Msg>>>,
    next_id: AtomicU64,
    events: Mutex<Option<Sender<ClientEvent>>>,
    /// Lease expiry, as an offset from `epoch`, in microseconds; 0 = none.
    lease_until_us: AtomicU64,
    epoch: Instant,
    lease_lost: AtomicBool,
    closed: AtomicBool,
    /// The node asked to leave: the end of the connection is expected.
    leaving: AtomicBool,
    reply_timeout: Duration,
    /// Heartbeats sent and not yet answered, with when they were sent: a
    /// reply extends the lease from its own heartbeat's send time, however
    /// late it arrives.
    heartbeats: Mutex<HashMap<u64, Instant>>,
    lease_ms: u32,
    fence_margin_ms: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a lock request does when it cannot be granted at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockWait {
    /// Fail at once with `Conflict` or `Retained`.
    #[default]
    NoWait,
    /// Wait up to this long behind any holder, live or retained.
    Wait(Duration),
    /// Wait up to this long behind live holders only: a failed node's
    /// retained lock in the way refuses with `Retained` at once, or as soon
    /// as a holder in the way fails. What a transaction wants: recovery can
    /// take longer than a transaction should sit holding its own locks.
    WaitForLive(Duration),
}

impl From<Option<Duration>> for LockWait {
    fn from(wait: Option<Duration>) -> LockWait {
        wait.map_or(LockWait::NoWait, LockWait::Wait)
    }
}

impl LockWait {
    fn patience(self) -> Duration {
        match self {
            LockWait::NoWait => Duration::ZERO,
            LockWait::Wait(d) | LockWait::WaitForLive(d) => d,
        }
    }

    fn request(self, txn: u64, resource: ResourceId, mode: LockMode) -> Msg {
        // 0 on the wire means "no wait", so a zero wait is rounded up.
        let wait_ms = match self {
            LockWait::NoWait => 0,
            LockWait::Wait(d) | LockWait::WaitForLive(d) => d.as_millis().clamp(1, u32::MAX as u128) as u32,
        };
        Msg::Lock {
            txn,
            resource,
            mode,
            wait_ms,
            live_only: matches!(self, LockWait::WaitForLive(_)),
        }
    }
}

/// What admission told the client.
struct Welcome {
    incarnation: u64,
    lease_ms: u32,
    heartbeat_ms: u32,
    /// When the admission was asked for: the lease's first start.
    sent_at: Instant,
}

/// Hands what an in-process coordinator sends to the client; weak, so the
/// coordinator's side does not keep a dropped client alive.
struct LocalClient(std::sync::Weak<Inner>);

impl LocalPeer for LocalClient {
    fn deliver(&self, request_id: u64, msg: Msg) {
        if let Some(inner) = self.0.upgrade() {
            inner.dispatch(request_id, msg);
        }
    }

    fn closed(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.connection_closed();
        }
    }
}

/// A node's connection to the coordinator. Dropping it closes the
/// connection (which the coordinator takes as a failure unless the node
/// called [`Client::leave`]).
pub struct Client {
    inner: Arc<Inner>,
    incarnation: u64,
    lease_ms: u32,
    heartbeat_ms: u32,
    events_rx: Mutex<Option<Receiver<ClientEvent>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Client {
    /// Connects, authenticates and joins for `cfg.purpose`.
    pub fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        let connect_err = |e: std::io::Error| ClientError::Connect {
            endpoint: cfg.endpoint.to_string(),
            message: e.to_string(),
        };
        let mut stream = Stream::connect(&cfg.endpoint, cfg.connect_timeout).map_err(connect_err)?;
        stream
            .set_read_timeout(Some(cfg.connect_timeout))
            .map_err(connect_err)?;
        let send = |s: &mut Stream, id: u64, m: &Msg| {
            use std::io::Write;
            s.write_all(&wire::encode(id, m)).map_err(connect_err)
        };
        // Events are only pushed to admitted nodes; one arriving during the
        // handshake is skipped rather than taken for the answer.
        let read = |s: &mut Stream| loop {
            match wire::read_frame(s) {
                Ok(Some((0, Msg::Event { .. }))) => continue,
                Ok(Some((_, m))) => return Ok(m),
                Ok(None) => return Err(ClientError::Disconnected),
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
        };
        send(
            &mut stream,
            1,
            &Msg::Hello {
                node: cfg.node,
                purpose: cfg.purpose,
                incarnation: cfg.incarnation,
                pid: std::process::id(),
            },
        )?;
        let nonce = match refusal(read(&mut stream)?)? {
            Msg::Challenge { nonce } => nonce,
            other => return Err(ClientError::Protocol(format!("expected a challenge, got {other:?}"))),
        };
        let sent_at = Instant::now();
        send(
            &mut stream,
            2,
            &Msg::AuthProof {
                mac: cfg.secret.prove(&nonce, cfg.node),
            },
        )?;
        let (incarnation, lease_ms, heartbeat_ms) = match refusal(read(&mut stream)?)? {
            Msg::Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms,
            } => (incarnation, lease_ms, heartbeat_ms),
            other => return Err(ClientError::Protocol(format!("expected welcome, got {other:?}"))),
        };
        stream.set_read_timeout(None).map_err(connect_err)?;
        let reader = stream.try_clone().map_err(connect_err)?;
        let welcome = Welcome {
            incarnation,
            lease_ms,
            heartbeat_ms,
            sent_at,
        };
        Ok(Client::start(
            &cfg,
            Link::Socket(Mutex::new(stream)),
            welcome,
            Some(reader),
        ))
    }

    /// Joins the coordinator `coordinator`, which runs in this process, for
    /// `cfg.purpose`: no socket, and requests are handled on the calling
    /// thread (see [`crate::server::LocalLink`]). `cfg.endpoint` and the
    /// secret are not used. Everything else behaves as [`Client::connect`].
    pub fn connect_local(coordinator: &Coordinator, cfg: ClientConfig) -> Result<Client, ClientError> {
        let sent_at = Instant::now();
        let (link, answer) = coordinator
            .connect_local(cfg.node, cfg.purpose, cfg.incarnation)
            .map_err(|m| match refusal(m) {
                Err(e) => e,
                Ok(other) => ClientError::Protocol(format!("expected a refusal, got {other:?}")),
            })?;
        let welcome = match refusal(answer)? {
            Msg::Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms,
            } => Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms,
                sent_at,
            },
            other => return Err(ClientError::Protocol(format!("expected welcome, got {other:?}"))),
        };
        let client = Client::start(&cfg, Link::Local(link), welcome, None);
        if let Link::Local(link) = &client.inner.link {
            link.attach(Arc::new(LocalClient(Arc::downgrade(&client.inner))));
        }
        Ok(client)
    }

    /// The client of an admitted connection: its reader (over a socket) and
    /// heartbeat threads started.
    fn start(cfg: &ClientConfig, link: Link, welcome: Welcome, reader: Option<Stream>) -> Client {
        let (ev_tx, ev_rx) = mpsc::channel();
        let epoch = Instant::now();
        let lease_ms = welcome.lease_ms;
        let inner = Arc::new(Inner {
            node: cfg.node,
            link,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(3),
            events: Mutex::new(Some(ev_tx)),
            lease_until_us: AtomicU64::new(0),
            epoch,
            lease_lost: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            reply_timeout: cfg.reply_timeout,
            heartbeats: Mutex::new(HashMap::new()),
            lease_ms,
            // A margin larger than a quarter of the lease would leave the
            // node too little time to write; short test leases need this.
            fence_margin_ms: cfg.fence_margin_ms.min(lease_ms / 4),
        });
        // Being admitted counts as a first heartbeat.
        inner.extend_lease(welcome.sent_at);
        let mut threads = Vec::new();
        if let Some(reader) = reader {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("coord-client-{}", cfg.node))
                    .spawn(move || inner.read_loop(reader))
                    .expect("spawn the client reader"),
            );
        }
        if cfg.purpose != Purpose::Operator {
            let inner = inner.clone();
            let heartbeat_ms = welcome.heartbeat_ms;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("coord-heartbeat-{}", cfg.node))
                    .spawn(move || inner.heartbeat_loop(heartbeat_ms))
                    .expect("spawn the heartbeat thread"),
            );
        }
        Client {
            inner,
            incarnation: welcome.incarnation,
            lease_ms,
            heartbeat_ms: welcome.heartbeat_ms,
            events_rx: Mutex::new(Some(ev_rx)),
            threads,
        }
    }

    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// The incarnation the coordinator gave this node.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn lease_ms(&self) -> u32 {
        self.lease_ms
    }

    pub fn heartbeat_ms(&self) -> u32 {
        self.heartbeat_ms
    }

    /// The pushed events; can be taken once.
    pub fn events(&self) -> Option<Receiver<ClientEvent>> {
        lock(&self.events_rx).take()
    }

    /// Whether the node may still write (see the module docs).
    pub fn lease_valid(&self) -> bool {
        self.inner.lease_valid()
    }

    /// `Ok` while the lease holds; the node checks this before writing.
    pub fn check_lease(&self) -> Result<(), ClientError> {
        if self.lease_valid() {
            Ok(())
        } else {
            Err(ClientError::LeaseLost)
        }
    }

    /// Locks `resource` for `txn`. `wait` is a [`LockWait`]; `None` fails at
    /// once on a conflict and `Some(d)` waits up to `d` behind any holder.
    pub fn lock(
        &self,
        txn: u64,
        resource: ResourceId,
        mode: LockMode,
        wait: impl Into<LockWait>,
    ) -> Result<LockMode, ClientError> {
        let wait = wait.into();
        match self.inner.call(&wait.request(txn, resource, mode), wait.patience())? {
            Msg::Granted { mode } => Ok(mode),
            other => Err(unexpected(other)),
        }
    }

    /// Several locks for `txn` requested at once (pipelined: one round trip
    /// for all). Returns the first refusal; the locks granted before or
    /// beside it stay held, as any lock of a transaction does until release.
    pub fn lock_many(
        &self,
        txn: u64,
        requests: &[(ResourceId, LockMode)],
        wait: impl Into<LockWait>,
    ) -> Result<Vec<LockMode>, ClientError> {
        let wait = wait.into();
        let msgs: Vec<Msg> = requests
            .iter()
            .map(|&(resource, mode)| wait.request(txn, resource, mode))
            .collect();
        let pending = self.inner.send_many(&msgs)?;
        let mut out = Vec::with_capacity(requests.len());
        let mut first_err = None;
        for p in pending {
            match self.inner.receive(p, wait.patience()) {
                Ok(Msg::Granted { mode }) => out.push(mode),
                Ok(other) => {
                    first_err.get_or_insert(unexpected(other));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            None => Ok(out),
            Some(e) => Err(e),
        }
    }

    pub fn release(&self, txn: u64, resource: ResourceId) -> Result<(), ClientError> {
        self.expect_ok(&Msg::Release { txn, resource })
    }

    /// Releases every lock of `txn` in one request.
    pub fn release_all(&self, txn: u64) -> Result<(), ClientError> {
        self.expect_ok(&Msg::ReleaseAll { txn })
    }

    /// Sends the release of every lock of `txn` and asks for no reply
    /// (request id 0, see [`crate::wire`]). The coordinator handles a
    /// connection's requests in order, so any later request of this node
    /// sees the locks released.
    pub fn release_all_nowait(&self, txn: u64) -> Result<(), ClientError> {
        self.release_many_nowait(&[txn])
    }

    /// [`Client::release_all_nowait`] for several transactions, in one write.
    pub fn release_many_nowait(&self, txns: &[u64]) -> Result<(), ClientError> {
        let msgs: Vec<Msg> = txns.iter().map(|&txn| Msg::ReleaseAll { txn }).collect();
        self.inner.send_unanswered(&msgs)
    }

    /// Asks to become the counterpart of failed node `failed`.
    pub fn register_counterpart(&self, failed: NodeId) -> Result<CounterpartGrant, ClientError> {
        match self.inner.call(&Msg::RegisterCounterpart { failed }, Duration::ZERO)? {
            Msg::CounterpartGrant {
                failed,
                incarnation,
                token,
            } => Ok(CounterpartGrant {
                failed,
                incarnation,
                token,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a registration: `Recovered` releases the retained locks.
    pub fn unregister_counterpart(&self, grant: &CounterpartGrant, outcome: Outcome) -> Result<(), ClientError> {
        self.expect_ok(&Msg::UnregisterCounterpart {
            failed: grant.failed,
            token: grant.token,
            outcome,
        })
    }

    /// Files a restart request for `node`: live members hear of it (a
    /// `RestartRequested` event) now if it has failed, else when it fails.
    pub fn request_restart(&self, node: NodeId) -> Result<(), ClientError> {
        self.expect_ok(&Msg::RequestRestart { node })
    }

    /// A restarting node has backed out its own work: release the locks it
    /// took back.
    pub fn restart_finished(&self) -> Result<(), ClientError> {
        self.expect_ok(&Msg::RestartFinished)
    }

    /// Re-asserts locks after a coordinator restart (purpose `Rejoin`).
    pub fn reassert(&self, locks: Vec<HeldLock>) -> Result<(), ClientError> {
        self.expect_ok(&Msg::Reassert { locks })
    }

    /// Every member and its state.
    pub fn status(&self) -> Result<Vec<MemberInfo>, ClientError> {
        match self.inner.call(&Msg::Status, Duration::ZERO)? {
            Msg::StatusReply { members } => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// The retained locks of failed node `node`.
    pub fn retained(&self, node: NodeId) -> Result<Vec<(ResourceId, LockMode)>, ClientError> {
        match self.inner.call(&Msg::ListRetained { node }, Duration::ZERO)? {
            Msg::RetainedList { locks } => Ok(locks),
            other => Err(unexpected(other)),
        }
    }

    /// Leaves the cluster cleanly (every lock released first): the node is
    /// not treated as failed. The connection then ends; that is no lost
    /// lease.
    pub fn leave(&self) -> Result<(), ClientError> {
        self.inner.leaving.store(true, Ordering::Release);
        self.expect_ok(&Msg::Leave)
    }

    /// Drops the connection now, without leaving: the coordinator declares
    /// the node failed at once and retains its write locks. A node that has
    /// stopped writing after a failure calls this so its recovery starts
    /// without waiting for the failure timeout.
    pub fn disconnect(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.shut();
    }

    fn expect_ok(&self, m: &Msg) -> Result<(), ClientError> {
        match self.inner.call(m, Duration::ZERO)? {
            Msg::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// An `Error` frame as the typed refusal it carries; any other reply as is.
fn refusal(m: Msg) -> Result<Msg, ClientError> {
    match m {
        Msg::Error {
            code,
            node,
            resource,
            message,
        } => Err(ClientError::from_reply(code, node, resource, message)),
        other => Ok(other),
    }
}

fn unexpected(m: Msg) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {m:?}"))
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.shut();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn extend_lease(&self, sent_at: Instant) {
        let until = sent_at.saturating_duration_since(self.epoch)
            + Duration::from_millis(self.lease_ms.saturating_sub(self.fence_margin_ms) as u64);
        self.lease_until_us
            .fetch_max(until.as_micros() as u64, Ordering::AcqRel);
    }

    fn lease_valid(&self) -> bool {
        !self.lease_lost.load(Ordering::Acquire)
            && !self.closed.load(Ordering::Acquire)
            && self.now_us() < self.lease_until_us.load(Ordering::Acquire)
    }

    fn emit(&self, e: ClientEvent) {
        if let Some(tx) = lock(&self.events).as_ref() {
            let _ = tx.send(e);
        }
    }

    fn lose_lease(&self) {
        if !self.lease_lost.swap(true, Ordering::AcqRel) && !self.leaving.load(Ordering::Acquire) {
            tracing::warn!(node = self.node, "lease lost; the node must stop writing");
            self.emit(ClientEvent::LeaseLost);
        }
    }

    /// Sends a request and waits for its reply (the request's own wait plus
    /// the reply timeout at most).
    fn call(&self, m: &Msg, wait: Duration) -> Result<Msg, ClientError> {
        let rx = self.send(m)?;
        self.receive(rx, wait)
    }

    /// Hands requests to the coordinator: over a socket in one write (the
    /// coordinator reads them together and answers them together), in
    /// this process one after the other on this thread.
    fn transmit(&self, frames: &[(u64, &Msg)]) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected);
        }
        match &self.link {
            Link::Socket(stream) => {
                let mut bytes = Vec::with_capacity(frames.len() * 64);
                for (id, m) in frames {
                    bytes.extend_from_slice(&wire::encode(*id, m));
                }
                use std::io::Write;
                lock(stream).write_all(&bytes).map_err(|_| ClientError::Disconnected)
            }
            Link::Local(link) => {
                for (id, m) in frames {
                    // `false`: the connection closed (after this request's
                    // answer, for a `Leave`); `connection_closed` has run.
                    if !link.request(*id, (*m).clone()) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Ends the connection from this side.
    fn shut(&self) {
        match &self.link {
            Link::Socket(stream) => lock(stream).shutdown(),
            Link::Local(link) => link.close(),
        }
    }

    /// Sends requests that want no reply (request id [`wire::NO_REPLY`]).
    fn send_unanswered(&self, msgs: &[Msg]) -> Result<(), ClientError> {
        let frames: Vec<(u64, &Msg)> = msgs.iter().map(|m| (wire::NO_REPLY, m)).collect();
        self.transmit(&frames)
    }

    /// Sends a request; its reply arrives on the returned channel.
    fn send(&self, m: &Msg) -> Result<(u64, Receiver<Msg>), ClientError> {
        let mut sent = self.send_many(std::slice::from_ref(m))?;
        Ok(sent.pop().expect("one request, one channel"))
    }

    /// Sends requests together ([`Inner::transmit`]); each reply arrives on
    /// its own channel.
    fn send_many(&self, msgs: &[Msg]) -> Result<Vec<(u64, Receiver<Msg>)>, ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected);
        }
        let first = self.next_id.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        let mut frames = Vec::with_capacity(msgs.len());
        let mut out = Vec::with_capacity(msgs.len());
        {
            let mut pending = lock(&self.pending);
            for (id, m) in (first..).zip(msgs) {
                frames.push((id, m));
                let (tx, rx) = mpsc::channel();
                pending.insert(id, tx);
                out.push((id, rx));
            }
        }
        let sent = self.transmit(&frames);
        // A connection that closed meanwhile may have cleared the pending
        // requests before these were added: drop them, so their waiters see
        // the end (after any answer already delivered) at once.
        if sent.is_err() || self.closed.load(Ordering::Acquire) {
            let mut pending = lock(&self.pending);
            for (id, _) in &out {
                pending.remove(id);
            }
        }
        sent.map(|()| out)
    }

    /// Waits for the reply of a request sent with [`Inner::send`].
    fn receive(&self, (id, rx): (u64, Receiver<Msg>), wait: Duration) -> Result<Msg, ClientError> {
        match rx.recv_timeout(wait + self.reply_timeout) {
            Ok(reply) => refusal(reply),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.pending).remove(&id);
                Err(ClientError::Protocol("no reply from the coordinator in time".into()))
            }
        }
    }

    fn read_loop(&self, reader: Stream) {
        // Replies the coordinator wrote together are read with one call.
        let mut reader = std::io::BufReader::with_capacity(wire::READ_BUFFER, reader);
        while let Ok(Some((id, msg))) = wire::read_frame(&mut reader) {
            self.dispatch(id, msg);
        }
        self.connection_closed();
    }

    /// A frame from the coordinator: an event, a heartbeat's answer, or the
    /// reply someone waits for (none for a request that wanted none).
    fn dispatch(&self, id: u64, msg: Msg) {
        match (id, msg) {
            (
                0,
                Msg::Event {
                    kind,
                    node,
                    incarnation,
                },
            ) => self.emit(ClientEvent::Coordinator {
                kind,
                node,
                incarnation,
            }),
            (id, msg) => {
                if let Some(sent_at) = lock(&self.heartbeats).remove(&id) {
                    if msg == Msg::Ok {
                        self.extend_lease(sent_at);
                    }
                } else if let Some(tx) = lock(&self.pending).remove(&id) {
                    let _ = tx.send(msg);
                }
            }
        }
    }

    /// The connection is gone: the lease with it.
    fn connection_closed(&self) {
        self.closed.store(true, Ordering::Release);
        // Waiters see their channel close and report Disconnected.
        lock(&self.pending).clear();
        self.lose_lease();
        self.emit(ClientEvent::Disconnected);
    }

    fn heartbeat_loop(&self, heartbeat_ms: u32) {
        let period = Duration::from_millis(heartbeat_ms as u64);
        let lease = Duration::from_millis(self.lease_ms as u64);
        let mut next = Instant::now();
        while !self.closed.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= next {
                next = now + period;
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                {
                    let mut hb = lock(&self.heartbeats);
                    // Heartbeats older than a lease can no longer extend it.
                    hb.retain(|_, sent| now.saturating_duration_since(*sent) < lease);
                    hb.insert(id, now);
                }
                if self.transmit(&[(id, &Msg::Heartbeat)]).is_err() {
                    break;
                }
            }
            if !self.lease_valid() {
                self.lose_lease();
            }
            // Short sleeps so a lapsing lease is noticed promptly.
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(5)),
            );
        }
    }
}
