//! Lock value blocks: per resource, a 128-bit value the node holding the
//! resource in X mode publishes as it lets go, handed with every later
//! grant of the resource.
//!
//! The engine keeps the stamp of the commit that last wrote a page there,
//! so a node granted a page lock can tell whether its cached copy of the
//! page is current (as the VMS/OpenVMS DLM's lock value blocks and GFS2's
//! glocks serve their caches). The coordinator does not interpret values.
//!
//! A value is trusted only as far as its source: it is set only by a node
//! that holds the resource in X mode (`Publish`, checked against the lock
//! table), or by the counterpart that recovered a failed node, for the
//! resources that node retained in X mode, as it unregisters (its recovery
//! read each page it put back, so it knows the stamp each holds). Every
//! other value of what a failed node retained is dropped — "unknown", and
//! every node reads the page again — when its retained locks are let go
//! (writes it made unpublished before it died are on disk); so are the
//! values of what a restarting node releases after taking it back, and all
//! of them on a coordinator restart (values are not in the durable record). Dropping is
//! always safe: the engine's values are stamps, unique per write, so no
//! value ever comes back to mean another copy.
//!
//! This file owns the values. It must never grant or refuse a lock; the
//! `Publish` request is handled with the other lock requests (`locks`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ids::ResourceId;
use crate::sync::lock_std;

/// Values kept at most. Past it every value is dropped at once (unknown
/// values cost readers a read each, never correctness), so the coordinator's
/// memory stays bounded however many pages the cluster writes.
pub const MAX_VALUE_BLOCKS: usize = 1 << 22;

/// See the module docs.
#[derive(Default)]
pub(super) struct ValueBlocks {
    map: Mutex<HashMap<ResourceId, u128>>,
}

impl ValueBlocks {
    /// The value of `resource`, if one is known.
    pub(super) fn get(&self, resource: ResourceId) -> Option<u128> {
        lock_std(&self.map).get(&resource).copied()
    }

    /// Sets the value of `resource` (its X holder's word, checked by the
    /// caller).
    pub(super) fn set(&self, resource: ResourceId, value: u128) {
        let mut map = lock_std(&self.map);
        if map.len() >= MAX_VALUE_BLOCKS && !map.contains_key(&resource) {
            map.clear();
        }
        map.insert(resource, value);
    }

    /// Forgets the values of `resources`.
    pub(super) fn forget(&self, resources: impl IntoIterator<Item = ResourceId>) {
        let mut map = lock_std(&self.map);
        for r in resources {
            map.remove(&r);
        }
    }
}
