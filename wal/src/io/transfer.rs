//! Whole reads and writes on the ring: a transfer the kernel completed only
//! in part (a short read or write) is continued with a new operation for
//! the remainder, until every byte moved or one failed. Written once, for
//! the io_uring backend's reads, writes, and reads and writes together
//! ([`Mixed`]) alike ([`transfer_all`]).
//!
//! This file owns that loop and the errors it reports. It must never touch
//! the ring itself (it hands its operations to a runner that does, see
//! `super::ring`) and never retries an operation that failed.

use std::io;

use super::error::{IoError, OpKind};
use super::file::IoFile;
use super::op::{ReadOp, WriteOp};
use super::ring::{os_err, RawOp};

/// Largest single transfer; longer ones continue as short transfers do.
pub(super) const MAX_TRANSFER: usize = 1 << 30;

/// The reads or the writes of one call, each to be carried out whole.
pub(super) trait Transfers {
    /// What transfer `i` is, for its errors.
    fn op(&self, i: usize) -> OpKind;

    /// How many transfers there are.
    fn count(&self) -> usize;

    /// The file of transfer `i`.
    fn file(&self, i: usize) -> &IoFile;

    /// Where in its file transfer `i` starts, in bytes.
    fn offset(&self, i: usize) -> u64;

    /// How many bytes transfer `i` moves in all.
    fn len(&self, i: usize) -> usize;

    /// The ring operation moving `len` bytes of transfer `i` from its byte
    /// `done` on.
    fn raw_op(&mut self, i: usize, done: usize, len: u32) -> RawOp;

    /// The error of transfer `i` when it moved no byte: the end of the
    /// file for a read, no progress for a write.
    fn no_progress(&self, i: usize) -> io::Error {
        match self.op(i) {
            OpKind::Read => io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"),
            _ => io::Error::new(io::ErrorKind::WriteZero, "write made no progress"),
        }
    }
}

impl Transfers for &mut [ReadOp<'_>] {
    fn op(&self, _: usize) -> OpKind {
        OpKind::Read
    }

    fn count(&self) -> usize {
        <[ReadOp<'_>]>::len(self)
    }

    fn file(&self, i: usize) -> &IoFile {
        self[i].file
    }

    fn offset(&self, i: usize) -> u64 {
        self[i].offset
    }

    fn len(&self, i: usize) -> usize {
        self[i].buf.len()
    }

    fn raw_op(&mut self, i: usize, done: usize, len: u32) -> RawOp {
        let r = &mut self[i];
        RawOp::Read {
            fd: r.file.raw_fd(),
            ptr: r.buf[done..].as_mut_ptr(),
            len,
            offset: r.offset + done as u64,
        }
    }
}

impl Transfers for &[WriteOp<'_>] {
    fn op(&self, _: usize) -> OpKind {
        OpKind::Write
    }

    fn count(&self) -> usize {
        <[WriteOp<'_>]>::len(self)
    }

    fn file(&self, i: usize) -> &IoFile {
        self[i].file
    }

    fn offset(&self, i: usize) -> u64 {
        self[i].offset
    }

    fn len(&self, i: usize) -> usize {
        self[i].data.len()
    }

    fn raw_op(&mut self, i: usize, done: usize, len: u32) -> RawOp {
        let w = &self[i];
        RawOp::Write {
            fd: w.file.raw_fd(),
            ptr: w.data[done..].as_ptr(),
            len,
            offset: w.offset + done as u64,
            link: false,
        }
    }
}

/// Reads and writes issued together, so the device works on both at once:
/// the reads first in the index order, then the writes. They must touch
/// different bytes (the kernel may run them in any order).
pub(super) struct Mixed<'r, 'a, 'w> {
    /// The reads.
    pub(super) reads: &'r mut [ReadOp<'a>],
    /// The writes.
    pub(super) writes: &'r [WriteOp<'w>],
}

impl Mixed<'_, '_, '_> {
    fn split(&self, i: usize) -> Result<usize, usize> {
        match i.checked_sub(<[ReadOp<'_>]>::len(self.reads)) {
            None => Ok(i),
            Some(w) => Err(w),
        }
    }
}

impl Transfers for Mixed<'_, '_, '_> {
    fn op(&self, i: usize) -> OpKind {
        match self.split(i) {
            Ok(_) => OpKind::Read,
            Err(_) => OpKind::Write,
        }
    }

    fn count(&self) -> usize {
        <[ReadOp<'_>]>::len(self.reads) + <[WriteOp<'_>]>::len(self.writes)
    }

    fn file(&self, i: usize) -> &IoFile {
        match self.split(i) {
            Ok(r) => self.reads[r].file,
            Err(w) => self.writes[w].file,
        }
    }

    fn offset(&self, i: usize) -> u64 {
        match self.split(i) {
            Ok(r) => self.reads[r].offset,
            Err(w) => self.writes[w].offset,
        }
    }

    fn len(&self, i: usize) -> usize {
        match self.split(i) {
            Ok(r) => <[u8]>::len(self.reads[r].buf),
            Err(w) => <[u8]>::len(self.writes[w].data),
        }
    }

    fn raw_op(&mut self, i: usize, done: usize, len: u32) -> RawOp {
        match self.split(i) {
            Ok(r) => (&mut *self.reads).raw_op(r, done, len),
            Err(w) => self.writes.raw_op(w, done, len),
        }
    }
}

/// Carries out every transfer of `batch` whole: runs one operation per
/// unfinished transfer through `run` (at most [`MAX_TRANSFER`] bytes each),
/// then again for the remainders of those that came up short, until none
/// is left. A failed operation, or one that moved nothing, ends the call
/// with its error, at the offset it started from; so does a failure of
/// `run` itself, reported at the first unfinished transfer's start.
pub(super) fn transfer_all<T: Transfers>(
    mut batch: T,
    mut run: impl FnMut(&[RawOp], &mut [i32]) -> io::Result<()>,
) -> Result<(), IoError> {
    // (transfer index, bytes already moved)
    let mut pending: Vec<(usize, usize)> = (0..batch.count())
        .filter(|&i| batch.len(i) != 0)
        .map(|i| (i, 0))
        .collect();
    while !pending.is_empty() {
        let ops: Vec<RawOp> = pending
            .iter()
            .map(|&(i, done)| {
                let len = (batch.len(i) - done).min(MAX_TRANSFER);
                batch.raw_op(i, done, len as u32)
            })
            .collect();
        let mut results = vec![0i32; ops.len()];
        let first = pending[0].0;
        run(&ops, &mut results)
            .map_err(|e| IoError::new(batch.op(first), batch.file(first).path(), Some(batch.offset(first)), e))?;
        let mut still = Vec::new();
        for (&(i, done), &res) in pending.iter().zip(&results) {
            let at = batch.offset(i) + done as u64;
            if res < 0 {
                return Err(IoError::new(batch.op(i), batch.file(i).path(), Some(at), os_err(res)));
            }
            if res == 0 {
                return Err(IoError::new(
                    batch.op(i),
                    batch.file(i).path(),
                    Some(at),
                    batch.no_progress(i),
                ));
            }
            let done = done + res as usize;
            if done < batch.len(i) {
                still.push((i, done));
            }
        }
        pending = still;
    }
    Ok(())
}
