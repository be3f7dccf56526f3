//! `freezer prune`, `--action admin`, and `--remove-older-than` after a backup.

use anyhow::Result;
use freezer::catalog::{self, Layout, RetentionPolicy};
use freezer::prune::{self as lib, PruneOptions};
use std::sync::Arc;

use freezer::lock::{Lock, LockOptions};
use freezer::storage::StorageWrite;
use serde_json::json;

use crate::cli::{Common, KeepFlags, RetentionFlags};

/// The policy the flags ask for; `None` when they ask for nothing.
pub fn retention_policy(r: &RetentionFlags, k: &KeepFlags) -> Result<Option<RetentionPolicy>> {
    let now = now();
    let older_than = match (&r.remove_older_than, &r.remove_from_date) {
        (Some(_), Some(_)) => {
            return Err(freezer::Error::usage(
                "give --remove-older-than or --remove-from-date, not both",
            )
            .into());
        }
        (Some(days), None) => Some(catalog::cutoff_from_days(days, now)?),
        (None, Some(date)) => Some(catalog::parse_date(date)?),
        (None, None) => None,
    };
    let policy = RetentionPolicy {
        older_than,
        keep_last: k.keep_last,
        keep_daily: k.keep_daily,
        keep_weekly: k.keep_weekly,
        keep_monthly: k.keep_monthly,
    };
    Ok((policy != RetentionPolicy::default()).then_some(policy))
}

/// Unix seconds now; `FREEZER_TEST_NOW` overrides it (for tests only).
pub fn now() -> i64 {
    std::env::var("FREEZER_TEST_NOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_second())
}

/// Prune `layouts` and report what went (or would go, with `--dry-run`). With `lock`, each
/// layout is pruned only while holding its backup lock (so nothing a running backup is
/// writing looks orphaned); a layout whose lock another run holds is skipped, and the run
/// then fails with that error once the others are done. A backup pruning after itself
/// already holds the lock and passes `None`.
pub fn run(
    storage: &Arc<dyn StorageWrite>,
    common: &Common,
    layouts: &[Layout],
    policy: RetentionPolicy,
    keep: &KeepFlags,
    lock: bool,
) -> Result<()> {
    policy.validate()?;
    let mut opts = PruneOptions::new(policy, now());
    opts.dry_run = common.dry_run;
    opts.orphans = keep.orphans;
    opts.orphan_grace_secs = (keep.orphan_grace_hours * 3600.0) as i64;
    let mut held = Vec::new();
    let mut busy = None;
    let mut free = Vec::new();
    for layout in layouts {
        if !lock || opts.dry_run {
            free.push(layout.clone());
            continue;
        }
        match Lock::acquire(Arc::clone(storage), layout, LockOptions::default()) {
            Ok(l) => {
                held.push(l);
                free.push(layout.clone());
            }
            Err(e) if e.kind() == freezer::ErrorKind::Locked => {
                log::warn!("not pruning {}: {e}", layout.host_backup());
                busy.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let report = lib::prune(&**storage, &free, &opts)?;
    for l in held {
        if let Err(e) = l.release() {
            log::warn!("cannot remove a lock after pruning: {e}");
        }
    }
    print(common, &report)?;
    match busy {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn print(common: &Common, report: &lib::PruneReport) -> Result<()> {
    let verb = if report.dry_run { "would remove" } else { "removed" };
    if common.json {
        let chains: Vec<_> = report
            .chains
            .iter()
            .map(|c| {
                json!({
                    "host_backup": c.host_backup,
                    "chain": c.level_zero,
                    "end": c.end,
                    "keep": c.keep,
                    "reasons": c.reasons,
                    "backups": c.backups.iter().map(|b| b.name()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"action": "prune", "dry_run": report.dry_run, "chains": chains, "orphans_removed": report.orphans_removed})
        );
        return Ok(());
    }
    for c in &report.chains {
        let what = if c.keep { "keep" } else { verb };
        let line = format!(
            "{what} {} chain {} ({} backups, newest {}): {}",
            c.host_backup,
            c.level_zero,
            c.backups.len(),
            catalog::format_local(c.end),
            c.reasons.join("; ")
        );
        log::info!("{line}");
        if !common.quiet {
            println!("{line}");
        }
    }
    for key in &report.orphans_removed {
        log::info!("{verb} orphaned data {key}");
        if !common.quiet {
            println!("{verb} orphaned data {key}");
        }
    }
    Ok(())
}
