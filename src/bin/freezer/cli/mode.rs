//! `--mode` and the database modes' options (freezer-agent's `--mysql-conf`, plus ours).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// `--mode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Files only.
    #[default]
    Fs,
    /// MySQL or MariaDB: FLUSH TABLES WITH READ LOCK while the snapshot is created.
    Mysql,
    /// MongoDB: the primary or a standalone (a secondary with --mongo-allow-secondary).
    Mongo,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fs => "fs",
            Mode::Mysql => "mysql",
            Mode::Mongo => "mongo",
        }
    }
}

/// Options of the database modes.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Database modes")]
pub struct ModeFlags {
    /// --mode mysql: a file with host, port, user, password, socket (key = value lines, with
    /// or without a [default] section; keep it chmod 600).
    #[arg(long, value_name = "FILE")]
    pub mysql_conf: Option<PathBuf>,

    /// --mode mysql: how long FLUSH TABLES WITH READ LOCK may wait for running queries
    /// before the backup gives up (naming the query that blocks it).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub mysql_lock_timeout: u64,

    /// --mode mongo: mongodb://[USER:PASSWORD@]HOST[:PORT]/[?OPTIONS] of the node whose data
    /// directory is backed up (TLS and auth options as the driver takes them; no
    /// mongodb+srv). Also from FREEZER_MONGO_URI. Default: mongodb://--mongo-host:--mongo-port/.
    #[arg(long, value_name = "URI")]
    pub mongo_uri: Option<String>,

    /// --mode mongo: the node's host, without --mongo-uri.
    #[arg(long, value_name = "HOST", default_value = "localhost")]
    pub mongo_host: String,

    /// --mode mongo: the node's port, without --mongo-uri.
    #[arg(long, value_name = "PORT", default_value_t = 27017)]
    pub mongo_port: u16,

    /// --mode mongo: back up a secondary too (refused otherwise, naming the primary).
    #[arg(long)]
    pub mongo_allow_secondary: bool,

    /// --mode mongo: fsyncLock while the snapshot is created, where the server supports it
    /// (otherwise, and by default, the journal makes the snapshot consistent).
    #[arg(long)]
    pub mongo_fsync_lock: bool,
}

impl ModeFlags {
    /// The options given that belong to another mode than `mode`.
    pub fn foreign(&self, mode: Mode) -> Vec<&'static str> {
        let mut given = Vec::new();
        if mode != Mode::Mysql {
            if self.mysql_conf.is_some() {
                given.push("--mysql-conf");
            }
            if self.mysql_lock_timeout != 30 {
                given.push("--mysql-lock-timeout");
            }
        }
        if mode != Mode::Mongo {
            for (set, name) in [
                (self.mongo_uri.is_some(), "--mongo-uri"),
                (self.mongo_host != "localhost", "--mongo-host"),
                (self.mongo_port != 27017, "--mongo-port"),
                (self.mongo_allow_secondary, "--mongo-allow-secondary"),
                (self.mongo_fsync_lock, "--mongo-fsync-lock"),
            ] {
                if set {
                    given.push(name);
                }
            }
        }
        given
    }
}
