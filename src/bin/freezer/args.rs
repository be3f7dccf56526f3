//! The command line before clap sees it.
//!
//! - Long options may be shortened to a unique prefix, as freezer-agent's argparse allows
//!   (`--compress gzip`); clap expands unique ones (`infer_long_args`). An ambiguous prefix is
//!   refused here, listing what it could mean (clap would only say "unexpected argument").
//! - Every option of freezer-agent 19 and freezerc 1.0.8 is known: the ones this version does
//!   not implement are refused by name ("not supported yet"), never with clap's "unexpected
//!   argument" and a wrong tip; the few that ask for what happens anyway are dropped.

use std::ffi::OsString;

use anyhow::{Result, bail};
use clap::Command;

/// What to do with an agent option clap does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treat {
    /// Refused: "not supported yet", with what the option is for.
    NotYet(&'static str),
    /// Asks for what freezer does anyway: dropped (with its value).
    Same,
}

use Treat::{NotYet, Same};

/// freezer-agent 19's and freezerc 1.0.8's options that clap does not define:
/// (long name, takes a value, treatment).
pub const AGENT_ONLY: &[(&str, bool, Treat)] = &[
    ("sql-server-conf", true, NotYet("the SQL Server mode")),
    ("cinder-vol-id", true, NotYet("Cinder backups")),
    ("cinder-vol-name", true, NotYet("Cinder backups")),
    ("cinderbrick-vol-id", true, NotYet("Cinder backups")),
    ("cindernative-vol-id", true, NotYet("Cinder backups")),
    ("cindernative-backup-id", true, NotYet("Cinder backups")),
    ("cindernative-backup-az", true, NotYet("Cinder backups")),
    ("cindernative-backup-container", true, NotYet("Cinder backups")),
    ("cindernative-freezer-only", false, NotYet("Cinder backups")),
    ("nocindernative-freezer-only", false, Same),
    ("fullbackup-rotation", true, NotYet("Cinder backups")),
    ("nova-inst-id", true, NotYet("Nova backups")),
    ("nova-inst-name", true, NotYet("Nova backups")),
    ("nova-restore-network", true, NotYet("Nova backups")),
    ("glance-image-id", true, NotYet("Glance backups")),
    ("glance-image-name", true, NotYet("Glance backups")),
    ("glance-image-name-filter", true, NotYet("Glance backups")),
    ("temp-resource-prefix", true, NotYet("OpenStack resource backups")),
    ("remove-before-date", true, NotYet("Cinder backups")),
    ("rsync-block-size", true, NotYet("the rsync engines")),
    ("use-journal", false, NotYet("logging to the journal (use --log-file, or run under systemd)")),
    ("use-json", false, NotYet("JSON log lines (--json prints the summary as JSON)")),
    ("use-syslog", false, NotYet("logging to syslog (use --log-file)")),
    ("syslog-log-facility", true, NotYet("logging to syslog (use --log-file)")),
    (
        "log-config-append",
        true,
        NotYet("Python logging configuration (use --log-file, --log-level)"),
    ),
    ("log-config", true, NotYet("Python logging configuration (use --log-file, --log-level)")),
    ("log-date-format", true, NotYet("log date formats")),
    ("config-file", true, NotYet("oslo.config files (use --config, freezer-agent's job files)")),
    ("config-dir", true, NotYet("oslo.config files (use --config, freezer-agent's job files)")),
    ("shell_completion", true, NotYet("this (use `freezer generate completions SHELL`)")),
    ("nouse-journal", false, Same),
    ("nouse-json", false, Same),
    ("nouse-syslog", false, Same),
    ("nodebug", false, Same),
    // freezer-api's id of a backup the scheduler pre-allocated; only the API uses it.
    ("backup-id", true, Same),
    // freezerc 1.0.8.
    ("get-object", true, NotYet("--get-object (freezerc 1.0 never implemented it either)")),
    ("dst-file", true, NotYet("--dst-file (freezerc 1.0 never implemented it either)")),
    ("upload", false, Same),
    ("no-incremental", false, Same),
];

/// An agent-only option by its long name.
pub fn agent_only(long: &str) -> Option<(&'static str, bool, Treat)> {
    let long = long.replace('_', "-");
    AGENT_ONLY.iter().copied().find(|(name, ..)| name.replace('_', "-") == long)
}

/// Check `args` and drop the agent options that change nothing; the result goes to clap.
pub fn prepare(args: Vec<OsString>, cmd: &Command) -> Result<Vec<OsString>> {
    let sub = args.get(1).and_then(|a| a.to_str()).and_then(|n| cmd.find_subcommand(n));
    let cmd = sub.unwrap_or(cmd);
    let mut longs: Vec<String> = Vec::new();
    for a in cmd.get_arguments() {
        longs.extend(a.get_long().map(str::to_string));
        longs.extend(a.get_all_aliases().into_iter().flatten().map(str::to_string));
    }
    longs.extend(["help".to_string(), "version".to_string()]);
    let known = |n: &str| longs.iter().any(|l| l == n) || agent_only(n).is_some();
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    out.extend(it.next());
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(it);
            break;
        }
        // freezerc 1.0.8's -U (--upload) could not be turned off: it changes nothing.
        if text == "-U" {
            continue;
        }
        if text == "-s" {
            out.push(snapshot_flag(None, &mut it).into());
            continue;
        }
        let Some(body) = text.strip_prefix("--") else {
            out.push(arg);
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let full =
            if name.is_empty() || known(&name) { name.clone() } else { expand(&name, &longs)? };
        if full == "snapshot" {
            out.push(snapshot_flag(inline.as_deref(), &mut it).into());
            continue;
        }
        match agent_only(&full) {
            Some((long, _, NotYet(what))) => bail!(freezer::Error::usage(format!(
                "--{long} ({what}) is not supported yet by this version of freezer"
            ))),
            Some((_, takes_value, Same)) => {
                if takes_value && inline.is_none() {
                    it.next();
                }
            }
            None => out.push(arg),
        }
    }
    Ok(out)
}

/// freezer-agent's `--snapshot` takes a value, and any but False turns snapshots on; ours is a
/// flag. `--snapshot=VALUE`, or `--snapshot VALUE` when VALUE is a yes/no word (anything else
/// after it, like the PATH, is left alone), become `--snapshot` or `--nosnapshot`.
fn snapshot_flag(
    inline: Option<&str>,
    rest: &mut std::iter::Peekable<std::vec::IntoIter<OsString>>,
) -> &'static str {
    const WORDS: [&str; 9] = ["true", "false", "none", "yes", "no", "on", "off", "1", "0"];
    let value = match inline {
        Some(v) => Some(v.to_string()),
        None => rest
            .next_if(|a| {
                a.to_str().is_some_and(|t| WORDS.contains(&t.to_ascii_lowercase().as_str()))
            })
            .map(|a| a.to_string_lossy().into_owned()),
    };
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("" | "false" | "none" | "no" | "off" | "0") => "--nosnapshot",
        _ => "--snapshot",
    }
}

/// The one option `prefix` starts (clap's or the agent's); an error when several.
fn expand(prefix: &str, longs: &[String]) -> Result<String> {
    let mut candidates: Vec<String> = longs
        .iter()
        .map(String::as_str)
        .chain(AGENT_ONLY.iter().map(|(n, ..)| *n))
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect();
    candidates.sort();
    candidates.dedup();
    match candidates.len() {
        0 => Ok(prefix.to_string()),
        1 => Ok(candidates.remove(0)),
        _ => {
            let list = candidates.iter().map(|c| format!("--{c}")).collect::<Vec<_>>().join(", ");
            bail!(freezer::Error::usage(format!(
                "--{prefix} is ambiguous: it could be {list}; write more of it"
            )))
        }
    }
}

/// Options whose value is a secret: accepted (freezer-agent's cron lines use them), but any
/// user can read them in `ps`. Where to put them instead.
const SECRET_OPTIONS: [(&str, &str); 3] = [
    ("secret-key", "SECRET_KEY (or AWS_SECRET_ACCESS_KEY)"),
    ("ssh-password", "FREEZER_SSH_PASSWORD"),
    ("ftp-password", "FREEZER_FTP_PASSWORD"),
];

/// A warning for each secret given on the real command line (not by `--config`).
pub fn secrets_on_command_line(args: &[OsString]) -> Vec<String> {
    let mut out = Vec::new();
    let strs: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    for (i, arg) in strs.iter().copied().enumerate() {
        if arg == "--" {
            break;
        }
        // A URI is a secret only when it holds a password.
        let uri = match arg.split_once('=') {
            Some(("--mongo-uri", v)) => Some(v),
            None if arg == "--mongo-uri" => strs.get(i + 1).copied(),
            _ => None,
        };
        if uri.is_some_and(has_password) {
            out.push(
                "--mongo-uri with a password on the command line is visible to every user of \
                 this machine (ps, /proc); put mongo_uri in the --config file or set \
                 FREEZER_MONGO_URI instead"
                    .to_string(),
            );
        }
        let Some(name) = arg.strip_prefix("--").map(|a| a.split('=').next().unwrap_or(a)) else {
            continue;
        };
        // A unique prefix is the option too (`--secret`), as args::prepare accepts it.
        let hit = SECRET_OPTIONS.iter().find(|(opt, _)| name.len() >= 5 && opt.starts_with(name));
        if let Some((opt, var)) = hit {
            out.push(format!(
                "--{opt} on the command line is visible to every user of this machine (ps, \
                 /proc); put {} in the --config file or set {var} instead",
                opt.replace('-', "_")
            ));
        }
    }
    out
}

/// `scheme://user:password@…`.
fn has_password(uri: &str) -> bool {
    let Some((_, rest)) = uri.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn prep(args: &[&str]) -> Result<Vec<String>> {
        let args: Vec<OsString> =
            std::iter::once("freezer").chain(args.iter().copied()).map(OsString::from).collect();
        let out = prepare(args, &crate::cli::Cli::command())?;
        Ok(out.into_iter().skip(1).map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn a_mongo_uri_with_a_password_is_a_secret() {
        let args = |a: &[&str]| -> Vec<OsString> {
            std::iter::once("freezer").chain(a.iter().copied()).map(OsString::from).collect()
        };
        assert_eq!(secrets_on_command_line(&args(&["--mongo-uri", "mongodb://u:p@h/"])).len(), 1);
        assert_eq!(secrets_on_command_line(&args(&["--mongo-uri=mongodb://u:p@h/"])).len(), 1);
        assert!(secrets_on_command_line(&args(&["--mongo-uri", "mongodb://u@h/"])).is_empty());
        assert!(
            secrets_on_command_line(&args(&["--mongo-uri", "mongodb://h:1/?x=a@b"])).is_empty()
        );
    }

    #[test]
    fn agent_only_options() {
        assert_eq!(prep(&["--snapshot", "True", "/srv"]).unwrap(), ["--snapshot", "/srv"]);
        assert_eq!(prep(&["--snapshot", "/srv"]).unwrap(), ["--snapshot", "/srv"]);
        assert_eq!(prep(&["-s", "False", "-N", "x"]).unwrap(), ["--nosnapshot", "-N", "x"]);
        assert_eq!(
            prep(&["--snapshot=", "--snapshot=yes"]).unwrap(),
            ["--nosnapshot", "--snapshot"]
        );
        assert_eq!(prep(&["--snapshot=lvm"]).unwrap(), ["--snapshot"], "the agent: any value");
        let err = prep(&["--sql-server-c=/etc/x.ini"]).unwrap_err().to_string();
        assert!(err.starts_with("--sql-server-conf (the SQL Server mode)"), "{err}");
        assert_eq!(
            prep(&["--nodebug", "--backup-id", "abc", "-U", "--upload", "-N", "x"]).unwrap(),
            ["-N", "x"]
        );
        assert_eq!(prep(&["--compress", "gzip"]).unwrap(), ["--compress", "gzip"]);
        assert!(prep(&["--re", "3"]).unwrap_err().to_string().contains("ambiguous"));
        // No clap option is in the table.
        let cmd = crate::cli::Cli::command();
        for a in cmd.get_arguments() {
            assert!(a.get_long().is_none_or(|l| agent_only(l).is_none()), "{:?}", a.get_long());
        }
    }
}
