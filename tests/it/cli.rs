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
    assert!(stderr(&out).contains("which is not an LVM logical volume"), "{}", stderr(&out));
    let out =
        freezer(["--action", "backup", "-F", c, "-N", "n", "-C", c, "--encrypt-pass-file", "/k"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--encrypt-pass-file /k"), "{}", stderr(&out));
    let out = freezer(["--action", "backup", "-F", c, "-N", "n", "--storage", "s3"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no S3 access key: give --access-key"), "{}", stderr(&out));
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
    // The agent's default storage is swift: without credentials that is said clearly.
    let out = std::process::Command::new(&agent)
        .args(["--action", "backup", "-F", src.to_str().unwrap(), "-N", "a"])
        .env_remove("OS_AUTH_URL")
        .env_remove("ST_AUTH")
        .env_remove("OS_CLOUD")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no Swift credentials: set OS_AUTH_URL"), "{}", stderr(&out));
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
fn long_options_may_be_shortened_to_a_unique_prefix() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let (s, cs) = (src.to_str().unwrap(), c.to_str().unwrap());
    // freezer-agent job lines written for argparse use shortened options.
    let out = freezer_ok([
        "--action",
        "backup",
        "--path-to-b",
        s,
        "--compress",
        "gzip",
        "-C",
        cs,
        "-N",
        "p",
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["compression"], "gzip");
    freezer_ok(["backup", s, "--max-lev", "2", "-C", cs, "-N", "p"]);
    let out = freezer(["--action", "backup", "--path-to-backup", s, "--re", "3", "-C", cs]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("--re is ambiguous")
            && err.contains("--remove-older-than")
            && err.contains("--restore-abs-path"),
        "{err}"
    );
}

#[test]
fn freezerc_and_agent_spellings_that_change_nothing_or_mean_off() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let logs = t.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (s, cs) = (src.to_str().unwrap(), c.to_str().unwrap());
    // freezerc 1.0.8's -U, --no-incremental; the agent's --snapshot False, --sync, -e tar,
    // --max-seg-size, --timeout, --log-dir, --nodebug, --backup-id.
    freezer_ok([
        "--action",
        "backup",
        "--file-to-backup",
        s,
        "-C",
        cs,
        "-N",
        "old",
        "-U",
        "--no-incremental",
        "--snapshot",
        "False",
        "--sync",
        "-e",
        "tar",
        "--max-seg-size",
        "1M",
        "--timeout",
        "30",
        "--log-dir",
        logs.to_str().unwrap(),
        "--nodebug",
        "--backup-id",
        "0123abcd",
    ]);
    assert!(logs.join("freezer.log").exists(), "--log-dir");
    // freezerc 1.0.8's options it never implemented, and ours not yet: refused by name.
    for (opt, what) in [("--get-object", "never implemented"), ("--sql-server-conf", "SQL Server")]
    {
        let out = freezer(["--action", "backup", "--file-to-backup", s, "-C", cs, opt, "x"]);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(opt) && err.contains(what) && err.contains("not supported yet"),
            "{err}"
        );
    }
    // The same in a job file.
    let ini = t.path().join("job.ini");
    write(
        &ini,
        format!(
            "[job]\naction = backup\npath_to_backup = {s}\ncontainer = {cs}\nsql_server_conf = /etc/x.ini\n"
        ),
    );
    let out = freezer(["--config", ini.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains(
            "'sql_server_conf' (--sql-server-conf, the SQL Server mode) is not supported yet"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn called_as_freezerc_it_takes_freezerc_defaults() {
    let t = tempfile::tempdir().unwrap();
    let freezerc = t.path().join("freezerc");
    std::os::unix::fs::symlink(bin(), &freezerc).unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    // Swift by default, with freezerc 1.0's option names.
    let out = std::process::Command::new(&freezerc)
        .args(["--file-to-backup", src.to_str().unwrap(), "-N", "old", "-C", "freezer_backups"])
        .env_remove("OS_AUTH_URL")
        .env_remove("ST_AUTH")
        .env_remove("OS_CLOUD")
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no Swift credentials"), "{}", stderr(&out));
    // gzip by default.
    let c = t.path().join("c");
    let out = std::process::Command::new(&freezerc)
        .args(["--file-to-backup", src.to_str().unwrap(), "-N", "old", "--storage", "local", "-C"])
        .arg(&c)
        .args(["--json", "--log-file"])
        .arg(t.path().join("log"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["compression"], "gzip");
}

#[test]
fn a_relative_container_is_warned_about() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let out = std::process::Command::new(bin())
        .args(["backup", src.to_str().unwrap(), "-C", "freezer_backups"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_code(&out, 0);
    let err = stderr(&out);
    let abs = t.path().join("freezer_backups");
    assert!(err.contains(&format!("it is the local directory {}", abs.display())), "{err}");
    assert!(err.contains("--storage swift if it is a Swift container"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("in local directory {}", abs.display()))
    );
}
