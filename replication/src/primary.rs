//! The primary's side: a listener in the primary node's process that
//! admits standbys (database identity, then mutual proof with the
//! replication secret) and ships each one the node's committed redo in
//! commit order from the position it asks for; and, in sync mode, the
//! commit gate that holds a commit's acknowledgement until enough standbys
//! hold it durably.
//!
//! Only what the node's [`Watermark`] reports committed is shipped: a
//! record of a round whose pages are not yet durable may still be cut off
//! (`understudy::redo`). One thread per standby sends; another reads its
//! acknowledgements and its requests to send again. Nothing here writes
//! a file of the node's.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use understudy::redo::{redo_path, CommitGate, RedoReader, Watermark};
use wal::io::Io;

use crate::auth::{self, ReplicationSecret, Role};
use crate::error::{Refusal, ReplicationError, Result};
use crate::frame::{read_frame, write_frame, Read1};
use crate::message::Msg;

/// How long an idle sender waits for a commit before it sends a `Tip`.
const TIP_EVERY: Duration = Duration::from_millis(100);
/// How long a standby has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Records a sender writes before it flushes the socket.
const FLUSH_EVERY: usize = 64;

/// How a primary runs.
#[derive(Clone, Debug)]
pub struct PrimaryConfig {
    /// The primary site's cluster directory (one node).
    pub cluster_dir: PathBuf,
    /// Where standbys connect (port 0: the kernel picks one,
    /// [`Primary::local_addr`] says which).
    pub listen: SocketAddr,
    /// The replication secret.
    pub secret: ReplicationSecret,
    /// Sync mode: a commit is acknowledged once this many standbys hold it
    /// durably (0: async mode).
    pub sync_standbys: usize,
    /// In sync mode, how long a commit waits for them before it is
    /// reported [`understudy::Error::NotReplicated`].
    pub sync_timeout: Duration,
}

/// What the primary knows of one standby.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandbyView {
    /// The standby's id.
    pub standby: u64,
    /// Where it connected from.
    pub addr: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// The last commit it holds durably.
    pub durable: u64,
    /// The last commit it applied.
    pub applied: u64,
    /// Frames it asked for again.
    pub resends: u64,
}

/// The primary's report.
#[derive(Clone, Debug, Default)]
pub struct PrimaryStatus {
    /// The node's committed watermark.
    pub committed: u64,
    /// Standbys a commit waits for (0: async).
    pub sync_standbys: usize,
    /// Every standby seen, by id.
    pub standbys: Vec<StandbyView>,
    /// Standbys refused, and why (the last few).
    pub refused: Vec<String>,
}

struct Shared {
    cfg: PrimaryConfig,
    database: [u8; 16],
    watermark: Mutex<Option<Arc<Watermark>>>,
    standbys: Mutex<HashMap<u64, StandbyView>>,
    refused: Mutex<Vec<String>>,
    acked: Condvar,
    stop: AtomicBool,
}

/// See the module docs.
pub struct Primary {
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    addr: SocketAddr,
}

impl Primary {
    /// Binds the listener and reads (or creates) the site's database
    /// identity; ships nothing until [`Primary::serve`].
    pub fn new(cfg: PrimaryConfig) -> Result<Primary> {
        let database = auth::database_id_or_create(&cfg.cluster_dir)?;
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| ReplicationError::net(format!("listening on {}", cfg.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ReplicationError::net("the listener's address", e))?;
        Ok(Primary {
            shared: Arc::new(Shared {
                cfg,
                database,
                watermark: Mutex::new(None),
                standbys: Mutex::new(HashMap::new()),
                refused: Mutex::new(Vec::new()),
                acked: Condvar::new(),
                stop: AtomicBool::new(false),
            }),
            listener: Some(listener),
            addr,
        })
    }

    /// Where standbys connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The commit gate to open the node with (sync mode; in async mode it
    /// lets every commit through at once).
    pub fn gate(&self) -> understudy::Gate {
        understudy::Gate(Arc::new(SyncGate(self.shared.clone())))
    }

    /// Starts shipping the redo the node's `watermark` reports committed.
    pub fn serve(&mut self, watermark: Arc<Watermark>) -> Result<()> {
        *lock(&self.shared.watermark) = Some(watermark);
        let listener = self
            .listener
            .take()
            .ok_or_else(|| ReplicationError::Protocol("the primary serves already".into()))?;
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("repl-accept".into())
            .spawn(move || accept(&shared, &listener))
            .map_err(|e| ReplicationError::net("starting the listener thread", e))?;
        Ok(())
    }

    /// The primary's report.
    pub fn status(&self) -> PrimaryStatus {
        report(&self.shared)
    }

    /// The primary's report, for a thread of its own that outlives this
    /// handle's borrow.
    pub fn status_source(&self) -> impl Fn() -> PrimaryStatus + Send + 'static {
        let shared = self.shared.clone();
        move || report(&shared)
    }
}

fn report(shared: &Shared) -> PrimaryStatus {
    let committed = lock(&shared.watermark).as_ref().map_or(0, |w| w.committed());
    let mut standbys: Vec<StandbyView> = lock(&shared.standbys).values().cloned().collect();
    standbys.sort_by_key(|s| s.standby);
    PrimaryStatus {
        committed,
        sync_standbys: shared.cfg.sync_standbys,
        standbys,
        refused: lock(&shared.refused).clone(),
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wakes the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct SyncGate(Arc<Shared>);

impl CommitGate for SyncGate {
    fn replicated(&self, seq: u64) -> std::result::Result<(), String> {
        let s = &self.0;
        let need = s.cfg.sync_standbys;
        if need == 0 {
            return Ok(());
        }
        let deadline = Instant::now() + s.cfg.sync_timeout;
        let mut standbys = lock(&s.standbys);
        loop {
            let holding = standbys.values().filter(|v| v.durable >= seq).count();
            if holding >= need {
                return Ok(());
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(format!(
                    "{holding} of the {need} standbys it waits for hold it after {:?}",
                    s.cfg.sync_timeout
                ));
            };
            standbys = s
                .acked
                .wait_timeout(standbys, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn accept(shared: &Arc<Shared>, listener: &TcpListener) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = conn else { continue };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new().name("repl-send".into()).spawn(move || {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            if let Err(e) = session(&shared, stream, &peer) {
                tracing::info!(standby = %peer, error = %e, "a standby's session ended");
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread for a standby");
        }
    }
}

/// Refuses a standby: says why, and keeps the reason for the report.
fn refuse(shared: &Shared, w: &mut impl Write, peer: &str, refusal: Refusal, detail: &str) -> Result<()> {
    let msg = Msg::Refused {
        code: refusal as u8,
        detail: detail.as_bytes().to_vec(),
    };
    let _ = write_frame(w, &msg).and_then(|()| w.flush().map_err(|e| ReplicationError::net("refusing", e)));
    let mut r = lock(&shared.refused);
    r.push(format!("{peer}: {refusal:?}: {detail}"));
    let len = r.len();
    if len > 16 {
        r.drain(..len - 16);
    }
    Err(ReplicationError::Refused {
        refusal,
        detail: detail.into(),
    })
}

fn expect(r: &mut impl std::io::Read, what: &str) -> Result<Msg> {
    match read_frame(r)? {
        Read1::Msg(m) => Ok(m),
        Read1::Damaged(e) => Err(e.into()),
        Read1::End => Err(ReplicationError::Protocol(format!("the standby left before {what}"))),
    }
}

fn session(shared: &Arc<Shared>, stream: TcpStream, peer: &str) -> Result<()> {
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| ReplicationError::net("setting a timeout", e))?;
    let mut r = BufReader::new(
        stream
            .try_clone()
            .map_err(|e| ReplicationError::net("cloning a socket", e))?,
    );
    let mut w = BufWriter::new(
        stream
            .try_clone()
            .map_err(|e| ReplicationError::net("cloning a socket", e))?,
    );
    let Msg::Hello {
        database,
        standby,
        nonce: their_nonce,
    } = expect(&mut r, "its hello")?
    else {
        return Err(ReplicationError::Protocol("expected Hello".into()));
    };
    if database != shared.database {
        let detail = format!(
            "the standby's copy is of database {}, this primary's is {}",
            auth::id_hex(&database),
            auth::id_hex(&shared.database)
        );
        return refuse(shared, &mut w, peer, Refusal::OtherDatabase, &detail);
    }
    let secret = &shared.cfg.secret;
    let nonce = auth::nonce();
    let challenge = Msg::Challenge {
        nonce,
        proof: secret.prove(Role::Primary, &their_nonce, &shared.database),
    };
    write_frame(&mut w, &challenge)?;
    w.flush()
        .map_err(|e| ReplicationError::net("sending the challenge", e))?;
    let Msg::Proof { proof, from_seq } = expect(&mut r, "its proof")? else {
        return Err(ReplicationError::Protocol("expected Proof".into()));
    };
    if !secret.verify(Role::Standby, &nonce, &shared.database, &proof) {
        return refuse(shared, &mut w, peer, Refusal::WrongSecret, "");
    }
    let watermark = lock(&shared.watermark)
        .clone()
        .ok_or_else(|| ReplicationError::Protocol("not serving yet".into()))?;
    let committed = watermark.committed();
    if from_seq == 0 || from_seq > committed + 1 {
        let detail = format!("it asks for commit {from_seq}, the last committed here is {committed}");
        return refuse(shared, &mut w, peer, Refusal::AheadOfPrimary, &detail);
    }
    write_frame(
        &mut w,
        &Msg::Welcome {
            committed,
            sync: shared.cfg.sync_standbys > 0,
        },
    )?;
    w.flush().map_err(|e| ReplicationError::net("welcoming", e))?;
    stream
        .set_read_timeout(None)
        .map_err(|e| ReplicationError::net("clearing a timeout", e))?;
    {
        let mut views = lock(&shared.standbys);
        let v = views.entry(standby).or_default();
        v.standby = standby;
        v.addr = peer.to_string();
        v.connected = true;
        v.durable = v.durable.max(from_seq - 1);
    }
    tracing::info!(standby, %peer, from_seq, "a standby connected");
    let rewind = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let acks = {
        let (shared, rewind, done) = (shared.clone(), rewind.clone(), done.clone());
        std::thread::Builder::new()
            .name("repl-acks".into())
            .spawn(move || read_acks(&shared, r, standby, &rewind, &done))
            .map_err(|e| ReplicationError::net("starting the ack thread", e))?
    };
    let sent = send(shared, &mut w, &watermark, from_seq, &rewind, &done);
    done.store(true, Ordering::Release);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = acks.join();
    if let Some(v) = lock(&shared.standbys).get_mut(&standby) {
        v.connected = false;
    }
    shared.acked.notify_all();
    sent
}

/// Ships records from `from_seq` on as they are committed, until the
/// standby goes or the primary stops.
fn send(
    shared: &Shared,
    w: &mut BufWriter<TcpStream>,
    watermark: &Watermark,
    from_seq: u64,
    rewind: &AtomicU64,
    done: &AtomicBool,
) -> Result<()> {
    let node = understudy::Cluster::open(&shared.cfg.cluster_dir)?
        .nodes
        .first()
        .copied()
        .unwrap_or(1);
    let path = redo_path(&shared.cfg.cluster_dir, node);
    let io = Io::fallback();
    let open_at = |seq: u64| -> Result<RedoReader> {
        let mut r = RedoReader::open(io.clone(), &path, 0)?;
        if !r.skip_to(seq)? && seq <= watermark.committed() {
            return Err(ReplicationError::Corrupt {
                file: path.clone(),
                detail: format!("commit {seq} is reported committed but not found"),
            });
        }
        Ok(r)
    };
    let mut next = from_seq;
    let mut reader = open_at(next)?;
    let mut unflushed = 0;
    while !done.load(Ordering::Acquire) && !shared.stop.load(Ordering::Acquire) {
        let again = rewind.swap(0, Ordering::AcqRel);
        if again > 0 {
            w.flush().map_err(|e| ReplicationError::net("sending redo", e))?;
            next = again;
            reader = open_at(next)?;
        }
        let committed = watermark.committed();
        if next <= committed {
            let Some((rec, bytes)) = reader.next_raw()? else {
                return Err(ReplicationError::Corrupt {
                    file: path,
                    detail: format!("commit {next} is reported committed but not found"),
                });
            };
            if rec.seq != next {
                return Err(ReplicationError::Corrupt {
                    file: path,
                    detail: format!("holds commit {} where {next} should be", rec.seq),
                });
            }
            write_frame(w, &Msg::Redo { record: bytes })?;
            next += 1;
            unflushed += 1;
            if unflushed >= FLUSH_EVERY || next > committed {
                w.flush().map_err(|e| ReplicationError::net("sending redo", e))?;
                unflushed = 0;
            }
            continue;
        }
        if watermark.wait_beyond(committed, TIP_EVERY) == committed {
            write_frame(w, &Msg::Tip { committed })?;
            w.flush().map_err(|e| ReplicationError::net("sending a tip", e))?;
        }
    }
    Ok(())
}

fn read_acks(shared: &Shared, mut r: BufReader<TcpStream>, standby: u64, rewind: &AtomicU64, done: &AtomicBool) {
    loop {
        let msg = match read_frame(&mut r) {
            Ok(Read1::Msg(m)) => m,
            Ok(Read1::Damaged(_)) => continue,
            Ok(Read1::End) | Err(_) => break,
        };
        match msg {
            Msg::Ack { durable, applied } => {
                if let Some(v) = lock(&shared.standbys).get_mut(&standby) {
                    v.durable = v.durable.max(durable);
                    v.applied = v.applied.max(applied);
                }
                shared.acked.notify_all();
            }
            Msg::Resend { from_seq } if from_seq > 0 => {
                if let Some(v) = lock(&shared.standbys).get_mut(&standby) {
                    v.resends += 1;
                }
                rewind.store(from_seq, Ordering::Release);
            }
            _ => break,
        }
    }
    done.store(true, Ordering::Release);
}
