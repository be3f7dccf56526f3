//! `--mode mongo` against SecantusDB, the MongoDB-wire server that runs here (no real `mongod`
//! is obtainable): Python over the real WiredTiger engine, answering `hello` as the primary of
//! a one-node replica set, or as a standalone (`--standalone`). `scripts/services` starts the
//! shared primary (`FREEZER_TEST_MONGO_*`); tests that need a standalone or their data on a
//! btrfs loop device start one of their own through `scripts/service-secantus`. The secondary
//! decision is tested in `src/mode/mongo.rs` against `hello` replies (SecantusDB's recorded,
//! a secondary's from the MongoDB manual).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};

use crate::btrfs::Btrfs;
use crate::support::*;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the test MongoDB-wire server with `scripts/service-secantus \
             start /tmp/secantus-state > /tmp/secantus.env; source /tmp/secantus.env` \
             (scripts/services does)"
        )
    })
}

/// Which server a test starts.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// SecantusDB with --standalone.
    Standalone,
    /// NX-27017: accepts fsyncLock (a no-op) and logs every command.
    Nx,
    /// SecantusDB with --standalone, TLS only (`ca.pem` in its state dir).
    Tls,
    /// SecantusDB with --standalone and --auth (user freezer, password mongopass-test).
    Auth,
}

/// A server of the test's own (`scripts/service-secantus`), stopped on drop.
struct Server {
    state: tempfile::TempDir,
    port: u16,
}

impl Server {
    fn start(data: &Path, kind: Kind) -> Server {
        let state = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = Command::new(repo().join("scripts/service-secantus"))
            .args(["start", state.path().to_str().unwrap()])
            .env("FREEZER_MONGO_PORT", port.to_string())
            .env("FREEZER_MONGO_DATA", data)
            .env("FREEZER_MONGO_STANDALONE", "1")
            .env("FREEZER_MONGO_SERVER", if kind == Kind::Nx { "nx-27017" } else { "secantus" })
            .env("FREEZER_MONGO_TLS", if kind == Kind::Tls { "1" } else { "0" })
            .env("FREEZER_MONGO_AUTH", if kind == Kind::Auth { "1" } else { "0" })
            .output()
            .unwrap();
        assert!(out.status.success(), "service-secantus start: {}", stderr(&out));
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(env.lines().all(|l| l.starts_with("export FREEZER_TEST_MONGO_")), "{env}");
        Server { state, port }
    }

    fn collection(&self) -> mongodb::sync::Collection<Document> {
        collection(&format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port))
    }

    fn stop(&self) {
        let out = Command::new(repo().join("scripts/service-secantus"))
            .args(["stop", self.state.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "service-secantus stop: {}", stderr(&out));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn collection(uri: &str) -> mongodb::sync::Collection<Document> {
    mongodb::sync::Client::with_uri_str(uri).unwrap().database("fz").collection("docs")
}

fn backup(path: &Path, c: &Path, extra: &[&str]) -> (Output, Duration) {
    let mut args = vec!["backup", path.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "m"];
    args.extend(["--mode", "mongo", "--json", "--compression", "none"]);
    args.extend_from_slice(extra);
    let t = Instant::now();
    let out = freezer(args);
    (out, t.elapsed())
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", stderr(out)))
}

#[test]
fn mongo_primary_is_backed_up_and_its_topology_recorded() {
    let t = tempfile::tempdir().unwrap();
    let c = t.path().join("c");
    let data = PathBuf::from(var("FREEZER_TEST_MONGO_DATA"));
    let port = var("FREEZER_TEST_MONGO_PORT");
    let (out, _) = backup(
        &data,
        &c,
        &[
            "--mongo-host",
            &var("FREEZER_TEST_MONGO_HOST"),
            "--mongo-port",
            &port,
            "--mongo-fsync-lock",
        ],
    );
    // The server writes its files while they are read (no snapshot): 0, or 3 if one changed.
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("without --snapshot") && err.contains("not consistent"), "{err}");
    assert!(
        err.contains("does not take fsyncLock") && err.contains("relying on its journal"),
        "{err}"
    );
    let db = &json(&out)["database"];
    assert_eq!(db["mode"], "mongo");
    assert_eq!(db["topology"], "primary", "{db}");
    assert_eq!(db["replica_set"], "secantus", "{db}");
    assert_eq!(db["node"], format!("127.0.0.1:{port}"), "{db}");
    let table = String::from_utf8(freezer_ok(["list", "-C", c.to_str().unwrap()]).stdout).unwrap();
    assert!(table.contains("primary of secantus"), "{table}");
}

#[test]
fn mongo_standalone_on_a_btrfs_snapshot_restores_every_journaled_write_before_it() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    let data = fs.data().join("mongo");
    let server = Server::start(&data, Kind::Standalone);
    // Acknowledged once in the journal (j: true): what a crash-consistent copy must hold.
    let journaled = mongodb::options::WriteConcern::builder().journal(true).build();
    let docs: Vec<Document> = (0..500i64).map(|i| doc! {"i": i, "pad": "x".repeat(100)}).collect();
    server.collection().insert_many(docs).write_concern(journaled.clone()).run().unwrap();
    // A writer goes on during the backup; `acked` holds how many inserts were acknowledged.
    let acked = t.path().join("acked");
    write(&acked, "500");
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (coll, stop, acked) = (server.collection(), Arc::clone(&stop), acked.clone());
        std::thread::spawn(move || {
            let mut n: i64 = 500;
            while !stop.load(Ordering::Relaxed) {
                let one = doc! {"i": n, "pad": "y".repeat(100)};
                coll.insert_one(one).write_concern(journaled.clone()).run().unwrap();
                n += 1;
                std::fs::write(acked.with_extension("tmp"), n.to_string()).unwrap();
                std::fs::rename(acked.with_extension("tmp"), &acked).unwrap();
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (hooks, a) = (t.path().join("hooks.log"), acked.display());
    let pre = format!("echo $(cat {a}) >> {}", hooks.display());
    let c = t.path().join("c");
    let uri = format!("mongodb://127.0.0.1:{}/", server.port);
    let extra = ["--mongo-uri", &uri, "--snapshot-type", "btrfs", "--pre-exec", &pre];
    let (out, _) = backup(&fs.data(), &c, &[&extra[..], &["--post-exec", &pre]].concat());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains("without --snapshot"), "{err}");
    let db = &json(&out)["database"];
    assert_eq!(db["topology"], "standalone", "{db}");
    assert!(db.get("replica_set").is_none(), "{db}");
    assert!(db["consistency"].as_str().unwrap().contains("journal"), "{db}");
    assert_eq!(fs.others(), Vec::<String>::new(), "no snapshot left");
    server.stop();
    let seen: Vec<u64> = std::fs::read_to_string(&hooks)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let (before, after) = (seen[0], seen[1]);

    let r = t.path().join("r");
    freezer_ok(["restore", r.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "m"]);
    let restored = Server::start(&r.join("mongo"), Kind::Standalone);
    let n = restored.collection().count_documents(doc! {}).run().unwrap();
    eprintln!("restored {n}; acked {before} before the lock, {after} after; {written} in all");
    // Every write acknowledged before the snapshot; none from after it (one in flight at most).
    assert!((before..=after + 1).contains(&n), "restored {n}, acked {before}..{after}");
    assert!(written as u64 > after + 10, "the writer went on: {written} vs {after}");
    // And they are 0..n: the largest `i` is n - 1.
    let top = restored.collection().find_one(doc! {}).sort(doc! {"i": -1}).run().unwrap();
    assert_eq!(top.unwrap().get_i64("i").unwrap() + 1, n as i64);
}

#[test]
fn mongo_closed_port_or_bad_uri_fails_fast_naming_it_without_the_password() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("mongodb://backup:sekrit@127.0.0.1:{port}/admin");
    let log = t.path().join("freezer.log");
    let logging = ["--log-level", "trace", "--log-file", log.to_str().unwrap()];
    let (out, took) = backup(&src, &c, &[&["--mongo-uri", &uri][..], &logging].concat());
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(!std::fs::read_to_string(&log).unwrap().contains("sekrit"));
    assert!(err.contains(&format!("MongoDB 127.0.0.1:{port}: cannot connect")), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("sekrit"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // --mongo-port is honoured (freezer-agent hard-coded 27017).
    let (out, _) =
        backup(&src, &c, &["--mongo-host", "127.0.0.1", "--mongo-port", &port.to_string()]);
    assert!(stderr(&out).contains(&format!("127.0.0.1:{port}")), "{}", stderr(&out));
    for (bad, says) in [
        ("mongod://backup:sekrit@h/", "not a MongoDB URI"),
        ("mongodb://backup:sekrit@a:1,b:2/", "names 2 hosts"),
    ] {
        let (out, _) = backup(&src, &c, &["--mongo-uri", bad]);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(says) && err.contains("backup:***@"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
    }
}

#[test]
fn mongo_fsync_lock_is_taken_before_the_snapshot_and_released_after_it() {
    let fs = Btrfs::new();
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(&fs.data().join("nx"), Kind::Nx);
    server.collection().insert_one(doc! {"i": 1}).run().unwrap();
    let c = t.path().join("c");
    let uri = format!("mongodb://127.0.0.1:{}/", server.port);
    let extra = ["--mongo-uri", &uri, "--snapshot-type", "btrfs", "--mongo-fsync-lock"];
    let log = t.path().join("freezer.log");
    let logging = ["--log-level", "info", "--log-file", log.to_str().unwrap()];
    let (out, _) = backup(&fs.data(), &c, &[&extra[..], &logging].concat());
    assert_code(&out, 0);
    let err = std::fs::read_to_string(&log).unwrap();
    let at = |what: &str| err.find(what).unwrap_or_else(|| panic!("no '{what}' in {err}"));
    assert!(at("locked (fsyncLock)") < at("btrfs snapshot "), "{err}");
    assert!(at("btrfs snapshot ") < at("unlocked (fsyncUnlock)"), "{err}");
    let db = &json(&out)["database"];
    assert_eq!(db["consistency"], "fsyncLock while the snapshot was created", "{db}");
    // The server saw both commands, the lock first.
    let seen = std::fs::read_to_string(server.state.path().join("nx.log")).unwrap();
    let (lock, unlock) = (seen.find("'fsync': 1, 'lock': True"), seen.find("'fsyncUnlock': 1"));
    assert!(lock.is_some() && unlock.is_some() && lock < unlock, "{seen}");
}

#[test]
fn mongo_over_tls_checks_the_servers_certificate() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(&t.path().join("data"), Kind::Tls);
    let ca = server.state.path().join("ca.pem");
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let at = format!("mongodb://127.0.0.1:{}/", server.port);
    let (out, _) =
        backup(&src, &c, &["--mongo-uri", &format!("{at}?tls=true&tlsCAFile={}", ca.display())]);
    assert_code(&out, 0);
    assert_eq!(json(&out)["database"]["topology"], "standalone");
    // Another CA: refused, naming why.
    let other = t.path().join("other.pem");
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout {0}.key \
         -out {0} 2>/dev/null",
        other.display()
    ));
    let (out, took) =
        backup(&src, &c, &["--mongo-uri", &format!("{at}?tls=true&tlsCAFile={}", other.display())]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("invalid peer certificate: UnknownIssuer"), "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn mongo_credentials_from_the_uri_log_in_and_a_wrong_password_is_never_shown() {
    let t = tempfile::tempdir().unwrap();
    let server = Server::start(&t.path().join("data"), Kind::Auth);
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let uri =
        |pw: &str| format!("mongodb://freezer:{pw}@127.0.0.1:{}/?authSource=admin", server.port);
    let (out, _) = backup(&src, &c, &["--mongo-uri", &uri("mongopass-test"), "--mongo-fsync-lock"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains("mongopass-test"), "{err}");
    assert!(err.contains("--mongo-uri with a password on the command line is visible"), "{err}");
    // From the environment instead: no warning.
    let out = Command::new(bin())
        .args(["backup", src.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "m"])
        .args(["--mode", "mongo", "--json"])
        .env("FREEZER_MONGO_URI", uri("mongopass-test"))
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(!stderr(&out).contains("visible"), "{}", stderr(&out));
    assert_eq!(json(&out)["database"]["node"], format!("127.0.0.1:{}", server.port));
    let log = t.path().join("freezer.log");
    let logging = ["--log-level", "trace", "--log-file", log.to_str().unwrap()];
    let (out, _) =
        backup(&src, &c, &[&["--mongo-uri", &uri("sekrit-wrong")][..], &logging].concat());
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("sekrit"), "{err}");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("sekrit"));
}
