//! `freezer prune`, `--action admin`, and `--remove-older-than` after a backup.

use anyhow::Result;
use freezer::catalog::{self, Layout, RetentionPolicy};
use freezer::prune::{self as lib, PruneOptions};
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

/// Prune `layouts` and report what went (or would go, with `--dry-run`).
pub fn run(
    storage: &dyn StorageWrite,
    common: &Common,
    layouts: &[Layout],
    policy: RetentionPolicy,
    keep: &KeepFlags,
) -> Result<()> {
    policy.validate()?;
    let mut opts = PruneOptions::new(policy, now());
    opts.dry_run = common.dry_run;
    opts.orphans = keep.orphans;
    opts.orphan_grace_secs = (keep.orphan_grace_hours * 3600.0) as i64;
    let report = lib::prune(storage, layouts, &opts)?;
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
