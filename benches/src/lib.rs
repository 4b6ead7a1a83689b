//! Shared pieces of the criterion benchmarks in `benches/benches/`: the
//! physical baselines every engine figure is quoted against, and the SQLite
//! peer. Every benchmark file runs them in the same process as the engine.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use wal::io::{Io, IoFile};

/// A scratch directory on the same disk as the project (not tmpfs).
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("UNDERSTUDY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-scratch"));
    std::fs::create_dir_all(&base).expect("create bench scratch dir");
    tempfile::tempdir_in(base).expect("create bench temp dir")
}

/// A preallocated file for the raw baselines.
pub fn prealloc(dir: &Path, name: &str, len: u64) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(name))
        .expect("open baseline file");
    f.write_all_at(&vec![0u8; len as usize], 0).expect("preallocate");
    f.sync_all().expect("sync");
    f
}

/// `iters` rounds of `pwrite(len bytes)` + `fdatasync`: the floor of one
/// durable commit.
pub fn raw_write_fdatasync(f: &std::fs::File, len: usize, iters: u64) -> Duration {
    let buf = vec![0x5a; len];
    let start = Instant::now();
    for i in 0..iters {
        f.write_all_at(&buf, (i % 256) * 4096).expect("pwrite");
        f.sync_data().expect("fdatasync");
    }
    start.elapsed()
}

/// `iters` rounds of the device work every commit of the two-row workload
/// costs an engine that logs before-images and forces its pages (undo
/// logging with FORCE): `log_bytes` appended to `log` + `fdatasync`, then
/// two 4 KiB pages at random places of `data` + `fdatasync`, strictly in
/// that order (no page may reach the disk before its before-image). With
/// plain system calls on the caller's thread and nothing else: the floor of
/// one commit of this engine, next to which its commit latency is judged.
pub fn raw_undo_force_commit(log: &std::fs::File, data: &std::fs::File, log_bytes: usize, iters: u64) -> Duration {
    use rand::Rng;
    let record = vec![0x3c; log_bytes];
    let page = vec![0x5a; 4096];
    let log_slots = (log.metadata().expect("log size").len() / log_bytes as u64).max(1);
    let data_pages = (data.metadata().expect("data size").len() / 4096).max(1);
    let mut rng = rand::rng();
    let start = Instant::now();
    for i in 0..iters {
        log.write_all_at(&record, (i % log_slots) * log_bytes as u64)
            .expect("log pwrite");
        log.sync_data().expect("log fdatasync");
        for _ in 0..2 {
            data.write_all_at(&page, rng.random_range(0..data_pages) * 4096)
                .expect("page pwrite");
        }
        data.sync_data().expect("data fdatasync");
    }
    start.elapsed()
}

/// The io_uring backend of the I/O layer on its own, run on the caller's
/// thread (no submitter threads): the raw figure, if the kernel allows it.
pub fn uring() -> Option<Io> {
    Io::uring_inline().ok()
}

/// `iters` rounds of one io_uring write linked to an fdatasync.
pub fn raw_uring_write_sync(io: &Io, file: &IoFile, len: usize, iters: u64) -> Duration {
    let buf = vec![0x5a; len];
    let start = Instant::now();
    for i in 0..iters {
        io.write_durable(file, &buf, (i % 256) * 4096)
            .expect("io_uring write+sync");
    }
    start.elapsed()
}

/// Splits `iters` over `threads` threads running `work(thread, n)` and
/// returns the wall time of the whole.
pub fn spread<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let per = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || work(t, per));
        }
    });
    // Report time per requested iteration.
    start.elapsed().mul_f64(iters as f64 / (per * threads as u64) as f64)
}

/// The engine workload of the commit benchmarks: a table of `ROWS` rows of
/// `VALUE_LEN` bytes; each transaction updates two random rows.
pub mod rows {
    use rand::Rng;
    use std::time::Duration;

    use understudy::{Error, Node, RetryPolicy};

    pub const TABLE: &str = "rows";
    pub const ROWS: u32 = 100_000;
    pub const VALUE_LEN: usize = 100;
    /// About 30 rows fit a 4 KiB page; this many buckets keeps chains short.
    pub const BUCKETS: u32 = 4096;

    pub fn key(i: u32) -> Vec<u8> {
        format!("row-{i:06}").into_bytes()
    }

    /// Creates and fills the table, in transactions of 1 000 rows.
    pub fn load(node: &Node) -> Result<(), Error> {
        node.create_table(TABLE, BUCKETS)?;
        for chunk in 0..ROWS / 1000 {
            let mut t = node.begin()?;
            for i in chunk * 1000..(chunk + 1) * 1000 {
                t.put(TABLE, &key(i), &[0u8; VALUE_LEN])?;
            }
            t.commit()?;
        }
        Ok(())
    }

    /// Retried at once, without a pause: the benchmark measures commits,
    /// and a rare conflict should cost it as little as possible.
    const AT_ONCE: RetryPolicy = RetryPolicy {
        max_retries: 999,
        max_backoff: Duration::ZERO,
        step: Duration::ZERO,
    };

    /// One transaction updating two random rows, retried while the error
    /// says retrying may succeed. The rows are touched in bucket order so
    /// that concurrent transactions rarely deadlock. Returns the retries.
    pub fn update_two(node: &Node, rng: &mut impl Rng) -> Result<u32, Error> {
        let (a, b) = (rng.random_range(0..ROWS), rng.random_range(0..ROWS));
        let mut keys = [key(a), key(b)];
        keys.sort_by_key(|k| understudy::admin::bucket_page(k, BUCKETS));
        let value: [u8; VALUE_LEN] = [rng.random(); VALUE_LEN];
        understudy::retry(&AT_ONCE, |retries| {
            let mut t = node.begin()?;
            for k in &keys {
                t.put(TABLE, k, &value)?;
            }
            t.commit()?;
            Ok(retries)
        })
    }
}
