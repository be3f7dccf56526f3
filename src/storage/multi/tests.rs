use std::path::Path;

use super::*;
use crate::backup::{self, BackupOptions};
use crate::restore::{self, RestoreOptions};
use crate::storage::local::LocalStorage;
use crate::storage::{Hooked, Op};

fn local(dir: &Path, name: &str) -> Arc<dyn StorageWrite> {
    Arc::new(LocalStorage::new(&dir.join(name)).unwrap())
}

fn set(dir: &Path, on_failure: OnFailure, failing: Option<Op>) -> MultiStorage {
    let second: Arc<dyn StorageWrite> = Arc::new(Hooked {
        inner: LocalStorage::new(&dir.join("b")).unwrap(),
        hook: Box::new(move |op, key| match failing {
            // Fails once the data object has its first segment.
            Some(f) if std::mem::discriminant(&f) == std::mem::discriminant(&op) => {
                Err(Error::storage(format!("injected failure on {key}")))
            }
            _ => Ok(()),
        }),
    });
    let members = vec![
        Member { name: "a".into(), storage: local(dir, "a") },
        Member { name: "b".into(), storage: second },
    ];
    MultiStorage::new(members, on_failure).unwrap()
}

#[test]
fn the_shared_suite_passes() {
    crate::storage::suite::run(&|| {
        let dir = tempfile::tempdir().unwrap();
        let s = set(dir.path(), OnFailure::Fail, None);
        (Box::new(dir) as Box<dyn std::any::Any>, Box::new(s) as Box<dyn StorageWrite>)
    });
}

fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), vec![7u8; 300_000]).unwrap();
    std::fs::write(src.join("g"), b"small").unwrap();
    src
}

fn restore_opts(target: &Path) -> RestoreOptions {
    RestoreOptions {
        hostname: "h".into(),
        backup_name: "b".into(),
        target: target.to_path_buf(),
        at: None,
        overwrite: false,
        dry_run: false,
        key: None,
        openssl_md: None,
        consistency_checksum: None,
        threads: 2,
    }
}

fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["d/f", "g"] {
        out.push((sub.to_string(), std::fs::read(root.join(sub)).unwrap()));
    }
    out
}

#[test]
fn a_backup_lands_in_every_member_and_each_copy_restores_alone() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let s = set(dir.path(), OnFailure::Fail, None);
    let mut opts = BackupOptions::for_test(src.clone());
    opts.segment_size = 64 << 10;
    backup::run(&s, &opts, None).unwrap();
    for name in ["a", "b"] {
        let one = LocalStorage::new(&dir.path().join(name)).unwrap();
        let target = dir.path().join(format!("r-{name}"));
        restore::run(&one, &restore_opts(&target)).unwrap();
        assert_eq!(files(&target), files(&src), "copy {name}");
    }
}

#[test]
fn one_failing_member_fails_the_backup_and_leaves_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let s = set(dir.path(), OnFailure::Fail, Some(Op::Put));
    let err = backup::run(&s, &BackupOptions::for_test(src), None).unwrap_err();
    assert!(err.to_string().contains("[storage:b]"), "names the storage: {err}");
    for name in ["a", "b"] {
        let one = LocalStorage::new(&dir.path().join(name)).unwrap();
        let layout = crate::catalog::Layout::new("h", "b");
        let catalog = crate::catalog::load_catalog(&one, &layout).unwrap();
        assert!(catalog.backups.is_empty() && catalog.damaged.is_empty(), "{name}: visible");
        let chains = one.list("data/tar/h_b").unwrap();
        assert!(
            chains.iter().all(|t0| one.list(&format!("data/tar/h_b/{t0}")).unwrap().is_empty())
        );
    }
}

#[test]
fn with_warn_the_others_keep_their_copy() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let s = set(dir.path(), OnFailure::Warn, Some(Op::Create));
    backup::run(&s, &BackupOptions::for_test(src.clone()), None).unwrap();
    let dropped = s.dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].starts_with("[storage:b]"), "{dropped:?}");
    let a = LocalStorage::new(&dir.path().join("a")).unwrap();
    restore::run(&a, &restore_opts(&dir.path().join("r"))).unwrap();
    let b = LocalStorage::new(&dir.path().join("b")).unwrap();
    assert_eq!(b.list("metadata/tar").unwrap(), Vec::<String>::new(), "no partial copy shows");
}

#[test]
fn a_damaged_segment_is_read_from_the_next_copy() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let s = set(dir.path(), OnFailure::Fail, None);
    let mut opts = BackupOptions::for_test(src.clone());
    opts.segment_size = 64 << 10;
    let report = backup::run(&s, &opts, None).unwrap();
    // Flip a byte in the first copy's data, and remove the second copy's metadata.
    let layout = &report.layout;
    let data = dir.path().join("a").join(layout.data_key(&report.id));
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100_000] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    std::fs::remove_file(dir.path().join("b").join(layout.metadata_key(&report.id))).unwrap();
    let target = dir.path().join("r");
    restore::run(&s, &restore_opts(&target)).unwrap();
    assert_eq!(files(&target), files(&src));
}
