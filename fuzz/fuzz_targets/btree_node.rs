//! Arbitrary bytes as one B+tree node page (leaf or branch): the decoder
//! (`understudy::admin::decode_node`) never panics, and every accessor and
//! route of a node it accepts stays in bounds. The bytes are tried as they
//! are and as the start of a page of the size the first byte picks (the
//! rest zero), so the item heap can sit at a page's real end. With the
//! first byte's top bit set, the page kind is made a node's (leaf or
//! branch by the next bit), so the fuzzer reaches past the kind check into
//! the slots and items.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy::admin::decode_node;

/// Page kinds of a leaf and a branch (`understudy::page::Kind`).
const LEAF: u16 = 4;
const BRANCH: u16 = 5;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut image = rest.to_vec();
    if first & 0x80 != 0 && image.len() >= 6 {
        let kind = if first & 0x40 != 0 { BRANCH } else { LEAF };
        image[4..6].copy_from_slice(&kind.to_le_bytes());
    }
    if let Ok(count) = decode_node(&image) {
        assert!(count * 2 <= image.len(), "more slots than the page holds");
    }
    let page_size = [4096usize, 8192, 16384][usize::from(first & 3) % 3];
    if image.len() < page_size {
        image.resize(page_size, 0);
        let _ = decode_node(&image);
    }
});
