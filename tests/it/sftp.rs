//! `--storage ssh` end to end, against the real OpenSSH server that `scripts/service-sshd`
//! starts (its `FREEZER_TEST_SSH_*` settings; without them these fail). The server runs on this
//! host, so the remote directory is checked on the file system directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the SFTP test server with `scripts/service-sshd start DIR > \
             sshd.env; source sshd.env` (scripts/test does)"
        )
    })
}

/// A remote directory (absolute, under the shared scratch dir) no other test uses.
fn remote_dir(tag: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}/it-{tag}-{}-{t}", var("FREEZER_TEST_SSH_ROOT"), std::process::id())
}

/// The options that reach the test server with the test user's key, and container `c`.
fn ssh_args(c: &str) -> Vec<String> {
    [
        "--storage",
        "ssh",
        "--ssh-host",
        &var("FREEZER_TEST_SSH_HOST"),
        "--ssh-port",
        &var("FREEZER_TEST_SSH_PORT"),
        "--ssh-username",
        &var("FREEZER_TEST_SSH_USER"),
        "--ssh-key",
        &var("FREEZER_TEST_SSH_KEY"),
        "--ssh-known-hosts",
        &var("FREEZER_TEST_SSH_KNOWN_HOSTS"),
        "-C",
        c,
    ]
    .map(str::to_string)
    .to_vec()
}

fn run(args: &[&str], more: &[String]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.env_remove("FREEZER_SSH_PASSWORD");
    cmd.args(args).args(more).output().expect("run freezer")
}

fn run_ok(args: &[&str], more: &[String]) -> Output {
    let out = run(args, more);
    assert_code(&out, 0);
    out
}

/// Every path under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let out = sh(&format!("cd '{}' && find . -mindepth 1 | sort", dir.display()));
    out.lines().map(|l| l.trim_start_matches("./").to_string()).collect()
}

#[test]
fn a_chain_on_sftp_lists_verifies_and_restores_every_level() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("big"), crate::swift::noise(1, 3_000_000));
    sample_tree(&src.join("tree"));
    let c = remote_dir("chain");
    let common = ["-N", "chain", "--hostname", "h"];
    let mut states = Vec::new();
    for level in 0..3u64 {
        if level == 1 {
            write(&src.join("new1"), crate::swift::noise(11, 50_000));
            std::fs::remove_file(src.join("tree/top.txt")).unwrap();
        }
        if level == 2 {
            write(&src.join("tree/a/file with space"), "changed");
            std::fs::remove_file(src.join("new1")).unwrap();
        }
        let s = src.to_str().unwrap();
        let args = [&["backup", s, "--max-level", "3", "-M", "1M"][..], &common].concat();
        let out = run_ok(&args, &ssh_args(&c));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("level {level}")));
        states.push(manifest(&src, true));
        tick();
    }
    let listed = run_ok(&[&["list", "--json"][..], &common].concat(), &ssh_args(&c));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(items.len(), 3, "{}", String::from_utf8_lossy(&listed.stdout));
    for (level, item) in items.iter().enumerate() {
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("r{level}"));
        let d = dest.to_str().unwrap();
        let args = [&["restore", d, "--restore-from-date", &date][..], &common].concat();
        run_ok(&args, &ssh_args(&c));
        assert_eq!(manifest(&dest, true), states[level], "level {level}");
    }
    let out = run_ok(&[&["verify"][..], &common].concat(), &ssh_args(&c));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("damaged"));
    // freezer-agent 19's layout, one data file per level, nothing temporary left.
    let names = files(Path::new(&c));
    let count = |suffix: &str| names.iter().filter(|n| n.ends_with(suffix)).count();
    assert_eq!((count("/data"), count("/engine_metadata"), count("/metadata")), (3, 3, 3));
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:#?}");
}

#[test]
fn prune_removes_a_chain_leaving_nothing_of_it() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), crate::swift::noise(4, 30_000));
    let c = remote_dir("prune");
    let common = ["-N", "p", "--hostname", "h"];
    for i in 0..4 {
        write(&src.join("g"), format!("change {i}"));
        let s = src.to_str().unwrap();
        run_ok(&[&["backup", s, "--max-level", "1"][..], &common].concat(), &ssh_args(&c));
        tick();
    }
    let chains = |c: &str| files(&Path::new(c).join("metadata/tar/h_p"));
    let before: Vec<String> = chains(&c).into_iter().filter(|n| !n.contains('/')).collect();
    assert_eq!(before.len(), 2, "{before:?}");
    run_ok(&[&["prune", "--keep-last", "1"][..], &common].concat(), &ssh_args(&c));
    let after = files(Path::new(&c));
    assert!(after.iter().all(|n| !n.contains(&before[0])), "left behind: {after:#?}");
    assert!(after.iter().any(|n| n.contains(&before[1])), "the newest chain stays");
    let dest = t.path().join("r");
    run_ok(&[&["restore", dest.to_str().unwrap()][..], &common].concat(), &ssh_args(&c));
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}

/// The password user's options: no key, the password only where the test puts it.
fn password_args(c: &str) -> Vec<String> {
    let mut args = ssh_args(c);
    let user = args.iter().position(|a| a == "--ssh-username").unwrap() + 1;
    args[user] = var("FREEZER_TEST_SSH_PASSWORD_USER");
    let key = args.iter().position(|a| a == "--ssh-key").unwrap();
    args.drain(key..key + 2);
    args
}

#[test]
fn a_password_from_a_config_file_works_and_is_never_printed_or_logged() {
    let t = tempfile::tempdir().unwrap();
    let pw = var("FREEZER_TEST_SSH_PASSWORD");
    let src = t.path().join("src");
    write(&src.join("f"), "data");
    let c = remote_dir("password");
    let config = t.path().join("job.ini");
    write(&config, format!("[job]\nbackup_name = pw\nssh_password = {pw}\n"));
    chmod(&config, 0o600);
    let log = t.path().join("log");
    let logged = ["--log-file", log.to_str().unwrap(), "--log-level", "debug"];
    let conf = ["--config", config.to_str().unwrap()];
    let s = src.to_str().unwrap();
    let mut outputs =
        vec![run_ok(&[&["backup", s][..], &conf, &logged].concat(), &password_args(&c))];
    outputs.push(run_ok(&[&["list"][..], &conf, &logged].concat(), &password_args(&c)));
    let owner = sh(&format!("stat -c %U '{c}/data'"));
    assert_eq!(owner.trim(), var("FREEZER_TEST_SSH_PASSWORD_USER"));
    // FREEZER_SSH_PASSWORD works too; on the command line it works with a warning.
    let mut cmd = Command::new(bin());
    cmd.env("FREEZER_SSH_PASSWORD", &pw).args(["list", "-N", "pw"]).args(logged);
    let out = cmd.args(password_args(&c)).output().unwrap();
    assert_code(&out, 0);
    outputs.push(out);
    for out in &outputs {
        assert!(!stderr(out).contains("--ssh-password on the command line"), "{}", stderr(out));
    }
    let out = run_ok(&["list", "-N", "pw", "--ssh-password", &pw], &password_args(&c));
    assert!(
        stderr(&out).contains("--ssh-password on the command line is visible"),
        "{}",
        stderr(&out)
    );
    outputs.push(out);
    let out = run(&["list", "-N", "pw", "--ssh-password", "wrong-one"], &password_args(&c));
    assert_code(&out, 1);
    assert!(stderr(&out).contains("with a password was refused"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong-one"), "{}", stderr(&out));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("stored"), "the log has the debug lines: {log_text}");
    for text in outputs.iter().flat_map(|o| [&o.stdout, &o.stderr]) {
        assert!(!String::from_utf8_lossy(text).contains(&pw));
    }
    assert!(!log_text.contains(&pw), "{log_text}");
}

#[test]
fn an_unknown_host_key_exits_2_naming_its_fingerprint() {
    let t = tempfile::tempdir().unwrap();
    let known = t.path().join("known_hosts");
    let c = remote_dir("unknown");
    std::fs::create_dir_all(&c).unwrap();
    let mut args = ssh_args(&c);
    let at = args.iter().position(|a| a == "--ssh-known-hosts").unwrap() + 1;
    args[at] = known.to_str().unwrap().to_string();
    let out = run(&["list"], &args);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("is not known: it is ssh-ed25519 SHA256:"), "{}", stderr(&out));
    args.push("--ssh-accept-new-host-key".into());
    let out = run_ok(&["list"], &args);
    assert!(stderr(&out).contains("added the SSH host key"), "{}", stderr(&out));
    args.pop();
    run_ok(&["list"], &args);
}

#[test]
fn a_second_backup_fails_while_the_first_holds_the_lock_on_sftp() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("r"), crate::swift::noise(5, 2_000_000));
    let c = remote_dir("lock");
    let s = src.to_str().unwrap();
    let common = ["-N", "lk", "--hostname", "h", "--compression", "none"];
    let slow = [&["backup", s, "--upload-limit", "256K", "-M", "64K"][..], &common].concat();
    let mut first = Command::new(bin())
        .args(&slow)
        .args(ssh_args(&c))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = PathBuf::from(&c).join("locks/tar/h_lk.lock");
    for _ in 0..100 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = run(&[&["backup", s][..], &common].concat(), &ssh_args(&c));
    assert_code(&out, 7);
    assert!(stderr(&out).contains("another freezer"), "{}", stderr(&out));
    assert!(first.wait().unwrap().success());
    assert!(!lock.exists(), "the lock is released");
}

fn agent() -> PathBuf {
    std::env::var_os("FREEZER_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("scripts/agent"))
}

/// freezer-agent 19 with its ssh storage (paramiko) on container `c`, with the PEM RSA key.
fn agent_ok(args: &[&str], c: &str) {
    let out = Command::new(agent())
        .args(args)
        .args(["--storage", "ssh", "--container", c, "--ssh-host", &var("FREEZER_TEST_SSH_HOST")])
        .args(["--ssh-port", &var("FREEZER_TEST_SSH_PORT"), "--ssh-username"])
        .args([var("FREEZER_TEST_SSH_USER"), "--ssh-key".into(), var("FREEZER_TEST_SSH_RSA_KEY")])
        .output()
        .expect("run scripts/agent");
    assert!(
        out.status.success(),
        "freezer-agent {args:?} failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// freezer-agent 19 restores a chain we wrote over SFTP, and we restore one it wrote.
#[test]
fn freezer_agent_and_freezer_restore_each_others_chains_over_sftp() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("big"), crate::swift::noise(7, 300_000));
    sample_tree(&src.join("tree"));
    std::fs::remove_file(src.join("tree/fifo")).unwrap();
    let c = remote_dir("agent");
    let s = src.to_str().unwrap();
    for level in 0..3 {
        if level > 0 {
            write(&src.join(format!("ours{level}")), crate::swift::noise(30 + level, 40_000));
        }
        let args = ["backup", s, "-N", "ours", "--hostname", "ah", "--max-level", "2"];
        run_ok(&[&args[..], &["--compression", "gzip"]].concat(), &ssh_args(&c));
        tick();
    }
    let dest = t.path().join("theirs-of-ours");
    let d = dest.to_str().unwrap();
    let restore = ["--action", "restore", "--backup-name", "ours", "--hostname", "ah"];
    agent_ok(&[&restore[..], &["--restore-abs-path", d]].concat(), &c);
    assert_eq!(manifest(&dest, true), manifest(&src, true));

    let mut states = Vec::new();
    for level in 0..3 {
        if level > 0 {
            write(&src.join(format!("agent{level}")), crate::swift::noise(20 + level, 40_000));
        }
        let backup = ["--action", "backup", "--path-to-backup", s, "--backup-name", "theirs"];
        let opts = ["--hostname", "ah", "--compression", "gzip", "--incremental"];
        agent_ok(&[&backup[..], &opts, &["--max-level", "2"]].concat(), &c);
        states.push(manifest(&src, false));
        tick();
    }
    let common = ["-N", "theirs", "--hostname", "ah"];
    let listed = run_ok(&[&["list", "--json"][..], &common].concat(), &ssh_args(&c));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(items.len(), 3);
    for (level, item) in items.iter().enumerate() {
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("ours-of-theirs{level}"));
        let d = dest.to_str().unwrap();
        run_ok(
            &[&["restore", d, "--restore-from-date", &date][..], &common].concat(),
            &ssh_args(&c),
        );
        assert_eq!(manifest(&dest, false), states[level], "level {level}");
    }
}

#[test]
fn an_interrupted_backup_leaves_no_file_behind() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), crate::swift::noise(6, 1_000_000));
    let c = remote_dir("abort");
    let s = src.to_str().unwrap();
    let args = ["backup", s, "-N", "a", "--upload-limit", "100K", "--compression", "none"];
    let mut child = Command::new(bin()).args(args).args(ssh_args(&c)).spawn().unwrap();
    let mut writing = false;
    for _ in 0..200 {
        if Path::new(&c).exists() && files(Path::new(&c)).iter().any(|n| n.contains("/.data.tmp-"))
        {
            writing = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(writing, "the data file is being written: {:?}", files(Path::new(&c)));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(!child.wait().unwrap().success());
    let left = sh(&format!("find '{c}' -type f"));
    assert_eq!(left, "", "the temp data, the snapshot and the lock are removed");
    let out = run(&["list", "-N", "a"], &ssh_args(&c));
    assert_code(&out, 0);
}
