//! The state of a node's connection to the coordinator: [`Client`], which
//! the node holds, and `Inner`, which the client shares with its reader and
//! heartbeat threads.
//!
//! This file owns that data only. It must never act on it: connecting,
//! reading, the lease and the requests each add their methods in their own
//! file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::events::{ClientEvent, Events};
use super::link::Link;
use crate::ids::NodeId;
use crate::wire::Msg;

pub(super) struct Inner {
    pub(super) node: NodeId,
    pub(super) link: Link,
    pub(super) pending: Mutex<HashMap<u64, Sender<Msg>>>,
    pub(super) next_id: AtomicU64,
    pub(super) events: Events,
    /// Lease expiry, as an offset from `epoch`, in microseconds; 0 = none.
    pub(super) lease_until_us: AtomicU64,
    pub(super) epoch: Instant,
    pub(super) lease_lost: AtomicBool,
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
}

/// A node's connection to the coordinator. Dropping it closes the
/// connection (which the coordinator takes as a failure unless the node
/// called [`Client::leave`]).
pub struct Client {
    pub(super) inner: Arc<Inner>,
    pub(super) incarnation: u64,
    pub(super) lease_ms: u32,
    pub(super) heartbeat_ms: u32,
    pub(super) events_rx: Mutex<Option<Receiver<ClientEvent>>>,
    pub(super) threads: Vec<JoinHandle<()>>,
}
