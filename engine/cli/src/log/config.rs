//! How the log demo's logs are made: the node id they carry, their
//! segment size, and the configuration both the demo and the child process
//! it kills open them with (a log refuses to open under another node id, so
//! the two must agree).

use wal::io::Io;
use wal::segment::Layout;
use wal::LogConfig;

/// The node id of the demo's logs. A log refuses to open under another id, so
/// the parent and the child it kills must agree on it.
pub const DEMO_NODE_ID: u32 = 1;

/// Segment size of newly created demo logs: small, so that even a short run
/// crosses several segment boundaries.
pub const DEFAULT_SEGMENT_SIZE: u64 = 256 * 1024;

/// The configuration a demo log is opened with; `segment_size` only matters
/// when the log is created.
pub fn demo_log_config(io: Io, segment_size: u64) -> LogConfig {
    LogConfig {
        segment_size,
        ..LogConfig::new(DEMO_NODE_ID, io)
    }
}

/// Accepts a segment size the log accepts.
pub fn parse_segment_size(s: &str) -> Result<u64, String> {
    let n: u64 = s.parse().map_err(|e| format!("{e}"))?;
    Layout::new(n).map(|_| n).map_err(|e| e.to_string())
}
