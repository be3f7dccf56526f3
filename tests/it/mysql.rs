//! `--mode mysql` against real MariaDB servers. Tests that lock (FLUSH TABLES WITH READ LOCK
//! is global) start a `mariadbd` of their own through `scripts/service-mariadb` (a free port,
//! a temporary state dir, the data directory where the test wants it, stopped by PID); the
//! rest use the shared one that `scripts/services` starts (its `FREEZER_TEST_MYSQL_*`).
//!
//! A writer inserts rows one by one (autocommit) throughout each backup and measures how long
//! each insert waited: without a snapshot it waits for the whole backup, with a btrfs snapshot
//! only while the snapshot is created. The restored data directory starts a fresh server that
//! passes CHECK TABLE and holds exactly the rows logged before the recorded binlog position;
//! replaying the binlog from that position (the README's point-in-time recipe) brings back
//! every row the writer committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::btrfs::Btrfs;
use crate::support::*;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test MariaDB with `scripts/service-mariadb start \
             /tmp/mariadb-state > /tmp/mariadb.env; source /tmp/mariadb.env` (scripts/services \
             does)"
        )
    })
}

/// A `mariadbd` of the test's own, stopped on drop.
struct Server {
    state: tempfile::TempDir,
    port: u16,
}

impl Server {
    /// A server whose data directory is `datadir` (made by mariadb-install-db if empty).
    fn start(datadir: &Path) -> Server {
        Server::start_with(datadir, true)
    }

    fn start_with(datadir: &Path, binlog: bool) -> Server {
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let out = Command::new(repo().join("scripts/service-mariadb"))
            .args(["start", state.path().to_str().unwrap()])
            .env("FREEZER_MYSQL_PORT", port.to_string())
            .env("FREEZER_MYSQL_DATADIR", datadir)
            .env("FREEZER_MYSQL_BINLOG", if binlog { "1" } else { "0" })
            .output()
            .unwrap();
        assert!(out.status.success(), "service-mariadb start: {}", stderr(&out));
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(env.lines().all(|l| l.starts_with("export FREEZER_TEST_MYSQL_")), "{env}");
        Server { state, port }
    }

    fn conf(&self) -> PathBuf {
        self.state.path().join("freezer.cnf")
    }

    fn conn(&self) -> mysql::Conn {
        connect("127.0.0.1", self.port, "freezer", "freezerpass-test")
    }

    fn stop(&self) {
        let out = Command::new(repo().join("scripts/service-mariadb"))
            .args(["stop", self.state.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "service-mariadb stop: {}", stderr(&out));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn connect(host: &str, port: u16, user: &str, pass: &str) -> mysql::Conn {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some(host))
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .prefer_socket(false);
    mysql::Conn::new(opts).unwrap()
}

fn setup_table(c: &mut mysql::Conn) {
    c.query_drop(
        "CREATE DATABASE IF NOT EXISTS fz; \
         CREATE TABLE fz.r (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
    )
    .unwrap();
}

/// What the writer saw: rows committed (`v` = 1..=rows), and the longest wait of one insert.
struct Written {
    rows: u64,
    longest: Duration,
}

/// Inserts `v = 1, 2, …` one per autocommit statement until stopped.
fn writer(mut c: mysql::Conn, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Written> {
    std::thread::spawn(move || {
        let mut w = Written { rows: 0, longest: Duration::ZERO };
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            c.query_drop(format!("INSERT INTO fz.r (v) VALUES ({})", w.rows + 1)).unwrap();
            w.longest = w.longest.max(t.elapsed());
            w.rows += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        w
    })
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", stderr(out)))
}

/// A backup of `path` in `--mode mysql` with `extra` options; returns it and its duration.
fn backup(path: &Path, c: &Path, conf: &Path, extra: &[&str]) -> (Output, Duration) {
    let mut args = vec!["backup", path.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "db"];
    args.extend(["--mode", "mysql", "--mysql-conf", conf.to_str().unwrap()]);
    args.extend(["--json", "--compression", "none"]);
    args.extend_from_slice(extra);
    let t = Instant::now();
    let out = freezer(args);
    (out, t.elapsed())
}

/// How many backups the local container `c` lists.
fn stored(c: &Path) -> usize {
    if !c.exists() {
        return 0;
    }
    let out = freezer_ok(["list", "-C", c.to_str().unwrap(), "--json"]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap().len()
}

fn count(c: &mut mysql::Conn) -> (u64, u64) {
    c.query_first::<(u64, Option<u64>), _>("SELECT COUNT(*), MAX(v) FROM fz.r")
        .unwrap()
        .map(|(n, max)| (n, max.unwrap_or(0)))
        .unwrap()
}

#[test]
fn mysql_without_a_snapshot_holds_the_lock_for_the_whole_backup_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(&t.path().join("data"));
    setup_table(&mut server.conn());
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(server.conn(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let c = t.path().join("c");
    let (out, took) = backup(&t.path().join("data"), &c, &server.conf(), &["--upload-limit", "8M"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    // InnoDB may write its files under the lock: such files are reported (exit 3).
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("stay locked (FLUSH TABLES WITH READ LOCK) for the whole backup"),
        "{err}"
    );
    assert!(err.contains("only a snapshot gives a consistent InnoDB copy"), "{err}");
    assert!(took > Duration::from_secs(3), "the backup is slowed down: {took:?}");
    eprintln!("backup {took:?}; the writer's longest wait {:?}", written.longest);
    assert!(
        written.longest.as_secs_f64() > took.as_secs_f64() * 0.7,
        "the writer waited {:?} of the backup's {took:?}",
        written.longest
    );
    let db = &json(&out)["database"];
    assert_eq!(db["mode"], "mysql", "{db}");
    assert!(db["binlog_file"].as_str().unwrap().starts_with("mysql-bin."), "{db}");
    assert!(db["binlog_position"].as_u64().unwrap() > 0, "{db}");
    assert!(db["consistency"].as_str().unwrap().contains("whole backup"), "{db}");
}

#[test]
fn mysql_with_a_btrfs_snapshot_locks_only_for_the_snapshot_and_restores_to_the_position() {
    let fs = Btrfs::new();
    let snapshot = ["--snapshot-type", "btrfs"];
    locks_only_for_the_snapshot(&fs.data(), &snapshot, Duration::from_secs(2));
    assert_eq!(fs.others(), Vec::<String>::new(), "no snapshot left");
}

/// A backup of `root` (holding the data directory `root/db`) with the `snapshot` options,
/// while a writer inserts rows: the writer waits at most `max_wait` (and under a third of
/// the backup), the restored data directory starts, passes CHECK TABLE and holds exactly the
/// rows logged before the recorded binlog position, and replaying the binlog from there
/// brings back the rest.
pub(crate) fn locks_only_for_the_snapshot(root: &Path, snapshot: &[&str], max_wait: Duration) {
    let t = tempfile::tempdir().unwrap();
    let datadir = root.join("db");
    let server = Server::start(&datadir);
    setup_table(&mut server.conn());
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(server.conn(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(500));
    let c = t.path().join("c");
    let extra = [snapshot, &["--upload-limit", "8M"]].concat();
    let (out, took) = backup(root, &c, &server.conf(), &extra);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert_code(&out, 0);
    eprintln!("backup {took:?}; the writer's longest wait {:?}", written.longest);
    assert!(!stderr(&out).contains("whole backup"), "{}", stderr(&out));
    assert!(took > Duration::from_secs(3), "the backup is slowed down: {took:?}");
    assert!(
        written.longest < took / 3 && written.longest < max_wait,
        "the writer waited {:?} during a backup of {took:?}: only the snapshot should block it",
        written.longest
    );
    let db = json(&out)["database"].clone();
    let (file, pos) =
        (db["binlog_file"].as_str().unwrap(), db["binlog_position"].as_u64().unwrap());
    assert!(db["consistency"].as_str().unwrap().contains("snapshot was created"), "{db}");
    // `freezer list` shows it too.
    let list = freezer_ok(["list", "-C", c.to_str().unwrap(), "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["database"], db);
    let table = String::from_utf8(freezer_ok(["list", "-C", c.to_str().unwrap()]).stdout).unwrap();
    assert!(table.contains(&format!("{file}:{pos}")), "{table}");
    server.stop();

    // The rows the binlog holds before the recorded position (the origin's binlog).
    let binlog = datadir.join(file);
    let logged = sh(&format!("mysqlbinlog --stop-position={pos} {}", binlog.display()));
    let before = logged.matches("INSERT INTO fz.r").count() as u64;

    let r = t.path().join("r");
    freezer_ok(["restore", r.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "db"]);
    let restored = Server::start(&r.join("db"));
    let mut conn = restored.conn();
    let check: Vec<(String, String, String, String)> = conn.query("CHECK TABLE fz.r").unwrap();
    assert_eq!(check.last().unwrap().3, "OK", "{check:?}");
    let (n, max) = count(&mut conn);
    assert_eq!((n, max), (before, before), "restored rows vs the binlog before {file}:{pos}");
    assert!(before > 0 && before < written.rows, "{before} of {}", written.rows);
    eprintln!("{before} rows before {file}:{pos}, {} written in all", written.rows);

    // Point-in-time recovery: replay the origin's binlog from the recorded position.
    sh(&format!(
        "mysqlbinlog --start-position={pos} {} | mariadb -h 127.0.0.1 -P {} -u freezer \
         -pfreezerpass-test",
        binlog.display(),
        restored.port
    ));
    assert_eq!(count(&mut conn), (written.rows, written.rows), "every committed row is back");
}

#[test]
fn mysql_lock_timeout_names_the_blocking_query_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(&t.path().join("data"));
    let mut conn = server.conn();
    setup_table(&mut conn);
    conn.query_drop("INSERT INTO fz.r (v) VALUES (1)").unwrap();
    // A write that runs for 20 s: FLUSH TABLES WITH READ LOCK waits for it.
    let mut slow = server.conn();
    let slow_id = slow.connection_id();
    let blocker = std::thread::spawn(move || {
        let _ = slow.query_drop("UPDATE fz.r SET v = SLEEP(20) WHERE id = 1");
    });
    std::thread::sleep(Duration::from_millis(500));
    let c = t.path().join("c");
    let (out, took) =
        backup(&t.path().join("data"), &c, &server.conf(), &["--mysql-lock-timeout", "2"]);
    conn.query_drop(format!("KILL QUERY {slow_id}")).unwrap();
    blocker.join().unwrap();
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(
            "FLUSH TABLES WITH READ LOCK did not get the lock within --mysql-lock-timeout 2s"
        ),
        "{err}"
    );
    assert!(err.contains("UPDATE fz.r SET v = SLEEP(20)"), "names the blocker: {err}");
    assert!(err.contains(&format!("connection {slow_id}")), "{err}");
    assert!(err.contains("--mysql-lock-timeout"), "{err}");
    assert!(took < Duration::from_secs(12), "bounded: {took:?}");
    assert_eq!(stored(&c), 0);
    // Nothing is left locked: a write goes through at once.
    let t0 = Instant::now();
    conn.query_drop("INSERT INTO fz.r (v) VALUES (2)").unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn mysql_conf_problems_fail_fast_and_never_show_the_password() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    // A closed port: fails at once, naming it.
    let closed = t.path().join("closed.cnf");
    let port = free_port();
    write(&closed, format!("host=127.0.0.1\nport={port}\nuser=freezer\npassword='sekrit pw'\n"));
    chmod(&closed, 0o600);
    let log = t.path().join("freezer.log");
    let logging = ["--log-level", "trace", "--log-file", log.to_str().unwrap()];
    let (out, took) = backup(&src, &c, &closed, &logging);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot connect to freezer@127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("sekrit"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A wrong password on the shared server; a file others can read gets a warning.
    let wrong = t.path().join("wrong.cnf");
    write(
        &wrong,
        format!(
            "[default]\nhost = {}\nport = {}\nuser = {}\npassword = \"sekrit-wrong\"\n",
            var("FREEZER_TEST_MYSQL_HOST"),
            var("FREEZER_TEST_MYSQL_PORT"),
            var("FREEZER_TEST_MYSQL_USER")
        ),
    );
    chmod(&wrong, 0o644);
    let (out, _) = backup(&src, &c, &wrong, &logging);
    assert_code(&out, 1);
    let err = stderr(&out);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("Access denied") && !logged.contains("sekrit"), "{logged}");
    assert!(err.contains("can be read by every user") && err.contains("chmod 600"), "{err}");
    assert!(err.contains("Access denied"), "{err}");
    assert!(!err.contains("sekrit"), "{err}");
    // Usage errors: no conf; a bad one.
    let out = freezer(["backup", src.to_str().unwrap(), "-C", c.to_str().unwrap(), "-m", "mysql"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--mode mysql needs --mysql-conf FILE"), "{}", stderr(&out));
    let bad = t.path().join("bad.cnf");
    write(&bad, "[mysqld]\nuser = x\n");
    let (out, _) = backup(&src, &c, &bad, &[]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("names no user"), "{}", stderr(&out));
    assert_eq!(stored(&c), 0, "nothing stored");
}

#[test]
fn mysql_mode_from_an_agent_job_file_records_the_position() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let job = t.path().join("job.ini");
    write(
        &job,
        format!(
            "[job]\naction = backup\nmode = mysql\nmysql_conf = {}\npath_to_backup = {}\n\
             container = {}\nbackup_name = db\nstorage = local\nsnapshot = False\n",
            var("FREEZER_TEST_MYSQL_CONF"),
            src.display(),
            c.display()
        ),
    );
    let out = freezer(["--config", job.to_str().unwrap(), "--json"]);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["mode"], "mysql");
    assert!(v["database"]["binlog_position"].as_u64().is_some(), "{v}");
    assert!(v["database"]["gtid_position"].as_str().is_some(), "{v}");
    assert!(stderr(&out).contains("whole backup"), "{}", stderr(&out));
}

#[test]
fn mysql_over_tls_checks_the_servers_certificate() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let conf = |name: &str, extra: &str| {
        let p = t.path().join(name);
        write(
            &p,
            format!(
                "[default]\nhost = 127.0.0.1\nport = {}\nuser = freezertls\npassword = {}\n{extra}",
                var("FREEZER_TEST_MYSQL_PORT"),
                var("FREEZER_TEST_MYSQL_PASSWORD")
            ),
        );
        chmod(&p, 0o600);
        p
    };
    // freezertls must use TLS (REQUIRE SSL): without it, refused.
    let (out, _) = backup(&src, &c, &conf("plain.cnf", ""), &[]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("Access denied"), "{}", stderr(&out));
    // With the CA that signed the server's certificate (for 127.0.0.1): TLS, checked.
    let ca = var("FREEZER_TEST_MYSQL_CAFILE");
    let (out, _) = backup(&src, &c, &conf("tls.cnf", &format!("ssl-ca = {ca}\n")), &[]);
    assert_code(&out, 0);
    assert!(json(&out)["database"]["binlog_position"].as_u64().is_some());
    // Another CA: the certificate is refused, unless only encryption is asked for.
    let other = t.path().join("other-ca.pem");
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout {0}.key \
         -out {0} 2>/dev/null",
        other.display()
    ));
    let wrong = conf("wrong.cnf", &format!("ssl-ca = {}\n", other.display()));
    let (out, _) = backup(&src, &c, &wrong, &[]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("invalid peer certificate: UnknownIssuer"), "{}", stderr(&out));
    let (out, _) = backup(&src, &c, &conf("req.cnf", "ssl-mode = REQUIRED\n"), &[]);
    assert_code(&out, 0);
}

#[test]
fn mysql_without_the_binlog_privilege_fails_naming_it_and_unlocks() {
    let port: u16 = var("FREEZER_TEST_MYSQL_PORT").parse().unwrap();
    let mut admin = connect("127.0.0.1", port, "freezer", &var("FREEZER_TEST_MYSQL_PASSWORD"));
    admin
        .query_drop(
            "CREATE USER IF NOT EXISTS 'fz_reload'@'127.0.0.1' IDENTIFIED BY 'reload-only'; \
             GRANT RELOAD ON *.* TO 'fz_reload'@'127.0.0.1'; \
             CREATE DATABASE IF NOT EXISTS fz_priv; \
             CREATE TABLE IF NOT EXISTS fz_priv.t (i INT) ENGINE=InnoDB",
        )
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let conf = t.path().join("reload.cnf");
    write(&conf, format!("user=fz_reload\nhost=127.0.0.1\nport={port}\npassword=reload-only\n"));
    chmod(&conf, 0o600);
    let c = t.path().join("c");
    let (out, _) = backup(&src, &c, &conf, &[]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("cannot read the binlog position") && err.contains("BINLOG MONITOR"),
        "{err}"
    );
    assert_eq!(stored(&c), 0);
    let t0 = Instant::now();
    admin.query_drop("INSERT INTO fz_priv.t VALUES (1)").unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "not left locked");
}

#[test]
fn mysql_through_the_socket_a_freezerc_form_conf() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    // freezerc 1.0's form: no section; a socket and no host.
    let conf = t.path().join("sock.cnf");
    let sock = var("FREEZER_TEST_MYSQL_SOCKET");
    let pass = var("FREEZER_TEST_MYSQL_PASSWORD");
    write(
        &conf,
        format!(
            "user = {}\npassword = '{pass}'\nsocket = {sock}\n",
            var("FREEZER_TEST_MYSQL_USER")
        ),
    );
    chmod(&conf, 0o600);
    let (out, _) = backup(&src, &t.path().join("c"), &conf, &[]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains("can be read by every user"), "{err}");
    let db = &json(&out)["database"];
    assert_eq!(db["node"], format!("freezer@{sock}"), "{db}");
    assert!(db["server_version"].as_str().unwrap().contains("MariaDB"), "{db}");
}

#[test]
fn mysql_without_a_binary_log_is_backed_up_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start_with(&t.path().join("data"), false);
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let (out, _) = backup(&src, &t.path().join("c"), &server.conf(), &[]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("writes no binary log (log_bin is OFF)"), "{err}");
    let db = &json(&out)["database"];
    assert!(db.get("binlog_file").is_none() && db.get("binlog_position").is_none(), "{db}");
}

#[test]
fn mysql_sigterm_during_a_locked_backup_unlocks_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(&t.path().join("data"));
    setup_table(&mut server.conn());
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(server.conn(), Arc::clone(&stop));
    let (c, log) = (t.path().join("c"), t.path().join("freezer.log"));
    let data = t.path().join("data");
    let mut child = Command::new(bin())
        .args(["backup", data.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "db"])
        .args(["--mode", "mysql", "--mysql-conf", server.conf().to_str().unwrap()])
        .args(["--compression", "none", "--upload-limit", "1M"])
        .args(["--log-level", "info", "--log-file", log.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    // The writer, blocked by the lock, goes on at once.
    let mut probe = server.conn();
    let t0 = Instant::now();
    probe.query_drop("INSERT INTO fz.r (v) VALUES (0)").unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert!(written.longest > Duration::from_millis(1000), "it was locked: {:?}", written.longest);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("unlocked (UNLOCK TABLES)"), "released by freezer itself: {logged}");
    assert_eq!(stored(&c), 0, "nothing stored");
}
