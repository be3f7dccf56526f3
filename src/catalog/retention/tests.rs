use jiff::civil;
use jiff::tz::{Offset, TimeZone};

use super::*;
use crate::ErrorKind;
use crate::catalog::testutil::{agent, ours};

/// `T0:end` of the kept chains.
fn kept(decisions: &[Decision]) -> Vec<String> {
    decisions.iter().filter(|d| d.keep).map(|d| format!("{}:{}", d.chain_t0, d.end)).collect()
}

fn policy() -> RetentionPolicy {
    RetentionPolicy::default()
}

/// Four agent chains: 100 (ends 300), 1000 (ends 1100), 2000 (old L0, incremental at 9000),
/// 10000 (a lone level 0).
fn chains() -> Vec<Backup> {
    vec![
        agent(100, 0, 100),
        agent(100, 1, 200),
        agent(100, 2, 300),
        agent(1000, 0, 1000),
        agent(1000, 1, 1100),
        agent(2000, 0, 2000),
        agent(2000, 1, 9000),
        agent(10000, 0, 10000),
    ]
}

#[test]
fn cutoff_goes_by_the_chain_end_not_its_level_zero() {
    let all = chains();
    let cases: &[(i64, &[&str])] = &[
        (50, &["100:300", "1000:1100", "2000:9000", "10000:10000"]),
        (299, &["100:300", "1000:1100", "2000:9000", "10000:10000"]),
        // The end exactly at the cutoff goes.
        (300, &["1000:1100", "2000:9000", "10000:10000"]),
        // 2000's level 0 is older than the cutoff but its incremental is not: kept whole.
        (5000, &["2000:9000", "10000:10000"]),
        (9000, &["10000:10000"]),
        // Everything is old: the newest chain stays anyway.
        (1_000_000, &["10000:10000"]),
    ];
    for (cutoff, want) in cases {
        let p = RetentionPolicy { older_than: Some(*cutoff), ..policy() };
        let got = decide(&all, &p, 20000);
        assert_eq!(kept(&got), *want, "cutoff {cutoff}");
        // Whole chains, oldest first, members oldest first.
        let sizes: Vec<usize> = got.iter().map(|d| d.backups.len()).collect();
        assert_eq!(sizes, [3, 2, 2, 1]);
        assert_eq!(got[0].backups[2].id.timestamp, 300);
    }
    let p = RetentionPolicy { older_than: Some(5000), ..policy() };
    let got = decide(&all, &p, 20000);
    assert!(got[2].reasons[0].contains("is after the cutoff"), "{:?}", got[2].reasons);
    assert!(got[0].reasons[0].contains("at or before the cutoff"), "{:?}", got[0].reasons);
    assert_eq!(got[3].reasons[0], "newest chain (the one in use)");
}

#[test]
fn newest_chain_is_the_greatest_level_zero() {
    // A clock set back: the newest chain (by T0) ends before an older one. It is still the one
    // in use, so it stays.
    let all = vec![agent(100, 0, 100), agent(100, 1, 900), agent(500, 0, 500)];
    let p = RetentionPolicy { older_than: Some(1000), ..policy() };
    assert_eq!(kept(&decide(&all, &p, 2000)), ["500:500"]);
    let p = RetentionPolicy { keep_last: Some(0), ..policy() };
    assert_eq!(kept(&decide(&all, &p, 2000)), ["500:500"]);
}

#[test]
fn keep_last_counts_chains_by_end() {
    let all = chains();
    let cases: &[(u32, &[&str])] = &[
        (0, &["10000:10000"]),
        (1, &["10000:10000"]),
        (2, &["2000:9000", "10000:10000"]),
        (3, &["1000:1100", "2000:9000", "10000:10000"]),
        (9, &["100:300", "1000:1100", "2000:9000", "10000:10000"]),
    ];
    for (n, want) in cases {
        let p = RetentionPolicy { keep_last: Some(*n), ..policy() };
        assert_eq!(kept(&decide(&all, &p, 20000)), *want, "keep-last {n}");
    }
    // With a cutoff too: kept if either says so.
    let p = RetentionPolicy { keep_last: Some(2), older_than: Some(1000), ..policy() };
    let got = decide(&all, &p, 20000);
    assert_eq!(kept(&got), ["1000:1100", "2000:9000", "10000:10000"]);
    assert_eq!(got[0].reasons.last().unwrap(), "selected by no --keep-* rule");
    assert!(got[3].reasons.iter().any(|r| r.contains("--keep-last 2")), "{:?}", got[3].reasons);
}

#[test]
fn always_level_branches_are_one_chain() {
    let all = vec![
        ours(100, 0, 100, None),
        ours(100, 1, 200, Some("0_100")),
        ours(100, 2, 300, Some("1_200")),
        ours(100, 2, 400, Some("1_200")),
        ours(100, 2, 500, Some("1_200")),
        ours(1000, 0, 1000, None),
    ];
    let p = RetentionPolicy { older_than: Some(450), ..policy() };
    let got = decide(&all, &p, 2000);
    assert_eq!(kept(&got), ["100:500", "1000:1000"]);
    let p = RetentionPolicy { older_than: Some(500), ..policy() };
    let got = decide(&all, &p, 2000);
    assert_eq!(kept(&got), ["1000:1000"]);
    let names: Vec<String> = got[0].backups.iter().map(|b| b.id.name()).collect();
    assert_eq!(names, ["0_100", "1_200", "2_300", "2_400", "2_500"]);
}

#[test]
fn no_rule_is_a_usage_error_and_keeps_everything() {
    let err = policy().validate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(
        err.to_string()
            .contains("give --remove-older-than, --remove-from-date or a --keep-* option"),
        "{err}"
    );
    assert!(RetentionPolicy { keep_monthly: Some(1), ..policy() }.validate().is_ok());
    assert!(RetentionPolicy { older_than: Some(0), ..policy() }.validate().is_ok());
    let all = chains();
    assert_eq!(decide(&all, &policy(), 20000).iter().filter(|d| d.keep).count(), 4);
    assert!(decide(&[], &RetentionPolicy { keep_last: Some(1), ..policy() }, 0).is_empty());
}

#[test]
fn cutoff_from_days_takes_fractions() {
    assert_eq!(cutoff_from_days("30", 10_000_000).unwrap(), 10_000_000 - 30 * 86400);
    assert_eq!(cutoff_from_days(" 0.5 ", 100_000).unwrap(), 100_000 - 43200);
    assert_eq!(cutoff_from_days("0", 7).unwrap(), 7);
    assert_eq!(cutoff_from_days("1e300", 7).unwrap(), 7 - i64::MAX);
    for bad in ["", "-1", "x", "NaN", "inf", "3d"] {
        let err = cutoff_from_days(bad, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage, "{bad:?}");
        assert!(err.to_string().contains("--remove-older-than"), "{err}");
    }
}

/// A zone far from UTC, so local and UTC calendar days differ.
fn tz() -> TimeZone {
    TimeZone::fixed(Offset::constant(10))
}

/// Unix seconds of a local time in [`tz`].
fn at(y: i16, m: i8, d: i8, h: i8) -> i64 {
    civil::date(y, m, d).at(h, 0, 0, 0).to_zoned(tz()).unwrap().timestamp().as_second()
}

/// One chain per time: a level 0 an hour before an incremental at `end`.
fn chains_ending(ends: &[i64]) -> Vec<Backup> {
    ends.iter()
        .flat_map(|&end| [agent(end - 3600, 0, end - 3600), agent(end - 3600, 1, end)])
        .collect()
}

fn kept_ends(all: &[Backup], p: &RetentionPolicy) -> Vec<i64> {
    let now = at(2027, 6, 1, 0);
    decide_in(all, p, now, &tz()).iter().filter(|d| d.keep).map(|d| d.end).collect()
}

#[test]
fn keep_daily_uses_local_days() {
    // 05:00 local on Jan 1 is Dec 31 in UTC: local days are 12-30, 12-31 (twice), 01-01 (twice).
    let ends = [
        at(2026, 12, 30, 12),
        at(2026, 12, 31, 9),
        at(2026, 12, 31, 20),
        at(2027, 1, 1, 5),
        at(2027, 1, 1, 23),
    ];
    let all = chains_ending(&ends);
    let daily = |n| RetentionPolicy { keep_daily: Some(n), ..policy() };
    assert_eq!(kept_ends(&all, &daily(1)), [ends[4]]);
    assert_eq!(kept_ends(&all, &daily(2)), [ends[2], ends[4]]);
    assert_eq!(kept_ends(&all, &daily(3)), [ends[0], ends[2], ends[4]]);
    assert_eq!(kept_ends(&all, &daily(30)), [ends[0], ends[2], ends[4]]);
    let got = decide_in(&all, &daily(2), 0, &tz());
    assert!(got[2].reasons[0].contains("day 2026-12-31 (--keep-daily 2)"), "{:?}", got[2].reasons);
}

#[test]
fn keep_weekly_uses_iso_weeks_across_the_year() {
    // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53; 2027-01-04 starts 2027-W01.
    let ends = [
        at(2026, 12, 20, 12), // Sunday of W51
        at(2026, 12, 27, 12), // Sunday of W52
        at(2026, 12, 28, 12), // W53
        at(2027, 1, 3, 12),   // W53, the newest of that week
        at(2027, 1, 4, 1),    // W01 (Sunday 15:00 UTC: still W53 in UTC)
    ];
    let all = chains_ending(&ends);
    let weekly = |n| RetentionPolicy { keep_weekly: Some(n), ..policy() };
    assert_eq!(kept_ends(&all, &weekly(1)), [ends[4]]);
    assert_eq!(kept_ends(&all, &weekly(2)), [ends[3], ends[4]]);
    assert_eq!(kept_ends(&all, &weekly(3)), [ends[1], ends[3], ends[4]]);
    assert_eq!(kept_ends(&all, &weekly(9)), [ends[0], ends[1], ends[3], ends[4]]);
    let got = decide_in(&all, &weekly(2), 0, &tz());
    assert!(got[3].reasons[0].contains("ISO week 2026-W53"), "{:?}", got[3].reasons);
}

#[test]
fn keep_monthly_across_months_and_years() {
    let ends = [
        at(2026, 11, 3, 12),
        at(2026, 11, 30, 12),
        at(2026, 12, 15, 12),
        at(2027, 1, 1, 2), // Jan locally, Dec 31 in UTC
        at(2027, 2, 10, 12),
    ];
    let all = chains_ending(&ends);
    let monthly = |n| RetentionPolicy { keep_monthly: Some(n), ..policy() };
    assert_eq!(kept_ends(&all, &monthly(2)), [ends[3], ends[4]]);
    assert_eq!(kept_ends(&all, &monthly(3)), [ends[2], ends[3], ends[4]]);
    assert_eq!(kept_ends(&all, &monthly(12)), [ends[1], ends[2], ends[3], ends[4]]);
    // Rules add up, each counting on its own (restic's semantics), with a cutoff on top.
    let mixed = RetentionPolicy {
        keep_last: Some(1),
        keep_monthly: Some(3),
        older_than: Some(at(2026, 11, 10, 0)),
        ..policy()
    };
    assert_eq!(kept_ends(&all, &mixed), [ends[1], ends[2], ends[3], ends[4]]);
    let gfs = RetentionPolicy {
        keep_daily: Some(1),
        keep_weekly: Some(1),
        keep_monthly: Some(4),
        ..policy()
    };
    assert_eq!(kept_ends(&all, &gfs), [ends[1], ends[2], ends[3], ends[4]]);
}

#[test]
fn decide_uses_the_system_zone() {
    // Whatever the host's zone, decide() agrees with decide_in() given that zone.
    let all = chains_ending(&[100_000, 200_000, 300_000, 2_000_000]);
    let p = RetentionPolicy { keep_daily: Some(2), keep_monthly: Some(2), ..policy() };
    let a = kept(&decide(&all, &p, 0));
    let b = kept(&decide_in(&all, &p, 0, &TimeZone::system()));
    assert_eq!(a, b);
}

#[test]
fn reasons_say_why_it_stays_or_goes() {
    let all = chains();
    let p = RetentionPolicy { older_than: Some(1_000_000), keep_last: Some(2), ..policy() };
    let got = decide(&all, &p, 20000);
    let reasons: Vec<Vec<&str>> = got
        .iter()
        .map(|d| d.reasons.iter().map(|r| r.split(" (").next().unwrap()).collect())
        .collect();
    let cutoff = format_local(1_000_000);
    assert_eq!(reasons[0][0], format!("newest backup {}", format_local(300)));
    assert!(got[0].reasons[0].ends_with(&format!("is at or before the cutoff {cutoff}")));
    assert_eq!(reasons[0][1], "selected by no --keep-* rule");
    assert_eq!(reasons[2], ["one of the 2 newest chains"]);
    assert_eq!(reasons[3], ["newest chain", "one of the 2 newest chains"]);
}
