//! Refusals as the wire carries them: the `Error` message for a lock table
//! or registry error, with its typed code and the ids it names.
//!
//! This file owns the mapping from the crate's errors to wire error codes;
//! it must never decide whether to refuse, nor send anything.

use crate::error::{LockError, RegistryError};
use crate::ids::{NodeId, ResourceId};
use crate::wire::{ErrorCode, Msg};

/// The resource an error names when it is about none.
pub(super) const NO_RESOURCE: ResourceId = ResourceId::new(0, 0);

pub(super) fn error_msg(code: ErrorCode, node: NodeId, resource: ResourceId, message: impl Into<String>) -> Msg {
    Msg::Error {
        code,
        node,
        resource,
        message: message.into(),
    }
}

pub(super) fn lock_error(e: &LockError) -> Msg {
    let (code, node, resource) = match *e {
        LockError::Conflict { resource, .. } => (ErrorCode::Conflict, 0, resource),
        LockError::Retained { node, resource, .. } => (ErrorCode::Retained, node, resource),
        LockError::QueueFull { resource, .. } => (ErrorCode::QueueFull, 0, resource),
        LockError::NotHeld { resource, .. } => (ErrorCode::NotHeld, 0, resource),
        LockError::NodeFailed { node, .. } => (ErrorCode::NodeFailed, node, NO_RESOURCE),
        _ => (ErrorCode::Refused, 0, NO_RESOURCE),
    };
    error_msg(code, node, resource, e.to_string())
}

pub(super) fn registry_error(e: &RegistryError) -> Msg {
    let (code, node) = match *e {
        RegistryError::NotAuthenticated => (ErrorCode::NotAuthenticated, 0),
        RegistryError::UnknownNode { node } => (ErrorCode::UnknownNode, node),
        RegistryError::CallerIsFailedNode { node } => (ErrorCode::CallerIsFailedNode, node),
        RegistryError::CallerNotLive { caller } => (ErrorCode::CallerNotLive, caller),
        RegistryError::NodeNotFailed { node } => (ErrorCode::NodeNotFailed, node),
        RegistryError::AlreadyActive { counterpart, .. } => (ErrorCode::AlreadyActive, counterpart),
        RegistryError::AlreadyRecovered { node } => (ErrorCode::AlreadyRecovered, node),
        RegistryError::NotCounterpart { failed, .. } => (ErrorCode::NotCounterpart, failed),
        RegistryError::RecoveryInProgress { counterpart, .. } => (ErrorCode::RecoveryInProgress, counterpart),
        RegistryError::AlreadyLive { node } => (ErrorCode::AlreadyLive, node),
        _ => (ErrorCode::Refused, 0),
    };
    error_msg(code, node, NO_RESOURCE, e.to_string())
}
