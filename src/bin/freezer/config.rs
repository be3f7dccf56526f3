//! `--config FILE`: freezer-agent's INI job files (what freezer-scheduler writes as `[action]`,
//! what the docs show as `[default]`). Every section but `[storage:*]` gives the run's options;
//! each `[storage:NAME]` gives one storage of a multi-storage run. Keys may use `-` or `_`;
//! `True`/`true`/`False`/`false` are booleans; `None` and empty values are unset.
//!
//! The file becomes command-line arguments placed *before* the real ones, so the command line
//! wins (freezer-agent does the opposite of its own documentation). Unknown keys are warnings.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Command};

/// What a `--config` file gives: the arguments (its options inserted after the program name
/// and subcommand), warnings to log once logging is set up, and its `[storage:NAME]` sections,
/// each as the arguments of its own storage.
#[derive(Default)]
pub struct Expanded {
    pub args: Vec<OsString>,
    pub warnings: Vec<String>,
    pub storages: Vec<(String, Vec<OsString>)>,
}

pub fn expand(args: Vec<OsString>, cli: &Command) -> Result<Expanded> {
    let Some(path) = config_path(&args)? else {
        return Ok(Expanded { args, ..Default::default() });
    };
    let shown = Path::new(&path).display().to_string();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read --config {shown}"))?;
    // Options of the subcommand when one is used, else the top level's (agent spelling).
    let sub = args.get(1).and_then(|a| a.to_str()).and_then(|name| cli.find_subcommand(name));
    let cmd = sub.unwrap_or(cli);
    let mut out = Expanded::default();
    let mut main = Vec::new();
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (section, key, value) in parse(&text).with_context(|| format!("in --config {shown}"))? {
        match section.strip_prefix("storage:") {
            Some(name) => match sections.iter_mut().find(|(n, _)| n == name) {
                Some((_, pairs)) => pairs.push((key, value)),
                None => sections.push((name.to_string(), vec![(key, value)])),
            },
            None => main.push((key, value)),
        }
    }
    let extra = to_args(&main, cmd, &shown, &mut out.warnings)?;
    for (name, pairs) in sections {
        let args = to_args(&pairs, cli, &format!("{shown} [storage:{name}]"), &mut out.warnings)?;
        out.storages.push((name, args));
    }
    let at = if sub.is_some() { 2 } else { 1 };
    out.args = args[..at.min(args.len())].to_vec();
    out.args.extend(extra);
    out.args.extend(args.into_iter().skip(at));
    Ok(out)
}

/// `key = value` pairs as `cmd`'s arguments; `shown` names the file (and section).
fn to_args(
    pairs: &[(String, String)],
    cmd: &Command,
    shown: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<OsString>> {
    let mut extra = Vec::new();
    for (key, value) in pairs {
        let long = key.replace('_', "-");
        let value = value.trim();
        if long == "config" || value.is_empty() || value == "None" {
            continue;
        }
        if let Some((name, _, treat)) = crate::args::agent_only(&long) {
            match treat {
                crate::args::Treat::NotYet(what) => bail!(freezer::Error::usage(format!(
                    "--config {shown}: '{key}' (--{name}, {what}) is not supported yet by this \
                     version of freezer"
                ))),
                crate::args::Treat::Same => continue,
            }
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(long.as_str())) else {
            let longs = cmd.get_arguments().filter_map(|a| a.get_long());
            match closest(&long, longs) {
                // A typo in a key that decides what is encrypted or deleted must not pass.
                Some(known) if guards_data(known) => bail!(freezer::Error::usage(format!(
                    "--config {shown}: unknown option '{key}'; did you mean '{}'?",
                    known.replace('-', "_")
                ))),
                Some(known) => warnings.push(format!(
                    "--config: unknown option '{key}' ignored; did you mean '{}'?",
                    known.replace('-', "_")
                )),
                None => warnings.push(format!("--config: unknown option '{key}' ignored")),
            }
            continue;
        };
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                "True" | "true" => extra.push(format!("--{long}").into()),
                "False" | "false" => {
                    if cmd.get_arguments().any(|a| a.get_long() == Some(&format!("no{long}"))) {
                        extra.push(format!("--no{long}").into());
                    }
                }
                other => bail!(freezer::Error::usage(format!(
                    "--config {shown}: '{key} = {other}' must be True or False"
                ))),
            },
            ArgAction::Append => {
                for item in list_items(value) {
                    extra.push(format!("--{long}={item}").into());
                }
            }
            _ => extra.push(format!("--{long}={value}").into()),
        }
    }
    Ok(extra)
}

/// Options whose misspelling would silently change what is encrypted or removed.
fn guards_data(long: &str) -> bool {
    long.starts_with("encrypt") || long.starts_with("remove") || long.starts_with("keep")
}

/// The known option nearest to `key`, if it is a likely typo (at most 2 edits, or 3 for long
/// names).
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if key.len() > 12 { 3 } else { 2 };
    known.map(|k| (edits(key, k), k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The value of `--config X` / `--config=X`, if given.
fn config_path(args: &[OsString]) -> Result<Option<OsString>> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == OsStr::new("--") {
            break;
        }
        if a == OsStr::new("--config") {
            return match it.next() {
                Some(p) => Ok(Some(p.clone())),
                None => bail!(freezer::Error::usage("--config needs a file name")),
            };
        }
        if let Some(p) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Ok(Some(p.into()));
        }
    }
    Ok(None)
}

/// A Python list repr as the scheduler writes it (`['a', 'b']`), or a single value.
fn list_items(value: &str) -> Vec<String> {
    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(inner) => inner
            .split(',')
            .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => vec![value.to_string()],
    }
}

/// configparser's INI: `[section]`, `key = value` or `key: value`, `#`/`;` comments, indented
/// continuation lines. Keys are lower-cased. Returns (section, key, value) in file order.
fn parse(text: &str) -> Result<Vec<(String, String, String)>> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if line.starts_with([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.2.push('\n');
            last.2.push_str(trimmed);
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        let Some(sec) = &section else {
            bail!(freezer::Error::usage(format!("line {}: an option before any [section]", n + 1)));
        };
        let Some(split) = trimmed.find(['=', ':']) else {
            bail!(freezer::Error::usage(format!(
                "line {}: expected 'key = value', found '{trimmed}'",
                n + 1
            )));
        };
        let key = trimmed[..split].trim().to_lowercase();
        let value = trimmed[split + 1..].trim().to_string();
        out.push((sec.clone(), key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheduler_ini() {
        let ini = "[action]\naction = backup\nincremental = True\nmax_level = 3\nexclude = ['*.log', 'tmp']\n\
                   empty = \n\n[storage:s1]\ncontainer = x\n";
        let got = parse(ini).unwrap();
        assert_eq!(got[0], ("action".into(), "action".into(), "backup".into()));
        assert_eq!(got[3].2, "['*.log', 'tmp']");
        assert_eq!(got[5].0, "storage:s1");
        assert_eq!(list_items("['*.log', 'tmp']"), ["*.log", "tmp"]);
    }

    #[test]
    fn typos_are_found() {
        let known = ["encrypt-pass-file", "max-level", "remove-older-than", "compression"];
        assert_eq!(closest("encrypt-pass-flie", known.into_iter()), Some("encrypt-pass-file"));
        assert_eq!(closest("max-levle", known.into_iter()), Some("max-level"));
        assert_eq!(closest("something-else", known.into_iter()), None);
        assert!(guards_data("remove-older-than") && !guards_data("max-level"));
    }

    #[test]
    fn option_before_section_is_an_error() {
        assert!(parse("a = b\n").is_err());
    }
}
