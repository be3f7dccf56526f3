//! freezerc 1.0's layout, read-only: its backups listed, restored and verified as if they
//! were in freezer-agent 19's layout, so nothing above the storage knows the difference.
//!
//! freezerc 1.0 (2014) wrote, in the container's root, a zero-byte DLO manifest
//! `<host>_<name>_<ts>_<level>` per backup (segments in `<container>_segments`, numbered
//! without padding in 1.0.8) and the GNU tar snapshot as `tar_metadata_<manifest>`; the
//! stream is `tar -z`, maybe `| openssl enc -aes-256-cfb`. It recorded no chain: each backup
//! was taken on the newest one before it, whatever its level, until the next level 0. So a
//! chain here is a level 0 and every later backup up to the next level 0, and a backup's
//! level in this view is its depth in that chain (an always-level backup repeated three times
//! at level 2 is depth 2, 3, 4: restoring it needs every one of them).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

use serde_json::json;

use super::{Swift, SwiftStorage, Target};
use crate::catalog::{BackupId, ENGINE};
use crate::error::{Error, Result};
use crate::storage::{SegmentRef, Storage};

/// One freezerc 1.0 backup.
#[derive(Clone, Debug)]
struct Old {
    id: BackupId,
    /// The manifest's object name.
    name: String,
    /// The backup it was taken on (`<depth>_<ts>`), for levels above 0.
    parent: Option<String>,
}

/// A Swift container with freezerc 1.0's backups shown in the agent 19 layout.
pub struct Freezerc1View {
    swift: SwiftStorage,
    found: OnceLock<std::result::Result<BTreeMap<String, Vec<Old>>, String>>,
}

impl Freezerc1View {
    /// Show the freezerc 1.0 backups of `swift`'s container (without a prefix: freezerc had
    /// none) next to its own.
    pub fn new(swift: SwiftStorage) -> Freezerc1View {
        Freezerc1View { swift, found: OnceLock::new() }
    }

    fn s(&self) -> &Swift {
        &self.swift.0
    }

    /// freezerc's backups by `<host>_<name>`, oldest first; listed once.
    fn old(&self) -> Result<&BTreeMap<String, Vec<Old>>> {
        let found = self.found.get_or_init(|| {
            if !self.s().prefix.is_empty() {
                return Ok(BTreeMap::new());
            }
            let names =
                self.s().list_names(self.s().container(), "", true).map_err(|e| e.to_string())?;
            Ok(chains(names.iter().filter(|n| !n.contains('/')).map(String::as_str)))
        });
        found.as_ref().map_err(|e| Error::storage(e.clone()))
    }

    /// The freezerc backup a key of the agent layout stands for, and the rest of the key.
    fn lookup<'k>(&self, key: &'k str) -> Result<Option<(&Old, &'k str)>> {
        let mut parts = key.splitn(6, '/');
        let (Some(tree), Some(engine), Some(hb), Some(t0), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        if !matches!(tree, "data" | "metadata") || engine != ENGINE {
            return Ok(None);
        }
        let rest = parts.next().unwrap_or("");
        let found = self.old()?.get(hb).and_then(|backups| {
            backups.iter().find(|b| b.id.level_zero.to_string() == t0 && b.id.name() == name)
        });
        Ok(found.map(|b| (b, rest)))
    }

    /// The metadata JSON of a freezerc backup: gzip, encrypted if its stream says so.
    fn metadata(&self, b: &Old) -> Result<Vec<u8>> {
        let r = self.s().client.request(
            "GET",
            Target::Object(self.s().container(), &b.name),
            "",
            &[("Range", "bytes=0-7")],
            b"",
        )?;
        let encrypted = match r.status {
            200 | 206 => r.body.starts_with(b"Salted__"),
            404 => return Err(Error::corrupt(format!("freezerc backup {} vanished", b.name))),
            s => return Err(self.s().fail(&format!("reading {}", b.name), s)),
        };
        let mut meta = json!({
            "engine_name": ENGINE,
            "compression": "gzip",
            "encryption": encrypted,
            "level": b.id.level,
            "time_stamp": b.id.timestamp,
            "level_zero_timestamp": b.id.level_zero,
            "tool": format!("freezerc 1.0 ({}, read-only)", b.name),
        });
        if let Some(p) = &b.parent {
            meta["parent"] = json!(p);
        }
        Ok(meta.to_string().into_bytes())
    }
}

/// Group manifest names `<HB>_<ts>_<level>` into chains, each a level 0 and what follows it.
fn chains<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, Vec<Old>> {
    let mut by_hb: BTreeMap<String, Vec<(i64, u32, String)>> = BTreeMap::new();
    for name in names {
        if name.starts_with("tar_metadata_") {
            continue;
        }
        let mut it = name.rsplitn(3, '_');
        let (Some(level), Some(ts), Some(hb)) = (it.next(), it.next(), it.next()) else { continue };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if hb.is_empty() || !digits(level) || !digits(ts) {
            continue;
        }
        let (Ok(level), Ok(ts)) = (level.parse::<u32>(), ts.parse::<i64>()) else { continue };
        by_hb.entry(hb.to_string()).or_default().push((ts, level, name.to_string()));
    }
    let mut out = BTreeMap::new();
    for (hb, mut list) in by_hb {
        list.sort();
        let mut backups: Vec<Old> = Vec::new();
        let mut chain: Option<(i64, u32)> = None;
        for (ts, level, name) in list {
            let id = match (level, chain) {
                (0, _) => BackupId { level_zero: ts, timestamp: ts, level: 0 },
                (_, Some((t0, depth))) => {
                    BackupId { level_zero: t0, timestamp: ts, level: depth + 1 }
                }
                (_, None) => {
                    log::warn!("skipping freezerc backup {name}: no level 0 before it");
                    continue;
                }
            };
            let parent = (id.level > 0).then(|| backups.last().map(|p| p.id.name())).flatten();
            chain = Some((id.level_zero, id.level));
            backups.push(Old { id, name, parent });
        }
        out.insert(hb, backups);
    }
    out
}

impl Storage for Freezerc1View {
    fn describe(&self) -> String {
        self.swift.describe()
    }

    fn kind(&self) -> &'static str {
        self.swift.kind()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut names = self.swift.list(prefix)?;
        let parts: Vec<&str> = prefix.split('/').collect();
        let old = self.old()?;
        match parts.as_slice() {
            ["metadata", ENGINE] => names.extend(old.keys().cloned()),
            ["metadata", ENGINE, hb] => names
                .extend(old.get(*hb).into_iter().flatten().map(|b| b.id.level_zero.to_string())),
            ["metadata", ENGINE, hb, t0] => names.extend(
                old.get(*hb)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.id.level_zero.to_string() == *t0)
                    .map(|b| b.id.name()),
            ),
            _ => {}
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.lookup(key)?.is_some() || self.swift.exists(key)?)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.lookup(key)? {
            Some((b, "metadata")) => self.metadata(b).map(Some),
            Some((b, "engine_metadata")) => {
                self.s().get_object(self.s().container(), &format!("tar_metadata_{}", b.name))
            }
            Some(_) => Ok(None),
            None => self.swift.get(key),
        }
    }

    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        match self.lookup(key)? {
            Some((b, "data")) => self.swift.open_object(&b.name),
            _ => self.swift.open(key),
        }
    }

    fn read_segment(&self, key: &str, segment: &SegmentRef) -> Result<Vec<u8>> {
        self.swift.read_segment(key, segment)
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.lookup(key)? {
            Some((b, "data")) => Ok(self.s().head(&b.name)?.map(|h| h.size)),
            _ => self.swift.size(key),
        }
    }

    fn parallel_reads(&self) -> usize {
        self.swift.parallel_reads()
    }

    fn container_exists(&self) -> Result<bool> {
        self.swift.container_exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_follow_time_not_levels() {
        let names = [
            "web_db_30_2",
            "web_db_10_0",
            "web_db_20_1",
            "web_db_40_2",
            "web_db_50_0",
            "web_db_60_1",
            "tar_metadata_web_db_10_0",
            "other_5_3",
            "x_y",
            "web_db_7_1",
        ];
        let c = chains(names.into_iter());
        let web: Vec<(String, Option<String>)> =
            c["web_db"].iter().map(|b| (b.id.to_string(), b.parent.clone())).collect();
        assert_eq!(
            web,
            [
                ("10/0_10".to_string(), None),
                ("10/1_20".to_string(), Some("0_10".to_string())),
                ("10/2_30".to_string(), Some("1_20".to_string())),
                // Always-level: a second level 2 is taken on the first, so it is deeper.
                ("10/3_40".to_string(), Some("2_30".to_string())),
                ("50/0_50".to_string(), None),
                ("50/1_60".to_string(), Some("0_50".to_string())),
            ]
        );
        assert!(c["other"].is_empty(), "an incremental without a level 0 is skipped");
    }
}
