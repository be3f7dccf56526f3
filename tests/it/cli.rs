//! The command line: both spellings, clear errors and documented exit codes.

use std::fs;

use crate::support::*;

#[test]
fn restore_into_non_empty_dir_needs_overwrite() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "data");
    let c = t.path().join("c");
    freezer_ok(["backup", src.to_str().unwrap(), "-N", "n", "-C", c.to_str().unwrap()]);
    let dest = t.path().join("dest");
    write(&dest.join("existing"), "mine");
    let out = freezer(["restore", dest.to_str().unwrap(), "-N", "n", "-C", c.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(dest.join("existing")).unwrap(), "mine");
    freezer_ok([
        "restore",
        dest.to_str().unwrap(),
        "-N",
        "n",
        "-C",
        c.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "data");
}

#[test]
fn unknown_backup_is_exit_4_and_names_it() {
    let t = tempfile::tempdir().unwrap();
    let out = freezer([
        "restore",
        t.path().join("d").to_str().unwrap(),
        "-N",
        "nope",
        "--hostname",
        "h",
        "-C",
        t.path().to_str().unwrap(),
    ]);
    assert_code(&out, 4);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn date_before_first_backup_is_exit_4() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "data");
    let c = t.path().join("c");
    freezer_ok(["backup", src.to_str().unwrap(), "-N", "n", "-C", c.to_str().unwrap()]);
    let out = freezer([
        "restore",
        t.path().join("d").to_str().unwrap(),
        "-N",
        "n",
        "-C",
        c.to_str().unwrap(),
        "--restore-from-date",
        "2001-01-01T00:00:00",
    ]);
    assert_code(&out, 4);
}

#[test]
fn bad_date_and_unsupported_options_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let c = t.path().to_str().unwrap();
    let out =
        freezer(["restore", "/tmp/x", "-N", "n", "-C", c, "--restore-from-date", "yesterday"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("YYYY-MM-DDThh:mm:ss"), "{}", stderr(&out));
    let out = freezer(["--action", "backup", "-F", c, "-N", "n", "-C", c, "--snapshot", "True"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("not supported yet"), "{}", stderr(&out));
    let out =
        freezer(["--action", "backup", "-F", c, "-N", "n", "-C", c, "--encrypt-pass-file", "/k"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--encrypt-pass-file /k"), "{}", stderr(&out));
    let out = freezer(["--action", "backup", "-F", c, "-N", "n", "--storage", "swift"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--storage local"), "{}", stderr(&out));
    let out = freezer(["--action", "restore", "-N", "n", "-C", c]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--restore-abs-path"), "{}", stderr(&out));
}

#[test]
fn agent_spelling_and_subcommands_share_one_store() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "one");
    let c = t.path().join("c");
    freezer_ok([
        "--action",
        "backup",
        "--file-to-backup",
        src.to_str().unwrap(),
        "--backup-name",
        "both",
        "--container",
        c.to_str().unwrap(),
        "--incremental",
        "--max-level",
        "3",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&src.join("g"), "two");
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "both",
        "-C",
        c.to_str().unwrap(),
        "--max-level",
        "3",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("level 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dest = t.path().join("dest");
    freezer_ok([
        "--action",
        "restore",
        "--backup-name",
        "both",
        "--container",
        c.to_str().unwrap(),
        "--restore-abs-path",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(manifest(&dest, true), manifest(&src, true));
    let listing = String::from_utf8_lossy(&freezer_ok(["list", "-C", c.to_str().unwrap()]).stdout)
        .into_owned();
    assert_eq!(listing.lines().count(), 3, "a header and two backups: {listing}");
    assert!(listing.starts_with("BACKUP"), "{listing}");
}

#[test]
fn metadata_out_dash_prints_only_json_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let out = freezer_ok([
        "--action",
        "backup",
        "-F",
        src.to_str().unwrap(),
        "-N",
        "m",
        "-C",
        c.to_str().unwrap(),
        "--metadata-out",
        "-",
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["curr_backup_level"], 0);
    assert_eq!(v["backup_name"], "m");
    // freezer-scheduler logs any stderr of a successful run as a warning.
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn unreadable_file_is_a_warning_with_exit_3() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users and needs root (CI runs as root)"
    );
    // Root reads everything: run the backup as `nobody`, who cannot read `secret`.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("ok"), "fine");
    write(&src.join("secret"), "hidden");
    chmod(&src.join("secret"), 0o000);
    chmod(t.path(), 0o755);
    let c = t.path().join("c");
    fs::create_dir(&c).unwrap();
    sh(&format!("chown nobody '{}' '{}'", c.display(), src.display()));
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(bin())
        .args(["backup", src.to_str().unwrap(), "-N", "u", "-C", c.to_str().unwrap()])
        .output()
        .unwrap();
    assert_code(&out, 3);
    assert!(stderr(&out).contains("secret"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("could not be read"));
}

#[test]
fn dry_run_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x".repeat(10_000));
    let c = t.path().join("c");
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "d",
        "-C",
        c.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("would store"));
    assert!(!c.exists(), "a dry run creates nothing");
}

#[test]
fn called_as_freezer_agent_it_keeps_the_agents_defaults() {
    let t = tempfile::tempdir().unwrap();
    let agent = t.path().join("freezer-agent");
    std::os::unix::fs::symlink(bin(), &agent).unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    // The agent's default storage is swift, not supported yet: said clearly.
    let out = std::process::Command::new(&agent)
        .args(["--action", "backup", "-F", src.to_str().unwrap(), "-N", "a"])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("swift"), "{}", stderr(&out));
    let log = t.path().join("logs/agent.log");
    let out = std::process::Command::new(&agent)
        .args([
            "--action",
            "backup",
            "-F",
            src.to_str().unwrap(),
            "-N",
            "a",
            "--hostname",
            "h",
            "--storage",
            "local",
        ])
        .arg("--container")
        .arg(&c)
        .arg("--log-file")
        .arg(&log)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let data = &level_dirs(&c, "h_a")[0].join("data");
    assert_eq!(&fs::read(data).unwrap()[..2], &[0x1f, 0x8b], "gzip by default");
    assert!(
        fs::read_to_string(&log).unwrap().contains("backup h_a/0_"),
        "the log file has the summary"
    );
}

#[test]
fn a_failed_backup_leaves_nothing_that_looks_like_a_backup() {
    // A container on a 1 MiB tmpfs: the stream does not fit, the write fails mid-way.
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs and needs root (CI runs as root)"
    );
    let t = tempfile::tempdir().unwrap();
    let c = t.path().join("c");
    fs::create_dir(&c).unwrap();
    sh(&format!("mount -t tmpfs -o size=1m tmpfs '{}'", c.display()));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(c.clone());
    let src = t.path().join("src");
    let noise: Vec<u8> =
        (0..4_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    write(&src.join("big"), &noise);
    let out = freezer([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "f",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
        "--compression",
        "none",
        "-M",
        "64K",
    ]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert!(
        !c.join("metadata").exists()
            || sh(&format!("find '{}/metadata' -type f", c.display())).is_empty()
    );
    let leftovers = sh(&format!("find '{}' -type f", c.display()));
    assert!(leftovers.is_empty(), "no partial files: {leftovers}");
    let out = freezer([
        "restore",
        t.path().join("d").to_str().unwrap(),
        "-N",
        "f",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ]);
    assert_code(&out, 4);
}

#[test]
fn oslo_negated_booleans_are_accepted() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    for _ in 0..2 {
        freezer_ok([
            "--action",
            "backup",
            "-F",
            src.to_str().unwrap(),
            "-N",
            "o",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--incremental",
            "--noincremental",
            "--nodry-run",
        ]);
    }
    let dirs = level_dirs(&c, "h_o");
    assert_eq!(dirs.len(), 2);
    assert!(
        dirs.iter().all(|d| d.file_name().unwrap().to_str().unwrap().starts_with("0_")),
        "--noincremental wins: two level 0"
    );
}

#[test]
fn config_file_as_freezer_scheduler_writes_it_and_the_command_line_wins() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let ini = t.path().join("job.ini");
    fs::write(
        &ini,
        format!(
            "[action]\naction = backup\nmode = fs\nstorage = local\ncontainer = {}\npath_to_backup = {}\n\
             backup_name = sched\nhostname = h\ncompression = gzip\nincremental = True\nmax_level = 3\n\
             dry_run = False\nfancy_new_key = 1\nexclude = ['*.log']\nlog_file = \n\n",
            c.display(),
            src.display()
        ),
    )
    .unwrap();
    write(&src.join("skip.log"), "excluded");
    // As freezer-scheduler runs the agent: exactly these four arguments.
    let out = freezer_ok(["--metadata-out", "-", "--config", ini.to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is only the JSON");
    assert_eq!(v["compression"], "gzip");
    assert!(stderr(&out).contains("fancy_new_key"), "unknown keys are warnings: {}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&src.join("g"), "y");
    // The command line overrides the file.
    let out = freezer_ok([
        "--config",
        ini.to_str().unwrap(),
        "--compression",
        "zstd",
        "--metadata-out",
        "-",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["compression"], "zstd");
    assert_eq!(v["curr_backup_level"], 1, "incremental = True from the file");
    let dest = t.path().join("d");
    freezer_ok([
        "restore",
        dest.to_str().unwrap(),
        "-N",
        "sched",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ]);
    assert!(dest.join("g").exists() && !dest.join("skip.log").exists());
    // A bad boolean is a usage error naming the key.
    fs::write(&ini, "[default]\nincremental = maybe\n").unwrap();
    let out = freezer([
        "--config",
        ini.to_str().unwrap(),
        "-F",
        src.to_str().unwrap(),
        "-C",
        c.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("incremental"), "{}", stderr(&out));
}

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
