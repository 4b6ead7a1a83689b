//! Page-aligned memory for direct I/O, in one anonymous mapping.
//!
//! A file opened for direct I/O (`O_DIRECT`, see [`crate::datafile`]) is
//! read and written only through buffers aligned to the device's logical
//! block. [`AlignedPages`] is a run of page-sized slots in one anonymous
//! `memmap2` mapping — page-aligned by construction, allocated once and
//! reused: a commit round's pages and a recovery's batch of pages pass
//! through one, with no allocation per page. This file owns the memory
//! only; it never reads or writes a file.

use memmap2::MmapMut;

use crate::error::{Error, Result};

/// `count` page-sized, page-aligned slots.
pub(crate) struct AlignedPages {
    map: MmapMut,
    page_size: usize,
    count: usize,
}

impl AlignedPages {
    /// Room for `count` pages of `page_size` bytes (at least one).
    pub(crate) fn new(count: usize, page_size: usize) -> Result<AlignedPages> {
        let count = count.max(1);
        let map = MmapMut::map_anon(count * page_size).map_err(|e| {
            Error::Io(wal::io::IoError::new(
                wal::io::OpKind::Open,
                "anonymous memory for page buffers".as_ref(),
                None,
                e,
            ))
        })?;
        Ok(AlignedPages { map, page_size, count })
    }

    /// Makes room for at least `count` pages, keeping nothing of what was
    /// held (callers fill every slot they use).
    pub(crate) fn reserve(&mut self, count: usize) -> Result<()> {
        if count > self.count {
            *self = AlignedPages::new(count.next_power_of_two(), self.page_size)?;
        }
        Ok(())
    }

    /// Slots held.
    pub(crate) fn capacity(&self) -> usize {
        self.count
    }

    /// Slot `i`.
    pub(crate) fn page(&self, i: usize) -> &[u8] {
        &self.map[i * self.page_size..(i + 1) * self.page_size]
    }

    /// Slot `i`, to fill.
    pub(crate) fn page_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.map[i * self.page_size..(i + 1) * self.page_size]
    }

    /// The first `n` slots, each to fill (for a batch of reads).
    pub(crate) fn pages_mut(&mut self, n: usize) -> std::slice::ChunksExactMut<'_, u8> {
        self.map[..n * self.page_size].chunks_exact_mut(self.page_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_page_aligned_and_grow() {
        let mut a = AlignedPages::new(3, 4096).unwrap();
        for i in 0..3 {
            assert_eq!(a.page(i).as_ptr() as usize % 4096, 0);
        }
        a.page_mut(2)[7] = 9;
        assert_eq!(a.page(2)[7], 9);
        a.reserve(5).unwrap();
        assert_eq!(a.pages_mut(5).count(), 5);
    }
}
