use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::ErrorKind;
use crate::catalog::{load, restore_chain};
use crate::storage::local::LocalStorage;
use crate::storage::{Hooked, Op};

const AGENT_META: &str = r#"{"engine_name": "tar", "compression": "gzip", "encryption": false}"#;
const NOW: i64 = 200_000;
const CUTOFF: i64 = 50_000;

fn www() -> Layout {
    Layout::new("www", "etc")
}

fn write(root: &Path, key: &str, text: &str) {
    let path = root.join(key);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A backup as freezer-agent writes it: data, engine_metadata, metadata.
fn backup(root: &Path, hb: &str, key: &str) {
    write(root, &format!("data/tar/{hb}/{key}/data"), "tar stream");
    write(root, &format!("data/tar/{hb}/{key}/engine_metadata"), "snapshot");
    write(root, &format!("metadata/tar/{hb}/{key}/metadata"), AGENT_META);
}

/// Data without metadata: a crashed, running or half-pruned backup.
fn orphan(root: &Path, hb: &str, key: &str) {
    write(root, &format!("data/tar/{hb}/{key}/data"), "partial");
}

/// www_etc, with NOW = 200000, CUTOFF = 50000 and the default grace (orphans of T < 113600
/// are past it):
/// - chain 1000 (ends 3000) and chain 10000 (always-level branches, ends 12000): go;
/// - chain 30000: old level 0, incremental at 90000: stays;
/// - chain 100000: newest, stays, with an orphan past the grace and one within it;
/// - 20000: data only, older than the newest chain (a prune interrupted earlier), with an
///   empty metadata dir;
/// - 110000: data only, newer than the newest chain, past the grace (a crashed level 0);
/// - 190000: data only, within the grace (a level 0 being written).
///
/// mail_etc: one old chain, the newest, so it stays.
fn fixture(root: &Path) {
    let hb = "www_etc";
    for key in ["1000/0_1000", "1000/1_2000", "1000/2_3000"] {
        backup(root, hb, key);
    }
    orphan(root, hb, "1000/3_3500");
    for key in ["10000/0_10000", "10000/1_11000", "10000/1_12000"] {
        backup(root, hb, key);
    }
    for key in ["30000/0_30000", "30000/1_90000", "100000/0_100000", "100000/1_150000"] {
        backup(root, hb, key);
    }
    orphan(root, hb, "100000/2_110000");
    orphan(root, hb, "100000/2_180000");
    orphan(root, hb, "20000/0_20000");
    orphan(root, hb, "20000/1_21000");
    fs::create_dir_all(root.join("metadata/tar/www_etc/20000")).unwrap();
    orphan(root, hb, "110000/0_110000");
    orphan(root, hb, "190000/0_190000");
    backup(root, "mail_etc", "500/0_500");
}

fn opts(orphans: bool) -> PruneOptions {
    PruneOptions {
        orphans,
        ..PruneOptions::new(RetentionPolicy { older_than: Some(CUTOFF), ..Default::default() }, NOW)
    }
}

/// Every file and directory under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn ids(list: &[(String, BackupId)]) -> Vec<String> {
    list.iter().map(|(hb, id)| format!("{hb}:{id}")).collect()
}

fn both_layouts(storage: &dyn Storage) -> Vec<Layout> {
    let layouts = all_layouts(storage).unwrap();
    assert_eq!(layouts, [Layout::new("mail", "etc"), www()]);
    layouts
}

#[test]
fn prune_removes_whole_chains_and_orphans() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let storage = LocalStorage::new(dir.path()).unwrap();
    let report = prune(&storage, &both_layouts(&storage), &opts(true)).unwrap();
    assert!(!report.dry_run);
    assert_eq!(
        ids(&report.removed),
        [
            "www_etc:1000/0_1000",
            "www_etc:1000/1_2000",
            "www_etc:1000/2_3000",
            "www_etc:10000/0_10000",
            "www_etc:10000/1_11000",
            "www_etc:10000/1_12000",
        ]
    );
    assert_eq!(
        ids(&report.kept),
        [
            "mail_etc:500/0_500",
            "www_etc:30000/0_30000",
            "www_etc:30000/1_90000",
            "www_etc:100000/0_100000",
            "www_etc:100000/1_150000",
        ]
    );
    assert_eq!(
        report.orphans_removed,
        [
            "data/tar/www_etc/1000/3_3500",
            "data/tar/www_etc/100000/2_110000",
            "data/tar/www_etc/110000",
            "data/tar/www_etc/20000",
        ]
    );
    assert_eq!(report.chains.len(), 5);
    assert!(report.chains[3].reasons[0].contains("after the cutoff"), "{:?}", report.chains[3]);

    let left = tree(dir.path());
    let d = "data/tar/www_etc";
    let m = "metadata/tar/www_etc";
    for gone in [
        format!("{d}/1000"),
        format!("{m}/1000"),
        format!("{d}/10000"),
        format!("{m}/10000"),
        format!("{d}/20000"),
        format!("{m}/20000"),
        format!("{d}/110000"),
        format!("{d}/100000/2_110000"),
    ] {
        assert!(!left.contains(&gone), "{gone} is still there");
    }
    for kept in [
        format!("{m}/30000/0_30000/metadata"),
        format!("{d}/30000/1_90000/data"),
        format!("{d}/100000/1_150000/engine_metadata"),
        format!("{d}/100000/2_180000/data"),
        format!("{d}/190000/0_190000/data"),
        "data/tar/mail_etc/500/0_500/data".to_string(),
    ] {
        assert!(left.contains(&kept), "{kept} is gone");
    }

    // Pruning again finds nothing more to do.
    let again = prune(&storage, &both_layouts(&storage), &opts(true)).unwrap();
    assert!(again.removed.is_empty() && again.orphans_removed.is_empty(), "{again:?}");
    assert_eq!(tree(dir.path()), left);
}

#[test]
fn dry_run_reports_the_same_and_deletes_nothing() {
    for orphans in [false, true] {
        let dry_dir = tempfile::tempdir().unwrap();
        fixture(dry_dir.path());
        let before = tree(dry_dir.path());
        let dry_storage = LocalStorage::new(dry_dir.path()).unwrap();
        let dry = PruneOptions { dry_run: true, ..opts(orphans) };
        let planned = prune(&dry_storage, &both_layouts(&dry_storage), &dry).unwrap();
        assert!(planned.dry_run);
        assert_eq!(tree(dry_dir.path()), before);

        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let storage = LocalStorage::new(dir.path()).unwrap();
        let done = prune(&storage, &both_layouts(&storage), &opts(orphans)).unwrap();
        assert_eq!(PruneReport { dry_run: true, ..done }, planned);
    }
}

#[test]
fn orphans_wait_for_the_grace_except_in_pruned_chains() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let storage = LocalStorage::new(dir.path()).unwrap();
    // Without --orphans, or with a grace longer than anything: only the data of pruned chains
    // (inside a deleted chain, or a whole chain whose metadata is gone) is collected.
    let long = PruneOptions { orphan_grace_secs: 1_000_000_000, ..opts(true) };
    for o in [opts(false), long] {
        let planned = prune(&storage, &[www()], &PruneOptions { dry_run: true, ..o }).unwrap();
        assert_eq!(
            planned.orphans_removed,
            ["data/tar/www_etc/1000/3_3500", "data/tar/www_etc/20000"]
        );
    }
    // Grace 0: everything without metadata that is older than now.
    let none = PruneOptions { orphan_grace_secs: 0, dry_run: true, ..opts(true) };
    let planned = prune(&storage, &[www()], &none).unwrap();
    assert_eq!(
        planned.orphans_removed,
        [
            "data/tar/www_etc/1000/3_3500",
            "data/tar/www_etc/100000/2_110000",
            "data/tar/www_etc/100000/2_180000",
            "data/tar/www_etc/110000",
            "data/tar/www_etc/190000",
            "data/tar/www_etc/20000",
        ]
    );
    let bad = PruneOptions { orphan_grace_secs: -1, ..opts(true) };
    assert_eq!(prune(&storage, &[www()], &bad).unwrap_err().kind(), ErrorKind::Usage);
    let no_rule = PruneOptions::new(RetentionPolicy::default(), NOW);
    let err = prune(&storage, &[www()], &no_rule).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
}

/// Local storage whose `delete` fails once `left` deletes have been done; `done` counts them.
fn fail_after(root: &Path, left: usize) -> (Hooked<LocalStorage>, Arc<AtomicUsize>) {
    let inner = LocalStorage::new(root).unwrap();
    let left = AtomicUsize::new(left);
    let done = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&done);
    let hook = move |op: Op, _: &str| {
        if op != Op::Delete {
            return Ok(());
        }
        if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            return Err(Error::storage("simulated kill"));
        }
        count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    (Hooked { inner, hook: Box::new(hook) }, done)
}

/// Every chain still listed restores up to its newest backup.
fn assert_restorable(storage: &dyn Storage) {
    for layout in all_layouts(storage).unwrap() {
        let all = load(storage, &layout).unwrap();
        let chains: BTreeSet<i64> = all.iter().map(|b| b.id.level_zero).collect();
        for t0 in chains {
            let end = all.iter().filter(|b| b.id.level_zero == t0).map(|b| b.id.timestamp).max();
            let replay = restore_chain(&all, &layout, end).unwrap();
            assert_eq!(replay[0].id.level, 0);
            assert_eq!(replay.last().unwrap().id.timestamp, end.unwrap());
        }
    }
}

#[test]
fn interrupted_prune_leaves_a_store_that_prunes_cleanly() {
    let keep_last = RetentionPolicy { keep_last: Some(2), ..Default::default() };
    for o in [opts(true), opts(false), PruneOptions { policy: keep_last, ..opts(true) }] {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let (counting, done) = fail_after(dir.path(), usize::MAX);
        let want = prune(&counting, &both_layouts(&counting), &o).unwrap();
        let total = done.load(Ordering::SeqCst);
        assert!(total > 15, "{total}");
        let want_tree = tree(dir.path());

        for k in 0..total {
            let dir = tempfile::tempdir().unwrap();
            fixture(dir.path());
            let (failing, _) = fail_after(dir.path(), k);
            let err = prune(&failing, &both_layouts(&failing), &o).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("run the prune again") && text.contains("simulated"), "{text}");
            assert!(k == 0 || text.contains(&format!("{k} deletes")), "{text}");

            let storage = LocalStorage::new(dir.path()).unwrap();
            assert_restorable(&storage);
            let second = prune(&storage, &both_layouts(&storage), &o).unwrap();
            assert_eq!(tree(dir.path()), want_tree, "after a kill at delete {k}");
            assert_eq!(second.kept, want.kept, "after a kill at delete {k}");
        }
    }
}
