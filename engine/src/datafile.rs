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

    pub fn io_file(&self) -> &IoFile {
        &self.file
    }

    /// Reads and checks page `page_no`.
    pub fn read_page(&self, io: &Io, page_no: u64) -> Result<Page> {
        let offset = page_no
            .checked_mul(self.page_size as u64)
            .ok_or_else(|| Error::InvalidArgument(format!("page number {page_no} out of range")))?;
        let len = self.file.len()?;
        let mut buf = vec![0u8; self.page_size];
        if offset + self.page_size as u64 <= len {
            io.read_exact_at(&self.file, &mut buf, offset)?;
        } else if offset < len {
            // A torn extension: the part that exists is read, the rest is zero.
            io.read_exact_at(&self.file, &mut buf[..(len - offset) as usize], offset)?;
        }
        Page::from_disk(buf, self.file.path(), self.file_id, page_no)
    }
}

/// The table files of a cluster, opened on first use and shared.
pub struct DataFiles {
    dir: PathBuf,
    page_size: usize,
    files: Mutex<HashMap<u32, Arc<DataFile>>>,
}

impl DataFiles {
    pub fn new(dir: PathBuf, page_size: usize) -> DataFiles {
        DataFiles {
            dir,
            page_size,
            files: Mutex::new(HashMap::new()),
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
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&file_id) {
            return Ok(f.clone());
        }
        let path = table_path(&self.dir, file_id);
        let file = IoFile::open(&path, true, create)?;
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
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(&file_id);
    }
}

/// Writes `pages` (each already sealed) as one batch; with `sync`, each file
/// written is made durable before returning.
pub fn write_pages(io: &Io, pages: &[(&DataFile, &Page)], sync: bool) -> Result<()> {
    let ops: Vec<WriteOp<'_>> = pages
        .iter()
        .map(|(f, p)| WriteOp {
            file: &f.file,
            offset: p.page_no() * f.page_size as u64,
            data: p.bytes(),
        })
        .collect();
    io.write_batch(&ops, sync)?;
    Ok(())
}
