//! The catalog: one Understudy ordered table holding each SQL table's
//! schema (key `t` + name) and each custom function (key `f` + its name in
//! upper case), serialized with bincode. Being rows, they change inside the
//! SQL transaction like any row: a `CREATE TABLE` rolled back is gone.

use gluesql_core::chrono::{NaiveDateTime, Utc};
use gluesql_core::data::{CustomFunction, Schema};
use gluesql_core::error::Result;
use serde::{Deserialize, Serialize};
use understudy::Transaction;

use crate::error::{from_engine, storage_msg};

/// The Understudy ordered table of the catalog.
pub const CATALOG: &str = "sql.catalog";

const TABLE: u8 = b't';
const FUNCTION: u8 = b'f';

/// A table's catalog row.
#[derive(Serialize, Deserialize)]
pub(crate) struct TableEntry {
    /// When the table was created (kept across `ALTER TABLE`).
    pub(crate) created: NaiveDateTime,
    pub(crate) schema: Schema,
}

fn table_key(name: &str) -> Vec<u8> {
    let mut k = vec![TABLE];
    k.extend_from_slice(name.as_bytes());
    k
}

fn function_key(name: &str) -> Vec<u8> {
    let mut k = vec![FUNCTION];
    k.extend_from_slice(name.to_uppercase().as_bytes());
    k
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    bincode::serialize(v).map_err(|e| storage_msg(format!("cannot serialize: {e}")))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| storage_msg(format!("cannot deserialize a stored value: {e}")))
}

pub(crate) fn table(txn: &mut Transaction, name: &str) -> Result<Option<TableEntry>> {
    let key = table_key(name);
    if key.len() > understudy::MAX_KEY {
        return Ok(None);
    }
    txn.get(CATALOG, &key)
        .map_err(from_engine)?
        .map(|v| decode(&v))
        .transpose()
}

/// Every table's entry, in name order.
pub(crate) fn tables(txn: &mut Transaction) -> Result<Vec<TableEntry>> {
    let rows = txn.prefix(CATALOG, &[TABLE]).map_err(from_engine)?;
    rows.map(|row| decode(&row.map_err(from_engine)?.1)).collect()
}

/// Writes `schema`, keeping the creation time of the table it replaces.
pub(crate) fn put_table(txn: &mut Transaction, schema: &Schema) -> Result<()> {
    let key = table_key(&schema.table_name);
    if key.len() > understudy::MAX_KEY {
        return Err(storage_msg(format!(
            "a table name of {} bytes is too long; at most {} fit",
            schema.table_name.len(),
            understudy::MAX_KEY - 1
        )));
    }
    let created = table(txn, &schema.table_name)?.map_or_else(|| Utc::now().naive_utc(), |t| t.created);
    let entry = TableEntry {
        created,
        schema: schema.clone(),
    };
    txn.put(CATALOG, &key, &encode(&entry)?).map_err(from_engine)
}

pub(crate) fn delete_table(txn: &mut Transaction, name: &str) -> Result<()> {
    let key = table_key(name);
    if key.len() <= understudy::MAX_KEY {
        txn.delete(CATALOG, &key).map_err(from_engine)?;
    }
    Ok(())
}

/// Every custom function.
pub(crate) fn functions(txn: &mut Transaction) -> Result<Vec<CustomFunction>> {
    let rows = txn.prefix(CATALOG, &[FUNCTION]).map_err(from_engine)?;
    rows.map(|row| decode(&row.map_err(from_engine)?.1)).collect()
}

pub(crate) fn put_function(txn: &mut Transaction, func: &CustomFunction) -> Result<()> {
    let key = function_key(&func.func_name);
    if key.len() > understudy::MAX_KEY {
        return Err(storage_msg(format!(
            "a function name of {} bytes is too long",
            func.func_name.len()
        )));
    }
    txn.put(CATALOG, &key, &encode(func)?).map_err(from_engine)
}

pub(crate) fn delete_function(txn: &mut Transaction, name: &str) -> Result<()> {
    let key = function_key(name);
    if key.len() <= understudy::MAX_KEY {
        txn.delete(CATALOG, &key).map_err(from_engine)?;
    }
    Ok(())
}
