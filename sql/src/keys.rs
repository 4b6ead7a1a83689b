//! Row keys in the rows table: the SQL table's name, then the row's key,
//! encoded so that byte order is the key's SQL order within a table.
//!
//! A row key is `len(name)` as two bytes big-endian, the name's bytes, then
//! the encoded [`Key`]. The length in front keeps one table's keys from
//! being a prefix of another's (`"a"` and `"ab"`), so a table's rows are
//! exactly the keys under its prefix.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use gluesql_core::data::Key;
use gluesql_core::error::{Error, Result};

use crate::error::storage_msg;

/// The Understudy ordered table of every SQL table's rows.
pub const ROWS: &str = "sql.rows";

/// The key bytes every row of `table` begins with.
pub(crate) fn table_prefix(table: &str) -> Result<Vec<u8>> {
    let len = u16::try_from(table.len())
        .map_err(|_| storage_msg(format!("table name of {} bytes is too long", table.len())))?;
    let mut out = Vec::with_capacity(2 + table.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(table.as_bytes());
    Ok(out)
}

/// The row key of `key` in `table`, refused when it would not fit an
/// Understudy key ([`understudy::MAX_KEY`]).
pub(crate) fn row_key(table: &str, key: &Key) -> Result<Vec<u8>> {
    let mut out = table_prefix(table)?;
    encode_key(key, &mut out)?;
    if out.len() > understudy::MAX_KEY {
        return Err(storage_msg(format!(
            "the primary key of a row of table {table:?} takes {} bytes; at most {} fit (table name included)",
            out.len(),
            understudy::MAX_KEY
        )));
    }
    Ok(out)
}

/// Appends `key`'s order-preserving encoding. GlueSQL's own
/// (`Key::to_cmp_be_bytes`) covers every kind but floats; floats get the
/// usual one here: the sign bit flipped for positives, every bit for
/// negatives, so unsigned byte order is numeric order.
pub(crate) fn encode_key(key: &Key, out: &mut Vec<u8>) -> Result<()> {
    match key {
        Key::F32(v) => {
            out.push(0);
            out.extend_from_slice(&float_bits(f64::from(v.0)).to_be_bytes());
        }
        Key::F64(v) => {
            out.push(0);
            out.extend_from_slice(&float_bits(v.0).to_be_bytes());
        }
        other => out.extend_from_slice(&other.to_cmp_be_bytes()?),
    }
    Ok(())
}

/// `v`'s bits arranged so that unsigned order is GlueSQL's float key order
/// (`OrderedFloat`): `-0.0` equals `0.0`, and every NaN is one value above
/// all numbers.
fn float_bits(v: f64) -> u64 {
    const SIGN: u64 = 1 << 63;
    let v = if v.is_nan() {
        f64::NAN
    } else if v == 0.0 {
        0.0
    } else {
        v
    };
    let bits = v.to_bits();
    if bits & SIGN == 0 {
        bits | SIGN
    } else {
        !bits
    }
}

/// The first key past every key that begins with `prefix`; `None` when
/// there is none (the prefix is all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=keep].to_vec();
    end[keep] += 1;
    Some(end)
}

/// The last generated key handed out in this process.
static LAST_GENERATED: Mutex<u128> = Mutex::new(0);

/// A key for a row of a table without a primary key: the wall clock in
/// nanoseconds, raised past the last one this process gave, so rows come
/// back in the order they were inserted. Keys from a process that ran
/// earlier are smaller as long as the clock did not go back between the two.
pub(crate) fn generated_key() -> Result<Key> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut last = LAST_GENERATED
        .lock()
        .map_err(|_| Error::StorageMsg("the key generator's lock is poisoned".to_owned()))?;
    *last = now.max(*last + 1);
    Ok(Key::Uuid(*last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gluesql_core::data::Key;

    fn encoded(k: &Key) -> Vec<u8> {
        row_key("t", k).unwrap()
    }

    #[test]
    fn byte_order_is_key_order() {
        let ints = [i64::MIN, -300, -1, 0, 1, 255, 256, i64::MAX].map(Key::I64);
        let floats = [f64::NEG_INFINITY, -2.5, -0.0, 1e-300, 3.0, f64::INFINITY, f64::NAN].map(|f| Key::F64(f.into()));
        let strs = ["", "a", "ab", "b"].map(|s| Key::Str(s.to_owned()));
        for keys in [&ints[..], &floats[..], &strs[..]] {
            for w in keys.windows(2) {
                assert!(encoded(&w[0]) < encoded(&w[1]), "{:?} < {:?}", w[0], w[1]);
            }
        }
        assert_eq!(encoded(&Key::F64((-0.0).into())), encoded(&Key::F64(0.0.into())));
    }

    #[test]
    fn tables_do_not_share_prefixes() {
        let a = row_key("a", &Key::Str("b".to_owned())).unwrap();
        let ab = table_prefix("ab").unwrap();
        assert!(!a.starts_with(&ab));
    }

    #[test]
    fn too_long_keys_are_errors() {
        let long = Key::Str("x".repeat(understudy::MAX_KEY));
        assert!(matches!(row_key("t", &long), Err(Error::StorageMsg(_))));
    }

    #[test]
    fn generated_keys_increase() {
        let a = generated_key().unwrap();
        let b = generated_key().unwrap();
        assert!(encoded(&a) < encoded(&b));
    }
}
