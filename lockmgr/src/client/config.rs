//! How a client connects ([`ClientConfig`]).
//!
//! This file owns the settings only; it must never act on them (`connect`
//! does).

use std::time::Duration;

use crate::auth::Secret;
use crate::ids::NodeId;
use crate::transport::Endpoint;
use crate::wire::Purpose;

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Where the coordinator listens (not used by
    /// [`Client::connect_local`](super::Client::connect_local)).
    pub endpoint: Endpoint,
    /// Where else a coordinator of the cluster may listen: standbys on
    /// other hosts (see `crate::etcd`). A client riding through a
    /// coordinator's end tries `endpoint` and these in turn. Empty by
    /// default.
    pub also: Vec<Endpoint>,
    /// The node this client speaks for.
    pub node: NodeId,
    /// The cluster secret the node proves it knows (not used in process).
    pub secret: Secret,
    /// Why the node connects; [`Purpose::Join`] by default.
    pub purpose: Purpose,
    /// For `Rejoin`: the incarnation the node had.
    pub incarnation: u64,
    /// Bounds a TCP connect and each read of the handshake; 5 s by
    /// default.
    pub connect_timeout: Duration,
    /// How long before the lease lapses the node stops writing, in
    /// milliseconds; 100 by default, and at most a quarter of the lease the
    /// coordinator grants (a larger margin is cut to that).
    pub fence_margin_ms: u32,
    /// Upper bound on waiting for any reply beyond a request's own wait;
    /// 30 s by default.
    pub reply_timeout: Duration,
    /// Ride through a coordinator restart: when the connection drops, a
    /// member connects again (to the restarted coordinator, or a standby at
    /// the same endpoint) with [`Purpose::Rejoin`] while its lease holds,
    /// and re-asserts the locks it holds; requests wait meanwhile (see
    /// `rejoin`). Off by default: the connection's end is then the lease's
    /// end, at once. Never for an operator or a client in the
    /// coordinator's own process (it dies with them); a restarting node
    /// rides through only once its own recovery is finished
    /// ([`Client::restart_finished`](super::Client::restart_finished)).
    pub ride_through: bool,
    /// The node launches restarts of failed nodes: restart requests go to
    /// such a node (see the coordinator's `RequestRestart`). Off by default.
    pub launches_restarts: bool,
}

impl ClientConfig {
    /// Joins as `node` at `endpoint` with `secret`; every other setting
    /// takes its default (see the fields).
    pub fn new(endpoint: Endpoint, node: NodeId, secret: Secret) -> ClientConfig {
        ClientConfig {
            endpoint,
            also: Vec::new(),
            node,
            secret,
            purpose: Purpose::Join,
            incarnation: 0,
            connect_timeout: Duration::from_secs(5),
            fence_margin_ms: 100,
            reply_timeout: Duration::from_secs(30),
            ride_through: false,
            launches_restarts: false,
        }
    }
}
