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
    pub endpoint: Endpoint,
    pub node: NodeId,
    pub secret: Secret,
    pub purpose: Purpose,
    /// For `Rejoin`: the incarnation the node had.
    pub incarnation: u64,
    pub connect_timeout: Duration,
    /// How long before the lease lapses the node stops writing.
    pub fence_margin_ms: u32,
    /// Upper bound on waiting for any reply beyond a request's own wait.
    pub reply_timeout: Duration,
}

impl ClientConfig {
    pub fn new(endpoint: Endpoint, node: NodeId, secret: Secret) -> ClientConfig {
        ClientConfig {
            endpoint,
            node,
            secret,
            purpose: Purpose::Join,
            incarnation: 0,
            connect_timeout: Duration::from_secs(5),
            fence_margin_ms: 100,
            reply_timeout: Duration::from_secs(30),
        }
    }
}
