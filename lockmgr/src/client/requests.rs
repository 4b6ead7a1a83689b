//! Requests: locks (one, or several pipelined in one write), releases
//! (answered, or sent without wanting an answer), counterpart
//! registrations, restarts, re-assertion, status and leaving — each sent
//! with its own id and answered on its own channel, so any number of
//! threads may have requests in flight at once.
//!
//! This file owns the pending requests and the waiting for their answers.
//! It must never wait for an answer without a bound: a request's own wait
//! plus the reply timeout at most.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::error::{refusal, unexpected, ClientError};
use super::link::{Link, Socket};
use super::state::{Client, Inner, Pending};
use crate::ids::{NodeId, ResourceId};
use crate::mode::LockMode;
use crate::sync::lock_std;
use crate::wire::{self, HeldLock, MemberInfo, Msg, Outcome};

/// How often a lock request refused by a restarted coordinator that waits
/// for re-assertions is asked again.
const RECOVERING_POLL: Duration = Duration::from_millis(2);

/// A registration as counterpart of a failed node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterpartGrant {
    /// The failed node to recover.
    pub failed: NodeId,
    /// The failed node's incarnation that died.
    pub incarnation: u64,
    /// Names this registration when it is ended
    /// ([`Client::unregister_counterpart`]).
    pub token: u64,
    /// The failed node's locks are unknown: rebuild them from its log
    /// ([`Client::rebuild_retained`]) once its in-flight work is found.
    pub blind: bool,
    /// The coordinator's word that the counterpart may open the failed
    /// node's log ([`CounterpartGrant::log_access`]).
    pub log_proof: [u8; 32],
}

impl CounterpartGrant {
    /// The proof `counterpart` (the node this grant was given to) shows to
    /// open the failed node's log ([`wal::access`]).
    pub fn log_access(&self, counterpart: NodeId) -> wal::AccessProof {
        wal::AccessProof {
            role: wal::Role::Counterpart,
            holder: counterpart,
            incarnation: self.incarnation,
            token: self.token,
            mac: self.log_proof,
        }
    }
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
    /// How long the request may wait for its lock.
    fn patience(self) -> Duration {
        match self {
            LockWait::NoWait => Duration::ZERO,
            LockWait::Wait(d) | LockWait::WaitForLive(d) => d,
        }
    }

    /// The `Lock` request of `txn` for `resource` in `mode` with this wait.
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

/// One lock request's answer: its mode and value block as granted, or why not.
type Granted = Result<(LockMode, Option<u128>), ClientError>;

impl Client {
    /// Locks `resource` for `txn`. `wait` is a [`LockWait`]; `None` fails at
    /// once on a conflict and `Some(d)` waits up to `d` behind any holder.
    pub fn lock(
        &self,
        txn: u64,
        resource: ResourceId,
        mode: LockMode,
        wait: impl Into<LockWait>,
    ) -> Result<LockMode, ClientError> {
        self.lock_valued(txn, resource, mode, wait).map(|(mode, _)| mode)
    }

    /// [`Client::lock`], with the resource's lock value block as granted
    /// (see [`Client::publish_and_release_nowait`]).
    pub fn lock_valued(
        &self,
        txn: u64,
        resource: ResourceId,
        mode: LockMode,
        wait: impl Into<LockWait>,
    ) -> Result<(LockMode, Option<u128>), ClientError> {
        let wait = wait.into();
        let started = Instant::now();
        loop {
            match self.inner.call(&wait.request(txn, resource, mode), wait.patience()) {
                Ok(Msg::Granted { mode, value }) => return Ok((mode, value)),
                Ok(other) => return Err(unexpected(other)),
                Err(ClientError::CoordinatorRecovering) if self.inner.still_recovering(started) => {}
                Err(e) => return Err(e),
            }
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
        Ok(self
            .lock_many_valued(txn, requests, wait)?
            .into_iter()
            .map(|(mode, _)| mode)
            .collect())
    }

    /// [`Client::lock_many`], with each resource's lock value block as
    /// granted.
    pub fn lock_many_valued(
        &self,
        txn: u64,
        requests: &[(ResourceId, LockMode)],
        wait: impl Into<LockWait>,
    ) -> Result<Vec<(LockMode, Option<u128>)>, ClientError> {
        let wait = wait.into();
        let started = Instant::now();
        let mut answers: Vec<Option<Granted>> = vec![None; requests.len()];
        // Each round sends what is still unanswered: a restarted coordinator
        // refuses every lock until the nodes that were live have re-asserted
        // theirs, which the requests wait out (`Inner::still_recovering`).
        loop {
            let due: Vec<usize> = (0..requests.len()).filter(|&i| answers[i].is_none()).collect();
            if due.is_empty() {
                break;
            }
            let msgs: Vec<Msg> = due
                .iter()
                .map(|&i| wait.request(txn, requests[i].0, requests[i].1))
                .collect();
            let pending = self.inner.send_many(&msgs)?;
            let mut recovering = false;
            for (&i, p) in due.iter().zip(pending) {
                answers[i] = match self.inner.receive(p, wait.patience()) {
                    Ok(Msg::Granted { mode, value }) => Some(Ok((mode, value))),
                    Ok(other) => Some(Err(unexpected(other))),
                    Err(ClientError::CoordinatorRecovering) if self.inner.still_recovering(started) => {
                        recovering = true;
                        None
                    }
                    Err(e) => Some(Err(e)),
                };
            }
            if !recovering {
                break;
            }
        }
        // The first refusal in request order; every request has an answer.
        answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(ClientError::CoordinatorRecovering)))
            .collect()
    }

    /// Releases the lock `txn` holds on `resource` (or withdraws its wait
    /// for it).
    pub fn release(&self, txn: u64, resource: ResourceId) -> Result<(), ClientError> {
        let m = Msg::Release { txn, resource };
        match self.inner.call(&m, Duration::ZERO)? {
            Msg::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends the release of the lock `txn` holds on `resource` and asks for
    /// no reply (request id 0, see [`crate::wire`]): requests sent after it
    /// on this connection see it released.
    pub fn release_nowait(&self, txn: u64, resource: ResourceId) -> Result<(), ClientError> {
        self.inner.send_unanswered(&[Msg::Release { txn, resource }])
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

    /// Sets the lock value blocks `values` — each for a resource a
    /// transaction of this node holds in X mode — then releases every lock
    /// of each of `txns`, in one write and without wanting a reply. Every
    /// later grant of those resources, on any node, carries the new values.
    pub fn publish_and_release_nowait(&self, values: Vec<(ResourceId, u128)>, txns: &[u64]) -> Result<(), ClientError> {
        let mut msgs = Vec::with_capacity(txns.len() + 1);
        if !values.is_empty() {
            msgs.push(Msg::Publish { values });
        }
        msgs.extend(txns.iter().map(|&txn| Msg::ReleaseAll { txn }));
        self.inner.send_unanswered(&msgs)
    }

    /// Asks to become the counterpart of failed node `failed`.
    pub fn register_counterpart(&self, failed: NodeId) -> Result<CounterpartGrant, ClientError> {
        match self.inner.call(&Msg::RegisterCounterpart { failed }, Duration::ZERO)? {
            Msg::CounterpartGrant {
                failed,
                incarnation,
                token,
                blind,
                log_proof,
            } => Ok(CounterpartGrant {
                failed,
                incarnation,
                token,
                blind,
                log_proof,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a registration: `Recovered` releases the retained locks.
    pub fn unregister_counterpart(&self, grant: &CounterpartGrant, outcome: Outcome) -> Result<(), ClientError> {
        self.unregister_counterpart_publishing(grant, outcome, Vec::new())
    }

    /// [`Client::unregister_counterpart`], publishing with `Recovered` the
    /// value each of `values`' resources holds once the recovery is done
    /// (see `Msg::UnregisterCounterpart`).
    pub fn unregister_counterpart_publishing(
        &self,
        grant: &CounterpartGrant,
        outcome: Outcome,
        values: Vec<(ResourceId, u128)>,
    ) -> Result<(), ClientError> {
        self.expect_ok(&Msg::UnregisterCounterpart {
            failed: grant.failed,
            token: grant.token,
            outcome,
            values,
        })
    }

    /// Files a restart request for `node`, kept in the coordinator's durable
    /// record: a live member that launches restarts hears of it (a
    /// `RestartRequested` event) now if it has failed, else when it fails.
    /// Refused (`NoRestarter`) while no such member is live.
    pub fn request_restart(&self, node: NodeId) -> Result<(), ClientError> {
        self.expect_ok(&Msg::RequestRestart { node })
    }

    /// As the counterpart of a failed node whose locks were unknown
    /// ([`CounterpartGrant::blind`]), hands the coordinator the write locks
    /// its log says the node held: they become its retained locks, and the
    /// cluster stops pausing for it.
    pub fn rebuild_retained(
        &self,
        grant: &CounterpartGrant,
        locks: Vec<(ResourceId, LockMode)>,
    ) -> Result<(), ClientError> {
        self.expect_ok(&Msg::RebuildRetained {
            failed: grant.failed,
            token: grant.token,
            locks,
        })
    }

    /// Asks live member `by` to recover failed node `failed` (an operator's
    /// `recover --by`); answered once `by` has been told.
    pub fn ask_recovery(&self, failed: NodeId, by: NodeId) -> Result<(), ClientError> {
        self.expect_ok(&Msg::AskRecovery { failed, by })
    }

    /// A restarting node has backed out its own work: release the locks it
    /// took back.
    pub fn restart_finished(&self) -> Result<(), ClientError> {
        self.expect_ok(&Msg::RestartFinished)?;
        // Its reclaimed locks are gone: from now on it holds only what the
        // ledger knows, and may ride through a coordinator restart.
        self.inner.arm_ride_through();
        Ok(())
    }

    /// Re-asserts locks after a coordinator restart (purpose `Rejoin`); a
    /// client that rides through does this itself.
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

    /// Sends `m` and waits for its `Ok`.
    fn expect_ok(&self, m: &Msg) -> Result<(), ClientError> {
        match self.inner.call(m, Duration::ZERO)? {
            Msg::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

impl Inner {
    /// Sends a request and waits for its reply (the request's own wait plus
    /// the reply timeout at most).
    fn call(&self, m: &Msg, wait: Duration) -> Result<Msg, ClientError> {
        let rx = self.send(m)?;
        self.receive(rx, wait)
    }

    /// Whether a lock request refused because the coordinator restarted
    /// and waits for re-assertions, first sent at `started`, is asked again:
    /// by a client that rides through restarts (others hear the refusal),
    /// for as long as the reply timeout. A coordinator's wait ends with its
    /// grace period (its failure timeout) at the latest, so that bound is
    /// reached only by a coordinator that no longer works.
    pub(super) fn still_recovering(&self, started: Instant) -> bool {
        if self.rejoin.is_none() || started.elapsed() >= self.reply_timeout || self.closed.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(RECOVERING_POLL);
        true
    }

    /// When a writer stops waiting for a connection to come back: when the
    /// lease would lapse (see `rejoin`).
    fn connection_patience(&self) -> Option<Instant> {
        let until = Duration::from_micros(self.lease_until_us.load(Ordering::Acquire));
        Some(self.epoch + until)
    }

    /// Sends heartbeats ([`Link`]): over a socket only while connected (a
    /// heartbeat is worthless on a connection still to come).
    pub(super) fn transmit_heartbeat(&self, id: u64) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected);
        }
        match &self.link {
            Link::Local(link) => {
                link.request(id, Msg::Heartbeat);
                Ok(())
            }
            Link::Socket(socket) => match socket.current(None) {
                Some(mut wire) => wire.write(&[(id, &Msg::Heartbeat)]),
                None => Ok(()),
            },
        }
    }

    /// Sends requests that want no reply (request id [`wire::NO_REPLY`]):
    /// releases, which leave the ledger first (see `held`).
    fn send_unanswered(&self, msgs: &[Msg]) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected);
        }
        let frames: Vec<(u64, &Msg)> = msgs.iter().map(|m| (wire::NO_REPLY, m)).collect();
        match &self.link {
            Link::Local(link) => {
                for (id, m) in frames {
                    if !link.request(id, m.clone()) {
                        break;
                    }
                }
                Ok(())
            }
            Link::Socket(socket) => {
                // Under the connection's lock, so a re-assertion reads the
                // ledger wholly before or wholly after these releases.
                let mut wire = socket.lock();
                for m in msgs {
                    self.forget(m);
                }
                if wire.shut {
                    return Err(ClientError::Disconnected);
                }
                if wire.stream.is_none() {
                    // Between connections: the next coordinator learns only
                    // of the locks re-asserted to it, and these are not.
                    return Ok(());
                }
                match wire.write(&frames) {
                    // The connection just dropped: the same holds.
                    Err(_) if self.ride_through.load(Ordering::Acquire) => Ok(()),
                    other => other,
                }
            }
        }
    }

    /// Takes a release's locks out of the ledger.
    fn forget(&self, m: &Msg) {
        match *m {
            Msg::Release { txn, resource } => self.held.released(txn, resource),
            Msg::ReleaseAll { txn } => self.held.released_all(txn),
            _ => {}
        }
    }

    /// Sends a request; its reply arrives on the returned channel.
    fn send(&self, m: &Msg) -> Result<(u64, Receiver<Msg>), ClientError> {
        let mut sent = self.send_many(std::slice::from_ref(m))?;
        Ok(sent.pop().expect("one request, one channel"))
    }

    /// Sends requests together, in one write; each reply arrives on its own
    /// channel. Over a socket between connections it waits for the next one
    /// (see `rejoin`), as long as the lease lasts.
    fn send_many(&self, msgs: &[Msg]) -> Result<Vec<(u64, Receiver<Msg>)>, ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected);
        }
        let first = self.next_id.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        let rides = self.rejoin.is_some();
        let mut frames = Vec::with_capacity(msgs.len());
        let mut out = Vec::with_capacity(msgs.len());
        {
            let mut pending = lock_std(&self.pending);
            for (id, m) in (first..).zip(msgs) {
                frames.push((id, m));
                let (tx, rx) = mpsc::channel();
                let resend = (rides && resent_after_a_drop(m)).then(|| m.clone());
                let done_on_drop = matches!(m, Msg::Release { .. } | Msg::ReleaseAll { .. });
                pending.insert(
                    id,
                    Pending {
                        tx,
                        resend,
                        done_on_drop,
                        generation: None,
                    },
                );
                out.push((id, rx));
            }
        }
        let sent = match &self.link {
            Link::Local(link) => {
                for (id, m) in &frames {
                    // `false`: the connection closed (after this request's
                    // answer, for a `Leave`); `connection_closed` has run.
                    if !link.request(*id, (*m).clone()) {
                        break;
                    }
                }
                Ok(())
            }
            Link::Socket(socket) => self.write_socket(socket, msgs, &frames),
        };
        // A connection that closed meanwhile may have cleared the pending
        // requests before these were added: drop them, so their waiters see
        // the end (after any answer already delivered) at once.
        if sent.is_err() || self.closed.load(Ordering::Acquire) {
            let mut pending = lock_std(&self.pending);
            for (id, _) in &out {
                pending.remove(id);
            }
        }
        sent.map(|()| out)
    }

    /// Writes requests registered as pending on the current connection,
    /// waiting for one if there is none; a release leaves the ledger under
    /// the same lock, and one with nothing to tell the next coordinator is
    /// answered here (see `send_unanswered`).
    fn write_socket(&self, socket: &Socket, msgs: &[Msg], frames: &[(u64, &Msg)]) -> Result<(), ClientError> {
        let releases = msgs
            .iter()
            .all(|m| matches!(m, Msg::Release { .. } | Msg::ReleaseAll { .. }));
        let mut wire = if releases {
            let wire = socket.lock();
            for m in msgs {
                self.forget(m);
            }
            if wire.stream.is_none() && !wire.shut {
                let mut pending = lock_std(&self.pending);
                for (id, _) in frames {
                    if let Some(p) = pending.remove(id) {
                        let _ = p.tx.send(Msg::Ok);
                    }
                }
                return Ok(());
            }
            wire
        } else {
            let wait = if self.ride_through.load(Ordering::Acquire) {
                self.connection_patience()
            } else {
                None
            };
            socket.current(wait).ok_or(ClientError::Disconnected)?
        };
        if wire.shut {
            return Err(ClientError::Disconnected);
        }
        {
            let mut pending = lock_std(&self.pending);
            for (id, _) in frames {
                if let Some(p) = pending.get_mut(id) {
                    p.generation = Some(wire.generation);
                }
            }
        }
        match wire.write(frames) {
            // The reader finds the drop and settles these requests: sent
            // again on the next connection, answered, or failed.
            Err(_) if self.ride_through.load(Ordering::Acquire) => Ok(()),
            other => other,
        }
    }

    /// Waits for the reply of a request sent with [`Inner::send`].
    pub(super) fn receive(&self, (id, rx): (u64, Receiver<Msg>), wait: Duration) -> Result<Msg, ClientError> {
        match rx.recv_timeout(wait + self.reply_timeout) {
            Ok(reply) => refusal(reply),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ClientError::Disconnected),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock_std(&self.pending).remove(&id);
                Err(ClientError::Protocol("no reply from the coordinator in time".into()))
            }
        }
    }
}

/// Whether a request unanswered when its connection dropped is sent again
/// on the next: a lock request (the next coordinator knows only what was
/// re-asserted, so the lock is still to be had) and the questions and
/// requests that are the same however often they are made. A counterpart's
/// registration, its end, a restart's end and leaving are not: their
/// outcome at the old coordinator is unknown, and the caller learns it
/// failed ([`ClientError::Disconnected`]).
fn resent_after_a_drop(m: &Msg) -> bool {
    matches!(
        m,
        Msg::Lock { .. } | Msg::Status | Msg::ListRetained { .. } | Msg::RequestRestart { .. }
    )
}
