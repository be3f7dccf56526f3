//! Storage keys of freezer-agent 19's layout for the `tar` engine:
//!
//! ```text
//! data/tar/<HB>/<T0>/<L>_<T>/data
//! data/tar/<HB>/<T0>/<L>_<T>/engine_metadata
//! metadata/tar/<HB>/<T0>/<L>_<T>/metadata
//! ```
//!
//! `HB` is `<hostname>_<backup_name>`, `T0` the Unix seconds of the chain's level 0, `L` the
//! level and `T` the Unix seconds of the backup (so a level 0 is `0_<T0>`).

use std::fmt;

/// The engine name in keys and in the metadata; freezer only writes `tar` backups.
pub const ENGINE: &str = "tar";

/// The keys of one host's backup name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    host_backup: String,
}

/// One backup: its chain (`level_zero`), its own time and its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId {
    /// Unix seconds of the chain's level 0 (the `<T0>` directory).
    pub level_zero: i64,
    /// Unix seconds of this backup.
    pub timestamp: i64,
    /// 0 for a full backup, N for an incremental on top of level N-1.
    pub level: u32,
}

impl BackupId {
    /// The directory name, `<L>_<T>`.
    pub fn name(&self) -> String {
        format!("{}_{}", self.level, self.timestamp)
    }

    /// Read `<L>_<T>` (digits only); `None` for anything else.
    pub fn parse_name(level_zero: i64, name: &str) -> Option<BackupId> {
        let (level, timestamp) = name.split_once('_')?;
        Some(BackupId {
            level_zero,
            timestamp: parse_digits(timestamp)?,
            level: parse_digits(level)?,
        })
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.level_zero, self.name())
    }
}

/// A non-negative decimal number without sign or spaces (what `str::parse` would also accept
/// as `+5` is not a name freezer-agent writes).
pub(crate) fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Layout {
    /// The layout of `<hostname>_<backup_name>`, as freezer-agent joins them.
    pub fn new(hostname: &str, backup_name: &str) -> Layout {
        Layout { host_backup: format!("{hostname}_{backup_name}") }
    }

    /// The layout of an already joined `<hostname>_<backup_name>` (as listed in a container).
    pub fn from_host_backup(host_backup: &str) -> Layout {
        Layout { host_backup: host_backup.to_string() }
    }

    /// `<hostname>_<backup_name>`.
    pub fn host_backup(&self) -> &str {
        &self.host_backup
    }

    /// `data/tar/<HB>/<T0>/<L>_<T>`: everything of one backup but its metadata.
    pub fn data_dir(&self, id: &BackupId) -> String {
        format!("{}/{}", self.data_chain_dir(id.level_zero), id.name())
    }

    /// The backup stream.
    pub fn data_key(&self, id: &BackupId) -> String {
        format!("{}/data", self.data_dir(id))
    }

    /// The GNU tar snapshot file after this backup.
    pub fn engine_metadata_key(&self, id: &BackupId) -> String {
        format!("{}/engine_metadata", self.data_dir(id))
    }

    /// `metadata/tar/<HB>/<T0>/<L>_<T>`.
    pub fn metadata_dir(&self, id: &BackupId) -> String {
        format!("{}/{}", self.metadata_chain_dir(id.level_zero), id.name())
    }

    /// The metadata JSON, written last: a backup exists once this does.
    pub fn metadata_key(&self, id: &BackupId) -> String {
        format!("{}/metadata", self.metadata_dir(id))
    }

    /// `metadata/tar/<HB>`: listing it gives the chains (`<T0>`).
    pub fn metadata_root(&self) -> String {
        format!("metadata/{ENGINE}/{}", self.host_backup)
    }

    /// `data/tar/<HB>`.
    pub fn data_root(&self) -> String {
        format!("data/{ENGINE}/{}", self.host_backup)
    }

    /// `metadata/tar/<HB>/<T0>`: listing it gives the chain's backups.
    pub fn metadata_chain_dir(&self, level_zero: i64) -> String {
        format!("{}/{level_zero}", self.metadata_root())
    }

    /// `data/tar/<HB>/<T0>`.
    pub fn data_chain_dir(&self, level_zero: i64) -> String {
        format!("{}/{level_zero}", self.data_root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_freezer_agent() {
        let layout = Layout::new("fixturehost", "fixture");
        let l0 = BackupId { level_zero: 1795706779, timestamp: 1795706779, level: 0 };
        let l2 = BackupId { level_zero: 1795706779, timestamp: 1795706790, level: 2 };
        assert_eq!(layout.host_backup(), "fixturehost_fixture");
        assert_eq!(layout.metadata_root(), "metadata/tar/fixturehost_fixture");
        assert_eq!(layout.data_dir(&l0), "data/tar/fixturehost_fixture/1795706779/0_1795706779");
        assert_eq!(
            layout.data_key(&l2),
            "data/tar/fixturehost_fixture/1795706779/2_1795706790/data"
        );
        assert_eq!(
            layout.engine_metadata_key(&l2),
            "data/tar/fixturehost_fixture/1795706779/2_1795706790/engine_metadata"
        );
        assert_eq!(
            layout.metadata_key(&l2),
            "metadata/tar/fixturehost_fixture/1795706779/2_1795706790/metadata"
        );
        assert_eq!(layout.metadata_chain_dir(5), "metadata/tar/fixturehost_fixture/5");
        assert_eq!(layout.data_chain_dir(5), "data/tar/fixturehost_fixture/5");
    }

    #[test]
    fn names_parse_strictly() {
        let id = BackupId::parse_name(10, "3_12").unwrap();
        assert_eq!(id, BackupId { level_zero: 10, timestamp: 12, level: 3 });
        assert_eq!(id.name(), "3_12");
        assert_eq!(id.to_string(), "10/3_12");
        for bad in ["", "3", "_12", "3_", "a_12", "3_1a", "+3_12", "3_-12", "3_12_1", " 3_12"] {
            assert_eq!(BackupId::parse_name(10, bad), None, "{bad:?}");
        }
        assert_eq!(parse_digits::<i64>("0012"), Some(12));
        assert_eq!(parse_digits::<u32>("99999999999"), None);
    }
}
