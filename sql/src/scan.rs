//! A table's rows, read in key order a chunk at a time.
//!
//! Each chunk is read in the open transaction, whose page locks keep what
//! was read from changing until the transaction ends. The storage's
//! transaction is not held between chunks, so GlueSQL can read other
//! tables (a join) while a scan is under way.

use std::ops::Bound;

use gluesql_core::data::{Key, Value};
use gluesql_core::error::Result;
use serde::{Deserialize, Serialize};

use crate::catalog::decode;
use understudy::Transaction;

use crate::conn::Conn;
use crate::error::from_engine;
use crate::keys::{prefix_end, table_prefix, ROWS};

/// A row as stored in `sql.rows`.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredRow {
    pub(crate) key: Key,
    pub(crate) row: Vec<Value>,
    /// The keys of the row's entries in `sql.indexes` (`crate::index`).
    pub(crate) entries: Vec<Vec<u8>>,
}

/// Rows read per chunk.
const CHUNK: usize = 256;

pub(crate) struct Scan<'a> {
    conn: &'a Conn,
    /// The rows are read for update (`Conn::will_write`).
    for_update: bool,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    buf: std::vec::IntoIter<(Key, Vec<Value>)>,
    done: bool,
}

/// A range of row keys: its start and its end.
type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The bounds of `table`'s rows.
fn bounds(table: &str) -> Result<KeyRange> {
    let prefix = table_prefix(table)?;
    let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    Ok((Bound::Included(prefix), end))
}

impl<'a> Scan<'a> {
    pub(crate) fn new(conn: &'a Conn, table: &str) -> Result<Scan<'a>> {
        let (start, end) = bounds(table)?;
        Ok(Scan {
            conn,
            for_update: conn.writes(table)?,
            start,
            end,
            buf: Vec::new().into_iter(),
            done: false,
        })
    }

    /// Reads the next chunk into `buf`.
    fn refill(&mut self) -> Result<()> {
        let range = (self.start.clone(), self.end.clone());
        let for_update = self.for_update;
        let (rows, last) = self.conn.with_txn(|txn| {
            let mut rows = Vec::with_capacity(CHUNK);
            let mut last = None;
            let scan = if for_update {
                txn.range_for_update(ROWS, range)
            } else {
                txn.range(ROWS, range)
            };
            for row in scan.map_err(from_engine)?.take(CHUNK) {
                let (k, v) = row.map_err(from_engine)?;
                let stored: StoredRow = decode(&v)?;
                rows.push((stored.key, stored.row));
                last = Some(k);
            }
            Ok((rows, last))
        })?;
        self.done = rows.len() < CHUNK;
        if let Some(last) = last {
            self.start = Bound::Excluded(last);
        }
        self.buf = rows.into_iter();
        Ok(())
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Key, Vec<Value>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(row) = self.buf.next() {
            return Some(Ok(row));
        }
        if self.done {
            return None;
        }
        if let Err(e) = self.refill() {
            self.done = true;
            return Some(Err(e));
        }
        self.buf.next().map(Ok)
    }
}

/// The rows (keys and values) of Understudy table `utable` whose keys
/// begin with `prefix`.
pub(crate) fn rows_in(txn: &mut Transaction, utable: &str, prefix: Vec<u8>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    txn.range(utable, (Bound::Included(prefix), end))
        .map_err(from_engine)?
        .collect::<understudy::Result<Vec<_>>>()
        .map_err(from_engine)
}

/// Deletes every row of Understudy table `utable` whose key begins with
/// `prefix`, a chunk of keys at a time.
pub(crate) fn delete_prefix(txn: &mut Transaction, utable: &str, prefix: Vec<u8>) -> Result<()> {
    let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
    let start = Bound::Included(prefix);
    loop {
        let keys = txn
            .range(utable, (start.clone(), end.clone()))
            .map_err(from_engine)?
            .take(CHUNK)
            .map(|row| row.map(|(k, _)| k))
            .collect::<understudy::Result<Vec<_>>>()
            .map_err(from_engine)?;
        for k in &keys {
            txn.delete(utable, k).map_err(from_engine)?;
        }
        if keys.len() < CHUNK {
            return Ok(());
        }
    }
}
