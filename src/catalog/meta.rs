//! The `metadata` JSON of one backup.
//!
//! freezer-agent writes `{"engine_name": "tar", "compression": "gzip", "encryption": false}` as
//! one line and reads it back with `json.loads` of the first line, ignoring other keys. We write
//! the same three keys plus our own optional ones (absent from agent backups), compact, on one
//! line, no trailing newline. Keys we do not know (written by a newer freezer) are kept in
//! [`BackupMeta::extra`] so a read-modify-write does not drop them and `info` can show them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The value of [`BackupMeta::format`] this version writes.
pub const FORMAT: u32 = 1;

/// One backup's metadata; see the module doc for the agent's part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BackupMeta {
    /// `tar`.
    pub engine_name: String,
    /// `gzip`, `bzip2`, `xz`, `zstd` or `none`.
    pub compression: String,
    /// Whether `data` is encrypted (freezer-agent: always `openssl enc -aes-256-cfb`).
    pub encryption: bool,
    /// Ours: how: `age` or `openssl-aes-256-cfb`; absent means the agent's openssl format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_format: Option<String>,
    /// Ours: the kind of storage it was written to (`local`, `swift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,

    /// Our metadata format version ([`FORMAT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    /// `freezer <version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_to_backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_zero_timestamp: Option<i64>,
    /// `<L>_<T>` of the parent in the same chain; absent for level 0 and agent backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Bytes of `data` as stored (after compression and encryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size: Option<u64>,
    /// SHA-256 (hex) of `data` as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
    /// The segment size used when writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<u64>,
    /// Each segment of `data`, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<SegmentMeta>>,
    /// SHA-256 (hex) of `engine_metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_metadata_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<BackupStats>,
    /// What the backup left out (`--exclude` patterns, `=name` for exact names), so that a
    /// restore can tell an excluded entry from a missing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
    /// freezer-agent's checksum of the tree (`--consistency-check`), as it names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_checksum: Option<String>,
    /// What `--mode mysql` or `--mode mongo` recorded of the database while it was held still.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseMeta>,

    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One stored segment of `data`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    pub size: u64,
    pub sha256: String,
}

/// What a backup run saw; informational (for `info` and logs), never used to restore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct BackupStats {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub files_deleted: u64,
    /// Files or directories that could not be read and were left out.
    pub unreadable: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    pub duration_secs: f64,
}

/// What a database mode recorded while the database was held still (`--mode mysql|mongo`):
/// where a point-in-time recovery starts, and how consistent the copy is. Every field is
/// optional, so a newer freezer may add some and an older one keeps them in `extra`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DatabaseMeta {
    /// `mysql` or `mongo`.
    pub mode: String,
    /// The server's version string (`SELECT @@version`, `buildInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// MySQL: the binary log file current under the lock (`SHOW MASTER STATUS`'s File).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_file: Option<String>,
    /// MySQL: the position in it: `mysqlbinlog --start-position` of a point-in-time recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_position: Option<u64>,
    /// MySQL: the GTID position (MariaDB `@@gtid_binlog_pos`, MySQL `@@gtid_executed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_position: Option<String>,
    /// MongoDB: `standalone`, `primary` or `secondary`, as the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    /// MongoDB: the replica set's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    /// The node the backup was taken from (`host:port`, or a MySQL socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// How the copy was held consistent, in words (e.g. "FLUSH TABLES WITH READ LOCK while
    /// the btrfs snapshot was created").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl DatabaseMeta {
    /// The recorded position in one line, for `freezer list`: `mysql-bin.000003:1234
    /// gtid 0-1-42`, `primary of rs0`; `-` when nothing was recorded.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.binlog_file {
            parts.push(format!("{f}:{}", self.binlog_position.unwrap_or(0)));
        }
        if let Some(g) = self.gtid_position.as_deref().filter(|g| !g.is_empty()) {
            parts.push(format!("gtid {g}"));
        }
        if let Some(t) = &self.topology {
            match &self.replica_set {
                Some(rs) => parts.push(format!("{t} of {rs}")),
                None => parts.push(t.clone()),
            }
        }
        if parts.is_empty() { "-".into() } else { parts.join(" ") }
    }
}

impl BackupMeta {
    /// The agent's three keys, ours all unset.
    pub fn new(compression: &str, encryption: bool) -> BackupMeta {
        BackupMeta {
            engine_name: super::ENGINE.to_string(),
            compression: compression.to_string(),
            encryption,
            encryption_format: None,
            storage: None,
            format: None,
            tool: None,
            hostname: None,
            backup_name: None,
            path_to_backup: None,
            level: None,
            time_stamp: None,
            level_zero_timestamp: None,
            parent: None,
            data_size: None,
            data_sha256: None,
            segment_size: None,
            segments: None,
            engine_metadata_sha256: None,
            stats: None,
            excludes: None,
            consistency_checksum: None,
            database: None,
            extra: BTreeMap::new(),
        }
    }

    /// Whether freezer (not freezer-agent) wrote this.
    pub fn is_ours(&self) -> bool {
        self.format.is_some()
    }

    /// The stored form: compact JSON on one line, no trailing newline.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| {
            Error::new(crate::ErrorKind::Io, "cannot serialize backup metadata").with_source(e)
        })
    }

    /// Parse the stored form read from `key` (named in the error).
    pub fn from_json(bytes: &[u8], key: &str) -> Result<BackupMeta> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupt(format!(
                "backup metadata {key} is not valid: {e}; it should be JSON like \
                 {{\"engine_name\": \"tar\", \"compression\": \"gzip\", \"encryption\": false}}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_form_parses() {
        let text = br#"{"engine_name": "tar", "compression": "gzip", "encryption": false}"#;
        let meta = BackupMeta::from_json(text, "k").unwrap();
        assert_eq!(meta, BackupMeta::new("gzip", false));
        assert!(!meta.is_ours());
        // Written back, only the agent's three keys appear.
        assert_eq!(
            meta.to_json().unwrap(),
            r#"{"engine_name":"tar","compression":"gzip","encryption":false}"#
        );
        let text = br#"{"engine_name": "tar", "compression": "xz", "encryption": true}"#;
        assert!(BackupMeta::from_json(text, "k").unwrap().encryption);
    }

    #[test]
    fn full_round_trip_on_one_line() {
        let mut meta = BackupMeta::new("zstd", true);
        meta.format = Some(FORMAT);
        meta.tool = Some("freezer 0.1.0".into());
        meta.hostname = Some("www".into());
        meta.backup_name = Some("etc".into());
        meta.path_to_backup = Some("/etc\nwith newline".into());
        meta.level = Some(2);
        meta.time_stamp = Some(1795706790);
        meta.level_zero_timestamp = Some(1795706779);
        meta.parent = Some("1_1795706785".into());
        meta.data_size = Some(300);
        meta.data_sha256 = Some("ab".repeat(32));
        meta.segment_size = Some(256);
        meta.segments = Some(vec![
            SegmentMeta { size: 256, sha256: "01".repeat(32) },
            SegmentMeta { size: 44, sha256: "02".repeat(32) },
        ]);
        meta.engine_metadata_sha256 = Some("cd".repeat(32));
        meta.stats = Some(BackupStats { files_new: 3, duration_secs: 1.5, ..Default::default() });
        let json = meta.to_json().unwrap();
        assert!(!json.contains('\n') && !json.ends_with('\n'), "{json}");
        assert_eq!(BackupMeta::from_json(json.as_bytes(), "k").unwrap(), meta);
        assert!(meta.is_ours());
    }

    #[test]
    fn database_round_trips_and_summarises() {
        let mut meta = BackupMeta::new("zstd", false);
        meta.database = Some(DatabaseMeta {
            mode: "mysql".into(),
            binlog_file: Some("mysql-bin.000003".into()),
            binlog_position: Some(1234),
            gtid_position: Some("0-1-42".into()),
            ..Default::default()
        });
        let json = meta.to_json().unwrap();
        assert!(json.contains(r#""database":{"mode":"mysql","binlog_file":"mysql-bin.000003""#));
        let back = BackupMeta::from_json(json.as_bytes(), "k").unwrap();
        assert_eq!(back, meta);
        let db = back.database.unwrap();
        assert_eq!(db.summary(), "mysql-bin.000003:1234 gtid 0-1-42");
        let mongo = DatabaseMeta {
            mode: "mongo".into(),
            topology: Some("primary".into()),
            replica_set: Some("rs0".into()),
            ..Default::default()
        };
        assert_eq!(mongo.summary(), "primary of rs0");
        assert_eq!(DatabaseMeta::default().summary(), "-");
    }

    #[test]
    fn unknown_keys_are_kept() {
        let text = br#"{"engine_name":"tar","compression":"gzip","encryption":false,"format":1,"future":{"x":[1,2]},"stats":{"files_new":1,"later":2}}"#;
        let meta = BackupMeta::from_json(text, "k").unwrap();
        assert_eq!(meta.extra["future"], serde_json::json!({"x": [1, 2]}));
        assert_eq!(meta.stats.as_ref().unwrap().files_new, 1);
        let again = BackupMeta::from_json(meta.to_json().unwrap().as_bytes(), "k").unwrap();
        assert_eq!(again, meta);
    }

    #[test]
    fn invalid_json_names_the_key() {
        for text in [
            &b""[..],
            b"{\"engine_name\": \"tar\"}",
            b"{\"engine_name\": \"tar\", \"compression\": \"gzip\", \"encryption\": \"no\"}",
            b"not json",
        ] {
            let err = BackupMeta::from_json(text, "metadata/tar/h_b/1/0_1/metadata").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
            assert!(err.to_string().contains("metadata/tar/h_b/1/0_1/metadata"), "{err}");
        }
    }
}
