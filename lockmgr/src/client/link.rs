//! How requests reach the coordinator ([`Link`]): a socket, or a
//! coordinator in this process ([`LocalLink`]).
//!
//! A socket link outlives its connection when the client rides through a
//! coordinator restart (see `rejoin`): the stream is taken out when the
//! connection drops and a new one put in once the node has rejoined, each
//! connection numbered by a generation. Writers wait, bounded, while there
//! is none; everything written while the ledger of held locks is read and
//! re-asserted waits behind that too, on the same lock.
//!
//! This file owns the writing side of the connection and its closing. It
//! must never read (the reader thread does) nor wait for an answer.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::error::ClientError;
use crate::server::LocalLink;
use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, Msg};

/// How requests reach the coordinator.
pub(super) enum Link {
    Socket(Socket),
    /// The coordinator runs in this process (see [`LocalLink`]).
    Local(LocalLink),
}

/// A socket link: the current connection's writing side, if there is one.
pub(super) struct Socket {
    wire: Mutex<Wire>,
    /// Signalled when a connection is put in, or the link is shut.
    changed: Condvar,
}

/// The current connection of a [`Socket`].
pub(super) struct Wire {
    /// `None` between a connection's drop and the next one's re-assertion.
    pub(super) stream: Option<Stream>,
    /// Counts the connections made; the first is 0.
    pub(super) generation: u64,
    /// No connection will come any more.
    pub(super) shut: bool,
}

impl Socket {
    pub(super) fn new(stream: Stream) -> Socket {
        Socket {
            wire: Mutex::new(Wire {
                stream: Some(stream),
                generation: 0,
                shut: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// The current connection, waiting until `until` for one while there is
    /// none; `None` when none came by then, or none will.
    pub(super) fn current(&self, until: Option<Instant>) -> Option<MutexGuard<'_, Wire>> {
        let mut wire = lock_std(&self.wire);
        loop {
            if wire.shut {
                return None;
            }
            if wire.stream.is_some() {
                return Some(wire);
            }
            let left = until?.checked_duration_since(Instant::now())?;
            wire = self
                .changed
                .wait_timeout(wire, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The connection's state, whatever it is (to take it out or put a new
    /// one in); call [`Socket::notify`] after putting one in.
    pub(super) fn lock(&self) -> MutexGuard<'_, Wire> {
        lock_std(&self.wire)
    }

    /// Wakes the writers waiting for a connection.
    pub(super) fn notify(&self) {
        self.changed.notify_all();
    }
}

impl Wire {
    /// Writes `frames` on the current connection in one write.
    pub(super) fn write(&mut self, frames: &[(u64, &Msg)]) -> Result<(), ClientError> {
        let stream = self.stream.as_mut().ok_or(ClientError::Disconnected)?;
        let mut bytes = Vec::with_capacity(frames.len() * 64);
        for (id, m) in frames {
            bytes.extend_from_slice(&wire::encode(*id, m));
        }
        stream.write_all(&bytes).map_err(|_| ClientError::Disconnected)
    }
}

impl Link {
    /// Ends the connection from this side, for good.
    pub(super) fn shut(&self) {
        match self {
            Link::Socket(socket) => {
                let mut wire = socket.lock();
                wire.shut = true;
                if let Some(s) = wire.stream.as_ref() {
                    s.shutdown();
                }
                drop(wire);
                socket.notify();
            }
            Link::Local(link) => link.close(),
        }
    }
}
