//! Storage faults: freezer against the real Swift through a fault-injecting HTTP proxy written
//! here with std only. Per request, a seeded PRNG picks a 503, a reset (the request reaches
//! Swift, the reply is cut) or a stall longer than `--storage-timeout`. Whatever happens, a
//! backup either succeeds with intact data or fails leaving nothing visible.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::support::*;
use crate::swift::{container, noise, run, tempauth, var, with_env};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answer 503 without forwarding.
    Unavailable,
    /// Forward, then close the connection with no reply or half of its body.
    Reset,
    /// Send nothing for longer than freezer's stall timeout, then close.
    Stall,
}

const ALL: &[Fault] = &[Fault::Unavailable, Fault::Reset, Fault::Stall];
/// Longer than the `--storage-timeout 2` the tests give.
const STALL: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
struct Plan {
    seed: u64,
    /// Share of the eligible requests that fail, in percent.
    percent: u64,
    kinds: &'static [Fault],
    /// Which requests (method, path) may fail.
    only: fn(&str, &str) -> bool,
    /// At most this many faults in all.
    max: u64,
}

impl Plan {
    fn new(seed: u64, percent: u64, kinds: &'static [Fault]) -> Plan {
        Plan { seed, percent, kinds, only: |_, _| true, max: u64::MAX }
    }
}

/// Requests seen, and faults injected by kind (in `Fault` order).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    requests: u64,
    faults: [u64; 3],
}

struct State {
    plan: Plan,
    rng: u64,
    counts: Counts,
}

impl State {
    /// One splitmix64 draw per request, eligible or not: a seed gives one sequence of draws.
    fn decide(&mut self, method: &str, path: &str) -> Option<Fault> {
        self.counts.requests += 1;
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let r = (self.rng ^ (self.rng >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let r = (r ^ (r >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let r = r ^ (r >> 31);
        let (p, done) = (&self.plan, self.counts.faults.iter().sum::<u64>());
        if !(p.only)(method, path) || done >= p.max || r % 100 >= p.percent {
            return None;
        }
        let fault = p.kinds[(r >> 32) as usize % p.kinds.len()];
        self.counts.faults[fault as usize] += 1;
        Some(fault)
    }
}

struct Proxy {
    /// tempauth logs in at Swift directly; every storage request comes here.
    env: Vec<(String, String)>,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    fn start(plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = var("FREEZER_TEST_SWIFT_STORAGE_URL");
        let host = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
        let storage_url = url.replacen(&host, &listener.local_addr().unwrap().to_string(), 1);
        let state = Arc::new(Mutex::new(State { plan, rng: plan.seed, counts: Counts::default() }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (state, host) = (Arc::clone(&shared), host.clone());
                std::thread::spawn(move || serve(conn, &host, &state));
            }
        });
        let mut env = tempauth();
        env.push(("OS_STORAGE_URL".into(), storage_url));
        Proxy { env, state }
    }

    fn counts(&self) -> Counts {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).counts
    }
}

/// An HTTP/1.1 message as received: body bytes still in their framing (chunks stay chunks).
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The head, without `Connection` (each hop has its own), plus `extra`.
    fn head(&self, extra: &str) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (n, v) in self.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("connection")) {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(extra);
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Read a request (`reply_to` `None`) or the reply to a `reply_to` request; `None` at a
    /// clean end of the connection.
    fn read(r: &mut impl BufRead, reply_to: Option<&str>) -> io::Result<Option<Message>> {
        let mut start = String::new();
        if r.read_line(&mut start)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if line.trim_end().is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').ok_or(io::ErrorKind::InvalidData)?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut m = Message { start: start.trim_end().to_string(), headers, body: Vec::new() };
        let length = m.header("content-length").map(|v| v.parse::<usize>().unwrap());
        let chunked = m.header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let status = m.start.split(' ').nth(1).unwrap_or("");
        let bodiless = matches!(status, "204" | "304") || status.starts_with('1');
        if reply_to == Some("HEAD") || reply_to.is_some() && bodiless {
            return Ok(Some(m));
        }
        if chunked {
            m.body = read_chunked(r)?;
        } else if let Some(n) = length {
            m.body.resize(n, 0);
            r.read_exact(&mut m.body)?;
        } else if reply_to.is_some() {
            // Delimited by the end of the connection: framed for the client instead.
            r.read_to_end(&mut m.body)?;
            m.headers.push(("Content-Length".into(), m.body.len().to_string()));
        }
        Ok(Some(m))
    }
}

/// A chunked body, raw: size lines, chunks, the last chunk and the trailers.
fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        raw.extend_from_slice(line.as_bytes());
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            break;
        }
        let at = raw.len();
        raw.resize(at + size + 2, 0);
        r.read_exact(&mut raw[at..])?;
    }
    loop {
        let mut line = String::new();
        let end = r.read_line(&mut line)? == 0 || line.trim().is_empty();
        raw.extend_from_slice(line.as_bytes());
        if end {
            return Ok(raw);
        }
    }
}

/// One request to Swift on a connection of its own (`Connection: close`): nothing to pool.
fn forward(req: &Message, host: &str) -> io::Result<Message> {
    let mut up = TcpStream::connect(host)?;
    up.write_all(&req.head("Connection: close\r\n"))?;
    up.write_all(&req.body)?;
    let method = req.start.split(' ').next();
    Message::read(&mut BufReader::new(up), method)?.ok_or(io::ErrorKind::UnexpectedEof.into())
}

/// Requests one at a time on a client connection, kept alive between them.
fn serve(client: TcpStream, host: &str, state: &Mutex<State>) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    while let Some(req) = Message::read(&mut reader, None)? {
        let mut words = req.start.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let fault = state.lock().unwrap_or_else(PoisonError::into_inner).decide(method, path);
        match fault {
            Some(Fault::Unavailable) => client
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")?,
            Some(Fault::Stall) => {
                std::thread::sleep(STALL);
                return Ok(());
            }
            Some(Fault::Reset) => {
                // Swift did the work; the client never learns it (or gets half the body).
                let resp = forward(&req, host)?;
                if !resp.body.is_empty() {
                    client.write_all(&resp.head(""))?;
                    client.write_all(&resp.body[..resp.body.len() / 2])?;
                }
                return Ok(());
            }
            None => {
                let resp = forward(&req, host)?;
                client.write_all(&resp.head(""))?;
                client.write_all(&resp.body)?;
            }
        }
        if req.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
    Ok(())
}

/// `HEAD -N f --hostname h --storage swift -C c`, trying `retries` times more, stalls at 2 s.
fn args<'a>(head: &[&'a str], c: &'a str, retries: &'a str) -> Vec<&'a str> {
    let mut a = head.to_vec();
    a.extend(["-N", "f", "--hostname", "h", "--storage", "swift", "-C", c]);
    a.extend(["--storage-retries", retries, "--storage-timeout", "2"]);
    a
}

/// A backup of `src` into `c` in 16 KiB segments.
fn backup(env: &[(String, String)], src: &Path, c: &str, retries: &str) -> Output {
    run(env, &args(&["backup", src.to_str().unwrap(), "--max-segment-size", "16K"], c, retries))
}

/// The backups `freezer list --json` shows, asking Swift directly.
fn listed(c: &str) -> Vec<serde_json::Value> {
    let out = run(&tempauth(), &args(&["list", "--json"], c, "4"));
    assert_code(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The container's object names under `prefix` by the `swift` CLI; none if it is absent
/// (`swift::objects` panics on "Container ... not found").
fn names(c: &str, prefix: &str) -> Vec<String> {
    let out = with_env(Path::new("swift"), &tempauth()).args(["list", c]).output();
    let out = out.expect("run swift");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() || stderr(&out).contains("not found"), "{}", stderr(&out));
    listed.lines().filter(|n| n.starts_with(prefix)).map(str::to_string).collect()
}

/// About 20 segments of 16 KiB: incompressible files and a few small ones.
fn source(root: &Path) -> PathBuf {
    let src = root.join("src");
    write(&src.join("big"), noise(40, 250_000));
    write(&src.join("d/medium"), noise(41, 60_000));
    for i in 0..5 {
        write(&src.join(format!("d/small{i}")), format!("small {i}\n"));
    }
    src
}

/// One backup through a proxy failing 20% of the requests, then what must hold of it. Returns
/// the exit code, the counts after the backup and after the restore, and the seconds taken.
fn backup_through_faults(seed: u64, src: &Path, dest: &Path) -> (i32, Counts, Counts, f64) {
    let proxy = Proxy::start(Plan::new(seed, 20, ALL));
    let c = container(&format!("faults{seed}"));
    let started = Instant::now();
    let out = backup(&proxy.env, src, &c, "4");
    let code = out.status.code().expect("freezer exited");
    let backup = proxy.counts();
    let (backups, meta) = (listed(&c), names(&c, "metadata/"));
    if code == 0 {
        assert_eq!((backups.len(), meta.len()), (1, 1), "seed {seed}: {backups:?} {meta:?}");
        assert_eq!(names(&c, "locks/"), Vec::<String>::new(), "seed {seed}: the lock is released");
        // More retries than the backup had: a restore that gives up would prove nothing.
        let d = dest.to_str().unwrap();
        assert_code(&run(&proxy.env, &args(&["restore", d], &c, "8")), 0);
        assert_eq!(manifest(dest, false), manifest(src, false), "seed {seed}");
        assert_code(&run(&tempauth(), &args(&["verify"], &c, "4")), 0);
    } else {
        assert!(
            backups.is_empty() && meta.is_empty(),
            "seed {seed}: exit {code}, yet a backup is visible: {backups:?} {meta:?}\n{}",
            stderr(&out)
        );
    }
    (code, backup, proxy.counts(), started.elapsed().as_secs_f64())
}

#[test]
fn every_backup_through_faults_is_complete_or_invisible() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (1..=6u64)
            .map(|seed| {
                let (src, dest) = (&src, t.path().join(format!("r{seed}")));
                scope.spawn(move || backup_through_faults(seed, src, &dest))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (seed, (code, backup, total, secs)) in (1..).zip(&outcomes) {
        eprintln!("seed {seed}: exit {code} in {secs:.1} s; backup {backup:?}; in all {total:?}");
    }
    let faults: u64 = outcomes.iter().flat_map(|o| o.1.faults).sum();
    assert!(faults >= 6, "the proxy injected faults into the backups: {faults}");
}

#[test]
fn a_storage_that_always_fails_fails_the_backup_soon_and_clearly() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let proxy = Proxy::start(Plan::new(0, 100, &[Fault::Unavailable]));
    let c = container("faults-down");
    let started = Instant::now();
    let out = backup(&proxy.env, &src, &c, "2");
    let secs = started.elapsed().as_secs_f64();
    eprintln!("failed in {secs:.1} s after {:?}", proxy.counts());
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("swift container") || err.contains(&c), "names the storage: {err}");
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(secs < 60.0, "{secs} s");
    assert_eq!(names(&c, ""), Vec::<String>::new(), "nothing is left");
}

#[test]
fn a_restore_through_resets_of_30_percent_of_the_gets_is_complete() {
    let t = tempfile::tempdir().unwrap();
    let src = source(t.path());
    let c = container("faults-get");
    assert_code(&backup(&tempauth(), &src, &c, "4"), 0);
    let proxy = Proxy::start(Plan { only: |m, _| m == "GET", ..Plan::new(7, 30, &[Fault::Reset]) });
    let dest = t.path().join("r");
    let out = run(&proxy.env, &args(&["restore", dest.to_str().unwrap()], &c, "10"));
    eprintln!("restored through {:?}", proxy.counts());
    assert_code(&out, 0);
    assert_eq!(manifest(&dest, false), manifest(&src, false));
    assert!(proxy.counts().faults[Fault::Reset as usize] >= 3, "{:?}", proxy.counts());
}

/// A backup through `plan` that exits 0 or leaves no backup visible; its exit code and stderr.
fn backup_with(plan: Plan, tag: &str) -> (i32, String) {
    let t = tempfile::tempdir().unwrap();
    let (proxy, c) = (Proxy::start(plan), container(tag));
    let out = backup(&proxy.env, &source(t.path()), &c, "2");
    let (code, err, visible) = (out.status.code().unwrap(), stderr(&out), listed(&c));
    assert!(code == 0 || visible.is_empty(), "exit {code} with {visible:?}\n{err}");
    (code, err)
}

#[test]
fn a_lost_reply_to_creating_the_lock_is_not_another_freezer() {
    let only = |m: &str, p: &str| m == "PUT" && p.contains("/locks/");
    let (code, err) =
        backup_with(Plan { only, max: 1, ..Plan::new(0, 100, &[Fault::Reset]) }, "faults-lock");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_backup_whose_metadata_replies_are_lost_is_complete_or_invisible() {
    // Every reply is lost but the object is stored: read back whole, the backup is complete.
    let only = |m: &str, p: &str| m == "PUT" && p.contains("/metadata/");
    let (code, err) =
        backup_with(Plan { only, ..Plan::new(0, 100, &[Fault::Reset]) }, "faults-meta");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("but it is stored whole"), "{err}");
}

#[test]
fn a_lock_that_cannot_be_removed_does_not_fail_a_complete_backup() {
    let only = |m: &str, p: &str| m == "DELETE" && p.contains("/locks/");
    let (code, err) =
        backup_with(Plan { only, ..Plan::new(0, 100, &[Fault::Unavailable]) }, "faults-release");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("its lock could not be removed"), "{err}");
}
