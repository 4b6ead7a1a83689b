//! Shared pieces of the criterion benchmarks in `benches/benches/`: the
//! physical baselines every engine figure is quoted against, and the SQLite
//! peer. Every benchmark file runs them in the same process as the engine.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use wal::io::{BackendChoice, Io, IoFile};

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

/// The io_uring backend of the I/O layer on its own, if the kernel allows it.
pub fn uring() -> Option<Io> {
    Io::new(BackendChoice::Uring).ok()
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
