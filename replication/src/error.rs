//! The replication crate's errors: refusals a peer sends (typed, by code),
//! what is wrong with a frame, and failures of the standby's own files.
//! Corruption of a frame is its own variant, apart from I/O.

use std::path::PathBuf;

/// Why a primary refused a standby (the `Refused` message's code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The standby holds a copy of another database.
    OtherDatabase = 1,
    /// The standby's proof does not check: another replication secret.
    WrongSecret = 2,
    /// The standby asks for commits the primary never had (it is ahead:
    /// of another history).
    AheadOfPrimary = 3,
    /// The primary's redo no longer reaches back to where the standby is.
    TooFarBehind = 4,
    /// A code this build does not know.
    Unknown = 255,
}

impl Refusal {
    /// The refusal a code names.
    pub fn from_code(code: u8) -> Refusal {
        match code {
            1 => Refusal::OtherDatabase,
            2 => Refusal::WrongSecret,
            3 => Refusal::AheadOfPrimary,
            4 => Refusal::TooFarBehind,
            _ => Refusal::Unknown,
        }
    }
}

/// What is wrong with a frame's bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not a replication frame.
    #[error("not a replication frame (magic {0:02x?})")]
    Magic([u8; 4]),
    /// A protocol version this build does not speak.
    #[error("replication protocol version {found} is not the one this build speaks")]
    Version {
        /// The version found.
        found: u8,
    },
    /// The header's checksum fails: nothing in it, the length included,
    /// can be trusted, so the stream is lost from here.
    #[error("frame header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// The payload's checksum fails (the header is sound: the frame can be
    /// skipped and asked for again).
    #[error("frame payload checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    PayloadChecksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A payload longer than [`crate::frame::MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes is over the bound")]
    TooLarge(u32),
    /// A message type this build does not know.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A payload that does not parse as its message.
    #[error("malformed {what} message: {detail}")]
    Malformed {
        /// The message type.
        what: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
}

/// Errors of replication.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The primary refused this standby.
    #[error("the primary refused this standby: {}", refusal_text(*.refusal, detail))]
    Refused {
        /// Why.
        refusal: Refusal,
        /// What the primary said.
        detail: String,
    },
    /// The peer's proof does not check against this side's replication
    /// secret (one side has another secret, or the peer is not the site it
    /// claims to be).
    #[error(
        "the primary's proof does not check against this replication secret: the two sides have different secrets"
    )]
    WrongSecret,
    /// A replication secret that cannot be used.
    #[error("replication secret {}: {detail}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A frame failed its checks.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer broke the protocol (a message out of place).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A redo record failed its checks.
    #[error("bad redo record: {0}")]
    Redo(#[from] understudy::redo::RedoError),
    /// A file of the standby's copy (or the primary's redo) is damaged or
    /// not what it should be.
    #[error("{}: {detail}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A table the redo writes to has no file in the standby's copy (a
    /// table created on the primary after the copy was made: table
    /// creation is not shipped).
    #[error("table file {file_id} is missing from the standby's copy (tables created after the copy are not shipped; seed the standby again)")]
    MissingTable {
        /// The table file id.
        file_id: u32,
    },
    /// An I/O error on a file.
    #[error(transparent)]
    Io(#[from] wal::io::IoError),
    /// A socket failed or closed.
    #[error("{what}: {source}")]
    Net {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The engine refused.
    #[error(transparent)]
    Engine(#[from] understudy::Error),
}

fn refusal_text(r: Refusal, detail: &str) -> String {
    let what = match r {
        Refusal::OtherDatabase => "it holds a copy of another database",
        Refusal::WrongSecret => "its replication secret is not the primary's",
        Refusal::AheadOfPrimary => "it holds commits the primary never had",
        Refusal::TooFarBehind => "the primary's redo no longer reaches back to its position",
        Refusal::Unknown => "an unknown reason",
    };
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what} ({detail})")
    }
}

impl ReplicationError {
    pub(crate) fn net(what: impl Into<String>, source: std::io::Error) -> ReplicationError {
        ReplicationError::Net {
            what: what.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;
