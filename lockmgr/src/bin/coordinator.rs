//! `understudy-coordinator`: the coordinator as a process of its own. The
//! `understudy coordinator` subcommand runs the same server.

use std::path::PathBuf;

use clap::Parser;
use lockmgr::{Coordinator, CoordinatorConfig, Endpoint, Secret};

/// Runs the Understudy coordinator: locks, membership, leases and the
/// counterpart registry for a cluster of nodes.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where to listen: `unix:/path/to.sock` or `tcp:127.0.0.1:7000` (port 0
    /// picks one). Repeatable.
    #[arg(long, required = true)]
    listen: Vec<Endpoint>,
    /// File holding the cluster secret (at least 16 bytes).
    #[arg(long)]
    secret_file: PathBuf,
    /// Directory of the coordinator's durable record.
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    lease_ms: u32,
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u32,
    #[arg(long, default_value_t = 1500)]
    failure_timeout_ms: u32,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let secret = match Secret::from_file(&args.secret_file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let io = match wal::io::Io::new(Default::default()) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mut cfg = CoordinatorConfig::new(args.listen, secret, args.state_dir, io);
    cfg.lease_ms = args.lease_ms;
    cfg.heartbeat_ms = args.heartbeat_ms;
    cfg.failure_timeout_ms = args.failure_timeout_ms;
    match Coordinator::start(cfg) {
        Ok(c) => {
            for ep in c.endpoints() {
                // Tests and scripts read the bound addresses from here.
                println!("listening on {ep}");
            }
            c.join();
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
