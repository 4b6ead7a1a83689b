//! Arbitrary bytes as a replication stream (`replication::frame`): the
//! decoder never panics, never allocates past its bound, and whatever it
//! accepts encodes back to the same frame. The first byte also picks a
//! message type for the rest, framed with correct checksums, so that the
//! payload parsing (and the redo record framing behind `Redo`) is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replication::frame::{decode_frame, encode, read_frame, Read1, MAGIC, VERSION};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((msg, used))) = decode_frame(rest) {
        let again = encode(&msg);
        assert_eq!(decode_frame(&again).unwrap(), Some((msg, again.len())));
        rest = &rest[used..];
    }
    let mut cursor = std::io::Cursor::new(data);
    for _ in 0..64 {
        match read_frame(&mut cursor) {
            Ok(Read1::Msg(_) | Read1::Damaged(_)) => {}
            Ok(Read1::End) | Err(_) => break,
        }
    }
    if let Some((&code, payload)) = data.split_first() {
        let mut frame = Vec::with_capacity(20 + payload.len());
        frame.extend_from_slice(&MAGIC);
        frame.push(VERSION);
        frame.push(code);
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let header_crc = crc32c::crc32c(&frame[..12]);
        frame.extend_from_slice(&header_crc.to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        if let Ok(Some((msg, used))) = decode_frame(&frame) {
            assert_eq!(used, frame.len());
            assert_eq!(encode(&msg), frame);
        }
        let _ = understudy::redo::decode(payload);
    }
});
