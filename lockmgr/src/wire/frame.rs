//! The frame codec of the coordinator's wire format: framed, versioned,
//! checksummed messages between a node and the coordinator over one stream
//! (Unix socket or TCP).
//!
//! ## Frame (version 5, integers little-endian)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 2 | magic `UQ` |
//! | 2  | 1 | protocol version ([`VERSION`]) |
//! | 3  | 1 | message type (see [`Msg`]) |
//! | 4  | 4 | payload length, at most [`MAX_PAYLOAD`] |
//! | 8  | 8 | request id: chosen by the node, echoed in the reply; 0 for pushed events, and on a `Release`, `ReleaseAll` or `Publish` for "no reply wanted" (a `Publish` is never answered) |
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
//!
//! This file owns the frame: its header, length bound, checksum and
//! version, and reading and writing whole frames. It must never interpret a
//! payload (`payload` does) nor accept a frame whose checksum, version or
//! length is wrong.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::error::{FrameReadError, WireError};
use super::message::Msg;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"UQ";
/// The protocol version every frame carries; a frame of another version is
/// refused. 2: `Lock` carries `live_only`. 3: `Hello` says whether the
/// node launches restarts, `Welcome` and `CounterpartGrant` carry the
/// coordinator's log-access proof (and the grant whether the failed node's
/// locks are unknown); `RebuildRetained`, `AskRecovery`, the
/// `RecoveryAsked` event and the `NoRestarter` code are new. 4: `Granted`
/// carries the lock value block (a flag byte, then 16 bytes when the flag
/// is 1), and `Publish` (0x20) sets value blocks.
pub const VERSION: u8 = 5;
/// The length of a frame's header, in bytes.
pub const HEADER_LEN: usize = 20;
/// The request id of a `Release` or `ReleaseAll` that wants no reply (and
/// of every `Publish`, never answered): a
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

/// A frame's header, as its bytes lie (see the module docs).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct FrameHeader {
    /// [`MAGIC`].
    pub magic: [u8; 2],
    /// [`VERSION`].
    pub version: u8,
    /// The message type ([`Msg::type_code`]).
    pub msg_type: u8,
    /// The payload's length in bytes, at most [`MAX_PAYLOAD`].
    pub payload_len: U32,
    /// Chosen by the node, echoed in the reply; 0 for pushed events and for
    /// [`NO_REPLY`].
    pub request_id: U64,
    /// CRC32C of the header's first 16 bytes and of the payload.
    pub crc: U32,
}

const _: () = assert!(std::mem::size_of::<FrameHeader>() == HEADER_LEN);

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
