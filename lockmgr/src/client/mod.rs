//! The node side of the coordinator connection: authentication, membership,
//! pipelined requests, pushed events, heartbeats and the lease.
//!
//! Any number of threads may call the client at once; each request carries
//! its own id and waits for its own reply while others are in flight.
//!
//! ## The lease, and why a cut-off node stops writing first
//! Every `heartbeat_ms` the client sends a heartbeat and notes the time `s`
//! on its own monotonic clock before sending. When the coordinator's reply
//! arrives, the lease is valid until `s + lease_ms` (the later of that and the
//! current expiry). [`Client::lease_valid`] is false from
//! `lease_ms - fence_margin_ms` after the last acknowledged send; the node
//! checks it before each write and stops writing (self-fencing) once it is
//! false. The connection dropping ends the lease at once, unless the client
//! rides through a coordinator restart ([`ClientConfig::ride_through`]): it
//! then rejoins while the lease holds (see `rejoin`).
//!
//! The coordinator declares the node failed when it has received nothing
//! for `failure_timeout_ms`, measured from the *receipt* `r ≥ s` of the last
//! heartbeat on the coordinator's clock. With both clocks' rates within a
//! relative drift `ρ` of real time, the node stops at real time at most
//! `s + (lease_ms − margin)(1 + ρ)`, and the coordinator declares failure no
//! earlier than `r + failure_timeout_ms (1 − ρ) ≥ s + failure_timeout_ms
//! (1 − ρ)`. So the node has stopped before anyone can be told it failed
//! whenever `(lease_ms − margin)(1 + ρ) < failure_timeout_ms (1 − ρ)`. The
//! defaults (lease 1000 ms, margin 100 ms, failure timeout 1500 ms) satisfy
//! this for any ρ below 20 %; real clock drift is below 0.01 %. A write
//! already submitted to the kernel when the lease lapses is the one thing
//! this cannot stop: peer recovery fences those by the kernel's word on the
//! same host, and by waiting out the lease otherwise.
//!
//! ## Layout
//! [`Client`] and the state it shares with its threads are in `state`; the
//! connection's writing side is `link`. Around them, one file per concern:
//! `connect` (handshake, admission, the threads, the end), `reader` (what
//! the coordinator sends), `lease` (heartbeats and self-fencing),
//! `rejoin` (riding through a coordinator restart) with `held` (the locks
//! it re-asserts), `requests`, `events` and `error`.
//!
//! This module only declares its files and re-exports the public items; it
//! must never hold code or state of its own, so that no file of the client
//! uses it.

mod config;
mod connect;
mod error;
mod events;
mod held;
mod lease;
mod link;
mod reader;
mod rejoin;
mod requests;
mod state;

pub use config::ClientConfig;
pub use error::ClientError;
pub use events::ClientEvent;
pub use requests::{CounterpartGrant, LockWait};
pub use state::Client;
