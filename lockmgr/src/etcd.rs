//! The coordinator on etcd, for clusters whose coordinators run on several
//! hosts (feature `etcd`): a lease-backed election picks the one that
//! serves, and the durable record lives in etcd, where a standby on
//! another host reads it when it takes over.
//!
//! ## Election
//! Each coordinator grants itself an etcd lease of `ttl_secs` and
//! campaigns (etcd's election service) under `<prefix>/leader` with its
//! endpoints as the value; etcd makes exactly one the leader, and a
//! campaign blocks until it is this one (a standby) — or a coordinator that
//! is not to stand by looks for a leader first and is refused
//! ([`ElectionError::Held`]) if there is one. The leader keeps its lease
//! alive every third of the TTL. etcd ends the lease `ttl_secs` after the
//! last keep-alive it received; the leader stops, for good, once
//! `ttl_secs` minus a quarter of it has passed since it *sent* the last
//! keep-alive etcd answered — earlier than etcd can end the lease, for
//! clocks whose rates differ by less than a quarter — so two coordinators
//! never serve at once. A coordinator cut off from etcd stops like one that
//! cannot write its record: the nodes ride through to the next leader.
//!
//! ## The record
//! `<prefix>/record` holds the durable record in the format of
//! [`crate::persist`]. It is written in a transaction that puts it only if
//! the leader key still has this leader's creation revision: a coordinator
//! that lost its leadership without knowing it yet cannot overwrite its
//! successor's record.
//!
//! The client library is asynchronous; this module runs it on a Tokio
//! runtime of its own, one thread, and blocks on it, so the coordinator
//! stays the plain-threads program it is.
//!
//! This file owns everything the coordinator asks of etcd. It must never
//! let a coordinator serve after the moment its lease may have ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, LeaderKey, ResignOptions, Txn, TxnOp};

use crate::error::ElectionError;
use crate::persist::{self, CoordinatorState, PersistError};
use crate::sync::lock_std;

/// Where a coordinator finds etcd and its keys.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// etcd's client URLs (`http://HOST:PORT`), at least one.
    pub endpoints: Vec<String>,
    /// The cluster's keys live under this prefix (`<prefix>/leader`,
    /// `<prefix>/record`); one per cluster.
    pub prefix: String,
    /// The leader's lease, in seconds (etcd's unit; at least 1): how long a
    /// standby waits after the leader's host died. 2 by default.
    pub ttl_secs: i64,
}

impl EtcdConfig {
    /// The cluster under `prefix` on etcd at `endpoints`, a 2 s lease.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            prefix: prefix.into(),
            ttl_secs: 2,
        }
    }

    fn election(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    fn record(&self) -> String {
        format!("{}/record", self.prefix)
    }
}

/// Leadership on etcd: the lease kept alive, the leader key, and the
/// record's key. Dropping it resigns and revokes the lease.
pub struct EtcdLeader {
    /// Bounds each request but a standby's campaign.
    ttl: Duration,
    rt: tokio::runtime::Runtime,
    client: Mutex<Client>,
    leader: LeaderKey,
    lease: i64,
    record: String,
    stop: Arc<AtomicBool>,
    keeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EtcdLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeader").field("lease", &self.lease).finish()
    }
}

fn election_err(e: impl std::fmt::Display) -> ElectionError {
    ElectionError::Failed(format!("etcd: {e}"))
}

fn remote(e: impl std::fmt::Display) -> PersistError {
    PersistError::Remote(format!("etcd: {e}"))
}

impl EtcdLeader {
    /// Becomes the leader announcing `value` (its endpoints): at once, or
    /// [`ElectionError::Held`] if another leads; with `standby`, waiting
    /// for as long as it does.
    pub fn lead(cfg: &EtcdConfig, value: &str, standby: bool) -> Result<EtcdLeader, ElectionError> {
        if cfg.endpoints.is_empty() || cfg.ttl_secs < 1 {
            return Err(election_err("it needs an endpoint and a lease of 1 s or more"));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(election_err)?;
        let ttl = Duration::from_secs(cfg.ttl_secs as u64);
        // No timeout for every request: a standby's campaign waits for as
        // long as the leader lives. The others are bounded one by one.
        let options = ConnectOptions::new().with_connect_timeout(ttl);
        let mut client = rt
            .block_on(bounded(ttl, Client::connect(&cfg.endpoints, Some(options))))
            .map_err(election_err)?;
        if !standby {
            // "no leader" is an error of etcd's; only a leader's key counts.
            if let Ok(r) = rt.block_on(bounded(ttl, client.leader(cfg.election()))) {
                if let Some(kv) = r.kv() {
                    return Err(ElectionError::Held {
                        place: format!("etcd:{}, leader at {}", cfg.prefix, String::from_utf8_lossy(kv.value())),
                    });
                }
            }
        }
        let lease = rt
            .block_on(bounded(ttl, client.lease_grant(cfg.ttl_secs, None)))
            .map_err(election_err)?
            .id();
        // Kept alive while campaigning, too: a standby waits for as long
        // as the leader lives.
        let stop = Arc::new(AtomicBool::new(false));
        let keeper = {
            let (client, stop) = (client.clone(), stop.clone());
            std::thread::Builder::new()
                .name("coord-etcd-lease".into())
                .spawn(move || keep_alive(client, lease, ttl, &stop))
                .map_err(election_err)?
        };
        let campaign = rt.block_on(client.campaign(cfg.election(), value, lease));
        let leader = match campaign.map(|mut r| r.take_leader()) {
            Ok(Some(leader)) => leader,
            Ok(None) => {
                stop.store(true, Ordering::Release);
                return Err(election_err("the campaign ended without a leader key"));
            }
            Err(e) => {
                stop.store(true, Ordering::Release);
                return Err(election_err(e));
            }
        };
        tracing::info!(prefix = cfg.prefix, lease, "elected on etcd");
        Ok(EtcdLeader {
            ttl,
            rt,
            client: Mutex::new(client),
            leader,
            lease,
            record: cfg.record(),
            stop,
            keeper: Some(keeper),
        })
    }

    /// The record in etcd; `None` before the first.
    pub fn load(&self) -> Result<Option<CoordinatorState>, PersistError> {
        let mut client = lock_std(&self.client);
        let got = self
            .rt
            .block_on(bounded(self.ttl, client.get(self.record.as_str(), None)))
            .map_err(remote)?;
        let Some(kv) = got.kvs().first() else { return Ok(None) };
        persist::decode(kv.value())
            .map(|(state, _)| Some(state))
            .map_err(|reason| PersistError::Corrupt {
                path: std::path::PathBuf::from(format!("etcd:{}", self.record)),
                reason,
            })
    }

    /// Replaces the record, if this coordinator still leads.
    pub fn store(&self, state: &CoordinatorState) -> Result<(), PersistError> {
        let bytes = persist::encode(state, 0);
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.leader.key(),
                CompareOp::Equal,
                self.leader.rev(),
            )])
            .and_then([TxnOp::put(self.record.as_str(), bytes, None)]);
        let mut client = lock_std(&self.client);
        let done = self.rt.block_on(bounded(self.ttl, client.txn(txn))).map_err(remote)?;
        if !done.succeeded() {
            return Err(remote("this coordinator no longer leads"));
        }
        Ok(())
    }
}

impl Drop for EtcdLeader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let mut client = lock_std(&self.client);
        let resign = ResignOptions::new().with_leader(self.leader.clone());
        let _ = self.rt.block_on(bounded(self.ttl, client.resign(Some(resign))));
        let _ = self.rt.block_on(bounded(self.ttl, client.lease_revoke(self.lease)));
        drop(client);
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

/// `request`, given up after `limit` (an etcd request's error then).
async fn bounded<T>(
    limit: Duration,
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, request).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// Keeps `lease` alive every third of `ttl` until `stop`; ends the process
/// once its lease may be over (see the module docs).
fn keep_alive(mut client: Client, lease: i64, ttl: Duration, stop: &AtomicBool) {
    let fatal = |why: String| -> ! {
        eprintln!("fatal: the coordinator lost its etcd lease: {why}");
        std::process::exit(70);
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        fatal("no runtime for the keep-alive".into());
    };
    let Ok((mut keeper, mut answers)) = rt.block_on(bounded(ttl, client.lease_keep_alive(lease))) else {
        fatal("the keep-alive stream could not be opened".into());
    };
    let period = ttl / 3;
    let deadline = ttl - ttl / 4;
    let mut acked = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let sent = Instant::now();
        let answer = rt.block_on(async {
            keeper.keep_alive().await?;
            tokio::time::timeout(period, answers.message())
                .await
                .unwrap_or(Ok(None))
        });
        match answer {
            Ok(Some(r)) if r.ttl() > 0 => acked = sent,
            Ok(Some(_)) => fatal("etcd says it expired".into()),
            Ok(None) | Err(_) if stop.load(Ordering::Acquire) => return,
            Ok(None) | Err(_) => {}
        }
        if acked.elapsed() >= deadline {
            fatal(format!("no keep-alive answered for {:?}", acked.elapsed()));
        }
        std::thread::sleep(period.saturating_sub(sent.elapsed()).min(Duration::from_millis(100)));
    }
}
