//! Operating it: signals, JSON and progress, logs, limits, verify, the lock.

use std::fs;

use crate::support::*;

#[test]
fn sigterm_cleans_up_and_dies_by_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("head -c 100M /dev/urandom > '{}/big'", src.display()));
    let c = t.path().join("c");
    let mut child = std::process::Command::new(bin())
        .args([
            "backup",
            src.to_str().unwrap(),
            "-N",
            "sig",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--compression",
            "xz",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed().as_secs() < 5, "stops promptly: {:?}", started.elapsed());
    assert_eq!(
        status.signal(),
        Some(15),
        "dies by SIGTERM, as freezer-scheduler expects: {status:?}"
    );
    let left = sh(&format!("find '{}' -type f", c.display()));
    assert!(left.is_empty(), "nothing left in the container: {left}");
}

#[test]
fn list_and_summary_as_json() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "j",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
        "--json",
        "--max-level",
        "2",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
    assert_eq!(v["curr_backup_level"], 0);
    assert_eq!(v["files_new"], 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&src.join("g"), "y");
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "j",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
        "--max-level",
        "2",
    ]);
    let out = freezer_ok(["list", "-C", c.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["level"], 1);
    assert_eq!(items[1]["parent"], items[0]["name"]);
    // --action info is the agent's spelling of the listing.
    let out = freezer_ok(["--action", "info", "-C", c.to_str().unwrap(), "--json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), v);
    // freezerc 1.0's listings.
    let out = freezer_ok(["--list-objects", "-C", c.to_str().unwrap()]);
    let objects = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        objects.lines().count(),
        6,
        "data, engine_metadata, metadata for two backups: {objects}"
    );
    let out = freezer_ok(["-L", "-C", c.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["objects_count"], 6);
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("head -c 4M /dev/urandom > '{}/big'", src.display()));
    let c = t.path().join("c");
    let cmd = format!(
        "'{}' backup '{}' -N p --hostname h -C '{}' --compression xz",
        bin().display(),
        src.display(),
        c.display()
    );
    // Under a pseudo-terminal (script(1) gives the command one).
    let out =
        std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    assert_code(&out, 0);
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        tty.contains("\x1b[K") && tty.contains("backing up:"),
        "status line on a terminal: {tty:?}"
    );
    assert!(tty.contains("backup h_p/0_"), "and the summary");
    // Without one: only the summary.
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "p",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
        "--compression",
        "xz",
    ]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("\x1b[K"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\x1b[K"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn log_levels_and_the_agents_default_log_file() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let agent = t.path().join("freezer-agent");
    std::os::unix::fs::symlink(bin(), &agent).unwrap();
    let home = t.path().join("home");
    let out = std::process::Command::new(&agent)
        .env("HOME", &home)
        .args([
            "--action",
            "backup",
            "-F",
            src.to_str().unwrap(),
            "-N",
            "l",
            "--storage",
            "local",
            "--debug",
        ])
        .arg("--container")
        .arg(&c)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let log = fs::read_to_string(home.join(".freezer/freezer.log")).unwrap();
    assert!(log.contains("DEBUG") && log.contains("next is level 0"), "{log}");
    let quiet_log = t.path().join("q.log");
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "l",
        "-C",
        c.to_str().unwrap(),
        "--log-level",
        "warn",
        "--log-file",
        quiet_log.to_str().unwrap(),
    ]);
    assert!(!fs::read_to_string(&quiet_log).unwrap().contains("INFO"));
}

#[test]
fn upload_limit_slows_the_backup_and_max_priority_is_accepted() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("head -c 3M /dev/urandom > '{}/r'", src.display()));
    let c = t.path().join("c");
    let started = std::time::Instant::now();
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "lim",
        "-C",
        c.to_str().unwrap(),
        "--compression",
        "none",
        "--upload-limit",
        "1M",
        "-M",
        "256K",
        "--max-priority",
    ]);
    let secs = started.elapsed().as_secs_f64();
    // 3 MiB at 1 MiB/s, less the token bucket's first burst: at least ~2 s.
    assert!(secs > 1.8, "took {secs:.2}s");
    let dest = t.path().join("d");
    freezer_ok([
        "restore",
        dest.to_str().unwrap(),
        "-N",
        "lim",
        "-C",
        c.to_str().unwrap(),
        "--download-limit",
        "-1",
    ]);
    let out = freezer([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "lim",
        "-C",
        c.to_str().unwrap(),
        "--upload-limit",
        "fast",
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--upload-limit"), "{}", stderr(&out));
}

#[test]
fn verify_finds_a_flipped_byte_a_missing_segment_and_a_truncation() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("head -c 600K /dev/urandom > '{}/r'", src.display()));
    let c = t.path().join("c");
    let cs = c.to_str().unwrap();
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "v",
        "--hostname",
        "h",
        "-C",
        cs,
        "-M",
        "64K",
        "--incremental",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&src.join("more"), "x");
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "v",
        "--hostname",
        "h",
        "-C",
        cs,
        "-M",
        "64K",
        "--incremental",
    ]);
    let out = freezer_ok(["verify", "-N", "v", "--hostname", "h", "-C", cs]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("ok ").count(), 2);
    let data = level_dirs(&c, "h_v")[0].join("data");
    let good = fs::read(&data).unwrap();
    let mut flipped = good.clone();
    flipped[3 * 65536 + 100] ^= 1;
    let cases = [
        ("flipped", flipped, "segment 3"),
        ("missing segment", good[..5 * 65536].to_vec(), "missing"),
        ("truncated", good[..good.len() - 10].to_vec(), "shorter"),
    ];
    for (what, bytes, says) in cases {
        fs::write(&data, &bytes).unwrap();
        let out = freezer(["verify", "-N", "v", "--hostname", "h", "-C", cs]);
        assert_code(&out, 5);
        let err = stderr(&out);
        assert!(err.contains("h_v/0_") && err.contains(says), "{what}: {err}");
        assert!(
            err.contains("level 1") && err.contains("cannot be restored"),
            "{what}: the level on top is named: {err}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("DAMAGED"));
    }
}

#[test]
fn a_second_run_for_the_same_backup_fails_clearly_while_the_first_holds_the_lock() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("head -c 2M /dev/urandom > '{}/r'", src.display()));
    let c = t.path().join("c");
    let cs = c.to_str().unwrap();
    // A slow first run: 2 MiB at 256 KiB/s.
    let mut first = std::process::Command::new(bin())
        .args([
            "backup",
            src.to_str().unwrap(),
            "-N",
            "lk",
            "--hostname",
            "h",
            "-C",
            cs,
            "--compression",
            "none",
            "--upload-limit",
            "256K",
            "-M",
            "64K",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let out = freezer(["backup", src.to_str().unwrap(), "-N", "lk", "--hostname", "h", "-C", cs]);
    assert_code(&out, 7);
    assert!(
        stderr(&out).contains("another freezer") && stderr(&out).contains(&first.id().to_string()),
        "{}",
        stderr(&out)
    );
    // Waiting works: the second run goes once the first is done.
    freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "lk",
        "--hostname",
        "h",
        "-C",
        cs,
        "--lock-wait",
        "60",
    ]);
    assert!(first.wait().unwrap().success());
    assert_eq!(level_dirs(&c, "h_lk").len(), 2);
    assert!(!c.join("locks/tar/h_lk.lock").exists(), "released");
}

#[test]
fn prune_leaves_a_backup_name_alone_while_its_backup_runs() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(&format!("head -c 2M /dev/urandom > '{}/r'", src.display()));
    let c = t.path().join("c");
    let cs = c.to_str().unwrap();
    let backup = |name: &str| {
        let s = src.to_str().unwrap();
        vec!["backup", s, "-N", name, "--hostname", "h", "-C", cs, "--compression", "none"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for name in ["busy", "idle"] {
        freezer_ok(backup(name));
        tick();
        freezer_ok(backup(name));
    }
    // A slow run of "busy" holds its lock and has segments on disk but no metadata yet.
    let mut slow = std::process::Command::new(bin())
        .args(backup("busy"))
        .args(["--upload-limit", "256K", "-M", "64K"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let out = freezer([
        "prune",
        "--keep-last",
        "1",
        "--all-hosts",
        "--orphans",
        "--orphan-grace-hours",
        "0",
        "-C",
        cs,
    ]);
    assert_code(&out, 7);
    assert!(stderr(&out).contains("not pruning h_busy"), "{}", stderr(&out));
    assert_eq!(level_dirs(&c, "h_idle").len(), 1, "the other name is pruned");
    assert!(slow.wait().unwrap().success(), "the running backup was not disturbed");
    assert_eq!(level_dirs(&c, "h_busy").len(), 3);
}
