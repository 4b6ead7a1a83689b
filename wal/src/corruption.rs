//! What exactly is wrong with damaged log bytes ([`CorruptionKind`]).
//!
//! Record decoding reports these and [`crate::WalError::Corruption`] carries
//! them with the LSN where the damage lies. This file owns the description
//! of damage only; it must never decide whether damage is a torn tail or
//! corruption (the reader does) and never depends on the record format.

use crate::lsn::Lsn;

/// What exactly is wrong with damaged bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    #[error("checksum mismatch: stored {expected:#010x}, computed {found:#010x}")]
    Checksum { expected: u32, found: u32 },
    #[error("record length {len} is impossible: below the header size, above the limit, or past the {room} bytes left in its segment")]
    BadLength { len: u32, room: u64 },
    #[error("unreadable bytes, yet a record written after them was durable follows at LSN {next_valid}")]
    Hole { next_valid: Lsn },
    #[error("{have} bytes where {need} are needed")]
    Truncated { have: u64, need: u64 },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("malformed payload: {0}")]
    BadPayload(&'static str),
    #[error("the stream continues into segment {segment}, which is missing or has a bad header")]
    MissingSegment { segment: u64 },
}
