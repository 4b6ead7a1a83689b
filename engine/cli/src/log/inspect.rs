//! `understudy inspect-log`: prints a log directory's records, where the log
//! ends, its start LSN and its last checkpoint, as text or as one JSON
//! object per line. It only reads: it takes no lock, cuts nothing and may
//! look at the log of a live node.
//!
//! A live node's log (its writer holds the directory lock) is read up to
//! where its records stop, and said to be live: past that point the writer
//! may be in the middle of a write, so what the reader finds there is
//! neither a torn tail nor corruption, and is not reported as either.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};
use wal::{LogEnd, LogReader, Lsn, OwnerStatus, Record, RecordBody};

use crate::backend::BackendArg;
use crate::error::CliError;

/// Arguments of `understudy inspect-log`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The log directory (the one holding `control` and the segment files).
    #[arg(long)]
    pub dir: PathBuf,
    /// Print one JSON object per line: `{"type":"log",...}` first, then
    /// `{"type":"record",...}` per record, then `{"type":"end",...}`, or
    /// `{"type":"error",...}` where reading failed.
    #[arg(long)]
    pub json: bool,
    /// I/O backend used to read.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendArg,
}

pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match inspect(args, &mut out).and_then(|()| out.flush().map_err(|e| CliError::os("writing to stdout", e))) {
        // A reader that went away (`| head`) wanted no more; that is no error.
        Err(CliError::Os { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

fn inspect(args: &InspectArgs, out: &mut impl Write) -> Result<(), CliError> {
    let io = args.backend.open()?;
    let reader = LogReader::open(&args.dir, io)?;
    let live = LogReader::owner_status(&args.dir)? == OwnerStatus::Alive;
    let w = |out: &mut dyn Write, line: std::fmt::Arguments<'_>| {
        writeln!(out, "{line}").map_err(|e| CliError::os("writing to stdout", e))
    };
    let segment_size = reader.layout().segment_size;
    if args.json {
        let head = json!({
            "type": "log",
            "dir": args.dir.display().to_string(),
            "node_id": reader.node_id(),
            "segment_size": segment_size,
            "start_lsn": reader.start_lsn().0,
            "checkpoint_lsn": reader.checkpoint_lsn().map(|l| l.0),
            "live": live,
        });
        w(out, format_args!("{head}"))?;
    } else {
        w(
            out,
            format_args!(
                "log {}: node {}, segments of {segment_size} bytes{}",
                args.dir.display(),
                reader.node_id(),
                if live {
                    "; live: its node is running and writing it"
                } else {
                    ""
                }
            ),
        )?;
        w(
            out,
            format_args!(
                "{:>12} {:>10} {:>12} {:>5} {:>5} {:<12} body",
                "lsn", "txn", "prev_lsn", "scope", "agent", "kind"
            ),
        )?;
    }

    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0u64;
    let mut scan = reader.scan(reader.start_lsn());
    let mut live_end = None;
    while let Some(rec) = scan.next() {
        let rec = match rec {
            Ok(rec) => rec,
            // The writer is at work past here: where its records stop is
            // where this reading ends.
            Err(_) if live => {
                live_end = Some(scan.position());
                break;
            }
            Err(e) => {
                let err = CliError::scan(scan.position(), e);
                if args.json {
                    let line = json!({"type": "error", "lsn": scan.position().0, "message": err.to_string()});
                    w(out, format_args!("{line}"))?;
                }
                // Whatever was printed so far is worth seeing with the error.
                out.flush().map_err(|e| CliError::os("writing to stdout", e))?;
                return Err(err);
            }
        };
        records += 1;
        *kinds.entry(format!("{:?}", rec.body.kind())).or_default() += 1;
        if args.json {
            w(out, format_args!("{}", record_json(&rec)))?;
        } else {
            let line = format!(
                "{:>12} {:>10} {:>12} {:>5} {:>5} {:<12} {}",
                // Lsn's Display ignores width; pad the number.
                rec.lsn.0,
                rec.meta.txn,
                rec.meta.prev_lsn.map_or("-".to_string(), |l| l.0.to_string()),
                rec.meta.scope,
                rec.meta.agent,
                format!("{:?}", rec.body.kind()),
                body_summary(&rec.body)
            );
            w(out, format_args!("{}", line.trim_end()))?;
        }
    }
    let end = match live_end {
        Some(next) => LogEnd {
            next,
            torn: None,
            leftovers: false,
        },
        None => scan
            .end()
            .cloned()
            .ok_or_else(|| CliError::Check("the scan ended without saying where the log ends".into()))?,
    };

    if args.json {
        let line = json!({
            "type": "end",
            "next_lsn": end.next.0,
            "torn": if live { None } else { end.torn.as_ref().map(|t| t.to_string()) },
            "live": live,
            "records": records,
            "kinds": kinds,
            "start_lsn": reader.start_lsn().0,
            "checkpoint_lsn": reader.checkpoint_lsn().map(|l| l.0),
        });
        w(out, format_args!("{line}"))?;
    } else {
        let counts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let counts = if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        };
        w(out, format_args!("records: {records}{counts}"))?;
        if live {
            w(
                out,
                format_args!(
                    "end: read up to LSN {}; the log is live, and its writer may be writing past there",
                    end.next
                ),
            )?;
        } else {
            w(out, format_args!("end: {}", describe_end(&end)))?;
        }
        w(out, format_args!("start LSN: {}", reader.start_lsn()))?;
        w(
            out,
            format_args!("last checkpoint: {}", lsn_or_none(reader.checkpoint_lsn())),
        )?;
    }
    Ok(())
}

fn describe_end(end: &LogEnd) -> String {
    match &end.torn {
        None => format!("next LSN {}, no torn tail", end.next),
        Some(damage) => format!("next LSN {}, torn tail there: {damage}", end.next),
    }
}

fn lsn_or_none(lsn: Option<Lsn>) -> String {
    lsn.map_or_else(|| "none".to_string(), |l| l.to_string())
}

/// How many checkpoint entries the text form lists before eliding the rest.
const SHOWN_ACTIVE: usize = 6;

fn body_summary(body: &RecordBody) -> String {
    match body {
        RecordBody::Begin | RecordBody::Commit | RecordBody::Abort | RecordBody::End => String::new(),
        RecordBody::Undo(u) => {
            let after = u
                .after
                .as_ref()
                .map_or(String::new(), |a| format!(", after-image {} B", a.len()));
            format!(
                "file {} page {} offset {}: before-image {} B{after}",
                u.file_id,
                u.page_no,
                u.offset_in_page,
                u.before.len()
            )
        }
        RecordBody::AgentUndo(p) => format!("{} B of agent data", p.len()),
        RecordBody::Compensation { undo_next } => format!("undo next: {}", lsn_or_none(*undo_next)),
        RecordBody::Checkpoint(active) => format!(
            "{} active: {}",
            active.len(),
            first_few(active, |a| format!("txn {} from {}", a.txn, a.first_lsn))
        ),
        RecordBody::CommitIntent(pages) => format!(
            "forcing {} pages: {}",
            pages.len(),
            first_few(pages, |p| format!("file {} page {}", p.file_id, p.page_no))
        ),
    }
}

/// The first [`SHOWN_ACTIVE`] of `items`, and how many more there are.
fn first_few<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    let mut shown: Vec<String> = items.iter().take(SHOWN_ACTIVE).map(show).collect();
    if items.len() > SHOWN_ACTIVE {
        shown.push(format!("and {} more", items.len() - SHOWN_ACTIVE));
    }
    shown.join(", ")
}

fn record_json(rec: &Record) -> Value {
    let body = match &rec.body {
        RecordBody::Begin | RecordBody::Commit | RecordBody::Abort | RecordBody::End => Value::Null,
        RecordBody::Undo(u) => json!({
            "file_id": u.file_id,
            "page_no": u.page_no,
            "offset_in_page": u.offset_in_page,
            "before_len": u.before.len(),
            "after_len": u.after.as_ref().map(Vec::len),
        }),
        RecordBody::AgentUndo(p) => json!({ "len": p.len() }),
        RecordBody::Compensation { undo_next } => json!({ "undo_next": undo_next.map(|l| l.0) }),
        RecordBody::Checkpoint(active) => json!({
            "active": active
                .iter()
                .map(|a| json!({ "txn": a.txn, "first_lsn": a.first_lsn.0 }))
                .collect::<Vec<_>>(),
        }),
        RecordBody::CommitIntent(pages) => json!({
            "pages": pages
                .iter()
                .map(|p| json!({ "file_id": p.file_id, "page_no": p.page_no }))
                .collect::<Vec<_>>(),
        }),
    };
    json!({
        "type": "record",
        "lsn": rec.lsn.0,
        "txn": rec.meta.txn,
        "prev_lsn": rec.meta.prev_lsn.map(|l| l.0),
        "scope": rec.meta.scope,
        "agent": rec.meta.agent,
        "kind": format!("{:?}", rec.body.kind()),
        "body": body,
    })
}
