//! The coordinator's wire format: framed, versioned, checksummed messages
//! between a node and the coordinator over one stream (Unix socket or TCP).
//!
//! The frame codec, [`frame`] (header, length, checksum, version, reading
//! and writing frames), documents the format byte by byte, where the bytes
//! are made; it is public for those docs, and its items are re-exported
//! here. The messages ([`Msg`] and the values it carries) and their payload
//! encoding live apart from it. A malformed frame is answered with an error
//! and the connection is closed; nothing it asked for happens.
//!
//! This module only declares its files and re-exports their public items;
//! it must never hold code of its own.

mod error;
pub mod frame;
mod message;
mod payload;

pub use error::{FrameReadError, WireError};
pub use frame::{
    check_header, decode, decode_frame, encode, read_frame, FrameHeader, HEADER_LEN, MAGIC, MAX_PAYLOAD, NO_REPLY,
    READ_BUFFER, VERSION,
};
pub use message::{ErrorCode, EventKind, HeldLock, MemberInfo, Msg, Outcome, Purpose};

#[cfg(test)]
mod tests;
