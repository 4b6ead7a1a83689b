//! Secondary indexes: one entry per row and index in the Understudy ordered
//! table `sql.indexes`.
//!
//! An entry's key is the table's prefix (`crate::keys`), the index name
//! (2-byte length first), the indexed value's order-preserving encoding,
//! escaped and terminated so that no value's bytes are a prefix of
//! another's, then the row's key; its value is the row's [`Key`]. Entries
//! of one value are thus one prefix, and entries come in value order, then
//! row-key order.
//!
//! Each stored row lists the keys of its own entries (`StoredRow`), so a
//! row's old entries are found without evaluating the index expressions
//! again, which after an `ALTER TABLE` may no longer fit the old row.

use gluesql_core::ast::{IndexOperator, OrderByExpr};
use gluesql_core::chrono::Utc;
use gluesql_core::data::{Key, Schema, SchemaIndex, SchemaIndexOrd, Value};
use gluesql_core::error::{IndexError, Result};
use gluesql_core::executor::{evaluate_stateless, RowContext};
use gluesql_core::plan::{plan_scalar_expr, ExprPlan};
use understudy::Transaction;

use crate::catalog;
use crate::error::{from_engine, storage_msg};
use crate::keys::{encode_key, prefix_end, table_prefix, ROWS};
use crate::scan::{delete_prefix, rows_in, StoredRow};

/// The Understudy ordered table of the index entries.
pub const INDEXES: &str = "sql.indexes";

/// The key bytes every entry of index `index` on `table` begins with.
pub(crate) fn index_prefix(table: &str, index: &str) -> Result<Vec<u8>> {
    let mut out = table_prefix(table)?;
    let len = u16::try_from(index.len())
        .map_err(|_| storage_msg(format!("index name of {} bytes is too long", index.len())))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(index.as_bytes());
    Ok(out)
}

/// The key bytes every entry of `value` in the index of `prefix` begins
/// with. A zero byte of the encoding becomes `00 ff` and the end is `00 01`:
/// order is kept, and the end is no prefix of a longer value's bytes.
fn value_prefix(prefix: &[u8], value: &Value) -> Result<Vec<u8>> {
    let mut encoded = Vec::new();
    encode_key(&Key::try_from(value)?, &mut encoded)?;
    let mut out = prefix.to_vec();
    for b in encoded {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 1]);
    Ok(out)
}

/// The indexes of one table, ready to give a row's entries.
pub(crate) struct Indexer {
    table: String,
    columns: Vec<String>,
    indexes: Vec<(Vec<u8>, ExprPlan)>,
}

impl Indexer {
    /// `schema`'s indexes; `None` when it has none.
    pub(crate) fn new(schema: &Schema) -> Result<Option<Indexer>> {
        if schema.indexes.is_empty() {
            return Ok(None);
        }
        let columns = schema.column_defs.iter().flatten().map(|c| c.name.clone()).collect();
        let indexes = schema
            .indexes
            .iter()
            .map(|i| {
                Ok((
                    index_prefix(&schema.table_name, &i.name)?,
                    plan_scalar_expr(i.expr.clone()),
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Some(Indexer {
            table: schema.table_name.clone(),
            columns,
            indexes,
        }))
    }

    /// The indexer of table `table` as the transaction sees it.
    pub(crate) fn load(txn: &mut Transaction, table: &str) -> Result<Option<Indexer>> {
        match catalog::table(txn, table)? {
            Some(entry) => Indexer::new(&entry.schema),
            None => Ok(None),
        }
    }

    /// The entry keys of `row` (stored under `row_key`).
    pub(crate) fn entries(&self, row_key: &[u8], row: &[Value]) -> Result<Vec<Vec<u8>>> {
        self.indexes
            .iter()
            .map(|(prefix, expr)| entry_key(&self.table, &self.columns, prefix, expr, row_key, row))
            .collect()
    }
}

fn entry_key(
    table: &str,
    columns: &[String],
    prefix: &[u8],
    expr: &ExprPlan,
    row_key: &[u8],
    row: &[Value],
) -> Result<Vec<u8>> {
    let context = RowContext::RefVecData { columns, values: row };
    let value: Value = evaluate_stateless(Some(context), expr)?.try_into()?;
    let mut key = value_prefix(prefix, &value)?;
    // The row key's table prefix is already in front; its own bytes follow.
    let own = row_key
        .get(table_prefix(table)?.len()..)
        .ok_or_else(|| storage_msg(format!("a row key of table {table:?} lacks the table's prefix")))?;
    key.extend_from_slice(own);
    if key.len() > understudy::MAX_KEY {
        return Err(storage_msg(format!(
            "an index entry of table {table:?} takes {} bytes; at most {} fit",
            key.len(),
            understudy::MAX_KEY
        )));
    }
    Ok(key)
}

/// Writes `entries`, each pointing at the row of `key`.
pub(crate) fn put_entries(txn: &mut Transaction, entries: &[Vec<u8>], key: &Key) -> Result<()> {
    let value = catalog::encode(key)?;
    for e in entries {
        txn.put(INDEXES, e, &value).map_err(from_engine)?;
    }
    Ok(())
}

pub(crate) fn delete_entries(txn: &mut Transaction, entries: &[Vec<u8>]) -> Result<()> {
    for e in entries {
        txn.delete(INDEXES, e).map_err(from_engine)?;
    }
    Ok(())
}

/// Adds index `name` on `column` to `table` and gives every row its entry.
pub(crate) fn create(txn: &mut Transaction, table: &str, name: &str, column: &OrderByExpr) -> Result<()> {
    let mut schema = catalog::table(txn, table)?
        .ok_or_else(|| IndexError::TableNotFound(table.to_owned()))?
        .schema;
    if schema.indexes.iter().any(|i| i.name == name) {
        return Err(IndexError::IndexNameAlreadyExists(name.to_owned()).into());
    }
    let index = SchemaIndex {
        name: name.to_owned(),
        expr: column.expr.clone(),
        order: SchemaIndexOrd::Both,
        created: Utc::now().naive_utc(),
    };
    let only_new = Schema {
        indexes: vec![index.clone()],
        ..schema.clone()
    };
    let indexer = Indexer::new(&only_new)?.ok_or_else(|| storage_msg("no index to build".to_owned()))?;
    let rows = rows_in(txn, ROWS, table_prefix(table)?)?;
    for (k, v) in rows {
        let mut stored: StoredRow = catalog::decode(&v)?;
        let new = indexer.entries(&k, &stored.row)?;
        put_entries(txn, &new, &stored.key)?;
        stored.entries.extend(new);
        txn.put(ROWS, &k, &catalog::encode(&stored)?).map_err(from_engine)?;
    }
    schema.indexes.push(index);
    catalog::put_table(txn, &schema)
}

/// Drops index `name` of `table` with its entries. Rows keep the entry
/// keys in their lists; deleting an entry that is gone does nothing.
pub(crate) fn drop(txn: &mut Transaction, table: &str, name: &str) -> Result<()> {
    let mut schema = catalog::table(txn, table)?
        .ok_or_else(|| IndexError::TableNotFound(table.to_owned()))?
        .schema;
    let before = schema.indexes.len();
    schema.indexes.retain(|i| i.name != name);
    if schema.indexes.len() == before {
        return Err(IndexError::IndexNameDoesNotExist(name.to_owned()).into());
    }
    catalog::put_table(txn, &schema)?;
    delete_prefix(txn, INDEXES, index_prefix(table, name)?)
}

/// The rows of `table` whose value in index `index` stands in relation
/// `cmp` to a value (all rows when `None`), in index order, reversed when
/// `asc` is `Some(false)`.
pub(crate) fn scan(
    txn: &mut Transaction,
    table: &str,
    index: &str,
    asc: Option<bool>,
    cmp: Option<(&IndexOperator, Value)>,
) -> Result<Vec<(Key, Vec<Value>)>> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let prefix = index_prefix(table, index)?;
    let end = || prefix_end(&prefix).map_or(Unbounded, Excluded);
    let after = |p: &[u8]| prefix_end(p).map_or(Unbounded, Excluded);
    let range = match cmp {
        None => (Included(prefix.clone()), end()),
        Some((op, value)) => {
            let v = value_prefix(&prefix, &value)?;
            match op {
                IndexOperator::Eq => (Included(v.clone()), after(&v)),
                IndexOperator::Gt => (prefix_end(&v).map_or(Unbounded, Included), end()),
                IndexOperator::GtEq => (Included(v), end()),
                IndexOperator::Lt => (Included(prefix.clone()), Excluded(v)),
                IndexOperator::LtEq => (Included(prefix.clone()), after(&v)),
            }
        }
    };
    if matches!(range.0, Unbounded) {
        return Ok(Vec::new());
    }
    let mut keys = txn
        .range(INDEXES, range)
        .map_err(from_engine)?
        .map(|entry| catalog::decode::<Key>(&entry.map_err(from_engine)?.1))
        .collect::<Result<Vec<_>>>()?;
    if asc == Some(false) {
        keys.reverse();
    }
    keys.into_iter()
        .map(|key| {
            let k = crate::keys::row_key(table, &key)?;
            let v = txn
                .get(ROWS, &k)
                .map_err(from_engine)?
                .ok_or(IndexError::ConflictOnEmptyIndexValueScan)?;
            let stored: StoredRow = catalog::decode(&v)?;
            Ok((stored.key, stored.row))
        })
        .collect()
}
