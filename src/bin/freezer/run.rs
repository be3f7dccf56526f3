//! Turn parsed arguments into library options, run the action, report.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use freezer::backup::{self, BackupOptions, BackupReport};
use freezer::catalog;
use freezer::compress::Compression;
use freezer::crypt::{self, DecryptKey, Format};
use freezer::limit::{self, Limited};
use freezer::lock::{Lock, LockOptions};
use freezer::priority;
use freezer::restore::{self, RestoreOptions, RestoreReport};
use freezer::storage::{Storage, StorageWrite};
use serde_json::json;

use crate::cli::{
    Action, BackupFlags, Cli, Command, Common, KeepFlags, RestoreFlags, RetentionFlags,
    StorageKind, VerifyCmd,
};
use crate::exit::Exit;
use crate::logger;
use crate::options;
use crate::prune::{self, retention_policy};
use crate::{list, ui};
use crate::{storage, verify};

/// Defaults differ by the name we are called by: as `freezer-agent` we are a drop-in for the
/// Python agent and keep its defaults, so a migrated host writes what its fleet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Freezer,
    Agent,
}

impl Profile {
    pub fn from_argv0(arg0: Option<OsString>) -> Profile {
        let name = arg0
            .as_deref()
            .and_then(|a| Path::new(a).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // freezerc (1.0's name) takes the agent's defaults too: Swift, gzip, openssl.
        if name.starts_with("freezer-agent") || name.starts_with("freezerc") {
            Profile::Agent
        } else {
            Profile::Freezer
        }
    }

    pub fn compression(self) -> Compression {
        match self {
            Profile::Freezer => Compression::Zstd,
            Profile::Agent => Compression::Gzip,
        }
    }

    pub fn storage(self) -> StorageKind {
        match self {
            Profile::Freezer => StorageKind::Local,
            Profile::Agent => StorageKind::Swift,
        }
    }

    pub fn encryption(self) -> Format {
        match self {
            Profile::Freezer => Format::Age,
            Profile::Agent => Format::OpensslAes256Cfb,
        }
    }

    pub fn container(self) -> &'static str {
        match self {
            Profile::Freezer => "/var/backups/freezer",
            Profile::Agent => "freezer_backups",
        }
    }
}

pub fn is_quiet(cli: &Cli) -> bool {
    match &cli.command {
        Some(Command::Backup(c)) => c.common.quiet,
        Some(Command::Restore(c)) => c.common.quiet,
        Some(Command::List(c)) => c.common.quiet,
        Some(Command::Prune(c)) => c.common.quiet,
        Some(Command::Verify(c)) => c.common.quiet,
        None => cli.common.quiet,
    }
}

enum Job {
    Backup { path: PathBuf, flags: Box<BackupFlags>, retention: RetentionFlags },
    Prune { retention: RetentionFlags, keep: KeepFlags },
    Restore { target: PathBuf, flags: RestoreFlags },
    List,
    Verify(Box<VerifyCmd>),
    ListContainers,
    ListObjects,
    Exec(String),
}

pub fn run(
    cli: Cli,
    profile: Profile,
    config_warnings: &[String],
    sections: Vec<(String, Vec<std::ffi::OsString>)>,
) -> Result<Exit> {
    let (common, job) = match cli.command {
        Some(Command::Backup(c)) => {
            let path =
                c.path.or(c.path_to_backup).ok_or_else(|| anyhow!("give the PATH to back up"))?;
            (c.common, Job::Backup { path, flags: Box::new(c.backup), retention: c.retention })
        }
        Some(Command::Restore(c)) => {
            let target = c
                .target
                .or(c.restore.restore_abs_path.clone())
                .ok_or_else(|| anyhow!("give the directory to restore into"))?;
            (c.common, Job::Restore { target, flags: c.restore })
        }
        Some(Command::List(c)) => (c.common, Job::List),
        Some(Command::Verify(c)) => (c.common.clone(), Job::Verify(Box::new(c))),
        Some(Command::Prune(c)) => (c.common, Job::Prune { retention: c.retention, keep: c.keep }),
        None if cli.list_containers => (cli.common, Job::ListContainers),
        None if cli.list_objects => (cli.common, Job::ListObjects),
        None => {
            let job = match cli.action.unwrap_or(Action::Backup) {
                Action::Backup => Job::Backup {
                    path: cli.path_to_backup.ok_or_else(|| {
                        usage("--action backup needs --path-to-backup PATH (the directory to back up)")
                    })?,
                    flags: Box::new(cli.backup),
                    retention: cli.retention,
                },
                Action::Restore => Job::Restore {
                    target: cli.restore.restore_abs_path.clone().ok_or_else(|| {
                        usage("--action restore needs --restore-abs-path DIR (where to restore)")
                    })?,
                    flags: cli.restore,
                },
                Action::Info => Job::List,
                Action::Admin => Job::Prune { retention: cli.retention, keep: cli.keep },
                Action::Exec => Job::Exec(cli.exec_command.ok_or_else(|| {
                    usage("--action exec needs --command CMD (the shell command to run)")
                })?),
            };
            (cli.common, job)
        }
    };
    let from_dir = common.log_dir.as_ref().map(|d| match profile {
        Profile::Agent => d.join("freezer-agent.log"),
        Profile::Freezer => d.join("freezer.log"),
    });
    let log_file = common.log_file.clone().or(from_dir).or_else(|| match profile {
        // freezer-agent always logs to ~/.freezer/freezer.log unless told otherwise.
        Profile::Agent => {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".freezer/freezer.log"))
        }
        Profile::Freezer => None,
    });
    let level = if common.debug {
        log::LevelFilter::Debug
    } else {
        common.log_level.unwrap_or(log::LevelFilter::Info)
    };
    logger::init(common.quiet, log_file.as_deref(), level)?;
    log::debug!(
        "freezer {} started: {:?}",
        env!("CARGO_PKG_VERSION"),
        std::env::args_os().skip(1).count()
    );
    for w in config_warnings {
        log::warn!("{w}");
    }
    if let Job::Exec(cmd) = &job {
        // freezer-agent's exec action needs no storage.
        freezer::freeze::exec(cmd)?;
        return Ok(Exit::Ok);
    }
    // Before any thread starts: threads inherit the priority.
    if common.max_priority.as_deref().is_some_and(priority::requested) {
        priority::raise()?;
    }
    let up = common
        .upload_limit
        .as_deref()
        .map(|v| limit::parse_rate("--upload-limit", v))
        .transpose()?
        .flatten();
    let down = common
        .download_limit
        .as_deref()
        .map(|v| limit::parse_rate("--download-limit", v))
        .transpose()?
        .flatten();
    // Built once: the lock, the backup and the prune after it share this storage.
    let container = common.container.clone().unwrap_or_else(|| profile.container().to_string());
    let kind = common.storage.unwrap_or(profile.storage());
    let reads_only = !matches!(job, Job::Backup { .. } | Job::Prune { .. });
    let opened =
        storage::open_all(kind, &common, container.clone(), profile, sections, reads_only)?;
    let (base, base_reads) = (opened.write, opened.read);
    let storage: Arc<dyn StorageWrite> = Arc::new(Limited::new(base, up, down));
    // Restore, list and verify also see the backups freezerc 1.0 left in a Swift container.
    let reads: Arc<dyn Storage> = Arc::new(Limited::new(base_reads, up, down));
    let hostname = match &common.hostname {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .context("cannot read this host's name; pass --hostname")?
            .to_string_lossy()
            .into_owned(),
    };
    check_name("--hostname", &hostname)?;
    check_name("--backup-name", &backup_name(&common, None))?;
    if matches!(job, Job::Restore { .. } | Job::Verify(_) | Job::List)
        && !reads.container_exists()?
    {
        bail!(freezer::Error::new(
            freezer::ErrorKind::NotFound,
            format!(
                "the container does not exist: {}; check --container and --storage",
                reads.describe()
            )
        ));
    }
    match job {
        Job::Backup { path, flags, retention } => {
            let after = retention_policy(&retention, &KeepFlags::default())?;
            let mut opts = options::backup_options(&common, &flags, profile, path, hostname)?;
            for dir in &opened.local_dirs {
                exclude_container(&mut opts, dir);
            }
            // One run per host and backup name: a second one waits or fails clearly. A dry run
            // writes nothing, not even a lock.
            let wait = Some(std::time::Duration::from_secs(flags.lock_wait));
            let lock = match opts.dry_run {
                true => None,
                false => Some(Lock::acquire(
                    Arc::clone(&storage),
                    &catalog::Layout::new(&opts.hostname, &opts.backup_name),
                    LockOptions { wait, ..Default::default() },
                )?),
            };
            let status = ui::StatusLine::start(!common.quiet && !common.json);
            let report = backup::run(&*storage, &opts, lock.as_ref());
            drop(status);
            let report = report?;
            print_backup(&common, &opts, &report, &*storage, &container)?;
            if let Some(policy) = after {
                // freezerc 1.0: one cron line backs up, then cleans up (chain-safe).
                let layouts = [report.layout.clone()];
                prune::run(&storage, &common, &layouts, policy, &KeepFlags::default(), false)?;
            }
            if let Some(lock) = lock
                && let Err(e) = lock.release()
            {
                // The backup is complete and visible: a lock left behind only delays the next
                // run until it is stale (or its pid is gone, on this host).
                log::warn!("the backup is complete, but its lock could not be removed: {e}");
            }
            let mut dropped = opened.unavailable;
            dropped.extend(opened.multi.map(|m| m.dropped()).unwrap_or_default());
            for d in &dropped {
                log::warn!("this backup is missing from {d}");
            }
            for e in &report.aftermath {
                log::error!("{e}");
            }
            let warned =
                report.unreadable > 0 || !dropped.is_empty() || !report.aftermath.is_empty();
            Ok(if warned { Exit::Warnings } else { Exit::Ok })
        }
        Job::Restore { target, flags } => {
            let at = flags.restore_from_date.as_deref().map(catalog::parse_date).transpose()?;
            let key = match (&flags.encrypt_identity_file, &common.encrypt_pass_file) {
                (Some(f), _) => Some(Arc::new(crypt::read_identity_file(f)?)),
                (None, Some(f)) => {
                    Some(Arc::new(DecryptKey::Passphrase(crypt::read_pass_file(f)?)))
                }
                (None, None) => None,
            };
            let opts = RestoreOptions {
                hostname,
                backup_name: backup_name(&common, None),
                target,
                at,
                overwrite: flags.overwrite,
                dry_run: common.dry_run,
                key,
                openssl_md: flags.openssl_md.as_deref().map(str::parse).transpose()?,
                consistency_checksum: flags.consistency_checksum.clone(),
                threads: options::cores(),
            };
            let status = ui::StatusLine::start(!common.quiet && !common.json);
            let report = restore::run(&*reads, &opts);
            drop(status);
            let report = report?;
            print_restore(&common, &opts, &report)?;
            if !report.problems.is_empty() {
                log::warn!(
                    "the restore is incomplete: {} entries could not be restored as the backup \
                     says (listed above)",
                    report.problems.len()
                );
                return Ok(Exit::Warnings);
            }
            Ok(Exit::Ok)
        }
        Job::Prune { retention, keep } => {
            let Some(policy) = retention_policy(&retention, &keep)? else {
                bail!(usage(
                    "say what to remove: --remove-older-than DAYS, --remove-from-date DATE, \
                     or --keep-last/--keep-daily/--keep-weekly/--keep-monthly N"
                ));
            };
            let layouts = if keep.all_hosts {
                freezer::prune::all_layouts(&*storage)?
            } else {
                vec![catalog::Layout::new(&hostname, &backup_name(&common, None))]
            };
            prune::run(&storage, &common, &layouts, policy, &keep, true)?;
            Ok(Exit::Ok)
        }
        Job::Verify(cmd) => verify::run(&*reads, &common, &cmd, &hostname),
        Job::List => {
            let only = common.backup_name.as_ref().map(|_| backup_name(&common, None));
            list::backups(&*reads, &hostname, only.as_deref(), common.json)?;
            Ok(Exit::Ok)
        }
        Job::ListContainers => {
            list::containers(&*storage)?;
            Ok(Exit::Ok)
        }
        Job::ListObjects => {
            list::objects(&*storage)?;
            Ok(Exit::Ok)
        }
        Job::Exec(_) => unreachable!("run before the storage is opened"),
    }
}

/// A local container inside the tree being backed up is left out of it (else `freezer backup
/// /var` into `/var/backups/freezer` would store every earlier backup again, each night).
fn exclude_container(opts: &mut BackupOptions, container: &Path) {
    let Ok(container) = std::path::absolute(container) else { return };
    let inside = container.canonicalize().unwrap_or(container);
    let source = opts.path.canonicalize().unwrap_or_else(|_| opts.path.clone());
    if let Ok(rel) = inside.strip_prefix(&source)
        && !rel.as_os_str().is_empty()
    {
        log::info!(
            "the container {} is inside the path to back up: it is left out of the backup",
            inside.display()
        );
        opts.scan.excludes.add_exact(rel);
    }
}

/// Host and backup names become one path component of the layout.
fn check_name(option: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.contains('/')
        || value == "."
        || value == ".."
        || value.contains('\0')
    {
        bail!(usage(&format!(
            "invalid {option} '{value}': it must be non-empty and contain no '/'"
        )));
    }
    Ok(())
}

pub fn usage(msg: &str) -> freezer::Error {
    freezer::Error::usage(msg)
}

/// freezer-agent's default name is the template `freezer_{mode}_{resource_id}`; for fs the
/// resource id is the host name.
pub fn backup_name(common: &Common, mode: Option<&str>) -> String {
    let host = common.hostname.clone().unwrap_or_else(|| {
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
    });
    let template =
        common.backup_name.clone().unwrap_or_else(|| "freezer_{mode}_{resource_id}".into());
    template
        .replace("{mode}", mode.unwrap_or("fs"))
        .replace("{resource_id}", &host)
        .replace("{backup_media}", "fs")
        .replace("{storage}", "local")
}

/// Log the one-line summary, print it on stdout (or the JSON with `--json`), and write
/// `--metadata-out`.
fn report(common: &Common, line: &str, value: serde_json::Value) -> Result<()> {
    log::info!("{line}");
    // With `--metadata-out -` (freezer-scheduler's call) stdout carries only that JSON and the
    // summary stays in the log: the scheduler logs any stderr of a successful run as
    // "Freezer client warnings".
    let to_stdout = common.metadata_out.as_deref() == Some("-");
    if common.json && !to_stdout {
        println!("{}", serde_json::to_string(&value)?);
    } else if !common.quiet && !to_stdout {
        let _ = writeln!(std::io::stdout(), "{line}");
    }
    let Some(dest) = &common.metadata_out else { return Ok(()) };
    let text = serde_json::to_string(&value)?;
    if dest == "-" {
        println!("{text}");
    } else {
        std::fs::write(dest, text.as_bytes())
            .with_context(|| format!("cannot write --metadata-out {dest}"))?;
    }
    Ok(())
}

fn print_backup(
    common: &Common,
    opts: &BackupOptions,
    r: &BackupReport,
    storage: &dyn Storage,
    container: &str,
) -> Result<()> {
    let s = &r.scan;
    let parent = r.parent.map(|p| format!(" on {}", p.name())).unwrap_or_default();
    let verb = if r.dry_run { "would store" } else { "stored" };
    let line = format!(
        "backup {}/{} level {}{parent}: files {} new, {} changed, {} unchanged; {}; read {}, {verb} {} in {} in {:.1}s{}",
        r.layout.host_backup(),
        r.id.name(),
        r.id.level,
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        ui::count(s.dirs, "dir"),
        ui::human(r.bytes_read),
        ui::human(r.stored),
        storage.describe(),
        r.seconds,
        if r.unreadable > 0 {
            format!("; {} could not be read (see warnings)", ui::count(r.unreadable, "file"))
        } else {
            String::new()
        },
    );
    let line = match &r.database {
        Some(db) => format!("{line}; {} at {}", db.mode, db.summary()),
        None => line,
    };
    let mut value = json!({
            "action": "backup",
            "backup_name": opts.backup_name,
            "hostname": opts.hostname,
            // As given, so it can be passed back as --container (freezer-agent's meaning).
            "container": container,
            "container_location": storage.describe(),
            "storage": storage.kind(),
            "mode": opts.freeze.mode.name(),
            "backup_media": "fs",
            "engine_name": "tar",
            "path_to_backup": opts.path.display().to_string(),
            "fs_real_path": opts.path.display().to_string(),
            "compression": opts.compression.name(),
            "encryption": opts.encryption.is_some(),
            "encryption_format": opts.encryption.as_ref().map(|e| e.format.name()),
            "curr_backup_level": r.id.level,
            "time_stamp": r.id.timestamp,
            "level_zero_timestamp": r.id.level_zero,
            "parent": r.parent.map(|p| p.name()),
            // freezer-agent 19's fields keep its forms: '' where it has no value.
            "max_level": opts.policy.max_level.map_or(json!(""), |l| json!(l)),
            "always_level": opts.policy.always_level.map_or(json!(""), |l| json!(l)),
            "vol_snap_path": opts.path.display().to_string(),
            "container_segments": "",
            "log_file": common.log_file.as_ref().map_or(String::new(), |f| f.display().to_string()),
            "proxy": common.swift.proxy.clone().unwrap_or_default(),
            "ssh_key": "",
            "ssh_username": "",
            "ssh_host": "",
            "ssh_port": "",
            "cindernative_backup_az": "",
            "cindernative_backup_container": "",
            "dry_run": r.dry_run,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unchanged": s.files_unchanged,
            "files_unreadable": r.unreadable,
            "bytes_read": r.bytes_read,
            "bytes_stored": r.stored,
            "duration_secs": r.seconds,
            "consistency_checksum": r.consistency_checksum.clone().unwrap_or_default(),
            "client_version": env!("CARGO_PKG_VERSION"),
            "client_os": std::env::consts::OS,
    });
    if let Some(db) = &r.database {
        value["database"] = json!(db);
    }
    report(common, &line, value)
}

fn print_restore(common: &Common, opts: &RestoreOptions, r: &RestoreReport) -> Result<()> {
    let levels: Vec<String> = r.chain.iter().map(|id| id.name()).collect();
    let verb = if opts.dry_run { "checked" } else { "restored" };
    let line = format!(
        "{verb} {} [{}] into {}: {}, {} in {:.1}s",
        r.layout.host_backup(),
        levels.join(" "),
        opts.target.display(),
        ui::count(r.members, "member"),
        ui::human(r.bytes),
        r.seconds
    );
    report(
        common,
        &line,
        json!({
            "action": "restore",
            "backup_name": opts.backup_name,
            "hostname": opts.hostname,
            "restore_abs_path": opts.target.display().to_string(),
            "levels": levels,
            "dry_run": opts.dry_run,
            "duration_secs": r.seconds,
        }),
    )
}
