//! Tools for operators, tests and benchmarks: what the `understudy` program
//! and the test suites need beyond the embedding API.
//!
//! Nothing here is needed to embed the engine. These pieces expose how the
//! engine lays out its files and talks to its coordinator, so a program that
//! uses them is tied to this version's internals.

pub use crate::datafile::table_path;
pub use crate::fence::mark_host;
pub use crate::recovery::{find_in_flight, InFlight, InFlightTxn, Intent};
pub use crate::table::bucket_page;
pub use crate::timeline::monotonic_ns;

use crate::node::Node;

/// The node's client of the lock manager: its raw lock requests, the
/// coordinator's member list (`status`), the locks a failed node retains
/// (`retained`). Every lock a node's transactions hold was taken through
/// it; a request made here is outside any transaction's bookkeeping.
pub fn lock_client(node: &Node) -> &lockmgr::Client {
    &node.inner.client
}
