//! Interoperability with chains GNU tar wrote, in both directions.

use std::fs;
use std::path::Path;

use crate::support::*;

const META_GZIP: &str = r#"{"engine_name": "tar", "compression": "gzip", "encryption": false}"#;

/// Store a GNU-made level in the container as freezer-agent would have.
fn store_level(container: &Path, hb: &str, t0: i64, level: u32, ts: i64, data: &Path, snap: &Path) {
    let name = format!("{level}_{ts}");
    let d = container.join("data/tar").join(hb).join(t0.to_string()).join(&name);
    fs::create_dir_all(&d).unwrap();
    fs::copy(data, d.join("data")).unwrap();
    fs::copy(snap, d.join("engine_metadata")).unwrap();
    let m = container.join("metadata/tar").join(hb).join(t0.to_string()).join(&name);
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("metadata"), META_GZIP).unwrap();
}

fn gnu_level(src: &Path, snap: &Path, out: &Path) {
    sh(&format!(
        "tar --create -z --no-check-device --one-file-system --listed-incremental='{}' -C '{}' -f '{}' .",
        snap.display(),
        src.display(),
        out.display()
    ));
}

#[test]
fn freezer_restores_a_gnu_tar_chain_with_deletions_and_renames() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    let snap = t.path().join("snap");
    let container = t.path().join("c");
    let t0 = 1_700_000_000;
    let mut states = Vec::new();
    for level in 0..4u32 {
        match level {
            1 => {
                fs::remove_file(src.join("top.txt")).unwrap();
                fs::rename(src.join("a/b"), src.join("a/renamed-b")).unwrap();
                write(&src.join("n1/x"), "x");
            }
            2 => {
                fs::remove_dir_all(src.join("n1")).unwrap();
                fs::rename(src.join("a"), src.join("aa")).unwrap();
                write(&src.join("aa/renamed-b/c/deep.txt"), "changed");
            }
            3 => {
                fs::remove_file(src.join("zeros.bin")).unwrap();
                write(&src.join("zeros.bin/now-dir"), "dir");
            }
            _ => {}
        }
        let data = t.path().join(format!("l{level}.tgz"));
        gnu_level(&src, &snap, &data);
        store_level(&container, "gh_g", t0, level, t0 + level as i64 * 100, &data, &snap);
        let state = t.path().join(format!("state{level}"));
        copy_tree(&src, &state);
        states.push(state);
        tick_short();
    }
    for (level, state) in states.iter().enumerate() {
        let dest = t.path().join(format!("r{level}"));
        let date = jiff::Timestamp::from_second(t0 + level as i64 * 100).unwrap().to_string();
        freezer_ok([
            "restore",
            dest.to_str().unwrap(),
            "-N",
            "g",
            "--hostname",
            "gh",
            "-C",
            container.to_str().unwrap(),
            "--restore-from-date",
            &date,
        ]);
        assert_eq!(manifest(&dest, true), manifest(state, true), "level {level}");
    }
}

#[test]
fn snapshot_files_continue_across_gnu_tar_and_freezer() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    let container = t.path().join("c");
    let snap = t.path().join("snap");
    let t0 = jiff::Timestamp::now().as_second() - 1000;

    // Level 0 by GNU tar.
    let l0 = t.path().join("l0.tgz");
    gnu_level(&src, &snap, &l0);
    store_level(&container, "x_y", t0, 0, t0, &l0, &snap);
    let s0 = t.path().join("s0");
    copy_tree(&src, &s0);
    tick_short();

    // Level 1 by freezer, continuing GNU's snapshot.
    write(&src.join("a/added-by-level-1"), "1");
    fs::remove_file(src.join("a/file with space")).unwrap();
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "y",
        "--hostname",
        "x",
        "-C",
        container.to_str().unwrap(),
        "--incremental",
        "--compression",
        "gzip",
    ]);
    let s1 = t.path().join("s1");
    copy_tree(&src, &s1);
    let dirs = level_dirs(&container, "x_y");
    assert_eq!(dirs.len(), 2);
    assert!(
        dirs[1].file_name().unwrap().to_str().unwrap().starts_with("1_"),
        "level 1 on GNU's level 0"
    );
    // Our level 1 only carries what changed.
    let listing = sh(&format!("tar -tzf '{}'", dirs[1].join("data").display()));
    assert!(listing.contains("added-by-level-1"), "{listing}");
    assert!(!listing.contains("deep.txt"), "unchanged files are not re-dumped: {listing}");
    tick_short();

    // Level 2 by GNU tar, continuing our snapshot.
    write(&src.join("a/added-by-level-2"), "2");
    fs::remove_file(src.join("a/added-by-level-1")).unwrap();
    let our_snap = t.path().join("our-snap");
    fs::copy(dirs[1].join("engine_metadata"), &our_snap).unwrap();
    let l2 = t.path().join("l2.tgz");
    gnu_level(&src, &our_snap, &l2);
    let gnu_listing = sh(&format!("tar -tzf '{}'", l2.display()));
    assert!(gnu_listing.contains("added-by-level-2"));
    assert!(!gnu_listing.contains("deep.txt"), "GNU tar sees our snapshot: {gnu_listing}");

    // GNU tar restores the mixed chain: its l0, our l1, its l2.
    let out = t.path().join("gnu-restore");
    fs::create_dir(&out).unwrap();
    for data in [l0.clone(), dirs[1].join("data"), l2.clone()] {
        sh(&format!("tar -xz --incremental -f '{}' -C '{}'", data.display(), out.display()));
    }
    assert_eq!(manifest(&out, true), manifest(&src, true));
    let out1 = t.path().join("freezer-restore");
    freezer_ok([
        "restore",
        out1.to_str().unwrap(),
        "-N",
        "y",
        "--hostname",
        "x",
        "-C",
        container.to_str().unwrap(),
    ]);
    assert_eq!(manifest(&out1, true), manifest(&s1, true));
}

fn tick_short() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}
