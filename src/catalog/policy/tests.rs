use super::*;
use crate::catalog::testutil::{agent, names, ours};
use crate::catalog::{Layout, restore_chain};

fn incremental() -> LevelPolicy {
    LevelPolicy { incremental: true, ..Default::default() }
}

/// Take one backup at each of `times` as freezer would, recording the parent; return
/// `<L>_<T>:<parent>` of each new backup and the resulting catalog.
fn run(policy: &LevelPolicy, mut all: Vec<Backup>, times: &[i64]) -> (Vec<String>, Vec<Backup>) {
    let mut taken = Vec::new();
    for &now in times {
        let next = next_backup(&all, policy, now);
        let id = new_id(&all, &next, now);
        let parent = next.parent.map(|p| p.id.name());
        taken.push(format!("{}:{}", id.name(), parent.as_deref().unwrap_or("-")));
        let b = ours(id.level_zero, id.level, id.timestamp, parent.as_deref());
        all.push(b);
    }
    (taken, all)
}

fn hours(n: i64) -> Vec<i64> {
    (0..n).map(|i| 1_000_000 + i * 3600).collect()
}

#[test]
fn max_level_3_restarts_after_level_3() {
    let policy = LevelPolicy { max_level: Some(3), ..incremental() };
    let t = hours(6);
    let (taken, all) = run(&policy, Vec::new(), &t);
    let want = [
        format!("0_{}:-", t[0]),
        format!("1_{}:0_{}", t[1], t[0]),
        format!("2_{}:1_{}", t[2], t[1]),
        format!("3_{}:2_{}", t[3], t[2]),
        format!("0_{}:-", t[4]),
        format!("1_{}:0_{}", t[5], t[4]),
    ];
    assert_eq!(taken, want);
    assert_eq!(all[4].id.level_zero, t[4]);
    assert_eq!(all[5].id.level_zero, t[4]);
}

#[test]
fn always_level_2_repeats_level_2_on_the_level_1() {
    let policy = LevelPolicy { always_level: Some(2), ..incremental() };
    let t = hours(5);
    let (taken, all) = run(&policy, Vec::new(), &t);
    let l1 = format!("1_{}", t[1]);
    let want = [
        format!("0_{}:-", t[0]),
        format!("{l1}:0_{}", t[0]),
        format!("2_{}:{l1}", t[2]),
        format!("2_{}:{l1}", t[3]),
        format!("2_{}:{l1}", t[4]),
    ];
    assert_eq!(taken, want);
    // Each level 2 restores as L0 + L1 + itself.
    let layout = Layout::new("h", "b");
    for (i, &at) in t.iter().enumerate().skip(2) {
        let chain = restore_chain(&all, &layout, Some(at)).unwrap();
        assert_eq!(names(&chain), [format!("0_{}", t[0]), l1.clone(), format!("2_{}", t[i])]);
    }
}

#[test]
fn always_level_on_agent_backups_uses_the_newest_lower_level() {
    let all = vec![agent(100, 0, 100), agent(100, 1, 200), agent(100, 2, 300), agent(100, 2, 400)];
    let policy = LevelPolicy { always_level: Some(2), ..incremental() };
    let next = next_backup(&all, &policy, 500);
    assert_eq!((next.level, next.parent.map(|p| p.id.name())), (2, Some("1_200".into())));
    // A lower always-level than the chain reached: new chain.
    let policy = LevelPolicy { always_level: Some(1), ..incremental() };
    assert!(next_backup(&all, &policy, 500).parent.is_none());
    // No level policy: on the newest backup.
    let next = next_backup(&all, &incremental(), 500);
    assert_eq!((next.level, next.parent.map(|p| p.id.name())), (3, Some("2_400".into())));
}

#[test]
fn restart_after_days_counts_from_the_newest_backup() {
    let policy = LevelPolicy {
        always_level: Some(2),
        restart_always_level_days: Some(1.0),
        ..incremental()
    };
    let all = vec![agent(0, 0, 0), agent(0, 1, 3600), agent(0, 2, 7200)];
    let cases = [(7200 + 86400, 2), (7200 + 86401, 0), (7200 + 10 * 86400, 0)];
    for (now, level) in cases {
        assert_eq!(next_backup(&all, &policy, now).level, level, "now {now}");
    }
    let half = LevelPolicy { restart_always_level_days: Some(0.5), ..incremental() };
    assert_eq!(next_backup(&all, &half, 7200 + 43199).level, 3);
    assert_eq!(next_backup(&all, &half, 7200 + 43201).level, 0);
}

#[test]
fn not_incremental_or_nothing_yet_is_level_0() {
    let all = vec![agent(100, 0, 100), agent(100, 1, 200)];
    let plain = LevelPolicy { max_level: Some(5), ..Default::default() };
    assert!(next_backup(&all, &plain, 300).parent.is_none());
    assert_eq!(next_backup(&all, &plain, 300).level, 0);
    assert_eq!(next_backup(&[], &incremental(), 300).level, 0);
    for zero in [
        LevelPolicy { max_level: Some(0), ..incremental() },
        LevelPolicy { always_level: Some(0), ..incremental() },
    ] {
        assert_eq!(next_backup(&all, &zero, 300).level, 0, "{zero:?}");
    }
}

#[test]
fn newest_chain_is_the_greatest_level_zero() {
    // Chain 400 is newer even though chain 100 has a later backup listed first.
    let all = vec![agent(400, 0, 400), agent(100, 0, 100), agent(100, 1, 200)];
    let next = next_backup(&all, &incremental(), 500);
    assert_eq!(next.parent.map(|p| p.id.to_string()), Some("400/0_400".into()));
}

#[test]
fn a_broken_chain_is_not_built_on() {
    let all = vec![agent(100, 0, 100), agent(100, 2, 300)];
    assert!(next_backup(&all, &incremental(), 400).parent.is_none());
    let all = vec![agent(100, 1, 200)];
    assert!(next_backup(&all, &incremental(), 400).parent.is_none());
    let all = vec![agent(100, 0, 100), agent(100, 2, 300)];
    let policy = LevelPolicy { always_level: Some(2), ..incremental() };
    assert_eq!(next_backup(&all, &policy, 400).level, 0);
}

#[test]
fn new_ids_never_collide_within_one_second() {
    let policy = LevelPolicy { max_level: Some(2), ..incremental() };
    let (taken, all) = run(&policy, Vec::new(), &[50, 50, 50, 50, 50]);
    assert_eq!(taken, ["0_50:-", "1_51:0_50", "2_52:1_51", "0_53:-", "1_54:0_53"]);
    assert_eq!(all[3].id.level_zero, 53);
    // A clock set back still moves forward.
    let (taken, _) = run(&policy, all, &[10]);
    assert_eq!(taken, ["2_55:1_54"]);
    // Not incremental: every one a new chain with its own T0.
    let (taken, all) = run(&LevelPolicy::default(), Vec::new(), &[7, 7]);
    assert_eq!(taken, ["0_7:-", "0_8:-"]);
    assert_eq!((all[1].id.level_zero, all[1].id.timestamp), (8, 8));
}
