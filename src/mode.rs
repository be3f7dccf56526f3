//! Database modes (`--mode mysql`, `--mode mongo`): guards around the snapshot that make the
//! database's files a consistent copy, and record where the copy stands (MySQL: the binlog
//! position; MongoDB: the node's role and replica set).
//!
//! The order (see [`crate::freeze`]): pre-exec → sync → mode prepared (MySQL: `FLUSH TABLES
//! WITH READ LOCK`, the binlog position recorded) → snapshot created → mode released →
//! post-exec → scan and store → snapshot removed. Without a snapshot the mode is released
//! after the backup, so the database stays locked the whole time (a warning says so). What
//! the mode recorded goes into the backup's metadata ([`crate::catalog::DatabaseMeta`]).
#![warn(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::DatabaseMeta;
use crate::error::Result;

mod conf;
mod mongo;
mod mysql;

/// Which database, if any, to hold still around the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ModeOptions {
    /// Files only: nothing to prepare (freezer-agent's default mode).
    #[default]
    Fs,
    /// MySQL or MariaDB: a global read lock while the snapshot is created.
    Mysql(MysqlOptions),
    /// MongoDB: only a primary or standalone (a secondary if allowed); `fsyncLock` optional.
    Mongo(MongoOptions),
}

impl ModeOptions {
    /// The mode's name, as `--mode` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            ModeOptions::Fs => "fs",
            ModeOptions::Mysql(_) => "mysql",
            ModeOptions::Mongo(_) => "mongo",
        }
    }
}

/// `--mode mysql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlOptions {
    /// `--mysql-conf`: host, port, user, password, socket (see the README).
    pub conf: PathBuf,
    /// `--mysql-lock-timeout`: how long `FLUSH TABLES WITH READ LOCK` may wait for queries
    /// that hold tables open before the backup gives up.
    pub lock_timeout: Duration,
}

/// `--mode mongo`.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoOptions {
    /// A `mongodb://` URI naming the one node whose data directory is backed up (credentials
    /// and TLS options as the driver takes them).
    pub uri: String,
    /// Back up a secondary too (otherwise refused, naming the primary).
    pub allow_secondary: bool,
    /// `fsyncLock` while the snapshot is created, where the server supports it.
    pub fsync_lock: bool,
}

/// Never shows the URI's password.
impl std::fmt::Debug for MongoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoOptions")
            .field("uri", &mongo::redact(&self.uri))
            .field("allow_secondary", &self.allow_secondary)
            .field("fsync_lock", &self.fsync_lock)
            .finish()
    }
}

/// A database held in a consistent state until released.
pub(crate) trait Quiesced {
    /// What was recorded when it was quiesced (for the metadata).
    fn recorded(&self) -> &DatabaseMeta;
    /// Let the database go on; idempotent. Dropping also releases, without an error.
    fn release(&mut self) -> Result<()>;
}

/// Quiesce the database of `opts`; `snapshot`: whether a snapshot will be taken (if not, the
/// database stays quiesced for the whole backup, and a warning says what that means).
pub(crate) fn prepare(opts: &ModeOptions, snapshot: bool) -> Result<Option<Box<dyn Quiesced>>> {
    match opts {
        ModeOptions::Fs => Ok(None),
        ModeOptions::Mysql(o) => Ok(Some(Box::new(mysql::Mysql::prepare(o, snapshot)?))),
        ModeOptions::Mongo(o) => Ok(Some(Box::new(mongo::Mongo::prepare(o, snapshot)?))),
    }
}
