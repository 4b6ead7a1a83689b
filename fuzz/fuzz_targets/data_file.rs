//! Arbitrary bytes as a whole table file (header page, buckets, overflow
//! pages) and as a catalog: the page, table-header and catalog decoders
//! never panic, and what they accept is consistent. With the first byte's
//! top bit set, every page's checksum is made right before reading, so the
//! fuzzer reaches past the checksum into the page and header layouts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy::admin::{check_catalog, check_table_file};

fuzz_target!(|data: &[u8]| {
    let _ = check_catalog(data);
    if data.len() < 2 {
        return;
    }
    let page_size = [4096usize, 8192, 16384][usize::from(data[0] & 3) % 3];
    let file_id = u32::from(data[1]);
    let mut image = data[2..].to_vec();
    if data[0] & 0x80 != 0 {
        for page in image.chunks_mut(page_size) {
            if page.len() > 4 {
                let crc = crc32c::crc32c(&page[4..]);
                page[..4].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
    if let Ok(summary) = check_table_file(&image, page_size, file_id) {
        assert_eq!(summary.pages as usize, image.len().div_ceil(page_size));
        assert!(summary.unwritten <= summary.pages);
    }
});
