//! The messages of the replication protocol and their payloads.
//!
//! Payload fields are fixed-width little-endian integers in the order the
//! variant lists them; a byte string is a u32 length then its bytes. A
//! payload with bytes missing or left over is malformed. The standby sends
//! types below 0x80, the primary from 0x80.
//!
//! The conversation: the standby sends `Hello` (database, its id, a nonce);
//! the primary answers `Challenge` (its nonce, and its proof over the
//! standby's nonce) or `Refused`; the standby checks that proof, answers
//! `Proof` (its proof over the primary's nonce, and the first commit it
//! wants); the primary answers `Welcome` or `Refused`, then streams `Redo`
//! in commit order and `Tip` when idle. The standby sends `Ack` as records
//! become durable and applied, and `Resend` when a frame failed its
//! checksum.

use crate::error::FrameError;

/// A replication message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// 0x01, standby → primary: who it is.
    Hello {
        /// The database its copy is of.
        database: [u8; 16],
        /// The standby's id (for reports).
        standby: u64,
        /// A fresh nonce the primary proves itself over.
        nonce: [u8; 32],
    },
    /// 0x02, standby → primary: its proof, and where to start.
    Proof {
        /// HMAC over the primary's nonce (`crate::auth`).
        proof: [u8; 32],
        /// The first commit sequence number it wants.
        from_seq: u64,
    },
    /// 0x03, standby → primary: how far it holds the stream.
    Ack {
        /// Every commit up to this one is durable at the standby.
        durable: u64,
        /// Every commit up to this one is applied to its data files.
        applied: u64,
    },
    /// 0x04, standby → primary: send again from this commit on (a frame
    /// failed its checksum).
    Resend {
        /// The first commit to send again.
        from_seq: u64,
    },
    /// 0x81, primary → standby: the primary's challenge and proof.
    Challenge {
        /// A fresh nonce the standby proves itself over.
        nonce: [u8; 32],
        /// HMAC over the standby's nonce.
        proof: [u8; 32],
    },
    /// 0x82, primary → standby: admitted.
    Welcome {
        /// The primary's committed watermark.
        committed: u64,
        /// Whether the primary waits for standbys before acknowledging a
        /// commit (sync mode).
        sync: bool,
    },
    /// 0x83, primary → standby: refused; the connection closes.
    Refused {
        /// [`crate::Refusal`] as its code.
        code: u8,
        /// Words for a person.
        detail: Vec<u8>,
    },
    /// 0x84, primary → standby: one committed transaction's redo record
    /// (`understudy::redo`), whose sequence number is in it.
    Redo {
        /// The record's bytes.
        record: Vec<u8>,
    },
    /// 0x85, primary → standby: the primary's committed watermark, sent
    /// when there is nothing to ship (the standby's lag is measured by it).
    Tip {
        /// The primary's committed watermark.
        committed: u64,
    },
}

struct Cursor<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Malformed {
                what: self.what,
                detail: "payload too short",
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = u32::from_le_bytes(self.arr::<4>()?) as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn end(self) -> Result<(), FrameError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed {
                what: self.what,
                detail: "bytes left over",
            })
        }
    }
}

impl Msg {
    /// The message's type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Msg::Hello { .. } => 0x01,
            Msg::Proof { .. } => 0x02,
            Msg::Ack { .. } => 0x03,
            Msg::Resend { .. } => 0x04,
            Msg::Challenge { .. } => 0x81,
            Msg::Welcome { .. } => 0x82,
            Msg::Refused { .. } => 0x83,
            Msg::Redo { .. } => 0x84,
            Msg::Tip { .. } => 0x85,
        }
    }

    /// The message's payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Msg::Hello {
                database,
                standby,
                nonce,
            } => {
                out.extend_from_slice(database);
                out.extend_from_slice(&standby.to_le_bytes());
                out.extend_from_slice(nonce);
            }
            Msg::Proof { proof, from_seq } => {
                out.extend_from_slice(proof);
                out.extend_from_slice(&from_seq.to_le_bytes());
            }
            Msg::Ack { durable, applied } => {
                out.extend_from_slice(&durable.to_le_bytes());
                out.extend_from_slice(&applied.to_le_bytes());
            }
            Msg::Resend { from_seq } => out.extend_from_slice(&from_seq.to_le_bytes()),
            Msg::Challenge { nonce, proof } => {
                out.extend_from_slice(nonce);
                out.extend_from_slice(proof);
            }
            Msg::Welcome { committed, sync } => {
                out.extend_from_slice(&committed.to_le_bytes());
                out.push(u8::from(*sync));
            }
            Msg::Refused { code, detail } => {
                out.push(*code);
                out.extend_from_slice(&(detail.len() as u32).to_le_bytes());
                out.extend_from_slice(detail);
            }
            Msg::Redo { record } => out.extend_from_slice(record),
            Msg::Tip { committed } => out.extend_from_slice(&committed.to_le_bytes()),
        }
        out
    }

    /// Decodes the payload of a message of type `code`.
    pub fn decode(code: u8, payload: &[u8]) -> Result<Msg, FrameError> {
        let what = match code {
            0x01 => "Hello",
            0x02 => "Proof",
            0x03 => "Ack",
            0x04 => "Resend",
            0x81 => "Challenge",
            0x82 => "Welcome",
            0x83 => "Refused",
            0x84 => "Redo",
            0x85 => "Tip",
            other => return Err(FrameError::UnknownType(other)),
        };
        let mut c = Cursor { b: payload, what };
        let msg = match code {
            0x01 => Msg::Hello {
                database: c.arr()?,
                standby: c.u64()?,
                nonce: c.arr()?,
            },
            0x02 => Msg::Proof {
                proof: c.arr()?,
                from_seq: c.u64()?,
            },
            0x03 => Msg::Ack {
                durable: c.u64()?,
                applied: c.u64()?,
            },
            0x04 => Msg::Resend { from_seq: c.u64()? },
            0x81 => Msg::Challenge {
                nonce: c.arr()?,
                proof: c.arr()?,
            },
            0x82 => Msg::Welcome {
                committed: c.u64()?,
                sync: match c.u8()? {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err(FrameError::Malformed {
                            what,
                            detail: "sync flag is neither 0 nor 1",
                        })
                    }
                },
            },
            0x83 => Msg::Refused {
                code: c.u8()?,
                detail: c.bytes()?,
            },
            0x84 => {
                let record = c.take(payload.len())?.to_vec();
                // The record is checked whole (its own checksum) by the
                // standby before it is kept; here only its framing.
                understudy::redo::record_len(&record)
                    .ok()
                    .filter(|&n| n == record.len())
                    .ok_or(FrameError::Malformed {
                        what,
                        detail: "not one whole redo record",
                    })?;
                Msg::Redo { record }
            }
            _ => Msg::Tip { committed: c.u64()? },
        };
        c.end()?;
        Ok(msg)
    }
}
