//! `--storage swift` end to end, against the real Swift and Keystone that `scripts/services`
//! starts (`scripts/test` exports their `FREEZER_TEST_*` settings; without them these fail).
//! Objects are checked with the real `swift` CLI (python-swiftclient).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test services with `source \"$(scripts/services start)\"` (scripts/test does)")
    })
}

/// A container no other test uses.
pub fn container(tag: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("it-{tag}-{}-{t}", std::process::id())
}

/// tempauth credentials as the `swift` CLI reads them.
pub fn tempauth() -> Vec<(String, String)> {
    vec![
        ("ST_AUTH".into(), var("FREEZER_TEST_SWIFT_AUTH_URL")),
        ("ST_USER".into(), var("FREEZER_TEST_SWIFT_USER")),
        ("ST_KEY".into(), var("FREEZER_TEST_SWIFT_KEY")),
    ]
}

/// Keystone v3 credentials of the demo user, as freezer-agent's operators set them.
pub fn keystone() -> Vec<(String, String)> {
    vec![
        ("OS_AUTH_URL".into(), var("FREEZER_TEST_KEYSTONE_URL")),
        ("OS_USERNAME".into(), var("FREEZER_TEST_KEYSTONE_DEMO_USER")),
        ("OS_PASSWORD".into(), var("FREEZER_TEST_KEYSTONE_DEMO_PASSWORD")),
        ("OS_PROJECT_NAME".into(), var("FREEZER_TEST_KEYSTONE_DEMO_PROJECT")),
        ("OS_USER_DOMAIN_NAME".into(), var("FREEZER_TEST_KEYSTONE_DEMO_DOMAIN")),
        ("OS_PROJECT_DOMAIN_NAME".into(), var("FREEZER_TEST_KEYSTONE_DEMO_DOMAIN")),
        ("OS_IDENTITY_API_VERSION".into(), "3".into()),
    ]
}

/// A command with exactly `env` for Swift settings (none inherited).
pub fn with_env(program: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") || k.starts_with("ST_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

pub fn run(env: &[(String, String)], args: &[&str]) -> Output {
    with_env(&bin(), env).args(args).output().expect("run freezer")
}

pub fn run_ok(env: &[(String, String)], args: &[&str]) -> Output {
    let out = run(env, args);
    assert_code(&out, 0);
    out
}

/// The object names in a container, listed by the `swift` CLI.
pub fn objects(env: &[(String, String)], container: &str) -> Vec<String> {
    let out =
        with_env(Path::new("swift"), env).args(["list", container]).output().expect("run swift");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("not found") {
        panic!("swift list {container} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines().map(str::to_string).collect()
}

/// Wait (up to 10 s) until an object whose name passes `wanted` is in the container.
fn wait_for_object(env: &[(String, String)], c: &str, wanted: impl Fn(&str) -> bool) {
    for _ in 0..100 {
        if objects(env, c).iter().any(|n| wanted(n)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Bytes that do not compress (so a small tree still makes many segments).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Backs up `src` three times (changing it between), restores every level by date and
/// compares; returns the container's object names.
fn chain_restores_by_date(env: &[(String, String)], tag: &str) -> Vec<String> {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("base"), noise(1, 60_000));
    sample_tree(&src.join("tree"));
    let c = container(tag);
    let common = ["-N", "chain", "--hostname", "h", "--storage", "swift", "-C", &c];
    let mut states = Vec::new();
    for level in 0..3u64 {
        if level > 0 {
            write(&src.join(format!("new{level}")), noise(10 + level, 50_000));
            std::fs::remove_file(src.join(if level == 1 { "tree/top.txt" } else { "new1" }))
                .unwrap();
        }
        let s = src.to_str().unwrap();
        let mut args = vec!["backup", s, "--max-level", "3", "--max-segment-size", "4K"];
        args.extend(common);
        let out = run_ok(env, &args);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("level {level}")));
        states.push(manifest(&src, true));
        tick();
    }
    let listed =
        String::from_utf8_lossy(&run_ok(env, &[&["list", "--json"][..], &common].concat()).stdout)
            .into_owned();
    let items: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    for (level, item) in items.iter().enumerate() {
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("r{level}"));
        let d = dest.to_str().unwrap();
        run_ok(env, &[&["restore", d, "--restore-from-date", &date][..], &common].concat());
        assert_eq!(manifest(&dest, true), states[level], "level {level}");
    }
    let out = run_ok(env, &[&["verify"][..], &common].concat());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("damaged"));
    objects(env, &c)
}

#[test]
fn a_chain_of_many_segments_restores_by_date_with_tempauth() {
    let names = chain_restores_by_date(&tempauth(), "tempauth");
    // freezer-agent 19's layout: %08d segments, a manifest, the snapshot, the metadata.
    let seg10 = names.iter().filter(|n| n.contains("/segments/00000010")).count();
    assert!(seg10 >= 2, "levels 0 and 1 have more than 10 segments: {names:#?}");
    for suffix in ["/data", "/engine_metadata"] {
        assert_eq!(
            names
                .iter()
                .filter(|n| n.ends_with(suffix) && n.starts_with("data/tar/h_chain/"))
                .count(),
            3
        );
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("metadata/tar/h_chain/") && n.ends_with("/metadata"))
            .count(),
        3
    );
}

#[test]
fn a_chain_restores_by_date_with_keystone_v3() {
    let names = chain_restores_by_date(&keystone(), "keystone");
    assert!(names.iter().any(|n| n.ends_with("/segments/00000000")));
}

#[test]
fn tokens_that_expire_mid_backup_are_renewed() {
    let env = vec![
        ("ST_AUTH".into(), var("FREEZER_TEST_SWIFT_SHORT_AUTH_URL")),
        ("ST_USER".into(), var("FREEZER_TEST_SWIFT_SHORT_USER")),
        ("ST_KEY".into(), var("FREEZER_TEST_SWIFT_SHORT_KEY")),
    ];
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(3, 450_000));
    let c = container("short");
    let common = ["-N", "s", "--storage", "swift", "-C", &c];
    let started = std::time::Instant::now();
    // 450 kB at 48 kB/s: about 8 s, more than twice the tokens' 3 s life.
    run_ok(
        &env,
        &[
            &[
                "backup",
                src.to_str().unwrap(),
                "--max-segment-size",
                "16K",
                "--upload-limit",
                "48K",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert!(started.elapsed().as_secs() >= 5, "the backup outlived a token");
    let dest = t.path().join("r");
    run_ok(
        &env,
        &[&["restore", dest.to_str().unwrap(), "--download-limit", "48K"][..], &common].concat(),
    );
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}

#[test]
fn prune_removes_every_object_of_a_chain() {
    let env = tempauth();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(4, 30_000));
    let c = container("prune");
    let common = ["-N", "p", "--hostname", "h", "--storage", "swift", "-C", &c];
    for i in 0..4 {
        write(&src.join("g"), format!("change {i}"));
        run_ok(
            &env,
            &[
                &["backup", src.to_str().unwrap(), "--max-level", "1", "--max-segment-size", "4K"]
                    [..],
                &common,
            ]
            .concat(),
        );
        tick();
    }
    let before = objects(&env, &c);
    let chains: std::collections::BTreeSet<&str> = before
        .iter()
        .filter_map(|n| n.strip_prefix("metadata/tar/h_p/"))
        .filter_map(|n| n.split('/').next())
        .collect();
    assert_eq!(chains.len(), 2, "{before:#?}");
    let oldest = chains.iter().next().unwrap().to_string();
    run_ok(&env, &[&["prune", "--keep-last", "1"][..], &common].concat());
    let after = objects(&env, &c);
    assert!(after.iter().all(|n| !n.contains(&format!("/{oldest}/"))), "left behind: {after:#?}");
    assert!(after.iter().any(|n| n.contains("/segments/")), "the newest chain stays");
    let dest = t.path().join("r");
    run_ok(&env, &[&["restore", dest.to_str().unwrap()][..], &common].concat());
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}

#[test]
fn a_second_backup_waits_for_the_lock_in_swift() {
    let env = tempauth();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(5, 200_000));
    let c = container("lock");
    let common = ["-N", "l", "--storage", "swift", "-C", &c];
    let args = [
        &["backup", src.to_str().unwrap(), "--upload-limit", "40K", "--max-segment-size", "8K"][..],
        &common,
    ]
    .concat();
    let mut slow = with_env(&bin(), &env).args(&args).spawn().unwrap();
    let lock = "locks/tar/".to_string();
    wait_for_object(&env, &c, |n| n.starts_with(&lock));
    let out = run(&env, &[&["backup", src.to_str().unwrap()][..], &common].concat());
    assert_code(&out, 7);
    assert!(stderr(&out).contains("another freezer"), "{}", stderr(&out));
    assert!(slow.wait().unwrap().success());
    assert!(objects(&env, &c).iter().all(|n| !n.starts_with(&lock)), "the lock is released");
}

#[test]
fn an_interrupted_backup_leaves_no_object_but_the_container() {
    let env = tempauth();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(6, 400_000));
    let c = container("abort");
    let common = ["-N", "a", "--storage", "swift", "-C", &c];
    let args = [
        &["backup", src.to_str().unwrap(), "--upload-limit", "50K", "--max-segment-size", "8K"][..],
        &common,
    ]
    .concat();
    let mut child = with_env(&bin(), &env).args(&args).spawn().unwrap();
    wait_for_object(&env, &c, |n| n.contains("/segments/00000002"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(objects(&env, &c), Vec::<String>::new(), "segments, snapshot and lock are removed");
    let out = run(&env, &[&["list"][..], &common].concat());
    assert_code(&out, 0);
}

fn agent_in_swift(args: &[&str]) -> Output {
    agent(&keystone(), &[], args)
}

/// Run the reference freezer-agent (`scripts/agent`) with exactly `env` for storage settings,
/// plus `extra` variables; it must succeed.
pub fn agent(env: &[(String, String)], extra: &[(&str, &str)], args: &[&str]) -> Output {
    let agent = std::env::var_os("FREEZER_AGENT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join("scripts/agent"));
    let out = with_env(&agent, env)
        .envs(extra.iter().copied())
        .args(args)
        .output()
        .expect("run scripts/agent");
    assert!(
        out.status.success(),
        "freezer-agent {args:?} failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// freezer-agent 19 and freezer share one Swift container: each restores the other's
/// encrypted gzip chains (openssl aes-256-cfb, the agent's format).
#[test]
fn freezer_agent_and_freezer_restore_each_others_chains_in_swift() {
    let env = keystone();
    let t = tempfile::tempdir().unwrap();
    let pass = t.path().join("pass");
    write(&pass, "a long pass phrase shared by the fleet\n");
    chmod(&pass, 0o600);
    let pass = pass.to_str().unwrap();
    let c = container("agent");
    let src = t.path().join("src");
    write(&src.join("big"), noise(7, 300_000));
    sample_tree(&src.join("tree"));
    std::fs::remove_file(src.join("tree/fifo")).unwrap();

    // The agent writes three levels.
    let mut states = Vec::new();
    for level in 0..3 {
        if level > 0 {
            write(&src.join(format!("agent{level}")), noise(20 + level, 40_000));
        }
        agent_in_swift(&[
            "--action",
            "backup",
            "--storage",
            "swift",
            "--container",
            &c,
            "--path-to-backup",
            src.to_str().unwrap(),
            "--backup-name",
            "theirs",
            "--hostname",
            "agenthost",
            "--compression",
            "gzip",
            "--incremental",
            "--max-level",
            "2",
            "--max-segment-size",
            "65536",
            "--encrypt-pass-file",
            pass,
        ]);
        states.push(manifest(&src, false));
        tick();
    }
    let common = ["-N", "theirs", "--hostname", "agenthost", "--storage", "swift", "-C", &c];
    let listed =
        String::from_utf8_lossy(&run_ok(&env, &[&["list", "--json"][..], &common].concat()).stdout)
            .into_owned();
    let items: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    for (level, item) in items.iter().enumerate() {
        assert_eq!(item["level"], level);
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("ours-of-theirs{level}"));
        let d = dest.to_str().unwrap();
        run_ok(
            &env,
            &[
                &["restore", d, "--restore-from-date", &date, "--encrypt-pass-file", pass][..],
                &common,
            ]
            .concat(),
        );
        assert_eq!(manifest(&dest, false), states[level], "level {level}");
    }

    // We write three levels as freezer-agent would (called by that name: gzip, openssl).
    let as_agent = t.path().join("freezer-agent");
    std::os::unix::fs::symlink(bin(), &as_agent).unwrap();
    for level in 0..3 {
        if level > 0 {
            write(&src.join(format!("ours{level}")), noise(30 + level, 40_000));
        }
        let out = with_env(&as_agent, &env)
            .args([
                "--action",
                "backup",
                "--container",
                &c,
                "--path-to-backup",
                src.to_str().unwrap(),
                "--backup-name",
                "ours",
                "--hostname",
                "agenthost",
                "--incremental",
                "--max-level",
                "2",
                "--max-segment-size",
                "65536",
                "--encrypt-pass-file",
                pass,
                "--log-file",
            ])
            .arg(t.path().join("log"))
            .output()
            .unwrap();
        assert_code(&out, 0);
        tick();
    }
    let dest = t.path().join("theirs-of-ours");
    agent_in_swift(&[
        "--action",
        "restore",
        "--storage",
        "swift",
        "--container",
        &c,
        "--backup-name",
        "ours",
        "--hostname",
        "agenthost",
        "--encrypt-pass-file",
        pass,
        "--restore-abs-path",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(manifest(&dest, true), manifest(&src, true));
    let names = objects(&env, &c);
    assert!(names.iter().any(|n| n.starts_with("data/tar/agenthost_ours/") && n.ends_with("/segments/00000004")), "{names:#?}");
}

#[test]
fn keystone_tokens_that_expire_mid_backup_are_renewed() {
    let life: u64 = var("FREEZER_TEST_KEYSTONE_TOKEN_EXPIRATION").parse().unwrap();
    assert!(life <= 60, "scripts/services gives Keystone tokens a short life for this test");
    let env = keystone();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    // At 64 kB/s, a backup that lasts the token's life and 8 s more.
    write(&src.join("f"), noise(8, ((life + 8) * 64_000) as usize));
    let c = container("ks-expiry");
    let common = ["-N", "e", "--storage", "swift", "-C", &c];
    let started = std::time::Instant::now();
    let s = src.to_str().unwrap();
    run_ok(
        &env,
        &[&["backup", s, "--max-segment-size", "64K", "--upload-limit", "64K"][..], &common]
            .concat(),
    );
    assert!(started.elapsed().as_secs() > life, "the backup outlived its first token");
    let dest = t.path().join("r");
    run_ok(&env, &[&["restore", dest.to_str().unwrap()][..], &common].concat());
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}
