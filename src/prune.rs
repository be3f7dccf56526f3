//! Pruning: deleting the chains a [`RetentionPolicy`] gives up, and the data that failed or
//! interrupted runs left behind.
//!
//! # Order
//!
//! A backup exists while its `metadata` object does (see [`catalog::load`]), so each chain is
//! deleted in this order:
//!
//! 1. the metadata of its backups, newest first: at every step what is still listed is the
//!    level 0 and the backups taken before the deleted ones, which restore fine;
//! 2. the metadata chain dir `metadata/tar/<HB>/<T0>` (leftovers such as unfinished entries);
//! 3. the data dirs of its backups, newest first, then the data chain dir `data/tar/<HB>/<T0>`
//!    (which takes the chain's orphans with it).
//!
//! Killed between any two deletes, the store still lists and restores, and the next prune
//! finishes the job: a chain whose metadata is partly gone is judged again on what is left (a
//! chain judged by its end only gets older, so a cutoff still selects it); one whose metadata is
//! all gone has become data without metadata, the orphan case below.
//!
//! # Orphans
//!
//! Data dirs `data/tar/<HB>/<T0>/<L>_<T>` without metadata come from two places: a backup that
//! crashed or is still running (its metadata is written last), and a prune that was interrupted
//! after the metadata of a chain went. They are told apart without any marker:
//!
//! - Inside a chain selected for deletion: they go with the chain's data dir, at once.
//! - A whole `<T0>` with data but no metadata, older than the newest chain: this is the tail of
//!   an interrupted prune (or a crashed level 0 that a newer chain has superseded). Nothing can
//!   restore or extend it, since backups only ever extend the newest chain or start a newer one,
//!   so every prune removes it at once, without `orphans` and within the grace period: waiting
//!   would leave the data of a pruned chain behind.
//! - Anywhere else (the kept chains, a `<T0>` newer than the newest chain: a level 0 being
//!   written): only with `orphans`, only once `T` (from the name) is older than `now - grace`,
//!   and only after checking again that no metadata appeared. The grace must exceed the longest
//!   backup run. A dir that has metadata is never touched.
//!
//! Everything is planned from one listing before the first delete, so a dry run reports exactly
//! what a real run deletes, and a listing error aborts before anything is deleted.

use std::collections::{BTreeSet, HashSet};

use crate::catalog::{self, BackupId, ENGINE, Layout, RetentionPolicy};
use crate::error::{Error, Result};
use crate::storage::{Storage, StorageWrite};

/// How old (seconds, by the name's `T`) an orphan data dir must be before `orphans` removes it.
pub const DEFAULT_ORPHAN_GRACE_SECS: i64 = 86_400;

/// What `prune` (or `--action admin`) was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneOptions {
    pub policy: RetentionPolicy,
    /// `--dry-run`: plan and report, delete nothing.
    pub dry_run: bool,
    /// `--orphans`: also remove data without metadata in kept chains, once past the grace.
    pub orphans: bool,
    /// Seconds; [`DEFAULT_ORPHAN_GRACE_SECS`] by default.
    pub orphan_grace_secs: i64,
    /// Unix seconds of "now" (a clock override only in tests).
    pub now: i64,
}

impl PruneOptions {
    /// `policy` at `now`, no dry run, no orphan sweep, the default grace.
    pub fn new(policy: RetentionPolicy, now: i64) -> PruneOptions {
        PruneOptions {
            policy,
            dry_run: false,
            orphans: false,
            orphan_grace_secs: DEFAULT_ORPHAN_GRACE_SECS,
            now,
        }
    }
}

/// The verdict on one chain, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainOutcome {
    pub host_backup: String,
    pub level_zero: i64,
    /// Time of its newest backup.
    pub end: i64,
    pub keep: bool,
    pub reasons: Vec<String>,
    /// Its backups, oldest first.
    pub backups: Vec<BackupId>,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    /// `(<hostname>_<backup_name>, backup)` of every removed backup, oldest chain first.
    pub removed: Vec<(String, BackupId)>,
    /// The same for the backups kept.
    pub kept: Vec<(String, BackupId)>,
    /// Keys of data dirs without metadata removed: `<L>_<T>` dirs, or whole `<T0>` dirs.
    pub orphans_removed: Vec<String>,
    /// Every chain with its verdict and reasons, per layout, oldest first.
    pub chains: Vec<ChainOutcome>,
    pub dry_run: bool,
}

/// Every `<hostname>_<backup_name>` under `metadata/tar/` or `data/tar/` (for `--all-hosts`).
pub fn all_layouts(storage: &dyn Storage) -> Result<Vec<Layout>> {
    let mut names = BTreeSet::new();
    for root in [format!("metadata/{ENGINE}"), format!("data/{ENGINE}")] {
        names.extend(storage.list(&root)?);
    }
    Ok(names.iter().map(|hb| Layout::from_host_backup(hb)).collect())
}

/// Apply `opts` to each of `layouts`; see the module doc for what goes and in which order.
pub fn prune(
    storage: &dyn StorageWrite,
    layouts: &[Layout],
    opts: &PruneOptions,
) -> Result<PruneReport> {
    opts.policy.validate()?;
    if opts.orphan_grace_secs < 0 {
        return Err(Error::usage(format!(
            "the orphan grace period is {} seconds; give 0 or more",
            opts.orphan_grace_secs
        )));
    }
    let mut report = PruneReport { dry_run: opts.dry_run, ..PruneReport::default() };
    let mut plans = Vec::new();
    for layout in layouts {
        plans.push(plan(storage, layout, opts, &mut report)?);
    }
    if !opts.dry_run {
        let mut progress = Progress::default();
        for p in &plans {
            execute(storage, p, &mut progress)?;
        }
    }
    Ok(report)
}

/// The deletes of one layout, decided before any of them runs.
struct Plan {
    layout: Layout,
    /// Chains to delete, oldest first: `T0` and its backups newest first.
    chains: Vec<(i64, Vec<BackupId>)>,
    /// `<T0>` data dirs without any metadata, deleted whole.
    leftovers: Vec<i64>,
    /// Orphan data dirs past the grace in chains that stay.
    orphans: Vec<BackupId>,
    /// `<T0>` metadata dirs that hold nothing (left by an interrupted prune).
    shells: Vec<i64>,
}

fn plan(
    storage: &dyn Storage,
    layout: &Layout,
    opts: &PruneOptions,
    report: &mut PruneReport,
) -> Result<Plan> {
    let hb = layout.host_backup();
    let all = catalog::load(storage, layout)?;
    let mut plan = Plan {
        layout: layout.clone(),
        chains: Vec::new(),
        leftovers: Vec::new(),
        orphans: Vec::new(),
        shells: Vec::new(),
    };
    for d in catalog::decide(&all, &opts.policy, opts.now) {
        let ids: Vec<BackupId> = d.backups.iter().map(|b| b.id).collect();
        let listed = if d.keep { &mut report.kept } else { &mut report.removed };
        listed.extend(ids.iter().map(|id| (hb.to_string(), *id)));
        if !d.keep {
            plan.chains.push((d.chain_t0, ids.iter().rev().copied().collect()));
        }
        report.chains.push(ChainOutcome {
            host_backup: hb.to_string(),
            level_zero: d.chain_t0,
            end: d.end,
            keep: d.keep,
            reasons: d.reasons,
            backups: ids,
        });
    }

    let with_meta: HashSet<BackupId> = all.iter().map(|b| b.id).collect();
    let chains: BTreeSet<i64> = all.iter().map(|b| b.id.level_zero).collect();
    let doomed: BTreeSet<i64> = plan.chains.iter().map(|(t0, _)| *t0).collect();
    let newest = chains.last().copied();
    let expired = |id: &BackupId| id.timestamp < opts.now.saturating_sub(opts.orphan_grace_secs);
    let data_root = layout.data_root();
    for name in storage.list(&data_root)? {
        let Some(t0) = parse_t0(&name) else {
            log::warn!("leaving {data_root}/{name} alone: not a level-0 timestamp directory");
            continue;
        };
        let chain_dir = layout.data_chain_dir(t0);
        let names = storage.list(&chain_dir)?;
        let parsed = |n: &str| BackupId::parse_name(t0, n);
        if doomed.contains(&t0) {
            // Goes with the chain's data dir, whatever its age.
            for n in names.iter().filter(|n| parsed(n).is_none_or(|id| !with_meta.contains(&id))) {
                report.orphans_removed.push(format!("{chain_dir}/{n}"));
            }
            continue;
        }
        let has_meta = chains.contains(&t0);
        if !has_meta && newest.is_some_and(|n| t0 < n) {
            if storage.exists(&chain_dir)? {
                report.orphans_removed.push(chain_dir);
            }
            plan.leftovers.push(t0);
            continue;
        }
        if !opts.orphans {
            continue;
        }
        let found: Vec<BackupId> = names
            .iter()
            .filter_map(|n| parsed(n))
            .filter(|id| !with_meta.contains(id) && expired(id))
            .collect();
        if !has_meta && !names.is_empty() && found.len() == names.len() {
            // A data-only chain, all of it past the grace: one dir to remove.
            report.orphans_removed.push(chain_dir);
            plan.leftovers.push(t0);
        } else {
            report.orphans_removed.extend(found.iter().map(|id| layout.data_dir(id)));
            plan.orphans.extend(found);
        }
    }

    for name in storage.list(&layout.metadata_root())? {
        if let Some(t0) = parse_t0(&name)
            && !chains.contains(&t0)
            && !storage.exists(&layout.metadata_chain_dir(t0))?
        {
            plan.shells.push(t0);
        }
    }
    Ok(plan)
}

/// A `<T0>` directory name: digits only.
fn parse_t0(name: &str) -> Option<i64> {
    // BackupId's parser is strict about digits; reuse it on a synthetic `0_<T0>`.
    BackupId::parse_name(0, &format!("0_{name}")).map(|id| id.timestamp)
}

/// What was deleted so far, for the message when a delete fails.
#[derive(Default)]
struct Progress {
    deleted: usize,
    last: Option<String>,
}

impl Progress {
    fn delete(&mut self, storage: &dyn StorageWrite, key: &str) -> Result<()> {
        storage.delete(key).map_err(|e| {
            let done = match &self.last {
                Some(last) => format!("{} deletes, the last {last}", self.deleted),
                None => "nothing deleted".to_string(),
            };
            e.context(format!(
                "prune stopped while deleting {key} ({done}; each is logged); the store is \
                 still consistent: run the prune again to finish"
            ))
        })?;
        log::info!("deleted {key}");
        self.deleted += 1;
        self.last = Some(key.to_string());
        Ok(())
    }
}

fn execute(storage: &dyn StorageWrite, plan: &Plan, progress: &mut Progress) -> Result<()> {
    let layout = &plan.layout;
    for (t0, newest_first) in &plan.chains {
        for id in newest_first {
            progress.delete(storage, &layout.metadata_dir(id))?;
        }
        progress.delete(storage, &layout.metadata_chain_dir(*t0))?;
        for id in newest_first {
            progress.delete(storage, &layout.data_dir(id))?;
        }
        progress.delete(storage, &layout.data_chain_dir(*t0))?;
        log::info!("removed chain {t0} of {}", layout.host_backup());
    }
    for t0 in &plan.leftovers {
        progress.delete(storage, &layout.data_chain_dir(*t0))?;
    }
    for id in &plan.orphans {
        // A backup may have finished since the listing; its data is no orphan then.
        if storage.exists(&layout.metadata_key(id))? {
            log::warn!("keeping {}: its metadata appeared during the prune", layout.data_dir(id));
            continue;
        }
        progress.delete(storage, &layout.data_dir(id))?;
    }
    for t0 in &plan.shells {
        progress.delete(storage, &layout.metadata_chain_dir(*t0))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
