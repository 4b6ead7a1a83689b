//! The portable backend: `pread`, `pwrite` and `fdatasync`, one operation at a
//! time. Chosen when the kernel refuses io_uring, or by configuration; it must
//! pass the same tests as the io_uring backend.

use std::os::unix::fs::FileExt;

use super::backend::{Backend, BackendKind};
use super::counters::{IoCounters, IoPath, IoStats};
use super::error::{IoError, OpKind};
use super::file::IoFile;
use super::op::{distinct_files, ReadOp, WriteOp};

/// See the module docs. Every operation counts as a system call
/// ([`IoPath::Call`]).
#[derive(Debug, Default)]
pub struct FallbackBackend {
    counters: IoCounters,
}

impl Backend for FallbackBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Fallback
    }

    fn stats(&self) -> IoStats {
        self.counters.snapshot()
    }

    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.counters.reads(IoPath::Call, reads.len());
        for r in reads.iter_mut() {
            // read_exact_at retries short reads and EINTR, and reports EOF as
            // UnexpectedEof.
            r.file
                .std()
                .read_exact_at(r.buf, r.offset)
                .map_err(|e| IoError::new(OpKind::Read, r.file.path(), Some(r.offset), e))?;
        }
        Ok(())
    }

    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError> {
        self.counters.writes(IoPath::Call, writes.len());
        for w in writes {
            w.file
                .std()
                .write_all_at(w.data, w.offset)
                .map_err(|e| IoError::new(OpKind::Write, w.file.path(), Some(w.offset), e))?;
        }
        if sync {
            self.sync(&distinct_files(writes))?;
        }
        Ok(())
    }

    fn sync(&self, files: &[&IoFile]) -> Result<(), IoError> {
        self.counters.syncs(IoPath::Call, files.len());
        for f in files {
            f.std()
                .sync_data()
                .map_err(|e| IoError::new(OpKind::Sync, f.path(), None, e))?;
        }
        Ok(())
    }
}
