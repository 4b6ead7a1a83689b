//! The lease and self-fencing: heartbeats every `heartbeat_ms`, each
//! acknowledged one extending the lease from its send time, and the
//! `LeaseLost` event once it lapses (the argument is in the module docs of
//! [`client`](super)).
//!
//! This file owns the lease. It must never extend it on anything but the
//! coordinator's answer to a heartbeat (or the admission), nor from a later
//! time than the heartbeat's send.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::error::ClientError;
use super::events::ClientEvent;
use super::state::{Client, Inner};
use crate::sync::lock_std;

impl Client {
    /// Whether the node may still write (see the module docs of
    /// [`client`](crate::client)).
    pub fn lease_valid(&self) -> bool {
        self.inner.lease_valid()
    }

    /// `Ok` while the lease holds; the node checks this before writing.
    pub fn check_lease(&self) -> Result<(), ClientError> {
        if self.lease_valid() {
            Ok(())
        } else {
            Err(ClientError::LeaseLost)
        }
    }
}

impl Inner {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The lease holds until `lease_ms - fence_margin_ms` after `sent_at`
    /// (or later, if it already did).
    pub(super) fn extend_lease(&self, sent_at: Instant) {
        let until = sent_at.saturating_duration_since(self.epoch)
            + Duration::from_millis(self.lease_ms.saturating_sub(self.fence_margin_ms) as u64);
        self.lease_until_us
            .fetch_max(until.as_micros() as u64, Ordering::AcqRel);
    }

    fn lease_valid(&self) -> bool {
        !self.lease_lost.load(Ordering::Acquire)
            && !self.closed.load(Ordering::Acquire)
            && self.now_us() < self.lease_until_us.load(Ordering::Acquire)
    }

    pub(super) fn lose_lease(&self) {
        if !self.lease_lost.swap(true, Ordering::AcqRel) && !self.leaving.load(Ordering::Acquire) {
            tracing::warn!(node = self.node, "lease lost; the node must stop writing");
            self.events.emit(ClientEvent::LeaseLost);
        }
    }

    pub(super) fn heartbeat_loop(&self, heartbeat_ms: u32) {
        let period = Duration::from_millis(heartbeat_ms as u64);
        let lease = Duration::from_millis(self.lease_ms as u64);
        let mut next = Instant::now();
        while !self.closed.load(Ordering::Acquire) {
            let now = Instant::now();
            if now >= next {
                next = now + period;
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                {
                    let mut hb = lock_std(&self.heartbeats);
                    // Heartbeats older than a lease can no longer extend it.
                    hb.retain(|_, sent| now.saturating_duration_since(*sent) < lease);
                    hb.insert(id, now);
                }
                // Between connections nothing goes out, and the lease runs
                // down; a failed write is the reader's to find.
                if self.transmit_heartbeat(id).is_err() && self.closed.load(Ordering::Acquire) {
                    break;
                }
            }
            if !self.lease_valid() {
                self.lose_lease();
            }
            // Short sleeps so a lapsing lease is noticed promptly.
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(5)),
            );
        }
    }
}
