//! The `freezer` binary: parse, run one action, print a summary, exit with a documented code.

mod args;
mod cli;
mod config;
mod exit;
mod generate;
mod list;
mod logger;
mod options;
mod prune;
mod run;
mod storage;
mod ui;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if generate::requested(&args) {
        return generate::main(args);
    }
    if let Err(e) = freezer::interrupt::install() {
        eprintln!("freezer: warning: cannot catch SIGTERM/SIGINT: {e}");
    }
    if args.len() == 1 {
        // Bare `freezer`: say how to use it (freezer-agent prints its help and fails too).
        let mut cmd = cli::Cli::command();
        eprintln!(
            "{}\nTry 'freezer --help' (all options) or 'freezer -h' (the main ones).",
            cmd.render_usage()
        );
        return ExitCode::from(2);
    }
    let profile = run::Profile::from_argv0(args.first().cloned());
    let exposed = args::secrets_on_command_line(&args);
    let config::Expanded { args, mut warnings, storages } =
        match config::expand(args, &cli::Cli::command()) {
            Ok(x) => x,
            Err(err) => {
                eprintln!("freezer: error: {err:#}");
                return exit::for_error(&err).into();
            }
        };
    warnings.extend(exposed);
    let args = match args::prepare(args, &cli::Cli::command()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("freezer: error: {err:#}");
            return exit::for_error(&err).into();
        }
    };
    let cli = cli::Cli::parse_from(args);
    let quiet = run::is_quiet(&cli);
    match run::run(cli, profile, &warnings, storages) {
        Ok(code) => code.into(),
        Err(err) => {
            let code = exit::for_error(&err);
            log::error!("{err:#}");
            if !logger::printed_to_stderr() || quiet {
                eprintln!("freezer: error: {err:#}");
            }
            if let Some(sig) = freezer::interrupt::received() {
                freezer::interrupt::die_by_signal(sig);
            }
            code.into()
        }
    }
}
