//! Payloads: each [`Msg`] as the bytes after a frame's header, and back
//! (the layout is in the frame codec's docs, [`frame`](super::frame)).
//!
//! This file owns the encoding of every message, its message type code and
//! the bounds on what a payload may carry. It must never allocate on the
//! word of an unchecked length: every count and string length is checked
//! against the bytes present first.

use super::error::WireError;
use super::message::{ErrorCode, EventKind, HeldLock, MemberInfo, Msg, Outcome, Purpose};
use crate::ids::ResourceId;
use crate::mode::LockMode;

/// Longest string in a payload.
const MAX_STRING: usize = 4096;

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
            31 => NoRestarter,
            99 => Internal,
            _ => return None,
        })
    }
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
    fn u128(&mut self, v: u128) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
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
    fn u128(&mut self) -> Result<u128, WireError> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16 bytes")))
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
    /// A counted list of (resource, 128-bit value): `Publish`'s, and the
    /// values an `UnregisterCounterpart` sets.
    fn resource_values(&mut self) -> Result<Vec<(ResourceId, u128)>, WireError> {
        let n = self.count(28)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push((self.resource()?, self.u128()?));
        }
        Ok(values)
    }
    /// A one-byte flag: 0 or 1.
    fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Malformed("a flag is not 0 or 1")),
        }
    }
    /// A counted list of (resource, mode).
    fn locks(&mut self) -> Result<Vec<(ResourceId, LockMode)>, WireError> {
        let n = self.count(13)?;
        let mut locks = Vec::with_capacity(n);
        for _ in 0..n {
            locks.push((self.resource()?, self.mode()?));
        }
        Ok(locks)
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
    /// The message type code a frame carrying this message has: requests
    /// below 0x80, replies and events from 0x80.
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
            Msg::RebuildRetained { .. } => 0x0F,
            Msg::AskRecovery { .. } => 0x10,
            Msg::Publish { .. } => 0x20,
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

    /// The payload's bytes.
    pub(super) fn payload(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        match self {
            Msg::Hello {
                node,
                purpose,
                incarnation,
                pid,
                launches_restarts,
            } => {
                o.u32(*node)
                    .u8(*purpose as u8)
                    .u64(*incarnation)
                    .u32(*pid)
                    .u8(u8::from(*launches_restarts));
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
            Msg::UnregisterCounterpart {
                failed,
                token,
                outcome,
                values,
            } => {
                o.u32(*failed).u64(*token).u8(*outcome as u8);
                o.u32(values.len() as u32);
                for (r, v) in values {
                    o.resource(*r).u128(*v);
                }
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
            Msg::RebuildRetained { failed, token, locks } => {
                o.u32(*failed).u64(*token).u32(locks.len() as u32);
                for (r, m) in locks {
                    o.resource(*r).u8(m.code());
                }
            }
            Msg::AskRecovery { failed, by } => {
                o.u32(*failed).u32(*by);
            }
            Msg::Challenge { nonce } => {
                o.bytes(nonce);
            }
            Msg::Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms,
                log_proof,
            } => {
                o.u64(*incarnation).u32(*lease_ms).u32(*heartbeat_ms).bytes(log_proof);
            }
            Msg::Granted { mode, value } => {
                o.u8(mode.code());
                match value {
                    None => o.u8(0),
                    Some(v) => o.u8(1).u128(*v),
                };
            }
            Msg::Publish { values } => {
                o.u32(values.len() as u32);
                for (r, v) in values {
                    o.resource(*r).u128(*v);
                }
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
                blind,
                log_proof,
            } => {
                o.u32(*failed)
                    .u64(*incarnation)
                    .u64(*token)
                    .u8(u8::from(*blind))
                    .bytes(log_proof);
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

    /// The message of type `code` whose payload is `p`.
    pub(super) fn decode_payload(code: u8, p: &[u8]) -> Result<Msg, WireError> {
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
                launches_restarts: i.flag()?,
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
                values: i.resource_values()?,
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
            0x0F => {
                let failed = i.u32()?;
                let token = i.u64()?;
                Msg::RebuildRetained {
                    failed,
                    token,
                    locks: i.locks()?,
                }
            }
            0x10 => Msg::AskRecovery {
                failed: i.u32()?,
                by: i.u32()?,
            },
            0x20 => Msg::Publish {
                values: i.resource_values()?,
            },
            0x81 => Msg::Challenge { nonce: i.array32()? },
            0x82 => Msg::Welcome {
                incarnation: i.u64()?,
                lease_ms: i.u32()?,
                heartbeat_ms: i.u32()?,
                log_proof: i.array32()?,
            },
            0x83 => Msg::Ok,
            0x84 => Msg::Granted {
                mode: i.mode()?,
                value: match i.u8()? {
                    0 => None,
                    1 => Some(i.u128()?),
                    _ => return Err(WireError::Malformed("value flag is not 0 or 1")),
                },
            },
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
                blind: i.flag()?,
                log_proof: i.array32()?,
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
            0x88 => Msg::RetainedList { locks: i.locks()? },
            0x89 => Msg::Event {
                kind: match i.u8()? {
                    1 => EventKind::NodeFailed,
                    2 => EventKind::RecoveryFinished,
                    3 => EventKind::RestartRequested,
                    4 => EventKind::NodeJoined,
                    5 => EventKind::RecoveryAsked,
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
