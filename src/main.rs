//! `runner`: thin entry point — parse the command line, set up logging,
//! dispatch to `cli`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let format = cli::LogFormat::choose(args.log_format, args.config.as_deref());
    cli::init_logging(args.log_level.as_deref(), format);
    cli::dispatch(args)
}
