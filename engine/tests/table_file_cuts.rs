//! A table file cut at any byte, against the rows acknowledged into it.
//!
//! A node commits rows into a hash table (few buckets, so values chain into
//! overflow pages) and an ordered table (large values, so the B+tree splits
//! and spills into value pages), deletes some of them again (freeing
//! pages), writing down each commit that returned `Ok`, and leaves cleanly. One of the two table files is then cut at an
//! arbitrary length — a page boundary or inside a page, from nothing to one
//! byte short. Reopening the node and reading every acknowledged row (by
//! key in the hash table, deleted keys too, by a full scan in the ordered
//! one, so a row gone from the scan is seen too) must end in a typed error about the data
//! file, or in exactly the acknowledged rows: never a row missing or read
//! as empty, never a panic or an untyped I/O error.
//!
//! The bug it guards: a file cut at a page boundary was read as empty pages
//! past its end, and the rows there vanished without an error.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use understudy::{Error, Node, NodeOptions};

const PAGE: u64 = 4096;

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    }
}

fn key(i: u16) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

/// Row `i`'s value, `len` bytes.
fn value(i: u16, len: usize) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
    v
}

/// Every acknowledged row of both tables: `h` by key, `o` by a full scan.
type Rows = (BTreeMap<Vec<u8>, Vec<u8>>, BTreeMap<Vec<u8>, Vec<u8>>);

/// A row: its hash table value's length, its ordered table value's
/// length, and whether a later transaction deletes it again.
type Row = (usize, usize, bool);

/// Node 1 of the cluster in `dir` commits `rows` into both tables (in
/// transactions of `per_txn` rows), then deletes those marked so (freeing
/// pages: a cut may then fall among pages no row needs), and leaves.
/// Returns the acknowledged rows: as every commit that returned `Ok` left
/// them.
fn fill(dir: &Path, rows: &[Row], per_txn: usize) -> BTreeMap<Vec<u8>, (Vec<u8>, Vec<u8>)> {
    let node = Node::open(dir, 1, opts()).unwrap();
    node.create_table("h", 2).unwrap();
    node.create_ordered_table("o").unwrap();
    let mut acked = BTreeMap::new();
    let numbered: Vec<(u16, &Row)> = rows.iter().enumerate().map(|(i, r)| (i as u16, r)).collect();
    for chunk in numbered.chunks(per_txn) {
        let mut t = node.begin().unwrap();
        let mut written = Vec::new();
        for &(i, &(hlen, olen, _)) in chunk {
            let (hv, ov) = (value(i, hlen), value(i, olen));
            t.put("h", &key(i), &hv).unwrap();
            t.put("o", &key(i), &ov).unwrap();
            written.push((key(i), (hv, ov)));
        }
        // Acknowledged only once commit returned Ok.
        if t.commit().is_ok() {
            acked.extend(written);
        }
    }
    for chunk in numbered.chunks(per_txn) {
        let gone: Vec<Vec<u8>> = chunk.iter().filter(|(_, r)| r.2).map(|&(i, _)| key(i)).collect();
        let mut t = node.begin().unwrap();
        for k in &gone {
            t.delete("h", k).unwrap();
            t.delete("o", k).unwrap();
        }
        if t.commit().is_ok() {
            for k in &gone {
                acked.remove(k);
            }
        }
    }
    node.close().unwrap();
    acked
}

/// Both tables as node 1 reads them after reopening.
fn reopen_and_read(dir: &Path, keys: impl Iterator<Item = Vec<u8>>) -> Result<Rows, Error> {
    let node = Node::open(dir, 1, opts())?;
    let mut t = node.begin()?;
    let mut h = BTreeMap::new();
    for k in keys {
        if let Some(v) = t.get("h", &k)? {
            h.insert(k, v);
        }
    }
    let mut o = BTreeMap::new();
    for row in t.iter("o")? {
        let (k, v) = row?;
        o.insert(k, v);
    }
    t.rollback()?;
    node.close()?;
    Ok((h, o))
}

/// Whether `e` is a typed error about a damaged data file.
fn is_data_file_error(e: &Error) -> bool {
    matches!(
        e,
        Error::TableFileTruncated { .. }
            | Error::MissingPage { .. }
            | Error::CorruptPage { .. }
            | Error::CorruptFile { .. }
            | Error::TableFileMismatch { .. }
            | Error::PageOutOfRange { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_table_file_cut_at_any_length_ends_in_a_typed_error_or_every_acknowledged_row(
        rows in prop::collection::vec((1usize..1500, 1usize..9000, prop::bool::weighted(0.3)), 1..60),
        per_txn in 1usize..8,
        ordered in any::<bool>(),
        // Inside a page, or (as often) at a page boundary: the cut the
        // file's pages alone cannot tell from a shorter table.
        cut in prop_oneof![
            any::<prop::sample::Index>().prop_map(|i| (i, false)),
            any::<prop::sample::Index>().prop_map(|i| (i, true)),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (_, _coordinator) = common::cluster_with_coordinator(dir.path(), &[1]);
        let acked = fill(dir.path(), &rows, per_txn);
        // The hash table was created first: t-1; the ordered one t-2.
        let file = dir.path().join(if ordered { "data/t-2.tbl" } else { "data/t-1.tbl" });
        let len = std::fs::metadata(&file).unwrap().len();
        let (at, boundary) = cut;
        let to = if boundary {
            at.index((len / PAGE) as usize) as u64 * PAGE
        } else {
            at.index(len as usize) as u64
        };
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(to).unwrap();

        let expected: Rows = (
            acked.iter().map(|(k, (h, _))| (k.clone(), h.clone())).collect(),
            acked.iter().map(|(k, (_, o))| (k.clone(), o.clone())).collect(),
        );
        match reopen_and_read(dir.path(), (0..rows.len() as u16).map(key)) {
            Ok(read) => prop_assert!(
                read == expected,
                "{} cut from {len} to {to} bytes: a reopen that succeeded lost or changed acknowledged rows",
                file.display()
            ),
            Err(e) => prop_assert!(
                is_data_file_error(&e),
                "{} cut from {len} to {to} bytes: untyped error {e:?}",
                file.display()
            ),
        }
    }
}
