//! Connecting: the handshake over a socket (`Hello`, the proof of the
//! cluster secret, the `Welcome`) or the admission by a coordinator in this
//! process, then the start of the reader and heartbeat threads; what the
//! admission told the node; and the connection's end.
//!
//! This file owns a client's life from connect to drop. It must never send
//! a request before the `Welcome`, nor leave a thread running once the
//! client is dropped.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::ClientConfig;
use super::error::{refusal, ClientError};
use super::events::{ClientEvent, Events};
use super::held::Held;
use super::link::{Link, Socket};
use super::reader::LocalClient;
use super::state::{Client, Inner};
use crate::ids::NodeId;
use crate::server::Coordinator;
use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, Msg, Purpose};

/// What admission told the client.
pub(super) struct Welcome {
    pub(super) incarnation: u64,
    pub(super) lease_ms: u32,
    pub(super) heartbeat_ms: u32,
    /// The coordinator's word that this incarnation may open its own log.
    pub(super) log_proof: [u8; 32],
    /// When the admission was asked for: the lease's first start.
    pub(super) sent_at: Instant,
}

impl Client {
    /// Connects, authenticates and joins for `cfg.purpose`.
    pub fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        let (stream, welcome) = handshake(&cfg, cfg.purpose, cfg.incarnation, cfg.connect_timeout)?;
        let reader = stream.try_clone().map_err(|e| connect_error(&cfg, e))?;
        Ok(Client::start(
            &cfg,
            Link::Socket(Socket::new(stream)),
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
            .connect_local(cfg.node, cfg.purpose, cfg.incarnation, cfg.launches_restarts)
            .map_err(|m| match refusal(m) {
                Err(e) => e,
                Ok(other) => ClientError::Protocol(format!("expected a refusal, got {other:?}")),
            })?;
        let welcome = welcome(refusal(answer)?, sent_at)?;
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
        // Only a member over a socket rides through: a coordinator in this
        // process dies with it, and an operator's connection is short.
        let rides = cfg.ride_through && reader.is_some() && cfg.purpose != Purpose::Operator;
        // A node in the coordinator's own process may hold no lease: it
        // pauses and dies with the coordinator (see `LocalLink::leased`).
        // Its lease then never ends, and it sends no heartbeats.
        let leased = match &link {
            Link::Local(l) => l.leased(),
            Link::Socket(..) => true,
        };
        let inner = Arc::new(Inner {
            node: cfg.node,
            link,
            pending: Mutex::new(HashMap::new()),
            held: Held::default(),
            next_id: AtomicU64::new(3),
            events: Events(Mutex::new(Some(ev_tx))),
            lease_until_us: AtomicU64::new(if leased { 0 } else { u64::MAX }),
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
            rejoin: rides.then(|| (cfg.clone(), welcome.incarnation)),
            // A restarting node holds reclaimed locks the ledger does not
            // know until its `RestartFinished`.
            ride_through: AtomicBool::new(rides && cfg.purpose != Purpose::Restart),
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
        if cfg.purpose != Purpose::Operator && leased {
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
            log_proof: welcome.log_proof,
            events_rx: Mutex::new(Some(ev_rx)),
            threads,
        }
    }

    /// The node this client speaks for.
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// The incarnation the coordinator gave this node.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The coordinator's word that this incarnation of the node may open its
    /// own log for writing ([`wal::access`]).
    pub fn log_access(&self) -> wal::AccessProof {
        wal::AccessProof {
            role: wal::Role::Owner,
            holder: self.inner.node,
            incarnation: self.incarnation,
            token: 0,
            mac: self.log_proof,
        }
    }

    /// How long a lease lasts after the heartbeat that renewed it, in
    /// milliseconds, as the coordinator said on admission.
    pub fn lease_ms(&self) -> u32 {
        self.lease_ms
    }

    /// How often the client sends heartbeats, in milliseconds, as the
    /// coordinator said on admission.
    pub fn heartbeat_ms(&self) -> u32 {
        self.heartbeat_ms
    }

    /// The pushed events; can be taken once.
    pub fn events(&self) -> Option<Receiver<ClientEvent>> {
        lock_std(&self.events_rx).take()
    }

    /// Drops the connection now, without leaving: the coordinator declares
    /// the node failed at once and retains its write locks. A node that has
    /// stopped writing after a failure calls this so its recovery starts
    /// without waiting for the failure timeout.
    pub fn disconnect(&self) {
        self.inner.leaving.store(true, Ordering::Release);
        self.inner.closed.store(true, Ordering::Release);
        self.inner.link.shut();
    }
}

/// Connects to `cfg.endpoint` and is admitted as `cfg.node` for `purpose`
/// (as `incarnation`, for a rejoin), each step bounded by `timeout`: the
/// connection, ready for its reader, and what the `Welcome` said.
pub(super) fn handshake(
    cfg: &ClientConfig,
    purpose: Purpose,
    incarnation: u64,
    timeout: Duration,
) -> Result<(Stream, Welcome), ClientError> {
    let connect_err = |e: std::io::Error| connect_error(cfg, e);
    let mut stream = Stream::connect(&cfg.endpoint, timeout).map_err(connect_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect_err)?;
    let send = |s: &mut Stream, id: u64, m: &Msg| s.write_all(&wire::encode(id, m)).map_err(connect_err);
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
            purpose,
            incarnation,
            pid: std::process::id(),
            launches_restarts: cfg.launches_restarts,
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
    let welcome = welcome(refusal(read(&mut stream)?)?, sent_at)?;
    stream.set_read_timeout(None).map_err(connect_err)?;
    Ok((stream, welcome))
}

/// A connection that could not be made or set up, as the client reports it.
fn connect_error(cfg: &ClientConfig, e: std::io::Error) -> ClientError {
    ClientError::Connect {
        endpoint: cfg.endpoint.to_string(),
        message: e.to_string(),
    }
}

/// The admission's answer as what it told the client; `sent_at` is when it
/// was asked for.
fn welcome(answer: Msg, sent_at: Instant) -> Result<Welcome, ClientError> {
    match answer {
        Msg::Welcome {
            incarnation,
            lease_ms,
            heartbeat_ms,
            log_proof,
        } => Ok(Welcome {
            incarnation,
            lease_ms,
            heartbeat_ms,
            log_proof,
            sent_at,
        }),
        other => Err(ClientError::Protocol(format!("expected welcome, got {other:?}"))),
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.inner.leaving.store(true, Ordering::Release);
        self.inner.closed.store(true, Ordering::Release);
        self.inner.link.shut();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
