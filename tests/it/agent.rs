//! Interoperability with the real freezer-agent 19 (`pip install freezer==19.0.0`), run through
//! `scripts/agent` (which starts the stand-in Keystone the agent needs even for local storage).
//! The fixtures are made at test time by `scripts/agent-fixtures`; a missing agent fails.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::*;

fn agent() -> PathBuf {
    std::env::var_os("FREEZER_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("scripts/agent"))
}

/// Agent-made chain (levels 0..2, gzip): `FREEZER_AGENT_FIXTURES` (made by `scripts/test`), or
/// made here once into the cache (`scripts/agent-fixtures` is idempotent and locks).
fn fixtures() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("FREEZER_AGENT_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("FREEZER_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/freezer-dev"));
            cache.join("agent-fixtures-dev")
        });
        let out = Command::new(repo().join("scripts/agent-fixtures")).arg(&dir).output().expect("run scripts/agent-fixtures");
        assert!(
            out.status.success(),
            "scripts/agent-fixtures failed (is freezer-agent 19 installed? run scripts/install-deps)\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The real freezer-agent restores `ourhost_<name>` from local container `c` into `dest`.
fn agent_restore(
    c: &std::path::Path,
    name: &str,
    dest: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) {
    let out = Command::new(agent())
        .args([
            "--action",
            "restore",
            "--backup-name",
            name,
            "--hostname",
            "ourhost",
            "--storage",
            "local",
        ])
        .arg("--container")
        .arg(c)
        .arg("--restore-abs-path")
        .arg(dest)
        .args(extra)
        .output()
        .expect("run scripts/agent");
    assert!(
        out.status.success(),
        "freezer-agent restore failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn treegen_manifest(dir: &std::path::Path) -> String {
    sh(&format!(
        "python3 '{}' manifest '{}'",
        repo().join("scripts/treegen.py").display(),
        dir.display()
    ))
}

#[test]
fn freezer_restores_every_level_of_an_agent_chain() {
    let fx = fixtures();
    let container = fx.join("container");
    let dirs = level_dirs(&container, "fixturehost_fixture");
    assert_eq!(dirs.len(), 3, "agent fixture has levels 0..2");
    let t = tempfile::tempdir().unwrap();
    for (level, d) in dirs.iter().enumerate() {
        let date = level_date(d);
        let dest = t.path().join(format!("r{level}"));
        freezer_ok([
            "--action",
            "restore",
            "--backup-name",
            "fixture",
            "--hostname",
            "fixturehost",
            "--storage",
            "local",
            "--container",
            container.to_str().unwrap(),
            "--restore-abs-path",
            dest.to_str().unwrap(),
            "--restore-from-date",
            &date,
        ]);
        let expected = std::fs::read_to_string(fx.join(format!("manifest.{level}"))).unwrap();
        assert_eq!(treegen_manifest(&dest), expected, "level {level}");
    }
}

#[test]
fn agent_restores_a_gzip_chain_written_by_freezer() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    let c = t.path().join("c");
    for step in 0..3 {
        if step == 1 {
            write(&src.join("a/new"), "new at 1");
            std::fs::remove_file(src.join("top.txt")).unwrap();
        }
        if step == 2 {
            std::fs::rename(src.join("a/b"), src.join("a/b2")).unwrap();
            std::fs::remove_file(src.join("a/new")).unwrap();
        }
        freezer_ok([
            "--action",
            "backup",
            "-F",
            src.to_str().unwrap(),
            "-N",
            "ours",
            "--hostname",
            "ourhost",
            "--storage",
            "local",
            "-C",
            c.to_str().unwrap(),
            "--incremental",
            "--max-level",
            "3",
            "--compression",
            "gzip",
        ]);
        // The agent names levels by whole seconds; keep ours in distinct seconds too.
        tick();
    }
    let dest = t.path().join("agent-restore");
    agent_restore(&c, "ours", &dest, &[]);
    assert_eq!(manifest(&dest, true), manifest(&src, true));
}

#[test]
fn freezer_restores_an_encrypted_agent_chain() {
    let fx = fixtures();
    let container = fx.join("container-encrypted");
    let dirs = level_dirs(&container, "fixturehost_fixture");
    assert_eq!(dirs.len(), 3);
    let t = tempfile::tempdir().unwrap();
    // The agent's pass file is world-readable in the fixture; copy it private.
    let pf = t.path().join("passfile");
    std::fs::copy(fx.join("passfile"), &pf).unwrap();
    for (level, d) in dirs.iter().enumerate() {
        let dest = t.path().join(format!("r{level}"));
        let date = level_date(d);
        freezer_ok([
            "--action",
            "restore",
            "--backup-name",
            "fixture",
            "--hostname",
            "fixturehost",
            "--storage",
            "local",
            "--container",
            container.to_str().unwrap(),
            "--restore-abs-path",
            dest.to_str().unwrap(),
            "--restore-from-date",
            &date,
            "--encrypt-pass-file",
            pf.to_str().unwrap(),
        ]);
        let expected = std::fs::read_to_string(fx.join(format!("manifest.{level}"))).unwrap();
        assert_eq!(treegen_manifest(&dest), expected, "level {level}");
    }
    // Without the key: refused up front, naming the option.
    let out = freezer([
        "--action",
        "restore",
        "--backup-name",
        "fixture",
        "--hostname",
        "fixturehost",
        "--storage",
        "local",
        "--container",
        container.to_str().unwrap(),
        "--restore-abs-path",
        t.path().join("nokey").to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--encrypt-pass-file"));
}

#[test]
fn agent_restores_an_openssl_chain_written_by_freezer() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    sample_tree(&src);
    let c = t.path().join("c");
    let pf = t.path().join("passfile");
    std::fs::write(&pf, "agent compatible secret\n").unwrap();
    for step in 0..3 {
        if step == 1 {
            write(&src.join("a/new"), "new at 1");
        }
        if step == 2 {
            std::fs::remove_file(src.join("a/new")).unwrap();
            write(&src.join("later"), "2");
        }
        freezer_ok([
            "--action",
            "backup",
            "-F",
            src.to_str().unwrap(),
            "-N",
            "enc",
            "--hostname",
            "ourhost",
            "--storage",
            "local",
            "-C",
            c.to_str().unwrap(),
            "--incremental",
            "--max-level",
            "3",
            "--compression",
            "gzip",
            "--encrypt-pass-file",
            pf.to_str().unwrap(),
            "--encryption",
            "openssl-aes-256-cfb",
        ]);
        tick();
    }
    let dest = t.path().join("agent-restore");
    agent_restore(&c, "enc", &dest, &[std::ffi::OsStr::new("--encrypt-pass-file"), pf.as_os_str()]);
    assert_eq!(manifest(&dest, true), manifest(&src, true));
}

/// Every option the real freezer-agent 19 lists in its `--help` is known to freezer: it works,
/// or it is refused by name as not supported yet, never as an unknown argument.
#[test]
fn every_freezer_agent_option_is_known() {
    let out = Command::new(agent()).arg("--help").output().expect("run scripts/agent --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let mut options = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("--") else { continue };
        let mut words = rest.split_whitespace();
        let name = words.next().unwrap_or_default().trim_end_matches(',');
        let takes_value =
            words.next().is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        if !["help", "version"].contains(&name) {
            options.push((name.to_string(), takes_value));
        }
    }
    assert!(options.len() > 90, "parsed {} options from the agent's help", options.len());
    let t = tempfile::tempdir().unwrap();
    let c = t.path().join("c");
    let mut refused = Vec::new();
    for (name, takes_value) in &options {
        let mut cmd = Command::new(bin());
        cmd.args(["--action", "info", "-C"]).arg(&c).arg(format!("--{name}"));
        if *takes_value {
            cmd.arg("1");
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("unexpected argument") && !err.contains("unrecognized"),
            "--{name}: {err}"
        );
        if err.contains("not supported yet") {
            assert_eq!(out.status.code(), Some(2), "--{name}: {err}");
            assert!(
                err.contains(&format!("--{}", name.replace('_', "-")))
                    || err.contains(&format!("--{name}")),
                "names it: {err}"
            );
            refused.push(name.clone());
        }
    }
    eprintln!("{} agent options; not supported yet: {refused:?}", options.len());
}

/// `--consistency-check` records freezer-agent's checksum: the agent's own `CheckSum` code
/// (walking in sorted order, as freezer does) gives the same value; `--consistency-checksum`
/// checks a restore against it.
#[test]
fn consistency_checksum_is_the_agents() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("a/one"), "first\n");
    write(&src.join("a/b/two"), vec![7u8; 5000]);
    write(&src.join("ünï code"), "x");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::os::unix::fs::symlink("a/one", src.join("link-to-file")).unwrap();
    let c = t.path().join("c");
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "cc",
        "-C",
        c.to_str().unwrap(),
        "--consistency-check",
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = summary["consistency_checksum"].as_str().unwrap().to_string();

    let python = std::path::Path::new(
        &sh(&format!("'{}' --venv-path", repo().join("scripts/install-deps").display()))
            .trim()
            .to_string(),
    )
    .join("bin/python");
    let script = "import os, sys\nreal = os.walk\ndef walk(top, topdown=True, onerror=None, followlinks=False):\n    for root, dirs, files in real(top, topdown, onerror, followlinks):\n        dirs.sort(); files.sort()\n        yield root, dirs, files\nos.walk = walk\nfrom freezer.utils.checksum import CheckSum\nprint(CheckSum(sys.argv[1], ignorelinks=True).compute())\n";
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&src)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ours, "the agent's algorithm agrees");

    let dest = t.path().join("r");
    let restore = |extra: &str| {
        let d = dest.to_str().unwrap();
        freezer([
            "restore",
            d,
            "--overwrite",
            "-N",
            "cc",
            "-C",
            c.to_str().unwrap(),
            "--consistency-checksum",
            extra,
        ])
    };
    assert_code(&restore(&ours), 0);
    let mut wrong = ours.clone();
    wrong.replace_range(0..1, if ours.starts_with('0') { "1" } else { "0" });
    let out = restore(&wrong);
    assert_code(&out, 5);
    assert!(stderr(&out).contains("Backup Consistency Check failed"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing on stdout");
}
