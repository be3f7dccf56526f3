use std::fs;

use super::*;
use crate::catalog::testutil::{agent, names, ours};
use crate::storage::local::LocalStorage;

fn layout() -> Layout {
    Layout::new("www", "etc")
}

fn chain_at(all: &[Backup], at: Option<i64>) -> Vec<String> {
    names(&restore_chain(all, &layout(), at).unwrap())
}

/// Two agent chains: L0@100 L1@200 L2@300, then L0@400 L1@500.
fn two_chains() -> Vec<Backup> {
    vec![
        agent(100, 0, 100),
        agent(100, 1, 200),
        agent(100, 2, 300),
        agent(400, 0, 400),
        agent(400, 1, 500),
    ]
}

#[test]
fn restore_chain_by_date() {
    let all = two_chains();
    let cases: &[(Option<i64>, &[&str])] = &[
        (None, &["0_400", "1_500"]),
        (Some(100), &["0_100"]),
        (Some(199), &["0_100"]),
        (Some(200), &["0_100", "1_200"]),
        (Some(250), &["0_100", "1_200"]),
        (Some(399), &["0_100", "1_200", "2_300"]),
        (Some(450), &["0_400"]),
        (Some(10_000), &["0_400", "1_500"]),
    ];
    for (at, want) in cases {
        assert_eq!(chain_at(&all, *at), *want, "at {at:?}");
    }
}

#[test]
fn restore_before_the_first_backup_says_what_exists() {
    let all = two_chains();
    let err = restore_chain(&all, &layout(), Some(99)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let text = err.to_string();
    assert!(text.contains("no backup of www_etc at or before"), "{text}");
    assert!(text.contains("the oldest is") && text.contains("100/0_100"), "{text}");
    assert!(text.contains(&format_local(100)), "{text}");

    let err = restore_chain(&[], &layout(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("metadata/tar/www_etc"), "{err}");
}

#[test]
fn always_level_branches_pick_the_right_level_2() {
    let agents = vec![
        agent(100, 0, 100),
        agent(100, 1, 200),
        agent(100, 2, 300),
        agent(100, 2, 400),
        agent(100, 2, 500),
    ];
    let mine = vec![
        ours(100, 0, 100, None),
        ours(100, 1, 200, Some("0_100")),
        ours(100, 2, 300, Some("1_200")),
        ours(100, 2, 400, Some("1_200")),
        ours(100, 2, 500, Some("1_200")),
    ];
    for all in [agents, mine] {
        assert_eq!(chain_at(&all, None), ["0_100", "1_200", "2_500"]);
        assert_eq!(chain_at(&all, Some(450)), ["0_100", "1_200", "2_400"]);
        assert_eq!(chain_at(&all, Some(300)), ["0_100", "1_200", "2_300"]);
        // Listing order does not matter.
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(chain_at(&reversed, Some(450)), ["0_100", "1_200", "2_400"]);
    }
}

#[test]
fn explicit_parent_wins_over_the_newest_lower_level() {
    // always-level 1: L0, L1, L1; then a level 2 recorded on the first L1.
    let all = vec![
        ours(100, 0, 100, None),
        ours(100, 1, 200, Some("0_100")),
        ours(100, 1, 250, Some("0_100")),
        ours(100, 2, 300, Some("1_200")),
    ];
    assert_eq!(chain_at(&all, None), ["0_100", "1_200", "2_300"]);
    assert_eq!(parent_of(&all, &all[3]).map(|b| b.id.name()), Some("1_200".into()));
    // Without the field, the newest L1 before it is taken.
    let inferred = agent(100, 2, 300);
    assert_eq!(parent_of(&all, &inferred).map(|b| b.id.name()), Some("1_250".into()));
    assert!(parent_of(&all, &all[0]).is_none());
}

#[test]
fn parent_must_be_older_and_in_the_same_chain() {
    let all = vec![agent(100, 0, 100), agent(100, 1, 300), agent(200, 1, 250), agent(100, 2, 250)];
    assert!(parent_of(&all, &all[3]).is_none(), "the only L1 of chain 100 is newer");
    let mut bad = ours(100, 2, 400, Some("1_250"));
    assert!(parent_of(&all, &bad).is_none(), "1_250 lives in chain 200");
    bad.meta.parent = Some("garbage".into());
    assert!(parent_of(&all, &bad).is_none());
}

#[test]
fn missing_levels_are_corrupt_and_named() {
    let all = vec![agent(100, 0, 100), agent(100, 2, 300)];
    let err = restore_chain(&all, &layout(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("a level 1 taken before it is missing"), "{err}");
    assert!(err.to_string().contains("2_300"), "{err}");

    let all = vec![ours(100, 0, 100, None), ours(100, 1, 300, Some("0_99"))];
    let err = restore_chain(&all, &layout(), None).unwrap_err();
    assert!(err.to_string().contains("its parent 0_99 is missing"), "{err}");

    // The newest chain lost its level 0: reported, not silently replaced by the older chain.
    let all = vec![agent(100, 0, 100), agent(400, 1, 500)];
    let err = restore_chain(&all, &layout(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("level 0"), "{err}");
    assert_eq!(chain_at(&all, Some(399)), ["0_100"]);
}

const AGENT_META: &str = r#"{"engine_name": "tar", "compression": "gzip", "encryption": false}"#;

fn write(root: &std::path::Path, key: &str, text: &str) {
    let path = root.join(key);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn load_an_agent_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let m = "metadata/tar/www_etc";
    for key in ["100/0_100", "100/1_200", "100/2_300", "400/0_400", "400/1_500"] {
        write(root, &format!("{m}/{key}/metadata"), AGENT_META);
        write(root, &format!("data/tar/www_etc/{key}/data"), "tar");
        write(root, &format!("data/tar/www_etc/{key}/engine_metadata"), "snap");
    }
    // Noise: skipped with a warning.
    write(root, &format!("{m}/notes/0_1/metadata"), AGENT_META);
    write(root, &format!("{m}/100/x_1/metadata"), AGENT_META);
    write(root, &format!("{m}/100/3/metadata"), AGENT_META);
    fs::create_dir_all(root.join(format!("{m}/400/2_600"))).unwrap(); // unfinished backup
    // Another backup name and host: not ours.
    write(root, "metadata/tar/www_other/100/0_100/metadata", AGENT_META);
    write(root, "metadata/tar/mail_etc/700/0_700/metadata", AGENT_META);

    let storage = LocalStorage::new(root).unwrap();
    let all = load(&storage, &layout()).unwrap();
    let got: Vec<String> = all.iter().map(|b| b.id.to_string()).collect();
    assert_eq!(got, ["100/0_100", "100/1_200", "100/2_300", "400/0_400", "400/1_500"]);
    assert!(all.iter().all(|b| b.meta.compression == "gzip" && !b.meta.is_ours()));
    assert_eq!(chain_at(&all, Some(350)), ["0_100", "1_200", "2_300"]);

    // Nothing stored at all: empty, not an error.
    let empty = LocalStorage::new(&root.join("nowhere")).unwrap();
    assert!(load(&empty, &layout()).unwrap().is_empty());
}

#[test]
fn load_sorts_by_time_across_chains() {
    let dir = tempfile::tempdir().unwrap();
    // T0 directory names sort as strings ("1000" < "999"); the result must not.
    for key in ["999/0_999", "999/1_1001", "1000/0_1000"] {
        write(dir.path(), &format!("metadata/tar/www_etc/{key}/metadata"), AGENT_META);
    }
    let storage = LocalStorage::new(dir.path()).unwrap();
    let all = load(&storage, &layout()).unwrap();
    let got: Vec<String> = all.iter().map(|b| b.id.to_string()).collect();
    assert_eq!(got, ["999/0_999", "1000/0_1000", "999/1_1001"]);
}

#[test]
fn bad_metadata_is_set_aside_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "metadata/tar/www_etc/100/0_100/metadata", AGENT_META);
    write(dir.path(), "metadata/tar/www_etc/100/1_200/metadata", "{\"engine_name\": \"tar\"");
    let storage = LocalStorage::new(dir.path()).unwrap();
    let catalog = load_catalog(&storage, &layout()).unwrap();
    assert_eq!(catalog.backups.len(), 1);
    assert_eq!(catalog.damaged.len(), 1);
    assert_eq!(catalog.damaged[0].id.name(), "1_200");
    let problem = &catalog.damaged[0].problem;
    assert!(problem.contains("metadata/tar/www_etc/100/1_200/metadata"), "{problem}");
    assert_eq!(load(&storage, &layout()).unwrap().len(), 1);

    // A metadata that is a directory cannot be read: an error, not a skip.
    fs::remove_file(dir.path().join("metadata/tar/www_etc/100/1_200/metadata")).unwrap();
    write(dir.path(), "metadata/tar/www_etc/100/1_200/metadata/x", "");
    let err = load(&storage, &layout()).unwrap_err();
    assert!(err.to_string().contains("1_200/metadata"), "{err}");
}
