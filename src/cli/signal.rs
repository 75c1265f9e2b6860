//! `runner signal EXECUTION_ID NAME [--data JSON]`: send a signal to an
//! execution parked on (or about to reach) a `wait_for` state. The signal
//! is stored durably; a paper whose phase waits for it becomes claimable at
//! once (the daemon picks it up); a machine run by `runner machine run
//! --db` continues with `runner machine resume ID`.

use super::exit::{CliResult, Code};
use super::status::{open_existing, Failure};
use clap::Args;
use paper_runner::store::StoreError;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SignalArgs {
    /// The machine execution that waits (as `runner status` lists it).
    pub execution_id: String,
    /// The signal's name (what the state's `wait_for` renders to).
    pub name: String,
    /// The signal's data, a JSON value (default null).
    #[arg(long)]
    pub data: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQLite database (default from config: data/runner.db).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

pub fn signal(config: Option<PathBuf>, a: SignalArgs) -> CliResult {
    let data: Value = match a.data.as_deref() {
        None => Value::Null,
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Failure::new(Code::Usage, format!("--data is not valid JSON: {e}")))?,
    };
    let (_, store) = open_existing(config.as_deref(), a.db.as_deref())?;
    let sent = match store.send_signal(&a.execution_id, &a.name, &data) {
        Ok(s) => s,
        Err(e @ StoreError::NotFound(_)) => return Err(Failure::new(Code::Usage, e)),
        Err(e) => return Err(Failure::new(Code::Failure, e)),
    };
    if a.json {
        println!(
            "{}",
            json!({
                "execution_id": a.execution_id,
                "signal": a.name,
                "id": sent.id,
                "was_waiting": sent.was_waiting,
                "woke_papers": sent.woke_papers,
            })
        );
    } else {
        let note = if sent.was_waiting {
            "it was waiting for it"
        } else {
            "kept until a wait_for state takes it"
        };
        println!("signal '{}' sent to {} ({note})", a.name, a.execution_id);
    }
    Ok(())
}
