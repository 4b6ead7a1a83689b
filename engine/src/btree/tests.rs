//! The tree alone, in a store in memory, against `BTreeMap`: puts,
//! deletes, point reads and scans both ways, with the whole-tree check
//! after every batch.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;

use super::check::check;
use super::cursor::{Backward, Forward};
use super::*;
use crate::store::tests::MemStore;

fn tree(page_size: usize) -> MemStore {
    let mut s = MemStore::with_header(page_size);
    s.change(ROOT, init_root).unwrap();
    s
}

fn scan(s: &mut MemStore, start: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = Forward::seek(s, start, crate::store::Access::Read).unwrap();
    let mut out = Vec::new();
    while let Some((k, v)) = c.next(s).unwrap() {
        out.push((k, v.resolve(s).unwrap()));
    }
    out
}

fn scan_back(s: &mut MemStore, end: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = Backward::seek(s, end, crate::store::Access::Read).unwrap();
    let mut out = Vec::new();
    while let Some((k, v)) = c.prev(s).unwrap() {
        out.push((k, v.resolve(s).unwrap()));
    }
    out
}

#[test]
fn in_order_and_reverse_loads_split_and_deletes_merge_back_to_one_leaf() {
    let mut s = tree(4096);
    let key = |i: u32| format!("key-{i:08}").into_bytes();
    for i in 0..20_000 {
        put(&mut s, &key(i), &[i as u8; 40]).unwrap();
    }
    let sum = check(&mut s, true).unwrap();
    assert_eq!(sum.keys, 20_000);
    assert!(sum.height >= 3, "{sum:?}");
    // In order, leaves are filled: about 60 items of 56 bytes in 4 KiB.
    assert!(sum.leaves < 20_000 / 55, "{sum:?}");
    for i in (0..20_000).rev() {
        assert!(delete(&mut s, &key(i)).unwrap());
        if i % 5_000 == 0 {
            check(&mut s, false).unwrap();
        }
    }
    let sum = check(&mut s, false).unwrap();
    assert_eq!((sum.keys, sum.leaves, sum.height), (0, 1, 1), "{sum:?}");
    assert_eq!(
        sum.free_pages + 2,
        sum.page_count,
        "every page but header and root is free"
    );
    // Loading again takes the freed pages: the file does not grow.
    for i in 0..20_000 {
        put(&mut s, &key(i), &[1; 40]).unwrap();
    }
    let again = check(&mut s, false).unwrap();
    assert_eq!(again.page_count, sum.page_count);
    // In reverse order, each split leaves half a leaf behind.
    for i in (0..20_000).rev() {
        assert!(delete(&mut s, &key(i)).unwrap());
    }
    for i in (0..20_000).rev() {
        put(&mut s, &key(i), &[1; 40]).unwrap();
    }
    let reverse = check(&mut s, true).unwrap();
    assert_eq!(reverse.keys, 20_000);
    assert!(reverse.leaves < 2 * again.leaves + 2, "{reverse:?}");
}

#[test]
fn large_values_and_long_keys_live_beside_small_ones() {
    let mut s = tree(4096);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    put(&mut s, b"big", &big).unwrap();
    put(&mut s, &[b'k'; crate::page::MAX_KEY], b"long key").unwrap();
    put(&mut s, b"edge", &vec![3; node::max_item(4096) - 2 - 6 - 4]).unwrap();
    put(&mut s, b"over", &vec![4; node::max_item(4096) - 2 - 6 - 4 + 1]).unwrap();
    assert_eq!(get(&mut s, b"big").unwrap(), Some(big.clone()));
    let sum = check(&mut s, true).unwrap();
    assert_eq!((sum.keys, sum.large_values), (4, 2), "{sum:?}");
    // Replacing a large value by a small one frees its pages.
    put(&mut s, b"big", b"small").unwrap();
    delete(&mut s, b"over").unwrap();
    let sum = check(&mut s, true).unwrap();
    assert_eq!((sum.large_values, sum.value_pages), (0, 0));
    assert!(sum.free_pages > 70, "{sum:?}");
}

#[derive(Clone, Debug)]
enum Op {
    Put(u16, usize),
    Delete(u16),
    Get(u16),
    Scan(Option<u16>, Option<u16>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..600u16, prop_oneof![4 => 0..200usize, 1 => 200..1500usize, 1 => 1500..20_000usize]).prop_map(|(k, l)| Op::Put(k, l)),
        3 => (0..600u16).prop_map(Op::Delete),
        1 => (0..600u16).prop_map(Op::Get),
        1 => (proptest::option::of(0..600u16), proptest::option::of(0..600u16)).prop_map(|(a, b)| Op::Scan(a, b)),
    ]
}

fn k(i: u16) -> Vec<u8> {
    // Keys of several lengths, sharing prefixes: separators get shortened.
    format!("{}{i:05}", "p".repeat(usize::from(i % 7) * 9)).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn the_tree_behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 1..400)) {
        let mut s = tree(4096);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(i, len) => {
                    let v: Vec<u8> = (0..len).map(|b| (b as u8) ^ (i as u8) ^ (n as u8)).collect();
                    put(&mut s, &k(i), &v).unwrap();
                    model.insert(k(i), v);
                }
                Op::Delete(i) => prop_assert_eq!(delete(&mut s, &k(i)).unwrap(), model.remove(&k(i)).is_some()),
                Op::Get(i) => prop_assert_eq!(get(&mut s, &k(i)).unwrap(), model.get(&k(i)).cloned()),
                Op::Scan(a, b) => {
                    let (a, b) = (a.map(k), b.map(k));
                    let lo = a.as_deref().map_or(Bound::Unbounded, Bound::Included);
                    let hi = b.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                    let want: Vec<_> = model.iter().filter(|(key, _)| {
                        a.as_ref().is_none_or(|a| *key >= a) && b.as_ref().is_none_or(|b| *key < b)
                    }).map(|(k, v)| (k.clone(), v.clone())).collect();
                    let got: Vec<_> = scan(&mut s, lo).into_iter().filter(|(key, _)| b.as_ref().is_none_or(|b| key < b)).collect();
                    prop_assert_eq!(&got, &want);
                    let mut back: Vec<_> = scan_back(&mut s, hi).into_iter().filter(|(key, _)| a.as_ref().is_none_or(|a| key >= a)).collect();
                    back.reverse();
                    prop_assert_eq!(&back, &want);
                }
            }
        }
        let sum = check(&mut s, true).unwrap();
        prop_assert_eq!(sum.keys, model.len() as u64);
        prop_assert_eq!(scan(&mut s, Bound::Unbounded), model.into_iter().collect::<Vec<_>>());
    }
}

/// A merge whose locks are busy is skipped, leaving a valid tree that a
/// later delete merges.
#[test]
fn a_merge_with_busy_locks_is_skipped() {
    let mut s = tree(4096);
    for i in 0..2_000u32 {
        put(&mut s, format!("{i:06}").as_bytes(), &[0; 50]).unwrap();
    }
    let leaves = check(&mut s, false).unwrap().leaves;
    s.busy = (0..s.pages.len() as u64).collect();
    for i in 0..1_900u32 {
        delete(&mut s, format!("{i:06}").as_bytes()).unwrap();
    }
    assert_eq!(check(&mut s, false).unwrap().leaves, leaves, "nothing merged");
    s.busy.clear();
    for i in 1_900..2_000u32 {
        delete(&mut s, format!("{i:06}").as_bytes()).unwrap();
    }
    let sum = check(&mut s, false).unwrap();
    assert_eq!(sum.keys, 0);
    assert!(sum.leaves < leaves / 2, "{sum:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The node decoder (the fuzz target's, `admin::decode_node`) on real
    /// leaves and branches with bytes overwritten: it accepts or refuses,
    /// never panics, and what it accepts reads within its page.
    #[test]
    fn damaged_nodes_are_refused_or_read_in_bounds(
        damage in proptest::collection::vec((0..4096usize, any::<u8>()), 1..8),
        keys in 200..1500u32,
    ) {
        let mut s = tree(4096);
        for i in 0..keys {
            put(&mut s, format!("{:08}", i.wrapping_mul(2_654_435_761)).as_bytes(), &[1; 30]).unwrap();
        }
        for page in &s.pages[1..] {
            let mut image = page.bytes().to_vec();
            prop_assert!(crate::admin::decode_node(&image).is_ok() || page.kind() == crate::page::Kind::Unwritten);
            for &(at, byte) in &damage {
                image[at] = byte;
            }
            let _ = crate::admin::decode_node(&image);
        }
    }
}
