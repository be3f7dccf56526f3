//! `freezer generate man DIR` and `freezer generate completions SHELL`: man pages and shell
//! completion scripts made from the same clap definition as the parser, so they never drift
//! from the options. Packagers run it at build time; it is left out of `--help` and of the
//! generated pages because users never need it.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use clap_mangen::Man;

use crate::cli::{Cli, EXIT_CODES};

#[derive(Parser, Debug)]
#[command(
    name = "freezer generate",
    about = "Write the man pages or a shell completion script for freezer"
)]
struct GenerateCli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Write freezer.1 and one page per subcommand (freezer-backup.1, ...) into DIR.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on stdout.
    Completions {
        #[arg(value_enum, value_name = "SHELL")]
        shell: Shell,
        /// Command name the script completes (e.g. freezer-agent for the symlink).
        #[arg(long, value_name = "NAME", default_value = "freezer")]
        bin_name: String,
    },
}

/// True when the command line asks for `freezer generate …`; checked before the normal parse
/// so the main parser, its help and the man pages stay free of this packaging helper.
pub fn requested(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == "generate")
}

/// Runs `freezer generate …`; `args` is the whole command line, `args[1] == "generate"`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let rest = args.into_iter().skip(2);
    let cli =
        GenerateCli::parse_from(std::iter::once(OsString::from("freezer generate")).chain(rest));
    let result = match cli.what {
        What::Man { dir } => write_man_pages(&dir),
        What::Completions { shell, bin_name } => {
            // clap_complete panics on a write error (e.g. a closed pipe): render to memory.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), bin_name, &mut script);
            let mut out = io::stdout().lock();
            out.write_all(&script)
                .and_then(|()| out.flush())
                .context("cannot write the completion script to stdout")
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("freezer: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `freezer.1` and a page for every visible subcommand into `dir`.
fn write_man_pages(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_page(&cmd, dir)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir)?;
    }
    Ok(())
}

fn write_page(cmd: &clap::Command, dir: &Path) -> Result<()> {
    // Subcommands carry no version of their own; every page names the package's.
    let man = Man::new(cmd.clone()).source(concat!("freezer ", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    render(&man, cmd, &mut page)
        .with_context(|| format!("cannot render the man page {}", path.display()))?;
    fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
}

/// clap_mangen's sections, except that the exit codes (our `after_help`) get a proper
/// EXIT STATUS section instead of clap_mangen's generic "EXTRA".
fn render(man: &Man, cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for line in EXIT_CODES.lines().skip(1) {
        let (code, text) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        writeln!(w, ".TP\n\\fB{}\\fR\n{}", roff_escape(code), roff_escape(text.trim()))?;
    }
    writeln!(w, ".SH \"SEE ALSO\"")?;
    let others = ["freezer", "freezer-backup", "freezer-restore", "freezer-list"];
    let refs: Vec<String> = others
        .iter()
        .filter(|n| **n != cmd.get_display_name().unwrap_or(cmd.get_name()))
        .map(|n| format!("\\fB{}\\fR(1)", roff_escape(n)))
        .collect();
    writeln!(w, "{}, \\fBtar\\fR(1)", refs.join(", "))?;
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// Escapes text for a roff text line: backslashes, hyphens (so `--x` stays searchable and
/// copyable), and a leading `.` or `'` that roff would read as a request.
fn roff_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    if text.starts_with('.') || text.starts_with('\'') {
        out.push_str("\\&");
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_only_for_the_first_argument() {
        let v = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(requested(&v(&["freezer", "generate", "man", "x"])));
        assert!(!requested(&v(&["freezer", "backup", "generate"])));
        assert!(!requested(&v(&["freezer"])));
    }

    #[test]
    fn escape() {
        assert_eq!(roff_escape("--overwrite"), "\\-\\-overwrite");
        assert_eq!(roff_escape(".x\\y"), "\\&.x\\ey");
    }

    #[test]
    fn pages_for_freezer_and_each_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        write_man_pages(dir.path()).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let want = [
            "freezer-backup.1",
            "freezer-list.1",
            "freezer-prune.1",
            "freezer-restore.1",
            "freezer-verify.1",
            "freezer.1",
        ];
        assert_eq!(names, want);
        let top = fs::read_to_string(dir.path().join("freezer.1")).unwrap();
        assert!(top.contains("backup\\-name"), "{top}");
        assert!(top.contains(".SH \"EXIT STATUS\""));
        assert!(!top.contains("generate"));
    }
}
