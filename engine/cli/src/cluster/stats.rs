//! What a running node reports of itself for `status`: its buffer pool's
//! counters and its I/O by path, written by `understudy node` about once a
//! second (and as it stops) to `logs/<node>/stats.json` in the cluster
//! directory, and read back by `status --json`.
//!
//! The coordinator knows membership and locks, not how a node's cache or
//! I/O does; a node writes what its own counters say, so the report is
//! measured, never inferred from configuration. The file is replaced by a
//! rename, so a reader sees a whole report or the previous one.
//!
//! ## Format
//! One JSON object: `{"node", "incarnation", "at_unix_ms", "direct_io"
//! (true, false, or null before any table file was opened), "pool":
//! {"frames", "hits", "misses", "evictions", "invalidations"}, "io":
//! {"ring_reads", "ring_writes", "ring_syncs", "call_reads",
//! "call_writes", "call_syncs"}}`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use understudy::Node;

use crate::error::CliError;

/// Where node `node`'s report lies in the cluster directory `dir`.
pub fn path(dir: &Path, node: u32) -> PathBuf {
    dir.join("logs").join(node.to_string()).join("stats.json")
}

/// The report of `node` now.
pub fn report(node: &Node) -> Value {
    let pool = node.pool_stats();
    let io = node.io_stats();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "node": node.id(),
        "incarnation": node.incarnation(),
        "at_unix_ms": at,
        "direct_io": node.direct_io(),
        "pool": {
            "frames": pool.frames,
            "hits": pool.hits,
            "misses": pool.misses,
            "evictions": pool.evictions,
            "invalidations": pool.invalidations,
        },
        "io": {
            "ring_reads": io.ring_reads,
            "ring_writes": io.ring_writes,
            "ring_syncs": io.ring_syncs,
            "call_reads": io.call_reads,
            "call_writes": io.call_writes,
            "call_syncs": io.call_syncs,
        },
    })
}

/// Writes `node`'s report, replacing the last one.
pub fn write(node: &Node) -> Result<(), CliError> {
    let target = path(&node.cluster().dir, node.id());
    let tmp = target.with_extension("json.tmp");
    std::fs::write(&tmp, report(node).to_string())
        .and_then(|()| std::fs::rename(&tmp, &target))
        .map_err(|e| CliError::os(format!("writing {}", target.display()), e))
}

/// Node `node`'s last report in the cluster directory `dir`, if it wrote
/// one that reads as JSON.
pub fn read(dir: &Path, node: u32) -> Option<Value> {
    let text = std::fs::read_to_string(path(dir, node)).ok()?;
    serde_json::from_str(&text).ok()
}
