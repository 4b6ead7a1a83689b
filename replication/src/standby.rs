//! The standby's side: connect to the primary, prove this copy's database
//! and the replication secret (and check the primary's proof), ask for the
//! stream from the commit after the last one held durably, keep what
//! arrives durable, acknowledge it, and apply it in commit order
//! (`crate::store`).
//!
//! A frame whose payload fails its checksum (or a redo record that fails
//! its own) is asked for again (`Resend`); one whose header fails ends the
//! connection, and the standby reconnects and resumes from its durable
//! position. A refusal, a wrong secret, or a failure of the standby's own
//! files stops it with a typed error; a lost connection is retried.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use understudy::redo::{decode, RedoRecord};

use crate::auth::{self, ReplicationSecret, Role};
use crate::error::{Refusal, ReplicationError, Result};
use crate::frame::{read_frame, write_frame, Read1, HEADER_LEN};
use crate::message::Msg;
use crate::store::StandbyStore;

/// Records kept durable and applied together at most.
const BATCH_RECORDS: usize = 256;
/// How long to wait before connecting again.
const RECONNECT_AFTER: Duration = Duration::from_millis(200);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a standby runs.
#[derive(Clone, Debug)]
pub struct StandbyConfig {
    /// The standby's copy (seeded with [`crate::seed`]).
    pub cluster_dir: PathBuf,
    /// The primary's replication address.
    pub primary: SocketAddr,
    /// The replication secret.
    pub secret: ReplicationSecret,
    /// This standby's id, for the primary's report.
    pub standby_id: u64,
}

/// What a standby reports.
#[derive(Clone, Debug, Default)]
pub struct StandbyStatus {
    /// Connected to the primary now.
    pub connected: bool,
    /// The commit the seeded copy held.
    pub base: u64,
    /// The last commit held durably.
    pub durable: u64,
    /// The last commit applied to the data files.
    pub applied: u64,
    /// The primary's committed watermark as last heard.
    pub primary_committed: u64,
    /// Frames asked for again after a failed checksum.
    pub resends: u64,
    /// Connections made.
    pub connections: u64,
    /// Why the last connection ended.
    pub last_error: Option<String>,
}

impl StandbyStatus {
    /// Commits the primary had that this standby has not applied.
    pub fn lag(&self) -> u64 {
        self.primary_committed.saturating_sub(self.applied)
    }
}

/// Shared with whoever watches the standby: its status, and a way to stop.
#[derive(Default)]
pub struct StandbyHandle {
    /// The latest status.
    pub status: Mutex<StandbyStatus>,
    stop: AtomicBool,
    stream: Mutex<Option<TcpStream>>,
}

impl StandbyHandle {
    /// Asks the standby to stop: its connection is shut, and [`run`]
    /// returns once what it received is durable and applied.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = lock(&self.stream).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn update(&self, f: impl FnOnce(&mut StandbyStatus)) {
        f(&mut lock(&self.status));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the standby until [`StandbyHandle::stop`], or a failure that
/// connecting again cannot cure.
pub fn run(cfg: &StandbyConfig, handle: &Arc<StandbyHandle>) -> Result<()> {
    let database = auth::read_database_id(&cfg.cluster_dir)?;
    let mut store = StandbyStore::open(&cfg.cluster_dir)?;
    handle.update(|s| {
        s.base = store.base();
        s.durable = store.durable();
        s.applied = store.applied();
    });
    while !handle.stopped() {
        let ended = session(cfg, handle, &database, &mut store);
        handle.update(|s| s.connected = false);
        match ended {
            Ok(()) => {}
            Err(e @ (ReplicationError::Refused { .. } | ReplicationError::WrongSecret)) => return Err(e),
            Err(
                e
                @ (ReplicationError::Io(_) | ReplicationError::Corrupt { .. } | ReplicationError::MissingTable { .. }),
            ) => return Err(e),
            Err(e) => {
                tracing::info!(error = %e, "the connection to the primary ended; connecting again");
                handle.update(|s| s.last_error = Some(e.to_string()));
            }
        }
        if !handle.stopped() {
            std::thread::sleep(RECONNECT_AFTER);
        }
    }
    Ok(())
}

fn session(cfg: &StandbyConfig, handle: &StandbyHandle, database: &[u8; 16], store: &mut StandbyStore) -> Result<()> {
    let stream = TcpStream::connect_timeout(&cfg.primary, CONNECT_TIMEOUT)
        .map_err(|e| ReplicationError::net(format!("connecting to {}", cfg.primary), e))?;
    let _ = stream.set_nodelay(true);
    *lock(&handle.stream) = stream.try_clone().ok();
    if handle.stopped() {
        return Ok(());
    }
    let mut r = BufReader::with_capacity(
        1 << 20,
        stream.try_clone().map_err(|e| ReplicationError::net("cloning", e))?,
    );
    let mut w = BufWriter::new(stream);
    let nonce = auth::nonce();
    write_frame(
        &mut w,
        &Msg::Hello {
            database: *database,
            standby: cfg.standby_id,
            nonce,
        },
    )?;
    w.flush().map_err(|e| ReplicationError::net("sending hello", e))?;
    let (their_nonce, proof) = match next(&mut r)? {
        Msg::Challenge { nonce, proof } => (nonce, proof),
        Msg::Refused { code, detail } => return Err(refused(code, &detail)),
        other => return Err(ReplicationError::Protocol(format!("expected Challenge, got {other:?}"))),
    };
    if !cfg.secret.verify(Role::Primary, &nonce, database, &proof) {
        return Err(ReplicationError::WrongSecret);
    }
    let mut expected = store.durable() + 1;
    write_frame(
        &mut w,
        &Msg::Proof {
            proof: cfg.secret.prove(Role::Standby, &their_nonce, database),
            from_seq: expected,
        },
    )?;
    w.flush().map_err(|e| ReplicationError::net("sending the proof", e))?;
    match next(&mut r)? {
        Msg::Welcome { committed, .. } => handle.update(|s| {
            s.connected = true;
            s.connections += 1;
            s.primary_committed = committed;
        }),
        Msg::Refused { code, detail } => return Err(refused(code, &detail)),
        other => return Err(ReplicationError::Protocol(format!("expected Welcome, got {other:?}"))),
    }
    tracing::info!(from = expected, "connected to the primary");
    // After a damaged frame: records are dropped until the one asked for
    // comes again.
    let mut resyncing = false;
    let mut batch: Vec<(RedoRecord, Vec<u8>)> = Vec::new();
    loop {
        let read = read_frame(&mut r);
        let got = match read {
            Ok(Read1::Msg(Msg::Redo { record })) => match decode(&record) {
                Ok((rec, _)) => Some((rec, record)),
                Err(_) => None,
            },
            Ok(Read1::Msg(Msg::Tip { committed })) => {
                handle.update(|s| s.primary_committed = s.primary_committed.max(committed));
                flush(store, handle, &mut w, &mut batch)?;
                continue;
            }
            Ok(Read1::Msg(other)) => {
                return Err(ReplicationError::Protocol(format!("unexpected {other:?}")));
            }
            Ok(Read1::Damaged(_)) => None,
            Ok(Read1::End) | Err(_) => {
                // What arrived whole is kept before the connection goes.
                flush(store, handle, &mut w, &mut batch).ok();
                return match read {
                    Err(e) => Err(e),
                    _ => Err(ReplicationError::Protocol("the primary closed the connection".into())),
                };
            }
        };
        match got {
            Some((rec, raw)) if rec.seq == expected => {
                resyncing = false;
                handle.update(|s| s.primary_committed = s.primary_committed.max(rec.seq));
                expected += 1;
                batch.push((rec, raw));
            }
            // Sent before the primary heard the request to send again.
            Some((rec, _)) if rec.seq < expected || resyncing => {}
            // A gap, or a damaged frame: ask again from the first missing.
            _ => {
                flush(store, handle, &mut w, &mut batch)?;
                resyncing = true;
                handle.update(|s| s.resends += 1);
                tracing::warn!(from = expected, "a damaged frame: asking for the stream again");
                write_frame(&mut w, &Msg::Resend { from_seq: expected })?;
                w.flush().map_err(|e| ReplicationError::net("asking to resend", e))?;
            }
        }
        // Nothing more buffered: keep and apply what came, then say so.
        if batch.len() >= BATCH_RECORDS || r.buffer().len() < HEADER_LEN {
            flush(store, handle, &mut w, &mut batch)?;
        }
        if handle.stopped() {
            return flush(store, handle, &mut w, &mut batch);
        }
    }
}

/// Makes `batch` durable, acknowledges it, applies it, acknowledges that.
fn flush(
    store: &mut StandbyStore,
    handle: &StandbyHandle,
    w: &mut BufWriter<TcpStream>,
    batch: &mut Vec<(RedoRecord, Vec<u8>)>,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    store.append(batch)?;
    // Durable: the primary may count it (sync mode) before it is applied.
    let ack = |store: &StandbyStore, w: &mut BufWriter<TcpStream>| {
        let _ = write_frame(
            w,
            &Msg::Ack {
                durable: store.durable(),
                applied: store.applied(),
            },
        )
        .and_then(|()| w.flush().map_err(|e| ReplicationError::net("acknowledging", e)));
    };
    ack(store, w);
    let records: Vec<RedoRecord> = batch.drain(..).map(|(r, _)| r).collect();
    store.apply(&records)?;
    ack(store, w);
    handle.update(|s| {
        s.durable = store.durable();
        s.applied = store.applied();
    });
    Ok(())
}

fn next(r: &mut impl BufRead) -> Result<Msg> {
    match read_frame(r)? {
        Read1::Msg(m) => Ok(m),
        Read1::Damaged(e) => Err(e.into()),
        Read1::End => Err(ReplicationError::Protocol("the primary closed the connection".into())),
    }
}

fn refused(code: u8, detail: &[u8]) -> ReplicationError {
    ReplicationError::Refused {
        refusal: Refusal::from_code(code),
        detail: String::from_utf8_lossy(detail).into_owned(),
    }
}
