//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use rand::Rng;
use wal::io::fault::FaultInjector;
use wal::io::{BackendChoice, Io, IoFile, Stage, WriteOp};
use wal::{Log, LogConfig, LogReader, Lsn, PageUndo, Record, RecordBody, RecordMeta};

/// Every backend this machine offers.
pub fn backends() -> Vec<Io> {
    let mut out = vec![Io::fallback()];
    if let Ok(io) = Io::new(BackendChoice::Uring) {
        out.push(io);
    }
    out
}

/// Small segments so that tests cross segment boundaries often.
pub fn small_config(node: u32, io: Io) -> LogConfig {
    LogConfig {
        segment_size: 64 * 1024,
        max_pending_bytes: 256 * 1024,
        flush_threshold_bytes: 64 * 1024,
        ..LogConfig::new(node, io)
    }
}

/// A random body of a realistic mix: mostly undo records.
pub fn random_body(rng: &mut impl Rng) -> RecordBody {
    match rng.random_range(0..10) {
        0 => RecordBody::Begin,
        1 => RecordBody::Commit,
        2 => RecordBody::End,
        _ => {
            let len = rng.random_range(0..600);
            let mut before = vec![0u8; len];
            rng.fill_bytes(&mut before);
            RecordBody::Undo(PageUndo {
                file_id: rng.random_range(0..4),
                page_no: rng.random_range(0..1000),
                offset_in_page: rng.random_range(0..4096),
                before,
                after: None,
            })
        }
    }
}

/// Every record from the start, failing on any error.
pub fn read_all(dir: &Path, io: Io) -> Vec<Record> {
    let reader = LogReader::open(dir, io).unwrap();
    reader.scan(reader.start_lsn()).map(|r| r.unwrap()).collect()
}

/// Appends `bodies` as records of txn `i % 5`, chained per txn, and returns
/// what was appended with its LSN.
pub fn append_chained(log: &Log, bodies: &[RecordBody]) -> Vec<Record> {
    let mut last: [Option<Lsn>; 5] = [None; 5];
    bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let txn = (i % 5) as u64 + 1;
            let meta = RecordMeta::txn(txn, last[i % 5]);
            let lsn = log.append(meta, body).unwrap();
            last[i % 5] = Some(lsn);
            Record {
                lsn,
                meta,
                body: body.clone(),
            }
        })
        .collect()
}

/// The transaction of every record from the start, in order.
pub fn txns_in(dir: &Path, io: Io) -> Vec<u64> {
    read_all(dir, io).iter().map(|r| r.meta.txn).collect()
}

/// A log (node 1, small segments) in `dir/log` whose I/O goes through a
/// fault injector over `io`, and a data file `dir/data` beside it.
pub fn log_beside_data(dir: &Path, io: &Io) -> (Log, Arc<FaultInjector>, IoFile) {
    let data = IoFile::open(&dir.join("data"), true, true).unwrap();
    let inj = FaultInjector::new(io.clone());
    let log = Log::open(&dir.join("log"), small_config(1, inj.io())).unwrap();
    (log, inj, data)
}

/// Runs `f` with one stage: `page` written at `offset` of `data`, then
/// `data` synced.
pub fn with_page_stage<R>(data: &IoFile, offset: u64, page: &[u8], f: impl FnOnce(&[Stage<'_>]) -> R) -> R {
    let writes = [WriteOp {
        file: data,
        offset,
        data: page,
    }];
    f(&[Stage {
        writes: &writes,
        sync: &[data],
    }])
}
