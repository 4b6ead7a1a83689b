//! `understudy cluster-init`: creating a cluster directory — its
//! configuration, a fresh secret, and empty data, log and coordinator
//! directories.

use std::path::PathBuf;

use lockmgr::Endpoint;
use understudy::Cluster;

use crate::error::CliError;

/// Arguments of `understudy cluster-init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The cluster directory to create (it must not hold a cluster yet).
    #[arg(long)]
    pub dir: PathBuf,
    /// The ids of the cluster's nodes, comma-separated, each non-zero.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub nodes: Vec<u32>,
    /// Where the coordinator listens: `unix:PATH` or `tcp:HOST:PORT`.
    /// Default: `unix:<DIR>/coordinator.sock`, with DIR made absolute so that
    /// processes started elsewhere find it.
    #[arg(long)]
    pub coordinator: Option<Endpoint>,
    /// Page size of the table files: 4096, 8192 or 16384.
    #[arg(long, default_value_t = 4096)]
    pub page_size: usize,
}

/// Runs `understudy cluster-init`.
pub fn init(args: &InitArgs) -> Result<(), CliError> {
    let dir =
        std::path::absolute(&args.dir).map_err(|e| CliError::os(format!("resolving {}", args.dir.display()), e))?;
    let coordinator = match &args.coordinator {
        // Nodes find the coordinator through the configuration only, so a
        // port the kernel picks at bind time could never be found.
        Some(Endpoint::Tcp(a)) if a.port() == 0 => {
            return Err(CliError::Invalid(
                "a TCP coordinator needs a fixed port: nodes find it through the cluster configuration".into(),
            ))
        }
        Some(ep) => ep.clone(),
        None => Endpoint::Unix(dir.join("coordinator.sock")),
    };
    let cluster = Cluster::create(&dir, &args.nodes, coordinator, args.page_size)?;
    let ids: Vec<String> = cluster.nodes.iter().map(u32::to_string).collect();
    say!("created cluster {}", cluster.dir.display());
    say!("nodes: {}", ids.join(","));
    say!("coordinator: {}", cluster.coordinator);
    say!("page size: {}", cluster.page_size);
    Ok(())
}
