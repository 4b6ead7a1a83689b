//! The locks a node holds, as the coordinator granted them ([`Held`]):
//! what it re-asserts when it rejoins a restarted coordinator.
//!
//! A grant is entered when its answer arrives, on the thread that reads
//! the connection, so a connection that drops after a grant was read can
//! never lose it from the ledger. A release leaves the ledger before it is
//! sent, so a lock released is never re-asserted, whether or not the old
//! coordinator saw the release.
//!
//! This file owns the ledger; it must never send anything.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ids::ResourceId;
use crate::mode::LockMode;
use crate::sync::lock_std;
use crate::wire::HeldLock;

/// See the module docs.
#[derive(Default)]
pub(super) struct Held(Mutex<HashMap<u64, HashMap<ResourceId, LockMode>>>);

impl Held {
    /// `txn` holds `resource` in `mode` now (a conversion's answer is the
    /// mode held afterwards).
    pub(super) fn granted(&self, txn: u64, resource: ResourceId, mode: LockMode) {
        lock_std(&self.0).entry(txn).or_default().insert(resource, mode);
    }

    /// `txn` releases `resource`.
    pub(super) fn released(&self, txn: u64, resource: ResourceId) {
        let mut held = lock_std(&self.0);
        if let Some(locks) = held.get_mut(&txn) {
            locks.remove(&resource);
            if locks.is_empty() {
                held.remove(&txn);
            }
        }
    }

    /// `txn` releases every lock.
    pub(super) fn released_all(&self, txn: u64) {
        lock_std(&self.0).remove(&txn);
    }

    /// Every lock held, to re-assert.
    pub(super) fn snapshot(&self) -> Vec<HeldLock> {
        let held = lock_std(&self.0);
        let mut out: Vec<HeldLock> = held
            .iter()
            .flat_map(|(&txn, locks)| {
                locks
                    .iter()
                    .map(move |(&resource, &mode)| HeldLock { txn, resource, mode })
            })
            .collect();
        out.sort_unstable_by_key(|l| (l.txn, l.resource));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_stay_until_released() {
        let h = Held::default();
        let (a, b) = (ResourceId::new(1, 1), ResourceId::new(1, 2));
        h.granted(7, a, LockMode::S);
        h.granted(7, a, LockMode::X); // a conversion
        h.granted(7, b, LockMode::IX);
        h.granted(8, b, LockMode::IX);
        h.released(7, b);
        assert_eq!(
            h.snapshot(),
            [
                HeldLock {
                    txn: 7,
                    resource: a,
                    mode: LockMode::X
                },
                HeldLock {
                    txn: 8,
                    resource: b,
                    mode: LockMode::IX
                },
            ]
        );
        h.released_all(7);
        h.released(8, b);
        assert!(h.snapshot().is_empty());
    }
}
