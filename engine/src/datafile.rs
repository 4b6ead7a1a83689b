//! Table files: pages read and written through the I/O layer.
//!
//! `data/t-<file id>.tbl` holds page `n` at byte `n * page_size`. Every read
//! checks the page ([`Page::from_disk`]); reading past the end of the file
//! gives an unwritten page, which only an allocation may take for an empty
//! one (`crate::txn`). Before a node trusts a file it is held against its
//! catalog entry (`crate::table::open_checked`). Writes go out as one batch
//! (one io_uring submission, deep queue) followed by one sync per file.
//!
//! ## Direct I/O
//! Table files are opened for direct I/O (`O_DIRECT`) where the file system
//! allows it (ext4, XFS, btrfs; not tmpfs, where [`DataFile::is_direct`]
//! says no and the page cache is all there is). Reads and writes then go to
//! the device through io_uring — the ring issues a direct write at once,
//! where it hands a buffered one on ext4 to a kernel worker — and nothing
//! depends on the kernel's shared page cache: node processes on one host
//! see each other's pages exactly as nodes on two hosts sharing one disk
//! would (coherence is the lock manager's business, `crate::pool`). Direct
//! I/O takes page-aligned buffers only: pages are read into and written
//! from the buffer pool's frames or an [`AlignedPages`] batch, never from a
//! page a transaction holds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wal::io::{Io, IoFile, ReadOp, WriteOp};

use crate::aligned::AlignedPages;
use crate::error::{Error, Result};
use crate::page::Page;

/// One open table file.
#[derive(Debug)]
pub struct DataFile {
    pub file_id: u32,
    file: IoFile,
    /// Whether `file` is open for direct I/O (see the module docs).
    direct: bool,
    /// The file opened again without direct I/O, for the rare read of a
    /// page the file ends inside of (a direct read takes whole blocks).
    buffered: std::sync::OnceLock<IoFile>,
    page_size: usize,
    /// A length the file is known to have reached. Table files only grow
    /// (no page is ever cut off), so a page below it is read without asking
    /// the file system for the length. Asking costs far more than the call:
    /// a `stat` marks the file's change time as seen, the file system then
    /// stamps the next write with a fine-grained time, and that makes the
    /// next fdatasync write the inode too — on this file and, through the
    /// file system's shared clock, on every other file written meanwhile
    /// (the log). Measured on ext4: a third more per sync.
    known_len: AtomicU64,
    /// Held against its catalog entry already
    /// (`crate::table::open_checked`).
    checked: AtomicBool,
}

/// The path of table file `file_id` in the data directory `data_dir`.
pub fn table_path(data_dir: &Path, file_id: u32) -> PathBuf {
    data_dir.join(format!("t-{file_id}.tbl"))
}

impl DataFile {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The write that puts page `page_no`'s `bytes` (sealed, page-aligned
    /// for a direct file) in its place in this file.
    pub fn write_op<'a>(&'a self, page_no: u64, bytes: &'a [u8]) -> WriteOp<'a> {
        debug_assert!(
            !self.direct || (bytes.as_ptr() as usize).is_multiple_of(4096),
            "a direct file is written from aligned memory"
        );
        WriteOp {
            file: &self.file,
            offset: page_no * self.page_size as u64,
            data: bytes,
        }
    }

    /// Bytes per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Whether the file is open for direct I/O (`O_DIRECT`).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn io_file(&self) -> &IoFile {
        &self.file
    }

    /// Whether the file was held against its catalog entry already
    /// (`crate::table::open_checked`).
    pub fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Acquire)
    }

    /// Records that the file was held against its catalog entry.
    pub fn mark_checked(&self) {
        self.checked.store(true, Ordering::Release);
    }

    /// The file's length now (a `stat`), remembered as one it is known to
    /// have.
    pub fn len_now(&self) -> Result<u64> {
        let len = self.file.len()?;
        self.known_len.fetch_max(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Page 0's bytes as they are, unchecked.
    pub fn read_raw_first_page(&self, io: &Io) -> Result<Vec<u8>> {
        let mut buf = AlignedPages::new(1, self.page_size)?;
        self.read_into(io, buf.page_mut(0), 0)?;
        Ok(buf.page(0).to_vec())
    }

    /// Reads and checks page `page_no` (as the device holds it, for a
    /// direct file). Transactions read through the buffer pool instead;
    /// this is for recovery's few single reads and for tools.
    pub fn read_page(&self, io: &Io, page_no: u64) -> Result<Page> {
        let mut buf = AlignedPages::new(1, self.page_size)?;
        self.read_into(io, buf.page_mut(0), page_no)?;
        Page::from_disk(buf.page(0).to_vec(), self.file.path(), self.file_id, page_no)
    }

    /// Where page `page_no` starts and ends in the file.
    fn span(&self, page_no: u64) -> Result<(u64, u64)> {
        let offset = page_no
            .checked_mul(self.page_size as u64)
            .ok_or_else(|| Error::PageOutOfRange {
                file: self.path().to_path_buf(),
                page: page_no,
            })?;
        Ok((offset, offset.saturating_add(self.page_size as u64)))
    }

    /// The file's length once it is at least `end`, or as it is now.
    fn len_reaching(&self, file: &IoFile, end: u64) -> Result<u64> {
        let len = self.known_len.load(Ordering::Relaxed);
        if end <= len {
            return Ok(len);
        }
        let len = file.len()?;
        self.known_len.fetch_max(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Page `page_no`'s bytes into `buf` (page-aligned for a direct file);
    /// zeros where the file ends first.
    pub fn read_into(&self, io: &Io, buf: &mut [u8], page_no: u64) -> Result<()> {
        let (offset, end) = self.span(page_no)?;
        let len = self.len_reaching(&self.file, end)?;
        if end <= len {
            io.read_exact_at(&self.file, buf, offset)?;
        } else {
            buf.fill(0);
            if offset < len {
                // A torn extension: the part that exists is read, the rest
                // is zero. Direct I/O takes whole blocks only, so this rare
                // tail is read through a buffered handle.
                let part = &mut buf[..(len - offset) as usize];
                io.read_exact_at(self.buffered()?, part, offset)?;
            }
        }
        Ok(())
    }

    /// The file opened without direct I/O (see `buffered`).
    fn buffered(&self) -> Result<&IoFile> {
        if let Some(f) = self.buffered.get() {
            return Ok(f);
        }
        let f = IoFile::open(self.path(), false, false)?;
        Ok(self.buffered.get_or_init(|| f))
    }
}

/// Reads what each of `pages` holds now, unchecked (zeros past a file's
/// end), into the first `pages.len()` slots of `into`, as one batch — what
/// recovery writes before-images over — issued together with `writes` of
/// other pages, so the device works on both. The slots `filled` says are
/// filled already are left as they are.
pub fn read_raw_pages_writing(
    io: &Io,
    pages: &[(&DataFile, u64)],
    into: &mut AlignedPages,
    writes: &[WriteOp<'_>],
    filled: &dyn Fn(usize) -> bool,
) -> Result<()> {
    into.reserve(pages.len())?;
    let mut past_end = Vec::new();
    let mut reads = Vec::with_capacity(pages.len());
    for (i, (&(file, page_no), buf)) in pages.iter().zip(into.pages_mut(pages.len())).enumerate() {
        if filled(i) {
            continue;
        }
        let (offset, end) = file.span(page_no)?;
        if end <= file.len_reaching(&file.file, end)? {
            reads.push(ReadOp {
                file: &file.file,
                offset,
                buf,
            });
        } else {
            past_end.push(i);
        }
    }
    io.read_write_batch(&mut reads, writes)?;
    drop(reads);
    for i in past_end {
        let (file, page_no) = pages[i];
        file.read_into(io, into.page_mut(i), page_no)?;
    }
    Ok(())
}

/// [`read_raw_pages_writing`] with nothing to write.
pub fn read_raw_pages(io: &Io, pages: &[(&DataFile, u64)], into: &mut AlignedPages) -> Result<()> {
    read_raw_pages_writing(io, pages, into, &[], &|_| false)
}

/// The table files of a cluster, opened on first use and shared.
pub struct DataFiles {
    dir: PathBuf,
    page_size: usize,
    /// The node whose fencing lock each opened file carries (see
    /// [`crate::fence`]); `None` for tools that never write.
    fence_node: Option<u32>,
    /// `None` once closed: no file is opened again.
    files: Mutex<Option<HashMap<u32, Arc<DataFile>>>>,
}

impl DataFiles {
    pub fn new(dir: PathBuf, page_size: usize, fence_node: Option<u32>) -> DataFiles {
        DataFiles {
            dir,
            page_size,
            fence_node,
            files: Mutex::new(Some(HashMap::new())),
        }
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of table `file_id`; `create` makes it if missing.
    pub fn get(&self, file_id: u32, create: bool) -> Result<Arc<DataFile>> {
        let mut guard = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let Some(files) = guard.as_mut() else {
            return Err(Error::Stopped("the node stopped: its data files are closed".into()));
        };
        if let Some(f) = files.get(&file_id) {
            return Ok(f.clone());
        }
        let path = table_path(&self.dir, file_id);
        let file = IoFile::open_direct(&path, true, create)?;
        let direct = file.is_direct();
        if let Some(node) = self.fence_node {
            // Through the same open file description every page write uses.
            crate::fence::hold(file.std(), node)
                .map_err(|e| wal::io::IoError::new(wal::io::OpKind::Open, &path, None, e))?;
        }
        let f = Arc::new(DataFile {
            file_id,
            file,
            direct,
            buffered: std::sync::OnceLock::new(),
            page_size: self.page_size,
            known_len: AtomicU64::new(0),
            checked: AtomicBool::new(false),
        });
        files.insert(file_id, f.clone());
        Ok(f)
    }

    /// Whether the table files opened so far are open for direct I/O:
    /// `Some(true)` if every one is, `Some(false)` if any is not (its file
    /// system refused), `None` before any was opened.
    pub fn direct(&self) -> Option<bool> {
        let guard = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let files = guard.as_ref()?;
        (!files.is_empty()).then(|| files.values().all(|f| f.is_direct()))
    }

    /// Forgets an open file (its table was dropped).
    pub fn forget(&self, file_id: u32) {
        if let Some(files) = self.files.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            files.remove(&file_id);
        }
    }

    /// Drops every open file and opens none again. A file stays open (with
    /// its fencing lock) until whoever still uses it lets it go.
    pub fn close(&self) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Writes `pages` — each a file, a page number and the page's sealed bytes
/// (page-aligned for a direct file) — as one batch, not synced: callers
/// sync the files after.
pub fn write_pages(io: &Io, pages: &[(&DataFile, u64, &[u8])]) -> Result<()> {
    let ops: Vec<WriteOp<'_>> = pages.iter().map(|&(f, no, bytes)| f.write_op(no, bytes)).collect();
    io.write_batch(&ops, false)?;
    Ok(())
}

/// A page a commit forces: sealed, stamped with its intent.
pub struct Forced {
    /// Its table file.
    pub file: Arc<DataFile>,
    /// Its bytes.
    pub page: Page,
    /// Whether the written page becomes the node's cached copy: false for
    /// pages read past the pool (a large value's, `crate::store`).
    pub cache: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Kind;

    /// The length a file handle remembers is only a lower bound: pages
    /// another handle (another node) appends later are read, not taken for
    /// unwritten ones.
    #[test]
    fn pages_appended_through_another_handle_are_read_not_taken_for_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::fallback();
        let ours = DataFiles::new(dir.path().to_path_buf(), 4096, None);
        let theirs = DataFiles::new(dir.path().to_path_buf(), 4096, None);
        let (a, b) = (ours.get(7, true).unwrap(), theirs.get(7, false).unwrap());

        let write = |f: &DataFile, no: u64, item: &[u8]| {
            let mut p = Page::new(4096, Kind::Bucket, 7, no);
            assert!(p.insert(item, item));
            p.seal();
            let mut buf = AlignedPages::new(1, 4096).unwrap();
            buf.page_mut(0).copy_from_slice(p.bytes());
            write_pages(&io, &[(f, no, buf.page(0))]).unwrap();
        };
        write(&a, 0, b"first");
        assert_eq!(a.read_page(&io, 0).unwrap().find(b"first").unwrap().1, b"first");
        // Past the end: an unwritten page, and the length is asked again.
        assert_eq!(a.read_page(&io, 3).unwrap().kind(), Kind::Unwritten);

        write(&b, 3, b"appended");
        let p = a.read_page(&io, 3).unwrap();
        assert_eq!(p.kind(), Kind::Bucket);
        assert_eq!(p.find(b"appended").unwrap().1, b"appended");
        // Below the end, between written pages: unwritten.
        assert_eq!(a.read_page(&io, 2).unwrap().kind(), Kind::Unwritten);
    }
}
