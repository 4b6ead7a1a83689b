//! loom model of the race between a node's commits and a peer recovering
//! it, over the commit rounds the node runs (`understudy::commit_rounds`,
//! the very code of group FORCE).
//!
//! Two committers each force one page stamped with their intent; the node
//! stops meanwhile (its lease lost), as `NodeState::stop` does: it marks
//! itself stopped, closes its commit rounds and lets go of its data file.
//! A peer recovers it: it waits for the fence — the data file's fencing
//! lock, which the kernel frees once nobody holds the file (`crate::fence`)
//! — then reads the stamps, decides, and writes back. The file is a shared
//! handle here, held by the node and by every commit waiting for or in a
//! round, exactly as the real rounds hold `Arc<DataFile>`s.
//!
//! In every interleaving:
//! - no commit writes a page after the peer began writing back (fencing
//!   holds: a round lets go of its files only after its writes);
//! - a commit that returned `Ok` has its stamp on disk when the peer reads
//!   (acknowledged ⇒ decided committed);
//! - everyone finishes: commits queued when the node stopped fail and let
//!   go of their files, so the peer is not fenced out for ever.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p
//! understudy --release --test loom_commit_recovery`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use understudy::commit_rounds::Rounds;
use understudy::Error;

/// The data file, with its fencing lock: free once no handle is left but
/// the peer's.
struct DataFile;

/// A commit waiting for or in a round: its page, its stamp, its file.
struct Entry {
    page: usize,
    stamp: u64,
    _file: Arc<DataFile>,
}

struct Node {
    /// The node's open file; gone once it stopped.
    files: Mutex<Option<Arc<DataFile>>>,
    stopped: AtomicBool,
    rounds: Rounds<Entry>,
}

struct Disk {
    pages: Mutex<[Option<u64>; 2]>,
    /// The peer began writing back.
    peer_writes: AtomicBool,
}

/// Commit `page`: takes the file, checks the node may write, and has its
/// page forced by a round, as `Transaction::commit` and `GroupForce` do.
fn commit(node: &Node, disk: &Disk, page: usize) -> Result<(), Error> {
    let file = node.files.lock().unwrap().clone().ok_or(Error::LeaseLost)?;
    if node.stopped.load(Ordering::SeqCst) {
        return Err(Error::LeaseLost);
    }
    let run = |entries: &[Entry]| {
        // The leader asks right before the round writes.
        if node.stopped.load(Ordering::SeqCst) {
            return Err(Error::LeaseLost);
        }
        for e in entries {
            assert!(
                !disk.peer_writes.load(Ordering::SeqCst),
                "a commit wrote a page after the peer began writing back"
            );
            disk.pages.lock().unwrap()[e.page] = Some(e.stamp);
        }
        Ok(())
    };
    let entry = Entry {
        page,
        stamp: 10 + page as u64,
        _file: file,
    };
    node.rounds.submit(entry, &run)
}

#[test]
fn a_peer_fenced_by_the_files_sees_every_acknowledged_commit_and_no_write_after_its_own() {
    loom::model(|| {
        let file = Arc::new(DataFile);
        let node = Arc::new(Node {
            files: Mutex::new(Some(file.clone())),
            stopped: AtomicBool::new(false),
            rounds: Rounds::new(),
        });
        let disk = Arc::new(Disk {
            pages: Mutex::new([None; 2]),
            peer_writes: AtomicBool::new(false),
        });
        let committers: Vec<_> = (0..2)
            .map(|page| {
                let (node, disk) = (node.clone(), disk.clone());
                thread::spawn(move || commit(&node, &disk, page))
            })
            .collect();
        let peer = {
            let disk = disk.clone();
            thread::spawn(move || {
                // Fenced: only the peer's own handle is left (the kernel's
                // word, `fence::node_gone`).
                while Arc::strong_count(&file) > 1 {
                    thread::yield_now();
                }
                let seen = *disk.pages.lock().unwrap();
                disk.peer_writes.store(true, Ordering::SeqCst);
                seen
            })
        };
        // The node stops: `NodeState::stop`.
        node.stopped.store(true, Ordering::SeqCst);
        node.rounds.close("the lease was lost");
        node.files.lock().unwrap().take();

        let acked: Vec<bool> = committers.into_iter().map(|c| c.join().unwrap().is_ok()).collect();
        let seen = peer.join().unwrap();
        for (page, ok) in acked.iter().enumerate() {
            if *ok {
                assert_eq!(
                    seen[page],
                    Some(10 + page as u64),
                    "commit {page} was acknowledged, and the peer did not see its stamp"
                );
            }
        }
    });
}
