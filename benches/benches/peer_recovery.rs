//! Peer recovery of a prepared failed-node log holding K in-flight
//! transactions of 4 changed pages each (K = 1, 100, 1 000, 10 000), each
//! killed in the middle of its commit's page writes: its intent durable,
//! every page it lists torn on disk. That is the case where a recovery
//! must write pages: a transaction short of its intent changed nothing on
//! disk (`understudy::txn`), and its pages are only read.
//!
//! Next to it, in the same run, two physical limits with direct I/O
//! (`O_DIRECT`, as the engine writes its table files) through one io_uring
//! ring at queue depth 256: the same pages written, then one sync (what the
//! recovery writes); and the same pages read, then written, then synced
//! (what it must do at least: a before-image covers the bytes a
//! transaction changed, not the page, so the page is read first).
//!
//! The failed node's log is written directly (begin, four full-page
//! before-images and an intent listing the four pages per transaction,
//! made durable); each measured recovery starts from a fresh copy of it and
//! freshly torn pages, with node 1 freshly failed at the coordinator. The
//! table has a fixed 40 000 buckets whatever K, so a recovery's cost can be
//! seen to follow K and not the table size. The per-step timeline of one
//! recovery per K is printed.
//!
//! Run: `cargo bench -p benches --bench peer_recovery`.

use std::path::Path;
use std::time::{Duration, Instant};

use benches::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lockmgr::{Client, ClientConfig, Coordinator, CoordinatorConfig};
use understudy::admin::lock_client;
use understudy::{Cluster, Node, NodeOptions};
use wal::io::{Io, IoFile, ReadOp, WriteOp};
use wal::{Log, LogConfig, PageRef, PageUndo, RecordBody, RecordMeta};

const PAGES_PER_TXN: u64 = 4;
const BUCKETS: u32 = 40_000;
const KS: [u64; 4] = [1, 100, 1_000, 10_000];

/// Writes node 1's log: `k` in-flight transactions, four distinct pages
/// each, with before-images read from the table file, each ending with its
/// commit intent.
fn prepare_log(cluster: &Cluster, io: &Io, k: u64) {
    let dir = cluster.log_dir(1);
    let _ = std::fs::remove_dir_all(&dir);
    let log = Log::open(
        &dir,
        LogConfig {
            // What nodes use (`NodeOptions::log_segment_size`).
            segment_size: 4 << 20,
            max_pending_bytes: 16 << 20,
            flush_threshold_bytes: 8 << 20,
            ..LogConfig::new(1, io.clone())
        },
    )
    .expect("open the failed node's log");
    let table = std::fs::read(understudy::admin::table_path(&cluster.data_dir(), 1)).expect("table file");
    let mut last = None;
    for t in 0..k {
        let txn = (1 << 32) | (t + 1);
        let begin = log
            .append(RecordMeta::txn(txn, None), &RecordBody::Begin)
            .expect("begin");
        let mut prev = begin;
        for p in 0..PAGES_PER_TXN {
            let page_no = 1 + t * PAGES_PER_TXN + p;
            let off = (page_no * 4096) as usize;
            let undo = RecordBody::Undo(PageUndo {
                file_id: 1,
                page_no,
                offset_in_page: 0,
                before: table[off..off + 4096].to_vec(),
                after: None,
            });
            prev = log.append(RecordMeta::txn(txn, Some(prev)), &undo).expect("undo");
        }
        let pages = (0..PAGES_PER_TXN)
            .map(|p| PageRef {
                file_id: 1,
                page_no: 1 + t * PAGES_PER_TXN + p,
            })
            .collect();
        prev = log
            .append(RecordMeta::txn(txn, Some(prev)), &RecordBody::CommitIntent(pages))
            .expect("intent");
        last = Some(prev);
    }
    if let Some(l) = last {
        log.wait_durable(l).expect("durable");
    }
    log.close().expect("close");
}

/// Tears every page the `k` transactions' intents list, as a crash in the
/// middle of their commit's page writes leaves them: one byte of each
/// differs from its before-image, so its checksum fails and the intent is
/// not committed. Synced, so the recovery's direct reads find it on the
/// device.
fn tear_pages(table: &Path, k: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(table)
        .expect("table file");
    for page_no in 1..=k * PAGES_PER_TXN {
        let at = page_no * 4096 + 2048;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).expect("read a byte");
        f.write_all_at(&[!b[0]], at).expect("tear the page");
    }
    f.sync_data().expect("sync the torn pages");
}

/// `n` page-aligned 4 KiB buffers in one allocation.
fn aligned(n: usize) -> (Vec<u8>, usize) {
    let buf = vec![0x5au8; (n + 1) * 4096];
    let at = buf.as_ptr().align_offset(4096);
    (buf, at)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        // A failed node's log is durable; a copy left dirty in the page
        // cache would make the recovery's first sync flush all of it.
        std::fs::File::open(to.join(e.file_name()))
            .and_then(|f| f.sync_all())
            .expect("sync the copy");
    }
}

/// Makes node 1 a failed member again (joined, then its connection dropped).
fn fail_node_1(cluster: &Cluster, observer: &Node) {
    let c = Client::connect(ClientConfig::new(
        cluster.coordinator.clone(),
        1,
        cluster.secret().expect("secret"),
    ))
    .expect("node 1 joins");
    c.disconnect();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let st = lock_client(observer).status().expect("status");
        if st.iter().any(|m| m.node == 1 && !m.live) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("node 1 never failed");
}

fn bench(c: &mut Criterion) {
    let dir = scratch_dir();
    let cdir = dir.path().join("cluster");
    std::fs::create_dir_all(&cdir).expect("dir");
    let ep = format!("unix:{}", cdir.join("coord.sock").display());
    let cluster = Cluster::create(&cdir, &[1, 2], ep.parse().expect("endpoint"), 4096).expect("cluster");
    let io = Io::new(Default::default()).expect("io");
    let mut cfg = CoordinatorConfig::new(
        vec![cluster.coordinator.clone()],
        cluster.secret().expect("secret"),
        cluster.coordinator_dir(),
        io.clone(),
    );
    // The benchmark floods the disk (hundreds of MiB per run): long leases
    // keep a slow sync from fencing the recovering node mid-measurement.
    cfg.lease_ms = 10_000;
    cfg.failure_timeout_ms = 15_000;
    let _coord = Coordinator::start(cfg).expect("coordinator");
    let opts = NodeOptions {
        auto_recovery: false,
        ..NodeOptions::default()
    };
    let n2 = Node::open(&cdir, 2, opts).expect("node 2");
    n2.create_table("big", BUCKETS).expect("table");
    eprintln!("I/O backend: {}", n2.io_backend());

    let table_file = understudy::admin::table_path(&cluster.data_dir(), 1);
    let mut g = c.benchmark_group("peer_recovery");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    drop(prealloc(dir.path(), "raw", BUCKETS as u64 * 4096 + 4096));
    // Direct, like the engine's table files: past the page cache, from
    // page-aligned memory.
    let raw = IoFile::open_direct(&dir.path().join("raw"), true, false).expect("open the baseline file");
    assert!(raw.is_direct(), "the baseline file system takes direct I/O");
    // The physical limit: io_uring driven from this thread (ring depth 256),
    // without the engine's submitter threads.
    let raw_io = uring().expect("io_uring for the raw baseline");
    let (mut pages_buf, at) = aligned(KS[KS.len() - 1] as usize * PAGES_PER_TXN as usize);
    for k in KS {
        let pages = k * PAGES_PER_TXN;
        g.throughput(Throughput::Elements(pages));
        g.measurement_time(Duration::from_secs(if k >= 10_000 { 8 } else { 3 }));
        g.bench_with_input(BenchmarkId::new("raw_io_uring_write_sync", k), &pages, |b, &pages| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ops: Vec<WriteOp<'_>> = (0..pages)
                        .map(|p| WriteOp {
                            file: &raw,
                            offset: (1 + p) * 4096,
                            data: &pages_buf[at..at + 4096],
                        })
                        .collect();
                    let t = Instant::now();
                    raw_io.write_batch(&ops, true).expect("raw batch");
                    total += t.elapsed();
                }
                total
            })
        });
        g.bench_with_input(
            BenchmarkId::new("raw_io_uring_read_write_sync", k),
            &pages,
            |b, &pages| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        {
                            let mut reads: Vec<ReadOp<'_>> = pages_buf[at..at + pages as usize * 4096]
                                .chunks_mut(4096)
                                .enumerate()
                                .map(|(p, buf)| ReadOp {
                                    file: &raw,
                                    offset: (1 + p as u64) * 4096,
                                    buf,
                                })
                                .collect();
                            raw_io.read_write_batch(&mut reads, &[]).expect("raw reads");
                        }
                        let ops: Vec<WriteOp<'_>> = pages_buf[at..at + pages as usize * 4096]
                            .chunks(4096)
                            .enumerate()
                            .map(|(p, data)| WriteOp {
                                file: &raw,
                                offset: (1 + p as u64) * 4096,
                                data,
                            })
                            .collect();
                        raw_io.write_batch(&ops, true).expect("raw writes");
                        total += t.elapsed();
                    }
                    total
                })
            },
        );

        prepare_log(&cluster, &io, k);
        // The log's node "ran" on this host, so the kernel's word fences it
        // (no process holds its files), as for a node killed here.
        understudy::admin::mark_host(&cluster.log_dir(1)).expect("host marker");
        let template = dir.path().join(format!("log-template-{k}"));
        copy_dir(&cluster.log_dir(1), &template);
        let mut printed = false;
        g.bench_with_input(BenchmarkId::new("understudy_peer_recovery", k), &k, |b, &k| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    copy_dir(&template, &cluster.log_dir(1));
                    tear_pages(&table_file, k);
                    fail_node_1(&cluster, &n2);
                    // Timed from the call to the release of the retained
                    // locks (the timeline's last step): what the cluster
                    // waits for. Closing the recovered log's handle comes
                    // after and delays nobody.
                    let tl = n2.recover_peer(1).expect("recovery");
                    total += tl.total();
                    assert_eq!(tl.in_flight as u64, k);
                    assert_eq!(tl.pages as u64, k * PAGES_PER_TXN);
                    assert_eq!(tl.pages_written as u64, k * PAGES_PER_TXN, "every torn page written");
                    assert_eq!(tl.committed, 0);
                    if !printed {
                        eprintln!("K={k}: {}", tl.summary());
                        printed = true;
                    }
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
