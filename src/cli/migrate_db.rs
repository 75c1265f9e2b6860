//! `runner migrate-db --from SQLITE --to postgres://…`: move a runner's
//! whole state (queue, executions, checkpoints, blobs, ledger, breakers,
//! pauses) from its SQLite file into an empty PostgreSQL database, verify
//! the row counts, and leave the source as it was. Runners started on the
//! new database resume in-flight executions from their last checkpoint.

use super::exit::{CliResult, Code};
use super::status::Failure;
use paper_runner::store::copy::copy_sqlite_into;
use paper_runner::store::{is_db_url, Store, StoreOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct MigrateDbArgs {
    /// The SQLite database to copy (read only; never changed).
    #[arg(long)]
    pub from: PathBuf,
    /// The target: a `postgres://user@host/dbname` URL of an empty
    /// database (its schema is created), or a new SQLite file.
    #[arg(long)]
    pub to: PathBuf,
}

pub fn run(a: MigrateDbArgs) -> CliResult {
    if is_db_url(&a.from).is_some() {
        return Err(Failure::new(
            Code::Usage,
            "--from must be a SQLite file (use pg_dump to copy between PostgreSQL databases)",
        ));
    }
    if is_db_url(&a.to).is_none() && a.to.exists() {
        return Err(Failure::new(
            Code::Usage,
            format!(
                "--to {} exists: give a PostgreSQL URL or a new file",
                a.to.display()
            ),
        ));
    }
    let target =
        Store::open(&a.to, &StoreOptions::default()).map_err(|e| Failure::new(Code::Failure, e))?;
    let report = copy_sqlite_into(&a.from, &target).map_err(|e| Failure::new(Code::Failure, e))?;
    println!(
        "copied {} into {} (verified):",
        a.from.display(),
        target.path().display()
    );
    for (table, n) in &report.tables {
        println!("  {table:<20} {n:>10}");
    }
    println!("the source is unchanged; point `db` at the new database and start the runners");
    Ok(())
}
