//! A running coordinator ([`Coordinator`]): starting it from its durable
//! record, the listeners that accept connections, and stopping it.
//!
//! This file owns the coordinator's threads and its endpoints. It must
//! never handle a connection or a request itself: each accepted connection
//! goes to its own thread (`connection`), and the ticker runs the timers
//! (`ticker`).

use std::collections::{BTreeSet, HashMap};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{CoordinatorConfig, CoordinatorError};
use super::state::Shared;
use crate::election::Leadership;
use crate::membership::Liveness;
use crate::persist::PersistError;
use crate::registry::Registry;
use crate::sync::lock_std;
use crate::table::LockTable;
use crate::transport::{Endpoint, Stream};

/// A running coordinator.
pub struct Coordinator {
    pub(super) shared: Arc<Shared>,
    addrs: Vec<Endpoint>,
    threads: Vec<JoinHandle<()>>,
    /// Held while the coordinator runs; let go once its threads are
    /// stopped, so a standby never reads a record this one still writes.
    leadership: Option<Leadership>,
}

impl Coordinator {
    /// Takes leadership of the cluster (waiting for it, as a standby; see
    /// [`crate::election`]), loads the durable record, binds every endpoint
    /// and starts serving.
    pub fn start(cfg: CoordinatorConfig) -> Result<Coordinator, CoordinatorError> {
        if cfg.heartbeat_ms == 0 || cfg.lease_ms <= cfg.heartbeat_ms || cfg.failure_timeout_ms <= cfg.lease_ms {
            return Err(CoordinatorError::Config(
                "need 0 < heartbeat_ms < lease_ms < failure_timeout_ms".into(),
            ));
        }
        // The record is the coordinator's alone: a directory made for it is
        // 0700.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&cfg.state_dir)
            .map_err(|e| PersistError::Io(wal::io::IoError::new(wal::io::OpKind::Open, &cfg.state_dir, None, e)))?;
        // Nothing of the record is read before this coordinator leads.
        let endpoints: Vec<String> = cfg.listen.iter().map(ToString::to_string).collect();
        let leadership = cfg.election.lead(&cfg.state_dir, &endpoints.join(","), cfg.standby)?;
        let (store, restored) = leadership.open_store(&cfg.io, &cfg.state_dir)?;
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
            restart_wanted: Mutex::new(restored.iter().flat_map(|s| s.restarts.iter().copied()).collect()),
            awaiting: Mutex::new((awaiting, grace)),
            persist_lock: Mutex::new(store),
            member_changes: Mutex::new(()),
            // Not in the durable record: after a restart every value is
            // unknown (see `values`).
            values: Default::default(),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
        });
        shared.persist();
        shared.fail_departed();
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
        Ok(Coordinator {
            shared,
            addrs,
            threads,
            leadership: Some(leadership),
        })
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
        drop(lock_std(&self.shared.persist_lock));
        for ep in &self.addrs {
            // Wake the blocking accept.
            let _ = Stream::connect(ep, Duration::from_millis(100));
        }
        for s in lock_std(&self.shared.sessions).values() {
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
        self.leadership = None;
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
