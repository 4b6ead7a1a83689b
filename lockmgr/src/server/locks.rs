//! Lock requests: `Lock`, `Release` and `ReleaseAll` against the lock
//! table; a queued `Lock` leaves a [`Wait`] behind. `Publish` sets the lock
//! value blocks of resources the sender holds in X mode (`values`).
//!
//! This file owns the translation of a lock request into a table call and
//! its answer. It must never answer a queued request itself (`waits` does,
//! when it is granted, expires or is chosen as a deadlock victim), and never
//! grant past the restart gate (`grace`).

use std::time::{Duration, Instant};

use super::refusal::{error_msg, lock_error};
use super::session::Request;
use super::state::{Shared, Wait};
use crate::ids::{HolderId, Owner, ResourceId};
use crate::mode::LockMode;
use crate::queue::{RequestOutcome, WaitPolicy};
use crate::sync::lock_std;
use crate::wire::{ErrorCode, Msg};

impl Shared {
    /// `Lock`: granted, queued (answered later) or refused at once.
    pub(super) fn on_lock(
        &self,
        req: &Request,
        txn: u64,
        resource: ResourceId,
        mode: LockMode,
        wait_ms: u32,
        live_only: bool,
    ) {
        if req.member.is_none() {
            req.reply(error_msg(
                ErrorCode::Refused,
                req.node,
                resource,
                "operators hold no locks",
            ));
        } else if let Some(m) = self.lock_gate(resource) {
            req.reply(m);
        } else {
            let policy = match (wait_ms, live_only) {
                (0, _) => WaitPolicy::NoWait,
                (_, false) => WaitPolicy::Wait,
                (_, true) => WaitPolicy::WaitForLive,
            };
            // The wait is recorded before anyone can grant it: a
            // release's `notify` takes this map's lock after the table
            // is updated, so it cannot miss the entry.
            let mut waits = lock_std(&self.waits);
            match self.table.request(Owner::new(req.node, txn), resource, mode, policy) {
                Ok(RequestOutcome::Granted { held }) => {
                    drop(waits);
                    req.reply(Msg::Granted {
                        mode: held,
                        value: self.values.get(resource),
                    })
                }
                Ok(RequestOutcome::Queued(ticket)) => {
                    waits.insert(
                        ticket.id(),
                        Wait {
                            ticket,
                            conn: req.conn.clone(),
                            request_id: req.id,
                            deadline: Instant::now() + Duration::from_millis(wait_ms as u64),
                        },
                    );
                }
                Err(e) => {
                    drop(waits);
                    req.reply(lock_error(&e))
                }
            }
        }
    }

    /// `Release` of one lock; answered unless sent with `NO_REPLY`.
    pub(super) fn on_release(&self, req: &Request, txn: u64, resource: ResourceId) {
        match self.table.release(Owner::new(req.node, txn), resource) {
            Ok(woken) => {
                self.notify(woken);
                if req.wants_reply() {
                    req.reply(Msg::Ok);
                }
            }
            Err(e) if req.wants_reply() => req.reply(lock_error(&e)),
            Err(_) => {}
        }
    }

    /// `ReleaseAll` of a transaction's locks; answered unless sent with
    /// `NO_REPLY`.
    pub(super) fn on_release_all(&self, req: &Request, txn: u64) {
        let woken = self.table.release_all(Owner::new(req.node, txn));
        self.notify(woken);
        if req.wants_reply() {
            req.reply(Msg::Ok);
        }
    }

    /// `Publish`: the sender's values, each for a resource it holds in X
    /// mode; never answered. A value for a resource it does not hold so is
    /// ignored (and logged): only the writer may say what it wrote.
    pub(super) fn on_publish(&self, req: &Request, values: Vec<(ResourceId, u128)>) {
        for (resource, value) in values {
            let held_x = self.table.snapshot(resource).is_some_and(|s| {
                s.holders
                    .iter()
                    .any(|h| h.mode == LockMode::X && matches!(h.holder, HolderId::Owner(o) if o.node == req.node))
            });
            if held_x {
                self.values.set(resource, value);
            } else {
                tracing::warn!(
                    node = req.node,
                    ?resource,
                    "a value published without the X lock is ignored"
                );
            }
        }
    }
}
