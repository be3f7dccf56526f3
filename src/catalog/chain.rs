//! Finding backups and the chains they form.
//!
//! The metadata tree is the index (as in freezer-agent): a backup exists once its `metadata`
//! object does. A chain is one `<T0>` directory: a level 0 and the incrementals on top of it.
//! With always-level, a chain branches (L0 → L1 → [L2, L2, L2]), so "the backup of level N"
//! is not unique; parents are found by timestamp, never by listing order (FREEZER-AGENT.md §4.4).

use crate::error::{Error, ErrorKind, Result};
use crate::storage::Storage;

use super::date::format_local;
use super::layout::{BackupId, Layout, parse_digits};
use super::meta::BackupMeta;

/// One stored backup.
#[derive(Clone, Debug)]
pub struct Backup {
    pub id: BackupId,
    pub meta: BackupMeta,
}

/// The ids of every backup directory under the metadata tree of `layout` (whether or not its
/// metadata exists yet), in listing order. Names that are not `<T0>` / `<L>_<T>` are skipped
/// with a warning.
pub fn ids(storage: &dyn Storage, layout: &Layout) -> Result<Vec<BackupId>> {
    let mut out = Vec::new();
    let root = layout.metadata_root();
    for chain in storage.list(&root)? {
        let Some(level_zero) = parse_digits::<i64>(&chain) else {
            log::warn!("skipping {root}/{chain}: not a level-0 timestamp directory");
            continue;
        };
        for name in storage.list(&layout.metadata_chain_dir(level_zero))? {
            let Some(id) = BackupId::parse_name(level_zero, &name) else {
                log::warn!("skipping {root}/{chain}/{name}: not a <level>_<timestamp> directory");
                continue;
            };
            if id.level == 0 && id.timestamp != level_zero {
                log::warn!("{root}/{chain}/{name}: a level 0 whose time differs from its chain's");
            }
            out.push(id);
        }
    }
    Ok(out)
}

/// A backup whose metadata is there but damaged (cut short, not JSON).
#[derive(Clone, Debug)]
pub struct Damaged {
    pub id: BackupId,
    /// What is wrong, naming the object.
    pub problem: String,
}

/// The backups of one layout: the readable ones, and those whose metadata is damaged.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Sorted by (timestamp, level).
    pub backups: Vec<Backup>,
    pub damaged: Vec<Damaged>,
}

/// Every backup of `layout`. Backups whose metadata is not written (yet) are skipped with a
/// warning; metadata that cannot be parsed is set aside in [`Catalog::damaged`], so one damaged
/// object never hides the others. A storage that fails to answer is an error.
pub fn load_catalog(storage: &dyn Storage, layout: &Layout) -> Result<Catalog> {
    let mut catalog = Catalog::default();
    for id in ids(storage, layout)? {
        match read_meta(storage, layout, &id) {
            Ok(Some(meta)) => catalog.backups.push(Backup { id, meta }),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                catalog.damaged.push(Damaged { id, problem: e.to_string() })
            }
            Err(e) => return Err(e),
        }
    }
    catalog.backups.sort_by_key(|b| (b.id.timestamp, b.id.level, b.id.level_zero));
    catalog.damaged.sort_by_key(|d| (d.id.timestamp, d.id.level));
    Ok(catalog)
}

/// The readable backups of `layout`, sorted by (timestamp, level); damaged ones are left out
/// with a warning that says what to do.
pub fn load(storage: &dyn Storage, layout: &Layout) -> Result<Vec<Backup>> {
    let catalog = load_catalog(storage, layout)?;
    for d in &catalog.damaged {
        log::warn!(
            "{}; it and the backups taken on it are left out. Run `freezer verify` to see \
             what is affected, then remove that chain with `freezer prune` or move the object \
             aside",
            d.problem
        );
    }
    Ok(catalog.backups)
}

/// The metadata of `id`, or `None` when it is missing (a backup being written or that failed).
fn read_meta(storage: &dyn Storage, layout: &Layout, id: &BackupId) -> Result<Option<BackupMeta>> {
    let key = layout.metadata_key(id);
    // Only an absent object is skipped; any other failure must not hide a backup.
    let Some(bytes) = storage.get(&key)? else {
        log::warn!("skipping {}: it has no metadata (unfinished or failed backup)", key);
        return Ok(None);
    };
    let meta = BackupMeta::from_json(&bytes, &key)?;
    if meta.level.is_some_and(|l| l != id.level)
        || meta.time_stamp.is_some_and(|t| t != id.timestamp)
    {
        log::warn!("{key}: level or time stamp differ from the key's; the key wins");
    }
    Ok(Some(meta))
}

/// The backup `b` was taken on top of: our explicit `parent` when present, otherwise (agent
/// backups) the newest of level L-1 in the same chain taken before `b`. `None` for a level 0
/// or when the parent is gone.
pub fn parent_of<'a>(all: &'a [Backup], b: &Backup) -> Option<&'a Backup> {
    if b.id.level == 0 {
        return None;
    }
    let candidates = all.iter().filter(|p| {
        p.id.level_zero == b.id.level_zero
            && p.id.level + 1 == b.id.level
            && p.id.timestamp < b.id.timestamp
    });
    match &b.meta.parent {
        Some(name) => candidates.into_iter().find(|p| p.id.name() == *name),
        None => candidates.max_by_key(|p| p.id.timestamp),
    }
}

/// `b` and its ancestors, level 0 first; a Corrupt error naming the first missing level.
pub(crate) fn ancestry<'a>(
    all: &'a [Backup],
    layout: &Layout,
    b: &'a Backup,
) -> Result<Vec<&'a Backup>> {
    let mut chain = vec![b];
    let mut cur = b;
    while cur.id.level > 0 {
        let Some(parent) = parent_of(all, cur) else {
            let wanted = match &cur.meta.parent {
                Some(name) => format!("its parent {name}"),
                None => format!("a level {} taken before it", cur.id.level - 1),
            };
            return Err(Error::corrupt(format!(
                "backup {} of {} (level {}, {}) cannot be restored: {wanted} is missing from \
                 chain {}; restore an older backup with --restore-from-date, or take a new \
                 level 0",
                cur.id.name(),
                layout.host_backup(),
                cur.id.level,
                format_local(cur.id.timestamp),
                cur.id.level_zero,
            )));
        };
        chain.push(parent);
        cur = parent;
    }
    chain.reverse();
    Ok(chain)
}

/// The backups to replay, level 0 first, to restore the state at `at` (Unix seconds; the newest
/// when `None`): the newest chain started at or before `at`, its newest backup at or before
/// `at`, and that backup's ancestors.
pub fn restore_chain<'a>(
    all: &'a [Backup],
    layout: &Layout,
    at: Option<i64>,
) -> Result<Vec<&'a Backup>> {
    let fits = |t: i64| at.is_none_or(|at| t <= at);
    // The chain is chosen by its T0 directory even if its level 0 is gone, so a broken newest
    // chain is reported rather than silently replaced by an older one.
    let Some(level_zero) = all.iter().map(|b| b.id.level_zero).filter(|&t| fits(t)).max() else {
        return Err(not_found(all, layout, at));
    };
    let Some(head) = all
        .iter()
        .filter(|b| b.id.level_zero == level_zero && fits(b.id.timestamp))
        .max_by_key(|b| (b.id.timestamp, b.id.level))
    else {
        return Err(not_found(all, layout, at));
    };
    ancestry(all, layout, head)
}

/// "Nothing matches", saying what exists.
fn not_found(all: &[Backup], layout: &Layout, at: Option<i64>) -> Error {
    let hb = layout.host_backup();
    let message = match (at, all.iter().min_by_key(|b| b.id.timestamp)) {
        (_, None) => format!(
            "no backup of {hb} found (nothing under {}); check --hostname, --backup-name and \
             the storage",
            layout.metadata_root()
        ),
        (Some(at), Some(oldest)) => format!(
            "no backup of {hb} at or before {}; the oldest is {} (level {}, {})",
            format_local(at),
            format_local(oldest.id.timestamp),
            oldest.id.level,
            oldest.id
        ),
        (None, Some(oldest)) => format!(
            "no complete backup chain of {hb}; the oldest backup is {} (level {}, {})",
            format_local(oldest.id.timestamp),
            oldest.id.level,
            oldest.id
        ),
    };
    Error::new(ErrorKind::NotFound, message)
}

#[cfg(test)]
mod tests;
