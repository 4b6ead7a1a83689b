//! Fencing: proving a failed node can no longer write before anyone writes
//! its before-images back.
//!
//! ## On one host: the kernel's word
//! Every node takes an open-file-description (OFD) read lock on one byte of
//! every data file it opens — byte `FENCE_BASE + node id`, far past any data
//! — through the very file description it reads and writes pages with
//! ([`hold`]). The kernel releases an OFD lock only when the last reference
//! to that open file description goes: when the process has exited *and*
//! every I/O still in flight on it (an io_uring request holds a reference)
//! has completed. So when a counterpart finds that byte unlocked in every
//! data file ([`node_gone`]), no write of the failed node can still land.
//! The node's log directory lock ([`wal::LogReader::owner_status`]) tells the
//! same of its log.
//!
//! A node that is cut off but still running (its lease lapsed) stops by
//! itself: it relinquishes its log once no flush is in flight and drops its
//! data files (`NodeInner::stop`), so the kernel's word comes as soon as its
//! last write has completed — and not before, however long the device sits
//! on that write. A lease, which only bounds when the node *decided* to
//! stop, could not promise that; so on the failed node's own host the lease
//! is never taken instead of the kernel's word. If the word does not come
//! (the process is frozen, say), recovery gives up after the configured
//! patience and the operator must stop the process.
//!
//! Which host: each node writes its kernel's boot id into its log directory
//! when it opens ([`mark_host`]). Locks are visible to every process under
//! one kernel, which is exactly what the boot id names.
//!
//! ## Otherwise: the lease
//! A node on another host (or whose host is unknown) cannot be seen by this
//! kernel. It stopped writing by itself before the coordinator could declare
//! it failed (see `lockmgr::client`), so a counterpart waits until that lease
//! has certainly expired, and for its log lock (on a shared file system
//! that propagates locks) to be free.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::Result;

/// Fencing bytes start here, beyond any page a table could reach.
pub const FENCE_BASE: i64 = 1 << 61;

/// The file in a node's log directory naming the kernel it runs under.
const HOST_FILE: &str = "HOST";

/// This kernel's boot id: the same for every process on this host until it
/// reboots.
pub fn host_id() -> Option<String> {
    // Read once: a kernel's boot id does not change while a process of it
    // lives, and reading it costs tens of microseconds on a recovery's path.
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
    .clone()
}

/// Records in `log_dir` that its node runs under this kernel. Written whole
/// (temporary file, rename); a missing or damaged marker only means "host
/// unknown", the slower, lease-based fencing.
pub fn mark_host(log_dir: &Path) -> Result<()> {
    let io_err = |p: &Path, e| wal::io::IoError::new(wal::io::OpKind::Write, p, None, e);
    let Some(id) = host_id() else { return Ok(()) };
    let tmp = log_dir.join("HOST.tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(|e| io_err(&tmp, e))?;
    let path = log_dir.join(HOST_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    Ok(())
}

/// Whether the node of `log_dir` last ran under this kernel, so that this
/// kernel's locks speak for it.
pub fn ran_here(log_dir: &Path) -> bool {
    let marked = std::fs::read_to_string(log_dir.join(HOST_FILE)).ok();
    matches!((marked, host_id()), (Some(m), Some(here)) if m.trim() == here)
}

fn lock_struct(kind: libc::c_short, node: u32) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: FENCE_BASE + i64::from(node),
        l_len: 1,
        // OFD locks require 0 here.
        l_pid: 0,
    }
}

/// Takes node `node`'s fencing lock on `file`, held until the file's last
/// descriptor closes.
pub fn hold(file: &File, node: u32) -> std::io::Result<()> {
    let mut l = lock_struct(libc::F_RDLCK as libc::c_short, node);
    // SAFETY: F_OFD_SETLK reads the `flock` struct we pass by pointer for the
    // duration of the call only; the fd is owned by `file`, open for the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut l) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether some open file description still holds node `node`'s fencing
/// lock on `file`.
fn held(file: &File, node: u32) -> std::io::Result<bool> {
    let mut l = lock_struct(libc::F_WRLCK as libc::c_short, node);
    // SAFETY: F_OFD_GETLK reads and overwrites the `flock` struct we pass by
    // pointer during the call only; the fd is owned by `file`.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut l) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(l.l_type != libc::F_UNLCK as libc::c_short)
}

/// Whether node `node` is provably gone from this host: its log directory
/// lock is free and no data file in `data_dir` carries its fencing lock.
pub fn node_gone(data_dir: &Path, log_dir: &Path, node: u32) -> Result<bool> {
    if wal::LogReader::owner_status(log_dir)? == wal::OwnerStatus::Alive {
        return Ok(false);
    }
    let io_err = |p: &Path, e| wal::io::IoError::new(wal::io::OpKind::Open, p, None, e);
    let entries = std::fs::read_dir(data_dir).map_err(|e| io_err(data_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(data_dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("tbl") {
            continue;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            // Dropped meanwhile: nothing of it to fence.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path, e).into()),
        };
        if held(&file, node).map_err(|e| io_err(&path, e))? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_held_while_a_description_is_open_and_gone_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-1.tbl");
        std::fs::write(&path, b"x").unwrap();
        let mine = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        hold(&mine, 7).unwrap();
        let probe = File::open(&path).unwrap();
        assert!(held(&probe, 7).unwrap());
        assert!(!held(&probe, 8).unwrap(), "each node has its own byte");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&log).unwrap();
        assert!(!node_gone(dir.path(), &log, 7).unwrap());
        assert!(node_gone(dir.path(), &log, 8).unwrap());
        drop(mine);
        assert!(node_gone(dir.path(), &log, 7).unwrap());
    }

    #[test]
    fn a_node_marked_here_ran_here_and_an_unknown_one_did_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!ran_here(dir.path()), "no marker: unknown host");
        mark_host(dir.path()).unwrap();
        assert_eq!(ran_here(dir.path()), host_id().is_some());
        std::fs::write(dir.path().join(HOST_FILE), "another-kernel\n").unwrap();
        assert!(!ran_here(dir.path()));
    }
}
