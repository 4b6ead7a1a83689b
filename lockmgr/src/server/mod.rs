//! The coordinator server: the lock table, membership, leases and the
//! counterpart registry behind Unix-socket and TCP listeners.
//!
//! One thread per connection reads frames in order and answers each with the
//! request id it carried; a node may pipeline requests. A node in the
//! coordinator's own process has its requests handled on its own threads
//! instead ([`LocalLink`]). Lock waits are answered later, when the lock is
//! granted, times out, or its owner is chosen as a deadlock victim. A
//! ticker thread runs every [`TICK`]: it declares nodes whose heartbeats
//! stopped failed, expires waits, breaks deadlocks and ends the grace period
//! after a restart.
//!
//! ## Failure detection
//! A member is declared failed when its connection drops (the kernel closes
//! a killed process's sockets, so detection takes well under a millisecond on
//! one host), or when no heartbeat arrived for `failure_timeout_ms`, counted
//! only while none of the node's requests is being handled: time spent
//! handling one (a durable write's sync, say) is not the node's silence.
//! See [`crate::client`] for the lease argument that makes a cut-off node
//! stop writing before that.
//!
//! ## Authentication
//! The first frame must be `Hello`; the coordinator answers with a challenge
//! and admits nothing before a valid proof ([`crate::auth`]). Any other frame
//! first, a bad proof, or a malformed frame closes the connection with an
//! error and nothing the connection sent takes effect.
//!
//! ## Restart of the coordinator
//! The durable record ([`crate::persist`]) restores membership, recovery
//! status and every retained lock. Nodes that were live reconnect with
//! `Rejoin` and re-assert their locks (a client configured to ride through
//! does so by itself, see `crate::client`); until all have (or
//! `failure_timeout_ms` has passed) no other lock is granted, so nothing
//! can be granted over a lock that is not re-asserted yet. A re-asserted lock that conflicts with
//! a retained lock of the record shows that record older than the lock's
//! release (a recovery's end is answered before it is recorded): that
//! retained lock is dropped, and the node's others stay until a recovery
//! that finds nothing left to do. A node that does not come back is
//! declared failed with its locks unknown ("blind"): until its counterpart
//! has rebuilt them from its log (`rebuild`) or recovered it, every lock
//! request is refused with `Retained` naming it — the cluster pauses rather
//! than risk exposing its uncommitted pages. Every member admitted hears of
//! the failed nodes still to recover (`announce`), so one of them does.
//!
//! A restart of the coordinator may be a standby taking over: one
//! coordinator serves a cluster at a time ([`crate::election`]), and the
//! one that takes over reads the record the other left.
//!
//! ## Layout
//! The state every thread shares is `Shared`, in `state` (with the lock
//! waits); `conn` is a connection's write side, and `session` an admitted
//! connection's session and the request being handled. These three and
//! `config` use no other file of the server. Around them, one file per
//! concern adds its methods to `Shared`: `coordinator` (start, listeners,
//! stop), `connection` (a connection's thread), `admission` (handshake and
//! membership rules) with `announce` (what an admitted member is told, and
//! where restart requests go), `request` (the table that hands each request
//! to its handler), `locks`, `waits`, `counterparts`, `restarts`,
//! `departures`, `grace`, `rebuild`, `status`, `events`, `record` (the
//! durable record), `ticker`, `refusal` (errors as wire messages) and
//! `local` ([`LocalLink`]).
//!
//! This module only declares its files and re-exports the public items;
//! it must never hold code or state of its own, so that no file of the
//! server uses it.

mod admission;
mod announce;
mod config;
mod conn;
mod connection;
mod coordinator;
mod counterparts;
mod departures;
mod events;
mod grace;
mod local;
mod locks;
mod rebuild;
mod record;
mod refusal;
mod request;
mod restarts;
mod session;
mod state;
mod status;
mod ticker;
mod values;
mod waits;

pub use config::{CoordinatorConfig, CoordinatorError};
pub use conn::LocalPeer;
pub use coordinator::Coordinator;
pub use local::LocalLink;
pub use record::retained_in_record;
pub use restarts::RESTART_TXN;
pub use ticker::TICK;
