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
/// Which recovery agent undoes a record.
pub type AgentId = u16;
/// Which nested scope (savepoint level) a record belongs to.
pub type ScopeToken = u32;

/// The built-in agent: undoes a record by writing its page before-image back.
pub const PAGE_AGENT: AgentId = 0;

/// The record kinds of format version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Begin = 1,
    Undo = 2,
    Commit = 3,
    Abort = 4,
    End = 5,
    Compensation = 6,
    Checkpoint = 7,
    /// Fills the rest of a segment; the stream continues in the next one.
    SegmentEnd = 8,
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
    pub txn: TxnId,
    /// The previous record of the same transaction (the backward chain).
    pub prev_lsn: Option<Lsn>,
    pub scope: ScopeToken,
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
    pub file_id: u32,
    pub page_no: u64,
    pub offset_in_page: u32,
    pub before: Vec<u8>,
    pub after: Option<Vec<u8>>,
}

/// A transaction active at a checkpoint, and its first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveTxn {
    pub txn: TxnId,
    pub first_lsn: Lsn,
}

/// What a record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    Begin,
    /// A page before-image, undone by [`PAGE_AGENT`].
    Undo(PageUndo),
    /// Undo information for a custom recovery agent (agent ≠ 0).
    AgentUndo(Vec<u8>),
    Commit,
    Abort,
    End,
    Compensation {
        undo_next: Option<Lsn>,
    },
    Checkpoint(Vec<ActiveTxn>),
    /// The pages a committing transaction forces, each stamped with this
    /// record's LSN (see [`crate::record`]).
    CommitIntent(Vec<PageRef>),
}

/// A page of a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageRef {
    pub file_id: u32,
    pub page_no: u64,
}

impl RecordBody {
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
    pub lsn: Lsn,
    pub meta: RecordMeta,
    pub body: RecordBody,
}
