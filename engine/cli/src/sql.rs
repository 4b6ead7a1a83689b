//! `understudy sql DIR [-e SQL]`: SQL on an embedded database
//! (`understudy_sql`), results printed as tables.
//! `understudy sql --cluster DIR --id N [-e SQL]`: the same as node `N` of
//! a cluster, beside the other nodes running SQL on the same database: a
//! node that dies mid-transaction is recovered by a peer (this one among
//! them), its transaction rolled back, rows, schemas and indexes alike.
//!
//! With `-e`, its statements run and the program exits, failing if one
//! failed. Without, statements are read from standard input: lines gather
//! until one ends in `;`, then they run; an error is printed and reading
//! goes on, and the program fails at the end if any statement failed. A
//! transaction left open (`BEGIN` without `COMMIT`) is rolled back at exit.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use understudy::{Node, NodeOptions};
use understudy_sql::gluesql_core::prelude::Glue;
use understudy_sql::{render, UnderstudyStorage};

use crate::error::CliError;

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The database directory; created, with an empty database, if absent.
    #[arg(required_unless_present = "cluster", conflicts_with = "cluster")]
    pub dir: Option<PathBuf>,
    /// Instead of an embedded database, a cluster's directory (made by
    /// `cluster-init`): the statements run on node `--id` of it, which
    /// joins the cluster (or restarts, backing out its own in-flight work)
    /// and leaves it at exit.
    #[arg(long, requires = "id")]
    pub cluster: Option<PathBuf>,
    /// This node's id in `--cluster`.
    #[arg(long, requires = "cluster")]
    pub id: Option<u32>,
    /// Run the cluster's coordinator inside this process (when no
    /// `understudy coordinator` serves it).
    #[arg(long, requires = "cluster")]
    pub embed_coordinator: bool,
    /// Statements to run, instead of reading them from standard input.
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    pub execute: Option<String>,
}

pub fn run(args: &SqlArgs) -> Result<(), CliError> {
    let node = match (&args.cluster, args.id, &args.dir) {
        (Some(cluster), Some(id), _) => {
            let opts = NodeOptions {
                embed_coordinator: args.embed_coordinator,
                ..NodeOptions::default()
            };
            Node::open(cluster, id, opts)?
        }
        (_, _, Some(dir)) => understudy::open(dir)?,
        // clap requires a directory or a cluster and an id.
        _ => {
            return Err(CliError::Invalid(
                "give a database directory, or --cluster DIR --id N".to_owned(),
            ))
        }
    };
    let storage = UnderstudyStorage::new(node.clone()).map_err(|e| CliError::Sql(e.to_string()))?;
    let mut glue = Glue::new(storage);
    let result = match &args.execute {
        Some(sql) => execute(&mut glue, sql),
        None => read_stdin(&mut glue),
    };
    // Dropping the storage rolls back a transaction left open, so the node
    // can close cleanly.
    drop(glue);
    node.close()?;
    result
}

/// Runs `sql` and prints what each statement gave.
fn execute(glue: &mut Glue<UnderstudyStorage>, sql: &str) -> Result<(), CliError> {
    let payloads = glue.execute(sql).map_err(|e| CliError::Sql(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    for p in &payloads {
        out.write_all(render(p).as_bytes())
            .map_err(|e| CliError::os("writing to stdout", e))?;
    }
    Ok(())
}

fn read_stdin(glue: &mut Glue<UnderstudyStorage>) -> Result<(), CliError> {
    let mut failed = 0usize;
    let mut pending = String::new();
    let mut run = |sql: &str, failed: &mut usize| -> Result<(), CliError> {
        match execute(glue, sql) {
            Err(CliError::Sql(e)) => {
                eprintln!("error: {e}");
                *failed += 1;
                Ok(())
            }
            other => other,
        }
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| CliError::os("reading standard input", e))?;
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            run(&pending, &mut failed)?;
            pending.clear();
        }
    }
    if !pending.trim().is_empty() {
        run(&pending, &mut failed)?;
    }
    if failed > 0 {
        return Err(CliError::Sql(format!("{failed} statement group(s) failed")));
    }
    Ok(())
}
