//! Arbitrary bytes as the contents of a log's files — the record area of a
//! segment, a segment header, or the control file — then a reader opens the
//! log, scans it, walks chains and reads at arbitrary LSNs. Nothing panics and
//! nothing allocates beyond a segment.
#![no_main]

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wal::io::Io;
use wal::segment::{segment_path, SEGMENT_HEADER_SIZE};
use wal::{Log, LogConfig, LogReader, Lsn};

const SEGMENT: u64 = 64 * 1024;

struct Template {
    _dir: tempfile::TempDir,
    path: PathBuf,
    control: Vec<u8>,
    segment: Vec<u8>,
}

/// A fresh log made once; each input starts from a copy of its files.
fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let cfg = LogConfig {
            segment_size: SEGMENT,
            ..LogConfig::new(1, Io::fallback())
        };
        Log::open(&path, cfg).unwrap().close().unwrap();
        let control = std::fs::read(path.join("control")).unwrap();
        let segment = std::fs::read(segment_path(&path, 0)).unwrap();
        Template {
            _dir: dir,
            path,
            control,
            segment,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let t = template();
    let mut control = t.control.clone();
    let mut segment = t.segment.clone();
    match mode % 3 {
        0 => {
            let n = rest.len().min((SEGMENT - SEGMENT_HEADER_SIZE) as usize);
            segment[SEGMENT_HEADER_SIZE as usize..][..n].copy_from_slice(&rest[..n]);
        }
        1 => {
            let n = rest.len().min(SEGMENT as usize);
            segment[..n].copy_from_slice(&rest[..n]);
        }
        _ => {
            let n = rest.len().min(1024);
            control.resize(control.len().max(n), 0);
            control[..n].copy_from_slice(&rest[..n]);
        }
    }
    std::fs::write(t.path.join("control"), &control).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment_path(&t.path, 0))
        .unwrap();
    f.write_all_at(&segment, 0).unwrap();

    let Ok(reader) = LogReader::open(&t.path, Io::fallback()) else { return };
    let mut lsns = Vec::new();
    for rec in reader.scan(reader.start_lsn()).take(10_000) {
        match rec {
            Ok(r) => lsns.push(r.lsn),
            Err(_) => break,
        }
    }
    for &lsn in lsns.iter().rev().take(16) {
        for r in reader.chain(lsn).take(10_000) {
            if r.is_err() {
                break;
            }
        }
    }
    for chunk in rest.chunks(8).take(16) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        let _ = reader.read(Lsn(u64::from_le_bytes(b) % (2 * SEGMENT)));
    }
    let _ = reader.find_end();
});
