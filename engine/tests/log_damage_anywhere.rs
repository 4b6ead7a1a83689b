//! A failed node's log cut at any byte and damaged at any byte, against
//! what the committing code was told.
//!
//! Node 1 runs transactions of rows large enough that the log crosses
//! segments of the smallest size and takes checkpoints (which let it drop
//! old segments), writing down each commit that returned `Ok` — the
//! acknowledgements — before anything is damaged. It fails; its log is then
//! cut at an arbitrary byte of the stream (inside a record, its header, its
//! padding, or at a boundary: what a crash leaves, and more) and, in most
//! cases, one byte anywhere in the stream, before the cut or past it, is
//! flipped by an arbitrary mask. The node restarts. Whatever the damage,
//! the restart must end in a typed error, or in a table that holds exactly
//! every acknowledged commit and nothing rolled back: never in a successful
//! start with an acknowledged commit gone.
//!
//! `log_damage.rs` cuts only at record boundaries and flips within a
//! record's first bytes; this reaches every byte, so a damaged length, a
//! torn record spanning a segment's end or a flip in the zeroes past the
//! end are met too.

mod common;

use common::is_damage_error;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use understudy::{Error, Node, NodeOptions};
use wal::io::Io;
use wal::segment::MIN_SEGMENT_SIZE;
use wal::{LogReader, Lsn};

/// Keys the transactions write: few, so later commits overwrite earlier
/// ones and a backed-out commit shows as a wrong value, not only a
/// missing one.
const KEYS: u8 = 8;

fn opts() -> NodeOptions {
    NodeOptions {
        auto_recovery: false,
        lock_wait: Duration::from_millis(200),
        // The smallest segments and frequent checkpoints: a few
        // transactions cross segments and truncate the log's start.
        log_segment_size: MIN_SEGMENT_SIZE,
        checkpoint_bytes: 16 << 10,
        ..NodeOptions::default()
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// One transaction: the keys it writes, its value's length, whether it
/// commits.
#[derive(Clone, Debug)]
struct Txn {
    keys: Vec<u8>,
    len: usize,
    commit: bool,
}

/// Transaction `i`'s value: its number, then filler up to `len` bytes.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
    v
}

/// Node 1 of a fresh cluster in `dir` runs `txns` and fails. Returns the
/// coordinator (to keep) and the acknowledgements: each key as the last
/// commit that returned `Ok` left it, written down as it returned.
fn run_and_fail(dir: &Path, txns: &[Txn]) -> (lockmgr::Coordinator, BTreeMap<u8, Vec<u8>>) {
    let (_, coordinator) = common::cluster_with_coordinator(dir, &[1]);
    let node = Node::open(dir, 1, opts()).unwrap();
    node.create_table("t", 2).unwrap();
    let mut acked = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        let v = value(i, t.len);
        let mut txn = node.begin().unwrap();
        for &k in &t.keys {
            txn.put("t", &key(k), &v).unwrap();
        }
        if t.commit {
            // Only a commit that returned Ok is acknowledged.
            if txn.commit().is_ok() {
                for &k in &t.keys {
                    acked.insert(k, v.clone());
                }
            }
        } else {
            txn.rollback().unwrap();
        }
    }
    // Failed, not left: the connection drops and the log closes once the
    // node's threads let go of it.
    drop(node);
    let log_dir = dir.join("logs/1");
    common::wait_for("node 1's log to be let go", || {
        LogReader::owner_status(&log_dir).unwrap() == wal::OwnerStatus::Gone
    });
    (coordinator, acked)
}

/// The table as node 1 sees it after its restart, or the error the
/// restart (or the reads) ended in.
fn restart_and_read(dir: &Path) -> Result<BTreeMap<u8, Vec<u8>>, Error> {
    let node = Node::open(dir, 1, opts())?;
    let mut out = BTreeMap::new();
    let mut t = node.begin()?;
    for k in 0..KEYS {
        if let Some(v) = t.get("t", &key(k))? {
            out.insert(k, v);
        }
    }
    t.rollback()?;
    node.close()?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_log_cut_at_any_byte_and_flipped_anywhere_ends_in_an_error_or_every_acknowledged_commit(
        txns in prop::collection::vec(
            (prop::collection::vec(0..KEYS, 1..4), 1usize..3500, prop::bool::weighted(0.75))
                .prop_map(|(keys, len, commit)| Txn { keys, len, commit }),
            1..24,
        ),
        cut_at in any::<prop::sample::Index>(),
        flip_at in prop::option::weighted(0.8, (any::<prop::sample::Index>(), 1u8..=255)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (_coordinator, acked) = run_and_fail(dir.path(), &txns);
        let log_dir = dir.path().join("logs/1");
        let reader = LogReader::open(&log_dir, Io::fallback()).unwrap();
        let (start, layout) = (reader.start_lsn(), reader.layout());
        let end = reader.find_end().unwrap().next;
        drop(reader);
        // Any byte from the log's start to its end inclusive (the end: no
        // cut at all).
        let at = Lsn(start.0 + cut_at.index((end.0 - start.0 + 1) as usize) as u64);
        wal::damage::zero_from(&log_dir, layout, at).unwrap();
        // Any byte of the stream, up to a little past its end: zeroes past
        // the end made non-zero look like a torn write there.
        let flipped = flip_at.and_then(|(which, mask)| {
            let pos = Lsn(start.0 + which.index((end.0 - start.0 + 512) as usize) as u64);
            wal::damage::flip(&log_dir, layout, pos, mask).unwrap().then_some(pos)
        });
        let outcome = restart_and_read(dir.path());
        match outcome {
            Ok(table) => prop_assert_eq!(
                table, acked,
                "cut at {}, flipped {:?}: a restart that succeeded lost or changed acknowledged commits",
                at, flipped
            ),
            Err(e) => prop_assert!(is_damage_error(&e), "cut at {at}, flipped {flipped:?}: untyped error {e:?}"),
        }
    }
}
