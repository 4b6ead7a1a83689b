//! Peer recovery: a live node takes a failed node's place, backs out its
//! in-flight work from its private log, frees its retained locks and steps
//! down.
//!
//! The steps, each timed from the moment the failure was detected:
//! 1. **fenced** — the failed node provably cannot write any more
//!    ([`crate::fence`]): the kernel's word on one host, else an expired
//!    lease. Nothing is written before this.
//! 2. **registered** — this node is the failed node's counterpart; exactly
//!    one racer wins, the others stop here.
//! 3. **log opened** — the failed node's private log, opened for writing
//!    with the grant's proof, which the log checks (`wal::access`: nobody
//!    without the coordinator's word opens it), while its own directory
//!    lock keeps a second opener out. The open reads the log through to
//!    find its end, and the in-flight search
//!    ([`crate::recovery::InFlightScan`]) rides on that pass.
//! 4. **in-flight found** — the search's result, from the last checkpoint.
//!    If the failed node's locks were unknown (it failed while no
//!    coordinator knew them, and every lock request is refused meanwhile),
//!    **locks rebuilt**: the X lock of every page its in-flight
//!    transactions changed, and the IX lock of their tables, become its
//!    retained locks, and the rest of the cluster carries on.
//! 5. **written back** — intents decided by their pages, then every changed
//!    page put back from its before-images, each page once, in rounds of a
//!    deep queue ([`crate::recovery::back_out`]); the recovery agents' work
//!    of every in-flight transaction made final (it committed) or undone
//!    (read back and checked before anything is written: a resource with no
//!    agent on this node stops here, naming it); **synced** — the data
//!    files made durable.
//! 6. **ended** — end records in the failed node's log, durable, so its own
//!    restart finds nothing left. The last round of images, the sync and the
//!    end records go to the kernel as one staged submission, so these steps
//!    finish together (all three when the images fit one round).
//! 7. **released** — unregistered as recovered: the coordinator frees the
//!    retained locks in the same request.
//!
//! The whole recovery runs in a `peer_recovery` tracing span; each step is
//! an event in it.
//!
//! Every step may be repeated: if this node dies anywhere, its registration
//! is dropped and another node registers and runs the same steps on the same
//! log, writing the same images. A damaged log stops recovery with the LSN;
//! the registration is abandoned with the locks still retained, because no
//! lock can be proven safe to release.

use std::time::{Duration, Instant};

use lockmgr::{ClientError, LockMode, Outcome, ResourceId};
use wal::{Log, LogConfig};

use crate::error::Error;
use crate::fence;
use crate::node::state::NodeState;
use crate::recovery;
use crate::timeline::{monotonic_ns, Fencing, Timeline};

/// Why a peer recovery did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// Another node is the counterpart (or the node is recovered already).
    #[error("node {failed} is being or has been recovered by another node: {reason}")]
    NotCounterpart {
        /// The failed node.
        failed: u32,
        /// The coordinator's refusal.
        reason: ClientError,
    },
    /// The node is live: there is nothing to recover.
    #[error("node {failed} is live: there is nothing to recover (a node is recovered once it has failed)")]
    NotFailed {
        /// The node.
        failed: u32,
    },
    /// The node is not one of the cluster's nodes.
    #[error("node {failed} is not one of the cluster's nodes {nodes:?}")]
    UnknownNode {
        /// The node asked for.
        failed: u32,
        /// The cluster's node ids.
        nodes: Vec<u32>,
    },
    /// The node has nothing to back out: it never joined, it left cleanly,
    /// or it was recovered already.
    #[error("node {failed} has nothing to recover: {why}")]
    NothingToRecover {
        /// The node.
        failed: u32,
        /// Why.
        why: &'static str,
    },
    /// The coordinator could not say how the node stands.
    #[error("cannot ask the coordinator about node {failed}: {reason}")]
    NoStatus {
        /// The node.
        failed: u32,
        /// The coordinator's refusal or the connection's failure.
        reason: ClientError,
    },
    /// The failed node could not be shown unable to write.
    #[error("node {failed} could not be fenced: {why}")]
    NotFenced {
        /// The failed node.
        failed: u32,
        /// What still holds, and what to do about it.
        why: String,
    },
    /// A step failed after registering; the registration was abandoned and
    /// the retained locks are kept.
    #[error(
        "recovery of node {failed} failed while {step}: {source}. The registration was abandoned and its retained \
         locks are kept; another node may try again, or an operator can inspect the log \
         (`understudy inspect-log`) and restore the damaged part before running `understudy recover --node {failed}`"
    )]
    Failed {
        /// The failed node.
        failed: u32,
        /// The step that failed.
        step: &'static str,
        /// How it failed.
        #[source]
        source: Error,
    },
}

/// Recovers failed node `failed` from `node`, the failure having been
/// detected at `detected`.
pub(crate) fn recover(inner: &NodeState, failed: u32, detected: Instant) -> Result<Timeline, PeerError> {
    let _span = tracing::info_span!("peer_recovery", failed, counterpart = inner.node_id).entered();
    let cluster = &inner.cluster;
    let log_dir = cluster.log_dir(failed);
    let mut tl = Timeline {
        failed,
        counterpart: inner.node_id,
        fencing: Fencing::Kernel,
        steps: Vec::new(),
        in_flight: 0,
        committed: 0,
        pages: 0,
        pages_written: 0,
        agent_work: 0,
        records: 0,
        detected_mono_ns: monotonic_ns().saturating_sub(detected.elapsed().as_nanos() as u64),
        io: Default::default(),
    };

    // 1. Fence (the argument is in `crate::fence`).
    tl.fencing = fence_node(inner, failed, detected)?;
    tl.mark("fenced", detected);

    // 2. Register.
    let grant = inner
        .client
        .register_counterpart(failed)
        .map_err(|reason| PeerError::NotCounterpart { failed, reason })?;
    tl.mark("registered", detected);

    let steps = (|| -> Result<(Log, recovery::PageVersions), (&'static str, Error)> {
        // 3. Open its log with the grant.
        let cfg = LogConfig {
            segment_size: inner.opts.log_segment_size,
            // Only end records are appended: no spare segment to prepare.
            spare_segments: 0,
            // A failed node's log holds its in-flight work: a missing one
            // is refused, not created empty, unless the operator accepted
            // that.
            create: inner.opts.accept_log_damage,
            // The log admits its registered counterpart only.
            access: Some(wal::LogAccess {
                key: inner.log_key.clone(),
                proof: grant.log_access(inner.node_id),
            }),
            ..LogConfig::new(failed, inner.io.clone())
        };
        // Opening finds the log's end by reading it through; the in-flight
        // search rides along on that one pass.
        let mut scan = recovery::InFlightScan::new();
        let log = Log::open_visiting(&log_dir, cfg, &mut |rec| scan.visit(rec))
            .map_err(|e| ("opening its log", Error::opening_log(e, failed)))?;
        tl.mark("log opened", detected);
        // 4. Find the in-flight transactions.
        let reader = log.reader().map_err(|e| ("reading its log", e.into()))?;
        let from = recovery::scan_start_accepting(&reader, inner.opts.accept_log_damage)
            .map_err(|e| ("reading its log", e))?;
        let mut found = scan.finish(from);
        tl.in_flight = found.txns.len();
        tl.records = found.records;
        tl.mark("in-flight found", detected);
        // A node that failed while no coordinator knew its locks: what its
        // log names becomes its retained locks, and the cluster, which
        // refused every lock meanwhile, stops pausing for it.
        if grant.blind {
            inner
                .client
                .rebuild_retained(&grant, written_locks(&found))
                .map_err(|e| ("rebuilding its locks", e.into()))?;
            tl.mark("locks rebuilt", detected);
        }
        // 5. Write the before-images back and sync. Self-fencing, as for a
        //    commit: no page is written once this node's lease may be gone
        //    (its registration goes with it, and another node takes over).
        inner
            .client
            .check_lease()
            .map_err(|e| ("writing before-images back", e.into()))?;
        let start = detected.elapsed();
        let (wb, io) = wal::io::count_on_this_thread(|| {
            recovery::back_out(
                &inner.io,
                &inner.files,
                &log,
                &reader,
                &mut found,
                &inner.opts.agents,
                inner.opts.accept_log_damage,
            )
        });
        let wb = wb.map_err(|e| ("writing before-images back", e))?;
        tl.io = io;
        tl.pages = wb.pages;
        tl.pages_written = wb.pages_written;
        tl.committed = wb.committed;
        tl.agent_work = wb.agent_work;
        tl.mark_at("written back", start + wb.written);
        tl.mark_at("synced", start + wb.synced);
        tl.mark_at("ended", start + wb.ended);
        Ok((log, wb.versions))
    })();
    let (log, versions) = match steps {
        Ok(done) => done,
        Err((step, source)) => {
            if let Err(e) = inner.client.unregister_counterpart(&grant, Outcome::Abandoned) {
                tracing::warn!(failed, error = %e, "abandoning the registration failed");
            }
            return Err(PeerError::Failed { failed, step, source });
        }
    };

    // 7. Release the retained locks, with the versions of the pages the
    //    recovery read and put back as their value blocks: a node whose
    //    cached copy is still current keeps it (`crate::pool`).
    let values: Vec<(ResourceId, u128)> = versions
        .into_iter()
        .map(|((file_id, page_no), v)| (ResourceId::new(file_id, page_no), v))
        .collect();
    inner
        .client
        .unregister_counterpart_publishing(&grant, Outcome::Recovered, values)
        .map_err(|e| PeerError::Failed {
            failed,
            step: "unregistering",
            source: e.into(),
        })?;
    tl.mark("released", detected);
    // Closed only now: everything it had to say is durable, and stopping
    // its flusher thread need not delay the release. Until then its
    // directory lock stays held, which only makes the failed node's own
    // restart wait that much longer for its log.
    if let Err(e) = log.close() {
        tracing::warn!(failed, error = %e, "closing the recovered log failed");
    }
    tracing::info!("{}", tl.summary());
    Ok(tl)
}

/// The write locks a failed node's in-flight work `found` in its log held:
/// X on every page its in-flight transactions changed or their intents
/// list, IX on those pages' tables (the lock names of [`crate::txn`]). A
/// transaction held them until its commit or end record was durable, so
/// they cover every page that can carry its uncommitted work.
fn written_locks(found: &crate::recovery::InFlight) -> Vec<(ResourceId, LockMode)> {
    let pages = found.pages.keys().copied().chain(
        found
            .intents
            .iter()
            .flat_map(|i| i.pages.iter().map(|p| (p.file_id, p.page_no))),
    );
    let mut locks = std::collections::BTreeMap::new();
    for (file, page) in pages {
        locks.insert(ResourceId::new(file, page), LockMode::X);
        locks.insert(ResourceId::new(0, u64::from(file)), LockMode::IX);
    }
    locks.into_iter().collect()
}

/// Whether node `failed` is one to recover, as the coordinator sees it: an
/// operator's recovery asks first, so a live, unknown or finished node is
/// refused at once with the reason, not after fencing gives up. (Automatic
/// recovery reacts to the coordinator's own word that the node failed.)
pub(crate) fn check_recoverable(inner: &NodeState, failed: u32) -> Result<(), PeerError> {
    if !inner.cluster.nodes.contains(&failed) {
        return Err(PeerError::UnknownNode {
            failed,
            nodes: inner.cluster.nodes.clone(),
        });
    }
    let members = inner
        .client
        .status()
        .map_err(|reason| PeerError::NoStatus { failed, reason })?;
    match members.iter().find(|m| m.node == failed) {
        None => Err(PeerError::NothingToRecover {
            failed,
            why: "it never joined the cluster",
        }),
        Some(m) if m.live => Err(PeerError::NotFailed { failed }),
        // Recovered (or left cleanly, which leaves nothing to back out).
        Some(m) if m.recovery == 3 => Err(PeerError::NothingToRecover {
            failed,
            why: "it was recovered already, or it left cleanly",
        }),
        Some(_) => Ok(()),
    }
}

/// Automatic recovery of `failed`, detected at `detected`, as every node
/// with automatic recovery runs it on a failure event: [`recover`], tried
/// again for as long as the failed node cannot be fenced yet (its process
/// frozen, or a write of it stuck in the device) and still waits for a
/// counterpart. Nothing is held between tries: fencing comes before
/// registering. The operator's `recover` makes one try and reports.
pub(crate) fn auto_recover(node: &NodeState, failed: u32, detected: Instant) {
    loop {
        match recover(node, failed, detected) {
            Ok(tl) => {
                node.remember(tl);
                return;
            }
            Err(PeerError::NotCounterpart { .. }) => return,
            Err(e @ PeerError::NotFenced { .. }) => {
                let waiting = node.check_running().is_ok()
                    && node.client.status().is_ok_and(|members| {
                        // Failed, and its recovery inactive.
                        members.iter().any(|m| m.node == failed && !m.live && m.recovery == 1)
                    });
                if !waiting {
                    return;
                }
                tracing::warn!(failed, error = %e, "not fenced yet; trying again");
                // A check that fails at once (an I/O error) must not spin.
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                tracing::warn!(failed, error = %e, "peer recovery did not finish");
                return;
            }
        }
    }
}

/// A recovery of `failed` an operator asked this node for (`recover --by`),
/// asked at `asked`: one try, as the operator's own `recover` makes; its
/// timeline is kept with the others, and a failure is logged (the operator
/// sees the node still failed in `status`).
pub(crate) fn asked_recover(node: &NodeState, failed: u32, asked: Instant) {
    match recover(node, failed, asked) {
        Ok(tl) => node.remember(tl),
        Err(e) => tracing::warn!(failed, error = %e, "the asked recovery did not finish"),
    }
}

/// Waits until node `failed` provably cannot write any more (see
/// [`crate::fence`]), its failure having been detected at `detected`: on its
/// own host the kernel's word and nothing else; elsewhere its lease over and
/// its log free.
///
/// An earlier counterpart of `failed` that died mid-recovery needs no
/// fencing of its own: it held `failed`'s log open — and with it the log's
/// directory lock, part of the kernel's word here — from before its first
/// write until after its last, so this waits for it too.
fn fence_node(inner: &NodeState, failed: u32, detected: Instant) -> Result<Fencing, PeerError> {
    let log_dir = inner.cluster.log_dir(failed);
    let data_dir = inner.cluster.data_dir();
    let lease = Duration::from_millis(u64::from(inner.client.lease_ms()));
    let here = fence::ran_here(&log_dir);
    let lease_over = detected + lease;
    // Patience runs from the later of the detection and this call, so a
    // retry (see `auto_recover`) waits its full share again.
    let give_up = if here { detected } else { lease_over }.max(Instant::now()) + inner.opts.fence_patience;
    loop {
        let gone = fence::node_gone(&data_dir, &log_dir, failed).map_err(|e| PeerError::NotFenced {
            failed,
            why: format!("node {failed}: {e}"),
        })?;
        let now = Instant::now();
        if gone && here {
            return Ok(Fencing::Kernel);
        }
        if gone && now >= lease_over {
            return Ok(Fencing::LeaseExpired);
        }
        if now >= give_up {
            return Err(PeerError::NotFenced {
                failed,
                why: if here {
                    format!(
                        "the process of node {failed} on this host still holds its log or data files after {:?} \
                         (alive, frozen, or with a write the device has not finished); stop the process, then run \
                         `understudy recover --node {failed}`",
                        inner.opts.fence_patience
                    )
                } else {
                    format!("the lease of node {failed} expired but its log is still locked; stop its process, then run recover")
                },
            });
        }
        // Fast while a death is fresh (the kernel frees a killed process's
        // files within a millisecond), gentler during a long wait.
        let fresh = now < detected + Duration::from_millis(50);
        std::thread::sleep(if fresh {
            Duration::from_micros(100)
        } else {
            Duration::from_millis(5)
        });
    }
}
