//! `understudy sql DIR [-e SQL]`: SQL on an embedded database
//! (`understudy_sql`), results printed as tables.
//!
//! With `-e`, its statements run and the program exits, failing if one
//! failed. Without, statements are read from standard input: lines gather
//! until one ends in `;`, then they run; an error is printed and reading
//! goes on, and the program fails at the end if any statement failed. A
//! transaction left open (`BEGIN` without `COMMIT`) is rolled back at exit.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use understudy_sql::gluesql_core::prelude::Glue;
use understudy_sql::{render, UnderstudyStorage};

use crate::error::CliError;

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The database directory; created, with an empty database, if absent.
    pub dir: PathBuf,
    /// Statements to run, instead of reading them from standard input.
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    pub execute: Option<String>,
}

pub fn run(args: &SqlArgs) -> Result<(), CliError> {
    let storage = UnderstudyStorage::open(&args.dir).map_err(|e| CliError::Sql(e.to_string()))?;
    let node = storage.node().clone();
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
