//! Damage stays local: a damaged metadata object or a truncated data object affects only the
//! backups that need it; the others list, restore and get extended as before.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A local chain of `levels` backups of a changing tree; the tree's state after each.
fn chain(t: &Path, levels: usize) -> (PathBuf, PathBuf, Vec<String>) {
    let src = t.join("src");
    let c = t.join("c");
    write(&src.join("base"), "base\n".repeat(500));
    let mut states = Vec::new();
    for level in 0..levels {
        write(&src.join(format!("f{level}")), format!("level {level}"));
        freezer_ok(backup_args(&src, &c));
        states.push(manifest(&src, false));
        tick();
    }
    (src, c, states)
}

fn backup_args(src: &Path, c: &Path) -> Vec<String> {
    [
        "backup",
        src.to_str().unwrap(),
        "-N",
        "d",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
        "--max-level",
        "5",
    ]
    .map(String::from)
    .to_vec()
}

fn list(c: &Path) -> Vec<serde_json::Value> {
    let out = freezer_ok(["list", "--json", "-C", c.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn restore(c: &Path, dest: &Path, date: Option<&str>) -> std::process::Output {
    let mut args = vec![
        "restore",
        dest.to_str().unwrap(),
        "-N",
        "d",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ];
    if let Some(d) = date {
        args.extend(["--restore-from-date", d]);
    }
    freezer(args)
}

fn date(item: &serde_json::Value) -> String {
    jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string()
}

#[test]
fn a_damaged_metadata_object_affects_only_what_needs_it() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, states) = chain(t.path(), 3);
    let before = list(&c);
    let key = c.join(format!(
        "metadata/tar/h_d/{}/{}/metadata",
        before[1]["chain"],
        before[1]["name"].as_str().unwrap()
    ));
    let text = std::fs::read(&key).unwrap();
    std::fs::write(&key, &text[..text.len() / 2]).unwrap();

    let items = list(&c);
    let status: Vec<&str> = items.iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["ok", "damaged", "unrestorable"], "{items:#?}");
    assert!(items[1]["problem"].as_str().unwrap().contains("metadata"), "{items:#?}");

    // The intact level restores.
    let r0 = t.path().join("r0");
    assert_code(&restore(&c, &r0, Some(&date(&before[0]))), 0);
    assert_eq!(manifest(&r0, false), states[0]);
    // The newest point needs the damaged one: refused, naming it and the way out.
    let out = restore(&c, &t.path().join("r2"), None);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert!(err.contains(&format!("needs h_d/{}", before[1]["name"].as_str().unwrap())), "{err}");
    let fallback =
        format!("newest intact point before it is {}", before[0]["name"].as_str().unwrap());
    assert!(err.contains(&fallback), "{err}");
    assert!(
        !t.path().join("r2").exists()
            || std::fs::read_dir(t.path().join("r2")).unwrap().next().is_none()
    );

    // The next backup goes on, with a warning naming the damaged object.
    write(&src.join("after"), "after the damage");
    let out = freezer(backup_args(&src, &c));
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains(&key.strip_prefix(&c).unwrap().display().to_string()),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("freezer verify"), "{}", stderr(&out));
    let r3 = t.path().join("r3");
    assert_code(&restore(&c, &r3, None), 0);
    assert_eq!(manifest(&r3, false), manifest(&src, false));
    // Prune works around it too.
    freezer_ok([
        "prune",
        "--keep-last",
        "1",
        "-N",
        "d",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ]);
}

#[test]
fn a_backup_never_builds_on_a_truncated_parent() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, _) = chain(t.path(), 2);
    let items = list(&c);
    let data = c.join(format!(
        "data/tar/h_d/{}/{}/data",
        items[1]["chain"],
        items[1]["name"].as_str().unwrap()
    ));
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&data).unwrap().set_len(len - 10).unwrap();
    write(&src.join("next"), "next");
    let out = freezer(backup_args(&src, &c));
    assert_code(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("level 0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(&out);
    assert!(err.contains("is damaged") && err.contains("starting a new chain"), "{err}");
    assert!(err.contains(&format!("{} bytes stored where {len} were written", len - 10)), "{err}");
}

#[test]
fn where_the_data_goes_is_said() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = src.join("backups");
    // A container inside the tree is left out of it.
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "w",
        "-C",
        c.to_str().unwrap(),
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["container"], c.to_str().unwrap());
    assert_eq!(summary["storage"], "local");
    assert_eq!(summary["container_location"], format!("local directory {}", c.display()));
    let out = freezer_ok(["backup", src.to_str().unwrap(), "-N", "w", "-C", c.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("in local directory {}", c.display()))
    );
    let dest = t.path().join("r");
    freezer_ok(["restore", dest.to_str().unwrap(), "-N", "w", "-C", c.to_str().unwrap()]);
    assert!(!dest.join("backups").exists(), "the container was not backed up into itself");

    // A container that does not exist: exit 4 naming it, nothing created.
    let missing = t.path().join("no-such-container");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["list", "-C", m],
        vec!["verify", "-C", m],
        vec!["restore", dest.to_str().unwrap(), "--overwrite", "-C", m],
    ] {
        let out = freezer(&args);
        assert_code(&out, 4);
        assert!(
            stderr(&out).contains(&format!("the container does not exist: local directory {m}")),
            "{}",
            stderr(&out)
        );
    }
    assert!(!missing.exists());
}

#[test]
fn an_unchanged_entry_that_no_level_restored_makes_the_restore_exit_3() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("a"), "a");
    write(&src.join("skipped.log"), "left out of level 0");
    let (s, cs) = (src.to_str().unwrap(), c.to_str().unwrap());
    let backup = |extra: &[&str]| {
        let mut args = vec!["backup", s, "-N", "k", "-C", cs, "--max-level", "3"];
        args.extend_from_slice(extra);
        freezer_ok(args);
        tick();
    };
    // Excluded at every level: excluded, not missing; the restore is complete.
    backup(&["--exclude", "*.log"]);
    backup(&["--exclude", "*.log"]);
    let dest = t.path().join("r1");
    let out = freezer(["restore", dest.to_str().unwrap(), "-N", "k", "-C", cs]);
    assert_code(&out, 0);
    // The exclude dropped at level 2: GNU tar's rules call the file unchanged since level 1,
    // so no level holds it. The restore says so.
    write(&src.join("a"), "a2");
    backup(&[]);
    let dest = t.path().join("r2");
    let out = freezer(["restore", dest.to_str().unwrap(), "-N", "k", "-C", cs]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("./skipped.log: the backup lists it as unchanged"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("the restore is incomplete"), "{}", stderr(&out));
}
