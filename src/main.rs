//! `runner`: thin entry point — parse the command line, set up logging,
//! dispatch to `cli`, and turn the result into the exit status. The only
//! place the process's exit status is decided (table: `cli::exit`).

mod cli;

use clap::Parser;

/// The system allocator; in a PDF extraction worker an allocation that
/// fails under its memory limit ends the worker with a status the parent
/// reads as "PDF too large" (see `pipeline::pdf_child::WorkerAlloc`).
#[global_allocator]
static ALLOC: paper_runner::pipeline::pdf_child::WorkerAlloc =
    paper_runner::pipeline::pdf_child::WorkerAlloc;

fn main() -> std::process::ExitCode {
    // Not `Cli::parse()`, which exits on its own: a bad flag is the table's
    // usage error (2), `--help`/`--version` succeed.
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return cli::exit::finish(cli::exit::parse_error(&e));
        }
    };
    let format = cli::choose_log_format(args.log_format, args.config.as_deref());
    cli::init_logging(args.log_level.as_deref(), format);
    cli::exit::finish(cli::dispatch(args))
}
