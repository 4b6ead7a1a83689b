//! The per-node write-ahead undo log of Understudy, and the I/O layer every
//! Understudy crate uses for files.
//!
//! Each node appends the before-images of the pages its transactions change
//! ([`RecordBody::Undo`]), and begin/commit/abort/end/compensation/checkpoint
//! records, to its own log. The log is what lets the node itself, or a peer
//! that takes its place after it dies, back out every transaction that was in
//! flight. The on-disk format is documented in [`record`], [`segment`] and
//! [`control`], and summarised in `wal/FORMAT.md`.
//!
//! ```
//! use wal::{io::Io, Log, LogConfig, LogReader, RecordBody, RecordMeta, PageUndo};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let io = Io::new(Default::default()).unwrap();
//! let log = Log::open(dir.path(), LogConfig::new(1, io.clone())).unwrap();
//! let begin = log.append(RecordMeta::txn(7, None), &RecordBody::Begin).unwrap();
//! let undo = log
//!     .append(
//!         RecordMeta::txn(7, Some(begin)),
//!         &RecordBody::Undo(PageUndo {
//!             file_id: 1,
//!             page_no: 42,
//!             offset_in_page: 128,
//!             before: b"old bytes".to_vec(),
//!             after: None,
//!         }),
//!     )
//!     .unwrap();
//! log.wait_durable(undo).unwrap(); // group commit: shares one fdatasync
//! log.close().unwrap();
//!
//! let reader = LogReader::open(dir.path(), io).unwrap();
//! let chain: Vec<_> = reader.chain(undo).map(|r| r.unwrap().lsn).collect();
//! assert_eq!(chain, vec![undo, begin]);
//! ```
//!
//! The log never interprets page contents and knows nothing of locks or the
//! cluster.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod access;
pub mod background;
pub mod control;
mod corruption;
pub mod damage;
pub mod error;
#[doc(hidden)]
pub mod group_commit;
pub mod io;
pub mod lock_file;
mod lsn;
pub mod reader;
pub mod record;
pub mod segment;
mod sync;
pub mod writer;

pub use access::{AccessKey, AccessProof, LogAccess, Role};
pub use corruption::CorruptionKind;
pub use error::{Result, WalError};
pub use lsn::Lsn;
pub use reader::{LogEnd, LogReader, OwnerStatus, Scan};
pub use record::{
    ActiveTxn, AgentId, Kind, PageRef, PageUndo, Record, RecordBody, RecordMeta, ScopeToken, TxnId, PAGE_AGENT,
};
pub use writer::{Followed, Log, LogConfig};
