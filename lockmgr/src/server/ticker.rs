//! The ticker thread: every [`TICK`] it fails the nodes silent past the
//! failure timeout, expires lock waits, breaks deadlocks (every few ticks)
//! and ends the grace period after a restart.
//!
//! This file owns the coordinator's clock and failure detection by
//! silence. It must never wait for a node to say anything: each step acts
//! on what the coordinator already knows, by the same paths a request or a
//! lost connection takes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::Session;
use super::state::Shared;
use crate::ids::NodeId;
use crate::sync::lock_std;

/// How often the ticker runs.
pub const TICK: Duration = Duration::from_millis(2);
/// Deadlock detection runs every this many ticks.
const DEADLOCK_EVERY_TICKS: u64 = 5;

impl Shared {
    /// Whether a node in this process ([`LocalLink`](super::LocalLink))
    /// holds a lease like a node over a socket.
    ///
    /// A lease lets the coordinator fail a node it stopped hearing from
    /// while the node may still be running, because the node stops writing
    /// first. A node in the coordinator's own process cannot fall silent
    /// while the coordinator goes on: a pause (`SIGSTOP`, a suspended
    /// laptop, a debugger) stops both, and its death is the coordinator's.
    /// Nor can another coordinator take over while this one lives, as long
    /// as leadership is an exclusive file lock, which the kernel holds for
    /// the process. So such a node needs no lease and no heartbeats, and a
    /// long pause no longer makes it stop. Leadership held on etcd can
    /// lapse during a pause and pass to a standby that fails the node, so
    /// there the node keeps its lease.
    pub(super) fn local_members_leased(&self) -> bool {
        !matches!(self.cfg.election, crate::election::Election::FileLock)
    }

    pub(super) fn tick_loop(&self) {
        let mut n: u64 = 0;
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(TICK);
            n = n.wrapping_add(1);
            let now = Instant::now();
            self.expire_sessions(now);
            self.expire_waits(now);
            if n.is_multiple_of(DEADLOCK_EVERY_TICKS) {
                self.break_deadlocks();
            }
            self.end_grace(now);
        }
    }

    /// Fails the members silent for longer than the failure timeout (see
    /// `Session::last_heard`). A node in this process that holds no lease
    /// ([`Shared::local_members_leased`]) is never silent: it pauses and
    /// dies with this coordinator.
    fn expire_sessions(&self, now: Instant) {
        let timeout = Duration::from_millis(self.cfg.failure_timeout_ms as u64);
        let local_leased = self.local_members_leased();
        let silent: Vec<(NodeId, Arc<Session>)> = lock_std(&self.sessions)
            .iter()
            .filter(|(_, s)| (local_leased || !s.conn.local) && s.silent(now, timeout))
            .map(|(n, s)| (*n, s.clone()))
            .collect();
        for (node, session) in silent {
            tracing::warn!(node, "no heartbeat within the failure timeout");
            session.conn.close();
            self.connection_lost(node, &session);
        }
    }
}
