//! Stand-ins for `runner demo`, `runner bench` and `runner mock-llm` in a
//! runner built without the `tooling` feature: the commands still parse
//! (so `--help` lists them and scripts get a clear answer rather than
//! "unrecognized subcommand"), accept any arguments, and exit with the
//! usage code.

use super::exit::{CliError, CliResult};

/// Any arguments; none are read.
#[derive(clap::Args, Debug)]
pub struct Ignored {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<String>,
}

/// The refusal every tooling command gives: exit code 2, like a usage error.
pub fn refuse(command: &str) -> CliResult {
    Err(CliError::usage(format!(
        "`runner {command}` is not available: this runner was built without the `tooling` feature \
         (rebuild with default features, e.g. `cargo build --release`)"
    )))
}
