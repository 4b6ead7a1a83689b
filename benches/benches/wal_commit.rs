//! Durable commits through the log's group commit, with 1, 8 and 64
//! committing threads, next to the physical floor (one small write +
//! fdatasync, by pwrite and by io_uring) and SQLite (WAL, synchronous=FULL)
//! committing one small transaction at a time, all in the same run.
//!
//! Each commit appends a 128-byte before-image and a commit record and waits
//! for the commit to be durable. Run: `cargo bench -p benches --bench wal_commit`.
//!
//! The baselines also weigh the ways a log or a commit's pages could be
//! made durable through io_uring: a buffered write linked to an fdatasync
//! (what the log does), a direct write to an `O_DSYNC` file (durable on
//! completion, one operation), a direct write linked to an fdatasync; and
//! two pages at once, as a commit round forces them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use benches::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wal::io::{Io, IoFile, WriteOp};
use wal::{Log, LogConfig, PageUndo, RecordBody, RecordMeta};

fn commit_one(log: &Log, txn: u64) {
    let undo = RecordBody::Undo(PageUndo {
        file_id: 1,
        page_no: txn % 1000,
        offset_in_page: 64,
        before: vec![7; 128],
        after: None,
    });
    let first = log.append(RecordMeta::txn(txn, None), &undo).expect("append undo");
    let commit = log
        .append(RecordMeta::txn(txn, Some(first)), &RecordBody::Commit)
        .expect("append commit");
    log.wait_durable(commit).expect("durable");
}

fn sqlite(dir: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join("peer.db")).expect("open sqlite");
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v BLOB);",
    )
    .expect("configure sqlite");
    c
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let mut g = c.benchmark_group("durable_commit");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let raw = prealloc(dir.path(), "raw", 1 << 20);
    g.bench_function("baseline/pwrite+fdatasync", |b| {
        b.iter_custom(|iters| raw_write_fdatasync(&raw, 256, iters))
    });
    if let Some(io) = uring() {
        prealloc(dir.path(), "raw-uring", 1 << 20);
        let file = IoFile::open(&dir.path().join("raw-uring"), true, false).expect("open");
        g.bench_function("baseline/io_uring write+fdatasync", |b| {
            b.iter_custom(|iters| raw_uring_write_sync(&io, &file, 256, iters))
        });
    }

    // What the log's segments could do instead of a buffered write and
    // fdatasync: each flush rewriting its 4 KiB tail block with direct I/O
    // and O_DSYNC, one system call per commit.
    {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        drop(prealloc(dir.path(), "raw-direct", 1 << 20));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(dir.path().join("raw-direct"))
            .expect("open O_DIRECT|O_DSYNC");
        let mem = vec![0x5au8; 2 * 4096];
        let at = mem.as_ptr().align_offset(4096);
        let block = &mem[at..at + 4096];
        g.bench_function("baseline/O_DIRECT|O_DSYNC 4KiB pwrite", |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    f.write_all_at(block, (i % 256) * 4096).expect("direct pwrite");
                }
                start.elapsed()
            })
        });
        // The same through io_uring, as the log would submit it: one ring
        // write per flush, durable when it completes (O_DSYNC), no separate
        // sync; next to today's buffered write linked to an fdatasync
        // ("baseline/io_uring write+fdatasync") and the same direct block
        // with a linked fdatasync instead of O_DSYNC. Two 4 KiB blocks at
        // once, as a commit round forces two pages: one O_DSYNC file vs
        // writes + one sync.
        if let Some(io) = uring() {
            let dsync = IoFile::from_std(f.try_clone().expect("clone"), &dir.path().join("raw-direct"));
            g.bench_function("baseline/io_uring O_DIRECT|O_DSYNC 4KiB write", |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    for i in 0..iters {
                        let op = WriteOp {
                            file: &dsync,
                            offset: (i % 256) * 4096,
                            data: block,
                        };
                        io.write_batch(&[op], false).expect("ring write");
                    }
                    start.elapsed()
                })
            });
            let direct = IoFile::open_direct(&dir.path().join("raw-direct"), true, false).expect("open direct");
            g.bench_function("baseline/io_uring O_DIRECT 4KiB write+fdatasync", |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    for i in 0..iters {
                        let op = WriteOp {
                            file: &direct,
                            offset: (i % 256) * 4096,
                            data: block,
                        };
                        io.write_batch(&[op], true).expect("ring write+sync");
                    }
                    start.elapsed()
                })
            });
            let two = |file: &IoFile, i: u64, sync: bool| {
                let ops = [0, 1].map(|p| WriteOp {
                    file,
                    offset: ((2 * i + p) % 256) * 4096,
                    data: block,
                });
                io.write_batch(&ops, sync).expect("two pages");
            };
            g.bench_function("baseline/io_uring O_DIRECT|O_DSYNC 2 pages", |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    (0..iters).for_each(|i| two(&dsync, i, false));
                    start.elapsed()
                })
            });
            g.bench_function("baseline/io_uring O_DIRECT 2 pages+fdatasync", |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    (0..iters).for_each(|i| two(&direct, i, true));
                    start.elapsed()
                })
            });
        }
    }

    let io = Io::new(Default::default()).expect("io");
    eprintln!("log backend: {}", io.kind());
    let log = Arc::new(Log::open(&dir.path().join("log"), LogConfig::new(1, io)).expect("open log"));
    let conn = Mutex::new(sqlite(dir.path()));
    for threads in [1usize, 8, 64] {
        g.bench_function(format!("understudy_wal/{threads} threads"), |b| {
            b.iter_custom(|iters| {
                spread(threads, iters, |t, n| {
                    for i in 0..n {
                        commit_one(&log, (t as u64) << 32 | i);
                    }
                })
            })
        });
        g.bench_function(format!("sqlite_wal_full/{threads} threads"), |b| {
            b.iter_custom(|iters| {
                spread(threads, iters, |t, n| {
                    for i in 0..n {
                        let c = conn.lock().expect("sqlite mutex");
                        c.execute(
                            "INSERT OR REPLACE INTO t(k, v) VALUES (?1, zeroblob(128))",
                            [((t as i64) << 32) | i as i64],
                        )
                        .expect("sqlite insert");
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
