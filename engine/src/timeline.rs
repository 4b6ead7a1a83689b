//! The record of one peer recovery: who recovered whom, how the failed
//! node was fenced, what was found and written, and when each step of the
//! recovery finished, counted from the moment the failure was detected.
//!
//! A [`Timeline`] is what a node keeps of each recovery it ran
//! ([`crate::Node::recoveries`]) and what the demo, the recovery bench and
//! `understudy node` print. It holds measurements only; it never decides
//! anything.

use std::time::{Duration, Instant};

/// How the failed node was fenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fencing {
    /// The kernel released its log lock and every data-file fencing lock.
    Kernel,
    /// Its lease had certainly expired.
    LeaseExpired,
}

/// One step of a recovery and when it finished, counted from detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The step: `fenced`, `registered`, `log opened`, `in-flight found`,
    /// `written back`, `synced`, `ended`, `released`.
    pub name: &'static str,
    /// When it finished, from detection.
    pub at: Duration,
}

/// The record of one peer recovery.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// The node that failed.
    pub failed: u32,
    /// The node that recovered it.
    pub counterpart: u32,
    /// How the failed node was shown unable to write.
    pub fencing: Fencing,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Transactions found in flight.
    pub in_flight: usize,
    /// Of those, how many had forced all their pages before the failure and
    /// so were committed, not backed out (see [`crate::txn`]).
    pub committed: usize,
    /// Pages the in-flight transactions changed, each put back as it was
    /// before them.
    pub pages: usize,
    /// Of those, the pages written to the data files. A transaction changes
    /// pages in memory only until its commit intent is durable, so the
    /// pages of one that never got there already hold their before-images
    /// on disk and are only read (see [`crate::recovery`]).
    pub pages_written: usize,
    /// Pieces of agent work (actions on external resources) its agents made
    /// final or undid.
    pub agent_work: usize,
    /// Log records the in-flight search read.
    pub records: u64,
    /// When the failure was detected, on [`monotonic_ns`]'s clock.
    pub detected_mono_ns: u64,
    /// The I/O the write-back ran (its reads, page writes and syncs, and the
    /// end records' log write), by the path each took: through io_uring, or
    /// as system calls — counted as the I/O layer routed them, not taken
    /// from the configured backend.
    pub io: wal::io::IoStats,
}

impl Timeline {
    pub(crate) fn mark(&mut self, name: &'static str, detected: Instant) {
        self.mark_at(name, detected.elapsed());
    }

    /// Records that step `name` finished `at` after detection.
    pub(crate) fn mark_at(&mut self, name: &'static str, at: Duration) {
        tracing::info!(
            failed = self.failed,
            step = name,
            at_us = at.as_micros() as u64,
            "peer recovery step"
        );
        self.steps.push(Step { name, at });
    }

    /// Total time from detection to the release of the locks.
    pub fn total(&self) -> Duration {
        self.steps.last().map_or(Duration::ZERO, |s| s.at)
    }

    /// When a step finished, if it did.
    pub fn at(&self, name: &str) -> Option<Duration> {
        self.steps.iter().find(|s| s.name == name).map(|s| s.at)
    }

    /// One line: who recovered whom, what, and each step's time.
    pub fn summary(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| format!("{} {:.3}ms", s.name, s.at.as_secs_f64() * 1e3))
            .collect();
        format!(
            "node {} recovered node {}: {} in-flight transactions ({} of them committed), {} pages put back ({} written), \
             {} pieces of agent work finished, {} log records read; fenced by {:?}; {}; write-back I/O: {}",
            self.counterpart,
            self.failed,
            self.in_flight,
            self.committed,
            self.pages,
            self.pages_written,
            self.agent_work,
            self.records,
            self.fencing,
            steps.join(" → "),
            self.io
        )
    }

    /// The same as JSON.
    pub fn to_json(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|s| format!("{{\"step\":\"{}\",\"at_us\":{}}}", s.name, s.at.as_micros()))
            .collect();
        format!(
            "{{\"failed\":{},\"counterpart\":{},\"fencing\":\"{:?}\",\"in_flight\":{},\"committed\":{},\"pages\":{},\"pages_written\":{},\"agent_work\":{},\"records\":{},\"total_us\":{},\"detected_mono_ns\":{},\"steps\":[{}],\"io\":{{\"ring_reads\":{},\"ring_writes\":{},\"ring_syncs\":{},\"call_reads\":{},\"call_writes\":{},\"call_syncs\":{}}}}}",
            self.failed,
            self.counterpart,
            self.fencing,
            self.in_flight,
            self.committed,
            self.pages,
            self.pages_written,
            self.agent_work,
            self.records,
            self.total().as_micros(),
            self.detected_mono_ns,
            steps.join(","),
            self.io.ring_reads,
            self.io.ring_writes,
            self.io.ring_syncs,
            self.io.call_reads,
            self.io.call_writes,
            self.io.call_syncs
        )
    }
}

/// Now on the system-wide monotonic clock, in nanoseconds: comparable
/// between processes on one host (an `Instant` is not), so a tool that
/// killed a node can tell how long detection took.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}
