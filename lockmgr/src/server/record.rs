//! The coordinator's durable record as the server writes it: membership,
//! recovery status, retained locks, blind nodes and restart requests not
//! yet served, stored whole after each
//! change that must survive a coordinator restart ([`crate::persist`]).
//!
//! This file owns when the record is written and what a failed write does.
//! It must never let the coordinator go on after a write failed: a
//! coordinator that cannot record a failure cannot promise that retained
//! locks survive it.

use std::sync::atomic::Ordering;

use wal::io::Io;

use super::state::Shared;
use crate::failure::RetainedLock;
use crate::persist::{self, CoordinatorState, PersistError};
use crate::sync::lock_std;

impl Shared {
    /// Writes the durable record. A coordinator that cannot record a
    /// failure cannot promise retained locks survive it: it stops.
    pub(super) fn persist(&self) {
        let mut store = lock_std(&self.persist_lock);
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let state = CoordinatorState {
            registry: self.registry.snapshot(),
            retained: self.table.export_retained(),
            blind: lock_std(&self.blind).iter().copied().collect(),
            restarts: lock_std(&self.restart_wanted).iter().copied().collect(),
        };
        if let Err(e) = store.store(&state) {
            eprintln!("fatal: the coordinator cannot write its durable record: {e}");
            std::process::exit(70);
        }
    }
}

/// Retained locks as the durable record has them (for tools and tests).
pub fn retained_in_record(io: &Io, dir: &std::path::Path) -> Result<Vec<RetainedLock>, PersistError> {
    Ok(persist::load(io, dir)?.map(|s| s.retained).unwrap_or_default())
}
