//! The same suite runs against every backend the machine offers, then the
//! fault injector's own behaviour is checked.

use super::fault::{CrashMode, FaultInjector};
use super::*;

/// The fallback, io_uring for everything, and the automatic choice (io_uring
/// with blocking writes on the caller).
fn backends() -> Vec<Io> {
    let mut out = vec![Io::fallback()];
    match Io::new(BackendChoice::Uring) {
        Ok(io) => {
            out.push(io);
            out.push(Io::new(BackendChoice::Auto).unwrap());
        }
        // A kernel that refuses io_uring still runs the fallback suite.
        Err(e) => eprintln!("io_uring unavailable here, testing the fallback only: {e}"),
    }
    out
}

#[test]
fn buffered_files_block_on_file_systems_without_nonblocking_buffered_writes_and_direct_ones_never_do() {
    use std::os::unix::fs::OpenOptionsExt;
    // tmpfs takes no non-blocking buffered write, and always exists here.
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("no /dev/shm here; skipped");
        return;
    };
    assert!(temp_file(&shm, "b").writes_block(), "a buffered tmpfs file");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    std::fs::write(&path, b"").unwrap();
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    match direct {
        Ok(f) => assert!(!IoFile::from_std(f, &path).writes_block(), "an O_DIRECT file"),
        Err(e) => eprintln!("no direct I/O on this file system ({e}); that half skipped"),
    }
}

fn temp_file(dir: &tempfile::TempDir, name: &str) -> IoFile {
    IoFile::open(&dir.path().join(name), true, true).unwrap()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i * 7) as u8)).collect()
}

#[test]
fn auto_reports_a_backend() {
    let io = Io::new(BackendChoice::Auto).unwrap();
    assert!(matches!(io.kind(), BackendKind::Uring | BackendKind::Fallback));
}

#[test]
fn write_then_read_back_on_every_backend() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "a");
        let data = pattern(3, 10_000);
        io.write_durable(&f, &data, 4096).unwrap();
        let mut back = vec![0u8; data.len()];
        io.read_exact_at(&f, &mut back, 4096).unwrap();
        assert_eq!(back, data, "backend {}", io.kind());
        assert_eq!(f.len().unwrap(), 4096 + 10_000);
    }
}

#[test]
fn deep_batches_across_files_land_where_asked() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<IoFile> = (0..3).map(|i| temp_file(&dir, &format!("f{i}"))).collect();
        // More ops than a ring holds, so the queue is refilled as it drains.
        let bufs: Vec<Vec<u8>> = (0..1000).map(|i| pattern(i as u8, 4096)).collect();
        let ops: Vec<WriteOp<'_>> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| WriteOp {
                file: &files[i % 3],
                offset: (i / 3) as u64 * 4096,
                data: b,
            })
            .collect();
        io.write_batch(&ops, true).unwrap();
        let mut backs: Vec<Vec<u8>> = vec![vec![0u8; 4096]; 1000];
        let mut reads: Vec<ReadOp<'_>> = backs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| ReadOp {
                file: &files[i % 3],
                offset: (i / 3) as u64 * 4096,
                buf: b,
            })
            .collect();
        io.read_batch(&mut reads).unwrap();
        assert_eq!(backs, bufs, "backend {}", io.kind());
    }
}

#[test]
fn reading_past_the_end_is_unexpected_eof() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "short");
        io.write_all_at(&f, b"0123456789", 0).unwrap();
        let mut buf = [0u8; 20];
        let err = io.read_exact_at(&f, &mut buf, 0).unwrap_err();
        assert_eq!(err.op, OpKind::Read);
        assert_eq!(
            err.source.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "backend {}",
            io.kind()
        );
    }
}

#[test]
fn empty_operations_are_no_ops() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "e");
        io.write_batch(&[], true).unwrap();
        io.write_all_at(&f, &[], 100).unwrap();
        io.read_batch(&mut []).unwrap();
        io.sync_all(&[]).unwrap();
        assert_eq!(f.len().unwrap(), 0);
    }
}

#[test]
fn errors_name_the_file_and_offset() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"x").unwrap();
        let f = IoFile::open(&path, false, false).unwrap();
        let err = io.write_all_at(&f, b"abc", 7).unwrap_err();
        assert_eq!(err.op, OpKind::Write);
        assert_eq!(err.path, path);
        assert_eq!(err.offset, Some(7));
        assert_eq!(err.errno(), Some(libc::EBADF), "backend {}", io.kind());
    }
}

#[test]
fn zero_fill_allocates_the_range() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "z");
        io.write_all_at(&f, &[0xff; 100], 0).unwrap();
        io.zero_fill(&f, 50, 3 << 20).unwrap();
        let mut buf = vec![1u8; 60];
        io.read_exact_at(&f, &mut buf, 0).unwrap();
        assert_eq!(&buf[..50], &[0xff; 50]);
        assert_eq!(&buf[50..], &[0; 10]);
        assert_eq!(f.len().unwrap(), 50 + (3 << 20));
    }
}

#[test]
fn injected_errors_hit_exactly_the_nth_operation() {
    let dir = tempfile::tempdir().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let io = fi.io();
    let f = temp_file(&dir, "f");
    fi.fail_nth(OpKind::Write, 3, libc::ENOSPC);
    io.write_all_at(&f, b"one", 0).unwrap();
    io.write_all_at(&f, b"two", 3).unwrap();
    let err = io.write_all_at(&f, b"three", 6).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOSPC));
    io.write_all_at(&f, b"four", 6).unwrap();
    assert_eq!(fi.count(OpKind::Write), 4);

    fi.fail_nth(OpKind::Sync, 1, libc::EIO);
    assert_eq!(io.sync(&f).unwrap_err().errno(), Some(libc::EIO));
    io.sync(&f).unwrap();

    fi.fail_nth(OpKind::Read, 1, libc::EIO);
    let mut buf = [0u8; 3];
    assert_eq!(io.read_exact_at(&f, &mut buf, 0).unwrap_err().errno(), Some(libc::EIO));
    io.read_exact_at(&f, &mut buf, 0).unwrap();
    assert_eq!(&buf, b"one");
}

#[test]
fn a_crash_drops_exactly_the_unsynced_writes() {
    let dir = tempfile::tempdir().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let io = fi.io();
    let f = temp_file(&dir, "f");
    let g = temp_file(&dir, "g");
    io.write_durable(&f, b"durable-f", 0).unwrap();
    io.write_all_at(&f, b"LOST", 2).unwrap();
    io.write_all_at(&g, b"gone entirely", 0).unwrap();
    io.write_all_at(&f, b"extends the file", 9).unwrap();
    assert_eq!(fi.unsynced_writes().len(), 3);
    fi.crash(CrashMode::DropUnsynced).unwrap();
    assert_eq!(std::fs::read(f.path()).unwrap(), b"durable-f");
    assert_eq!(std::fs::read(g.path()).unwrap(), b"");
    assert!(
        io.write_all_at(&f, b"x", 0).is_err(),
        "a crashed device takes no more writes"
    );
    assert!(io.sync(&f).is_err());
}

#[test]
fn a_torn_write_keeps_whole_sectors_before_the_tear() {
    let dir = tempfile::tempdir().unwrap();
    let fi = FaultInjector::new(Io::fallback());
    let io = fi.io();
    let f = temp_file(&dir, "f");
    let data = pattern(9, 2000);
    fi.tear_nth_write(1, 2);
    // The write starts at 100, so the second sector boundary after it is 1024.
    let err = io.write_all_at(&f, &data, 100).unwrap_err();
    assert_eq!(err.offset, Some(1024));
    assert!(fi.is_crashed());
    let on_disk = std::fs::read(f.path()).unwrap();
    assert_eq!(on_disk.len(), 1024);
    assert_eq!(&on_disk[100..], &data[..924]);
}

/// Two stages on two files, each small enough for one linked chain, and a
/// first stage too large for one (it runs on its own, then the next).
#[test]
fn stages_land_whole_on_every_backend() {
    for io in backends() {
        for first_len in [2usize, 40] {
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = (temp_file(&dir, "a"), temp_file(&dir, "b"));
            let pages: Vec<Vec<u8>> = (0..first_len).map(|i| pattern(i as u8, 4096)).collect();
            let first: Vec<WriteOp<'_>> = pages
                .iter()
                .enumerate()
                .map(|(i, p)| WriteOp {
                    file: &a,
                    offset: i as u64 * 4096,
                    data: p,
                })
                .collect();
            let tail = pattern(99, 100);
            let second = [WriteOp {
                file: &b,
                offset: 10,
                data: &tail,
            }];
            io.write_stages(&[
                Stage {
                    writes: &first,
                    sync: &[&a],
                },
                Stage {
                    writes: &second,
                    sync: &[&b],
                },
            ])
            .unwrap();
            for (i, p) in pages.iter().enumerate() {
                let mut back = vec![0u8; 4096];
                io.read_exact_at(&a, &mut back, i as u64 * 4096).unwrap();
                assert_eq!(&back, p, "backend {}, page {i}", io.kind());
            }
            let mut back = vec![0u8; 100];
            io.read_exact_at(&b, &mut back, 10).unwrap();
            assert_eq!(back, tail, "backend {}", io.kind());
        }
    }
}

/// A write that fails for real (the handle is read-only) ends the call with
/// its error, and nothing of the later stage is issued.
#[test]
fn a_failed_stage_stops_the_stages_after_it_on_every_backend() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        temp_file(&dir, "a");
        let read_only = IoFile::open(&dir.path().join("a"), false, false).unwrap();
        let later = temp_file(&dir, "later");
        let data = pattern(5, 512);
        let bad = [WriteOp {
            file: &read_only,
            offset: 0,
            data: &data,
        }];
        let good = [WriteOp {
            file: &later,
            offset: 0,
            data: &data,
        }];
        let err = io
            .write_stages(&[
                Stage {
                    writes: &bad,
                    sync: &[&read_only],
                },
                Stage {
                    writes: &good,
                    sync: &[&later],
                },
            ])
            .unwrap_err();
        assert_eq!(err.stage, 0, "backend {}: {err}", io.kind());
        assert_eq!(err.error.op, OpKind::Write, "backend {}: {err}", io.kind());
        assert_eq!(err.error.errno(), Some(libc::EBADF), "backend {}: {err}", io.kind());
        assert_eq!(
            later.len().unwrap(),
            0,
            "backend {}: the later stage was issued",
            io.kind()
        );
    }
}

/// A failed sync is reported as one, and the stage after it never starts.
#[test]
fn a_failed_sync_between_stages_stops_the_next() {
    let inj = FaultInjector::new(Io::fallback());
    let io = inj.io();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (temp_file(&dir, "a"), temp_file(&dir, "b"));
    let data = pattern(9, 4096);
    inj.fail_nth(OpKind::Sync, 1, libc::EIO);
    let err = io
        .write_stages(&[
            Stage {
                writes: &[WriteOp {
                    file: &a,
                    offset: 0,
                    data: &data,
                }],
                sync: &[&a],
            },
            Stage {
                writes: &[WriteOp {
                    file: &b,
                    offset: 0,
                    data: &data,
                }],
                sync: &[&b],
            },
        ])
        .unwrap_err();
    assert_eq!((err.stage, err.error.op), (0, OpKind::Sync), "{err}");
    assert_eq!(inj.count(OpKind::Write), 1, "the second stage's write was issued");
    assert_eq!(b.len().unwrap(), 0);
}

/// Threads that run their own writes and syncs stay bounded: of threads
/// alive at once inside `on_this_thread`, exactly `MAX_CALLER_THREADS` do,
/// the rest go through the submitters; the right goes back when a thread
/// ends; outside `on_this_thread` nobody does. Writes land either way.
#[test]
fn only_a_bounded_number_of_threads_run_their_own_writes() {
    use std::sync::{Arc, Barrier};
    let Ok(io) = Io::new(BackendChoice::Uring) else {
        eprintln!("io_uring unavailable here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let threads = caller::MAX_CALLER_THREADS + 3;
    let all_asked = Arc::new(Barrier::new(threads));
    let ran_here: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (io, all_asked, dir) = (&io, all_asked.clone(), &dir);
                s.spawn(move || {
                    assert!(!caller::runs_on_caller(), "outside on_this_thread");
                    let here = on_this_thread(|| {
                        let f = temp_file(dir, &format!("t{i}"));
                        io.write_durable(&f, &pattern(i as u8, 8192), 0).unwrap();
                        let mut back = vec![0u8; 8192];
                        io.read_exact_at(&f, &mut back, 0).unwrap();
                        assert_eq!(back, pattern(i as u8, 8192));
                        caller::runs_on_caller()
                    });
                    // Every thread holds what it got until all have asked.
                    all_asked.wait();
                    here
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ran_here.iter().filter(|&&h| h).count(), caller::MAX_CALLER_THREADS);
    // Those threads have ended: their rights are free again.
    let again = std::thread::spawn(|| on_this_thread(caller::runs_on_caller))
        .join()
        .unwrap();
    assert!(again);
}

/// Operations are counted by the path each took, in the backend and on the
/// thread that asked (inside `count_on_this_thread`), and only there.
#[test]
fn operations_are_counted_by_path_and_by_thread() {
    let dir = tempfile::tempdir().unwrap();
    let io = Io::new(BackendChoice::Auto).unwrap();
    let direct = IoFile::open_direct(&dir.path().join("d"), true, true).unwrap();
    let buffered = IoFile::open(&dir.path().join("b"), true, true).unwrap();
    let mut page = vec![0u8; 2 * 4096];
    let at = page.as_ptr().align_offset(4096);
    let page = &mut page[at..at + 4096];
    let before = io.stats();
    let ((), mine) = super::count_on_this_thread(|| {
        io.write_batch(
            &[WriteOp {
                file: &direct,
                offset: 0,
                data: page,
            }],
            true,
        )
        .unwrap();
        // Another thread's work is not this thread's.
        std::thread::scope(|s| {
            s.spawn(|| io.write_all_at(&buffered, b"x", 0).unwrap());
        });
        io.write_all_at(&buffered, b"y", 1).unwrap();
    });
    let all = io.stats().since(&before);
    if io.kind() == BackendKind::Uring && direct.is_direct() {
        assert_eq!((mine.ring_writes, mine.ring_syncs), (1, 1), "{mine}");
    }
    assert_eq!(mine.ring_writes + mine.call_writes, 2, "{mine}");
    assert_eq!(all.ring_writes + all.call_writes, 3, "{all}");
    if io.kind() == BackendKind::Uring && buffered.writes_block() {
        assert_eq!(mine.call_writes, 1, "a buffered write on ext4 is a pwrite: {mine}");
    }
}

/// Reads and writes issued together land and fill as if issued apart, on
/// every backend, direct files included.
#[test]
fn reads_and_writes_together_on_every_backend() {
    for io in backends() {
        let dir = tempfile::tempdir().unwrap();
        let f = IoFile::open_direct(&dir.path().join("d"), true, true).unwrap();
        // 64 aligned pages of memory: 32 written first, then 16 read back
        // while the other 16 are written.
        let mut mem = vec![0u8; 65 * 4096];
        let at = mem.as_ptr().align_offset(4096);
        let mem = &mut mem[at..at + 64 * 4096];
        for (i, p) in mem.chunks_mut(4096).enumerate() {
            p.fill(i as u8);
        }
        let (first, rest) = mem.split_at_mut(32 * 4096);
        let writes: Vec<WriteOp<'_>> = first
            .chunks(4096)
            .enumerate()
            .map(|(i, data)| WriteOp {
                file: &f,
                offset: i as u64 * 4096,
                data,
            })
            .collect();
        io.write_batch(&writes, true).unwrap();
        let (to_read, to_write) = rest.split_at_mut(16 * 4096);
        let mut reads: Vec<ReadOp<'_>> = to_read
            .chunks_mut(4096)
            .enumerate()
            .map(|(i, buf)| ReadOp {
                file: &f,
                offset: i as u64 * 4096,
                buf,
            })
            .collect();
        let more: Vec<WriteOp<'_>> = to_write
            .chunks(4096)
            .enumerate()
            .map(|(i, data)| WriteOp {
                file: &f,
                offset: (32 + i as u64) * 4096,
                data,
            })
            .collect();
        io.read_write_batch(&mut reads, &more).unwrap();
        drop(reads);
        for (i, p) in to_read.chunks(4096).enumerate() {
            assert!(p.iter().all(|&b| b == i as u8), "{}: read {i}", io.kind());
        }
        let mut back = vec![0u8; 16 * 4096];
        std::os::unix::fs::FileExt::read_exact_at(
            &std::fs::File::open(dir.path().join("d")).unwrap(),
            &mut back,
            32 * 4096,
        )
        .unwrap();
        for (i, p) in back.chunks(4096).enumerate() {
            assert!(p.iter().all(|&b| b == (48 + i) as u8), "{}: write {i}", io.kind());
        }
    }
}
