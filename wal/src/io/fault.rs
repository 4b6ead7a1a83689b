//! The fault-injecting backend for tests: it wraps a real backend and can
//! - fail the Nth operation of a kind with any errno (EIO, ENOSPC, ...),
//! - tear the Nth write at a sector boundary: the sectors before the tear
//!   reach the file, the rest do not, and the "process" is dead from then on,
//! - simulate a crash: every write not yet followed by a successful sync of
//!   its file is undone (or kept, for a crash that the OS survived), and every
//!   later operation fails with EIO.
//!
//! Operations run one at a time through the wrapped backend so that "the Nth
//! write" is well defined. Files are told apart by path, which is enough for
//! the files the engine writes (a renamed file is always synced first).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::backend::{Backend, BackendKind};
use super::error::{IoError, OpKind};
use super::file::IoFile;
use super::handle::Io;
use super::op::{distinct_files, ReadOp, WriteOp};

/// Sector size of the simulated disk: the unit a torn write keeps or loses.
pub const SECTOR: u64 = 512;

/// What happens to the Nth operation of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails with this errno and changes nothing.
    Errno(i32),
    /// (writes only) keeps the first `keep_sectors` sector boundaries' worth
    /// of the write, drops the rest and crashes.
    Tear {
        /// Where the kept part ends: this many [`SECTOR`] boundaries on from
        /// the start of the sector the write starts in (clamped to the
        /// write).
        keep_sectors: u64,
    },
}

/// What a simulated crash does to writes that were never synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Power loss: every unsynced write is lost.
    DropUnsynced,
    /// Process death with the OS alive: unsynced writes survive.
    KeepUnsynced,
}

/// A write that reached the file but was not yet made durable.
#[derive(Clone, Debug)]
pub struct UnsyncedWrite {
    /// The file written (files are told apart by path, see the module docs).
    pub path: PathBuf,
    /// The byte offset the write started at.
    pub offset: u64,
    /// The file's bytes in the written range before the write (shorter than
    /// `new` when the write extended the file).
    pub old: Vec<u8>,
    /// The file's length before the write.
    pub old_len: u64,
    /// The bytes that were written.
    pub new: Vec<u8>,
}

#[derive(Default)]
struct State {
    seen: HashMap<OpKind, u64>,
    rules: Vec<(OpKind, u64, Fault)>,
    crashed: bool,
    unsynced: Vec<UnsyncedWrite>,
    /// Writes to files whose name ends with this wait (see `stall_writes`).
    stall: Option<String>,
    /// How many write batches wait now.
    stalled: usize,
}

/// See the module docs. Share it with `Arc` and hand [`FaultInjector::io`] to
/// the code under test.
pub struct FaultInjector {
    inner: Io,
    state: Mutex<State>,
    /// Stalled writes wait here.
    unstall: std::sync::Condvar,
}

fn crashed_err(op: OpKind, file: &IoFile, offset: Option<u64>) -> IoError {
    IoError::new(
        op,
        file.path(),
        offset,
        io::Error::other("simulated crash: the device is gone"),
    )
}

impl FaultInjector {
    /// An injector passing every operation on to `inner` until told
    /// otherwise; no fault is armed.
    pub fn new(inner: Io) -> Arc<FaultInjector> {
        Arc::new(FaultInjector {
            inner,
            state: Mutex::new(State::default()),
            unstall: std::sync::Condvar::new(),
        })
    }

    /// An [`Io`] whose every operation goes through this injector.
    pub fn io(self: &Arc<Self>) -> Io {
        Io::from_arc(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the `nth` (1-based, counted from now on) operation of `kind` fail
    /// with `fault`.
    pub fn inject(&self, kind: OpKind, nth: u64, fault: Fault) {
        let mut s = self.lock();
        let at = s.seen.get(&kind).copied().unwrap_or(0) + nth;
        s.rules.push((kind, at, fault));
    }

    /// Shorthand: fail the `nth` operation of `kind` with `errno`.
    pub fn fail_nth(&self, kind: OpKind, nth: u64, errno: i32) {
        self.inject(kind, nth, Fault::Errno(errno));
    }

    /// Shorthand: tear the `nth` write after `keep_sectors` sector boundaries.
    pub fn tear_nth_write(&self, nth: u64, keep_sectors: u64) {
        self.inject(OpKind::Write, nth, Fault::Tear { keep_sectors });
    }

    /// Holds every write batch touching a file whose name ends with
    /// `suffix` until [`Self::release_stalled`] — a device that sits on a
    /// request — then writes it as usual. Other operations go on meanwhile.
    pub fn stall_writes(&self, suffix: &str) {
        self.lock().stall = Some(suffix.to_string());
    }

    /// Lets every stalled write (and later ones) through.
    pub fn release_stalled(&self) {
        self.lock().stall = None;
        self.unstall.notify_all();
    }

    /// How many write batches are stalled now.
    pub fn stalled(&self) -> usize {
        self.lock().stalled
    }

    /// How many operations of `kind` were attempted so far.
    pub fn count(&self, kind: OpKind) -> u64 {
        self.lock().seen.get(&kind).copied().unwrap_or(0)
    }

    /// Whether a crash happened ([`Self::crash`], or a torn write): every
    /// operation fails from then on.
    pub fn is_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Writes not yet made durable, oldest first.
    pub fn unsynced_writes(&self) -> Vec<UnsyncedWrite> {
        self.lock().unsynced.clone()
    }

    /// Simulates a crash now; every later operation fails.
    pub fn crash(&self, mode: CrashMode) -> io::Result<()> {
        let mut s = self.lock();
        s.crashed = true;
        let unsynced = std::mem::take(&mut s.unsynced);
        if mode == CrashMode::DropUnsynced {
            for w in unsynced.iter().rev() {
                undo_write(w)?;
            }
        }
        Ok(())
    }

    /// Counts one operation of `kind` and returns the fault it must suffer.
    fn next_fault(s: &mut State, kind: OpKind) -> Option<Fault> {
        let n = s.seen.entry(kind).or_insert(0);
        *n += 1;
        let n = *n;
        let pos = s.rules.iter().position(|&(k, at, _)| k == kind && at == n)?;
        Some(s.rules.remove(pos).2)
    }

    fn write_one(&self, s: &mut State, w: &WriteOp<'_>) -> Result<(), IoError> {
        if s.crashed {
            return Err(crashed_err(OpKind::Write, w.file, Some(w.offset)));
        }
        let fault = Self::next_fault(s, OpKind::Write);
        let keep = match fault {
            Some(Fault::Errno(errno)) => {
                return Err(IoError::new(
                    OpKind::Write,
                    w.file.path(),
                    Some(w.offset),
                    io::Error::from_raw_os_error(errno),
                ))
            }
            Some(Fault::Tear { keep_sectors }) => {
                let boundary = (w.offset / SECTOR + keep_sectors) * SECTOR;
                boundary.clamp(w.offset, w.offset + w.data.len() as u64) - w.offset
            }
            None => w.data.len() as u64,
        } as usize;
        let record = snapshot(w.file, w.offset, &w.data[..keep])
            .map_err(|e| IoError::new(OpKind::Write, w.file.path(), Some(w.offset), e))?;
        self.inner.write_all_at(w.file, &w.data[..keep], w.offset)?;
        s.unsynced.push(record);
        if keep < w.data.len() {
            s.crashed = true;
            return Err(IoError::new(
                OpKind::Write,
                w.file.path(),
                Some(w.offset + keep as u64),
                io::Error::other("simulated crash: write torn"),
            ));
        }
        Ok(())
    }

    fn sync_one(&self, s: &mut State, f: &IoFile) -> Result<(), IoError> {
        if s.crashed {
            return Err(crashed_err(OpKind::Sync, f, None));
        }
        if let Some(fault) = Self::next_fault(s, OpKind::Sync) {
            let errno = match fault {
                Fault::Errno(e) => e,
                Fault::Tear { .. } => libc::EIO,
            };
            return Err(IoError::new(
                OpKind::Sync,
                f.path(),
                None,
                io::Error::from_raw_os_error(errno),
            ));
        }
        self.inner.sync(f)?;
        s.unsynced.retain(|w| w.path != f.path());
        Ok(())
    }
}

fn snapshot(file: &IoFile, offset: u64, new: &[u8]) -> io::Result<UnsyncedWrite> {
    let old_len = file.std().metadata()?.len();
    let readable = old_len.saturating_sub(offset).min(new.len() as u64) as usize;
    let mut old = vec![0u8; readable];
    // Through a buffered handle of its own: a direct file's handle takes
    // aligned buffers only, and what the device holds is what to keep.
    std::fs::File::open(file.path())?.read_exact_at(&mut old, offset)?;
    Ok(UnsyncedWrite {
        path: file.path().to_path_buf(),
        offset,
        old,
        old_len,
        new: new.to_vec(),
    })
}

/// Puts the bytes (and length) a write replaced back.
pub fn undo_write(w: &UnsyncedWrite) -> io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(&w.path)?;
    f.write_all_at(&w.old, w.offset)?;
    if f.metadata()?.len() > w.old_len {
        f.set_len(w.old_len)?;
    }
    Ok(())
}

impl Backend for FaultInjector {
    fn kind(&self) -> BackendKind {
        BackendKind::Fault
    }

    fn stats(&self) -> super::IoStats {
        self.inner.stats()
    }

    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        let mut s = self.lock();
        for r in reads.iter_mut() {
            if s.crashed {
                return Err(crashed_err(OpKind::Read, r.file, Some(r.offset)));
            }
            if let Some(fault) = Self::next_fault(&mut s, OpKind::Read) {
                let errno = match fault {
                    Fault::Errno(e) => e,
                    Fault::Tear { .. } => libc::EIO,
                };
                return Err(IoError::new(
                    OpKind::Read,
                    r.file.path(),
                    Some(r.offset),
                    io::Error::from_raw_os_error(errno),
                ));
            }
            self.inner.read_exact_at(r.file, r.buf, r.offset)?;
        }
        Ok(())
    }

    fn write_batch(&self, writes: &[WriteOp<'_>], sync: bool) -> Result<(), IoError> {
        let mut s = self.lock();
        let stalls = |s: &State| {
            s.stall
                .as_deref()
                .is_some_and(|suffix| writes.iter().any(|w| w.file.path().to_string_lossy().ends_with(suffix)))
        };
        if stalls(&s) {
            s.stalled += 1;
            while stalls(&s) {
                s = self.unstall.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.stalled -= 1;
        }
        for w in writes {
            self.write_one(&mut s, w)?;
        }
        if sync {
            for f in distinct_files(writes) {
                self.sync_one(&mut s, f)?;
            }
        }
        Ok(())
    }

    fn sync(&self, files: &[&IoFile]) -> Result<(), IoError> {
        let mut s = self.lock();
        for f in files {
            self.sync_one(&mut s, f)?;
        }
        Ok(())
    }
}
