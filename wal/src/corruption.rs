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
    /// The record's stored checksum disagrees with its bytes.
    #[error("checksum mismatch: stored {expected:#010x}, computed {found:#010x}")]
    Checksum {
        /// The CRC32C the record header stores.
        expected: u32,
        /// The CRC32C computed over the bytes read.
        found: u32,
    },
    /// A header names a record length no record at that position can have.
    #[error("record length {len} is impossible: below the header size, above the limit, or past the {room} bytes left in its segment")]
    BadLength {
        /// The length the header gives, in bytes: header and payload,
        /// padding excluded.
        len: u32,
        /// Bytes left in the segment's record area from the record's LSN.
        room: u64,
    },
    /// Unreadable bytes that a record written after them was durable
    /// follows: acknowledged data was damaged, this is no torn tail.
    #[error("unreadable bytes, yet a record written after them was durable follows at LSN {next_valid}")]
    Hole {
        /// The valid record, one that starts a flush batch, found past the
        /// damage.
        next_valid: Lsn,
    },
    /// Fewer bytes than a header or record needs.
    #[error("{have} bytes where {need} are needed")]
    Truncated {
        /// Bytes there are.
        have: u64,
        /// Bytes the header or record needs.
        need: u64,
    },
    /// A record with a good checksum whose kind byte (given) this format
    /// version does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A record with a good checksum whose payload does not fit its kind;
    /// the text says what is wrong.
    #[error("malformed payload: {0}")]
    BadPayload(&'static str),
    /// The stream runs on into a segment that is missing or whose header is
    /// unusable.
    #[error("the stream continues into segment {segment}, which is missing or has a bad header")]
    MissingSegment {
        /// The number of that segment.
        segment: u64,
    },
}
