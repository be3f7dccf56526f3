//! Backup options: the parsed flags become the library's `BackupOptions`, values checked once.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use freezer::backup::BackupOptions;
use freezer::catalog::LevelPolicy;
use freezer::compress::Compression;
use freezer::crypt::{self, DecryptKey, EncryptKey, Encryption, Format};
use freezer::exclude::Excludes;
use freezer::freeze::{FreezeOptions, LvmOptions, SnapshotOptions};
use freezer::incremental::dump::DumpOptions;
use freezer::incremental::scan::ScanOptions;
use freezer::mode::{ModeOptions, MongoOptions, MysqlOptions};

use crate::cli::{BackupFlags, Common, Dereference, Mode, SnapPerm, SnapshotType};
use crate::run::{Profile, backup_name, usage};

pub fn backup_options(
    common: &Common,
    flags: &BackupFlags,
    profile: Profile,
    path: PathBuf,
    hostname: String,
) -> Result<BackupOptions> {
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
    let format = match &flags.encryption {
        Some(f) => Format::parse(f)?,
        None => profile.encryption(),
    };
    let (encryption, decrypt_key) = match (
        &common.encrypt_pass_file,
        flags.encrypt_recipient.is_empty(),
    ) {
        (Some(_), false) => bail!(usage(
            "give either --encrypt-pass-file or --encrypt-recipient: a passphrase cannot be combined with recipients"
        )),
        (Some(f), true) => {
            // Read once: the warning about a pass file others can read is said once.
            let pass = crypt::read_pass_file(f)?;
            let dkey = DecryptKey::Passphrase(pass.clone());
            let key = EncryptKey::Passphrase(pass);
            (Some(Encryption { format, key: Arc::new(key) }), Some(Arc::new(dkey)))
        }
        (None, false) => {
            let key = crypt::parse_recipients(&flags.encrypt_recipient)?;
            (Some(Encryption { format, key: Arc::new(key) }), None)
        }
        (None, true) if flags.encryption.is_some() => bail!(usage(&format!(
            "--encryption {} needs a key: add --encrypt-pass-file FILE{}",
            format.name(),
            if format == Format::Age { " or --encrypt-recipient AGE1…" } else { "" }
        ))),
        (None, true) => (None, None),
    };
    let deref = flags.dereference_symlink;
    Ok(BackupOptions {
        path,
        hostname,
        backup_name: backup_name(common, flags.mode.map(Mode::name)),
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
            dev_alias: None,
        },
        dump: DumpOptions {
            follow_symlinks: matches!(deref, Some(Dereference::Soft | Dereference::All)),
            hard_dereference: matches!(deref, Some(Dereference::Hard | Dereference::All)),
        },
        threads: cores(),
        dry_run: common.dry_run,
        now: std::env::var("FREEZER_TEST_NOW").ok().and_then(|v| v.parse().ok()),
        encryption,
        decrypt_key,
        state_dir: state_dir(),
        consistency_check: flags.consistency_check,
        freeze: freeze_options(flags, profile, common.dry_run)?,
    })
}

/// `--mode` and its options.
fn mode_options(flags: &BackupFlags) -> Result<ModeOptions> {
    let mode = flags.mode.unwrap_or_default();
    let m = &flags.modes;
    let foreign = m.foreign(mode);
    if !foreign.is_empty() {
        log::warn!("{} change nothing with --mode {}", foreign.join(", "), mode.name());
    }
    Ok(match mode {
        Mode::Fs => ModeOptions::Fs,
        Mode::Mysql => {
            let Some(conf) = m.mysql_conf.clone() else {
                bail!(usage(
                    "--mode mysql needs --mysql-conf FILE: the server's host, port, user, \
                     password or socket, as `key = value` lines (see the README)"
                ));
            };
            ModeOptions::Mysql(MysqlOptions {
                conf,
                lock_timeout: std::time::Duration::from_secs(m.mysql_lock_timeout),
            })
        }
        Mode::Mongo => {
            let from_env = std::env::var("FREEZER_MONGO_URI").ok().filter(|u| !u.is_empty());
            let uri = match m.mongo_uri.as_ref().or(from_env.as_ref()) {
                Some(uri) => {
                    if m.mongo_host != "localhost" || m.mongo_port != 27017 {
                        log::warn!("--mongo-host and --mongo-port change nothing with --mongo-uri");
                    }
                    uri.clone()
                }
                None => format!("mongodb://{}:{}/", m.mongo_host, m.mongo_port),
            };
            ModeOptions::Mongo(MongoOptions {
                uri,
                allow_secondary: m.mongo_allow_secondary,
                fsync_lock: m.mongo_fsync_lock,
            })
        }
    })
}

/// Hooks, sync, the database mode and the snapshot, from their flags.
fn freeze_options(flags: &BackupFlags, profile: Profile, dry_run: bool) -> Result<FreezeOptions> {
    let s = &flags.snapshot;
    let lvm_given = s.lvm_options_given();
    let snapshot = match (s.wanted(), s.snapshot_type) {
        (false, _) => {
            if !lvm_given.is_empty() {
                log::warn!("{} change nothing without --snapshot", lvm_given.join(", "));
            }
            None
        }
        (true, Some(SnapshotType::Btrfs)) => {
            if !lvm_given.is_empty() {
                log::warn!("{} change nothing with --snapshot-type btrfs", lvm_given.join(", "));
            }
            Some(SnapshotOptions::Btrfs)
        }
        (true, _) => Some(SnapshotOptions::Lvm(LvmOptions {
            srcvol: s.lvm_srcvol.clone(),
            volgroup: s.lvm_volgroup.clone(),
            snapname: s.lvm_snapname.clone(),
            snapsize: s.lvm_snapsize.clone(),
            read_write: s.lvm_snap_perm == SnapPerm::Rw,
            dirmount: s.lvm_dirmount.clone(),
        })),
    };
    Ok(FreezeOptions {
        snapshot,
        pre_exec: s.pre_exec.clone(),
        post_exec: s.post_exec.clone(),
        // As freezer-agent: flush what applications wrote before reading it.
        sync: !dry_run && (flags.sync || (profile == Profile::Agent && !flags.no_sync)),
        mode: mode_options(flags)?,
    })
}

/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `$XDG_STATE_HOME/freezer`, else
/// `~/.local/state/freezer`.
fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd gives a colon-separated list when a unit has several; ours is the first.
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return Some(PathBuf::from(first));
    }
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("freezer")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/freezer")),
    }
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

/// Threads for compression and decompression: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
