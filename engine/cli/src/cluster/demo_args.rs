//! The arguments of `understudy demo`, the cluster demo and its `--bench`.

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct ClusterDemoArgs {
    /// Transfer threads per node.
    #[arg(long, default_value_t = 2)]
    pub threads: u16,
    /// Bank accounts.
    #[arg(long, default_value_t = 200)]
    pub accounts: u32,
    /// Seconds of transfers before the kill, and again after the recovery.
    #[arg(long, default_value_t = 2)]
    pub seconds: u64,
    /// Keep the cluster directory (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Measure instead: kill node 1 `--kills` times and report percentiles
    /// of failure detection and of kill → locks released, and the
    /// survivors' commit rate during recoveries. The bank gets at least 100
    /// accounts per transfer node 1 keeps in flight.
    #[arg(long)]
    pub bench: bool,
    /// Kills the bench makes.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub kills: u32,
    /// Transfer threads of node 1 in the bench.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub victim_threads: u16,
    /// Transfers each of node 1's threads keeps in flight in the bench,
    /// interleaved (`node --txns-per-thread`): threads × this is about the
    /// transactions in flight when it is killed, a little less since each
    /// is between transfers part of the time (10 × 15 leaves about 100).
    /// 100 threads of one each is the same load, slower to kill: the
    /// kernel tears every thread down before the process's sockets close.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub victim_txns_per_thread: u16,
    /// Milliseconds node 1 pauses inside each transfer in the bench.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub think_ms: u64,
    /// Print the bench's figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}
