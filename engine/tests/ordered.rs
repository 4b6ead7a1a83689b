//! Ordered tables through the API: ranges, prefixes, first/last and counts
//! both ways; a 64 MiB value; serializable scans (no phantoms); writers on
//! several threads; bad input refused with typed errors.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use understudy::{admin, Cluster, Error, Node, NodeOptions};

fn node(dir: &Path, lock_wait: Duration) -> Node {
    let ep = format!("unix:{}", dir.join("c.sock").display());
    Cluster::create(dir, &[1], ep.parse().unwrap(), 4096).unwrap();
    let opts = NodeOptions {
        embed_coordinator: true,
        lock_wait,
        ..NodeOptions::default()
    };
    Node::open(dir, 1, opts).unwrap()
}

fn k(prefix: &str, i: u32) -> Vec<u8> {
    format!("{prefix}:{i:05}").into_bytes()
}

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn collect(rows: impl Iterator<Item = understudy::Result<(Vec<u8>, Vec<u8>)>>) -> Rows {
    rows.collect::<Result<_, _>>().unwrap()
}

#[test]
fn ranges_prefixes_first_last_and_counts_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(2));
    node.create_ordered_table("t").unwrap();
    let mut model = BTreeMap::new();
    let mut t = node.begin().unwrap();
    assert!(t.is_empty("t").unwrap());
    assert_eq!(t.first("t").unwrap(), None);
    for i in (0..3000).rev() {
        for p in ["order", "user"] {
            let v = format!("{p}-{i}").into_bytes();
            t.put("t", &k(p, i), &v).unwrap();
            model.insert(k(p, i), v);
        }
    }
    t.commit().unwrap();

    let mut t = node.begin().unwrap();
    assert_eq!(t.len("t").unwrap(), 6000);
    let all: Rows = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(collect(t.iter("t").unwrap()), all);
    let mut back = collect(t.iter("t").unwrap().rev());
    back.reverse();
    assert_eq!(back, all);
    let users: Rows = all.iter().filter(|(k, _)| k.starts_with(b"user:")).cloned().collect();
    assert_eq!(collect(t.prefix("t", b"user:").unwrap()), users);
    assert_eq!(t.first("t").unwrap(), all.first().cloned());
    assert_eq!(t.last("t").unwrap(), all.last().cloned());

    let (lo, hi) = (k("order", 100), k("order", 2100));
    let want: Rows = model
        .range::<[u8], _>((Bound::Excluded(lo.as_slice()), Bound::Included(hi.as_slice())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let got = collect(
        t.range::<&[u8]>("t", (Bound::Excluded(lo.as_slice()), Bound::Included(hi.as_slice())))
            .unwrap(),
    );
    assert_eq!(got, want);
    // From both ends at once: they meet in the middle, each row once.
    let mut r = t.range("t", lo.as_slice()..hi.as_slice()).unwrap();
    let (mut front, mut rear) = (Vec::new(), Vec::new());
    loop {
        match (r.next(), r.next_back()) {
            (None, None) => break,
            (a, b) => {
                front.extend(a.map(Result::unwrap));
                rear.extend(b.map(Result::unwrap));
            }
        }
    }
    rear.reverse();
    front.extend(rear);
    assert_eq!(front.len(), 2000);
    assert_eq!(front.first().unwrap().0, lo);
    assert!(front.windows(2).all(|w| w[0].0 < w[1].0));
    t.rollback().unwrap();

    // Deleting most rows merges pages back; the rest reads the same.
    let mut t = node.begin().unwrap();
    for i in 0..3000 {
        if i % 10 != 0 {
            t.delete("t", &k("user", i)).unwrap();
            model.remove(&k("user", i));
        }
    }
    t.commit().unwrap();
    let summary = admin::check_ordered_table(&node, "t", true).unwrap();
    assert_eq!(summary.keys, model.len() as u64);
    assert!(summary.free_pages > 0, "merged pages are free: {summary:?}");
    let mut t = node.begin().unwrap();
    let all: Rows = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(collect(t.iter("t").unwrap()), all);
    t.rollback().unwrap();
    node.close().unwrap();
}

#[test]
fn a_64_mib_value_round_trips_and_its_pages_are_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(2));
    node.create_ordered_table("blobs").unwrap();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8 ^ (i >> 20) as u8).collect();
    node.run(|t| t.put("blobs", b"big", &big)).unwrap();
    node.run(|t| t.put("blobs", b"small", b"s")).unwrap();
    let mut t = node.begin().unwrap();
    assert!(
        t.get("blobs", b"big").unwrap() == Some(big.clone()),
        "the value read back differs"
    );
    t.rollback().unwrap();
    let first = admin::check_ordered_table(&node, "blobs", false).unwrap();
    assert_eq!(first.large_values, 1);
    assert!(first.value_pages > (64 << 20) / 4096, "{first:?}");

    // Replaced: its pages are freed, and the next large value takes them.
    node.run(|t| t.put("blobs", b"big", b"now small")).unwrap();
    let freed = admin::check_ordered_table(&node, "blobs", false).unwrap();
    assert_eq!((freed.large_values, freed.value_pages), (0, 0));
    assert!(freed.free_pages >= first.value_pages);
    node.run(|t| t.put("blobs", b"other", &big[..40 << 20])).unwrap();
    let reused = admin::check_ordered_table(&node, "blobs", true).unwrap();
    assert_eq!(reused.page_count, freed.page_count, "no page past the freed ones");
    node.close().unwrap();
}

/// A range a transaction has read gains no row, loses none and changes
/// none until it ends; a key it found missing stays missing. Writes
/// elsewhere go on.
#[test]
fn a_scanned_range_gains_no_rows_until_the_scanner_ends() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_millis(100));
    node.create_ordered_table("t").unwrap();
    node.run(|t| {
        for i in (0..4000).step_by(2) {
            t.put("t", &k("a", i), &[7; 40])?;
        }
        Ok(())
    })
    .unwrap();
    let mut reader = node.begin().unwrap();
    let seen = collect(
        reader
            .range("t", k("a", 1000).as_slice()..k("a", 1100).as_slice())
            .unwrap(),
    );
    assert_eq!(seen.len(), 50);
    assert_eq!(reader.get("t", &k("a", 3001)).unwrap(), None);

    let refused = |r: Result<(), Error>| matches!(r, Err(e) if e.is_retryable());
    let mut writer = node.begin().unwrap();
    assert!(
        refused(writer.put("t", &k("a", 1051), b"phantom")),
        "an insert into the range"
    );
    assert!(refused(writer.delete("t", &k("a", 1050)).map(drop)), "a delete from it");
    assert!(refused(writer.put("t", &k("a", 1000), b"changed")), "a change in it");
    assert!(
        refused(writer.put("t", &k("a", 3001), b"found")),
        "the key read as missing"
    );
    // Far from both: another leaf.
    writer.put("t", &k("a", 101), b"elsewhere").unwrap();
    writer.commit().unwrap();

    let again = collect(
        reader
            .range("t", k("a", 1000).as_slice()..k("a", 1100).as_slice())
            .unwrap(),
    );
    assert_eq!(again, seen);
    reader.commit().unwrap();
    node.run(|t| t.put("t", &k("a", 1051), b"now")).unwrap();
    node.close().unwrap();
}

/// Four threads insert and delete their own keys, many transactions each,
/// retrying deadlocks (a split converting a branch another writer holds):
/// every thread's last committed state is there, and the tree is whole.
#[test]
fn writers_on_several_threads_keep_the_tree_whole() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(2));
    node.create_ordered_table("t").unwrap();
    let models: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u32)
            .map(|thread| {
                let node = node.clone();
                s.spawn(move || {
                    let mut model = BTreeMap::new();
                    for n in 0..150u32 {
                        let keys: Vec<u32> = (0..20)
                            .map(|j| ((n * 7919 + j * 104_729) % 5000) * 4 + thread)
                            .collect();
                        let value = format!("{thread}-{n}").into_bytes();
                        node.run(|t| {
                            for &key in &keys {
                                if key % 3 == 0 && n % 2 == 1 {
                                    t.delete("t", &k("w", key))?;
                                } else {
                                    t.put("t", &k("w", key), &value)?;
                                }
                            }
                            Ok(())
                        })
                        .unwrap();
                        for &key in &keys {
                            if key % 3 == 0 && n % 2 == 1 {
                                model.remove(&k("w", key));
                            } else {
                                model.insert(k("w", key), value.clone());
                            }
                        }
                    }
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let model: BTreeMap<_, _> = models.into_iter().flatten().collect();
    let summary = admin::check_ordered_table(&node, "t", true).unwrap();
    assert_eq!(summary.keys, model.len() as u64);
    let mut t = node.begin().unwrap();
    let all: Rows = model.into_iter().collect();
    assert_eq!(collect(t.iter("t").unwrap()), all);
    t.rollback().unwrap();
    node.close().unwrap();
}

#[test]
fn bad_input_is_refused_with_typed_errors_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_millis(200));
    node.create_ordered_table("t").unwrap();
    node.create_table("h", 4).unwrap();
    node.run(|t| t.put("t", b"kept", b"1")).unwrap();
    let mut t = node.begin().unwrap();
    assert!(matches!(
        t.range("t", b"b".as_slice()..b"a".as_slice()).map(drop),
        Err(Error::InvalidRange(_))
    ));
    assert!(matches!(
        t.range::<&[u8]>(
            "t",
            (Bound::Excluded(b"a".as_slice()), Bound::Excluded(b"a".as_slice()))
        )
        .map(drop),
        Err(Error::InvalidRange(_))
    ));
    assert_eq!(t.range("t", b"a".as_slice()..b"a".as_slice()).unwrap().count(), 0);
    for r in [t.iter("h").map(drop), t.len("h").map(drop), t.first("h").map(drop)] {
        assert!(matches!(&r, Err(Error::NotOrdered(name)) if name == "h"), "{r:?}");
    }
    assert!(matches!(t.iter("missing").map(drop), Err(Error::NoSuchTable(_))));
    t.rollback().unwrap();

    // A scan holds the table: it cannot be dropped under it.
    let mut scanner = node.begin().unwrap();
    assert_eq!(scanner.iter("t").unwrap().count(), 1);
    assert!(node.drop_table("t").unwrap_err().is_retryable());
    scanner.rollback().unwrap();
    node.drop_table("t").unwrap();
    let mut t = node.begin().unwrap();
    for r in [
        t.iter("t").map(drop),
        t.len("t").map(drop),
        t.get("t", b"kept").map(drop),
    ] {
        assert!(matches!(&r, Err(Error::NoSuchTable(name)) if name == "t"), "{r:?}");
    }
    t.rollback().unwrap();
    assert!(node.stopped().is_none());
    node.close().unwrap();
}

/// Scopes over an ordered table: a scope that ends well and splits leaves
/// (fresh pages), then a sibling scope that changes the same pages and
/// fails. The failure puts back the pages as the first scope left them,
/// and those stay listed for the commit: the commit keeps the first
/// scope's rows and none of the second's, and the tree is whole.
#[test]
fn a_failed_scope_keeps_what_a_finished_sibling_scope_changed() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(2));
    node.create_ordered_table("t").unwrap();
    let mut t = node.begin().unwrap();
    t.scope(|t| (0..400).try_for_each(|i| t.put("t", &k("s", i), &[1; 60])))
        .unwrap();
    let failed = t.scope(|t| {
        (0..400).try_for_each(|i| t.put("t", &k("s", i), &[2; 60]))?;
        t.put("t", b"only-in-the-failed-scope", b"x")?;
        Err::<(), _>(Error::InvalidSavepoint)
    });
    assert!(failed.is_err());
    t.commit().unwrap();
    let mut t = node.begin().unwrap();
    let rows = collect(t.iter("t").unwrap());
    assert_eq!(rows.len(), 400);
    assert!(rows.iter().all(|(_, v)| v == &[1; 60]), "the first scope's values");
    t.rollback().unwrap();
    assert_eq!(admin::check_ordered_table(&node, "t", true).unwrap().keys, 400);
    node.close().unwrap();
}
