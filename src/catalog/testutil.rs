//! Builders for catalog tests.

use super::{Backup, BackupId, BackupMeta};

/// A backup as freezer-agent writes it: no parent, no level in the metadata.
pub fn agent(level_zero: i64, level: u32, timestamp: i64) -> Backup {
    Backup { id: BackupId { level_zero, timestamp, level }, meta: BackupMeta::new("gzip", false) }
}

/// A backup as freezer writes it, with its explicit parent name.
pub fn ours(level_zero: i64, level: u32, timestamp: i64, parent: Option<&str>) -> Backup {
    let mut b = agent(level_zero, level, timestamp);
    b.meta.format = Some(super::FORMAT);
    b.meta.level = Some(level);
    b.meta.time_stamp = Some(timestamp);
    b.meta.level_zero_timestamp = Some(level_zero);
    b.meta.parent = parent.map(str::to_string);
    b
}

/// `<L>_<T>` of each backup, for compact assertions.
pub fn names(chain: &[&Backup]) -> Vec<String> {
    chain.iter().map(|b| b.id.name()).collect()
}
