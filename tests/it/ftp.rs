//! `--storage ftp` and `--storage ftps` end to end, against the real vsftpd that
//! `scripts/service-vsftpd start STATE_DIR` runs (its `FREEZER_TEST_FTP_*` settings; without
//! them these fail). The server runs on this host, so what it stored is checked on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;
use crate::swift::noise;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test FTP server with `scripts/service-vsftpd start \
             /tmp/ftp-state > /tmp/ftp.env; source /tmp/ftp.env` (scripts/services does)"
        )
    })
}

/// A container (a directory under the FTP user's home) no other test uses, removed at the end.
struct Container {
    name: String,
    dir: PathBuf,
}

impl Container {
    fn new(tag: &str) -> Container {
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("it-{tag}-{}-{t}", std::process::id());
        let dir = PathBuf::from(var("FREEZER_TEST_FTP_ROOT")).join(&name);
        Container { name, dir }
    }

    /// Everything stored, at any depth (temporary files included), relative names.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = format!("{prefix}{}", e.file_name().to_string_lossy());
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), &format!("{name}/"), out);
                } else {
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, "", &mut out);
        out.sort();
        out
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The storage options for `kind` (ftp or ftps) and container `c`, without the password.
fn storage_args(kind: &str, c: &Container) -> Vec<String> {
    let mut args: Vec<String> = [
        "--storage",
        kind,
        "--ftp-host",
        &var("FREEZER_TEST_FTP_HOST"),
        "--ftp-port",
        &var("FREEZER_TEST_FTP_PORT"),
        "--ftp-username",
        &var("FREEZER_TEST_FTP_USER"),
        "-C",
        &c.name,
    ]
    .map(String::from)
    .to_vec();
    if kind == "ftps" {
        args.extend(["--ftp-certfile".into(), var("FREEZER_TEST_FTP_CAFILE")]);
    }
    args
}

/// The binary with the password in FREEZER_FTP_PASSWORD.
fn cmd() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("FREEZER_FTP_PASSWORD", var("FREEZER_TEST_FTP_PASSWORD"));
    cmd
}

fn run_ok(args: &[&str], storage: &[String]) -> Output {
    let out = cmd().args(args).args(storage).output().expect("run freezer");
    assert_code(&out, 0);
    out
}

/// Three levels (a change and a deletion between them), listed, verified, each restored by
/// date; a second chain, then a prune that leaves nothing of the first behind.
fn chain(kind: &str) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("base"), noise(1, 200_000));
    sample_tree(&src.join("tree"));
    let c = Container::new(kind);
    let mut storage = storage_args(kind, &c);
    storage.extend(["-N", "chain", "--hostname", "h"].map(String::from));
    let mut states = Vec::new();
    for level in 0..3u64 {
        if level > 0 {
            write(&src.join(format!("new{level}")), noise(10 + level, 50_000));
            std::fs::remove_file(src.join(if level == 1 { "tree/top.txt" } else { "new1" }))
                .unwrap();
        }
        let s = src.to_str().unwrap();
        let out = run_ok(&["backup", s, "--max-level", "2", "--max-segment-size", "16K"], &storage);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("level {level}")));
        states.push(manifest(&src, true));
        tick();
    }
    let listed = run_ok(&["list", "--json"], &storage);
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(items.len(), 3, "{}", String::from_utf8_lossy(&listed.stdout));
    for (level, item) in items.iter().enumerate() {
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("r{level}"));
        run_ok(&["restore", dest.to_str().unwrap(), "--restore-from-date", &date], &storage);
        assert_eq!(manifest(&dest, true), states[level], "level {level}");
    }
    let out = run_ok(&["verify"], &storage);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("damaged"));
    // freezer-agent 19's layout, `data` one file per level; no temporary file anywhere.
    let files = c.files();
    assert_eq!(files.iter().filter(|f| f.ends_with("/data")).count(), 3, "{files:#?}");
    assert!(files.iter().all(|f| !f.contains(".tmp-")), "{files:#?}");
    assert!(files.iter().all(|f| !f.starts_with("locks/")), "the lock is released: {files:#?}");

    // A second chain, then keep only it.
    let first: Vec<String> = files.iter().filter_map(|f| chain_of(f)).collect();
    run_ok(&["backup", src.to_str().unwrap(), "--max-level", "2", "--always-level", "0"], &storage);
    run_ok(&["prune", "--keep-last", "1"], &storage);
    let after = c.files();
    assert!(
        after.iter().all(|f| !first.iter().any(|t0| f.contains(&format!("/{t0}/")))),
        "{after:#?}"
    );
    assert_eq!(after.iter().filter(|f| f.ends_with("/metadata")).count(), 1, "{after:#?}");
    assert!(after.iter().all(|f| !f.contains(".tmp-")), "{after:#?}");
    let dirs = std::fs::read_dir(c.dir.join("data/tar/h_chain")).unwrap().count();
    assert_eq!(dirs, 1, "the pruned chain's directories are gone too");
    let dest = t.path().join("last");
    run_ok(&["restore", dest.to_str().unwrap()], &storage);
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}

/// The `<T0>` of a stored file's chain.
fn chain_of(file: &str) -> Option<String> {
    let rest = file.strip_prefix("data/tar/h_chain/")?;
    rest.split('/').next().map(str::to_string)
}

#[test]
fn a_chain_over_ftps_lists_verifies_restores_and_prunes() {
    chain("ftps");
}

#[test]
fn a_chain_over_plain_ftp_lists_verifies_restores_and_prunes() {
    chain("ftp");
}

#[test]
fn the_password_from_a_config_file_never_shows() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(2, 100_000));
    let c = Container::new("secret");
    let password = var("FREEZER_TEST_FTP_PASSWORD");
    let config = t.path().join("job.ini");
    write(&config, format!("[job]\nstorage = ftps\nftp_password = {password}\n"));
    chmod(&config, 0o600);
    let log = t.path().join("freezer.log");
    let storage = storage_args("ftps", &c);
    for args in [
        vec!["backup", src.to_str().unwrap()],
        vec!["list"],
        vec!["verify"],
        vec!["restore", t.path().join("r").to_str().unwrap()],
    ] {
        let out = Command::new(bin())
            .args(&args)
            .args(["--config", config.to_str().unwrap(), "--log-level", "trace"])
            .args(["--log-file", log.to_str().unwrap()])
            .args(&storage)
            .env_remove("FREEZER_FTP_PASSWORD")
            .output()
            .unwrap();
        assert_code(&out, 0);
        for text in [String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)] {
            assert!(!text.contains(&password), "{args:?}: {text}");
            assert!(!text.contains("--ftp-password"), "no warning for a config file: {text}");
        }
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("FTP"), "the log has FTP lines: {logged}");
    assert!(!logged.contains(&password), "{logged}");

    // On the command line it works, with a warning that says where to put it instead.
    let out = Command::new(bin())
        .args(["list", "--ftp-password", &password])
        .args(&storage)
        .env_remove("FREEZER_FTP_PASSWORD")
        .output()
        .unwrap();
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("ps") && err.contains("--config") && err.contains("FREEZER_FTP_PASSWORD"),
        "{err}"
    );
    assert!(!err.contains(&password), "{err}");

    // A wrong one: a usage error naming the host and user, not the password.
    let out = Command::new(bin())
        .args(["list"])
        .args(&storage)
        .env("FREEZER_FTP_PASSWORD", "wrong-ftp-password")
        .output()
        .unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("user or password is wrong"), "{err}");
    assert!(err.contains(&var("FREEZER_TEST_FTP_USER")) && !err.contains("wrong-ftp-password"));
}

/// A backup of many segments goes straight into one STOR: nothing is spooled to TMPDIR (the
/// agent stores a whole backup there first), and memory stays at a few segments.
#[test]
fn a_backup_of_many_segments_streams_without_local_spool() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("big"), noise(3, 12 << 20));
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let c = Container::new("stream");
    let storage = storage_args("ftps", &c);
    let mut child = cmd()
        .args(["backup", src.to_str().unwrap(), "-N", "s", "--max-segment-size", "1M"])
        .args(["--compression", "none"])
        .args(&storage)
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut peak_kb, mut samples) = (0u64, 0);
    while child.try_wait().unwrap().is_none() {
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "nothing under TMPDIR");
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak_kb = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 0);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    let data: Vec<String> = c.files().into_iter().filter(|f| f.ends_with("/data")).collect();
    assert_eq!(data.len(), 1);
    assert!(std::fs::metadata(c.dir.join(&data[0])).unwrap().len() > 12 << 20, "one file");
    // 12 MiB through 1 MiB segments: far less than the backup in memory.
    assert!(samples == 0 || peak_kb < 64 << 10, "peak RSS {peak_kb} kB");
    let dest = t.path().join("r");
    run_ok(&["restore", dest.to_str().unwrap(), "-N", "s"], &storage);
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}
