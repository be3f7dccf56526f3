//! Backup levels 0..3 with changes between them; restore every point in time with freezer and
//! extract every level with GNU tar; each must equal the tree as it was.

use std::fs;
use std::path::Path;

use crate::support::*;

/// Mutations between levels: changes, deletions, renames, type changes.
fn mutate(src: &Path, step: u32) {
    match step {
        1 => {
            write(&src.join("a/file with space"), "changed at level 1");
            fs::remove_file(src.join("empty")).unwrap();
            write(&src.join("new/dir/n1"), "new at level 1");
            fs::rename(src.join("a/b"), src.join("a/b-renamed")).unwrap();
            chmod(&src.join("top.txt"), 0o640);
        }
        2 => {
            fs::remove_dir_all(src.join("new")).unwrap();
            fs::remove_file(src.join("rel-link")).unwrap();
            std::os::unix::fs::symlink("top.txt", src.join("rel-link")).unwrap();
            fs::remove_dir(src.join("emptydir")).unwrap();
            write(&src.join("emptydir"), "now a file");
            write(&src.join("zeros.bin"), vec![1u8; 5000]);
        }
        _ => {
            fs::remove_file(src.join("emptydir")).unwrap();
            write(&src.join("emptydir/inner"), "a directory again");
            fs::rename(src.join("a"), src.join("moved-a")).unwrap();
            write(&src.join("moved-a/b-renamed/c/deep.txt"), "changed under a renamed dir");
        }
    }
}

fn chain(compression: &str) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let container = t.path().join("container");
    sample_tree(&src);
    let mut states = Vec::new();
    for level in 0..4u32 {
        if level > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            mutate(&src, level);
        }
        let out = freezer_ok([
            "--action",
            "backup",
            "--path-to-backup",
            src.to_str().unwrap(),
            "--backup-name",
            "rt",
            "--hostname",
            "h",
            "--storage",
            "local",
            "--container",
            container.to_str().unwrap(),
            "--incremental",
            "--max-level",
            "5",
            "--compression",
            compression,
        ]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("level {level}")));
        let snap = t.path().join(format!("state{level}"));
        copy_tree(&src, &snap);
        states.push(snap);
    }
    let dirs = level_dirs(&container, "h_rt");
    assert_eq!(dirs.len(), 4, "one chain of four levels");

    // GNU tar extracts each level in order into the tree of that level.
    let gnu_out = t.path().join("gnu");
    fs::create_dir(&gnu_out).unwrap();
    for (level, dir) in dirs.iter().enumerate() {
        let plain = t.path().join(format!("l{level}.tar"));
        decompress_with_cli(&dir.join("data"), compression, &plain);
        sh(&format!("tar --incremental -x -f '{}' -C '{}'", plain.display(), gnu_out.display()));
        assert_eq!(
            manifest(&gnu_out, true),
            manifest(&states[level], true),
            "GNU tar, level {level}"
        );
    }

    // freezer restores each point in time.
    for (level, dir) in dirs.iter().enumerate() {
        let date = level_date(dir);
        let dest = t.path().join(format!("restore{level}"));
        freezer_ok([
            "restore",
            dest.to_str().unwrap(),
            "-N",
            "rt",
            "--hostname",
            "h",
            "-C",
            container.to_str().unwrap(),
            "--restore-from-date",
            &date,
        ]);
        assert_eq!(
            manifest(&dest, true),
            manifest(&states[level], true),
            "freezer restore, level {level}"
        );
    }
}

#[test]
fn zstd_chain_restores_and_gnu_tar_extracts() {
    chain("zstd");
}

#[test]
fn gzip_chain_restores_and_gnu_tar_extracts() {
    chain("gzip");
}

#[test]
fn other_codecs_round_trip() {
    for c in ["bzip2", "xz", "none"] {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        sample_tree(&src);
        let container = t.path().join("c");
        freezer_ok([
            "backup",
            src.to_str().unwrap(),
            "-N",
            "x",
            "-C",
            container.to_str().unwrap(),
            "--compression",
            c,
        ]);
        let dest = t.path().join("dest");
        freezer_ok([
            "restore",
            dest.to_str().unwrap(),
            "-N",
            "x",
            "-C",
            container.to_str().unwrap(),
        ]);
        assert_eq!(manifest(&dest, true), manifest(&src, true), "{c}");
    }
}

#[test]
fn sparse_file_is_stored_without_holes_and_restored_sparse() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"middle", 32 << 20).unwrap();
    drop(f);
    let container = t.path().join("c");
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "s",
        "-C",
        container.to_str().unwrap(),
        "--compression",
        "none",
    ]);
    let data = &level_dirs(&container, &format!("{}_s", hostname()))[0].join("data");
    assert!(fs::metadata(data).unwrap().len() < 1 << 20, "holes are not stored");
    let dest = t.path().join("dest");
    freezer_ok(["restore", dest.to_str().unwrap(), "-N", "s", "-C", container.to_str().unwrap()]);
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(dest.join("sparse")).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(m.blocks() * 512 < 1 << 20, "restored sparse: {} blocks", m.blocks());
    assert_eq!(manifest(&dest, true), manifest(&src, true));
    // GNU tar reads the old-GNU sparse member too.
    let out = t.path().join("gnu");
    fs::create_dir(&out).unwrap();
    sh(&format!("tar -x --incremental -f '{}' -C '{}'", data.display(), out.display()));
    assert_eq!(manifest(&out, true), manifest(&src, true));
}

pub fn hostname() -> String {
    nix::unistd::gethostname().unwrap().to_string_lossy().into_owned()
}

#[test]
fn always_level_restores_the_newest_differential() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    let c = t.path().join("c");
    let mut states = Vec::new();
    for i in 0..5 {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            write(&src.join(format!("added-{i}")), format!("{i}"));
            if i == 4 {
                fs::remove_file(src.join("added-3")).unwrap();
            }
        }
        freezer_ok([
            "backup",
            src.to_str().unwrap(),
            "-N",
            "al",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--always-level",
            "2",
        ]);
        let s = t.path().join(format!("s{i}"));
        copy_tree(&src, &s);
        states.push(s);
    }
    let dirs = level_dirs(&c, "h_al");
    let levels: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_str().unwrap().split('_').next().unwrap().to_string())
        .collect();
    assert_eq!(levels, ["0", "1", "2", "2", "2"]);
    for (i, d) in dirs.iter().enumerate() {
        let date = level_date(d);
        let dest = t.path().join(format!("r{i}"));
        freezer_ok([
            "restore",
            dest.to_str().unwrap(),
            "-N",
            "al",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--restore-from-date",
            &date,
        ]);
        assert_eq!(manifest(&dest, true), manifest(&states[i], true), "backup {i}");
    }
}
