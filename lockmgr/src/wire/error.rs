//! Why bytes are not a frame ([`WireError`]) and why a frame could not be
//! read from a stream ([`FrameReadError`]).
//!
//! This file owns those refusals only; it must never decide one (the codec
//! and the payload decoder do).

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

/// A frame could not be read: the stream failed, or carried no valid frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid frame: {0}")]
    Wire(#[from] WireError),
}
