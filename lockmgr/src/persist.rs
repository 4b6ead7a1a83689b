//! The coordinator's durable record: what must survive a coordinator
//! restart so that no retained lock is ever dropped silently.
//!
//! Kept: every member's incarnation, liveness and recovery status, the next
//! grant token, every retained lock, the failed nodes whose locks are
//! unknown ("blind", see the server docs) and the restart requests not yet
//! served. Not kept: the locks of live
//! nodes. Those change on every grant, and writing each one durably would
//! cost a sync per lock; instead live nodes re-assert their locks when they
//! reconnect, and the coordinator grants nothing else until they have (or
//! until they are declared failed, blind). The record is rewritten only on
//! membership and recovery changes, which are rare.
//!
//! ## Format (version 3, little-endian)
//!
//! Header, 32 bytes: magic `UNDSTCRD` (8), version u32, member count u32,
//! retained-lock count u32, blind count u32, CRC32C u32, sequence u32.
//! The CRC covers header bytes 0..24, then the sequence (4 bytes), then the
//! body. Body: next token u64; members (node u32, incarnation u64, liveness
//! u8 [1 live, 2 failed], recovery u8 [0 none, 1 inactive, 2 recovered]);
//! retained locks (node u32, space u32, id u64, mode u8 [1 IS .. 5 X]);
//! blind nodes (node u32); restart requests (count u32, then node u32
//! each). Bytes after the body are ignored (a slot keeps the tail of a
//! longer, older record). Version 2 is the same without the restart
//! requests, and is still read (as none).
//!
//! ## Two slots
//! Records go alternately to `coordinator.state.0` and `.1`, each written
//! in place at offset 0 and synced (one `fdatasync`; no rename, no
//! directory sync once both slots exist). The record with the higher
//! sequence among those that check out is current. A crash mid-write tears
//! only the slot being written, which held the record before the previous
//! one, so the previous record — the last acknowledged — survives. This is
//! what a join and the grants a failure frees wait on (the failure's
//! announcement goes before it), so it is kept to one device flush. A
//! recovery's end is answered before its record is written: a record that
//! still holds the released locks is harmless (see the coordinator's
//! re-assertion docs).
//!
//! Version 1 (a single `coordinator.state`, replaced by rename; the sequence
//! field reserved as 0 and outside the CRC) is still read, as sequence 0.

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
const VERSION: u32 = 3;
/// Version 2: no restart requests.
const V2: u32 = 2;
const LEGACY_VERSION: u32 = 1;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: U32,
    members: U32,
    retained: U32,
    blind: U32,
    crc: U32,
    seq: U32,
}

const _: () = assert!(std::mem::size_of::<Header>() == 32);
const MEMBER_LEN: usize = 14;
const RETAINED_LEN: usize = 17;

/// Everything the record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorState {
    /// Every member: liveness, incarnation and recovery status.
    pub registry: RegistrySnapshot,
    /// Every retained lock of every failed node.
    pub retained: Vec<RetainedLock>,
    /// The failed nodes whose locks are unknown (see [`crate::server`]).
    pub blind: Vec<NodeId>,
    /// The nodes with a restart request not yet served.
    pub restarts: Vec<NodeId>,
}

/// Why the record cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// Reading, writing or syncing a record file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The record's remote store (etcd) failed or refused the write (this
    /// coordinator no longer leads), in words.
    #[error("coordinator state: {0}")]
    Remote(String),
    /// A record file is damaged: its checksum, version or lengths are
    /// wrong.
    #[error("coordinator state {} is damaged: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The version 1 record.
fn legacy_path(dir: &Path) -> PathBuf {
    dir.join("coordinator.state")
}

/// Slot `i` (0 or 1).
pub fn slot_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("coordinator.state.{i}"))
}

/// Sequence `a` is newer than `b` (wrapping: records are compared only
/// with the one before them).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The record's bytes: `state` as the record of sequence `seq` (see
/// "Format" above).
pub fn encode(state: &CoordinatorState, seq: u32) -> Vec<u8> {
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
        body.push(l.mode.code());
    }
    for n in &state.blind {
        body.extend_from_slice(&n.to_le_bytes());
    }
    body.extend_from_slice(&(state.restarts.len() as u32).to_le_bytes());
    for n in &state.restarts {
        body.extend_from_slice(&n.to_le_bytes());
    }
    let mut h = Header {
        magic: MAGIC,
        version: U32::new(VERSION),
        members: U32::new(state.registry.nodes.len() as u32),
        retained: U32::new(state.retained.len() as u32),
        blind: U32::new(state.blind.len() as u32),
        crc: U32::new(0),
        seq: U32::new(seq),
    };
    h.crc = U32::new(checksum(&h, &body));
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn checksum(h: &Header, body: &[u8]) -> u32 {
    let head = crc32c::crc32c(&h.as_bytes()[..24]);
    match h.version.get() {
        LEGACY_VERSION => crc32c::crc32c_append(head, body),
        _ => crc32c::crc32c_append(crc32c::crc32c_append(head, h.seq.as_bytes()), body),
    }
}

/// Decodes a record and its sequence; any bytes give an error or a
/// record, never a panic or an allocation beyond the bytes given (the
/// `persist_record` fuzz target holds it to that).
pub fn decode(bytes: &[u8]) -> Result<(CoordinatorState, u32), &'static str> {
    decode_checked(bytes, true)
}

/// [`decode`] without comparing the checksum: for the fuzz target, whose
/// random bytes would otherwise never get past it to the body.
#[doc(hidden)]
pub fn decode_unchecked(bytes: &[u8]) -> Result<(CoordinatorState, u32), &'static str> {
    decode_checked(bytes, false)
}

fn decode_checked(bytes: &[u8], verify: bool) -> Result<(CoordinatorState, u32), &'static str> {
    let (h, rest) = Header::read_from_prefix(bytes).map_err(|_| "shorter than its header")?;
    if h.magic != MAGIC {
        return Err("bad magic");
    }
    let version = h.version.get();
    match version {
        VERSION | V2 => {}
        LEGACY_VERSION if h.seq.get() == 0 => {}
        LEGACY_VERSION => return Err("reserved field set"),
        _ => return Err("unsupported version"),
    }
    let (m, r, b) = (
        h.members.get() as usize,
        h.retained.get() as usize,
        h.blind.get() as usize,
    );
    let fixed = 8usize
        .checked_add(m.checked_mul(MEMBER_LEN).ok_or("size overflow")?)
        .and_then(|n| n.checked_add(r.checked_mul(RETAINED_LEN)?))
        .and_then(|n| n.checked_add(b.checked_mul(4)?))
        .ok_or("size overflow")?;
    // Version 3 goes on with a counted list of restart requests.
    let restarts = if version == VERSION {
        let at = fixed.checked_add(4).ok_or("size overflow")?;
        let count = rest.get(fixed..at).ok_or("counts disagree with the record's length")?;
        u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize
    } else {
        0
    };
    let need = if version == VERSION {
        restarts
            .checked_mul(4)
            .and_then(|n| n.checked_add(fixed + 4))
            .ok_or("size overflow")?
    } else {
        fixed
    };
    // A slot may keep an older record's tail after the body; version 1
    // files hold exactly one record.
    let exact = h.version.get() == LEGACY_VERSION;
    if need > rest.len() || (exact && need != rest.len()) {
        return Err("counts disagree with the record's length");
    }
    let body = &rest[..need];
    if verify && checksum(&h, body) != h.crc.get() {
        return Err("checksum mismatch");
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
        let mode = LockMode::from_code(body[at + 16]).ok_or("bad lock mode")?;
        retained.push(RetainedLock {
            node: u32_at(at),
            resource: ResourceId::new(u32_at(at + 4), u64_at(at + 8)),
            mode,
        });
        at += RETAINED_LEN;
    }
    let blind = (0..b).map(|i| u32_at(at + 4 * i)).collect();
    at += 4 * b;
    let restarts = (0..restarts).map(|i| u32_at(at + 4 + 4 * i)).collect();
    Ok((
        CoordinatorState {
            registry: RegistrySnapshot { next_token, nodes },
            retained,
            blind,
            restarts,
        },
        h.seq.get(),
    ))
}

/// Reads one record file: `None` if it does not exist.
fn read_file(io: &Io, path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    if !path.exists() {
        return Ok(None);
    }
    let file = IoFile::open(path, false, false)?;
    let len = file.len()?;
    // A record of a few thousand nodes and locks; anything past 256 MiB is
    // not one of ours, and is refused before reading.
    if len > 256 << 20 {
        return Err(PersistError::Corrupt {
            path: path.to_path_buf(),
            reason: "implausibly large",
        });
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact_at(&file, &mut buf, 0)?;
    Ok(Some(buf))
}

/// The newest record in `dir` and its sequence; `None` if there is none (a
/// first start). Fails if record files exist and none checks out.
fn load_newest(io: &Io, dir: &Path) -> Result<Option<(CoordinatorState, u32)>, PersistError> {
    let mut best: Option<(CoordinatorState, u32)> = None;
    let mut damage: Option<(PathBuf, &'static str)> = None;
    for path in [slot_path(dir, 0), slot_path(dir, 1), legacy_path(dir)] {
        let Some(bytes) = read_file(io, &path)? else { continue };
        match decode(&bytes) {
            Ok((state, seq)) => {
                if best.as_ref().is_none_or(|(_, b)| newer(seq, *b)) {
                    best = Some((state, seq));
                }
            }
            // A torn slot is expected after a crash; it only matters if
            // nothing else checks out.
            Err(reason) => damage = Some((path, reason)),
        }
    }
    match (best, damage) {
        (Some(b), _) => Ok(Some(b)),
        (None, Some((path, reason))) => Err(PersistError::Corrupt { path, reason }),
        (None, None) => Ok(None),
    }
}

/// Reads the current record in `dir`; `None` if there is none.
pub fn load(io: &Io, dir: &Path) -> Result<Option<CoordinatorState>, PersistError> {
    Ok(load_newest(io, dir)?.map(|(state, _)| state))
}

/// Where the coordinator writes its record: see "Two slots" above.
pub struct StateStore {
    io: Io,
    dir: PathBuf,
    /// The sequence of the current record.
    seq: u32,
    /// Open slots, by index.
    slots: [Option<IoFile>; 2],
    /// The current record: storing it again would cost a sync for nothing.
    current: Option<CoordinatorState>,
}

impl StateStore {
    /// Opens the store in `dir` and reads its current record.
    pub fn open(io: &Io, dir: &Path) -> Result<(StateStore, Option<CoordinatorState>), PersistError> {
        let newest = load_newest(io, dir)?;
        let seq = newest.as_ref().map_or(0, |(_, seq)| *seq);
        let current = newest.map(|(state, _)| state);
        let store = StateStore {
            io: io.clone(),
            dir: dir.to_path_buf(),
            seq,
            slots: [None, None],
            current: current.clone(),
        };
        Ok((store, current))
    }

    /// Replaces the current record with `state`, durably; nothing is
    /// written if `state` is the current record.
    pub fn store(&mut self, state: &CoordinatorState) -> Result<(), PersistError> {
        if self.current.as_ref() == Some(state) {
            return Ok(());
        }
        let seq = self.seq.wrapping_add(1);
        let i = (seq % 2) as usize;
        let bytes = encode(state, seq);
        let fresh = self.slots[i].is_none();
        if fresh {
            let path = slot_path(&self.dir, i);
            let created = !path.exists();
            self.slots[i] = Some(IoFile::open(&path, true, true)?);
            if created {
                // Written and synced below; the directory entry needs its
                // own sync, once.
                let file = self.slots[i].as_ref().expect("just opened");
                self.io.write_durable(file, &bytes, 0)?;
                self.io.sync_dir(&self.dir)?;
                return self.stored(seq, state);
            }
        }
        let file = self.slots[i].as_ref().expect("opened above");
        self.io.write_durable(file, &bytes, 0)?;
        self.stored(seq, state)
    }

    fn stored(&mut self, seq: u32, state: &CoordinatorState) -> Result<(), PersistError> {
        self.seq = seq;
        self.current = Some(state.clone());
        // A version 1 record is superseded now; it would only confuse.
        let legacy = legacy_path(&self.dir);
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(|e| IoError::new(OpKind::Write, &legacy, None, e))?;
        }
        Ok(())
    }
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
            restarts: vec![2, 9],
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::fallback();
        assert!(load(&io, dir.path()).unwrap().is_none());
        let (mut store, none) = StateStore::open(&io, dir.path()).unwrap();
        assert!(none.is_none());
        store.store(&sample()).unwrap();
        assert_eq!(load(&io, dir.path()).unwrap().unwrap(), sample());
        let mut bytes = std::fs::read(slot_path(dir.path(), 1)).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x20;
            assert!(decode(&bytes).is_err(), "flipped byte {i} accepted");
            bytes[i] ^= 0x20;
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_newest_slot_that_checks_out_wins_and_a_torn_write_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::fallback();
        let (mut store, _) = StateStore::open(&io, dir.path()).unwrap();
        let mut states = Vec::new();
        for n in 0..5u64 {
            let mut s = sample();
            s.registry.next_token = n;
            // Shrinking records leave an older tail behind in the slot.
            s.retained.truncate(if n % 2 == 0 { 1 } else { 0 });
            store.store(&s).unwrap();
            states.push(s);
        }
        assert_eq!(load(&io, dir.path()).unwrap().as_ref(), states.last());
        // Reopened, it goes on with the next sequence.
        let (mut store, current) = StateStore::open(&io, dir.path()).unwrap();
        assert_eq!(current.as_ref(), states.last());
        let mut next = sample();
        next.registry.next_token = 99;
        store.store(&next).unwrap();
        assert_eq!(load(&io, dir.path()).unwrap(), Some(next.clone()));
        // The slot just written is torn: the record before it is current.
        let written = slot_path(dir.path(), (store.seq % 2) as usize);
        let mut bytes = std::fs::read(&written).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&written, &bytes).unwrap();
        assert_eq!(load(&io, dir.path()).unwrap().as_ref(), states.last());
        // Both torn: a clear error, not a fresh start.
        let other = slot_path(dir.path(), 1 - (store.seq % 2) as usize);
        std::fs::write(&other, b"UNDSTCRD garbage").unwrap();
        assert!(matches!(load(&io, dir.path()), Err(PersistError::Corrupt { .. })));
    }

    /// `sample()` without restart requests, as a record of `version` (1
    /// or 2) has it: the body without the restart list.
    fn older(version: u32) -> (CoordinatorState, Vec<u8>) {
        let state = CoordinatorState {
            restarts: Vec::new(),
            ..sample()
        };
        let mut bytes = encode(&state, 0);
        bytes.truncate(bytes.len() - 4);
        let (mut h, body) = Header::read_from_prefix(&bytes).unwrap();
        let body = body.to_vec();
        h.version = U32::new(version);
        h.crc = U32::new(checksum(&h, &body));
        bytes[..32].copy_from_slice(h.as_bytes());
        (state, bytes)
    }

    #[test]
    fn a_version_2_record_is_read_without_restart_requests() {
        let (state, bytes) = older(V2);
        assert_eq!(decode(&bytes), Ok((state, 0)));
    }

    #[test]
    fn a_version_1_record_is_read_and_then_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::fallback();
        // Version 1: the sequence field is 0 and outside the CRC.
        let (v1, bytes) = older(LEGACY_VERSION);
        std::fs::write(legacy_path(dir.path()), &bytes).unwrap();
        let (mut store, state) = StateStore::open(&io, dir.path()).unwrap();
        assert_eq!(state, Some(v1));
        let mut next = sample();
        next.blind.clear();
        store.store(&next).unwrap();
        assert!(!legacy_path(dir.path()).exists());
        assert_eq!(load(&io, dir.path()).unwrap(), Some(next));
    }
}
