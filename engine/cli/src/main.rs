//! `understudy`: the command-line entry point of the Understudy storage engine.
//!
//! This file owns argument parsing and the mapping from outcomes to exit
//! codes: 0 on success, 1 on any error (printed as `error: ...`), 2 for bad
//! usage (clap's own convention). The subcommands live in the
//! `understudy_cli` library beside it.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use understudy_cli::cluster::bank_check::BankCheckArgs;
use understudy_cli::cluster::coordinator::CoordinatorArgs;
use understudy_cli::cluster::demo_args::ClusterDemoArgs;
use understudy_cli::cluster::init::InitArgs;
use understudy_cli::cluster::node::NodeArgs;
use understudy_cli::cluster::recover::{RecoverArgs, RequestRestartArgs, RestartLightArgs};
use understudy_cli::cluster::status::StatusArgs;
use understudy_cli::cluster::{bank_check, coordinator, demo, init, node, recover, status};
use understudy_cli::log::{child, demo as log_demo, inspect};
use understudy_cli::log::{child::ChildArgs, demo::DemoArgs, inspect::InspectArgs};
use understudy_cli::replication::{self, ReplicationCommand};
use understudy_cli::sql::{self, SqlArgs};

/// Understudy: a transactional storage engine whose peers undo a failed node's
/// in-flight work from its private write-ahead log.
#[derive(Parser, Debug)]
#[command(name = "understudy", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster demo: a coordinator and three nodes running bank
    /// transfers; one node is killed with SIGKILL mid-transaction, a peer
    /// recovers it, and the bank is checked.
    Demo(ClusterDemoArgs),
    /// Show the write-ahead log at work: group-commit throughput, then
    /// processes killed with SIGKILL mid-write and every acknowledged commit
    /// found again after the crash.
    LogDemo(DemoArgs),
    /// Recover a failed node from another member: register as its
    /// counterpart, back out its in-flight work, release its locks.
    Recover(RecoverArgs),
    /// Start a failed node with minimal resources only to back out its own
    /// work and release its retained locks, then exit.
    RestartLight(RestartLightArgs),
    /// File a restart request for a node: as soon as it has failed (now, if
    /// it has), the live node with the lowest id runs `restart-light` for it.
    RequestRestart(RequestRestartArgs),
    /// Print every record of a log directory, where the log ends, its start
    /// LSN and its last checkpoint.
    InspectLog(InspectArgs),
    /// The process the demo kills: appends transactions and prints one
    /// `ACK <txn> <commit_lsn>` line per durable commit.
    #[command(hide = true)]
    LogChild(ChildArgs),
    /// Create a cluster directory: configuration, a fresh secret, and empty
    /// data, log and coordinator directories.
    ClusterInit(InitArgs),
    /// Run a cluster's coordinator (locks, membership, leases, the
    /// counterpart registry) as its own process, until killed.
    Coordinator(CoordinatorArgs),
    /// Ask a cluster's coordinator for its members: live or failed,
    /// incarnation, recovery status, retained locks.
    ///
    /// A node that left cleanly shows as failed and recovered (nothing of it
    /// needs backing out); one that died shows as failed and inactive, with
    /// its retained write locks, until it restarts or a peer recovers it.
    Status(StatusArgs),
    /// Run one node of a cluster: join (or restart and back out its own
    /// in-flight work), optionally create the bank, run a workload.
    Node(NodeArgs),
    /// Join as a node and check the bank: balances sum to the starting
    /// total, and every acknowledged transfer is in the journal.
    BankCheck(BankCheckArgs),
    /// Loosely-coupled mode: seed a standby's copy, run a standby, print a
    /// site's replication report. (A node becomes a primary with
    /// `node --replication-listen`.)
    #[command(subcommand)]
    Replication(ReplicationCommand),
    /// Run SQL on an embedded database directory (created if there is
    /// none): the statements of `-e`, or those read from standard input, one
    /// per `;`-terminated line group, with results printed as tables.
    Sql(SqlArgs),
}

fn main() -> ExitCode {
    // Warnings only by default: the log reports a torn tail it cuts off at
    // that level, which is worth seeing after a crash. RUST_LOG overrides.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only for a person at a terminal, and never under NO_COLOR
    // (no-color.org): a log file or a pipe gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();

    // `parse` exits with code 2 on bad usage and 0 for --help/--version.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::LogDemo(args) => log_demo::run(&args),
        Command::Recover(args) => recover::recover(&args),
        Command::RestartLight(args) => recover::restart_light(&args),
        Command::RequestRestart(args) => recover::request_restart(&args),
        Command::InspectLog(args) => inspect::run(&args),
        Command::LogChild(args) => child::run(&args),
        Command::ClusterInit(args) => init::init(&args),
        Command::Coordinator(args) => coordinator::run(&args),
        Command::Status(args) => status::status(&args),
        Command::Node(args) => node::run(&args),
        Command::BankCheck(args) => bank_check::run(&args),
        Command::Replication(cmd) => replication::run(&cmd),
        Command::Sql(args) => sql::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.next_step() {
                Some(step) => eprintln!("error: {e}; {step}"),
                None => eprintln!("error: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}
