//! Riding through a coordinator restart: when the connection drops, the
//! client connects again — to the restarted coordinator, or a standby that
//! took over at the same endpoint — as [`Purpose::Rejoin`] with its
//! incarnation, re-asserts every lock in its ledger (`held`), and carries
//! on; the node never learns of it but by the `Reconnected` event.
//!
//! ## Why the node may write meanwhile
//! The lease does not end with the connection: it runs to `lease_ms −
//! margin` after the last heartbeat the old coordinator answered, sent at
//! `s`. A restarted coordinator (or a standby, which can start only once
//! the old one is gone) waits for the nodes that were live for its failure
//! timeout from its own start, later than `s`, before it declares any of
//! them failed — the same inequality as the lease's (see
//! [`client`](super)). So a node that has not rejoined when its lease
//! lapses has stopped writing before anyone can be told it failed, and
//! until then nobody can be granted a lock it holds: no coordinator grants
//! anything before the live nodes have re-asserted theirs.
//!
//! A connection that dropped while the coordinator lives on (it declared
//! the node failed: silence, or a broken socket) is no restart: the rejoin
//! is refused, and the client gives up at once — the lease is lost, and the
//! node stops, as without riding through.
//!
//! ## Requests across the gap
//! Requests written on the old connection and not answered are settled
//! when the drop is found: lock requests and questions are sent again on
//! the next connection (the next coordinator knows only what was
//! re-asserted), releases are answered `Ok` (what is not re-asserted is
//! released), and the rest fail with `Disconnected`. Requests made during
//! the gap wait for the next connection, as long as the lease holds.
//!
//! This file owns the gap between two connections. It must never let a
//! request out on the new connection before the re-assertion, nor keep
//! trying once the lease has lapsed.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::config::ClientConfig;
use super::connect::handshake;
use super::error::{refusal, ClientError};
use super::events::ClientEvent;
use super::link::Link;
use super::state::Inner;
use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, Msg, Purpose};

/// How long the client waits between two tries to reach a coordinator
/// that is not there (yet): a restarted one binds within milliseconds.
const RETRY: Duration = Duration::from_millis(5);
/// The request id of the re-assertion on a new connection (the handshake
/// used 1 and 2; requests take ids from 3 on, so this one is never theirs).
const REASSERT_ID: u64 = u64::MAX;

/// Why a try to rejoin did not work.
enum Try {
    /// Nobody answered, or the connection broke midway: try again.
    Again,
    /// Refused, or the lease is gone: give up.
    GiveUp(String),
}

impl Inner {
    /// From now on a dropped connection is ridden through, if the client
    /// was configured to (see `Inner::ride_through`).
    pub(super) fn arm_ride_through(&self) {
        if self.rejoin.is_some() {
            self.ride_through.store(true, Ordering::Release);
        }
    }

    /// The connection dropped: the next connection's reading side once the
    /// client has rejoined and re-asserted its locks, or `None` when it
    /// does not ride through this drop (or gave up).
    pub(super) fn ride_through_drop(&self) -> Option<Stream> {
        let Link::Socket(socket) = &self.link else { return None };
        if !self.ride_through.load(Ordering::Acquire) || self.leaving.load(Ordering::Acquire) {
            return None;
        }
        let lost_at = Instant::now();
        {
            let mut wire = socket.lock();
            if wire.shut {
                return None;
            }
            if let Some(old) = wire.stream.take() {
                old.shutdown();
            }
            self.settle_unanswered();
        }
        lock_std(&self.heartbeats).clear();
        tracing::warn!(
            node = self.node,
            "coordinator connection lost; rejoining while the lease holds"
        );
        self.events.emit(ClientEvent::CoordinatorLost);
        for attempt in 0usize.. {
            if self.closed.load(Ordering::Acquire) || self.leaving.load(Ordering::Acquire) {
                return None;
            }
            match self.try_rejoin(attempt) {
                Ok(next) => {
                    tracing::info!(
                        node = self.node,
                        after_ms = lost_at.elapsed().as_millis() as u64,
                        "rejoined the coordinator"
                    );
                    self.events.emit(ClientEvent::Reconnected { gap: lost_at.elapsed() });
                    return Some(next);
                }
                // Every endpoint tried once: wait a moment before the next
                // round.
                Err(Try::Again) => {
                    let endpoints = self.rejoin.as_ref().map_or(1, |(cfg, _)| 1 + cfg.also.len());
                    if (attempt + 1) % endpoints == 0 {
                        std::thread::sleep(RETRY);
                    }
                }
                Err(Try::GiveUp(why)) => {
                    if !self.leaving.load(Ordering::Acquire) {
                        tracing::warn!(node = self.node, why, "could not rejoin the coordinator");
                    }
                    return None;
                }
            }
        }
        None
    }

    /// Requests the old connection left unanswered: lock requests and
    /// questions stay to be sent again, releases are done, the rest fail.
    /// Called with the connection's lock held, so no writer interleaves.
    fn settle_unanswered(&self) {
        let mut pending = lock_std(&self.pending);
        pending.retain(|_, p| {
            if p.generation.is_none() || p.resend.is_some() {
                return true;
            }
            if p.done_on_drop {
                let _ = p.tx.send(Msg::Ok);
            }
            // Dropping the sender tells the waiter `Disconnected`.
            false
        });
    }

    /// Try number `attempt`: connect (to the configured endpoint and the
    /// others in turn), be admitted as a rejoin, re-assert the ledger, then
    /// put the connection in and send again what was unanswered.
    fn try_rejoin(&self, attempt: usize) -> Result<Stream, Try> {
        let Link::Socket(socket) = &self.link else {
            return Err(Try::GiveUp("no socket".into()));
        };
        let (cfg, incarnation) = self.rejoin.as_ref().ok_or(Try::GiveUp("not configured".into()))?;
        let left = self.lease_left().ok_or(Try::GiveUp("the lease lapsed".into()))?;
        let endpoint = std::iter::once(&cfg.endpoint)
            .chain(&cfg.also)
            .nth(attempt % (1 + cfg.also.len()))
            .expect("an index within the endpoints");
        let to = ClientConfig {
            endpoint: endpoint.clone(),
            ..cfg.clone()
        };
        let (mut stream, welcome) = match handshake(&to, Purpose::Rejoin, *incarnation, left.min(cfg.connect_timeout)) {
            Ok(admitted) => admitted,
            Err(ClientError::Connect { .. } | ClientError::Disconnected | ClientError::Protocol(_)) => {
                return Err(Try::Again)
            }
            Err(e) => return Err(Try::GiveUp(e.to_string())),
        };
        if welcome.incarnation != *incarnation {
            return Err(Try::GiveUp(format!(
                "rejoined as incarnation {} instead of {incarnation}",
                welcome.incarnation
            )));
        }
        // The admission is a heartbeat the new coordinator answered.
        self.extend_lease(welcome.sent_at);
        let mut wire = socket.lock();
        if wire.shut {
            return Err(Try::GiveUp("the client is closing".into()));
        }
        let locks = self.held.snapshot();
        let count = locks.len();
        let reassert = Msg::Reassert { locks };
        let io = |e: std::io::Error| {
            tracing::warn!(node = self.node, error = %e, "the new connection broke while re-asserting");
            Try::Again
        };
        std::io::Write::write_all(&mut stream, &wire::encode(REASSERT_ID, &reassert)).map_err(io)?;
        let left = self.lease_left().ok_or(Try::GiveUp("the lease lapsed".into()))?;
        stream.set_read_timeout(Some(left)).map_err(io)?;
        // Events may come first (the admission announced the node, and
        // failed nodes to recover): they go to the node as ever.
        loop {
            match wire::read_frame(&mut stream) {
                Ok(Some((0, ev @ Msg::Event { .. }))) => self.dispatch(0, ev),
                Ok(Some((REASSERT_ID, reply))) => match refusal(reply) {
                    Ok(Msg::Ok) => break,
                    Ok(other) => return Err(Try::GiveUp(format!("re-assertion answered {other:?}"))),
                    Err(e) => return Err(Try::GiveUp(format!("re-assertion refused: {e}"))),
                },
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Err(Try::Again),
            }
        }
        stream.set_read_timeout(None).map_err(io)?;
        let reader = stream.try_clone().map_err(io)?;
        wire.stream = Some(stream);
        wire.generation += 1;
        let generation = wire.generation;
        // Sent again before anything a waiting writer adds: they were
        // asked first.
        let again: Vec<(u64, Msg)> = lock_std(&self.pending)
            .iter_mut()
            .filter(|(_, p)| p.generation.is_some_and(|g| g < generation))
            .filter_map(|(id, p)| {
                p.generation = Some(generation);
                p.resend.clone().map(|m| (*id, m))
            })
            .collect();
        if !again.is_empty() {
            let frames: Vec<(u64, &Msg)> = again.iter().map(|(id, m)| (*id, m)).collect();
            // A failure here is the new connection's drop, found by the
            // reader like any other.
            let _ = wire.write(&frames);
        }
        drop(wire);
        socket.notify();
        tracing::debug!(
            node = self.node,
            locks = count,
            resent = again.len(),
            "locks re-asserted"
        );
        Ok(reader)
    }

    /// How long the lease still holds, if it does.
    fn lease_left(&self) -> Option<Duration> {
        let until = Duration::from_micros(self.lease_until_us.load(Ordering::Acquire));
        let left = until.checked_sub(self.epoch.elapsed())?;
        (!left.is_zero() && !self.lease_lost.load(Ordering::Acquire)).then_some(left)
    }
}
