//! The coordinator's wire format: framed, versioned, checksummed messages
//! between a node and the coordinator over one stream (Unix socket or TCP).
//!
//! ## Frame (version 1, integers little-endian)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 2 | magic `UQ` |
//! | 2  | 1 | protocol version (1) |
//! | 3  | 1 | message type (see [`Msg`]) |
//! | 4  | 4 | payload length, at most [`MAX_PAYLOAD`] |
//! | 8  | 8 | request id: chosen by the node, echoed in the reply; 0 for pushed events, and on a `Release` or `ReleaseAll` for "no reply wanted" |
//! | 16 | 4 | CRC32C of bytes 0..16 and of the payload |
//! | 20 | … | payload |
//!
//! Payload fields are fixed-width little-endian integers in the order the
//! [`Msg`] variant lists them; a list is a u32 count then its entries; a
//! string is a u32 length then UTF-8 bytes. Every length is checked against
//! the bytes present before anything is allocated, and a payload with bytes
//! left over is malformed. A malformed frame is answered with an error and
//! the connection is closed; nothing it asked for happens.
//!
//! Requests (node → coordinator) have types below 0x80, replies and events
//! (coordinator → node) from 0x80.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::ids::{NodeId, ResourceId};
use crate::mode::LockMode;

pub const MAGIC: [u8; 2] = *b"UQ";
/// 2: `Lock` carries `live_only`.
pub const VERSION: u8 = 2;
pub const HEADER_LEN: usize = 20;
/// The request id of a `Release` or `ReleaseAll` that wants no reply: a
/// node releasing a committed transaction's locks has nothing to learn from
/// the answer, and reading one costs it a wake-up per transaction.
pub const NO_REPLY: u64 = 0;
/// How much of the stream either end takes per read: frames a peer sent
/// together (pipelined requests, their held-back answers) are read with one
/// call.
pub const READ_BUFFER: usize = 16 << 10;
/// Largest payload: a status of thousands of nodes or a re-assertion of
/// thousands of locks fits; anything larger is refused unread.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Longest string in a payload.
const MAX_STRING: usize = 4096;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct FrameHeader {
    pub magic: [u8; 2],
    pub version: u8,
    pub msg_type: u8,
    pub payload_len: U32,
    pub request_id: U64,
    pub crc: U32,
}

const _: () = assert!(std::mem::size_of::<FrameHeader>() == HEADER_LEN);

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

impl ErrorCode {
    fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match v {
            1 => Malformed,
            2 => NotAuthenticated,
            3 => AuthFailed,
            10 => Conflict,
            11 => Retained,
            12 => Deadlock,
            13 => Timeout,
            14 => QueueFull,
            15 => NotHeld,
            16 => NodeFailed,
            17 => CoordinatorRecovering,
            20 => UnknownNode,
            21 => CallerIsFailedNode,
            22 => CallerNotLive,
            23 => NodeNotFailed,
            24 => AlreadyActive,
            25 => AlreadyRecovered,
            26 => NotCounterpart,
            27 => RecoveryInProgress,
            28 => AlreadyLive,
            29 => NotRecovered,
            30 => Refused,
            99 => Internal,
            _ => return None,
        })
    }
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

/// Every message of protocol version 1.
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

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("bad magic {0:?}")]
    BadMagic([u8; 2]),
    #[error("protocol version {0} is not supported")]
    BadVersion(u8),
    #[error("payload of {0} bytes exceeds the limit")]
    TooLarge(u32),
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn resource(&mut self, r: ResourceId) -> &mut Self {
        self.u32(r.space).u64(r.id)
    }
}

/// A bounds-checked reader over a payload.
struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed("payload too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn array32(&mut self) -> Result<[u8; 32], WireError> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
    fn resource(&mut self) -> Result<ResourceId, WireError> {
        Ok(ResourceId::new(self.u32()?, self.u64()?))
    }
    fn mode(&mut self) -> Result<LockMode, WireError> {
        LockMode::from_code(self.u8()?).ok_or(WireError::Malformed("unknown lock mode"))
    }
    /// A list count, checked against the bytes left so that a lying count
    /// cannot make the decoder allocate.
    fn count(&mut self, entry_len: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(entry_len) > self.0.len() {
            return Err(WireError::Malformed("list longer than the payload"));
        }
        Ok(n)
    }
    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_STRING {
            return Err(WireError::Malformed("string too long"));
        }
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| WireError::Malformed("string is not UTF-8"))
    }
    fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("bytes left after the message"))
        }
    }
}

impl Msg {
    pub fn type_code(&self) -> u8 {
        match self {
            Msg::Hello { .. } => 0x01,
            Msg::AuthProof { .. } => 0x02,
            Msg::Heartbeat => 0x03,
            Msg::Lock { .. } => 0x04,
            Msg::Release { .. } => 0x05,
            Msg::ReleaseAll { .. } => 0x06,
            Msg::RegisterCounterpart { .. } => 0x07,
            Msg::UnregisterCounterpart { .. } => 0x08,
            Msg::RequestRestart { .. } => 0x09,
            Msg::Status => 0x0A,
            Msg::ListRetained { .. } => 0x0B,
            Msg::Reassert { .. } => 0x0C,
            Msg::RestartFinished => 0x0D,
            Msg::Leave => 0x0E,
            Msg::Challenge { .. } => 0x81,
            Msg::Welcome { .. } => 0x82,
            Msg::Ok => 0x83,
            Msg::Granted { .. } => 0x84,
            Msg::Error { .. } => 0x85,
            Msg::CounterpartGrant { .. } => 0x86,
            Msg::StatusReply { .. } => 0x87,
            Msg::RetainedList { .. } => 0x88,
            Msg::Event { .. } => 0x89,
        }
    }

    fn payload(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        match self {
            Msg::Hello {
                node,
                purpose,
                incarnation,
                pid,
            } => {
                o.u32(*node).u8(*purpose as u8).u64(*incarnation).u32(*pid);
            }
            Msg::AuthProof { mac } => {
                o.bytes(mac);
            }
            Msg::Heartbeat | Msg::Status | Msg::RestartFinished | Msg::Leave | Msg::Ok => {}
            Msg::Lock {
                txn,
                resource,
                mode,
                wait_ms,
                live_only,
            } => {
                o.u64(*txn)
                    .resource(*resource)
                    .u8(mode.code())
                    .u32(*wait_ms)
                    .u8(u8::from(*live_only));
            }
            Msg::Release { txn, resource } => {
                o.u64(*txn).resource(*resource);
            }
            Msg::ReleaseAll { txn } => {
                o.u64(*txn);
            }
            Msg::RegisterCounterpart { failed } => {
                o.u32(*failed);
            }
            Msg::UnregisterCounterpart { failed, token, outcome } => {
                o.u32(*failed).u64(*token).u8(*outcome as u8);
            }
            Msg::RequestRestart { node } | Msg::ListRetained { node } => {
                o.u32(*node);
            }
            Msg::Reassert { locks } => {
                o.u32(locks.len() as u32);
                for l in locks {
                    o.u64(l.txn).resource(l.resource).u8(l.mode.code());
                }
            }
            Msg::Challenge { nonce } => {
                o.bytes(nonce);
            }
            Msg::Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms,
            } => {
                o.u64(*incarnation).u32(*lease_ms).u32(*heartbeat_ms);
            }
            Msg::Granted { mode } => {
                o.u8(mode.code());
            }
            Msg::Error {
                code,
                node,
                resource,
                message,
            } => {
                let msg = &message.as_bytes()[..message.len().min(MAX_STRING)];
                let msg = std::str::from_utf8(msg).unwrap_or("");
                o.u16(*code as u16).u32(*node).resource(*resource).u32(msg.len() as u32);
                o.bytes(msg.as_bytes());
            }
            Msg::CounterpartGrant {
                failed,
                incarnation,
                token,
            } => {
                o.u32(*failed).u64(*incarnation).u64(*token);
            }
            Msg::StatusReply { members } => {
                o.u32(members.len() as u32);
                for m in members {
                    o.u32(m.node)
                        .u8(m.live as u8)
                        .u64(m.incarnation)
                        .u8(m.recovery)
                        .u32(m.counterpart)
                        .u32(m.retained_locks);
                }
            }
            Msg::RetainedList { locks } => {
                o.u32(locks.len() as u32);
                for (r, m) in locks {
                    o.resource(*r).u8(m.code());
                }
            }
            Msg::Event {
                kind,
                node,
                incarnation,
            } => {
                o.u8(*kind as u8).u32(*node).u64(*incarnation);
            }
        }
        o.0
    }

    fn decode_payload(code: u8, p: &[u8]) -> Result<Msg, WireError> {
        let mut i = In(p);
        let msg = match code {
            0x01 => Msg::Hello {
                node: i.u32()?,
                purpose: match i.u8()? {
                    1 => Purpose::Join,
                    2 => Purpose::Rejoin,
                    3 => Purpose::Restart,
                    4 => Purpose::Operator,
                    _ => return Err(WireError::Malformed("unknown purpose")),
                },
                incarnation: i.u64()?,
                pid: i.u32()?,
            },
            0x02 => Msg::AuthProof { mac: i.array32()? },
            0x03 => Msg::Heartbeat,
            0x04 => Msg::Lock {
                txn: i.u64()?,
                resource: i.resource()?,
                mode: i.mode()?,
                wait_ms: i.u32()?,
                live_only: match i.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("live_only is not 0 or 1")),
                },
            },
            0x05 => Msg::Release {
                txn: i.u64()?,
                resource: i.resource()?,
            },
            0x06 => Msg::ReleaseAll { txn: i.u64()? },
            0x07 => Msg::RegisterCounterpart { failed: i.u32()? },
            0x08 => Msg::UnregisterCounterpart {
                failed: i.u32()?,
                token: i.u64()?,
                outcome: match i.u8()? {
                    1 => Outcome::Recovered,
                    2 => Outcome::Abandoned,
                    _ => return Err(WireError::Malformed("unknown outcome")),
                },
            },
            0x09 => Msg::RequestRestart { node: i.u32()? },
            0x0A => Msg::Status,
            0x0B => Msg::ListRetained { node: i.u32()? },
            0x0C => {
                let n = i.count(21)?;
                let mut locks = Vec::with_capacity(n);
                for _ in 0..n {
                    locks.push(HeldLock {
                        txn: i.u64()?,
                        resource: i.resource()?,
                        mode: i.mode()?,
                    });
                }
                Msg::Reassert { locks }
            }
            0x0D => Msg::RestartFinished,
            0x0E => Msg::Leave,
            0x81 => Msg::Challenge { nonce: i.array32()? },
            0x82 => Msg::Welcome {
                incarnation: i.u64()?,
                lease_ms: i.u32()?,
                heartbeat_ms: i.u32()?,
            },
            0x83 => Msg::Ok,
            0x84 => Msg::Granted { mode: i.mode()? },
            0x85 => Msg::Error {
                code: ErrorCode::from_u16(i.u16()?).ok_or(WireError::Malformed("unknown error code"))?,
                node: i.u32()?,
                resource: i.resource()?,
                message: i.string()?,
            },
            0x86 => Msg::CounterpartGrant {
                failed: i.u32()?,
                incarnation: i.u64()?,
                token: i.u64()?,
            },
            0x87 => {
                let n = i.count(22)?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(MemberInfo {
                        node: i.u32()?,
                        live: match i.u8()? {
                            0 => false,
                            1 => true,
                            _ => return Err(WireError::Malformed("bad liveness")),
                        },
                        incarnation: i.u64()?,
                        recovery: i.u8()?,
                        counterpart: i.u32()?,
                        retained_locks: i.u32()?,
                    });
                }
                Msg::StatusReply { members }
            }
            0x88 => {
                let n = i.count(13)?;
                let mut locks = Vec::with_capacity(n);
                for _ in 0..n {
                    locks.push((i.resource()?, i.mode()?));
                }
                Msg::RetainedList { locks }
            }
            0x89 => Msg::Event {
                kind: match i.u8()? {
                    1 => EventKind::NodeFailed,
                    2 => EventKind::RecoveryFinished,
                    3 => EventKind::RestartRequested,
                    4 => EventKind::NodeJoined,
                    _ => return Err(WireError::Malformed("unknown event")),
                },
                node: i.u32()?,
                incarnation: i.u64()?,
            },
            other => return Err(WireError::UnknownType(other)),
        };
        i.end()?;
        Ok(msg)
    }
}

/// The bytes of one frame carrying `msg`.
pub fn encode(request_id: u64, msg: &Msg) -> Vec<u8> {
    let payload = msg.payload();
    let mut h = FrameHeader {
        magic: MAGIC,
        version: VERSION,
        msg_type: msg.type_code(),
        payload_len: U32::new(payload.len() as u32),
        request_id: U64::new(request_id),
        crc: U32::new(0),
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h.as_bytes()[..16]), &payload);
    h.crc = U32::new(crc);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks a frame header; returns the payload length to read next.
pub fn check_header(h: &FrameHeader) -> Result<usize, WireError> {
    if h.magic != MAGIC {
        return Err(WireError::BadMagic(h.magic));
    }
    if h.version != VERSION {
        return Err(WireError::BadVersion(h.version));
    }
    let len = h.payload_len.get();
    if len as usize > MAX_PAYLOAD {
        return Err(WireError::TooLarge(len));
    }
    Ok(len as usize)
}

/// Decodes a frame whose header passed [`check_header`] and whose payload
/// has been read; returns the request id and the message.
pub fn decode(h: &FrameHeader, payload: &[u8]) -> Result<(u64, Msg), WireError> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h.as_bytes()[..16]), payload);
    if crc != h.crc.get() {
        return Err(WireError::Checksum);
    }
    Ok((h.request_id.get(), Msg::decode_payload(h.msg_type, payload)?))
}

/// Decodes one whole frame from `bytes` (for tests and fuzzing); returns the
/// frame and how many bytes it used.
pub fn decode_frame(bytes: &[u8]) -> Result<Option<(u64, Msg, usize)>, WireError> {
    let Ok((h, rest)) = FrameHeader::read_from_prefix(bytes) else {
        return Ok(None);
    };
    let len = check_header(&h)?;
    if rest.len() < len {
        return Ok(None);
    }
    let (id, msg) = decode(&h, &rest[..len])?;
    Ok(Some((id, msg, HEADER_LEN + len)))
}

/// Reads one frame from a stream. `Ok(None)` at a clean end of stream
/// between frames.
pub fn read_frame(r: &mut impl std::io::Read) -> Result<Option<(u64, Msg)>, FrameReadError> {
    let mut hb = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut hb[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(FrameReadError::Wire(WireError::Malformed(
                    "stream ended inside a header",
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameReadError::Io(e)),
        }
    }
    let h = FrameHeader::read_from_bytes(&hb).expect("buffer is one header");
    let len = check_header(&h).map_err(FrameReadError::Wire)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameReadError::Wire(WireError::Malformed("stream ended inside a payload"))
        } else {
            FrameReadError::Io(e)
        }
    })?;
    decode(&h, &payload).map(Some).map_err(FrameReadError::Wire)
}

/// A frame could not be read: the stream failed, or carried no valid frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid frame: {0}")]
    Wire(#[from] WireError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mode() -> impl Strategy<Value = LockMode> {
        prop::sample::select(LockMode::ALL.to_vec())
    }

    fn resource() -> impl Strategy<Value = ResourceId> {
        (any::<u32>(), any::<u64>()).prop_map(|(s, i)| ResourceId::new(s, i))
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            (any::<u32>(), 1u8..5, any::<u64>(), any::<u32>()).prop_map(|(node, p, incarnation, pid)| Msg::Hello {
                node,
                purpose: [Purpose::Join, Purpose::Rejoin, Purpose::Restart, Purpose::Operator][p as usize - 1],
                incarnation,
                pid
            }),
            any::<[u8; 32]>().prop_map(|mac| Msg::AuthProof { mac }),
            Just(Msg::Heartbeat),
            (any::<u64>(), resource(), mode(), any::<u32>(), any::<bool>()).prop_map(
                |(txn, resource, mode, wait_ms, live_only)| Msg::Lock {
                    txn,
                    resource,
                    mode,
                    wait_ms,
                    live_only
                }
            ),
            (any::<u64>(), resource()).prop_map(|(txn, resource)| Msg::Release { txn, resource }),
            any::<u64>().prop_map(|txn| Msg::ReleaseAll { txn }),
            any::<u32>().prop_map(|failed| Msg::RegisterCounterpart { failed }),
            (any::<u32>(), any::<u64>(), any::<bool>()).prop_map(|(failed, token, r)| Msg::UnregisterCounterpart {
                failed,
                token,
                outcome: if r { Outcome::Recovered } else { Outcome::Abandoned }
            }),
            any::<u32>().prop_map(|node| Msg::RequestRestart { node }),
            Just(Msg::Status),
            any::<u32>().prop_map(|node| Msg::ListRetained { node }),
            prop::collection::vec((any::<u64>(), resource(), mode()), 0..20).prop_map(|v| Msg::Reassert {
                locks: v
                    .into_iter()
                    .map(|(txn, resource, mode)| HeldLock { txn, resource, mode })
                    .collect()
            }),
            Just(Msg::RestartFinished),
            Just(Msg::Leave),
            any::<[u8; 32]>().prop_map(|nonce| Msg::Challenge { nonce }),
            (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(incarnation, lease_ms, heartbeat_ms)| Msg::Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms
            }),
            Just(Msg::Ok),
            mode().prop_map(|mode| Msg::Granted { mode }),
            (any::<u32>(), resource(), ".{0,40}").prop_map(|(node, resource, message)| Msg::Error {
                code: ErrorCode::Retained,
                node,
                resource,
                message
            }),
            (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(failed, incarnation, token)| {
                Msg::CounterpartGrant {
                    failed,
                    incarnation,
                    token,
                }
            }),
            prop::collection::vec(
                (
                    any::<u32>(),
                    any::<bool>(),
                    any::<u64>(),
                    0u8..4,
                    any::<u32>(),
                    any::<u32>()
                ),
                0..10
            )
            .prop_map(|v| Msg::StatusReply {
                members: v
                    .into_iter()
                    .map(
                        |(node, live, incarnation, recovery, counterpart, retained_locks)| MemberInfo {
                            node,
                            live,
                            incarnation,
                            recovery,
                            counterpart,
                            retained_locks
                        }
                    )
                    .collect()
            }),
            prop::collection::vec((resource(), mode()), 0..10).prop_map(|locks| Msg::RetainedList { locks }),
            (any::<u32>(), any::<u64>()).prop_map(|(node, incarnation)| Msg::Event {
                kind: EventKind::NodeFailed,
                node,
                incarnation
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(id in any::<u64>(), m in msg()) {
            let bytes = encode(id, &m);
            let (got_id, got, used) = decode_frame(&bytes).unwrap().unwrap();
            prop_assert_eq!(got_id, id);
            prop_assert_eq!(got, m.clone());
            prop_assert_eq!(used, bytes.len());
            // Through a stream too.
            let mut cursor = std::io::Cursor::new(bytes.clone());
            let (sid, sm) = read_frame(&mut cursor).unwrap().unwrap();
            prop_assert_eq!(sid, id);
            prop_assert_eq!(sm, m);
        }

        #[test]
        fn truncated_or_damaged_frames_are_refused(m in msg(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let bytes = encode(7, &m);
            let n = cut.index(bytes.len());
            prop_assert!(decode_frame(&bytes[..n]).map(|f| f.is_none()).unwrap_or(true));
            let mut damaged = bytes.clone();
            let i = flip.index(damaged.len() * 8);
            damaged[i / 8] ^= 1 << (i % 8);
            if let Ok(Some((_, got, _))) = decode_frame(&damaged) {
                prop_assert!(false, "damaged frame accepted as {got:?}");
            }
        }
    }

    #[test]
    fn a_lying_list_count_allocates_nothing() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        let h = FrameHeader {
            magic: MAGIC,
            version: VERSION,
            msg_type: 0x0C,
            payload_len: U32::new(payload.len() as u32),
            request_id: U64::new(1),
            crc: U32::new(0),
        };
        let mut h2 = h;
        h2.crc = U32::new(crc32c::crc32c_append(crc32c::crc32c(&h.as_bytes()[..16]), &payload));
        assert!(matches!(decode(&h2, &payload), Err(WireError::Malformed(_))));
    }
}
