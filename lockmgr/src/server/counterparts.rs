//! Counterpart requests: `RegisterCounterpart` hands a live node the grant
//! for a failed node's recovery (with the proof that opens its log, see
//! `wal::access`); `UnregisterCounterpart` ends it, and a recovery that
//! succeeded releases the failed node's retained locks; `AskRecovery` has
//! an operator ask a live node to recover a failed one.
//!
//! This file owns the grants handed out. It must never release retained
//! locks but on the registry's word ([`RetainedLocks::Release`]), and never
//! hand out a grant the registry did not make.

use super::refusal::{error_msg, registry_error, NO_RESOURCE};
use super::session::Request;
use super::state::Shared;
use crate::ids::{NodeId, ResourceId};
use crate::membership::Liveness;
use crate::mode::LockMode;
use crate::registry::{AuthState, Grant, RecoveryOutcome, RecoveryStatus, RetainedLocks};
use crate::sync::lock_std;
use crate::wire::{ErrorCode, EventKind, Msg, Outcome};

impl Shared {
    /// The grant handed out for `failed`'s recovery if there is one and
    /// `accept` takes it; else the request is answered `NotCounterpart`.
    pub(super) fn registration(&self, req: &Request, failed: NodeId, accept: impl Fn(&Grant) -> bool) -> Option<Grant> {
        let grant = lock_std(&self.grants).get(&failed).copied().filter(accept);
        if grant.is_none() {
            req.reply(error_msg(
                ErrorCode::NotCounterpart,
                failed,
                NO_RESOURCE,
                "no such registration",
            ));
        }
        grant
    }

    /// `RegisterCounterpart`: the grant, or the registry's refusal.
    pub(super) fn on_register_counterpart(&self, req: &Request, failed: NodeId) {
        let auth = if req.member.is_some() {
            AuthState::Authenticated
        } else {
            AuthState::Unauthenticated
        };
        match self.registry.register_counterpart(req.node, auth, failed) {
            Ok(grant) => {
                lock_std(&self.grants).insert(failed, grant);
                let blind = lock_std(&self.blind).contains(&failed);
                let proof = self.cfg.secret.log_key().sign(
                    failed,
                    wal::Role::Counterpart,
                    req.node,
                    grant.incarnation(),
                    grant.token(),
                );
                // Not written to the durable record: a restarted
                // coordinator restores an active registration as
                // inactive anyway (its counterpart's connection is
                // gone), so the write would buy nothing and compete
                // with the counterpart's own syncs.
                req.reply(Msg::CounterpartGrant {
                    failed,
                    incarnation: grant.incarnation(),
                    token: grant.token(),
                    blind,
                    log_proof: proof.mac,
                });
            }
            Err(e) => req.reply(registry_error(&e)),
        }
    }

    /// `UnregisterCounterpart` with the grant's `token`.
    pub(super) fn on_unregister_counterpart(
        &self,
        req: &Request,
        failed: NodeId,
        token: u64,
        outcome: Outcome,
        values: Vec<(ResourceId, u128)>,
    ) {
        let Some(grant) = self.registration(req, failed, |g| g.token() == token) else {
            return;
        };
        let outcome = match outcome {
            Outcome::Recovered => RecoveryOutcome::Recovered,
            Outcome::Abandoned => RecoveryOutcome::Abandoned,
        };
        match self
            .registry
            .unregister_counterpart(req.node, AuthState::Authenticated, &grant, outcome)
        {
            Ok(locks) => {
                lock_std(&self.grants).remove(&failed);
                if locks == RetainedLocks::Release {
                    // Answered and granted before the record is
                    // durable: the recovery's end records already
                    // are, so its retained locks are free, and a
                    // record that outlives this one only holds
                    // locks back that a restarted coordinator then
                    // drops on evidence or frees after a recovery
                    // that finds nothing to do (see `Reassert`).
                    // Its recovery rewrote pages, and writes it made before
                    // it died were never published: every value of what
                    // it held is unknown now, but for those the recovery
                    // read and put back itself and publishes here — of
                    // resources the failed node held in X mode, which no
                    // one else could have written since.
                    let retained = self.table.retained(failed);
                    self.values.forget(retained.iter().map(|(r, _)| *r));
                    let exclusive: std::collections::HashSet<ResourceId> = retained
                        .iter()
                        .filter(|(_, mode)| *mode == LockMode::X)
                        .map(|(r, _)| *r)
                        .collect();
                    for (resource, value) in values {
                        if exclusive.contains(&resource) {
                            self.values.set(resource, value);
                        } else {
                            tracing::warn!(
                                counterpart = req.node,
                                failed,
                                ?resource,
                                "a value published for a resource the failed node did not hold in X mode is ignored"
                            );
                        }
                    }
                    let woken = self.table.release_retained(failed);
                    lock_std(&self.blind).remove(&failed);
                    lock_std(&self.restart_wanted).remove(&failed);
                    self.notify(woken);
                    req.reply(Msg::Ok);
                    self.broadcast(EventKind::RecoveryFinished, failed, grant.incarnation());
                    self.persist();
                } else {
                    self.persist();
                    req.reply(Msg::Ok);
                    // Inactive again: invite another counterpart.
                    self.broadcast(EventKind::NodeFailed, failed, grant.incarnation());
                }
            }
            Err(e) => req.reply(registry_error(&e)),
        }
    }
}

impl Shared {
    /// `AskRecovery`: `by`, a live member, is asked to recover `failed` (an
    /// event to it alone); refused at once, saying why, when `by` is not
    /// live or `failed` has nothing to recover or a counterpart already.
    pub(super) fn on_ask_recovery(&self, req: &Request, failed: NodeId, by: NodeId) {
        let refuse = |code, node, why: String| req.reply(error_msg(code, node, NO_RESOURCE, why));
        let Some(session) = lock_std(&self.sessions).get(&by).cloned() else {
            return refuse(ErrorCode::CallerNotLive, by, format!("node {by} is not live"));
        };
        match self.registry.status(failed) {
            None => refuse(ErrorCode::UnknownNode, failed, format!("node {failed} never joined")),
            Some(s) if s.liveness == Liveness::Live => {
                refuse(ErrorCode::NodeNotFailed, failed, format!("node {failed} is live"))
            }
            Some(s) => match s.recovery {
                Some(RecoveryStatus::Recovered) | None => refuse(
                    ErrorCode::AlreadyRecovered,
                    failed,
                    format!("node {failed} has nothing to recover"),
                ),
                Some(RecoveryStatus::Active { counterpart }) => refuse(
                    ErrorCode::AlreadyActive,
                    counterpart,
                    format!("node {counterpart} is recovering node {failed} already"),
                ),
                Some(RecoveryStatus::Inactive) if by == failed => refuse(
                    ErrorCode::CallerIsFailedNode,
                    failed,
                    "a node does not recover itself as a peer".into(),
                ),
                Some(RecoveryStatus::Inactive) => {
                    session.conn.send(
                        0,
                        &Msg::Event {
                            kind: EventKind::RecoveryAsked,
                            node: failed,
                            incarnation: s.incarnation,
                        },
                    );
                    req.reply(Msg::Ok);
                }
            },
        }
    }
}
