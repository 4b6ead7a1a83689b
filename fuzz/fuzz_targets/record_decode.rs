//! Arbitrary bytes through the record decoder: it never panics, and whatever
//! it accepts encodes back to a record that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wal::record::{decode, encode_into, probe, validate, Probe};
use wal::Lsn;

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let lsn = Lsn(u64::from_le_bytes(data[..8].try_into().unwrap()) & !7);
    let room = u16::from_le_bytes([data[8], data[9]]) as u64;
    let bytes = &data[10..];
    let _ = decode(bytes);
    if let Probe::Valid { len } = probe(bytes, lsn, room) {
        if let Ok((rec, _)) = decode(&bytes[..len as usize]) {
            if validate(&rec.meta, &rec.body).is_ok() {
                let mut again = Vec::new();
                encode_into(&mut again, rec.lsn, &rec.meta, &rec.body);
                let Probe::Valid { len } = probe(&again, rec.lsn, again.len() as u64) else {
                    panic!("re-encoded record is not valid");
                };
                assert_eq!(decode(&again[..len as usize]).unwrap().0, rec);
            }
        }
    }
});
