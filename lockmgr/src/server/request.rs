//! The request table: which handler answers which request of an admitted
//! connection.
//!
//! This file only dispatches. Each family of requests has its handler in
//! the file of its concept — `connection` (heartbeats), `locks`,
//! `counterparts` (and asked recoveries), `restarts`, `grace`
//! (re-assertion), `rebuild` (a blind node's locks), `status`,
//! `departures` (leaving), `admission` (a repeated handshake) — and this
//! file must never grow the handling of one itself; it refuses only a frame
//! that is no request.

use std::sync::Arc;

use super::conn::Conn;
use super::refusal::{error_msg, NO_RESOURCE};
use super::session::{Admitted, Request};
use super::state::Shared;
use crate::wire::{ErrorCode, Msg};

impl Shared {
    /// Handles one request; `false` closes the connection.
    pub(super) fn request(&self, conn: &Arc<Conn>, who: &Admitted, id: u64, msg: Msg) -> bool {
        let req = Request::new(conn, who, id);
        match msg {
            Msg::Heartbeat => self.on_heartbeat(&req),
            Msg::Lock {
                txn,
                resource,
                mode,
                wait_ms,
                live_only,
            } => self.on_lock(&req, txn, resource, mode, wait_ms, live_only),
            Msg::Release { txn, resource } => self.on_release(&req, txn, resource),
            Msg::ReleaseAll { txn } => self.on_release_all(&req, txn),
            Msg::RegisterCounterpart { failed } => self.on_register_counterpart(&req, failed),
            Msg::UnregisterCounterpart {
                failed,
                token,
                outcome,
                values,
            } => self.on_unregister_counterpart(&req, failed, token, outcome, values),
            Msg::RequestRestart { node } => self.on_request_restart(&req, node),
            Msg::RestartFinished => self.on_restart_finished(&req),
            Msg::Status => self.on_status(&req),
            Msg::ListRetained { node } => self.on_list_retained(&req, node),
            Msg::Reassert { locks } => self.on_reassert(&req, locks),
            Msg::RebuildRetained { failed, token, locks } => self.on_rebuild_retained(&req, failed, token, &locks),
            Msg::AskRecovery { failed, by } => self.on_ask_recovery(&req, failed, by),
            Msg::Leave => return self.on_leave(&req),
            Msg::Publish { values } => self.on_publish(&req, values),
            Msg::Hello { .. } | Msg::AuthProof { .. } => self.on_handshake_again(&req),
            _ => {
                req.reply(error_msg(ErrorCode::Malformed, req.node, NO_RESOURCE, "not a request"));
                return false;
            }
        }
        true
    }
}
