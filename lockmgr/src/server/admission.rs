//! Admission of a connection: `Hello`, the challenge, the proof
//! ([`crate::auth`]), then the membership rules for joining, restarting and
//! rejoining; the answer to a handshake frame sent again later.
//!
//! This file decides what a connection is admitted as ([`Admitted`]). It must
//! never admit anything before a valid proof, nor let an event reach a node
//! before its `Welcome`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::refusal::{error_msg, registry_error, NO_RESOURCE};
use super::restarts::RESTART_TXN;
use super::session::{Admitted, Heard, Request, Session};
use super::state::Shared;
use crate::auth;
use crate::ids::{NodeId, Owner};
use crate::membership::Liveness;
use crate::registry::RecoveryStatus;
use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, ErrorCode, EventKind, Msg, Purpose};

/// How long a connection may take to authenticate.
pub(super) const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

impl Shared {
    /// Hello, challenge, proof, admission. `None` closes the connection.
    pub(super) fn handshake(&self, conn: &Arc<Conn>, reader: &mut Stream) -> Option<Admitted> {
        let (hello_id, node, purpose, incarnation, launches_restarts) = match wire::read_frame(reader) {
            Ok(Some((
                id,
                Msg::Hello {
                    node,
                    purpose,
                    incarnation,
                    launches_restarts,
                    ..
                },
            ))) => (id, node, purpose, incarnation, launches_restarts),
            Ok(Some((id, _))) => {
                conn.send(
                    id,
                    &error_msg(ErrorCode::NotAuthenticated, 0, NO_RESOURCE, "authenticate first"),
                );
                return None;
            }
            Ok(None) | Err(wire::FrameReadError::Io(_)) => return None,
            Err(wire::FrameReadError::Wire(e)) => {
                conn.send(0, &error_msg(ErrorCode::Malformed, 0, NO_RESOURCE, e.to_string()));
                return None;
            }
        };
        let nonce = auth::nonce();
        conn.send(hello_id, &Msg::Challenge { nonce });
        match wire::read_frame(reader) {
            Ok(Some((id, Msg::AuthProof { mac }))) => {
                if !self.cfg.secret.verify(&nonce, node, &mac) {
                    tracing::warn!(node, "authentication failed");
                    conn.send(
                        id,
                        &error_msg(ErrorCode::AuthFailed, node, NO_RESOURCE, "authentication failed"),
                    );
                    return None;
                }
                self.admit(conn, id, node, purpose, incarnation, launches_restarts)
            }
            Ok(Some((id, _))) => {
                conn.send(
                    id,
                    &error_msg(ErrorCode::NotAuthenticated, 0, NO_RESOURCE, "expected the proof"),
                );
                None
            }
            Ok(None) | Err(wire::FrameReadError::Io(_)) => None,
            Err(wire::FrameReadError::Wire(e)) => {
                conn.send(0, &error_msg(ErrorCode::Malformed, 0, NO_RESOURCE, e.to_string()));
                None
            }
        }
    }

    /// Admits `node` for `purpose` on `conn` (its proof checked, or a node
    /// in this process), answering request `id` with the `Welcome` or the
    /// refusal. `None`: refused.
    pub(super) fn admit(
        &self,
        conn: &Arc<Conn>,
        id: u64,
        node: NodeId,
        purpose: Purpose,
        incarnation: u64,
        launches_restarts: bool,
    ) -> Option<Admitted> {
        let refuse = |msg: Msg| {
            conn.send(id, &msg);
            None
        };
        if purpose == Purpose::Operator {
            conn.send(id, &self.welcome(node, 0, false));
            return Some(Admitted::Operator { node });
        }
        let mut member_guard = None;
        let status = self.registry.status(node);
        let incarnation = match purpose {
            Purpose::Rejoin => {
                // Stays in the awaited set until its `Reassert` arrives: until
                // then its locks are not back and nothing else is granted.
                let awaiting = lock_std(&self.awaiting);
                let ok = status.is_some_and(|s| s.liveness == Liveness::Live && s.incarnation == incarnation)
                    && awaiting.0.contains(&node)
                    && !lock_std(&self.sessions).contains_key(&node);
                if !ok {
                    return refuse(error_msg(
                        ErrorCode::Refused,
                        node,
                        NO_RESOURCE,
                        "rejoin is only for live members after a coordinator restart",
                    ));
                }
                incarnation
            }
            Purpose::Join | Purpose::Restart => {
                if lock_std(&self.awaiting).0.contains(&node) {
                    return refuse(error_msg(
                        ErrorCode::AlreadyLive,
                        node,
                        NO_RESOURCE,
                        "node is live; after a coordinator restart use rejoin",
                    ));
                }
                member_guard = Some(lock_std(&self.member_changes));
                // Read again under the guard: a failure of the node being
                // declared this instant (`member_gone`) is then done or not
                // begun. Read before it, a node seen live could be failed in
                // between and then admitted to join, its in-flight work
                // never recovered.
                let status = self.registry.status(node);
                let unrecovered = status.is_some_and(|s| {
                    s.liveness == Liveness::Failed && !matches!(s.recovery, Some(RecoveryStatus::Recovered))
                });
                if unrecovered && purpose == Purpose::Join {
                    return refuse(error_msg(
                        ErrorCode::NotRecovered,
                        node,
                        NO_RESOURCE,
                        "node failed and is not recovered yet; restart it to recover itself",
                    ));
                }
                match self.registry.join(node) {
                    Ok(inc) => {
                        // Back: a restart it asked for is served.
                        lock_std(&self.restart_wanted).remove(&node);
                        inc
                    }
                    Err(e) => return refuse(registry_error(&e)),
                }
            }
            Purpose::Operator => unreachable!("handled above"),
        };
        self.table.node_joined(node);
        if purpose == Purpose::Restart {
            // The restarting node takes its retained locks back; it releases
            // them with RestartFinished once its own recovery is done.
            match self.table.reclaim_retained(node, Owner::new(node, RESTART_TXN)) {
                Ok(report) => self.notify(report.woken),
                Err(e) => tracing::error!(node, error = %e, "reclaiming retained locks failed"),
            }
        }
        self.persist();
        drop(member_guard);
        // Made after the record is written: a slow write must not count as
        // silence of the node (see `Session::last_heard`).
        let session = Arc::new(Session {
            conn: conn.clone(),
            incarnation,
            launches_restarts,
            last_heard: Mutex::new(Heard {
                since: Instant::now(),
                busy: 0,
            }),
        });
        // Welcome first, then the session becomes visible to broadcasts: no
        // event may reach a node before its welcome.
        conn.send(id, &self.welcome(node, incarnation, true));
        lock_std(&self.sessions).insert(node, session.clone());
        self.broadcast(EventKind::NodeJoined, node, incarnation);
        self.announce_to(node, &session);
        tracing::info!(node, incarnation, ?purpose, "node admitted");
        Some(Admitted::Member { node, session, purpose })
    }

    /// The `Welcome` of `node`'s admission as `incarnation` (0 for an
    /// operator), with this coordinator's timings and, for a `member`, its
    /// proof that this incarnation may open its own log.
    fn welcome(&self, node: NodeId, incarnation: u64, member: bool) -> Msg {
        let log_proof = if member {
            self.cfg
                .secret
                .log_key()
                .sign(node, wal::Role::Owner, node, incarnation, 0)
                .mac
        } else {
            [0; 32]
        };
        Msg::Welcome {
            incarnation,
            lease_ms: self.cfg.lease_ms,
            heartbeat_ms: self.cfg.heartbeat_ms,
            log_proof,
        }
    }

    /// `Hello` or `AuthProof` on an admitted connection.
    pub(super) fn on_handshake_again(&self, req: &Request) {
        req.reply(error_msg(
            ErrorCode::Malformed,
            req.node,
            NO_RESOURCE,
            "already authenticated",
        ));
    }
}
