//! Which level the next backup gets, and its id (freezer-agent 19's rules,
//! FREEZER-AGENT.md §4.2, made deterministic where the agent depended on listing order).

use super::chain::{Backup, parent_of};
use super::layout::BackupId;

/// The level options of a backup run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelPolicy {
    /// `--incremental`; without it every backup is a level 0.
    pub incremental: bool,
    /// `--max-level N`: once the chain has reached level N, start a new chain.
    pub max_level: Option<u32>,
    /// `--always-level N`: levels 0..N, then level N again and again, each against level N-1.
    pub always_level: Option<u32>,
    /// `--restart-always-level DAYS`: start a new chain when the newest backup is older.
    pub restart_always_level_days: Option<f64>,
}

/// What the next backup is built on.
#[derive(Clone, Copy, Debug)]
pub struct Next<'a> {
    /// `None` for a level 0 (new chain).
    pub parent: Option<&'a Backup>,
    pub level: u32,
}

impl Next<'_> {
    const NEW_CHAIN: Next<'static> = Next { parent: None, level: 0 };

    fn on(parent: &Backup) -> Next<'_> {
        Next { parent: Some(parent), level: parent.id.level + 1 }
    }
}

/// The parent and level of a backup taken at `now` given the existing backups `all`:
/// 1. not incremental, or no backups: level 0;
/// 2. in the newest chain (greatest T0), with h its highest level and head its newest backup:
///    `max_level <= h`, or `always_level < h`, or `now` later than head + restart days: level 0;
/// 3. `always_level == h`: on the newest level h-1 (level h again, a differential);
/// 4. otherwise on head (level head + 1).
///
/// A chain that could not be restored (a parent is missing) is not built on: level 0.
/// `always_level` / `max_level` 0 mean every backup is a level 0.
pub fn next_backup<'a>(all: &'a [Backup], policy: &LevelPolicy, now: i64) -> Next<'a> {
    if !policy.incremental {
        return Next::NEW_CHAIN;
    }
    let Some(level_zero) = all.iter().map(|b| b.id.level_zero).max() else {
        return Next::NEW_CHAIN;
    };
    let chain = || all.iter().filter(move |b| b.id.level_zero == level_zero);
    let Some(head) = chain().max_by_key(|b| (b.id.timestamp, b.id.level)) else {
        return Next::NEW_CHAIN;
    };
    let h = chain().map(|b| b.id.level).max().unwrap_or(0);
    if policy.max_level.is_some_and(|m| m <= h) || policy.always_level.is_some_and(|a| a < h) {
        return Next::NEW_CHAIN;
    }
    if let Some(days) = policy.restart_always_level_days
        && now as f64 > head.id.timestamp as f64 + days * 86400.0
    {
        return Next::NEW_CHAIN;
    }
    let parent = match policy.always_level {
        Some(0) => return Next::NEW_CHAIN,
        Some(a) if a == h => {
            chain().filter(|b| b.id.level + 1 == h).max_by_key(|b| (b.id.timestamp, b.id.level))
        }
        _ => Some(head),
    };
    match parent {
        Some(p) if is_complete(all, p) => Next::on(p),
        _ => {
            log::warn!(
                "the newest backup chain ({level_zero}) is incomplete (a level is missing); \
                 starting a new level 0"
            );
            Next::NEW_CHAIN
        }
    }
}

/// Whether `b` and all its ancestors down to level 0 exist.
fn is_complete(all: &[Backup], b: &Backup) -> bool {
    let mut cur = b;
    while cur.id.level > 0 {
        match parent_of(all, cur) {
            Some(p) => cur = p,
            None => return false,
        }
    }
    true
}

/// The id of the new backup: its time is `now` but strictly after every existing backup of the
/// layout (two runs in one second, or a clock set back, never reuse a name), its chain the
/// parent's or its own time for a level 0.
pub fn new_id(all: &[Backup], next: &Next, now: i64) -> BackupId {
    let after = all.iter().map(|b| b.id.timestamp.max(b.id.level_zero)).max();
    let timestamp = after.map_or(now, |t| now.max(t.saturating_add(1)));
    let level_zero = next.parent.map_or(timestamp, |p| p.id.level_zero);
    BackupId { level_zero, timestamp, level: next.level }
}

#[cfg(test)]
mod tests;
