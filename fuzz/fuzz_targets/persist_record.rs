//! Arbitrary bytes as a slot of the coordinator's durable record (what a
//! restarted or standby coordinator reads first): the decoder never
//! panics, never allocates past what the bytes can hold, and whatever it
//! accepts encodes to a record that decodes to the same state.
//!
//! Random bytes almost never start with the record's magic or carry a
//! right checksum, so they are also laid behind a header of the documented
//! format (magic `UNDSTCRD`, a version of 1 to 3 and small counts taken
//! from the first bytes) and decoded without comparing the checksum, which
//! reaches the body's parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockmgr::persist::{decode, decode_unchecked, encode};

fuzz_target!(|data: &[u8]| {
    let mut framed = Vec::with_capacity(32 + data.len());
    if let [v, m, r, b, body @ ..] = data {
        framed.extend_from_slice(b"UNDSTCRD");
        framed.extend_from_slice(&(u32::from(*v % 3) + 1).to_le_bytes());
        for count in [m, r, b] {
            framed.extend_from_slice(&u32::from(*count % 16).to_le_bytes());
        }
        framed.extend_from_slice(&0u32.to_le_bytes()); // checksum, not compared
        framed.extend_from_slice(&u32::from(*v / 3).to_le_bytes()); // sequence
        framed.extend_from_slice(body);
    }
    for decoded in [decode(data), decode_unchecked(data), decode_unchecked(&framed)] {
        if let Ok((state, seq)) = decoded {
            let again = encode(&state, seq);
            assert_eq!(decode(&again), Ok((state, seq)));
        }
    }
});
