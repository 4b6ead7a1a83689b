//! Before-images of byte ranges: what a change to a page leaves in the undo
//! log, and how a page is put back from them.
//!
//! A change a transaction makes to a page is logged as the before-image of
//! each byte range it changed: one `Undo` record per range (file, page,
//! offset in the page, the bytes as they were; see `wal::record`). Ranges
//! less than [`MERGE_GAP`] apart go in one record, since a record's own
//! headers cost about that much. The first change a transaction makes to a
//! page also logs the page's header as it was, because the commit changes
//! the header (stamp and checksum, `crate::page`) with no change of its own.
//!
//! Putting a page back ([`apply`]) writes the ranges over whatever the page
//! holds now, newest record first. That gives the page as it was before the
//! transaction, byte for byte, whatever state a crash left it in: a byte
//! outside every logged range is the same before and after the transaction,
//! so the old page, the new one, and one torn between the two all come back
//! to the old one. Doing it twice gives the same page.

use std::ops::Range;

/// Changed ranges closer than this are logged as one: a record's header and
/// its page-undo header take 64 bytes, more than the unchanged bytes between.
pub const MERGE_GAP: usize = 64;

/// The byte ranges in which `after` differs from `before` (pages of one
/// size), in order, with `always` (when given) among them, and ranges
/// closer than [`MERGE_GAP`] merged.
pub fn changed_ranges(before: &[u8], after: &[u8], always: Option<Range<usize>>) -> Vec<Range<usize>> {
    debug_assert_eq!(before.len(), after.len(), "two images of one page");
    let len = before.len().min(after.len());
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut add = |r: Range<usize>| match out.last_mut() {
        Some(last) if r.start <= last.end + MERGE_GAP => last.end = last.end.max(r.end),
        _ => out.push(r),
    };
    if let Some(r) = always {
        add(r.start.min(len)..r.end.min(len));
    }
    // Sixteen bytes at a time, then the exact bytes inside a chunk that
    // differs: a page changes in a few places, so most chunks are equal.
    const CHUNK: usize = 16;
    let mut at = 0;
    while at < len {
        let end = (at + CHUNK).min(len);
        let (b, a) = (&before[at..end], &after[at..end]);
        if b != a {
            let first = b.iter().zip(a).position(|(x, y)| x != y).unwrap_or(0);
            let last = b.iter().zip(a).rposition(|(x, y)| x != y).unwrap_or(0);
            add(at + first..at + last + 1);
        }
        at = end;
    }
    out
}

/// Writes the before-image `bytes` at `offset` of `page`; `Err` with what is
/// wrong if the range does not lie in the page (a record that names bytes
/// past the page's end cannot be from this page size).
pub fn apply(page: &mut [u8], offset: usize, bytes: &[u8]) -> Result<(), String> {
    let end = offset
        .checked_add(bytes.len())
        .filter(|&e| e <= page.len())
        .ok_or_else(|| {
            format!(
                "a before-image of {} bytes at offset {offset} runs past a page of {} bytes",
                bytes.len(),
                page.len()
            )
        })?;
    page[offset..end].copy_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn equal_pages_have_no_changed_range_unless_one_is_asked_for() {
        let p = vec![7u8; 4096];
        assert!(changed_ranges(&p, &p, None).is_empty());
        assert_eq!(changed_ranges(&p, &p, Some(0..48)), vec![0..48]);
    }

    #[test]
    fn ranges_are_exact_and_near_ones_merge() {
        let before = vec![0u8; 4096];
        let mut after = before.clone();
        after[100] = 1;
        after[103] = 1;
        // Within MERGE_GAP of the first: merged.
        after[150] = 1;
        // Far from both: a range of its own.
        after[1000..1010].fill(2);
        assert_eq!(changed_ranges(&before, &after, None), vec![100..151, 1000..1010]);
        // The header range absorbs a change right after it.
        assert_eq!(changed_ranges(&before, &after, Some(0..48)), vec![0..151, 1000..1010]);
        after[4095] = 9;
        assert_eq!(changed_ranges(&before, &after, None).last(), Some(&(4095..4096)));
    }

    #[test]
    fn a_range_past_the_page_is_refused() {
        let mut page = vec![0u8; 64];
        assert!(apply(&mut page, 60, &[1, 2, 3, 4]).is_ok());
        assert!(apply(&mut page, 61, &[1, 2, 3, 4]).is_err());
        assert!(apply(&mut page, usize::MAX, &[1]).is_err());
    }

    /// A page changed several times: its ranges, applied newest first over
    /// the last image, or over any mix of the first and last images (a torn
    /// write), give back the first image.
    fn undo_gives_back_the_first_image(
        first: Vec<u8>,
        edits: Vec<(usize, Vec<u8>)>,
        torn: Vec<bool>,
    ) -> Result<(), TestCaseError> {
        let mut page = first.clone();
        let mut log: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, (at, bytes)) in edits.into_iter().enumerate() {
            let before = page.clone();
            let at = at % page.len();
            let end = (at + bytes.len()).min(page.len());
            page[at..end].copy_from_slice(&bytes[..end - at]);
            let header = (i == 0).then_some(0..8);
            for r in changed_ranges(&before, &page, header) {
                log.push((r.start, before[r].to_vec()));
            }
        }
        // The commit's seal changes the header with no record of its own:
        // the first change's header range covers it.
        page[..8].copy_from_slice(&[0xAA; 8]);
        // Sectors of 64 bytes from either image.
        let mut disk = page.clone();
        for (s, &old) in torn.iter().enumerate() {
            let r = (s * 64).min(disk.len())..((s + 1) * 64).min(disk.len());
            if old {
                disk[r.clone()].copy_from_slice(&first[r]);
            }
        }
        for target in [page, disk] {
            let mut target = target;
            for (at, bytes) in log.iter().rev() {
                apply(&mut target, *at, bytes).unwrap();
            }
            prop_assert_eq!(&target, &first);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn applying_the_ranges_newest_first_restores_the_page(
            first in proptest::collection::vec(any::<u8>(), 512),
            edits in proptest::collection::vec((0usize..512, proptest::collection::vec(any::<u8>(), 1..80)), 1..6),
            torn in proptest::collection::vec(any::<bool>(), 8),
        ) {
            undo_gives_back_the_first_image(first, edits, torn)?;
        }
    }
}
