//! The coordinator's durable record: what must survive a coordinator
//! restart so that no retained lock is ever dropped silently.
//!
//! Kept: every member's incarnation, liveness and recovery status, the next
//! grant token, every retained lock, and the failed nodes whose locks are
//! unknown ("blind", see the server docs). Not kept: the locks of live
//! nodes. Those change on every grant, and writing each one durably would
//! cost a sync per lock; instead live nodes re-assert their locks when they
//! reconnect, and the coordinator grants nothing else until they have (or
//! until they are declared failed, blind). The record is rewritten only on
//! membership and recovery changes, which are rare.
//!
//! ## Format (version 1, little-endian)
//!
//! Header, 32 bytes: magic `UNDSTCRD` (8), version u32, member count u32,
//! retained-lock count u32, blind count u32, CRC32C u32 of header bytes
//! 0..24 followed by the body, reserved u32. Body: next token u64; members
//! (node u32, incarnation u64, liveness u8 [1 live, 2 failed], recovery u8
//! [0 none, 1 inactive, 2 recovered]); retained locks (node u32, space u32,
//! id u64, mode u8 [1 IS .. 5 X]); blind nodes (node u32).
//!
//! Written whole to `coordinator.state.tmp` through the I/O layer, synced,
//! renamed over `coordinator.state`, directory synced: a crash leaves either
//! the old record or the new one.

use std::path::{Path, PathBuf};

use wal::io::{Io, IoError, IoFile, OpKind};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::failure::RetainedLock;
use crate::ids::{NodeId, ResourceId};
use crate::membership::Liveness;
use crate::mode::LockMode;
use crate::registry::{NodeStatus, RecoveryStatus, RegistrySnapshot};

const MAGIC: [u8; 8] = *b"UNDSTCRD";
const VERSION: u32 = 1;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: U32,
    members: U32,
    retained: U32,
    blind: U32,
    crc: U32,
    reserved: U32,
}

const _: () = assert!(std::mem::size_of::<Header>() == 32);
const MEMBER_LEN: usize = 14;
const RETAINED_LEN: usize = 17;

/// Everything the record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorState {
    pub registry: RegistrySnapshot,
    pub retained: Vec<RetainedLock>,
    pub blind: Vec<NodeId>,
}

/// Why the record cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("coordinator state {} is damaged: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: &'static str },
}

pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("coordinator.state")
}

fn mode_code(m: LockMode) -> u8 {
    LockMode::ALL.iter().position(|&x| x == m).map_or(0, |i| i as u8 + 1)
}

fn encode(state: &CoordinatorState) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&state.registry.next_token.to_le_bytes());
    for (node, st) in &state.registry.nodes {
        body.extend_from_slice(&node.to_le_bytes());
        body.extend_from_slice(&st.incarnation.to_le_bytes());
        body.push(match st.liveness {
            Liveness::Live => 1,
            Liveness::Failed => 2,
        });
        body.push(match st.recovery {
            None => 0,
            Some(RecoveryStatus::Inactive) | Some(RecoveryStatus::Active { .. }) => 1,
            Some(RecoveryStatus::Recovered) => 2,
        });
    }
    for l in &state.retained {
        body.extend_from_slice(&l.node.to_le_bytes());
        body.extend_from_slice(&l.resource.space.to_le_bytes());
        body.extend_from_slice(&l.resource.id.to_le_bytes());
        body.push(mode_code(l.mode));
    }
    for n in &state.blind {
        body.extend_from_slice(&n.to_le_bytes());
    }
    let mut h = Header {
        magic: MAGIC,
        version: U32::new(VERSION),
        members: U32::new(state.registry.nodes.len() as u32),
        retained: U32::new(state.retained.len() as u32),
        blind: U32::new(state.blind.len() as u32),
        crc: U32::new(0),
        reserved: U32::new(0),
    };
    h.crc = U32::new(crc32c::crc32c_append(crc32c::crc32c(&h.as_bytes()[..24]), &body));
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn decode(bytes: &[u8]) -> Result<CoordinatorState, &'static str> {
    let (h, body) = Header::read_from_prefix(bytes).map_err(|_| "shorter than its header")?;
    if h.magic != MAGIC {
        return Err("bad magic");
    }
    if h.version.get() != VERSION {
        return Err("unsupported version");
    }
    if h.reserved.get() != 0 {
        return Err("reserved field set");
    }
    if crc32c::crc32c_append(crc32c::crc32c(&h.as_bytes()[..24]), body) != h.crc.get() {
        return Err("checksum mismatch");
    }
    let (m, r, b) = (
        h.members.get() as usize,
        h.retained.get() as usize,
        h.blind.get() as usize,
    );
    let need = 8usize
        .checked_add(m.checked_mul(MEMBER_LEN).ok_or("size overflow")?)
        .and_then(|n| n.checked_add(r.checked_mul(RETAINED_LEN)?))
        .and_then(|n| n.checked_add(b.checked_mul(4)?))
        .ok_or("size overflow")?;
    if need != body.len() {
        return Err("counts disagree with the record's length");
    }
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().expect("8 bytes"));
    let next_token = u64_at(0);
    let mut at = 8;
    let mut nodes = Vec::with_capacity(m);
    for _ in 0..m {
        let liveness = match body[at + 12] {
            1 => Liveness::Live,
            2 => Liveness::Failed,
            _ => return Err("bad liveness"),
        };
        let recovery = match body[at + 13] {
            0 => None,
            1 => Some(RecoveryStatus::Inactive),
            2 => Some(RecoveryStatus::Recovered),
            _ => return Err("bad recovery status"),
        };
        nodes.push((
            u32_at(at),
            NodeStatus {
                liveness,
                incarnation: u64_at(at + 4),
                recovery,
            },
        ));
        at += MEMBER_LEN;
    }
    let mut retained = Vec::with_capacity(r);
    for _ in 0..r {
        let mode = match body[at + 16] {
            c @ 1..=5 => LockMode::ALL[c as usize - 1],
            _ => return Err("bad lock mode"),
        };
        retained.push(RetainedLock {
            node: u32_at(at),
            resource: ResourceId::new(u32_at(at + 4), u64_at(at + 8)),
            mode,
        });
        at += RETAINED_LEN;
    }
    let blind = (0..b).map(|i| u32_at(at + 4 * i)).collect();
    Ok(CoordinatorState {
        registry: RegistrySnapshot { next_token, nodes },
        retained,
        blind,
    })
}

/// Reads the record in `dir`; `None` if there is none (a first start).
pub fn load(io: &Io, dir: &Path) -> Result<Option<CoordinatorState>, PersistError> {
    let path = state_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    let file = IoFile::open(&path, false, false)?;
    let len = file.len()?;
    // A record of a few thousand nodes and locks; anything past 256 MiB is
    // not one of ours, and is refused before reading.
    if len > 256 << 20 {
        return Err(PersistError::Corrupt {
            path,
            reason: "implausibly large",
        });
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact_at(&file, &mut buf, 0)?;
    decode(&buf)
        .map(Some)
        .map_err(|reason| PersistError::Corrupt { path, reason })
}

/// Replaces the record in `dir` with `state`, durably.
pub fn store(io: &Io, dir: &Path, state: &CoordinatorState) -> Result<(), PersistError> {
    let tmp = dir.join("coordinator.state.tmp");
    let bytes = encode(state);
    let file = IoFile::from_std(
        std::fs::File::create(&tmp).map_err(|e| IoError::new(OpKind::Open, &tmp, None, e))?,
        &tmp,
    );
    io.write_durable(&file, &bytes, 0)?;
    std::fs::rename(&tmp, state_path(dir)).map_err(|e| IoError::new(OpKind::Write, &tmp, None, e))?;
    io.sync_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CoordinatorState {
        CoordinatorState {
            registry: RegistrySnapshot {
                next_token: 42,
                nodes: vec![
                    (
                        1,
                        NodeStatus {
                            liveness: Liveness::Live,
                            incarnation: 3,
                            recovery: None,
                        },
                    ),
                    (
                        2,
                        NodeStatus {
                            liveness: Liveness::Failed,
                            incarnation: 1,
                            recovery: Some(RecoveryStatus::Inactive),
                        },
                    ),
                ],
            },
            retained: vec![RetainedLock {
                node: 2,
                resource: ResourceId::new(7, 99),
                mode: LockMode::X,
            }],
            blind: vec![5],
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::fallback();
        assert!(load(&io, dir.path()).unwrap().is_none());
        store(&io, dir.path(), &sample()).unwrap();
        assert_eq!(load(&io, dir.path()).unwrap().unwrap(), sample());
        let mut bytes = std::fs::read(state_path(dir.path())).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x20;
            assert!(decode(&bytes).is_err(), "flipped byte {i} accepted");
            bytes[i] ^= 0x20;
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
