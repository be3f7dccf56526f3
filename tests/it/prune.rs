//! Retention from the command line, over simulated days (`FREEZER_TEST_NOW` sets the clock;
//! it exists for tests only).

use std::path::Path;
use std::process::Command;

use crate::support::*;

const DAY: i64 = 86_400;
const T0: i64 = 1_790_000_000;

fn at(day: i64, args: &[&str]) -> std::process::Output {
    let out = Command::new(bin())
        .env("FREEZER_TEST_NOW", (T0 + day * DAY).to_string())
        .args(args)
        .output()
        .unwrap();
    assert_code(&out, 0);
    out
}

fn backup(day: i64, src: &Path, c: &Path, extra: &[&str]) {
    let mut args = vec![
        "backup",
        src.to_str().unwrap(),
        "-N",
        "r",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ];
    args.extend(extra);
    write(&src.join(format!("day{day}")), format!("{day}"));
    at(day, &args);
    std::thread::sleep(std::time::Duration::from_millis(15));
}

/// Level-0 timestamps of the chains left.
fn chains(c: &Path) -> Vec<i64> {
    let dir = c.join("metadata/tar/h_r");
    let mut out: Vec<i64> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn day_of(t: i64) -> i64 {
    (t - T0) / DAY
}

#[test]
fn a_chain_with_a_recent_incremental_is_kept_whatever_its_level_zero_age() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let c = t.path().join("c");
    backup(0, &src, &c, &["--incremental"]); // chain A: level 0 on day 0
    backup(10, &src, &c, &["--incremental"]); // chain A: level 1 on day 10
    backup(20, &src, &c, &[]); // chain B: level 0 on day 20
    let prune = |day: i64, days: &str| {
        at(
            day,
            &[
                "prune",
                "-N",
                "r",
                "--hostname",
                "h",
                "-C",
                c.to_str().unwrap(),
                "--remove-older-than",
                days,
            ],
        )
    };
    // Cutoff day 6: chain A's level 0 is older, but its newest backup (day 10) is not.
    prune(21, "15");
    assert_eq!(chains(&c).iter().map(|&t| day_of(t)).collect::<Vec<_>>(), [0, 20]);
    // Dry run: says what would go, removes nothing.
    let out = at(
        21,
        &[
            "--action",
            "admin",
            "-N",
            "r",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--remove-older-than",
            "5",
            "--dry-run",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("would remove h_r chain"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(chains(&c).len(), 2);
    // Cutoff day 16: chain A ended on day 10 and goes, with its data.
    prune(21, "5");
    assert_eq!(chains(&c).iter().map(|&t| day_of(t)).collect::<Vec<_>>(), [20]);
    assert_eq!(
        std::fs::read_dir(c.join("data/tar/h_r")).unwrap().count(),
        1,
        "data of chain A removed too"
    );
    let dest = t.path().join("dest");
    freezer_ok([
        "restore",
        dest.to_str().unwrap(),
        "-N",
        "r",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ]);
    assert!(dest.join("day20").exists());
}

#[test]
fn the_newest_chain_is_never_removed() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let c = t.path().join("c");
    backup(0, &src, &c, &[]);
    backup(1, &src, &c, &[]);
    at(
        100,
        &[
            "prune",
            "-N",
            "r",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--remove-older-than",
            "1",
        ],
    );
    assert_eq!(chains(&c).iter().map(|&t| day_of(t)).collect::<Vec<_>>(), [1]);
}

#[test]
fn keep_last_and_gfs_keep_exactly_the_expected_chains() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let c = t.path().join("c");
    // A full backup every day for 40 days (each a chain of its own).
    for day in 0..40 {
        backup(day, &src, &c, &[]);
    }
    let c_str = c.to_str().unwrap();
    at(40, &["prune", "-N", "r", "--hostname", "h", "-C", c_str, "--keep-last", "30"]);
    assert_eq!(chains(&c).len(), 30);
    // Newest of each of the last 3 days, of 2 ISO weeks, and of 2 months.
    let out = at(
        40,
        &[
            "prune",
            "-N",
            "r",
            "--hostname",
            "h",
            "-C",
            c_str,
            "--keep-daily",
            "3",
            "--keep-weekly",
            "2",
            "--keep-monthly",
            "2",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<i64> = v["chains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["keep"] == true)
        .map(|c| c["chain"].as_i64().unwrap())
        .collect();
    assert_eq!(chains(&c), kept);
    // What the calendar says, computed independently in local time.
    let tz = jiff::tz::TimeZone::system();
    let date = |t: i64| jiff::Timestamp::from_second(t).unwrap().to_zoned(tz.clone()).date();
    let all: Vec<i64> = (10..40).map(|d| T0 + d * DAY).collect(); // what keep-last 30 left
    let mut expected = std::collections::BTreeSet::new();
    let mut newest_per = |key: &dyn Fn(jiff::civil::Date) -> (i16, i16), n: usize| {
        let mut seen = Vec::new();
        for &t in all.iter().rev() {
            let k = key(date(t));
            if !seen.contains(&k) {
                if seen.len() == n {
                    break;
                }
                seen.push(k);
                expected.insert(t);
            }
        }
    };
    newest_per(&|d| (d.year(), d.day_of_year()), 3);
    newest_per(
        &|d| {
            let w = d.iso_week_date();
            (w.year(), w.week() as i16)
        },
        2,
    );
    newest_per(&|d| (d.year(), d.month() as i16), 2);
    assert_eq!(kept, expected.into_iter().collect::<Vec<_>>());
}

#[test]
fn remove_older_than_on_a_backup_prunes_right_after_it() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let c = t.path().join("c");
    backup(0, &src, &c, &[]);
    backup(5, &src, &c, &[]);
    // freezerc 1.0 style: one cron line backs up and cleans up.
    backup(30, &src, &c, &["--remove-older-than", "10"]);
    assert_eq!(chains(&c).iter().map(|&t| day_of(t)).collect::<Vec<_>>(), [30]);
}
