//! The state of a node's connection to the coordinator: [`Client`], which
//! the node holds, and `Inner`, which the client shares with its reader and
//! heartbeat threads.
//!
//! This file owns that data only. It must never act on it: connecting,
//! reading, the lease, riding through a restart and the requests each add
//! their methods in their own file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::ClientConfig;
use super::events::{ClientEvent, Events};
use super::held::Held;
use super::link::Link;
use crate::ids::NodeId;
use crate::wire::Msg;

/// A request waiting for its answer.
pub(super) struct Pending {
    /// Where the answer goes.
    pub(super) tx: Sender<Msg>,
    /// The request, for those sent again on a new connection when the old
    /// one drops unanswered (see `rejoin`): lock requests and questions
    /// that change nothing. `None` for the others.
    pub(super) resend: Option<Msg>,
    /// A release: the coordinator a new connection reaches holds only the
    /// locks re-asserted to it, so a release the old one never answered is
    /// done, and answered `Ok` on the spot.
    pub(super) done_on_drop: bool,
    /// The connection it was written on (see `Link`'s generations); `None`
    /// until written.
    pub(super) generation: Option<u64>,
}

pub(super) struct Inner {
    pub(super) node: NodeId,
    pub(super) link: Link,
    pub(super) pending: Mutex<HashMap<u64, Pending>>,
    /// The locks this node holds, as granted: what it re-asserts to a
    /// restarted coordinator.
    pub(super) held: Held,
    pub(super) next_id: AtomicU64,
    pub(super) events: Events,
    /// Lease expiry, as an offset from `epoch`, in microseconds; 0 = none.
    pub(super) lease_until_us: AtomicU64,
    pub(super) epoch: Instant,
    pub(super) lease_lost: AtomicBool,
    /// The connection is over for good: no request goes out any more.
    pub(super) closed: AtomicBool,
    /// The node ends the connection itself — it leaves, drops the client,
    /// or disconnects after stopping: the end of the connection, and of the
    /// lease with it, is expected, and no news.
    pub(super) leaving: AtomicBool,
    pub(super) reply_timeout: Duration,
    /// Heartbeats sent and not yet answered, with when they were sent: a
    /// reply extends the lease from its own heartbeat's send time, however
    /// late it arrives.
    pub(super) heartbeats: Mutex<HashMap<u64, Instant>>,
    pub(super) lease_ms: u32,
    pub(super) fence_margin_ms: u32,
    /// How to connect again after the connection drops (a socket client
    /// configured to ride through), and the incarnation to rejoin as.
    pub(super) rejoin: Option<(ClientConfig, u64)>,
    /// Whether a drop is ridden through now: from admission for a member
    /// that joined or rejoined, from its `RestartFinished` for one that
    /// restarted (until then its reclaimed locks are the coordinator's
    /// alone to know).
    pub(super) ride_through: AtomicBool,
}

/// A node's connection to the coordinator. Dropping it closes the
/// connection (which the coordinator takes as a failure unless the node
/// called [`Client::leave`]).
pub struct Client {
    pub(super) inner: Arc<Inner>,
    pub(super) incarnation: u64,
    pub(super) lease_ms: u32,
    pub(super) heartbeat_ms: u32,
    /// The admission's log-access proof (see [`Client::log_access`]).
    pub(super) log_proof: [u8; 32],
    pub(super) events_rx: Mutex<Option<Receiver<ClientEvent>>>,
    pub(super) threads: Vec<JoinHandle<()>>,
}
