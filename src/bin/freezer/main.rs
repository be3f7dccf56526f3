//! The `freezer` binary: parse, run one action, print a summary, exit with a documented code.

mod cli;
mod exit;
mod logger;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let profile = run::Profile::from_argv0(std::env::args_os().next());
    let cli = cli::Cli::parse();
    let quiet = run::is_quiet(&cli);
    match run::run(cli, profile) {
        Ok(code) => code.into(),
        Err(err) => {
            let code = exit::for_error(&err);
            log::error!("{err:#}");
            if !logger::printed_to_stderr() || quiet {
                eprintln!("freezer: error: {err:#}");
            }
            code.into()
        }
    }
}
