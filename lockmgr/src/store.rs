//! Where the coordinator's durable record is kept ([`RecordStore`]): two
//! slot files in its state directory ([`crate::persist`]), on one host; or
//! etcd (`crate::etcd`, feature `etcd`), where a standby on another host
//! finds it.
//!
//! This file only chooses between the two. It must never be opened before
//! the coordinator leads (see [`crate::election`]).

use crate::persist::{CoordinatorState, PersistError, StateStore};

/// Where the record is kept; see the module docs.
pub enum RecordStore {
    /// The state directory's slot files.
    Files(StateStore),
    /// etcd, behind this coordinator's leadership.
    #[cfg(feature = "etcd")]
    Etcd(std::sync::Arc<crate::etcd::EtcdLeader>),
}

impl RecordStore {
    /// Replaces the record with `state`, durably.
    pub fn store(&mut self, state: &CoordinatorState) -> Result<(), PersistError> {
        match self {
            RecordStore::Files(files) => files.store(state),
            #[cfg(feature = "etcd")]
            RecordStore::Etcd(leader) => leader.store(state),
        }
    }
}
