//! Turn parsed arguments into library options, run the action, report.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use freezer::backup::{self, BackupOptions, BackupReport};
use freezer::catalog::{self, LevelPolicy};
use freezer::compress::Compression;
use freezer::exclude::Excludes;
use freezer::incremental::dump::DumpOptions;
use freezer::incremental::scan::ScanOptions;
use freezer::restore::{self, RestoreOptions, RestoreReport};
use freezer::storage::local::LocalStorage;
use serde_json::json;

use crate::cli::{
    Action, BackupFlags, Cli, Command, Common, Dereference, RestoreFlags, StorageKind,
};
use crate::exit::Exit;
use crate::logger;

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
        if name.starts_with("freezer-agent") { Profile::Agent } else { Profile::Freezer }
    }

    fn compression(self) -> Compression {
        match self {
            Profile::Freezer => Compression::Zstd,
            Profile::Agent => Compression::Gzip,
        }
    }

    fn storage(self) -> StorageKind {
        match self {
            Profile::Freezer => StorageKind::Local,
            Profile::Agent => StorageKind::Swift,
        }
    }

    fn container(self) -> &'static str {
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
        None => cli.common.quiet,
    }
}

enum Job {
    Backup { path: PathBuf, flags: BackupFlags },
    Restore { target: PathBuf, flags: RestoreFlags },
    List,
}

pub fn run(cli: Cli, profile: Profile, config_warnings: &[String]) -> Result<Exit> {
    let (common, unsupported, job) = match cli.command {
        Some(Command::Backup(c)) => {
            let path =
                c.path.or(c.path_to_backup).ok_or_else(|| anyhow!("give the PATH to back up"))?;
            (c.common, c.unsupported, Job::Backup { path, flags: c.backup })
        }
        Some(Command::Restore(c)) => {
            let target = c
                .target
                .or(c.restore.restore_abs_path.clone())
                .ok_or_else(|| anyhow!("give the directory to restore into"))?;
            (c.common, c.unsupported, Job::Restore { target, flags: c.restore })
        }
        Some(Command::List(c)) => (c.common, Default::default(), Job::List),
        None => {
            let job = match cli.action.unwrap_or(Action::Backup) {
                Action::Backup => Job::Backup {
                    path: cli.path_to_backup.ok_or_else(|| {
                        usage("--action backup needs --path-to-backup PATH (the directory to back up)")
                    })?,
                    flags: cli.backup,
                },
                Action::Restore => Job::Restore {
                    target: cli.restore.restore_abs_path.clone().ok_or_else(|| {
                        usage("--action restore needs --restore-abs-path DIR (where to restore)")
                    })?,
                    flags: cli.restore,
                },
                Action::Info => Job::List,
                Action::Admin => bail!(usage(
                    "--action admin (retention) is not supported yet by this version; \
                     keep running freezer-agent for it"
                )),
                Action::Exec => bail!(usage("--action exec is not supported; run the command directly")),
            };
            (cli.common, cli.unsupported, job)
        }
    };
    logger::init(common.quiet, common.log_file.as_deref())?;
    for w in config_warnings {
        log::warn!("{w}");
    }
    if let Some(opt) = unsupported.first() {
        bail!(usage(&format!("{opt} is not supported yet by this version of freezer")));
    }
    let storage = open_storage(&common, profile)?;
    let hostname = match &common.hostname {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .context("cannot read this host's name; pass --hostname")?
            .to_string_lossy()
            .into_owned(),
    };
    check_name("--hostname", &hostname)?;
    check_name("--backup-name", &backup_name(&common, None))?;
    match job {
        Job::Backup { path, flags } => {
            let opts = backup_options(&common, &flags, profile, path, hostname)?;
            let report = backup::run(&storage, &opts)?;
            print_backup(&common, &opts, &report, &storage)?;
            Ok(if report.unreadable > 0 { Exit::Warnings } else { Exit::Ok })
        }
        Job::Restore { target, flags } => {
            let at = flags.restore_from_date.as_deref().map(catalog::parse_date).transpose()?;
            let opts = RestoreOptions {
                hostname,
                backup_name: backup_name(&common, None),
                target,
                at,
                overwrite: flags.overwrite,
                dry_run: common.dry_run,
            };
            let report = restore::run(&storage, &opts)?;
            print_restore(&common, &opts, &report)?;
            Ok(Exit::Ok)
        }
        Job::List => {
            list(&storage, &common, &hostname)?;
            Ok(Exit::Ok)
        }
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

fn usage(msg: &str) -> freezer::Error {
    freezer::Error::usage(msg)
}

fn open_storage(common: &Common, profile: Profile) -> Result<LocalStorage> {
    let kind = common.storage.unwrap_or(profile.storage());
    if kind != StorageKind::Local {
        let name = format!("{kind:?}").to_lowercase();
        bail!(usage(&format!(
            "--storage {name} is not supported yet by this version; use --storage local \
             with --container DIR"
        )));
    }
    let container = common.container.clone().unwrap_or_else(|| profile.container().to_string());
    Ok(LocalStorage::new(Path::new(&container))?)
}

/// freezer-agent's default name is the template `freezer_{mode}_{resource_id}`; for fs the
/// resource id is the host name.
fn backup_name(common: &Common, mode: Option<&str>) -> String {
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

fn backup_options(
    common: &Common,
    flags: &BackupFlags,
    profile: Profile,
    path: PathBuf,
    hostname: String,
) -> Result<BackupOptions> {
    if let Some(m) = flags.mode.as_deref().filter(|m| *m != "fs") {
        bail!(usage(&format!("--mode {m} is not supported yet by this version; only --mode fs")));
    }
    if let Some(e) = flags.engine.as_deref().filter(|e| *e != "tar") {
        bail!(usage(&format!("--engine {e} is not supported; only --engine tar")));
    }
    let compression = match &flags.compression {
        Some(c) => Compression::parse(c)?,
        None => profile.compression(),
    };
    let segment_size = match &flags.max_segment_size {
        Some(s) => parse_size(s).ok_or_else(|| {
            usage(&format!(
                "invalid --max-segment-size '{s}': give bytes, optionally with K, M or G"
            ))
        })?,
        None => 32 << 20,
    };
    if !(4096..=(4u64 << 30)).contains(&segment_size) {
        bail!(usage("--max-segment-size must be between 4K and 4G"));
    }
    let path = std::path::absolute(&path)
        .with_context(|| format!("cannot resolve the path to back up {}", path.display()))?;
    if !path.exists() {
        bail!(usage(&format!("the path to back up {} does not exist", path.display())));
    }
    let deref = flags.dereference_symlink;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Ok(BackupOptions {
        path,
        hostname,
        backup_name: backup_name(common, flags.mode.as_deref()),
        compression,
        segment_size: segment_size as usize,
        policy: LevelPolicy {
            incremental: flags.incremental
                || flags.max_level.is_some()
                || flags.always_level.is_some(),
            max_level: flags.max_level,
            always_level: flags.always_level,
            restart_always_level_days: flags.restart_always_level,
        },
        scan: ScanOptions {
            one_file_system: !flags.cross_file_systems,
            check_device: false,
            follow_symlinks: matches!(deref, Some(Dereference::Soft | Dereference::All)),
            excludes: Excludes::new(&flags.exclude)?,
        },
        dump: DumpOptions {
            follow_symlinks: matches!(deref, Some(Dereference::Soft | Dereference::All)),
            hard_dereference: matches!(deref, Some(Dereference::Hard | Dereference::All)),
        },
        threads,
        dry_run: common.dry_run,
        now: std::env::var("FREEZER_TEST_NOW").ok().and_then(|v| v.parse().ok()),
    })
}

/// "32M" → 33554432.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[u]) }
}

/// Log the one-line summary, print it on stdout unless stdout carries `--metadata-out -`,
/// and write `--metadata-out`.
fn report(common: &Common, line: &str, value: serde_json::Value) -> Result<()> {
    log::info!("{line}");
    // With `--metadata-out -` (freezer-scheduler's call) the summary stays in the log only:
    // the scheduler logs any stderr of a successful run as "Freezer client warnings".
    if !common.quiet && common.metadata_out.as_deref() != Some("-") {
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
    storage: &LocalStorage,
) -> Result<()> {
    use freezer::storage::Storage;
    let s = &r.scan;
    let parent = r.parent.map(|p| format!(" on {}", p.name())).unwrap_or_default();
    let verb = if r.dry_run { "would store" } else { "stored" };
    let line = format!(
        "backup {}/{} level {}{parent}: {} new, {} changed, {} unchanged files, {} dirs; read {}, {verb} {} in {:.1}s{}",
        r.layout.host_backup(),
        r.id.name(),
        r.id.level,
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        s.dirs,
        human(r.bytes_read),
        human(r.stored),
        r.seconds,
        if r.unreadable > 0 {
            format!("; {} files could not be read (see warnings)", r.unreadable)
        } else {
            String::new()
        },
    );
    report(
        common,
        &line,
        json!({
            "action": "backup",
            "backup_name": opts.backup_name,
            "hostname": opts.hostname,
            "container": storage.describe(),
            "storage": "local",
            "mode": "fs",
            "backup_media": "fs",
            "engine_name": "tar",
            "path_to_backup": opts.path.display().to_string(),
            "fs_real_path": opts.path.display().to_string(),
            "compression": opts.compression.name(),
            "encryption": false,
            "curr_backup_level": r.id.level,
            "time_stamp": r.id.timestamp,
            "level_zero_timestamp": r.id.level_zero,
            "parent": r.parent.map(|p| p.name()),
            "max_level": opts.policy.max_level,
            "always_level": opts.policy.always_level,
            "dry_run": r.dry_run,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_unchanged": s.files_unchanged,
            "files_unreadable": r.unreadable,
            "bytes_read": r.bytes_read,
            "bytes_stored": r.stored,
            "duration_secs": r.seconds,
            "client_version": env!("CARGO_PKG_VERSION"),
            "client_os": std::env::consts::OS,
        }),
    )
}

fn print_restore(common: &Common, opts: &RestoreOptions, r: &RestoreReport) -> Result<()> {
    let levels: Vec<String> = r.chain.iter().map(|id| id.name()).collect();
    let verb = if opts.dry_run { "checked" } else { "restored" };
    let line = format!(
        "{verb} {} [{}] into {}: {} members, {} in {:.1}s",
        r.layout.host_backup(),
        levels.join(" "),
        opts.target.display(),
        r.members,
        human(r.bytes),
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

fn list(storage: &LocalStorage, common: &Common, hostname: &str) -> Result<()> {
    use freezer::storage::Storage;
    let names: Vec<String> = match &common.backup_name {
        Some(_) => vec![
            catalog::Layout::new(hostname, &backup_name(common, None)).host_backup().to_string(),
        ],
        None => storage.list("metadata/tar")?,
    };
    let mut out = std::io::stdout().lock();
    for hb in names {
        let layout = catalog::Layout::from_host_backup(&hb);
        for b in catalog::load(storage, &layout)? {
            writeln!(
                out,
                "{hb}  chain {}  level {}  {}  {}  {}{}",
                b.id.level_zero,
                b.id.level,
                b.id.name(),
                catalog::format_local(b.id.timestamp),
                b.meta.compression,
                b.meta.data_size.map(|s| format!("  {}", human(s))).unwrap_or_default(),
            )?;
        }
    }
    Ok(())
}
