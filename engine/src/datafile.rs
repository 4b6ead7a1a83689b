//! Table files: pages read and written through the I/O layer.
//!
//! `data/t-<file id>.tbl` holds page `n` at byte `n * page_size`. Every read
//! checks the page ([`Page::from_disk`]); reading past the end of the file
//! gives an unwritten page. Writes go out as one batch (one io_uring
//! submission, deep queue) followed by one sync per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wal::io::{Io, IoFile, WriteOp};

use crate::error::{Error, Result};
use crate::page::Page;

/// One open table file.
#[derive(Debug)]
pub struct DataFile {
    pub file_id: u32,
    file: IoFile,
    page_size: usize,
}

pub fn table_path(data_dir: &Path, file_id: u32) -> PathBuf {
    data_dir.join(format!("t-{file_id}.tbl"))
}

impl DataFile {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The write that puts `page` (sealed) in its place in this file.
    pub fn write_op<'a>(&'a self, page: &'a Page) -> WriteOp<'a> {
        WriteOp {
            file: &self.file,
            offset: page.page_no() * self.page_size as u64,
            data: page.bytes(),
        }
    }

    pub fn io_file(&self) -> &IoFile {
        &self.file
    }

    /// Reads and checks page `page_no`.
    pub fn read_page(&self, io: &Io, page_no: u64) -> Result<Page> {
        let mut buf = vec![0u8; self.page_size];
        self.read_into(io, &self.file, &mut buf, page_no)?;
        Page::from_disk(buf, self.file.path(), self.file_id, page_no)
    }

    /// The file opened for reading past the page cache (`O_DIRECT`), for
    /// [`DataFile::read_page_from_device`]; `None` where the file system
    /// refuses direct I/O (tmpfs), whose cache is all there is.
    pub fn open_on_device(&self) -> Result<Option<IoFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(self.path());
        match direct {
            Ok(f) => Ok(Some(IoFile::from_std(f, self.path()))),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(wal::io::IoError::new(wal::io::OpKind::Open, self.path(), None, e).into()),
        }
    }

    /// Reads and checks page `page_no` as the device holds it, through
    /// `device` ([`DataFile::open_on_device`]): after a failed fsync the
    /// page cache may hold a page the disk does not. Without `device`, the
    /// page is read as usual.
    pub fn read_page_from_device(&self, io: &Io, device: Option<&IoFile>, page_no: u64) -> Result<Page> {
        let Some(device) = device else {
            return self.read_page(io, page_no);
        };
        // Direct I/O wants the buffer aligned to the device's block; the
        // page size (a multiple of 4 KiB) is, so take a page-aligned window
        // of a buffer twice that size.
        let mut raw = vec![0u8; 2 * self.page_size];
        let at = raw.as_ptr().align_offset(self.page_size.min(4096));
        let buf = &mut raw[at..at + self.page_size];
        self.read_into(io, device, buf, page_no)?;
        Page::from_disk(buf.to_vec(), self.file.path(), self.file_id, page_no)
    }

    /// Page `page_no`'s bytes from `file` into `buf`; zeros where the file
    /// ends first.
    fn read_into(&self, io: &Io, file: &IoFile, buf: &mut [u8], page_no: u64) -> Result<()> {
        let offset = page_no
            .checked_mul(self.page_size as u64)
            .ok_or_else(|| Error::InvalidArgument(format!("page number {page_no} out of range")))?;
        let len = file.len()?;
        if offset + self.page_size as u64 <= len {
            io.read_exact_at(file, buf, offset)?;
        } else if offset < len {
            // A torn extension: the part that exists is read, the rest is
            // zero. Direct I/O refuses a length that is not whole blocks, so
            // there this rare tail is read through the cache.
            let part = &mut buf[..(len - offset) as usize];
            if io.read_exact_at(file, part, offset).is_err() {
                io.read_exact_at(&self.file, part, offset)?;
            }
        }
        Ok(())
    }
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
        let file = IoFile::open(&path, true, create)?;
        if let Some(node) = self.fence_node {
            // Through the same open file description every page write uses.
            crate::fence::hold(file.std(), node)
                .map_err(|e| wal::io::IoError::new(wal::io::OpKind::Open, &path, None, e))?;
        }
        let f = Arc::new(DataFile {
            file_id,
            file,
            page_size: self.page_size,
        });
        files.insert(file_id, f.clone());
        Ok(f)
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

/// Writes `pages` (each already sealed) as one batch, not synced: callers
/// sync per file, or share the sync ([`GroupSync`]).
pub fn write_pages(io: &Io, pages: &[(&DataFile, &Page)]) -> Result<()> {
    io.write_batch(&write_ops(pages), false)?;
    Ok(())
}

fn write_ops<'a>(pages: &[(&'a DataFile, &'a Page)]) -> Vec<WriteOp<'a>> {
    pages.iter().map(|(f, p)| f.write_op(p)).collect()
}

/// Writes `pages` (each already sealed) as one batch and syncs the files
/// written, in one submission where the backend allows.
pub fn write_pages_synced(io: &Io, pages: &[(&DataFile, &Page)]) -> Result<()> {
    io.write_batch(&write_ops(pages), true)?;
    Ok(())
}

/// Group FORCE: concurrent commits share data-file syncs the way group
/// commit shares log syncs.
///
/// A committer that finds no sync under way leads one at once: its writes
/// and the sync of its files go to the kernel together, and the files
/// others wrote since the last sync are synced along. Otherwise it writes
/// its pages (no sync) and waits for a sync that started after its write
/// completed; when the running one ends, one of those waiting leads the
/// next, taking every file written so far. After a failed sync nothing more is
/// accepted (a failed fsync is never retried).
#[derive(Default)]
pub struct GroupSync {
    state: Mutex<SyncState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Write batches completed, and how many of them are durable.
    written: u64,
    synced: u64,
    syncing: bool,
    /// Files written since the last sync started.
    dirty: HashMap<u32, Arc<DataFile>>,
    failed: Option<String>,
}

impl GroupSync {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of the files written since the last sync (the node stopped;
    /// they will not be synced by it).
    pub fn forget_files(&self) {
        self.lock().dirty.clear();
    }

    /// Writes `pages` and returns once they are durable.
    pub fn write_durable(&self, io: &Io, pages: &[(&Arc<DataFile>, &Page)]) -> Result<()> {
        let batch: Vec<(&DataFile, &Page)> = pages.iter().map(|(f, p)| (f.as_ref(), *p)).collect();
        let mut s = self.lock();
        if let Some(why) = &s.failed {
            return Err(Error::Stopped(format!("an earlier data sync failed: {why}")));
        }
        if !s.syncing {
            // Nobody is syncing: lead at once. The writes and the sync go to
            // the kernel together (`write_pages_synced`), and the files
            // others wrote since the last sync are synced along.
            s.syncing = true;
            s.written += 1;
            let target = s.written;
            let others: Vec<Arc<DataFile>> = s
                .dirty
                .drain()
                .map(|(_, f)| f)
                .filter(|f| !pages.iter().any(|(p, _)| p.file_id == f.file_id))
                .collect();
            drop(s);
            let r = write_pages_synced(io, &batch).and_then(|()| {
                let handles: Vec<&IoFile> = others.iter().map(|f| f.io_file()).collect();
                Ok(io.sync_all(&handles)?)
            });
            return self.finish_sync(target, r);
        }
        drop(s);
        write_pages(io, &batch)?;
        let mut s = self.lock();
        s.written += 1;
        let mine = s.written;
        for (f, _) in pages {
            s.dirty.entry(f.file_id).or_insert_with(|| Arc::clone(f));
        }
        loop {
            if let Some(why) = &s.failed {
                return Err(Error::Stopped(format!("an earlier data sync failed: {why}")));
            }
            if s.synced >= mine {
                return Ok(());
            }
            if s.syncing {
                s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.syncing = true;
            let target = s.written;
            let files: Vec<Arc<DataFile>> = s.dirty.drain().map(|(_, f)| f).collect();
            drop(s);
            let handles: Vec<&IoFile> = files.iter().map(|f| f.io_file()).collect();
            self.finish_sync(target, io.sync_all(&handles).map_err(Error::from))?;
            s = self.lock();
        }
    }

    /// Ends a sync that covered every write batch up to `target`: records
    /// it, or the failure, which refuses everything from then on (a failed
    /// fsync is never retried), and wakes the waiters.
    fn finish_sync(&self, target: u64, r: Result<()>) -> Result<()> {
        let mut s = self.lock();
        s.syncing = false;
        match &r {
            Ok(()) => s.synced = s.synced.max(target),
            Err(e) => s.failed = Some(e.to_string()),
        }
        self.done.notify_all();
        r
    }
}
