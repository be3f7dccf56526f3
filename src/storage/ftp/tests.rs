//! Against the real vsftpd that `scripts/service-vsftpd start STATE_DIR` runs (its output sets
//! the `FREEZER_TEST_FTP_*` variables). Without them these tests fail, naming the command: an
//! FTP test never passes without an FTP server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::storage::suite;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test FTP server with `scripts/service-vsftpd start \
             /tmp/ftp-state > /tmp/ftp.env; source /tmp/ftp.env` (scripts/services does)"
        )
    })
}

/// A directory name under the FTP user's home that no other test (or run) uses.
fn fresh_dir(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("fz-{tag}-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn options(container: &str, tls: bool) -> FtpOptions {
    FtpOptions {
        host: var("FREEZER_TEST_FTP_HOST"),
        port: var("FREEZER_TEST_FTP_PORT").parse().unwrap(),
        user: var("FREEZER_TEST_FTP_USER"),
        password: Secret::new(var("FREEZER_TEST_FTP_PASSWORD")),
        tls: tls.then(|| TlsOptions {
            ca_file: Some(PathBuf::from(var("FREEZER_TEST_FTP_CAFILE"))),
            client_cert: None,
        }),
        container: container.to_string(),
        timeout: Duration::from_secs(10),
        retries: 2,
        concurrency: 3,
    }
}

/// The container as a local directory (the server runs here), removed when dropped.
struct Cleanup(PathBuf);

impl Cleanup {
    fn new(container: &str) -> Cleanup {
        Cleanup(PathBuf::from(var("FREEZER_TEST_FTP_ROOT")).join(container))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every name under `dir`, at any depth, temporary ones included.
fn all_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(all_names(&entry.path()).into_iter().map(|n| format!("{name}/{n}")));
        }
        out.push(name);
    }
    out.sort();
    out
}

fn run_suite(tls: bool) {
    suite::run(&|| {
        let dir = fresh_dir("suite");
        let storage = FtpStorage::new(options(&dir, tls)).unwrap();
        (
            Box::new(Cleanup::new(&dir)) as Box<dyn std::any::Any>,
            Box::new(storage) as Box<dyn StorageWrite>,
        )
    });
}

#[test]
fn suite_over_ftp() {
    run_suite(false);
}

#[test]
fn suite_over_ftps() {
    run_suite(true);
}

#[test]
fn an_untrusted_certificate_is_refused_saying_how_to_trust_it() {
    let mut opts = options("unused", true);
    opts.tls = Some(TlsOptions::default());
    let err = FtpStorage::new(opts).unwrap().connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    let text = err.to_string();
    assert!(text.contains("certificate is not trusted"), "{text}");
    assert!(text.contains("--ftp-certfile"), "{text}");
    assert!(text.contains(&var("FREEZER_TEST_FTP_PORT")), "{text}");
}

#[test]
fn a_wrong_password_names_the_host_and_user_and_not_the_password() {
    for tls in [false, true] {
        let mut opts = options("unused", tls);
        opts.password = Secret::new("not-the-ftp-password");
        let started = Instant::now();
        let err = FtpStorage::new(opts).unwrap().connect().unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Usage, "{text}");
        let at = format!("{}:{}", var("FREEZER_TEST_FTP_HOST"), var("FREEZER_TEST_FTP_PORT"));
        assert!(text.contains(&at), "{text}");
        assert!(text.contains(&format!("as {}", var("FREEZER_TEST_FTP_USER"))), "{text}");
        assert!(text.contains("user or password is wrong"), "{text}");
        assert!(!text.contains("not-the-ftp-password"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(8), "a wrong password is not retried");
    }
}

#[test]
fn the_password_is_not_in_debug_output() {
    let opts = options("unused", false);
    let shown = format!("{opts:?}");
    assert!(!shown.contains(&var("FREEZER_TEST_FTP_PASSWORD")), "{shown}");
}

#[test]
fn ranged_reads_in_the_middle_keep_the_connection_in_step() {
    for tls in [false, true] {
        let dir = fresh_dir("ranges");
        let _c = Cleanup::new(&dir);
        let s = FtpStorage::new(options(&dir, tls)).unwrap();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        s.put("big/data", &data).unwrap();
        for i in 0..12u64 {
            let r = SegmentRef { index: i, offset: i * 300_000 + 17, size: 65_536, sha256: None };
            let at = r.offset as usize;
            assert_eq!(s.read_segment("big/data", &r).unwrap(), &data[at..at + 65_536], "{i}");
            assert_eq!(s.list("big").unwrap(), ["data"], "the control connection answers");
        }
        assert!(s.0.idle.lock().unwrap().len() <= 2, "connections are reused");
        let mut whole = Vec::new();
        s.open("big/data").unwrap().read_to_end(&mut whole).unwrap();
        assert!(whole == data);
    }
}

#[test]
fn other_calls_go_on_while_an_upload_is_open() {
    let dir = fresh_dir("busy");
    let c = Cleanup::new(&dir);
    let s = FtpStorage::new(options(&dir, true)).unwrap();
    let mut up = s.create("data/tar/h_b/1/0_1/data").unwrap();
    up.put_part(0, b"first ").unwrap();
    // What the lock's refresh thread does meanwhile.
    s.put("locks/tar/h_b.lock", b"refreshed").unwrap();
    assert_eq!(s.get("locks/tar/h_b.lock").unwrap().unwrap(), b"refreshed");
    assert_eq!(s.list("data/tar/h_b/1/0_1").unwrap(), Vec::<String>::new(), "not yet visible");
    up.put_part(0, b"second").unwrap();
    up.put_segment(1, b" third".to_vec()).unwrap();
    up.commit().unwrap();
    assert_eq!(s.get("data/tar/h_b/1/0_1/data").unwrap().unwrap(), b"first second third");
    assert!(all_names(&c.0).iter().all(|n| !n.contains(".tmp-")), "{:?}", all_names(&c.0));
}

#[test]
fn only_one_of_many_racing_creates_wins() {
    let dir = fresh_dir("race");
    let _c = Cleanup::new(&dir);
    let winners: Vec<bool> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..6u8)
            .map(|i| {
                let dir = &dir;
                scope.spawn(move || {
                    let s = FtpStorage::new(options(dir, false)).unwrap();
                    s.create_new("locks/tar/h_b.lock", &[b'0' + i]).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
    let s = FtpStorage::new(options(&dir, false)).unwrap();
    let stored = s.get("locks/tar/h_b.lock").unwrap().unwrap();
    let winner = winners.iter().position(|w| *w).unwrap() as u8;
    assert_eq!(stored, [b'0' + winner]);
    assert_eq!(s.list("locks/tar").unwrap(), ["h_b.lock"]);
}

#[test]
fn a_marker_left_by_a_dead_create_is_taken_over() {
    let dir = fresh_dir("stale");
    let c = Cleanup::new(&dir);
    let s = FtpStorage::new(options(&dir, false)).unwrap();
    s.put("locks/tar/other", b"x").unwrap();
    // A run that died after its MKD, before its rename; owned by the FTP user, as it would be.
    s.0.call(&|| "mkd".into(), &mut |conn| {
        let root = conn.home.clone();
        conn.ftp.mkdir(format!("{root}/{dir}/locks/tar/.h_b.lock.tmp-excl"))
    })
    .unwrap();
    let started = Instant::now();
    assert!(s.create_new("locks/tar/h_b.lock", b"mine").unwrap());
    assert!(started.elapsed() >= ops::MARKER_STALE);
    assert_eq!(s.get("locks/tar/h_b.lock").unwrap().unwrap(), b"mine");
    s.delete("locks/tar/h_b.lock").unwrap();
    assert_eq!(all_names(&c.0.join("locks/tar")), ["other"], "the marker goes with the object");
}

/// A TCP proxy to the server whose connections `cut` drops, as a NAT box or a server
/// restart would. Data connections go straight to the server (passive, same address).
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&conns);
        let upstream = format!("{}:{}", var("FREEZER_TEST_FTP_HOST"), var("FREEZER_TEST_FTP_PORT"));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                kept.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, conns }
    }

    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_dropped_control_connection_is_replaced() {
    let proxy = Proxy::start();
    let dir = fresh_dir("cut");
    let _c = Cleanup::new(&dir);
    let mut opts = options(&dir, false);
    opts.port = proxy.port;
    let s = FtpStorage::new(opts).unwrap();
    s.put("a/b", b"one").unwrap();
    proxy.cut();
    assert_eq!(s.get("a/b").unwrap().unwrap(), b"one");
    proxy.cut();
    assert_eq!(s.list("a").unwrap(), ["b"]);
    proxy.cut();
    s.put("a/c", b"two").unwrap();
    proxy.cut();
    let r = SegmentRef { index: 0, offset: 1, size: 2, sha256: None };
    assert_eq!(s.read_segment("a/c", &r).unwrap(), b"wo");
    proxy.cut();
    s.delete("a").unwrap();
    assert!(!s.exists("a").unwrap());
    let _ = std::io::stderr().flush();
}

/// vsftpd (require_ssl_reuse=YES) refuses a data connection that does not resume the control
/// connection's session: many transfers on one connection, none repeated, all succeed.
#[test]
fn ftps_data_connections_resume_the_session_as_vsftpd_requires() {
    let dir = fresh_dir("reuse");
    let _c = Cleanup::new(&dir);
    let mut opts = options(&dir, true);
    opts.retries = 0;
    opts.concurrency = 1;
    let s = FtpStorage::new(opts).unwrap();
    for i in 0..20 {
        let key = format!("k{}", i % 3);
        s.put(&key, format!("v{i}").as_bytes()).unwrap();
        assert_eq!(s.get(&key).unwrap().unwrap(), format!("v{i}").as_bytes());
        assert_eq!(s.list("").unwrap().len(), (i + 1).min(3));
    }
}
