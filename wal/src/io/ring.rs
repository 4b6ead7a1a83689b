//! The raw io_uring code: operations as the ring sees them ([`RawOp`]) and
//! the one loop that submits them and reaps their completions
//! ([`execute`]). It holds every `unsafe` block of the io_uring backend.
//!
//! This file never chooses what to run, never retries an operation that
//! failed or came up short (the callers do, see `super::transfer`), and
//! never returns while the kernel may still use a buffer it was given.
//!
//! ## Why the `unsafe` here is sound
//! The kernel reads and writes the buffers of submitted operations
//! asynchronously, so a buffer must stay alive and unmoved until its
//! completion has been reaped. `execute` only takes pointers into slices
//! that the caller borrows for the whole call, and it does not return while
//! any submitted operation is still in the kernel: it either reaps every
//! completion or, if the ring fails so that completions can no longer be
//! reaped, aborts the process rather than let the kernel write into memory
//! that has been freed. File descriptors are borrowed the same way, so none is
//! closed (and its number reused) while an operation on it is in flight.
//! Rings whose submission queue may still hold unsubmitted entries are
//! dropped, never reused, so a stale entry can never be submitted later.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};

/// Entries per ring: deeper than the disk's best queue depth (128).
pub(super) const RING_DEPTH: u32 = 256;
/// How often a transient `EAGAIN`/`EBUSY` from `io_uring_enter` is retried.
const MAX_TRANSIENT_RETRIES: u32 = 100_000;

/// One operation as the ring sees it. The pointers come from slices the
/// caller of `execute` borrows for the whole call (see the module docs).
#[derive(Clone, Copy)]
pub(super) enum RawOp {
    Write {
        fd: RawFd,
        ptr: *const u8,
        len: u32,
        offset: u64,
        link: bool,
    },
    Read {
        fd: RawFd,
        ptr: *mut u8,
        len: u32,
        offset: u64,
    },
    Fsync {
        fd: RawFd,
        link: bool,
    },
}

impl RawOp {
    fn links_next(&self) -> bool {
        matches!(self, RawOp::Write { link: true, .. } | RawOp::Fsync { link: true, .. })
    }

    fn entry(&self, user_data: u64) -> squeue::Entry {
        match *self {
            RawOp::Write {
                fd,
                ptr,
                len,
                offset,
                link,
            } => {
                let e = opcode::Write::new(types::Fd(fd), ptr, len).offset(offset).build();
                if link {
                    e.flags(squeue::Flags::IO_LINK)
                } else {
                    e
                }
            }
            RawOp::Read { fd, ptr, len, offset } => opcode::Read::new(types::Fd(fd), ptr, len).offset(offset).build(),
            RawOp::Fsync { fd, link } => {
                let e = opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build();
                if link {
                    e.flags(squeue::Flags::IO_LINK)
                } else {
                    e
                }
            }
        }
        .user_data(user_data)
    }
}

/// Submits every op, keeping the ring as full as it allows, and stores each
/// op's result (bytes moved, or `-errno`) in `results`. Linked chains are
/// pushed whole. Returns only when every submitted op has completed (or the
/// process is aborted, see the module docs); an error means the ring must not
/// be reused.
pub(super) fn execute(ring: &mut IoUring, ops: &[RawOp], results: &mut [i32]) -> io::Result<()> {
    debug_assert_eq!(ops.len(), results.len(), "one result slot per op");
    let capacity = ring.params().sq_entries() as usize;
    let mut next = 0usize;
    let mut in_flight = 0usize;
    let mut done = 0usize;
    let mut transient_retries = 0u32;
    while done < ops.len() {
        {
            let mut sq = ring.submission();
            while next < ops.len() {
                let chain = 1 + ops[next..].iter().take_while(|o| o.links_next()).count();
                let chain = chain.min(ops.len() - next);
                if in_flight + chain > capacity || sq.capacity() - sq.len() < chain {
                    break;
                }
                for (i, op) in ops[next..next + chain].iter().enumerate() {
                    let entry = op.entry((next + i) as u64);
                    // SAFETY: the entry's buffer and fd are borrowed by our
                    // caller for the whole of `execute`, which does not return
                    // before this entry completes (module docs). Room in the
                    // queue was checked above, so the push cannot fail.
                    unsafe { sq.push(&entry) }.expect("room checked before push");
                }
                next += chain;
                in_flight += chain;
            }
            sq.sync();
        }
        // Once everything is submitted, wait for all of it at once: the
        // kernel then wakes this thread once rather than at each completion
        // (a linked chain completes one op at a time). Until then, one
        // completion is enough to refill the queue.
        let want = if next == ops.len() { in_flight } else { 1 };
        match ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY))
                    && transient_retries < MAX_TRANSIENT_RETRIES =>
            {
                transient_retries += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                let unsubmitted = ring.submission().len();
                if in_flight == unsubmitted {
                    // The kernel holds none of our buffers: safe to give up.
                    return Err(e);
                }
                eprintln!(
                    "fatal: io_uring failed with {} operations in flight: {e}; aborting rather \
                     than let the kernel use freed buffers",
                    in_flight - unsubmitted
                );
                std::process::abort();
            }
        }
        for cqe in ring.completion() {
            let idx = cqe.user_data() as usize;
            if let Some(slot) = results.get_mut(idx) {
                *slot = cqe.result();
                done += 1;
                in_flight -= 1;
            }
        }
    }
    Ok(())
}

/// The error a negative completion result (`-errno`) stands for.
pub(super) fn os_err(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}
