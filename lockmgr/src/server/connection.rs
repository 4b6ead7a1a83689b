//! A connection's thread: it reads frames in order, hands each to the
//! request dispatcher, and reports the connection's end.
//!
//! This file owns reading from a connection and the bookkeeping around each
//! request (the node is not silent while one is handled), so it answers
//! what is about the connection alone: a malformed frame, and a heartbeat
//! (the node was heard). It must never handle another request: admission
//! answers the handshake, the handlers the rest.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::admission::AUTH_TIMEOUT;
use super::conn::Conn;
use super::refusal::{error_msg, NO_RESOURCE};
use super::session::{Admitted, Request};
use super::state::Shared;
use crate::transport::Stream;
use crate::wire::{self, ErrorCode, Msg};

impl Shared {
    /// Serves an accepted stream on a thread of its own.
    pub(super) fn serve(self: Arc<Self>, stream: Stream) {
        let Ok(reader) = stream.try_clone() else { return };
        let conn = Arc::new(Conn::new(self.next_conn.fetch_add(1, Ordering::Relaxed), stream));
        let _ = std::thread::Builder::new()
            .name(format!("coord-conn-{}", conn.id))
            .spawn(move || self.connection(conn, reader));
    }

    fn connection(self: Arc<Self>, conn: Arc<Conn>, mut reader: Stream) {
        let _ = reader.set_read_timeout(Some(AUTH_TIMEOUT));
        let admitted = match self.handshake(&conn, &mut reader) {
            Some(a) => a,
            None => {
                conn.close();
                return;
            }
        };
        let _ = reader.set_read_timeout(None);
        let node = admitted.node();
        // Frames a node pipelined arrive together and are read with one
        // call; the answers to those that only touch the lock table go out
        // together after the last of them (`Conn::hold`). Any other request
        // may wait on a durable write, so what is held goes out before it.
        // (A lock request can wait too, behind a membership change holding
        // the grace gate; the answers held then wait with it, as the
        // request's own would.)
        let mut reader = std::io::BufReader::with_capacity(wire::READ_BUFFER, reader);
        loop {
            match wire::read_frame(&mut reader) {
                Ok(Some((id, msg))) => {
                    let lock_table_only =
                        matches!(msg, Msg::Lock { .. } | Msg::Release { .. } | Msg::ReleaseAll { .. });
                    conn.hold(lock_table_only && !reader.buffer().is_empty());
                    if !self.handle(&conn, &admitted, id, msg) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(wire::FrameReadError::Wire(e)) => {
                    tracing::warn!(node, error = %e, "malformed frame; closing the connection");
                    conn.hold(false);
                    conn.send(0, &error_msg(ErrorCode::Malformed, 0, NO_RESOURCE, e.to_string()));
                    break;
                }
                Err(wire::FrameReadError::Io(_)) => break,
            }
        }
        conn.hold(false);
        self.connection_ended(&conn, admitted);
    }

    /// Handles one request of an admitted connection; `false` closes it.
    pub(super) fn handle(&self, conn: &Arc<Conn>, admitted: &Admitted, id: u64, msg: Msg) -> bool {
        // No failure timeout while the request is handled; it is counted
        // afresh afterwards (see `Session::last_heard`).
        let session = admitted.session();
        if let Some(s) = session {
            s.handling();
        }
        let go_on = self.request(conn, admitted, id, msg);
        if let Some(s) = session {
            s.listening();
        }
        go_on
    }

    /// `Heartbeat`: answered with `Ok`; [`Shared::handle`] has noted that
    /// the node was heard.
    pub(super) fn on_heartbeat(&self, req: &Request) {
        req.reply(Msg::Ok);
    }

    /// A connection closes: a member's ending is its failure, unless it
    /// left first or the coordinator is shutting down (those nodes did not
    /// fail).
    pub(super) fn connection_ended(&self, conn: &Arc<Conn>, admitted: Admitted) {
        conn.close();
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        if let Admitted::Member { node, session, .. } = admitted {
            self.connection_lost(node, &session);
        }
    }
}
