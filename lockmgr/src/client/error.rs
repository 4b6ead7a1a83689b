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
    Retained { node: NodeId, resource: ResourceId },
    #[error("{resource:?} is locked in a conflicting mode")]
    Conflict { resource: ResourceId },
    #[error("deadlock: this transaction was chosen as the victim")]
    Deadlock { resource: ResourceId },
    #[error("lock wait on {resource:?} timed out")]
    Timeout { resource: ResourceId },
    #[error("the coordinator restarted and is waiting for nodes to re-assert their locks; retry")]
    CoordinatorRecovering,
    #[error("authentication failed: wrong cluster secret")]
    AuthFailed,
    /// Refused by the registry or membership rules; `code` says which.
    #[error("refused ({code:?}, node {node}): {message}")]
    Refused {
        code: ErrorCode,
        node: NodeId,
        message: String,
    },
    #[error("the lease lapsed; this node must not write")]
    LeaseLost,
    #[error("disconnected from the coordinator")]
    Disconnected,
    #[error("cannot reach the coordinator at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
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

pub(super) fn unexpected(m: Msg) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {m:?}"))
}
