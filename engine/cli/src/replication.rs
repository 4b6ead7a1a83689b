//! `understudy replication …` and the primary side of `understudy node`:
//! a first copy for a standby (`seed`), a standby process (`standby`), the
//! report of either side (`status [--json]`), and the flags that make a
//! one-node cluster's node a replication primary (`--replication-listen`).
//!
//! Each side writes its report about five times a second (and as it stops)
//! to `replication/status.json` in its cluster directory, replaced by a
//! rename; `status` prints it.
//!
//! ## Format of `status.json`
//! A primary: `{"role": "primary", "at_unix_ms", "committed",
//! "sync_standbys", "standbys": [{"standby", "addr", "connected",
//! "durable", "applied", "resends", "lag"}], "refused": [..]}`. A standby:
//! `{"role": "standby", "at_unix_ms", "connected", "base", "durable",
//! "applied", "primary_committed", "lag", "resends", "connections",
//! "last_error"}`. `lag` counts commits the primary has that the standby
//! has not applied (as last heard, for a standby).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use replication::{Primary, PrimaryConfig, ReplicationSecret, StandbyConfig, StandbyHandle};
use serde_json::{json, Value};
use understudy::{Node, NodeOptions};

use crate::error::CliError;

/// How often each side rewrites its report.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// `understudy replication …`.
#[derive(clap::Subcommand, Debug)]
pub enum ReplicationCommand {
    /// Make a standby's first full copy from a stopped one-node primary
    /// site: a new cluster directory, the data files, the database
    /// identity, and the commit the copy holds.
    Seed(SeedArgs),
    /// Run a standby: receive the primary's redo, keep it durable, apply
    /// it to this copy, until SIGTERM or SIGINT (or killed).
    Standby(StandbyArgs),
    /// Print a primary's or a standby's last report.
    Status(StatusArgs),
}

/// Arguments of `replication seed`.
#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// The primary's cluster directory (no node running).
    #[arg(long)]
    pub primary: PathBuf,
    /// The standby's cluster directory to create.
    #[arg(long)]
    pub standby: PathBuf,
}

/// Arguments of `replication standby`.
#[derive(clap::Args, Debug)]
pub struct StandbyArgs {
    /// The standby's copy (made by `replication seed`).
    #[arg(long)]
    pub cluster: PathBuf,
    /// The primary's replication address (`HOST:PORT`).
    #[arg(long)]
    pub primary: SocketAddr,
    /// The replication secret file (the same on every site of the group).
    #[arg(long)]
    pub secret: PathBuf,
    /// This standby's id in the primary's report.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
}

/// Arguments of `replication status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The site's cluster directory.
    #[arg(long)]
    pub cluster: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `understudy node` that make it a replication primary.
#[derive(clap::Args, Debug, Default)]
pub struct PrimaryArgs {
    /// Write redo and ship it to standbys connecting here (`HOST:PORT`).
    /// The cluster must have one node.
    #[arg(long)]
    pub replication_listen: Option<SocketAddr>,
    /// The replication secret file.
    #[arg(long, requires = "replication_listen")]
    pub replication_secret: Option<PathBuf>,
    /// Sync mode: a commit returns once this many standbys hold it
    /// durably (0: async).
    #[arg(long, default_value_t = 0, requires = "replication_listen")]
    pub sync_standbys: usize,
    /// In sync mode, how long a commit waits for the standbys before it
    /// fails as not replicated.
    #[arg(long, default_value_t = 10_000, requires = "replication_listen")]
    pub sync_timeout_ms: u64,
}

/// Runs `understudy replication …`.
pub fn run(cmd: &ReplicationCommand) -> Result<(), CliError> {
    match cmd {
        ReplicationCommand::Seed(a) => seed(a),
        ReplicationCommand::Standby(a) => standby(a),
        ReplicationCommand::Status(a) => status(a),
    }
}

fn seed(args: &SeedArgs) -> Result<(), CliError> {
    let dir = std::path::absolute(&args.standby)
        .map_err(|e| CliError::os(format!("resolving {}", args.standby.display()), e))?;
    let endpoint = lockmgr::Endpoint::Unix(dir.join("coordinator.sock"));
    let base = replication::seed(&args.primary, &dir, endpoint)?;
    say!("SEEDED {} base={base}", dir.display());
    Ok(())
}

fn report_path(dir: &Path) -> PathBuf {
    dir.join("replication").join("status.json")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn write_report(dir: &Path, v: &Value) {
    let target = report_path(dir);
    let tmp = target.with_extension("json.tmp");
    if let Err(e) = std::fs::write(&tmp, v.to_string()).and_then(|()| std::fs::rename(&tmp, &target)) {
        tracing::warn!(error = %e, "the replication report was not written");
    }
}

fn standby_report(h: &StandbyHandle) -> Value {
    let s = h.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    json!({
        "role": "standby",
        "at_unix_ms": now_ms(),
        "connected": s.connected,
        "base": s.base,
        "durable": s.durable,
        "applied": s.applied,
        "primary_committed": s.primary_committed,
        "lag": s.lag(),
        "resends": s.resends,
        "connections": s.connections,
        "last_error": s.last_error,
    })
}

fn standby(args: &StandbyArgs) -> Result<(), CliError> {
    let cfg = StandbyConfig {
        cluster_dir: args.cluster.clone(),
        primary: args.primary,
        secret: ReplicationSecret::from_file(&args.secret)?,
        standby_id: args.id,
    };
    let handle = Arc::new(StandbyHandle::default());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| CliError::os("handling SIGTERM and SIGINT", e))?;
    }
    let watcher = {
        let (handle, stop, dir) = (handle.clone(), stop.clone(), args.cluster.clone());
        std::thread::spawn(move || loop {
            write_report(&dir, &standby_report(&handle));
            if stop.load(Ordering::Acquire) {
                handle.stop();
                return;
            }
            std::thread::sleep(REPORT_EVERY);
        })
    };
    say!("STANDBY {} primary={}", args.cluster.display(), args.primary);
    std::io::Write::flush(&mut std::io::stdout()).map_err(|e| CliError::os("writing to stdout", e))?;
    let result = replication::run_standby(&cfg, &handle);
    stop.store(true, Ordering::Release);
    let _ = watcher.join();
    write_report(&args.cluster, &standby_report(&handle));
    Ok(result?)
}

fn status(args: &StatusArgs) -> Result<(), CliError> {
    let path = report_path(&args.cluster);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::os(
            format!("reading {} (no primary or standby has run here)", path.display()),
            e,
        )
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{} is not a report: {e}", path.display())))?;
    if args.json {
        say!("{v}");
        return Ok(());
    }
    let age_ms = now_ms().saturating_sub(v["at_unix_ms"].as_u64().unwrap_or(0));
    match v["role"].as_str() {
        Some("primary") => {
            say!(
                "primary: committed={} sync_standbys={} (reported {age_ms} ms ago)",
                v["committed"],
                v["sync_standbys"]
            );
            for s in v["standbys"].as_array().into_iter().flatten() {
                say!(
                    "  standby {} at {}: connected={} durable={} applied={} lag={} resends={}",
                    s["standby"],
                    s["addr"],
                    s["connected"],
                    s["durable"],
                    s["applied"],
                    s["lag"],
                    s["resends"]
                );
            }
        }
        _ => say!(
            "standby: connected={} base={} durable={} applied={} primary_committed={} lag={} (reported {age_ms} ms ago)",
            v["connected"],
            v["base"],
            v["durable"],
            v["applied"],
            v["primary_committed"],
            v["lag"]
        ),
    }
    Ok(())
}

/// A node's primary side: created before the node opens (its commit gate
/// goes into the options), serving once it has.
pub struct PrimarySide {
    primary: Primary,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    reporter: Option<std::thread::JoinHandle<()>>,
}

impl PrimaryArgs {
    /// With `--replication-listen`: the primary, and `opts` with redo on
    /// and its commit gate.
    pub fn prepare(&self, cluster: &Path, opts: NodeOptions) -> Result<(NodeOptions, Option<PrimarySide>), CliError> {
        let Some(listen) = self.replication_listen else {
            return Ok((opts, None));
        };
        let secret_file = self
            .replication_secret
            .as_ref()
            .ok_or_else(|| CliError::Invalid("--replication-listen needs --replication-secret".into()))?;
        let primary = Primary::new(PrimaryConfig {
            cluster_dir: cluster.to_path_buf(),
            listen,
            secret: ReplicationSecret::from_file(secret_file)?,
            sync_standbys: self.sync_standbys,
            sync_timeout: Duration::from_millis(self.sync_timeout_ms),
        })?;
        let opts = NodeOptions {
            redo: true,
            commit_gate: Some(primary.gate()),
            ..opts
        };
        let side = PrimarySide {
            primary,
            dir: cluster.to_path_buf(),
            stop: Arc::new(AtomicBool::new(false)),
            reporter: None,
        };
        Ok((opts, Some(side)))
    }
}

impl PrimarySide {
    /// Starts shipping `node`'s redo, and the report.
    pub fn serve(&mut self, node: &Node) -> Result<(), CliError> {
        let watermark = node
            .redo_watermark()
            .ok_or_else(|| CliError::Invalid("the node writes no redo".into()))?;
        self.primary.serve(watermark)?;
        let status = self.primary.status_source();
        let (stop, dir) = (self.stop.clone(), self.dir.clone());
        self.reporter = Some(std::thread::spawn(move || loop {
            write_report(&dir, &primary_report(&status()));
            if stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(REPORT_EVERY);
        }));
        Ok(())
    }
}

impl Drop for PrimarySide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.reporter.take() {
            let _ = t.join();
        }
    }
}

fn primary_report(s: &replication::PrimaryStatus) -> Value {
    let standbys: Vec<Value> = s
        .standbys
        .iter()
        .map(|v| {
            json!({
                "standby": v.standby,
                "addr": v.addr,
                "connected": v.connected,
                "durable": v.durable,
                "applied": v.applied,
                "resends": v.resends,
                "lag": s.committed.saturating_sub(v.applied),
            })
        })
        .collect();
    json!({
        "role": "primary",
        "at_unix_ms": now_ms(),
        "committed": s.committed,
        "sync_standbys": s.sync_standbys,
        "standbys": standbys,
        "refused": s.refused,
    })
}
