//! Arbitrary bytes as the coordinator's input stream: the frame decoder
//! never panics, never allocates past its limit, and whatever it accepts
//! encodes back to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockmgr::wire::{decode_frame, encode, read_frame};

fuzz_target!(|data: &[u8]| {
    // As a sequence of frames in a buffer.
    let mut rest = data;
    while let Ok(Some((id, msg, used))) = decode_frame(rest) {
        let again = encode(id, &msg);
        let (id2, msg2, used2) = decode_frame(&again).unwrap().unwrap();
        assert_eq!((id2, &msg2, used2), (id, &msg, again.len()));
        rest = &rest[used..];
    }
    // As a stream, the way the server reads it.
    let mut cursor = std::io::Cursor::new(data);
    for _ in 0..64 {
        match read_frame(&mut cursor) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
