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
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fs => "fs",
            Mode::Mysql => "mysql",
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
        given
    }
}
