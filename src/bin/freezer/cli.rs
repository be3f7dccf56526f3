//! Command-line definition: freezer-agent's flat options (`--action backup …`) and friendly
//! subcommands (`freezer backup PATH …`) over the same groups of flags, so both spellings reach
//! the same code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod s3;
pub use s3::{S3Addressing, S3Flags};
mod ftp;
pub use ftp::FtpFlags;
mod sftp;
pub use sftp::SftpFlags;
mod mode;
pub use mode::{Mode, ModeFlags};
mod snapshot;
pub use snapshot::{SnapPerm, SnapshotFlags, SnapshotType};

#[derive(Parser, Debug)]
#[command(
    name = "freezer",
    version,
    about = "Back up and restore directory trees as GNU tar multi-level incrementals",
    long_about = "Back up and restore directory trees as GNU tar multi-level incrementals.\n\n\
        Use the subcommands (`freezer backup PATH`, `freezer restore DIR`, `freezer list`), or \
        freezer-agent's options (`freezer --action backup --path-to-backup PATH …`): both run \
        the same code. Called as `freezer-agent`, the defaults are freezer-agent's.",
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    infer_long_args = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// What to do (freezer-agent spelling): backup, restore, info, admin, exec.
    #[arg(help_heading = "Operation", long, value_enum)]
    pub action: Option<Action>,

    /// Directory (or single file) to back up.
    #[arg(
        help_heading = "Backup",
        short = 'F',
        long = "path-to-backup",
        visible_alias = "file-to-backup",
        value_name = "PATH"
    )]
    pub path_to_backup: Option<PathBuf>,

    /// freezerc 1.0: print each container as JSON (name, size, object count).
    #[arg(help_heading = "Operation", short = 'L', long)]
    pub list_containers: bool,

    /// freezerc 1.0: print each object of the container as JSON (name, upload date).
    #[arg(help_heading = "Operation", short = 'l', long)]
    pub list_objects: bool,

    /// The shell command of --action exec.
    #[arg(help_heading = "Operation", long = "command", value_name = "CMD")]
    pub exec_command: Option<String>,

    #[command(flatten)]
    pub common: Common,

    #[command(flatten)]
    pub backup: BackupFlags,

    #[command(flatten)]
    pub restore: RestoreFlags,

    #[command(flatten)]
    pub retention: RetentionFlags,

    #[command(flatten)]
    pub keep: KeepFlags,
}

pub const EXIT_CODES: &str = "Exit codes:\n  \
    0  success\n  \
    1  failed (storage, I/O or internal error; nothing new is visible in the storage)\n  \
    2  bad options or configuration; or restore target not empty without --overwrite\n  \
    3  backup completed, but some files could not be read or changed while being read, or\n     \
       a --post-exec hook or removing the snapshot failed\n  \
    4  no backup matches the name, host or date\n  \
    5  stored data is damaged, or an archive tried to write outside the restore directory\n  \
    6  wrong passphrase or identity for an encrypted backup (nothing was restored)\n  \
    7  another freezer run is backing up the same host and backup name";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Back up a directory tree (or one file).
    Backup(Box<BackupCmd>),
    /// Restore a backup into a directory.
    Restore(RestoreCmd),
    /// List backups in a container.
    List(ListCmd),
    /// Remove old backups, whole chains at a time, never one a kept backup needs.
    Prune(PruneCmd),
    /// Re-read stored backups and check them against what was recorded at backup time.
    Verify(VerifyCmd),
}

#[derive(Args, Debug)]
#[command(args_override_self = true, infer_long_args = true)]
pub struct VerifyCmd {
    #[command(flatten)]
    pub common: Common,
    /// Only the chain a restore at this date would use (default: every backup).
    #[arg(long, value_name = "DATE")]
    pub restore_from_date: Option<String>,
    /// Only the chain a restore would use now.
    #[arg(long)]
    pub newest: bool,
    /// Every host and backup name in the container.
    #[arg(long)]
    pub all_hosts: bool,
    /// Decrypt age backups with the identities in FILE.
    #[arg(long, value_name = "FILE")]
    pub encrypt_identity_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_override_self = true, infer_long_args = true)]
pub struct PruneCmd {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub retention: RetentionFlags,
    #[command(flatten)]
    pub keep: KeepFlags,
}

#[derive(Args, Debug)]
#[command(args_override_self = true, infer_long_args = true)]
pub struct BackupCmd {
    /// Directory (or single file) to back up.
    #[arg(value_name = "PATH", required_unless_present = "path_to_backup")]
    pub path: Option<PathBuf>,
    #[arg(short = 'F', long = "path-to-backup", visible_alias = "file-to-backup", hide = true)]
    pub path_to_backup: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub backup: BackupFlags,
    #[command(flatten)]
    pub retention: RetentionFlags,
}

#[derive(Args, Debug)]
#[command(args_override_self = true, infer_long_args = true)]
pub struct RestoreCmd {
    /// Directory to restore into (created if missing).
    #[arg(value_name = "DIR", required_unless_present = "restore_abs_path")]
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub restore: RestoreFlags,
}

#[derive(Args, Debug)]
#[command(args_override_self = true, infer_long_args = true)]
pub struct ListCmd {
    #[command(flatten)]
    pub common: Common,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Backup,
    Restore,
    Info,
    Admin,
    Exec,
}

/// Options every action takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Backup name; stored as <hostname>_<backup-name>. Default: freezer_{mode}_{hostname}.
    #[arg(help_heading = "Storage", short = 'N', long = "backup-name", value_name = "NAME")]
    pub backup_name: Option<String>,

    /// Where backups live: a directory for local storage.
    /// Default: /var/backups/freezer (freezer) or freezer_backups (freezer-agent).
    #[arg(help_heading = "Storage", short = 'C', long, value_name = "CONTAINER")]
    pub container: Option<String>,

    /// Storage type. Default: local (freezer) or swift (freezer-agent).
    #[arg(help_heading = "Storage", long, value_enum)]
    pub storage: Option<StorageKind>,

    /// With several storages ([storage:NAME] sections of --config): fail (one fails, all
    /// fail; no copy is kept) or warn (keep the copies that succeeded, exit 3).
    #[arg(help_heading = "Storage", long, value_enum, value_name = "WHAT", default_value = "fail")]
    pub storage_failure: StorageFailure,

    /// Host name the backups belong to; set it to restore another host's backups.
    #[arg(
        help_heading = "Storage",
        long,
        visible_alias = "restore-from-host",
        value_name = "HOST"
    )]
    pub hostname: Option<String>,

    /// Do the work but store, change or delete nothing.
    #[arg(help_heading = "Operation", long, overrides_with = "no_dry_run")]
    pub dry_run: bool,
    #[arg(long = "nodry-run", hide = true, overrides_with = "dry_run")]
    pub no_dry_run: bool,

    /// Also append log lines to this file. Default: none (freezer), ~/.freezer/freezer.log
    /// (freezer-agent).
    #[arg(help_heading = "Operation", long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Log to DIR/freezer.log (freezer-agent.log when called so), unless --log-file is given.
    #[arg(help_heading = "Operation", long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Lowest level written to the log file: error, warn, info (default) or debug.
    #[arg(help_heading = "Operation", long, value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,

    /// Same as --log-level debug.
    #[arg(help_heading = "Operation", short = 'd', long)]
    pub debug: bool,

    /// Print nothing but errors.
    #[arg(help_heading = "Operation", short, long, overrides_with = "no_quiet")]
    pub quiet: bool,
    #[arg(long = "noquiet", hide = true, overrides_with = "quiet")]
    pub no_quiet: bool,

    /// Read options from a freezer-agent INI job file; options given on the command line win
    /// over the file. Its [storage:NAME] sections (storage=, container=, credentials) make
    /// the run write to all of those storages at once.
    #[arg(help_heading = "Operation", long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Encrypt (backup) or decrypt (restore) with the passphrase on the first line of FILE.
    #[arg(help_heading = "Encryption", long, value_name = "FILE")]
    pub encrypt_pass_file: Option<PathBuf>,

    /// Limit uploads to BYTES per second (K, M, G suffixes; -1: no limit).
    #[arg(help_heading = "Storage", long, value_name = "BYTES", allow_hyphen_values = true)]
    pub upload_limit: Option<String>,

    /// Limit downloads to BYTES per second (K, M, G suffixes; -1: no limit).
    #[arg(help_heading = "Storage", long, value_name = "BYTES", allow_hyphen_values = true)]
    pub download_limit: Option<String>,

    /// Run at the highest CPU and I/O priority (nice -19, real-time I/O class), as
    /// freezer-agent does; needs root. Any value but False turns it on.
    #[arg(help_heading = "Operation", long, value_name = "ANY", num_args = 0..=1, default_missing_value = "True")]
    pub max_priority: Option<String>,

    /// Print the summary (or the listing) as JSON on stdout.
    #[arg(help_heading = "Operation", long)]
    pub json: bool,

    /// Write the run's metadata as JSON to FILE, or to stdout with `-` (for freezer-scheduler).
    #[arg(help_heading = "Operation", long, value_name = "FILE|-")]
    pub metadata_out: Option<String>,

    #[command(flatten)]
    pub swift: SwiftFlags,

    #[command(flatten)]
    pub s3: S3Flags,

    #[command(flatten)]
    pub sftp: SftpFlags,

    #[command(flatten)]
    pub ftp: FtpFlags,
}

/// Swift settings. Credentials also come from the OS_* variables, an openrc file (--osrc) or
/// clouds.yaml (--os-cloud); secrets (passwords, keys, tokens) only from those, never from
/// the command line.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Swift")]
pub struct SwiftFlags {
    /// Keystone (…/v3, …/v2.0) or tempauth (…/auth/v1.0) URL [env: OS_AUTH_URL].
    #[arg(long, value_name = "URL")]
    pub os_auth_url: Option<String>,
    /// Auth version: 1, 2 or 3 (default: from the URL, else 3).
    #[arg(hide_short_help = true, long, visible_alias = "os-auth-ver", value_name = "N")]
    pub os_identity_api_version: Option<String>,
    /// password (default), v3applicationcredential or token.
    #[arg(hide_short_help = true, long, value_name = "TYPE")]
    pub os_auth_type: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "NAME")]
    pub os_username: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "ID")]
    pub os_user_id: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "NAME")]
    pub os_user_domain_name: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "ID")]
    pub os_user_domain_id: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "NAME")]
    pub os_project_name: Option<String>,
    /// Project id (freezer-agent: --project-id).
    #[arg(hide_short_help = true, long, visible_alias = "project-id", value_name = "ID")]
    pub os_project_id: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "NAME")]
    pub os_project_domain_name: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "ID")]
    pub os_project_domain_id: Option<String>,
    /// Region of the object-store endpoint [env: OS_REGION_NAME].
    #[arg(hide_short_help = true, long, value_name = "REGION")]
    pub os_region_name: Option<String>,
    /// public (default), internal or admin [env: OS_INTERFACE, OS_ENDPOINT_TYPE].
    #[arg(
        hide_short_help = true,
        long,
        visible_alias = "os-endpoint-type",
        value_name = "INTERFACE"
    )]
    pub os_interface: Option<String>,
    /// Use this Swift URL instead of the catalog's [env: OS_STORAGE_URL].
    #[arg(hide_short_help = true, long, value_name = "URL")]
    pub os_storage_url: Option<String>,
    /// Trust only the CA certificates in this PEM file [env: OS_CACERT].
    #[arg(hide_short_help = true, long, value_name = "FILE")]
    pub os_cacert: Option<String>,
    /// The clouds.yaml entry to use [env: OS_CLOUD].
    #[arg(long, value_name = "NAME")]
    pub os_cloud: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "ID")]
    pub os_application_credential_id: Option<String>,
    #[arg(hide_short_help = true, long, value_name = "NAME")]
    pub os_application_credential_name: Option<String>,
    #[arg(long, value_name = "ID", hide = true)]
    pub os_trust_id: Option<String>,
    /// An openrc file with the OS_* settings (freezer-agent's osrc).
    #[arg(long, value_name = "FILE")]
    pub osrc: Option<PathBuf>,
    /// Do not check TLS certificates [env: OS_INSECURE].
    #[arg(hide_short_help = true, long, overrides_with = "no_insecure")]
    pub insecure: bool,
    #[arg(long = "noinsecure", hide = true, overrides_with = "insecure")]
    pub no_insecure: bool,
    /// HTTP(S) proxy for the storage, instead of HTTPS_PROXY; '' for none.
    #[arg(hide_short_help = true, long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Segments held at once: the one being filled and N-1 uploading (at least 1); on
    /// restore, N read ahead. Memory is about N × --max-segment-size.
    #[arg(help_heading = "Storage", long, value_name = "N", default_value_t = 4)]
    pub upload_concurrency: usize,
    /// Retries of a failed storage request (with exponential backoff).
    #[arg(help_heading = "Storage", long, value_name = "N", default_value_t = 6)]
    pub storage_retries: u32,
    /// Give up on a storage request that sends or receives nothing for SECONDS
    /// (freezer-agent's --timeout).
    #[arg(
        help_heading = "Storage",
        long,
        visible_alias = "timeout",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub storage_timeout: u64,
}

/// `--storage-failure`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StorageFailure {
    #[default]
    Fail,
    Warn,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    Local,
    Swift,
    S3,
    Ssh,
    Ftp,
    Ftps,
}

/// Backup options.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Backup")]
pub struct BackupFlags {
    /// What to back up: fs (files), or mysql (a MySQL/MariaDB data directory, locked while
    /// the snapshot is created; see --mysql-conf).
    #[arg(short = 'm', long, value_enum, value_name = "MODE")]
    pub mode: Option<Mode>,

    /// Backup engine; only tar.
    #[arg(short = 'e', long, value_name = "ENGINE")]
    pub engine: Option<String>,

    /// Record freezer-agent's checksum of the tree (sorted walk) in the metadata, to check a
    /// restore with --consistency-checksum.
    #[arg(long, overrides_with = "no_consistency_check")]
    pub consistency_check: bool,
    #[arg(long = "noconsistency-check", hide = true, overrides_with = "consistency_check")]
    pub no_consistency_check: bool,

    /// Run sync(2) first, so that what applications wrote is on disk (freezer-agent's
    /// default; --nosync to skip).
    #[arg(long, overrides_with = "no_sync")]
    pub sync: bool,
    #[arg(long = "nosync", hide = true, overrides_with = "sync")]
    pub no_sync: bool,

    /// Make incremental backups (implied by --max-level / --always-level).
    #[arg(long, overrides_with = "no_incremental")]
    pub incremental: bool,
    // oslo.config, which freezer-agent uses, accepts `--noX` for every boolean `--X`.
    #[arg(long = "noincremental", hide = true, overrides_with = "incremental")]
    pub no_incremental: bool,

    /// Levels 0..N, then a new chain.
    #[arg(long, value_name = "N")]
    pub max_level: Option<u32>,

    /// Climb to level N, then make every next backup level N again against level N-1.
    #[arg(long, value_name = "N")]
    pub always_level: Option<u32>,

    /// Start a new chain when the newest backup is older than DAYS days.
    #[arg(long, value_name = "DAYS")]
    pub restart_always_level: Option<f64>,

    /// zstd, gzip, bzip2, xz or none. Default: zstd (freezer) or gzip (freezer-agent).
    #[arg(long, value_name = "CODEC")]
    pub compression: Option<String>,

    /// Segment size in bytes (K, M, G suffixes allowed); bounds memory use. Default 32M.
    #[arg(short = 'M', long, visible_alias = "max-seg-size", value_name = "BYTES")]
    pub max_segment_size: Option<String>,

    /// Leave out names matching this pattern (GNU tar --exclude rules); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,

    /// soft: store what symlinks point to; hard: store hard links as separate files; all: both.
    #[arg(long, value_enum, value_name = "KIND")]
    pub dereference_symlink: Option<Dereference>,

    /// Encrypt to this age recipient (age1…) instead of a passphrase; repeatable. The host
    /// then cannot decrypt its own backups.
    #[arg(help_heading = "Encryption", long, value_name = "AGE1…")]
    pub encrypt_recipient: Vec<String>,

    /// Encryption format: age (authenticated; default for freezer) or openssl-aes-256-cfb
    /// (freezer-agent's, not authenticated; default when called as freezer-agent).
    #[arg(help_heading = "Encryption", long, value_name = "FORMAT")]
    pub encryption: Option<String>,

    /// If another run holds this backup's lock, wait up to SECONDS for it (default: fail at
    /// once, exit code 7).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_wait: u64,

    /// Also descend into directories on other file systems (freezer-agent never does).
    #[arg(long)]
    pub cross_file_systems: bool,

    #[command(flatten)]
    pub snapshot: SnapshotFlags,

    #[command(flatten)]
    pub modes: ModeFlags,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dereference {
    Soft,
    Hard,
    All,
}

/// Restore options.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Restore")]
pub struct RestoreFlags {
    /// Directory to restore into.
    #[arg(long, value_name = "DIR")]
    pub restore_abs_path: Option<PathBuf>,

    /// Restore the state as of this date: YYYY-MM-DDThh:mm:ss (local time) or RFC 3339.
    #[arg(long, value_name = "DATE")]
    pub restore_from_date: Option<String>,

    /// Decrypt age backups with the identities (AGE-SECRET-KEY-1…) in FILE.
    #[arg(help_heading = "Encryption", long, value_name = "FILE")]
    pub encrypt_identity_file: Option<PathBuf>,

    /// After restoring, compare the tree with this checksum from --consistency-check; a
    /// mismatch fails the restore (exit 5).
    #[arg(long, value_name = "HEX")]
    pub consistency_checksum: Option<String>,

    /// Key derivation digest of openssl-encrypted backups: sha256 or md5 (default: detected).
    #[arg(help_heading = "Encryption", long, value_name = "DIGEST")]
    pub openssl_md: Option<String>,

    /// Restore into a non-empty directory; files absent from the backup are deleted from the
    /// directories it restores.
    #[arg(long, overrides_with = "no_overwrite")]
    pub overwrite: bool,
    #[arg(long = "nooverwrite", hide = true, overrides_with = "overwrite")]
    pub no_overwrite: bool,
}

/// Retention: which chains to remove. A chain goes only when no kept backup needs it.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Retention")]
pub struct RetentionFlags {
    /// Remove chains whose newest backup is older than DAYS days (fractions allowed).
    #[arg(short = 'R', long, visible_alias = "remove-older-then", value_name = "DAYS")]
    pub remove_older_than: Option<String>,

    /// Remove chains whose newest backup is at or before DATE.
    #[arg(long, value_name = "DATE")]
    pub remove_from_date: Option<String>,
}

/// More retention rules, counted in chains (`freezer prune`).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Retention")]
pub struct KeepFlags {
    /// Keep the N newest chains.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest chain of each of the last N days that have backups.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest chain of each of the last N weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest chain of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Prune every host and backup name in the container, not only this one.
    #[arg(long)]
    pub all_hosts: bool,
    /// Also remove data that never got its metadata (crashed runs), once older than
    /// --orphan-grace-hours.
    #[arg(long)]
    pub orphans: bool,
    /// Age in hours before data without metadata counts as an orphan.
    #[arg(long, value_name = "HOURS", default_value_t = 24.0)]
    pub orphan_grace_hours: f64,
}
