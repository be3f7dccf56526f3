//! Property: for random trees and random mutations over several levels, restoring each
//! backup's date gives exactly the tree as it was at that backup.

use std::fs;
use std::path::{Path, PathBuf};

use freezer::backup::{self, BackupOptions};
use freezer::catalog::LevelPolicy;
use freezer::compress::Compression;
use freezer::incremental::dump::DumpOptions;
use freezer::incremental::scan::ScanOptions;
use freezer::restore::{self, RestoreOptions};
use freezer::storage::local::LocalStorage;
use proptest::prelude::*;

use crate::support::*;

#[derive(Debug, Clone)]
enum Op {
    AddFile(u16, u16),
    ChangeFile(u16, u16),
    DeleteFile(u16),
    AddDir(u16, u16),
    RenameDir(u16, u16),
    FileToDir(u16),
    DirToFile(u16),
    DeleteDir(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::AddFile(a, b)),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::ChangeFile(a, b)),
        1 => any::<u16>().prop_map(Op::DeleteFile),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::AddDir(a, b)),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::RenameDir(a, b)),
        1 => any::<u16>().prop_map(Op::FileToDir),
        1 => any::<u16>().prop_map(Op::DirToFile),
        1 => any::<u16>().prop_map(Op::DeleteDir),
    ]
}

/// Files and directories (not the root) currently in the tree, sorted.
fn entries(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p.clone());
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs)
}

fn apply(root: &Path, op: &Op) {
    let (files, dirs) = entries(root);
    let pick = |v: &Vec<PathBuf>, i: u16| v.get(i as usize % v.len().max(1)).cloned();
    let mut all_dirs = vec![root.to_path_buf()];
    all_dirs.extend(dirs.iter().cloned());
    match *op {
        Op::AddFile(a, b) => {
            let d = &all_dirs[a as usize % all_dirs.len()];
            let p = d.join(format!("f{}", b % 50));
            if !p.is_dir() {
                write(&p, format!("new {b}").repeat(b as usize % 7 + 1));
            }
        }
        Op::ChangeFile(a, b) => {
            if let Some(f) = pick(&files, a) {
                write(&f, format!("changed {b}"));
            }
        }
        Op::DeleteFile(a) => {
            if let Some(f) = pick(&files, a) {
                fs::remove_file(f).unwrap();
            }
        }
        Op::AddDir(a, b) => {
            let d = &all_dirs[a as usize % all_dirs.len()];
            let p = d.join(format!("d{}", b % 20));
            if !p.exists() {
                fs::create_dir(&p).unwrap();
                write(&p.join("inside"), "x");
            }
        }
        Op::RenameDir(a, b) => {
            if let Some(d) = pick(&dirs, a) {
                let to = d.parent().unwrap().join(format!("r{}", b % 20));
                if !to.exists() {
                    fs::rename(&d, &to).unwrap();
                }
            }
        }
        Op::FileToDir(a) => {
            if let Some(f) = pick(&files, a) {
                fs::remove_file(&f).unwrap();
                write(&f.join("was-a-file"), "d");
            }
        }
        Op::DirToFile(a) => {
            if let Some(d) = pick(&dirs, a) {
                fs::remove_dir_all(&d).unwrap();
                write(&d, "was a dir");
            }
        }
        Op::DeleteDir(a) => {
            if let Some(d) = pick(&dirs, a) {
                fs::remove_dir_all(d).unwrap();
            }
        }
    }
}

fn run_case(initial: &[Op], levels: &[Vec<Op>]) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    for op in initial {
        apply(&src, op);
    }
    let storage = LocalStorage::new(&t.path().join("c")).unwrap();
    let mut opts = BackupOptions {
        path: src.clone(),
        hostname: "p".into(),
        backup_name: "prop".into(),
        compression: Compression::Zstd,
        segment_size: 64 << 10,
        policy: LevelPolicy {
            incremental: true,
            max_level: None,
            always_level: None,
            restart_always_level_days: None,
        },
        scan: ScanOptions { one_file_system: true, ..Default::default() },
        dump: DumpOptions::default(),
        threads: 1,
        dry_run: false,
        now: None,
        encryption: None,
        decrypt_key: None,
        state_dir: None,
        consistency_check: false,
        freeze: Default::default(),
    };
    let mut taken = Vec::new();
    for (i, ops) in std::iter::once(&Vec::new()).chain(levels.iter()).enumerate() {
        if i > 0 {
            // File times must move past the previous backup's start.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for op in ops {
            apply(&src, op);
        }
        opts.now = None;
        let report = backup::run(&storage, &opts, None).unwrap();
        assert_eq!(report.id.level as usize, i);
        taken.push((report.id.timestamp, manifest(&src, true)));
    }
    for (i, (ts, expected)) in taken.iter().enumerate() {
        let dest = t.path().join(format!("r{i}"));
        let ro = RestoreOptions {
            hostname: "p".into(),
            backup_name: "prop".into(),
            target: dest.clone(),
            at: Some(*ts),
            overwrite: false,
            dry_run: false,
            key: None,
            openssl_md: None,
            consistency_checksum: None,
            threads: 2,
        };
        restore::run(&storage, &ro).unwrap();
        assert_eq!(&manifest(&dest, true), expected, "level {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn every_level_restores_its_tree(
        initial in prop::collection::vec(op(), 5..30),
        levels in prop::collection::vec(prop::collection::vec(op(), 1..8), 1..5),
    ) {
        run_case(&initial, &levels);
    }
}
