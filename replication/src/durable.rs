//! Small files replaced whole and durably (the database identity, a
//! standby's positions): written aside, synced, renamed over, the
//! directory synced, so a crash leaves the old file or the new one.

use std::path::Path;

use wal::io::{Io, IoFile};

use crate::error::Result;

/// Writes `bytes` to `path` durably: a temporary file written and synced,
/// renamed over `path`, the directory synced.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = Io::fallback();
    let dir = path.parent().expect("a file is in a directory");
    std::fs::create_dir_all(dir).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Open, dir, None, e))?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let f = IoFile::open(&tmp, true, true)?;
    io.write_durable(&f, bytes, 0)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Write, path, None, e))?;
    io.sync_dir(dir)?;
    Ok(())
}
