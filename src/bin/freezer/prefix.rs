//! Long options may be shortened to a unique prefix, as freezer-agent's parser allows
//! (`--compress gzip`); clap expands unique ones (`infer_long_args`). An ambiguous prefix is
//! refused here first, listing what it could mean (clap would only say "unexpected argument").

use std::ffi::OsString;

use anyhow::{Result, bail};
use clap::Command;

/// Fail on the first `--prefix` that starts more than one long option of `cmd` (or of the
/// subcommand named first) and is none of them exactly.
pub fn check(args: &[OsString], cmd: &Command) -> Result<()> {
    let sub = args.get(1).and_then(|a| a.to_str()).and_then(|n| cmd.find_subcommand(n));
    let cmd = sub.unwrap_or(cmd);
    let mut longs: Vec<String> = Vec::new();
    for a in cmd.get_arguments() {
        longs.extend(a.get_long().map(str::to_string));
        longs.extend(a.get_all_aliases().into_iter().flatten().map(str::to_string));
    }
    longs.extend(["help".to_string(), "version".to_string()]);
    for arg in args.iter().skip(1) {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        let Some(name) = text.strip_prefix("--") else { continue };
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if name.is_empty() || longs.iter().any(|l| l == name) {
            continue;
        }
        let mut candidates: Vec<&str> =
            longs.iter().filter(|l| l.starts_with(name)).map(String::as_str).collect();
        candidates.sort();
        candidates.dedup();
        if candidates.len() > 1 {
            let list = candidates.iter().map(|c| format!("--{c}")).collect::<Vec<_>>().join(", ");
            bail!(freezer::Error::usage(format!(
                "--{name} is ambiguous: it could be {list}; write more of it"
            )));
        }
    }
    Ok(())
}
