//! The answers to queued lock requests: a grant when a release or a
//! failure frees the lock, a refusal when the wait times out, when its owner
//! is chosen as a deadlock victim, or when a retained lock comes in its way.
//!
//! This file owns the map of waits and every answer to a queued request.
//! It must never answer one twice: each wait is taken out of the map, under
//! its lock, by the one path that answers it.

use std::time::Instant;

use super::refusal::{error_msg, lock_error};
use super::state::{Shared, Wait};
use crate::error::LockError;
use crate::ids::{NodeId, Ticket};
use crate::queue::Woken;
use crate::sync::lock_std;
use crate::wire::{ErrorCode, Msg};

impl Shared {
    /// Answers granted waits.
    pub(super) fn notify(&self, woken: Vec<Woken>) {
        if woken.is_empty() {
            return;
        }
        let mut waits = lock_std(&self.waits);
        for w in woken {
            if let Some(wait) = waits.remove(&w.ticket.id()) {
                wait.conn.send(
                    wait.request_id,
                    &Msg::Granted {
                        mode: w.held,
                        value: self.values.get(w.ticket.resource()),
                    },
                );
            }
        }
    }

    /// Answers waits withdrawn because `failed`'s new retained lock blocks
    /// them (see [`WaitPolicy::WaitForLive`](crate::WaitPolicy::WaitForLive)).
    pub(super) fn refuse_retained(&self, failed: NodeId, tickets: &[Ticket]) {
        let mut waits = lock_std(&self.waits);
        for t in tickets {
            if let Some(wait) = waits.remove(&t.id()) {
                let e = LockError::Retained {
                    node: failed,
                    resource: t.resource(),
                };
                wait.conn.send(wait.request_id, &lock_error(&e));
            }
        }
    }

    pub(super) fn forget_waits(&self, tickets: &[Ticket]) {
        let mut waits = lock_std(&self.waits);
        for t in tickets {
            waits.remove(&t.id());
        }
    }

    pub(super) fn expire_waits(&self, now: Instant) {
        let expired: Vec<Wait> = {
            let mut waits = lock_std(&self.waits);
            let ids: Vec<u64> = waits
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| waits.remove(&id)).collect()
        };
        for w in expired {
            let r = w.ticket.resource();
            self.withdraw(w, error_msg(ErrorCode::Timeout, 0, r, "lock wait timed out"));
        }
    }

    /// Withdraws a wait already taken out of `waits`: its request is
    /// cancelled and answered with `refusal` — unless a release granted it
    /// in the meantime, in which case `notify` found no wait to answer and
    /// the grant is answered here.
    fn withdraw(&self, w: Wait, refusal: Msg) {
        let out = self.table.cancel(w.ticket);
        if out.was_waiting {
            w.conn.send(w.request_id, &refusal);
        } else if let Some(mode) = self
            .table
            .locks_of(w.ticket.owner())
            .iter()
            .find(|(r, _)| *r == w.ticket.resource())
            .map(|(_, m)| *m)
        {
            w.conn.send(
                w.request_id,
                &Msg::Granted {
                    mode,
                    value: self.values.get(w.ticket.resource()),
                },
            );
        }
        self.notify(out.woken);
    }

    pub(super) fn break_deadlocks(&self) {
        // Each pass breaks one cycle; a few passes per tick clear more.
        for _ in 0..8 {
            let Some(d) = self.table.find_deadlock() else { return };
            tracing::info!(victim = ?d.victim, cycle = d.cycle.len(), "deadlock; aborting the youngest");
            for t in d.victim_tickets {
                // No entry: `notify` answered a grant, or the wait expired
                // and `expire_waits` withdrew it.
                let wait = lock_std(&self.waits).remove(&t.id());
                if let Some(w) = wait {
                    self.withdraw(w, error_msg(ErrorCode::Deadlock, 0, t.resource(), "deadlock victim"));
                }
            }
        }
    }
}
