//! The messages of the coordinator's wire protocol ([`Msg`]) and the
//! values they carry: why a node connects, how a recovery ended, the events
//! pushed to nodes, the typed error codes, a member's status and a held
//! lock.
//!
//! This file owns what a message says. It must never say how it is
//! encoded: `payload` encodes and decodes payloads, `frame` frames them.

use crate::ids::{NodeId, ResourceId};
use crate::mode::LockMode;

/// Why a node connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// Join as a normal member (refused while the node is failed and not
    /// yet recovered).
    Join = 1,
    /// Come back after a coordinator restart, keeping the incarnation and
    /// re-asserting held locks.
    Rejoin = 2,
    /// A failed node restarting to recover itself: it takes its retained
    /// locks back.
    Restart = 3,
    /// An operator tool: may query and file restart requests; holds no
    /// locks and is no member, so it cannot register as a counterpart (an
    /// operator's recovery joins as a member node instead).
    Operator = 4,
}

/// How a counterpart's recovery ended, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    Recovered = 1,
    Abandoned = 2,
}

/// Events the coordinator pushes to live nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// A node was declared failed (or lost its counterpart): its recovery is
    /// inactive and a counterpart may register.
    NodeFailed = 1,
    /// A failed node was recovered and its retained locks released.
    RecoveryFinished = 2,
    /// Someone asked for a restart of a failed node.
    RestartRequested = 3,
    /// A node joined.
    NodeJoined = 4,
}

/// Typed error codes of [`Msg::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    Malformed = 1,
    NotAuthenticated = 2,
    AuthFailed = 3,
    Conflict = 10,
    Retained = 11,
    Deadlock = 12,
    Timeout = 13,
    QueueFull = 14,
    NotHeld = 15,
    NodeFailed = 16,
    CoordinatorRecovering = 17,
    UnknownNode = 20,
    CallerIsFailedNode = 21,
    CallerNotLive = 22,
    NodeNotFailed = 23,
    AlreadyActive = 24,
    AlreadyRecovered = 25,
    NotCounterpart = 26,
    RecoveryInProgress = 27,
    AlreadyLive = 28,
    NotRecovered = 29,
    Refused = 30,
    Internal = 99,
}

/// One member as [`Msg::StatusReply`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub node: NodeId,
    /// 1 live, 2 failed.
    pub live: bool,
    pub incarnation: u64,
    /// 0 none or not failed, 1 inactive, 2 active, 3 recovered.
    pub recovery: u8,
    /// The counterpart, when recovery is active (else 0).
    pub counterpart: NodeId,
    pub retained_locks: u32,
}

/// A lock held by a node, as re-asserted after a coordinator restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    pub txn: u64,
    pub resource: ResourceId,
    pub mode: LockMode,
}

/// Every message of the protocol ([`VERSION`](super::VERSION)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    // ---- node → coordinator
    /// 0x01: the first frame on a connection.
    Hello {
        node: NodeId,
        purpose: Purpose,
        incarnation: u64,
        pid: u32,
    },
    /// 0x02: answer to the challenge: HMAC-SHA256(secret, nonce ‖ node id).
    AuthProof { mac: [u8; 32] },
    /// 0x03: renews the lease; answered with `Ok`.
    Heartbeat,
    /// 0x04: `wait_ms` 0 = fail at once, otherwise wait up to that long.
    /// `live_only` (one byte, 0 or 1): wait for live holders only — a
    /// retained lock in the way, now or later, refuses with `Retained`.
    Lock {
        txn: u64,
        resource: ResourceId,
        mode: LockMode,
        wait_ms: u32,
        live_only: bool,
    },
    /// 0x05
    Release { txn: u64, resource: ResourceId },
    /// 0x06: every lock of the transaction.
    ReleaseAll { txn: u64 },
    /// 0x07
    RegisterCounterpart { failed: NodeId },
    /// 0x08: `token` from the grant.
    UnregisterCounterpart {
        failed: NodeId,
        token: u64,
        outcome: Outcome,
    },
    /// 0x09: asks that `node` be restarted light. Announced to every member
    /// as a `RestartRequested` event now if the node has failed, otherwise
    /// when it fails; answered with `Ok`.
    RequestRestart { node: NodeId },
    /// 0x0A
    Status,
    /// 0x0B
    ListRetained { node: NodeId },
    /// 0x0C: locks the node holds, after a coordinator restart.
    Reassert { locks: Vec<HeldLock> },
    /// 0x0D: a restarting node finished backing out its own work; its
    /// reclaimed locks are released and it is recovered.
    RestartFinished,
    /// 0x0E: graceful departure: releases every lock; the node is not failed.
    Leave,

    // ---- coordinator → node
    /// 0x81
    Challenge { nonce: [u8; 32] },
    /// 0x82: the node is a member.
    Welcome {
        incarnation: u64,
        lease_ms: u32,
        heartbeat_ms: u32,
    },
    /// 0x83
    Ok,
    /// 0x84: the lock is held in `mode` (a conversion may give a stronger one).
    Granted { mode: LockMode },
    /// 0x85: `node`/`resource` say which, for `Retained` and the registry
    /// errors; zero otherwise.
    Error {
        code: ErrorCode,
        node: NodeId,
        resource: ResourceId,
        message: String,
    },
    /// 0x86
    CounterpartGrant {
        failed: NodeId,
        incarnation: u64,
        token: u64,
    },
    /// 0x87
    StatusReply { members: Vec<MemberInfo> },
    /// 0x88
    RetainedList { locks: Vec<(ResourceId, LockMode)> },
    /// 0x89: pushed, request id 0.
    Event {
        kind: EventKind,
        node: NodeId,
        incarnation: u64,
    },
}
