//! Log records: what they say ([`Record`], [`RecordBody`]) and their bytes.
//!
//! ## Format (version 1, all integers little-endian)
//!
//! A record starts at an 8-byte aligned LSN and is followed by zero padding to
//! the next multiple of 8. Its fixed 40-byte header:
//!
//! | offset | size | field     | meaning                                               |
//! |-------:|-----:|-----------|-------------------------------------------------------|
//! | 0      | 4    | crc32c    | CRC32C (Castagnoli) of bytes `4..len` of the record   |
//! | 4      | 4    | len       | header + payload bytes, without the padding           |
//! | 8      | 8    | not_lsn   | bitwise NOT of the record's own LSN (its position)    |
//! | 16     | 8    | txn       | transaction id (0 for log-level records)              |
//! | 24     |8    | prev_lsn  | previous record of the same transaction, or `u64::MAX`|
//! | 32     | 4    | scope     | scope token: the failure scope the record belongs to  |
//! | 36     | 2    | agent     | recovery agent that undoes it (0 = page before-images)|
//! | 38     | 1    | kind      | see [`Kind`]                                          |
//! | 39     | 1    | flags     | bit 0: [`FLAG_BATCH_START`]; other bits reserved, 0   |
//!
//! [`FLAG_BATCH_START`] marks the first record of each write the flusher
//! makes. Everything before such a record was durable when it was written,
//! so damage followed by a batch start is corruption of acknowledged data,
//! while damage followed only by records of the same batch is a torn tail
//! (a crash may persist the pages of one unsynced write in any order).
//!
//! The `not_lsn` field is what tells a record of this log apart from stale
//! bytes of a recycled segment or of an earlier crash: a record is only taken
//! for one when it names the position it was read from. It is stored
//! complemented so that zeroed space (all-zero bytes) never names a position,
//! not even LSN 0, however a write was torn.
//!
//! Payloads by kind:
//! - `Begin`, `Commit`, `Abort`, `End`, `SegmentEnd`: empty.
//! - `Undo` with agent 0 ([`PAGE_AGENT`]): a 24-byte [`PageUndoHeader`]
//!   (`file_id` u32, `offset_in_page` u32, `page_no` u64, `before_len` u32,
//!   `after_len` u32, `u32::MAX` when there is no after-image), then the
//!   before-image, then the after-image if any.
//! - `Undo` with any other agent: the work identifier of one action on an
//!   external resource, at most [`MAX_AGENT_WORK`] bytes, opaque to the log:
//!   the agent registered for the header's `agent` id (the resource) reads
//!   from it alone how to make the action final or undo it, since agents
//!   keep no state. The header's `scope` names the failure scope the action
//!   belongs to; the engine defines the token (`understudy`'s `scope`
//!   module: a scope's serial number within its transaction, 0 for the
//!   transaction itself, bit 31 set for a scope run on a thread of its own).
//! - `Compensation`: `undo_next` u64 (`u64::MAX` = none): the next record of
//!   the transaction still to be undone; everything after it in the chain
//!   has been undone already.
//! - `Checkpoint`: `count` u32, reserved u32, then `count` entries of
//!   (`txn` u64, `first_lsn` u64): the transactions active at the checkpoint.
//! - `CommitIntent`: `count` u32, reserved u32, then `count` entries of
//!   (`file_id` u32, reserved u32, `page_no` u64): the pages a committing
//!   transaction is about to force. Each of them is written stamped with the
//!   record's LSN, so recovery can tell whether all of them reached the disk
//!   (then the transaction is committed) or not (then it is backed out). A
//!   transaction whose pages do not fit one record ([`max_intent_pages`])
//!   logs several in a row: they are one intent, and its pages carry the
//!   last one's LSN.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::corruption::CorruptionKind;
pub use crate::lsn::Lsn;

mod body;

pub use body::{
    ActiveTxn, AgentId, Kind, PageRef, PageUndo, Record, RecordBody, RecordMeta, ScopeToken, TxnId, PAGE_AGENT,
};

/// Most bytes one flush may write: the writer's pending bound is capped at
/// this, so after a damaged record, the next flush's first record can only
/// lie within this much (plus one record) further on. The reader searches
/// no further for it ([`crate::reader`]).
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

/// Header flag: first record of a flush batch (see the module docs).
pub const FLAG_BATCH_START: u8 = 1;

/// Encoded "no LSN".
const NO_LSN: u64 = u64::MAX;
/// Records start at multiples of this.
pub const RECORD_ALIGN: u64 = 8;
/// Size of [`RecordHeader`].
pub const HEADER_LEN: usize = 40;
/// Largest payload of one record. Undo records carry at most a page range
/// twice, so this leaves a wide margin while bounding what a reader allocates.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest work identifier of a custom agent's record (`Undo` with an agent
/// other than [`PAGE_AGENT`]): 64 KiB. It names work done elsewhere (a file,
/// a message), not the work's bytes; the bound keeps a transaction's agent
/// records, which are read back whenever a scope of it fails, small.
pub const MAX_AGENT_WORK: usize = 64 << 10;

/// The fixed record header; see the module docs for the layout.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct RecordHeader {
    /// CRC32C of the record's bytes `4..len`.
    pub crc: U32,
    /// Header and payload bytes, padding excluded.
    pub len: U32,
    /// Bitwise NOT of the record's own LSN.
    pub not_lsn: U64,
    /// The transaction id.
    pub txn: U64,
    /// The transaction's previous record, `u64::MAX` if none.
    pub prev_lsn: U64,
    /// The scope token.
    pub scope: U32,
    /// The recovery agent id.
    pub agent: U16,
    /// The record's [`Kind`] as its byte value.
    pub kind: u8,
    /// Bit 0: [`FLAG_BATCH_START`]; the other bits are reserved, 0.
    pub flags: u8,
}

const _: () = assert!(std::mem::size_of::<RecordHeader>() == HEADER_LEN);

/// The fixed part of a page undo payload; see the module docs.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct PageUndoHeader {
    /// [`PageUndo::file_id`].
    pub file_id: U32,
    /// [`PageUndo::offset_in_page`].
    pub offset_in_page: U32,
    /// [`PageUndo::page_no`].
    pub page_no: U64,
    /// Bytes of the before-image that follow this header.
    pub before_len: U32,
    /// Bytes of the after-image that follow the before-image; `u32::MAX`
    /// when there is none.
    pub after_len: U32,
}

const PAGE_UNDO_HEADER_LEN: usize = std::mem::size_of::<PageUndoHeader>();

/// One entry of a checkpoint's active-transaction table.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct ActiveEntry {
    txn: U64,
    first_lsn: U64,
}

/// Most pages one `CommitIntent` can list in a log whose largest record
/// (padding included) is `max_record` bytes.
pub fn max_intent_pages(max_record: u64) -> usize {
    let payload = (max_record.saturating_sub(HEADER_LEN as u64) as usize).min(MAX_PAYLOAD);
    payload.saturating_sub(8) / std::mem::size_of::<PageRefEntry>()
}

/// One `CommitIntent` entry on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct PageRefEntry {
    file_id: U32,
    reserved: U32,
    page_no: U64,
}

/// Payload bytes of a record with this body, padding excluded.
fn payload_len(body: &RecordBody) -> usize {
    match body {
        RecordBody::Begin | RecordBody::Commit | RecordBody::Abort | RecordBody::End => 0,
        RecordBody::Undo(u) => PAGE_UNDO_HEADER_LEN + u.before.len() + u.after.as_ref().map_or(0, Vec::len),
        RecordBody::AgentUndo(p) => p.len(),
        RecordBody::Compensation { .. } => 8,
        RecordBody::Checkpoint(a) => 8 + a.len() * std::mem::size_of::<ActiveEntry>(),
        RecordBody::CommitIntent(p) => 8 + p.len() * std::mem::size_of::<PageRefEntry>(),
    }
}

/// Why a record cannot be appended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is over [`MAX_PAYLOAD`] (an agent's work identifier over
    /// [`MAX_AGENT_WORK`]).
    TooLarge {
        /// The payload's bytes.
        payload: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// The body is not one the meta's agent undoes (see
    /// [`crate::WalError::AgentMismatch`]).
    AgentMismatch {
        /// The agent the meta names.
        agent: AgentId,
        /// The kind of record the body is.
        kind: Kind,
    },
}

/// Bytes a record with this body occupies, padding included.
pub fn encoded_len(body: &RecordBody) -> u64 {
    align_up((HEADER_LEN + payload_len(body)) as u64)
}

/// `n` bytes rounded up to a multiple of [`RECORD_ALIGN`]: where the next
/// record starts after one of `n` bytes.
pub fn align_up(n: u64) -> u64 {
    n.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Checks that `body` can be encoded under `meta`.
pub fn validate(meta: &RecordMeta, body: &RecordBody) -> Result<(), EncodeError> {
    let payload = payload_len(body);
    let max = match body {
        RecordBody::AgentUndo(_) => MAX_AGENT_WORK,
        _ => MAX_PAYLOAD,
    };
    if payload > max {
        return Err(EncodeError::TooLarge { payload, max });
    }
    let custom = meta.agent != PAGE_AGENT;
    match body {
        RecordBody::Undo(_) if custom => Err(EncodeError::AgentMismatch {
            agent: meta.agent,
            kind: Kind::Undo,
        }),
        RecordBody::AgentUndo(_) if !custom => Err(EncodeError::AgentMismatch {
            agent: meta.agent,
            kind: Kind::Undo,
        }),
        _ => Ok(()),
    }
}

/// Appends the record's bytes, padding included, to `out`. The caller has
/// checked it with [`validate`].
pub fn encode_into(out: &mut Vec<u8>, lsn: Lsn, meta: &RecordMeta, body: &RecordBody) {
    let kind = body.kind();
    encode_raw(out, lsn, meta, kind, |out| match body {
        RecordBody::Begin | RecordBody::Commit | RecordBody::Abort | RecordBody::End => {}
        RecordBody::Undo(u) => {
            let after = u.after.as_deref().unwrap_or(&[]);
            let h = PageUndoHeader {
                file_id: U32::new(u.file_id),
                offset_in_page: U32::new(u.offset_in_page),
                page_no: U64::new(u.page_no),
                before_len: U32::new(u.before.len() as u32),
                after_len: U32::new(if u.after.is_some() {
                    after.len() as u32
                } else {
                    u32::MAX
                }),
            };
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&u.before);
            out.extend_from_slice(after);
        }
        RecordBody::AgentUndo(p) => out.extend_from_slice(p),
        RecordBody::Compensation { undo_next } => {
            out.extend_from_slice(&undo_next.map_or(NO_LSN, |l| l.0).to_le_bytes())
        }
        RecordBody::Checkpoint(active) => encode_counted_table(
            out,
            active.iter().map(|a| ActiveEntry {
                txn: U64::new(a.txn),
                first_lsn: U64::new(a.first_lsn.0),
            }),
        ),
        RecordBody::CommitIntent(pages) => encode_counted_table(
            out,
            pages.iter().map(|p| PageRefEntry {
                file_id: U32::new(p.file_id),
                reserved: U32::new(0),
                page_no: U64::new(p.page_no),
            }),
        ),
    });
}

/// A counted table payload (`Checkpoint`, `CommitIntent`): `count` u32,
/// reserved u32, then `count` fixed-size entries.
fn encode_counted_table<E: IntoBytes + Immutable>(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = E>) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for e in entries {
        out.extend_from_slice(e.as_bytes());
    }
}

/// The entries of a counted table payload whose count agrees with them.
fn counted_table<'a, E: FromBytes + KnownLayout + Immutable + Unaligned>(
    payload: &'a [u8],
    malformed: &'static str,
) -> Result<&'a [E], CorruptionKind> {
    if payload.len() < 8 {
        return Err(CorruptionKind::BadPayload(malformed));
    }
    let count = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
    let entries = <[E]>::ref_from_bytes(&payload[8..]).map_err(|_| CorruptionKind::BadPayload(malformed))?;
    if entries.len() != count {
        return Err(CorruptionKind::BadPayload(malformed));
    }
    Ok(entries)
}

/// Appends a segment-end filler record at `lsn`.
pub fn encode_segment_end(out: &mut Vec<u8>, lsn: Lsn) {
    let meta = RecordMeta::txn(0, None);
    encode_raw(out, lsn, &meta, Kind::SegmentEnd, |_| {});
}

fn encode_raw(out: &mut Vec<u8>, lsn: Lsn, meta: &RecordMeta, kind: Kind, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    payload(out);
    let len = out.len() - start;
    let header = RecordHeader {
        crc: U32::new(0),
        len: U32::new(len as u32),
        not_lsn: U64::new(!lsn.0),
        txn: U64::new(meta.txn),
        prev_lsn: U64::new(meta.prev_lsn.map_or(NO_LSN, |l| l.0)),
        scope: U32::new(meta.scope),
        agent: U16::new(meta.agent),
        kind: kind as u8,
        flags: 0,
    };
    out[start..start + HEADER_LEN].copy_from_slice(header.as_bytes());
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + align_up(len as u64) as usize, 0);
}

/// Sets [`FLAG_BATCH_START`] on the record at the start of `bytes` and
/// refreshes its checksum.
pub fn mark_batch_start(bytes: &mut [u8]) {
    let Ok((h, _)) = RecordHeader::read_from_prefix(bytes) else {
        debug_assert!(false, "a batch starts with a whole record");
        return;
    };
    let len = (h.len.get() as usize).min(bytes.len());
    bytes[39] |= FLAG_BATCH_START;
    let crc = crc32c::crc32c(&bytes[4..len]);
    bytes[..4].copy_from_slice(&crc.to_le_bytes());
}

/// Whether the (valid) record at the start of `bytes` starts a batch.
pub fn is_batch_start(bytes: &[u8]) -> bool {
    bytes.get(39).is_some_and(|f| f & FLAG_BATCH_START != 0)
}

/// What sits at a position of the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing written by this log: zeros, or stale bytes whose `lsn` field
    /// names another position (a recycled segment, an earlier crash).
    Unwritten,
    /// A header claiming this position whose record fails its checksum: a
    /// torn write, or damage.
    Damaged(CorruptionKind),
    /// A header claiming this position with a length that cannot be right
    /// (below the header size, above the limit, or past the segment). A torn
    /// write never produces this: the length is written before the LSN.
    BadLength(CorruptionKind),
    /// The header is good; `len` bytes are needed to check the rest.
    NeedMore {
        /// The record's length in bytes, padding excluded.
        len: u32,
    },
    /// A complete record of `len` bytes (padding excluded).
    Valid {
        /// The record's length in bytes, padding excluded.
        len: u32,
    },
}

/// Looks at the bytes at `lsn`: `bytes` starts there and holds at least a
/// header's worth unless the segment ends first; `room` is how many bytes of
/// the segment's record area are left from `lsn`.
pub fn probe(bytes: &[u8], lsn: Lsn, room: u64) -> Probe {
    let Ok((h, _)) = RecordHeader::read_from_prefix(bytes) else {
        return Probe::Unwritten;
    };
    if h.not_lsn.get() != !lsn.0 {
        return Probe::Unwritten;
    }
    let len = h.len.get();
    if (len as usize) < HEADER_LEN || len as usize > HEADER_LEN + MAX_PAYLOAD || len as u64 > room {
        return Probe::BadLength(CorruptionKind::BadLength { len, room });
    }
    if (len as usize) > bytes.len() {
        return Probe::NeedMore { len };
    }
    let found = crc32c::crc32c(&bytes[4..len as usize]);
    if found != h.crc.get() {
        return Probe::Damaged(CorruptionKind::Checksum {
            expected: h.crc.get(),
            found,
        });
    }
    Probe::Valid { len }
}

/// Decodes a record that [`probe`] found valid. Errors here mean a record
/// with a good checksum that this version cannot understand.
pub fn decode(bytes: &[u8]) -> Result<(Record, Kind), CorruptionKind> {
    let (h, _) = RecordHeader::read_from_prefix(bytes).map_err(|_| CorruptionKind::Truncated {
        have: bytes.len() as u64,
        need: HEADER_LEN as u64,
    })?;
    let len = h.len.get() as usize;
    if len < HEADER_LEN || len > bytes.len() {
        return Err(CorruptionKind::Truncated {
            have: bytes.len() as u64,
            need: len as u64,
        });
    }
    let payload = &bytes[HEADER_LEN..len];
    let kind = Kind::from_u8(h.kind).ok_or(CorruptionKind::UnknownKind(h.kind))?;
    if h.flags & !FLAG_BATCH_START != 0 {
        return Err(CorruptionKind::BadPayload("reserved flags set"));
    }
    let agent = h.agent.get();
    let meta = RecordMeta {
        txn: h.txn.get(),
        prev_lsn: match h.prev_lsn.get() {
            NO_LSN => None,
            l => Some(Lsn(l)),
        },
        scope: h.scope.get(),
        agent,
    };
    let empty = |body: RecordBody| {
        if payload.is_empty() {
            Ok(body)
        } else {
            Err(CorruptionKind::BadPayload("payload where none belongs"))
        }
    };
    let body = match kind {
        Kind::Begin => empty(RecordBody::Begin)?,
        Kind::Commit => empty(RecordBody::Commit)?,
        Kind::Abort => empty(RecordBody::Abort)?,
        Kind::End => empty(RecordBody::End)?,
        Kind::SegmentEnd => empty(RecordBody::End)?,
        Kind::Undo if agent != PAGE_AGENT => {
            if payload.len() > MAX_AGENT_WORK {
                return Err(CorruptionKind::BadPayload("agent work identifier over its bound"));
            }
            RecordBody::AgentUndo(payload.to_vec())
        }
        Kind::Undo => {
            let (u, rest) = PageUndoHeader::read_from_prefix(payload)
                .map_err(|_| CorruptionKind::BadPayload("undo payload shorter than its header"))?;
            let before_len = u.before_len.get() as usize;
            let after_len = match u.after_len.get() {
                u32::MAX => None,
                n => Some(n as usize),
            };
            if before_len + after_len.unwrap_or(0) != rest.len() {
                return Err(CorruptionKind::BadPayload(
                    "undo image lengths disagree with record length",
                ));
            }
            RecordBody::Undo(PageUndo {
                file_id: u.file_id.get(),
                page_no: u.page_no.get(),
                offset_in_page: u.offset_in_page.get(),
                before: rest[..before_len].to_vec(),
                after: after_len.map(|_| rest[before_len..].to_vec()),
            })
        }
        Kind::Compensation => {
            let raw: [u8; 8] = payload
                .try_into()
                .map_err(|_| CorruptionKind::BadPayload("compensation payload is not 8 bytes"))?;
            RecordBody::Compensation {
                undo_next: match u64::from_le_bytes(raw) {
                    NO_LSN => None,
                    l => Some(Lsn(l)),
                },
            }
        }
        Kind::Checkpoint => {
            let entries: &[ActiveEntry] = counted_table(payload, "checkpoint table malformed")?;
            RecordBody::Checkpoint(
                entries
                    .iter()
                    .map(|e| ActiveTxn {
                        txn: e.txn.get(),
                        first_lsn: Lsn(e.first_lsn.get()),
                    })
                    .collect(),
            )
        }
        Kind::CommitIntent => {
            const MALFORMED: &str = "commit intent table malformed";
            let entries: &[PageRefEntry] = counted_table(payload, MALFORMED)?;
            if payload[4..8] != [0; 4] || entries.iter().any(|e| e.reserved.get() != 0) {
                return Err(CorruptionKind::BadPayload(MALFORMED));
            }
            RecordBody::CommitIntent(
                entries
                    .iter()
                    .map(|e| PageRef {
                        file_id: e.file_id.get(),
                        page_no: e.page_no.get(),
                    })
                    .collect(),
            )
        }
    };
    Ok((
        Record {
            lsn: Lsn(!h.not_lsn.get()),
            meta,
            body,
        },
        kind,
    ))
}

#[cfg(test)]
mod tests;
