//! What a record says: whose it is ([`RecordMeta`]), what kind it is
//! ([`Kind`]) and what it carries ([`RecordBody`]), and a record as read
//! back ([`Record`]).
//!
//! This file owns the meaning of records. It must never make or read their
//! bytes: the format is defined, and documented, in [`crate::record`],
//! where records are encoded and decoded.

use crate::lsn::Lsn;

/// A transaction id, unique within its node's log.
pub type TxnId = u64;
/// Which recovery agent undoes a record: the id of the resource it owns
/// ([`PAGE_AGENT`] for the data pages).
pub type AgentId = u16;
/// Which failure scope a record belongs to (the engine numbers the nested
/// scopes of a transaction; 0 is the transaction itself).
pub type ScopeToken = u32;

/// The built-in agent: undoes a record by writing its page before-image back.
pub const PAGE_AGENT: AgentId = 0;

/// The record kinds of format version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A transaction starts; the first record of its chain.
    Begin = 1,
    /// Undo information: a page before-image, or a custom agent's bytes.
    Undo = 2,
    /// The transaction committed.
    Commit = 3,
    /// The transaction will not commit and is to be backed out (a commit
    /// intent before it no longer counts).
    Abort = 4,
    /// The transaction is finished: nothing of it is left to undo.
    End = 5,
    /// An undo step was carried out (see [`RecordBody::Compensation`]).
    Compensation = 6,
    /// The transactions active at a checkpoint, where recovery starts.
    Checkpoint = 7,
    /// Fills the rest of a segment; the stream continues in the next one.
    SegmentEnd = 8,
    /// The pages a committing transaction forces (see
    /// [`RecordBody::CommitIntent`]).
    CommitIntent = 9,
}

impl Kind {
    /// The kind a header's kind byte names, if this version knows it.
    pub(super) fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Begin,
            2 => Kind::Undo,
            3 => Kind::Commit,
            4 => Kind::Abort,
            5 => Kind::End,
            6 => Kind::Compensation,
            7 => Kind::Checkpoint,
            8 => Kind::SegmentEnd,
            9 => Kind::CommitIntent,
            _ => return None,
        })
    }
}

/// Who a record belongs to and who undoes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// The transaction the record belongs to (0 for the log's own records,
    /// such as checkpoints).
    pub txn: TxnId,
    /// The previous record of the same transaction (the backward chain).
    pub prev_lsn: Option<Lsn>,
    /// The failure scope the record belongs to; 0 is the transaction
    /// itself.
    pub scope: ScopeToken,
    /// The recovery agent that undoes the record ([`PAGE_AGENT`] for page
    /// before-images).
    pub agent: AgentId,
}

impl RecordMeta {
    /// A record of transaction `txn` in the outermost scope, undone by the
    /// page agent.
    pub fn txn(txn: TxnId, prev_lsn: Option<Lsn>) -> RecordMeta {
        RecordMeta {
            txn,
            prev_lsn,
            scope: 0,
            agent: PAGE_AGENT,
        }
    }
}

/// A page range's before-image (and optionally after-image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageUndo {
    /// The data file the page belongs to.
    pub file_id: u32,
    /// The page's number in that file.
    pub page_no: u64,
    /// Byte offset in the page where the range starts.
    pub offset_in_page: u32,
    /// The range's bytes before the change: what undoing writes back.
    pub before: Vec<u8>,
    /// The range's bytes after the change, when the caller logs them.
    pub after: Option<Vec<u8>>,
}

/// A transaction active at a checkpoint, and its first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveTxn {
    /// The transaction.
    pub txn: TxnId,
    /// Its first record (its `Begin`): a backward walk of its chain ends
    /// there.
    pub first_lsn: Lsn,
}

/// What a record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    /// A transaction starts ([`Kind::Begin`]).
    Begin,
    /// A page before-image, undone by [`PAGE_AGENT`].
    Undo(PageUndo),
    /// A custom recovery agent's work identifier (agent ≠ 0, at most
    /// [`crate::record::MAX_AGENT_WORK`] bytes): what the agent needs to make
    /// one action on its resource final, or undo it.
    AgentUndo(Vec<u8>),
    /// The transaction committed ([`Kind::Commit`]).
    Commit,
    /// The transaction is to be backed out ([`Kind::Abort`]).
    Abort,
    /// The transaction is finished ([`Kind::End`]).
    End,
    /// An undo step was carried out: every record of the transaction after
    /// `undo_next` in its chain has been undone already.
    Compensation {
        /// The next record of the transaction still to undo; `None` when
        /// nothing is left.
        undo_next: Option<Lsn>,
    },
    /// The transactions active at a checkpoint, each with its first record.
    Checkpoint(Vec<ActiveTxn>),
    /// The pages a committing transaction forces, each stamped with this
    /// record's LSN (see [`crate::record`]).
    CommitIntent(Vec<PageRef>),
}

/// A page of a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageRef {
    /// The data file.
    pub file_id: u32,
    /// The page's number in that file.
    pub page_no: u64,
}

impl RecordBody {
    /// The kind a record with this body carries in its header.
    pub fn kind(&self) -> Kind {
        match self {
            RecordBody::Begin => Kind::Begin,
            RecordBody::Undo(_) | RecordBody::AgentUndo(_) => Kind::Undo,
            RecordBody::Commit => Kind::Commit,
            RecordBody::Abort => Kind::Abort,
            RecordBody::End => Kind::End,
            RecordBody::Compensation { .. } => Kind::Compensation,
            RecordBody::Checkpoint(_) => Kind::Checkpoint,
            RecordBody::CommitIntent(_) => Kind::CommitIntent,
        }
    }
}

/// A record as read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where the record starts in the log stream.
    pub lsn: Lsn,
    /// Whose it is and who undoes it.
    pub meta: RecordMeta,
    /// What it says.
    pub body: RecordBody,
}
