//! The errors of coordinator requests ([`ClientError`]), and how a reply
//! becomes one.
//!
//! This file owns the mapping from the coordinator's error codes to typed
//! errors; it must never retry or hide a refusal.

use crate::ids::{NodeId, ResourceId};
use crate::wire::{ErrorCode, Msg};

/// Errors of coordinator requests.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The resource is locked by failed node `node` until it is recovered.
    #[error("{resource:?} is retained by failed node {node}")]
    Retained {
        /// The failed node whose retained lock is in the way, or whose
        /// locks are unknown.
        node: NodeId,
        /// The resource asked for.
        resource: ResourceId,
    },
    /// The lock could not be granted at once: a live owner holds it in a
    /// conflicting mode, or others already wait for it.
    #[error("{resource:?} is locked in a conflicting mode")]
    Conflict {
        /// The resource asked for (for a re-assertion, the first one
        /// refused).
        resource: ResourceId,
    },
    /// The request's transaction was chosen as a deadlock's victim; it
    /// should abort, releasing its locks.
    #[error("deadlock: this transaction was chosen as the victim")]
    Deadlock {
        /// The resource the victim waited for.
        resource: ResourceId,
    },
    /// The lock was not granted within the request's wait.
    #[error("lock wait on {resource:?} timed out")]
    Timeout {
        /// The resource waited for.
        resource: ResourceId,
    },
    /// The coordinator restarted and grants no lock until the nodes that
    /// were live have re-asserted theirs (or its grace period is over).
    #[error("the coordinator restarted and is waiting for nodes to re-assert their locks; retry")]
    CoordinatorRecovering,
    /// The coordinator refused the proof: the node does not hold the
    /// cluster secret.
    #[error("authentication failed: wrong cluster secret")]
    AuthFailed,
    /// Refused by the registry or membership rules; `code` says which.
    #[error("refused ({code:?}, node {node}): {message}")]
    Refused {
        /// Which rule refused.
        code: ErrorCode,
        /// The node the refusal is about (0 when none).
        node: NodeId,
        /// The coordinator's words, for people.
        message: String,
    },
    /// The lease lapsed: the node must not write.
    #[error("the lease lapsed; this node must not write")]
    LeaseLost,
    /// The connection to the coordinator is gone (or was never usable).
    #[error("disconnected from the coordinator")]
    Disconnected,
    /// The coordinator could not be reached at all.
    #[error("cannot reach the coordinator at {endpoint}: {message}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// Why it could not be reached.
        message: String,
    },
    /// The coordinator answered what the protocol does not allow there, or
    /// did not answer within the reply timeout.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The typed error an `Error` reply carries.
    fn from_reply(code: ErrorCode, node: NodeId, resource: ResourceId, message: String) -> ClientError {
        match code {
            ErrorCode::Retained => ClientError::Retained { node, resource },
            ErrorCode::Conflict => ClientError::Conflict { resource },
            ErrorCode::Deadlock => ClientError::Deadlock { resource },
            ErrorCode::Timeout => ClientError::Timeout { resource },
            ErrorCode::CoordinatorRecovering => ClientError::CoordinatorRecovering,
            ErrorCode::AuthFailed => ClientError::AuthFailed,
            code => ClientError::Refused { code, node, message },
        }
    }
}

/// An `Error` frame as the typed refusal it carries; any other reply as is.
pub(super) fn refusal(m: Msg) -> Result<Msg, ClientError> {
    match m {
        Msg::Error {
            code,
            node,
            resource,
            message,
        } => Err(ClientError::from_reply(code, node, resource, message)),
        other => Ok(other),
    }
}

/// A reply that is not the one the request calls for.
pub(super) fn unexpected(m: Msg) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {m:?}"))
}
