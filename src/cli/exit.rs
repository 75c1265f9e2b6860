//! The exit-code table: every status `runner` ends with, in one place.
//!
//! Every command returns [`CliResult`]; only `main` turns it into the
//! process's exit status ([`finish`]). Nothing else ends the process: no
//! `std::process::exit` outside `main` (the crash-test hooks kill the
//! process with a signal instead, see `store::crash_now`).
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (also `--help`, `--version`) |
//! | 1    | the work failed: a run or execution failed, a paper failed, a store or I/O error, a panicked task |
//! | 2    | usage or configuration error: bad flag, bad config file or `RUNNER_*` value, invalid machine file, unknown id or database |
//! | 3    | `machine run`/`machine resume`: another live process holds the execution's lease |
//! | 130  | stopped at once by a second signal (work resumes from its checkpoints) |

use std::fmt;
use std::process::ExitCode;

/// A non-zero row of the table (success is `Ok(())`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// 1: the work failed (see the module table).
    Failure,
    /// 2: usage or configuration error.
    Usage,
    /// 3: the execution is leased by another live process.
    Leased,
    /// 130: stopped at once by a second signal.
    Interrupted,
}

impl Code {
    /// The process exit status of this row.
    pub const fn value(self) -> u8 {
        match self {
            Code::Failure => 1,
            Code::Usage => 2,
            Code::Leased => 3,
            Code::Interrupted => 130,
        }
    }
}

/// Why a command did not succeed: the exit code it carries and, unless the
/// command already reported it, the message `main` prints as `error: …`.
#[derive(Debug)]
pub struct CliError {
    code: Code,
    message: Option<String>,
}

/// What every command returns.
pub type CliResult = Result<(), CliError>;

impl CliError {
    /// A failure with a message for the user.
    pub fn new(code: Code, message: impl fmt::Display) -> CliError {
        CliError {
            code,
            message: Some(message.to_string()),
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError::new(Code::Usage, message)
    }

    /// A failure the command has already reported (or that needs no
    /// message, like a run whose summary says what failed).
    pub fn reported(code: Code) -> CliError {
        CliError {
            code,
            message: None,
        }
    }
}

impl From<Code> for CliError {
    fn from(code: Code) -> CliError {
        CliError::reported(code)
    }
}

/// Any other error is a failure of the work (exit 1), printed with its
/// causes.
impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::new(Code::Failure, format!("{e:#}"))
    }
}

/// The exit status of a parse failure: `--help`/`--version` succeed (0),
/// everything else is a usage error (2).
/// clap has printed (or will print) the message itself.
pub fn parse_error(e: &clap::Error) -> CliResult {
    if e.exit_code() == 0 {
        Ok(())
    } else {
        Err(CliError::reported(Code::Usage))
    }
}

/// Report a command's result and turn it into the process exit status.
/// Called by `main` only.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(m) = &e.message {
                eprintln!("error: {m}");
            }
            ExitCode::from(e.code.value())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_distinct_and_ordered_by_severity() {
        let all = [Code::Failure, Code::Usage, Code::Leased, Code::Interrupted];
        let values: Vec<u8> = all.iter().map(|c| c.value()).collect();
        assert_eq!(values, [1, 2, 3, 130]);
    }
}
