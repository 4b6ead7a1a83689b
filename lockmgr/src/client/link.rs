//! How requests reach the coordinator ([`Link`]): a socket, or a
//! coordinator in this process ([`LocalLink`]).
//!
//! This file owns the writing side of the connection and its closing. It
//! must never read (the reader thread does) nor wait for an answer.

use std::io::Write;
use std::sync::Mutex;

use super::error::ClientError;
use crate::server::LocalLink;
use crate::sync::lock_std;
use crate::transport::Stream;
use crate::wire::{self, Msg};

/// How requests reach the coordinator.
pub(super) enum Link {
    Socket(Mutex<Stream>),
    /// The coordinator runs in this process (see [`LocalLink`]).
    Local(LocalLink),
}

impl Link {
    /// Hands requests to the coordinator: over a socket in one write (the
    /// coordinator reads them together and answers them together), in
    /// this process one after the other on this thread.
    pub(super) fn transmit(&self, frames: &[(u64, &Msg)]) -> Result<(), ClientError> {
        match self {
            Link::Socket(stream) => {
                let mut bytes = Vec::with_capacity(frames.len() * 64);
                for (id, m) in frames {
                    bytes.extend_from_slice(&wire::encode(*id, m));
                }
                lock_std(stream)
                    .write_all(&bytes)
                    .map_err(|_| ClientError::Disconnected)
            }
            Link::Local(link) => {
                for (id, m) in frames {
                    // `false`: the connection closed (after this request's
                    // answer, for a `Leave`); `connection_closed` has run.
                    if !link.request(*id, (*m).clone()) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Ends the connection from this side.
    pub(super) fn shut(&self) {
        match self {
            Link::Socket(stream) => lock_std(stream).shutdown(),
            Link::Local(link) => link.close(),
        }
    }
}
