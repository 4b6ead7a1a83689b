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
    /// The failed node's work is backed out: its retained locks are
    /// released.
    Recovered = 1,
    /// The counterpart gave up: the recovery is inactive again, the locks
    /// stay retained, and another counterpart may register.
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
    /// An operator asks the node this event is sent to (only it) to
    /// recover failed node `node` ([`Msg::AskRecovery`]).
    RecoveryAsked = 5,
}

/// Typed error codes of [`Msg::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame is not a valid frame or no request (the connection is
    /// closed after this answer), or the handshake was sent again.
    Malformed = 1,
    /// A request came before the handshake was done (the connection is
    /// closed).
    NotAuthenticated = 2,
    /// The proof does not show the cluster secret (the connection is
    /// closed).
    AuthFailed = 3,
    /// The lock is not available at once ([`crate::LockError::Conflict`]),
    /// or a re-asserted lock conflicts (`resource` names the first).
    Conflict = 10,
    /// A failed node's retained lock is in the way, or its locks are
    /// unknown (`node` names it).
    Retained = 11,
    /// The waiting request's owner was chosen as a deadlock's victim.
    Deadlock = 12,
    /// The lock was not granted within the request's wait.
    Timeout = 13,
    /// Too many requests wait for the resource.
    QueueFull = 14,
    /// The owner holds no lock on the resource it released.
    NotHeld = 15,
    /// The requesting node has been declared failed.
    NodeFailed = 16,
    /// The coordinator restarted and grants nothing until the nodes that
    /// were live have re-asserted their locks.
    CoordinatorRecovering = 17,
    /// [`crate::RegistryError::UnknownNode`].
    UnknownNode = 20,
    /// [`crate::RegistryError::CallerIsFailedNode`].
    CallerIsFailedNode = 21,
    /// [`crate::RegistryError::CallerNotLive`].
    CallerNotLive = 22,
    /// [`crate::RegistryError::NodeNotFailed`].
    NodeNotFailed = 23,
    /// [`crate::RegistryError::AlreadyActive`] (`node` names the
    /// counterpart).
    AlreadyActive = 24,
    /// [`crate::RegistryError::AlreadyRecovered`].
    AlreadyRecovered = 25,
    /// The caller holds no such registration
    /// ([`crate::RegistryError::NotCounterpart`]).
    NotCounterpart = 26,
    /// [`crate::RegistryError::RecoveryInProgress`] (`node` names the
    /// counterpart).
    RecoveryInProgress = 27,
    /// [`crate::RegistryError::AlreadyLive`], or a join of a node the
    /// coordinator waits for to rejoin after its restart.
    AlreadyLive = 28,
    /// A failed node not yet recovered asked to join; it must restart to
    /// recover itself.
    NotRecovered = 29,
    /// Any other refusal by the membership rules (the message says which).
    Refused = 30,
    /// A restart request no live node can act on: none launches restarts
    /// (`node` names the node to restart).
    NoRestarter = 31,
    /// An internal failure of the coordinator; reserved, none is sent.
    Internal = 99,
}

/// One member as [`Msg::StatusReply`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member.
    pub node: NodeId,
    /// Whether it is live (on the wire one byte: 1 live, 0 failed).
    pub live: bool,
    /// Its current (or last, if failed) incarnation.
    pub incarnation: u64,
    /// 0 none or not failed, 1 inactive, 2 active, 3 recovered.
    pub recovery: u8,
    /// The counterpart, when recovery is active (else 0).
    pub counterpart: NodeId,
    /// How many of its locks are retained.
    pub retained_locks: u32,
}

/// A lock held by a node, as re-asserted after a coordinator restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The node's transaction that holds it.
    pub txn: u64,
    /// The resource locked.
    pub resource: ResourceId,
    /// The mode held.
    pub mode: LockMode,
}

/// Every message of the protocol ([`VERSION`](super::VERSION)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    // ---- node → coordinator
    /// 0x01: the first frame on a connection.
    Hello {
        /// The node connecting.
        node: NodeId,
        /// Why it connects.
        purpose: Purpose,
        /// For `Rejoin`, the incarnation it had; otherwise 0.
        incarnation: u64,
        /// The node's process id (for information: the coordinator does not
        /// use it).
        pid: u32,
        /// Whether the node launches restarts of failed nodes (restart
        /// requests go to such a node); one byte, 0 or 1.
        launches_restarts: bool,
    },
    /// 0x02: answer to the challenge: HMAC-SHA256(secret, nonce ‖ node id).
    AuthProof {
        /// The HMAC (see [`crate::auth`]).
        mac: [u8; 32],
    },
    /// 0x03: renews the lease; answered with `Ok`.
    Heartbeat,
    /// 0x04: `wait_ms` 0 = fail at once, otherwise wait up to that long.
    /// `live_only` (one byte, 0 or 1): wait for live holders only — a
    /// retained lock in the way, now or later, refuses with `Retained`.
    Lock {
        /// The node's transaction asking.
        txn: u64,
        /// The resource to lock.
        resource: ResourceId,
        /// The mode asked for (a conversion if the transaction holds the
        /// resource already).
        mode: LockMode,
        /// How long to wait, in milliseconds; 0 fails at once.
        wait_ms: u32,
        /// Wait for live holders only.
        live_only: bool,
    },
    /// 0x05: releases one lock (or withdraws the wait for it).
    Release {
        /// The node's transaction releasing.
        txn: u64,
        /// The resource released.
        resource: ResourceId,
    },
    /// 0x06: every lock of the transaction.
    ReleaseAll {
        /// The node's transaction releasing.
        txn: u64,
    },
    /// 0x07: asks to become the counterpart of a failed node.
    RegisterCounterpart {
        /// The failed node to recover.
        failed: NodeId,
    },
    /// 0x08: ends a registration.
    UnregisterCounterpart {
        /// The failed node.
        failed: NodeId,
        /// The token of the grant.
        token: u64,
        /// How the recovery ended.
        outcome: Outcome,
        /// With `Recovered`: the value each resource holds once the
        /// recovery is done (the stamps of the pages it read and put back),
        /// set as the failed node's retained locks go; the values of the
        /// other resources it retained become unknown. Only resources the
        /// failed node retained in X mode are taken. See `server::values`.
        values: Vec<(ResourceId, u128)>,
    },
    /// 0x09: asks that `node` be restarted light. Announced to every member
    /// as a `RestartRequested` event now if the node has failed, otherwise
    /// when it fails; answered with `Ok`.
    RequestRestart {
        /// The node to restart.
        node: NodeId,
    },
    /// 0x0A: asks for every member and its state (`StatusReply`).
    Status,
    /// 0x0B: asks for a failed node's retained locks (`RetainedList`).
    ListRetained {
        /// The failed node.
        node: NodeId,
    },
    /// 0x0C: locks the node holds, after a coordinator restart.
    Reassert {
        /// Every lock the node holds.
        locks: Vec<HeldLock>,
    },
    /// 0x0D: a restarting node finished backing out its own work; its
    /// reclaimed locks are released and it is recovered.
    RestartFinished,
    /// 0x0E: graceful departure: releases every lock; the node is not failed.
    Leave,
    /// 0x0F: the counterpart of a failed node whose locks were unknown
    /// ("blind") tells what its log says the node held: the write locks of
    /// every page its in-flight transactions changed. They become the
    /// node's retained locks, and the cluster need not pause for it any
    /// more; answered with `Ok`.
    RebuildRetained {
        /// The failed node.
        failed: NodeId,
        /// The token of the counterpart's grant.
        token: u64,
        /// Each lock's resource and mode.
        locks: Vec<(ResourceId, LockMode)>,
    },
    /// 0x10: an operator asks live node `by` to recover failed node
    /// `failed` (a `RecoveryAsked` event to `by` alone); answered with `Ok`
    /// once it is sent.
    AskRecovery {
        /// The failed node to recover.
        failed: NodeId,
        /// The live node to recover it.
        by: NodeId,
    },
    /// 0x20: lock value blocks the sender sets, each for a resource it
    /// holds in X mode (sent just before the release that lets them go);
    /// never answered. See `server::values`.
    Publish {
        /// Each resource and its new value.
        values: Vec<(ResourceId, u128)>,
    },

    // ---- coordinator → node
    /// 0x81: the answer to `Hello`.
    Challenge {
        /// Fresh random bytes to prove the secret on.
        nonce: [u8; 32],
    },
    /// 0x82: the node is a member.
    Welcome {
        /// The node's incarnation (0 for an operator).
        incarnation: u64,
        /// How long a lease lasts after the heartbeat that renewed it, in
        /// milliseconds.
        lease_ms: u32,
        /// How often to send heartbeats, in milliseconds.
        heartbeat_ms: u32,
        /// The coordinator's word that this incarnation of the node may
        /// open its own log for writing (`wal::access`); zeros for an
        /// operator.
        log_proof: [u8; 32],
    },
    /// 0x83: the request was done.
    Ok,
    /// 0x84: the lock is held in `mode` (a conversion may give a stronger one).
    Granted {
        /// The mode now held.
        mode: LockMode,
        /// The resource's lock value block, if one is known.
        value: Option<u128>,
    },
    /// 0x85: `node`/`resource` say which, for `Retained` and the registry
    /// errors; zero otherwise.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// The node it is about, or 0.
        node: NodeId,
        /// The resource it is about, or space 0 id 0.
        resource: ResourceId,
        /// Words for people; at most 4096 bytes are sent.
        message: String,
    },
    /// 0x86: the registration as counterpart.
    CounterpartGrant {
        /// The failed node to recover.
        failed: NodeId,
        /// Its incarnation that died.
        incarnation: u64,
        /// Names the registration when it is ended.
        token: u64,
        /// The failed node's locks are unknown (it failed while no
        /// coordinator knew them): the counterpart rebuilds them from its
        /// log ([`Msg::RebuildRetained`]). One byte, 0 or 1.
        blind: bool,
        /// The coordinator's word that this counterpart may open the failed
        /// node's log for recovery (`wal::access`).
        log_proof: [u8; 32],
    },
    /// 0x87: the answer to `Status`.
    StatusReply {
        /// Every member.
        members: Vec<MemberInfo>,
    },
    /// 0x88: the answer to `ListRetained`.
    RetainedList {
        /// Each retained lock's resource and mode.
        locks: Vec<(ResourceId, LockMode)>,
    },
    /// 0x89: pushed, request id 0.
    Event {
        /// What happened.
        kind: EventKind,
        /// The node it happened to.
        node: NodeId,
        /// That node's incarnation it happened to.
        incarnation: u64,
    },
}
