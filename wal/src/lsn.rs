//! Log sequence numbers: positions in a node's log stream.
//!
//! This file owns the [`Lsn`] type only, so that everything else that names a
//! position (records, corruption reports, segments) can depend on it without
//! depending on each other. It must never learn how positions map to files
//! (that is [`crate::segment::Layout`]) or what lies at them.

/// A position in a node's log stream, in bytes from the stream's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}
