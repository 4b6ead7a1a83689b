//! The frame codec of the replication protocol: every message travels in
//! one frame, versioned and checksummed, over a TCP stream.
//!
//! ## Frame (version 1, integers little-endian)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4 | magic `URPL` |
//! | 4  | 1 | protocol version ([`VERSION`]) |
//! | 5  | 1 | message type (`crate::message::Msg`) |
//! | 6  | 2 | zero |
//! | 8  | 4 | payload length, at most [`MAX_PAYLOAD`] |
//! | 12 | 4 | CRC32C of bytes 0..12 |
//! | 16 | 4 | CRC32C of the payload |
//! | 20 | … | payload |
//!
//! The header has a checksum of its own so that a damaged length is never
//! believed: a frame whose header fails is the end of the stream (the
//! standby reconnects and resumes from its durable position), one whose
//! payload fails is skipped and asked for again (`Resend`).
//!
//! This file owns the bytes of a frame. It must never interpret a payload
//! (`crate::message` does) nor hand on one that failed a check.

use std::io::{Read, Write};

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{FrameError, ReplicationError, Result};
use crate::message::Msg;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"URPL";
/// The protocol version.
pub const VERSION: u8 = 1;
/// Bytes of a frame's header.
pub const HEADER_LEN: usize = 20;
/// Largest payload: a redo record of 4 096 pages of 16 KiB.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// A frame's header, as its bytes lie (see the module docs).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct FrameHeader {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`VERSION`].
    pub version: u8,
    /// The message type.
    pub msg_type: u8,
    /// Zero.
    pub zero: [u8; 2],
    /// The payload's length.
    pub payload_len: U32,
    /// CRC32C of the header's first 12 bytes.
    pub header_crc: U32,
    /// CRC32C of the payload.
    pub payload_crc: U32,
}

const _: () = assert!(std::mem::size_of::<FrameHeader>() == HEADER_LEN);

/// The bytes of the frame carrying `msg`.
pub fn encode(msg: &Msg) -> Vec<u8> {
    let payload = msg.payload();
    assert!(payload.len() <= MAX_PAYLOAD, "a frame's payload is within MAX_PAYLOAD");
    let mut h = FrameHeader {
        magic: MAGIC,
        version: VERSION,
        msg_type: msg.type_code(),
        zero: [0; 2],
        payload_len: U32::new(payload.len() as u32),
        header_crc: U32::new(0),
        payload_crc: U32::new(crc32c::crc32c(&payload)),
    };
    h.header_crc = U32::new(crc32c::crc32c(&h.as_bytes()[..12]));
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks a header; returns the payload length to read next.
pub fn check_header(h: &FrameHeader) -> Result<usize, FrameError> {
    let computed = crc32c::crc32c(&h.as_bytes()[..12]);
    if computed != h.header_crc.get() {
        return Err(FrameError::HeaderChecksum {
            stored: h.header_crc.get(),
            computed,
        });
    }
    if h.magic != MAGIC {
        return Err(FrameError::Magic(h.magic));
    }
    if h.version != VERSION {
        return Err(FrameError::Version { found: h.version });
    }
    let len = h.payload_len.get();
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len as usize)
}

/// Checks a payload against its sound header and decodes the message.
pub fn decode(h: &FrameHeader, payload: &[u8]) -> Result<Msg, FrameError> {
    let computed = crc32c::crc32c(payload);
    if computed != h.payload_crc.get() {
        return Err(FrameError::PayloadChecksum {
            stored: h.payload_crc.get(),
            computed,
        });
    }
    Msg::decode(h.msg_type, payload)
}

/// Decodes the frame at the start of `bytes`: `Ok(None)` if more bytes are
/// needed; otherwise the message and the bytes it used.
pub fn decode_frame(bytes: &[u8]) -> Result<Option<(Msg, usize)>, FrameError> {
    let Ok((h, rest)) = FrameHeader::read_from_prefix(bytes) else {
        return Ok(None);
    };
    let len = check_header(&h)?;
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some((decode(&h, &rest[..len])?, HEADER_LEN + len)))
}

/// What reading a frame from a stream gave.
#[derive(Debug)]
pub enum Read1 {
    /// A sound message.
    Msg(Msg),
    /// A frame whose payload failed its checksum, skipped: the stream goes
    /// on, and the frame is to be asked for again.
    Damaged(FrameError),
    /// The peer closed the stream between frames.
    End,
}

/// Reads one frame from `r`.
pub fn read_frame(r: &mut impl Read) -> Result<Read1> {
    let mut hb = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut hb[got..]) {
            Ok(0) if got == 0 => return Ok(Read1::End),
            Ok(0) => {
                return Err(ReplicationError::net(
                    "reading a frame",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReplicationError::net("reading a frame", e)),
        }
    }
    let h = FrameHeader::read_from_bytes(&hb).expect("the buffer is one header");
    let len = check_header(&h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)
        .map_err(|e| ReplicationError::net("reading a frame's payload", e))?;
    match decode(&h, &payload) {
        Ok(m) => Ok(Read1::Msg(m)),
        Err(e @ FrameError::PayloadChecksum { .. }) => Ok(Read1::Damaged(e)),
        Err(e) => Err(e.into()),
    }
}

/// Writes the frame of `msg` to `w`.
pub fn write_frame(w: &mut impl Write, msg: &Msg) -> Result<()> {
    w.write_all(&encode(msg))
        .map_err(|e| ReplicationError::net("writing a frame", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Msg> {
        let rec = understudy::redo::RedoRecord {
            seq: 5,
            round: 2,
            node: 1,
            log: 3,
            intent_lsn: 77,
            page_size: 4096,
            pages: vec![(2, 9, vec![7u8; 4096])],
        };
        vec![
            Msg::Hello {
                database: [1; 16],
                standby: 2,
                nonce: [3; 32],
            },
            Msg::Proof {
                proof: [4; 32],
                from_seq: 9,
            },
            Msg::Ack { durable: 5, applied: 4 },
            Msg::Resend { from_seq: 6 },
            Msg::Challenge {
                nonce: [5; 32],
                proof: [6; 32],
            },
            Msg::Welcome {
                committed: 10,
                sync: true,
            },
            Msg::Refused {
                code: 1,
                detail: b"why".to_vec(),
            },
            Msg::Redo { record: rec.encode() },
            Msg::Tip { committed: 11 },
        ]
    }

    #[test]
    fn every_message_decodes_to_itself_from_a_buffer_and_a_stream() {
        for m in samples() {
            let bytes = encode(&m);
            assert_eq!(decode_frame(&bytes).unwrap(), Some((m.clone(), bytes.len())));
            assert_eq!(decode_frame(&bytes[..bytes.len() - 1]).unwrap(), None);
            match read_frame(&mut bytes.as_slice()).unwrap() {
                Read1::Msg(got) => assert_eq!(got, m),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_damaged_header_is_refused_and_a_damaged_payload_is_skipped() {
        let m = Msg::Ack { durable: 1, applied: 1 };
        let mut bytes = encode(&m);
        bytes[9] ^= 1; // the length
        assert!(matches!(decode_frame(&bytes), Err(FrameError::HeaderChecksum { .. })));
        assert!(read_frame(&mut bytes.as_slice()).is_err());

        let mut two = encode(&m);
        two[HEADER_LEN] ^= 1;
        two.extend(encode(&Msg::Tip { committed: 3 }));
        let mut r = two.as_slice();
        assert!(matches!(read_frame(&mut r).unwrap(), Read1::Damaged(_)));
        assert!(matches!(
            read_frame(&mut r).unwrap(),
            Read1::Msg(Msg::Tip { committed: 3 })
        ));
        assert!(matches!(read_frame(&mut r).unwrap(), Read1::End));
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let frame = |code: u8, payload: &[u8]| {
            let mut h = FrameHeader {
                magic: MAGIC,
                version: VERSION,
                msg_type: code,
                zero: [0; 2],
                payload_len: U32::new(payload.len() as u32),
                header_crc: U32::new(0),
                payload_crc: U32::new(crc32c::crc32c(payload)),
            };
            h.header_crc = U32::new(crc32c::crc32c(&h.as_bytes()[..12]));
            let mut b = h.as_bytes().to_vec();
            b.extend_from_slice(payload);
            b
        };
        assert_eq!(decode_frame(&frame(0x42, &[])), Err(FrameError::UnknownType(0x42)));
        assert!(matches!(
            decode_frame(&frame(0x03, &[0; 15])),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            decode_frame(&frame(0x03, &[0; 17])),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            decode_frame(&frame(0x82, &[0; 8].iter().chain(&[2]).copied().collect::<Vec<_>>())),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            decode_frame(&frame(0x84, b"not a record")),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            decode_frame(&frame(0x83, &[1, 255, 255, 255, 255])),
            Err(FrameError::Malformed { .. })
        ));
        let mut v = encode(&Msg::Tip { committed: 1 });
        v[4] = 9;
        let c = crc32c::crc32c(&v[..12]);
        v[12..16].copy_from_slice(&c.to_le_bytes());
        assert_eq!(decode_frame(&v), Err(FrameError::Version { found: 9 }));
    }
}
