//! Against the real OpenSSH server that `scripts/service-sshd start STATE_DIR` runs (it prints
//! the `FREEZER_TEST_SSH_*` settings). Without them these tests fail, naming the command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::error::ErrorKind;
use crate::storage::suite;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the SFTP test server with `scripts/service-sshd start DIR > \
             sshd.env; source sshd.env` (scripts/test does)"
        )
    })
}

/// A remote directory (under the shared scratch directory) no other test uses.
fn fresh_dir(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{}/{tag}-{}-{t}-{n}", var("FREEZER_TEST_SSH_ROOT"), std::process::id())
}

/// Key login as the test user, with the server's known_hosts.
fn key_opts(container: &str) -> SftpOptions {
    SftpOptions {
        host: var("FREEZER_TEST_SSH_HOST"),
        port: var("FREEZER_TEST_SSH_PORT").parse().unwrap(),
        username: var("FREEZER_TEST_SSH_USER"),
        auth: SftpAuth::Keys(vec![PathBuf::from(var("FREEZER_TEST_SSH_KEY"))]),
        known_hosts: PathBuf::from(var("FREEZER_TEST_SSH_KNOWN_HOSTS")),
        accept_new_host_key: false,
        container: container.to_string(),
        parallel_reads: 3,
        timeout: Duration::from_secs(20),
    }
}

fn password_opts(container: &str, password: &str) -> SftpOptions {
    SftpOptions {
        username: var("FREEZER_TEST_SSH_PASSWORD_USER"),
        auth: SftpAuth::Password(Secret::new(password)),
        ..key_opts(container)
    }
}

/// Removes the container when dropped.
struct Cleanup(SftpStorage);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let root = self.0.root().to_string();
        let _ = self.0.0.remove_tree(&root);
    }
}

fn run_suite(make: &dyn Fn(SftpStorage) -> SftpStorage) {
    suite::run(&|| {
        let s = make(SftpStorage::connect(&key_opts(&fresh_dir("suite"))).unwrap());
        (
            Box::new(Cleanup(s.clone())) as Box<dyn std::any::Any>,
            Box::new(s) as Box<dyn StorageWrite>,
        )
    });
}

#[test]
fn suite_with_key_login() {
    run_suite(&|s| s);
}

/// A server without posix-rename and hardlink: replacing in two steps, create_new by O_EXCL.
#[test]
fn suite_without_openssh_extensions() {
    run_suite(&|s| s.without_extensions());
}

#[test]
fn temp_names_stay_hidden_and_uploads_leave_nothing_when_aborted() {
    let s = SftpStorage::connect(&key_opts(&fresh_dir("temp"))).unwrap();
    let _c = Cleanup(s.clone());
    let mut up = s.create("d/0_1/data").unwrap();
    up.put_part(0, &vec![1u8; 700_000]).unwrap();
    up.put_part(0, b"tail").unwrap();
    assert_eq!(s.list("d/0_1").unwrap(), Vec::<String>::new(), "the temp file is not listed");
    assert!(!s.exists("d").unwrap());
    let local = Path::new(s.root()).join("d/0_1");
    let names: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.len() == 1 && is_temp_name(&names[0]), "{names:?}");
    up.abort().unwrap();
    assert!(!local.exists(), "abort removes the temp file and its empty directory");
}

#[test]
fn password_login_and_a_container_relative_to_the_login_directory() {
    let pw = var("FREEZER_TEST_SSH_PASSWORD");
    let rel = format!("rel-{}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    let s = SftpStorage::connect(&password_opts(&format!("{rel}/c"), &pw)).unwrap();
    let _c = Cleanup(s.clone());
    assert!(s.root().starts_with('/') && s.root().ends_with(&format!("/{rel}/c")), "{}", s.root());
    assert!(!s.container_exists().unwrap());
    s.put("metadata/x", b"1").unwrap();
    assert!(s.container_exists().unwrap());
    assert_eq!(std::fs::read(Path::new(s.root()).join("metadata/x")).unwrap(), b"1");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(s.root()).unwrap());
    assert_ne!(owner, 0, "written by the password user");
    assert!(!format!("{:?}", password_opts("c", &pw)).contains(&pw), "Debug hides the password");
}

#[test]
fn wrong_password_key_or_user_is_a_clear_login_error() {
    let err = SftpStorage::connect(&password_opts("c", "not-the-password")).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("with a password was refused"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
    let t = tempfile::tempdir().unwrap();
    let other = t.path().join("other_key");
    keygen(&other);
    let opts = SftpOptions { auth: SftpAuth::Keys(vec![other.clone()]), ..key_opts("c") };
    let msg = SftpStorage::connect(&opts).err().unwrap().to_string();
    assert!(msg.contains(&format!("with the key {} was refused", other.display())), "{msg}");
    assert!(msg.contains("authorized_keys"), "{msg}");
    let missing = t.path().join("none");
    let opts = SftpOptions { auth: SftpAuth::Keys(vec![missing]), ..key_opts("c") };
    let err = SftpStorage::connect(&opts).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("does not exist; give --ssh-key"), "{err}");
}

#[test]
fn the_pem_rsa_key_logs_in_too() {
    let opts = SftpOptions {
        auth: SftpAuth::Keys(vec![
            PathBuf::from("/nonexistent/id_rsa"),
            PathBuf::from(var("FREEZER_TEST_SSH_RSA_KEY")),
        ]),
        ..key_opts(&fresh_dir("rsa"))
    };
    let s = SftpStorage::connect(&opts).unwrap();
    assert!(s.list("").unwrap().is_empty());
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The SHA256 fingerprint of the server's ed25519 key, as OpenSSH prints it.
fn server_fingerprint() -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-f", &var("FREEZER_TEST_SSH_KNOWN_HOSTS")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.ends_with("(ED25519)")).expect("an ed25519 host key");
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn an_unknown_host_key_is_refused_with_its_fingerprint() {
    let t = tempfile::tempdir().unwrap();
    let known = t.path().join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let opts = SftpOptions { known_hosts: known.clone(), ..key_opts("c") };
    let err = SftpStorage::connect(&opts).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Usage);
    let msg = err.to_string();
    let fp = server_fingerprint();
    assert!(msg.contains(&format!("ssh-ed25519 {fp}")), "{msg}\nexpected {fp}");
    assert!(msg.contains("--ssh-accept-new-host-key"), "{msg}");
    let port = var("FREEZER_TEST_SSH_PORT");
    let scan =
        format!("ssh-keyscan -p {port} {} >> {}", var("FREEZER_TEST_SSH_HOST"), known.display());
    assert!(msg.contains(&scan), "{msg}");
    assert_eq!(std::fs::read_to_string(&known).unwrap(), "", "nothing added");
}

#[test]
fn accept_new_adds_the_key_and_the_next_login_needs_no_flag() {
    let t = tempfile::tempdir().unwrap();
    let known = t.path().join("ssh/known_hosts");
    let opts =
        SftpOptions { known_hosts: known.clone(), accept_new_host_key: true, ..key_opts("c") };
    SftpStorage::connect(&opts).unwrap();
    let text = std::fs::read_to_string(&known).unwrap();
    let entry =
        format!("[{}]:{} ssh-ed25519 ", var("FREEZER_TEST_SSH_HOST"), var("FREEZER_TEST_SSH_PORT"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() == 1 && lines[0].starts_with(&entry), "{text}");
    let opts = SftpOptions { accept_new_host_key: false, ..opts };
    SftpStorage::connect(&opts).unwrap();
    assert_eq!(std::fs::read_to_string(&known).unwrap(), text, "the second login adds nothing");
}

#[test]
fn hashed_known_hosts_entries_are_understood() {
    let t = tempfile::tempdir().unwrap();
    let known = t.path().join("known_hosts");
    std::fs::copy(var("FREEZER_TEST_SSH_KNOWN_HOSTS"), &known).unwrap();
    let out = Command::new("ssh-keygen").arg("-H").arg("-f").arg(&known).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read_to_string(&known).unwrap().starts_with("|1|"));
    SftpStorage::connect(&SftpOptions { known_hosts: known, ..key_opts("c") }).unwrap();
}

#[test]
fn a_changed_host_key_is_refused_even_with_accept_new() {
    let t = tempfile::tempdir().unwrap();
    let other = t.path().join("other");
    keygen(&other);
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let key = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let host = format!("[{}]:{}", var("FREEZER_TEST_SSH_HOST"), var("FREEZER_TEST_SSH_PORT"));
    let known = t.path().join("known_hosts");
    let text = format!("# a comment\n{host} {key}\n");
    std::fs::write(&known, &text).unwrap();
    let opts =
        SftpOptions { known_hosts: known.clone(), accept_new_host_key: true, ..key_opts("c") };
    let err = SftpStorage::connect(&opts).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Usage);
    let msg = err.to_string();
    assert!(msg.contains("has CHANGED"), "{msg}");
    assert!(msg.contains(&server_fingerprint()), "{msg}");
    assert!(msg.contains(&format!("line 1 of {}", known.display())), "{msg}");
    assert!(msg.contains(&format!("ssh-keygen -R '{host}'")), "{msg}");
    assert_eq!(std::fs::read_to_string(&known).unwrap(), text, "nothing added");
}

#[test]
fn no_server_is_a_clear_connection_error() {
    let opts = SftpOptions { port: 1, ..key_opts("c") };
    let err = SftpStorage::connect(&opts).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("cannot connect to the SSH server") && msg.contains(":1 "), "{msg}");
}
