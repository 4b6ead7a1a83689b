//! Why bytes are not a frame ([`WireError`]) and why a frame could not be
//! read from a stream ([`FrameReadError`]).
//!
//! This file owns those refusals only; it must never decide one (the codec
//! and the payload decoder do).

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame does not start with `UQ` (the bytes found instead).
    #[error("bad magic {0:?}")]
    BadMagic([u8; 2]),
    /// The frame is of another protocol version (the version found).
    #[error("protocol version {0} is not supported")]
    BadVersion(u8),
    /// The payload length exceeds `MAX_PAYLOAD` (the length found, in
    /// bytes).
    #[error("payload of {0} bytes exceeds the limit")]
    TooLarge(u32),
    /// The CRC32C does not match the header and payload.
    #[error("frame checksum mismatch")]
    Checksum,
    /// No message has this type code.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// The payload does not hold the message its type names (what is
    /// wrong), or the stream ended inside a frame.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

/// A frame could not be read: the stream failed, or carried no valid frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameReadError {
    /// Reading the stream failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The stream carried bytes that are no valid frame.
    #[error("invalid frame: {0}")]
    Wire(#[from] WireError),
}
