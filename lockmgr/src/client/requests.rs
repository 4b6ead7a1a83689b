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
use std::time::Duration;

use super::error::{refusal, unexpected, ClientError};
use super::state::{Client, Inner};
use crate::ids::{NodeId, ResourceId};
use crate::mode::LockMode;
use crate::sync::lock_std;
use crate::wire::{self, HeldLock, MemberInfo, Msg, Outcome};

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
        match self.inner.call(&wait.request(txn, resource, mode), wait.patience())? {
            Msg::Granted { mode, value } => Ok((mode, value)),
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
        let msgs: Vec<Msg> = requests
            .iter()
            .map(|&(resource, mode)| wait.request(txn, resource, mode))
            .collect();
        let pending = self.inner.send_many(&msgs)?;
        let mut out = Vec::with_capacity(requests.len());
        let mut first_err = None;
        for p in pending {
            match self.inner.receive(p, wait.patience()) {
                Ok(Msg::Granted { mode, value }) => out.push((mode, value)),
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

    /// Releases the lock `txn` holds on `resource` (or withdraws its wait
    /// for it).
    pub fn release(&self, txn: u64, resource: ResourceId) -> Result<(), ClientError> {
        self.expect_ok(&Msg::Release { txn, resource })
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

    /// Hands requests to the coordinator ([`Link::transmit`](super::link::Link::transmit)), unless the
    /// connection is closed.
    pub(super) fn transmit(&self, frames: &[(u64, &Msg)]) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ClientError::Disconnected);
        }
        self.link.transmit(frames)
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
            let mut pending = lock_std(&self.pending);
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
            let mut pending = lock_std(&self.pending);
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
                lock_std(&self.pending).remove(&id);
                Err(ClientError::Protocol("no reply from the coordinator in time".into()))
            }
        }
    }
}
