//! Whole reads and writes on the ring: a transfer the kernel completed only
//! in part (a short read or write) is continued with a new operation for
//! the remainder, until every byte moved or one failed. Written once, for
//! the io_uring backend's reads and writes alike ([`transfer_all`]).
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
    /// What the transfers are, for their errors.
    const OP: OpKind;

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

    /// The error of a transfer that moved no byte: the end of the file for
    /// a read, no progress for a write.
    fn no_progress() -> io::Error;
}

impl Transfers for &mut [ReadOp<'_>] {
    const OP: OpKind = OpKind::Read;

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

    fn no_progress() -> io::Error {
        io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file")
    }
}

impl Transfers for &[WriteOp<'_>] {
    const OP: OpKind = OpKind::Write;

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

    fn no_progress() -> io::Error {
        io::Error::new(io::ErrorKind::WriteZero, "write made no progress")
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
            .map_err(|e| IoError::new(T::OP, batch.file(first).path(), Some(batch.offset(first)), e))?;
        let mut still = Vec::new();
        for (&(i, done), &res) in pending.iter().zip(&results) {
            let at = batch.offset(i) + done as u64;
            if res < 0 {
                return Err(IoError::new(T::OP, batch.file(i).path(), Some(at), os_err(res)));
            }
            if res == 0 {
                return Err(IoError::new(T::OP, batch.file(i).path(), Some(at), T::no_progress()));
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
