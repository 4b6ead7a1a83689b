//! `bench-worker`: one node process of the multi-process commit benchmark.
//!
//! Opens node `--id` of `--cluster`, prints `READY`, then serves commands on
//! stdin: `RUN <transactions> <threads>` runs that many two-row updates
//! spread over that many threads and answers `DONE <nanoseconds>`; end of
//! input closes the node. The benchmark times only the runs, not process
//! start-up.

use std::io::{BufRead, Write};
use std::time::Instant;

use understudy::{Node, NodeOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| {
                eprintln!("usage: bench-worker --cluster DIR --id N");
                std::process::exit(2)
            })
            .clone()
    };
    let dir = std::path::PathBuf::from(arg("--cluster"));
    let id: u32 = arg("--id").parse().unwrap_or_else(|_| std::process::exit(2));
    let node = match Node::open(&dir, id, NodeOptions::default()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("READY");
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut parts = line.split_whitespace();
        if parts.next() != Some("RUN") {
            continue;
        }
        let n: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let threads: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
        let start = Instant::now();
        let failed = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let node = &node;
                    s.spawn(move || {
                        let mut rng = rand::rng();
                        let share = n / threads + u64::from(t < n % threads);
                        (0..share).try_for_each(|_| benches::rows::update_two(node, &mut rng).map(|_| ()))
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()?.err()).next()
        });
        if let Some(e) = failed {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        println!("DONE {}", start.elapsed().as_nanos());
        let _ = std::io::stdout().flush();
    }
    let _ = node.close();
}
