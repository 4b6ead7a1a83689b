//! How a log is opened ([`LogConfig`]): its node, segment size and the
//! bounds of its group commit.
//!
//! This file owns the settings and their defaults only. It must never check
//! them against a log on disk: opening does (`super::open`).

use crate::io::Io;

/// How a log is opened.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The node whose log this is; a log recorded under another node is
    /// refused ([`crate::WalError::WrongNode`]).
    pub node_id: u32,
    /// Bytes per segment file, header included; used when the log is created
    /// (an existing log keeps its own).
    pub segment_size: u64,
    /// Appended-but-not-durable bytes beyond which appenders wait; at most
    /// [`crate::record::MAX_BATCH_BYTES`].
    pub max_pending_bytes: u64,
    /// Pending bytes at which the flusher writes without being asked.
    pub flush_threshold_bytes: u64,
    /// Segments kept ready ahead of the one being written (recycled
    /// segments beyond this are deleted).
    pub spare_segments: usize,
    /// The I/O layer every read, write and sync of the log goes through.
    pub io: Io,
    /// Create the log when the directory holds none. Off for a log that
    /// must exist (a failed node's, opened to recover it): a missing one is
    /// [`crate::WalError::NoLog`], not a fresh empty log with nothing to
    /// back out.
    pub create: bool,
    /// The opener's right to write the log ([`crate::access`]): checked at
    /// open under the directory lock. `None` opens only a log that is no
    /// cluster's (whose directory holds no `ACCESS` file).
    pub access: Option<crate::access::LogAccess>,
}

impl LogConfig {
    /// The defaults for node `node_id`: 8 MiB segments, at most 8 MiB
    /// pending, a flush without waiters from 1 MiB pending, two spare
    /// segments.
    pub fn new(node_id: u32, io: Io) -> LogConfig {
        LogConfig {
            node_id,
            segment_size: 8 << 20,
            max_pending_bytes: 8 << 20,
            flush_threshold_bytes: 1 << 20,
            spare_segments: 2,
            io,
            create: true,
            access: None,
        }
    }
}
