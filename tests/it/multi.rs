//! Several storages at once (`[storage:NAME]` sections of `--config`): a local directory, the
//! real S3 (Swift's s3api) and sshd that `scripts/services` starts; the SFTP server stopped
//! half-way is an sshd of the test's own, so that stopping it disturbs no other test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::support::*;
use crate::swift::{noise, var};

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    for k in ["ACCESS_KEY", "SECRET_KEY", "ENDPOINT"] {
        cmd.env_remove(k);
    }
    cmd.args(args).output().expect("run freezer")
}

/// A `[storage:NAME]` section for an S3 server (credentials in the file, as jobs carry them).
fn s3_section(name: &str, endpoint: &str, key: &str, secret: &str, bucket: &str) -> String {
    format!(
        "[storage:{name}]\nstorage = s3\ncontainer = {bucket}\nendpoint = {endpoint}\n\
         access_key = {key}\nsecret_key = {secret}\nstorage_retries = 1\n"
    )
}

fn s3api_section(bucket: &str) -> String {
    let v = |n: &str| var(&format!("FREEZER_TEST_S3_{n}"));
    s3_section("swift-s3", &v("ENDPOINT"), &v("ACCESS_KEY"), &v("SECRET_KEY"), bucket)
}

fn bucket(tag: &str) -> String {
    crate::swift::container(tag).to_lowercase()
}

struct Job {
    t: tempfile::TempDir,
    src: PathBuf,
    ini: PathBuf,
    local: PathBuf,
}

fn job(extra_sections: &str, size: usize) -> Job {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("big"), noise(3, size));
    sample_tree(&src.join("tree"));
    let local = t.path().join("local");
    let ini = t.path().join("job.ini");
    let text = format!(
        "[action]\nbackup_name = m\nhostname = h\nmax_segment_size = 5M\n\n\
         [storage:disk]\nstorage = local\ncontainer = {}\n\n{extra_sections}",
        local.display()
    );
    write(&ini, text);
    Job { t, src, ini, local }
}

impl Job {
    fn backup(&self, extra: &[&str]) -> Output {
        let (s, c) = (self.src.to_str().unwrap(), self.ini.to_str().unwrap());
        run(&[&["backup", s, "--config", c][..], extra].concat())
    }
    fn restore(&self, name: &str, extra: &[&str]) -> (PathBuf, Output) {
        let dest = self.t.path().join(name);
        let (d, c) = (dest.to_str().unwrap(), self.ini.to_str().unwrap());
        (dest.clone(), run(&[&["restore", d, "--config", c][..], extra].concat()))
    }
    /// The backups `freezer list` shows in the local member alone.
    fn local_backups(&self) -> Vec<serde_json::Value> {
        let l = self.local.to_str().unwrap();
        let out = run(&["list", "--json", "-N", "m", "--hostname", "h", "-C", l]);
        assert_code(&out, 0);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn a_backup_lands_in_every_storage_and_restores_past_a_damaged_copy() {
    let b = bucket("multi");
    let remote = format!("{}/{b}", var("FREEZER_TEST_SSH_ROOT"));
    let ssh = ssh_section(
        "sftp",
        &var("FREEZER_TEST_SSH_PORT"),
        &var("FREEZER_TEST_SSH_KNOWN_HOSTS"),
        &remote,
    );
    let j = job(&format!("{}\n{ssh}", s3api_section(&b)), 11 << 20);
    assert_code(&j.backup(&[]), 0);
    assert_eq!(j.local_backups().len(), 1);
    let on_sftp = sh(&format!("find {remote} -name metadata -type f"));
    assert_eq!(on_sftp.lines().count(), 1, "the SFTP copy: {on_sftp}");
    assert_eq!(s3_backups(&b), 1, "the S3 copy");
    // Damage the local copy's second segment: the restore takes it from S3.
    let data = find(&j.local, "data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[(5 << 20) + 1000] ^= 0x55;
    std::fs::write(&data, bytes).unwrap();
    let (dest, out) = j.restore("r", &[]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("[storage:disk]"), "says which copy was bad: {}", stderr(&out));
    assert_eq!(manifest(&dest, false), manifest(&j.src, false));
}

/// How many backups the S3 copy alone lists.
fn s3_backups(bucket: &str) -> usize {
    let v = |n: &str| var(&format!("FREEZER_TEST_S3_{n}"));
    let out = Command::new(bin())
        .env("ACCESS_KEY", v("ACCESS_KEY"))
        .env("SECRET_KEY", v("SECRET_KEY"))
        .env("ENDPOINT", v("ENDPOINT"))
        .args(["list", "--json", "-N", "m", "--hostname", "h", "--storage", "s3", "-C", bucket])
        .output()
        .unwrap();
    assert_code(&out, 0);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap().len()
}

/// The first file named `name` under `root`.
fn find(root: &Path, name: &str) -> PathBuf {
    let out = sh(&format!("find {} -name {name} -type f | head -n 1", root.display()));
    PathBuf::from(out.trim())
}

/// The shared sshd's `[storage:NAME]` section.
fn ssh_section(name: &str, port: &str, known_hosts: &str, dir: &str) -> String {
    format!(
        "[storage:{name}]\nstorage = ssh\ncontainer = {dir}\nssh_host = 127.0.0.1\n\
         ssh_port = {port}\nssh_username = {}\nssh_key = {}\nssh_known_hosts = {known_hosts}\n",
        var("FREEZER_TEST_SSH_USER"),
        var("FREEZER_TEST_SSH_KEY"),
    )
}

/// An sshd of this test's own (the shared one's keys and users) on a free port, so that
/// stopping it disturbs no other test.
struct OwnSshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnSshd {
    fn start() -> OwnSshd {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let state = Path::new(&var("FREEZER_TEST_SERVICES_DIR")).join("sshd");
        let shared = std::fs::read_to_string(state.join("sshd_config")).unwrap();
        let config: String = shared
            .lines()
            .map(|l| match l.split_whitespace().next() {
                Some("Port") => format!("Port {port}"),
                Some("PidFile") => format!("PidFile {}/sshd.pid", dir.path().display()),
                _ => l.to_string(),
            })
            .map(|l| l + "\n")
            .collect();
        write(&dir.path().join("sshd_config"), config);
        let shared_port = var("FREEZER_TEST_SSH_PORT");
        let known = std::fs::read_to_string(var("FREEZER_TEST_SSH_KNOWN_HOSTS")).unwrap();
        let known = known.replace(&format!("]:{shared_port} "), &format!("]:{port} "));
        write(&dir.path().join("known_hosts"), known);
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnSshd { child, port, dir }
    }
    fn section(&self, dir: &str) -> String {
        let known = self.dir.path().join("known_hosts");
        ssh_section("own-ssh", &self.port.to_string(), known.to_str().unwrap(), dir)
    }
    /// Stop the server and every session it forked: the server is gone.
    fn stop(&mut self) {
        kill_tree(self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for OwnSshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGKILL `pid` and its descendants.
fn kill_tree(pid: u32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1));
            let child = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
            if let (Some(c), Some(p)) = (child, ppid)
                && p == all[i].to_string()
                && !all.contains(&c)
            {
                all.push(c);
            }
        }
        i += 1;
    }
    for p in all {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Backs up 40 MiB at 8 MiB/s to local + S3 + SFTP and stops the SFTP server after 2 s.
fn backup_with_a_storage_stopped_half_way(policy: &str) -> (Job, Output, String) {
    let mut own = OwnSshd::start();
    let b = bucket("half");
    let remote = format!("{}/{}", var("FREEZER_TEST_SSH_ROOT"), bucket("half"));
    let sections = format!("{}\n{}", s3api_section(&b), own.section(&remote));
    let j = job(&sections, 40 << 20);
    let (s, c) = (j.src.to_str().unwrap(), j.ini.to_str().unwrap());
    let child = Command::new(bin())
        .args(["backup", s, "--config", c, "--upload-limit", "8M", "--storage-failure", policy])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    own.stop();
    let out = child.wait_with_output().unwrap();
    let left = sh(&format!("find {remote} -name metadata -type f 2>/dev/null"));
    assert!(left.trim().is_empty(), "no visible copy on the SFTP server: {left}");
    (j, out, b)
}

#[test]
fn a_storage_stopped_half_way_fails_the_run_and_no_copy_is_visible() {
    let (j, out, b) = backup_with_a_storage_stopped_half_way("fail");
    assert_code(&out, 1);
    assert!(stderr(&out).contains("[storage:own-ssh]"), "{}", stderr(&out));
    assert!(j.local_backups().is_empty(), "nothing visible in the local copy");
    assert_eq!(s3_backups(&b), 0, "nothing visible in the S3 copy");
}

#[test]
fn with_storage_failure_warn_the_other_copies_stay_and_the_exit_code_is_3() {
    let (j, out, b) = backup_with_a_storage_stopped_half_way("warn");
    assert_code(&out, 3);
    assert!(stderr(&out).contains("missing from [storage:own-ssh]"), "{}", stderr(&out));
    assert_eq!(j.local_backups().len(), 1, "the local copy");
    assert_eq!(s3_backups(&b), 1, "the S3 copy");
    // The restore from the set finds it in the first storage that has it.
    let (dest, out) = j.restore("r", &[]);
    assert_code(&out, 0);
    assert_eq!(manifest(&dest, false), manifest(&j.src, false));
}
