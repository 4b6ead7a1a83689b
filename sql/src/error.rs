//! Understudy's errors, and the storage's own, as GlueSQL errors.

use gluesql_core::error::Error;

/// An Understudy error as a GlueSQL one.
pub(crate) fn from_engine(e: understudy::Error) -> Error {
    if e.is_retryable() {
        Error::StorageMsg(format!("[Understudy] {e} (retryable: run the transaction again)"))
    } else {
        Error::StorageMsg(format!("[Understudy] {e}"))
    }
}

/// A refusal of the storage's own (a key too long, a value it cannot
/// read back).
pub(crate) fn storage_msg(msg: String) -> Error {
    Error::StorageMsg(format!("[Understudy] {msg}"))
}
