//! Which backup chains a prune keeps: pure policy over a listing.
//!
//! The unit is the chain (one `<T0>` directory: a level 0 and everything built on it, branches
//! of always-level included), because a backup may go only when no kept backup depends on it;
//! deleting whole chains is the simplest rule that guarantees it. A chain's *end* is the time
//! of its newest member: that is how old the newest state it can restore is.
//!
//! - The newest chain (greatest `T0`, the one the next backup extends and a plain restore
//!   replays) is always kept.
//! - `older_than` alone (`--remove-older-than`, `--remove-from-date`): a chain goes iff its end
//!   is at or before the cutoff (freezer-agent 2.0's rule; agent HEAD compares `T0` and so
//!   deletes a chain whose level 0 is old but whose incrementals are recent).
//! - `keep_*` rules, restic-like but counted in chains: a chain is kept iff some rule selects
//!   it, or (when `older_than` is also given) it ends after the cutoff. `keep_last N` keeps the
//!   N chains that end last; `keep_daily N` keeps, for each of the last N local days that have
//!   a chain ending in them, the newest chain ending that day (weekly: ISO weeks; monthly:
//!   calendar months). A chain selected by one rule still counts for the others.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::error::{Error, Result};

use super::chain::Backup;
use super::date::format_local;

/// What to keep; see the module doc. Each field maps to one command line option.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionPolicy {
    /// Cutoff in Unix seconds: from `--remove-older-than DAYS` ([`cutoff_from_days`]) or
    /// `--remove-from-date DATE` ([`parse_date`](super::parse_date)).
    pub older_than: Option<i64>,
    /// `--keep-last N`: the N newest chains.
    pub keep_last: Option<u32>,
    /// `--keep-daily N`.
    pub keep_daily: Option<u32>,
    /// `--keep-weekly N` (ISO weeks).
    pub keep_weekly: Option<u32>,
    /// `--keep-monthly N`.
    pub keep_monthly: Option<u32>,
}

impl RetentionPolicy {
    /// A usage error when no rule is given: pruning without a rule is a mistake, never
    /// "delete everything" nor "keep everything".
    pub fn validate(&self) -> Result<()> {
        if self.older_than.is_none() && !self.has_keep_rules() {
            return Err(Error::usage(
                "nothing to prune by: give --remove-older-than, --remove-from-date or a --keep-* \
                 option",
            ));
        }
        Ok(())
    }

    fn has_keep_rules(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }
}

/// The cutoff of `--remove-older-than DAYS` at `now`: days may have a fraction, as in
/// freezer-agent (`0.5` is twelve hours).
pub fn cutoff_from_days(days: &str, now: i64) -> Result<i64> {
    let bad = || {
        Error::usage(format!(
            "--remove-older-than {days:?} is not a number of days; give e.g. 30 or 0.5"
        ))
    };
    let value: f64 = days.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    // Rounded down to whole seconds, clamped: a huge value means "older than anything".
    let secs = (value * 86400.0).min(i64::MAX as f64) as i64;
    Ok(now.saturating_sub(secs))
}

/// The verdict on one chain.
#[derive(Clone, Debug)]
pub struct Decision<'a> {
    /// The chain's `T0`.
    pub chain_t0: i64,
    /// Time of the chain's newest member.
    pub end: i64,
    /// Its backups, oldest first (by time, then level).
    pub backups: Vec<&'a Backup>,
    pub keep: bool,
    /// Why, for the report: every rule that kept it, or why it goes.
    pub reasons: Vec<String>,
}

/// One decision per chain of `all` (one host and backup name), oldest chain first, judged with
/// dates in the host's local time. Without any rule (see [`RetentionPolicy::validate`]) every
/// chain is kept.
pub fn decide<'a>(all: &'a [Backup], policy: &RetentionPolicy, now: i64) -> Vec<Decision<'a>> {
    decide_in(all, policy, now, &TimeZone::system())
}

/// [`decide`] with calendar buckets taken in `tz`.
pub(crate) fn decide_in<'a>(
    all: &'a [Backup],
    policy: &RetentionPolicy,
    now: i64,
    tz: &TimeZone,
) -> Vec<Decision<'a>> {
    let mut chains: BTreeMap<i64, Vec<&Backup>> = BTreeMap::new();
    for b in all {
        chains.entry(b.id.level_zero).or_default().push(b);
    }
    let mut decisions: Vec<Decision> = chains
        .into_iter()
        .map(|(chain_t0, mut backups)| {
            backups.sort_by_key(|b| (b.id.timestamp, b.id.level));
            let end = backups.iter().map(|b| b.id.timestamp).max().unwrap_or(chain_t0);
            Decision { chain_t0, end, backups, keep: false, reasons: Vec::new() }
        })
        .collect();
    let Some(newest) = decisions.last_mut() else {
        return decisions;
    };
    newest.keep = true;
    newest.reasons.push("newest chain (the one in use)".to_string());
    if policy.older_than.is_none() && !policy.has_keep_rules() {
        for d in &mut decisions {
            d.keep = true;
            d.reasons.push("no retention rule given".to_string());
        }
        return decisions;
    }

    // Why a chain goes; reported only if nothing keeps it.
    let mut against: Vec<Vec<String>> = vec![Vec::new(); decisions.len()];
    if let Some(cutoff) = policy.older_than {
        for (i, d) in decisions.iter_mut().enumerate() {
            let when = format!("newest backup {}", when(d.end, now));
            if d.end > cutoff {
                d.keep = true;
                d.reasons.push(format!("{when} is after the cutoff {}", format_local(cutoff)));
            } else {
                against[i]
                    .push(format!("{when} is at or before the cutoff {}", format_local(cutoff)));
            }
        }
    }

    // Newest end first; T0 breaks ties so the order never depends on the listing.
    let mut order: Vec<usize> = (0..decisions.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((decisions[i].end, decisions[i].chain_t0)));
    if let Some(n) = policy.keep_last {
        for &i in order.iter().take(n as usize) {
            decisions[i].keep = true;
            decisions[i].reasons.push(format!("one of the {n} newest chains (--keep-last {n})"));
        }
    }
    let rules: [(Option<u32>, &str, Bucket); 3] = [
        (policy.keep_daily, "daily", day),
        (policy.keep_weekly, "weekly", iso_week),
        (policy.keep_monthly, "monthly", month),
    ];
    for (count, rule, bucket_of) in rules {
        let Some(n) = count else { continue };
        let mut left = n;
        let mut last: Option<String> = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            let bucket = match Timestamp::from_second(decisions[i].end) {
                Ok(t) => bucket_of(&t.to_zoned(tz.clone())),
                Err(_) => format!("time @{}", decisions[i].end),
            };
            if last.as_ref() != Some(&bucket) {
                decisions[i].keep = true;
                decisions[i].reasons.push(format!("newest chain of {bucket} (--keep-{rule} {n})"));
                left -= 1;
                last = Some(bucket);
            }
        }
    }
    for (d, against) in decisions.iter_mut().zip(against) {
        if !d.keep {
            d.reasons = against;
            if policy.has_keep_rules() {
                d.reasons.push("selected by no --keep-* rule".to_string());
            }
        }
    }
    decisions
}

/// The calendar period a local time falls in, named for the report.
type Bucket = fn(&Zoned) -> String;

fn day(z: &Zoned) -> String {
    z.strftime("day %Y-%m-%d").to_string()
}

fn iso_week(z: &Zoned) -> String {
    let week = z.date().iso_week_date();
    format!("ISO week {}-W{:02}", week.year(), week.week())
}

fn month(z: &Zoned) -> String {
    z.strftime("month %Y-%m").to_string()
}

/// `2026-11-20 03:00:00 (12 days ago)`.
fn when(t: i64, now: i64) -> String {
    let age = now.saturating_sub(t);
    let ago = match age {
        ..0 => "in the future".to_string(),
        0..86400 => format!("{} hours ago", age / 3600),
        _ => format!("{} days ago", age / 86400),
    };
    format!("{} ({ago})", format_local(t))
}

#[cfg(test)]
mod tests;
