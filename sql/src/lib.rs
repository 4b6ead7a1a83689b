//! SQL on Understudy: [`UnderstudyStorage`] is a GlueSQL storage whose SQL
//! transactions are Understudy transactions.
//!
//! ```
//! use gluesql_core::prelude::Glue;
//! use understudy_sql::UnderstudyStorage;
//!
//! let dir = tempfile::tempdir()?;
//! let mut glue = Glue::new(UnderstudyStorage::open(dir.path())?);
//! glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")?;
//! glue.execute("INSERT INTO t VALUES (2, 'b'), (1, 'a')")?;
//! let out = glue.execute("SELECT name FROM t")?;
//! # let _ = out;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layout
//! Three Understudy ordered tables hold everything:
//! - `sql.catalog`: each SQL table's schema and each custom function
//!   (`catalog`);
//! - `sql.rows`: every row of every SQL table, keyed by the table's name and
//!   the row's key (`keys`), its value the key and the row, serialized with
//!   bincode. A table with a primary key has its rows in key order; one
//!   without gets increasing generated keys, so its rows come back in the
//!   order they were inserted;
//! - `sql.indexes`: the entries of secondary indexes (`index`), which
//!   GlueSQL's planner uses for `WHERE` and `ORDER BY` on an indexed
//!   expression.
//!
//! Keeping tables and schemas as rows, not as Understudy tables, is what
//! makes DDL transactional: Understudy creates and drops its own tables
//! outside any transaction, while a `CREATE TABLE` or `DROP TABLE` here is
//! a catalog row written, and rows deleted, inside the SQL transaction.
//!
//! ## Transactions
//! `BEGIN` starts an Understudy transaction, `COMMIT` and `ROLLBACK` end it;
//! a statement outside one runs in a transaction of its own, committed when
//! it succeeds and rolled back when it fails. Inside a block, a statement
//! that fails is undone alone (a savepoint marks where each began) and the
//! block goes on. Understudy's locking is strict
//! two-phase on pages, so SQL transactions are serializable. A deadlock or
//! lock timeout between two storages on one node comes back as an error
//! (`Error::StorageMsg`) that names it; the transaction may be retried.
//! Store calls made outside any transaction (planning reads schemas before
//! a statement's transaction begins) each run in a short transaction of
//! their own.

mod catalog;
mod conn;
mod error;
mod index;
mod keys;
mod render;
mod scan;

use std::collections::BTreeMap;
use std::path::Path;

use gluesql_core::ast::{IndexOperator, OrderByExpr};
use gluesql_core::data::{CustomFunction as StoredFunction, Key, Schema, Value};
use gluesql_core::error::Result;
use gluesql_core::plan::StatementPlan;
use gluesql_core::planner::{
    fetch_schema_map, plan_aggregate, plan_hash_join, plan_index, plan_primary_key, plan_schemaless, validate,
};
use gluesql_core::store::{
    AlterTable, CustomFunction, CustomFunctionMut, Index, IndexMut, MetaIter, Metadata, Planner, RowIter, Store,
    StoreMut, Transaction,
};
use understudy::Node;

pub use catalog::CATALOG;
/// The GlueSQL this storage is built on, for `Glue`, `Payload` and `Value`.
pub use gluesql_core;
pub use index::INDEXES;
pub use keys::ROWS;
pub use render::render;

use conn::Conn;
use error::{from_engine, storage_msg};
use scan::StoredRow;

/// A GlueSQL storage on an Understudy node; see the crate docs.
pub struct UnderstudyStorage {
    conn: Conn,
    /// Custom functions by upper-case name, as of the transaction running
    /// (or the last one): GlueSQL borrows them from the storage, so they are
    /// read from the catalog when a transaction begins and changed here with
    /// the catalog.
    functions: BTreeMap<String, StoredFunction>,
}

impl UnderstudyStorage {
    /// Opens (or creates) the Understudy database in `dir`
    /// ([`understudy::open`]) as a SQL storage.
    pub fn open(dir: impl AsRef<Path>) -> Result<UnderstudyStorage> {
        let node = understudy::open(dir).map_err(from_engine)?;
        UnderstudyStorage::new(node)
    }

    /// A SQL storage on `node`, creating its two tables if they are not
    /// there. Several storages may share a node (clones of one handle):
    /// each is one connection, with a transaction of its own.
    pub fn new(node: Node) -> Result<UnderstudyStorage> {
        let existing = node.tables().map_err(from_engine)?;
        for name in [CATALOG, ROWS, INDEXES] {
            if !existing.iter().any(|t| t == name) {
                match node.create_ordered_table(name) {
                    // Another storage on the node created it meanwhile.
                    Ok(()) | Err(understudy::Error::TableExists(_)) => {}
                    Err(e) => return Err(from_engine(e)),
                }
            }
        }
        let mut storage = UnderstudyStorage {
            conn: Conn::new(node),
            functions: BTreeMap::new(),
        };
        storage.reload_functions()?;
        Ok(storage)
    }

    /// The node the storage runs on.
    pub fn node(&self) -> &Node {
        &self.conn.node
    }

    /// Whether a transaction is open (a `BEGIN` block, or a statement
    /// running).
    pub fn in_transaction(&self) -> bool {
        self.conn.slot().is_ok_and(|s| s.is_some())
    }

    fn reload_functions(&mut self) -> Result<()> {
        let functions = self.conn.with_txn(catalog::functions)?;
        self.functions = functions.into_iter().map(|f| (f.func_name.to_uppercase(), f)).collect();
        Ok(())
    }

    /// Writes `rows` of `table`, replacing rows of the same keys, and keeps
    /// the table's indexes in step.
    fn put_rows(&mut self, table: &str, rows: impl IntoIterator<Item = (Key, Vec<Value>)>) -> Result<()> {
        self.conn.with_txn(|txn| {
            let indexer = index::Indexer::load(txn, table)?;
            for (key, row) in rows {
                let k = keys::row_key(table, &key)?;
                let entries = match &indexer {
                    Some(ix) => {
                        drop_entries_of(txn, &k)?;
                        let entries = ix.entries(&k, &row)?;
                        index::put_entries(txn, &entries, &key)?;
                        entries
                    }
                    None => Vec::new(),
                };
                let stored = StoredRow { key, row, entries };
                txn.put(ROWS, &k, &catalog::encode(&stored)?).map_err(from_engine)?;
            }
            Ok(())
        })
    }
}

/// Deletes the index entries of the row stored under `k`, if there is one.
fn drop_entries_of(txn: &mut understudy::Transaction, k: &[u8]) -> Result<()> {
    if let Some(old) = txn.get(ROWS, k).map_err(from_engine)? {
        let old: StoredRow = catalog::decode(&old)?;
        index::delete_entries(txn, &old.entries)?;
    }
    Ok(())
}

impl Store for UnderstudyStorage {
    fn fetch_schema(&self, table_name: &str) -> Result<Option<Schema>> {
        self.conn
            .with_txn(|txn| Ok(catalog::table(txn, table_name)?.map(|t| t.schema)))
    }

    fn fetch_all_schemas(&self) -> Result<Vec<Schema>> {
        self.conn
            .with_txn(|txn| Ok(catalog::tables(txn)?.into_iter().map(|t| t.schema).collect()))
    }

    fn fetch_data(&self, table_name: &str, key: &Key) -> Result<Option<Vec<Value>>> {
        let k = keys::row_key(table_name, key)?;
        let for_update = self.conn.writes(table_name)?;
        self.conn.with_txn(|txn| {
            let found = if for_update {
                txn.get_for_update(ROWS, &k)
            } else {
                txn.get(ROWS, &k)
            };
            let Some(v) = found.map_err(from_engine)? else {
                return Ok(None);
            };
            let stored: StoredRow = catalog::decode(&v)?;
            Ok(Some(stored.row))
        })
    }

    fn scan_data<'a>(&'a self, table_name: &str) -> Result<RowIter<'a>> {
        Ok(Box::new(scan::Scan::new(&self.conn, table_name)?))
    }
}

impl StoreMut for UnderstudyStorage {
    fn insert_schema(&mut self, schema: &Schema) -> Result<()> {
        self.conn.with_txn(|txn| catalog::put_table(txn, schema))
    }

    fn delete_schema(&mut self, table_name: &str) -> Result<()> {
        self.conn.with_txn(|txn| {
            catalog::delete_table(txn, table_name)?;
            let prefix = keys::table_prefix(table_name)?;
            scan::delete_prefix(txn, ROWS, prefix.clone())?;
            scan::delete_prefix(txn, INDEXES, prefix)
        })
    }

    fn append_data(&mut self, table_name: &str, rows: Vec<Vec<Value>>) -> Result<()> {
        let rows = rows
            .into_iter()
            .map(|row| Ok((keys::generated_key()?, row)))
            .collect::<Result<Vec<_>>>()?;
        self.put_rows(table_name, rows)
    }

    fn insert_data(&mut self, table_name: &str, rows: Vec<(Key, Vec<Value>)>) -> Result<()> {
        self.put_rows(table_name, rows)
    }

    fn delete_data(&mut self, table_name: &str, keys: Vec<Key>) -> Result<()> {
        self.conn.with_txn(|txn| {
            let indexed = index::Indexer::load(txn, table_name)?.is_some();
            for key in keys {
                let k = keys::row_key(table_name, &key)?;
                if indexed {
                    drop_entries_of(txn, &k)?;
                }
                txn.delete(ROWS, &k).map_err(from_engine)?;
            }
            Ok(())
        })
    }
}

/// A statement inside a `BEGIN` block is atomic: `begin(true)` answers
/// "autocommit" for it, so GlueSQL ends it with `commit` when it succeeds
/// and `rollback` when it fails, and those end the statement (its
/// savepoint released, or rolled back to), not the block. GlueSQL runs
/// `COMMIT` and `ROLLBACK` themselves without a `begin`, so they reach
/// `commit` and `rollback` with no statement running and end the block.
impl Transaction for UnderstudyStorage {
    fn begin(&mut self, autocommit: bool) -> Result<bool> {
        if autocommit {
            self.conn.statement_starts()?;
        } else {
            // `BEGIN`.
            self.conn.statement_ends()?;
        }
        let begun = self.begin_transaction(autocommit);
        if begun.is_err() && autocommit {
            // GlueSQL ends nothing it could not begin.
            self.conn.statement_ends()?;
        }
        begun
    }

    fn rollback(&mut self) -> Result<()> {
        self.conn.statement_ends()?;
        if self.conn.end_statement(true)? {
            // A function the statement created or dropped is undone too.
            return self.reload_functions();
        }
        let Some(txn) = self.conn.take()? else {
            return Ok(());
        };
        txn.rollback().map_err(from_engine)?;
        // Functions created or dropped in the transaction are undone too.
        self.reload_functions()
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.statement_ends()?;
        if self.conn.end_statement(false)? {
            return Ok(());
        }
        let Some(txn) = self.conn.take()? else {
            return Ok(());
        };
        txn.commit().map_err(from_engine)
    }
}

impl UnderstudyStorage {
    /// `begin` itself: a statement's or a block's transaction, or a
    /// statement's savepoint inside a block.
    fn begin_transaction(&mut self, autocommit: bool) -> Result<bool> {
        if self.conn.slot()?.is_some() {
            if autocommit {
                return self.conn.begin_statement();
            }
            return Err(storage_msg(
                "a transaction is already open: nested transactions are not supported".to_owned(),
            ));
        }
        let mut txn = self.conn.node.begin().map_err(from_engine)?;
        let functions = catalog::functions(&mut txn)?;
        self.functions = functions.into_iter().map(|f| (f.func_name.to_uppercase(), f)).collect();
        *self.conn.slot()? = Some(txn);
        Ok(autocommit)
    }
}

impl AlterTable for UnderstudyStorage {}

impl Metadata for UnderstudyStorage {
    fn scan_table_meta(&self) -> Result<MetaIter> {
        let tables = self.conn.with_txn(catalog::tables)?;
        let meta = tables.into_iter().map(|t| {
            let created = BTreeMap::from([("CREATED".to_owned(), Value::Timestamp(t.created))]);
            Ok((t.schema.table_name, created))
        });
        Ok(Box::new(meta.collect::<Vec<_>>().into_iter()))
    }
}

impl CustomFunction for UnderstudyStorage {
    fn fetch_function<'a>(&'a self, func_name: &str) -> Result<Option<&'a StoredFunction>> {
        Ok(self.functions.get(&func_name.to_uppercase()))
    }

    fn fetch_all_functions(&self) -> Result<Vec<&StoredFunction>> {
        Ok(self.functions.values().collect())
    }
}

impl CustomFunctionMut for UnderstudyStorage {
    fn insert_function(&mut self, func: StoredFunction) -> Result<()> {
        self.conn.with_txn(|txn| catalog::put_function(txn, &func))?;
        self.functions.insert(func.func_name.to_uppercase(), func);
        Ok(())
    }

    fn delete_function(&mut self, func_name: &str) -> Result<()> {
        self.conn.with_txn(|txn| catalog::delete_function(txn, func_name))?;
        self.functions.remove(&func_name.to_uppercase());
        Ok(())
    }
}

impl Index for UnderstudyStorage {
    fn scan_indexed_data<'a>(
        &'a self,
        table_name: &str,
        index_name: &str,
        asc: Option<bool>,
        cmp_value: Option<(&IndexOperator, Value)>,
    ) -> Result<RowIter<'a>> {
        let rows = self
            .conn
            .with_txn(|txn| index::scan(txn, table_name, index_name, asc, cmp_value))?;
        Ok(Box::new(rows.into_iter().map(Ok)))
    }
}

impl IndexMut for UnderstudyStorage {
    fn create_index(&mut self, table_name: &str, index_name: &str, column: &OrderByExpr) -> Result<()> {
        self.conn
            .with_txn(|txn| index::create(txn, table_name, index_name, column))
    }

    fn drop_index(&mut self, table_name: &str, index_name: &str) -> Result<()> {
        self.conn.with_txn(|txn| index::drop(txn, table_name, index_name))
    }
}
/// GlueSQL's default plan, with index scans planned where an index fits.
/// Planning is also where the storage learns which table a statement
/// writes, so its reads of that table lock for update (`Conn::will_write`).
impl Planner for UnderstudyStorage {
    fn plan(&self, statement: StatementPlan) -> Result<StatementPlan> {
        let writes = match &statement {
            StatementPlan::Insert { table_name, .. }
            | StatementPlan::Update { table_name, .. }
            | StatementPlan::Delete { table_name, .. } => Some(table_name.clone()),
            _ => None,
        };
        self.conn.planned(writes)?;
        let schema_map = fetch_schema_map(self, &statement)?;
        validate(&schema_map, &statement)?;
        let statement = plan_schemaless(&schema_map, statement)?;
        let statement = plan_primary_key(&schema_map, statement);
        let statement = plan_index(&schema_map, statement);
        let statement = plan_hash_join(&schema_map, statement);
        Ok(plan_aggregate(statement))
    }
}
