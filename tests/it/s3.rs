//! `--storage s3` end to end, against the real signature-checking S3 servers that
//! `scripts/services` starts: Swift's s3api and s3s-fs (`FREEZER_TEST_S3*`; without them these
//! fail). What s3api stores is checked with the real `swift` CLI: its buckets are Swift
//! containers, and unfinished multipart uploads live in `<bucket>+segments`.

use std::process::Output;

use crate::support::*;
use crate::swift::{noise, objects, tempauth, var, with_env};

/// S3 credentials of one test server (`S3`: s3api, `S3S`: s3s-fs), as freezer-agent reads
/// them.
fn creds(server: &str) -> Vec<(String, String)> {
    let v = |n: &str| var(&format!("FREEZER_TEST_{server}_{n}"));
    vec![
        ("ACCESS_KEY".into(), v("ACCESS_KEY")),
        ("SECRET_KEY".into(), v("SECRET_KEY")),
        ("ENDPOINT".into(), v("ENDPOINT")),
    ]
}

/// `list()` once it satisfies `done`, or after 5 s (Swift updates container listings a
/// moment after the objects change).
fn settled(list: impl Fn() -> Vec<String>, done: impl Fn(&Vec<String>) -> bool) -> Vec<String> {
    for _ in 0..50 {
        let names = list();
        if done(&names) {
            return names;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    list()
}

fn bucket(tag: &str) -> String {
    crate::swift::container(tag).to_lowercase()
}

fn run(env: &[(String, String)], args: &[&str]) -> Output {
    with_env(&bin(), env).args(args).output().expect("run freezer")
}

fn run_ok(env: &[(String, String)], args: &[&str]) -> Output {
    let out = run(env, args);
    assert_code(&out, 0);
    out
}

/// Three levels of parts of 5 MiB (level 0 has three), restored by date and verified.
fn chain_round_trip(server: &str) {
    let env = creds(server);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("base"), noise(1, 11 << 20));
    sample_tree(&src.join("tree"));
    let b = format!("{}/pre/fix", bucket("chain"));
    let common = ["-N", "chain", "--hostname", "h", "--storage", "s3", "-C", &b];
    let mut states = Vec::new();
    for level in 0..3u64 {
        if level > 0 {
            write(&src.join(format!("new{level}")), noise(10 + level, 50_000));
            std::fs::remove_file(src.join(if level == 1 { "tree/top.txt" } else { "new1" }))
                .unwrap();
        }
        let s = src.to_str().unwrap();
        let args = [&["backup", s, "--max-level", "3", "--max-segment-size", "5M"][..], &common];
        let out = run_ok(&env, &args.concat());
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("level {level}")));
        states.push(manifest(&src, true));
        tick();
    }
    let listed = run_ok(&env, &[&["list", "--json"][..], &common].concat()).stdout;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed).unwrap();
    assert_eq!(items.len(), 3);
    for (level, item) in items.iter().enumerate() {
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("r{level}"));
        let d = dest.to_str().unwrap();
        run_ok(&env, &[&["restore", d, "--restore-from-date", &date][..], &common].concat());
        assert_eq!(manifest(&dest, true), states[level], "level {level}");
    }
    let out = run_ok(&env, &[&["verify"][..], &common].concat());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("damaged"));
}

#[test]
fn a_chain_of_several_parts_round_trips_on_swift_s3api() {
    chain_round_trip("S3");
}

#[test]
fn a_chain_of_several_parts_round_trips_on_s3s_fs() {
    chain_round_trip("S3S");
}

#[test]
fn prune_leaves_no_object_and_no_unfinished_upload() {
    let env = creds("S3");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(4, 30_000));
    let b = bucket("prune");
    let common = ["-N", "p", "--hostname", "h", "--storage", "s3", "-C", &b];
    for i in 0..4 {
        write(&src.join("g"), format!("change {i}"));
        let s = src.to_str().unwrap();
        run_ok(&env, &[&["backup", s, "--max-level", "1"][..], &common].concat());
        tick();
    }
    let before = objects(&tempauth(), &b);
    let chains: std::collections::BTreeSet<&str> = before
        .iter()
        .filter_map(|n| n.strip_prefix("metadata/tar/h_p/"))
        .filter_map(|n| n.split('/').next())
        .collect();
    assert_eq!(chains.len(), 2, "{before:#?}");
    let oldest = chains.iter().next().unwrap().to_string();
    run_ok(&env, &[&["prune", "--keep-last", "1"][..], &common].concat());
    let after = objects(&tempauth(), &b);
    assert!(after.iter().all(|n| !n.contains(&format!("/{oldest}/"))), "left: {after:#?}");
    assert!(after.iter().any(|n| n.ends_with("/data")), "the newest chain stays");
    // Completed uploads keep their parts there too: none of the pruned chain may stay.
    let gone = |n: &String| !n.contains(&format!("/{oldest}/"));
    let parts = settled(|| objects(&tempauth(), &format!("{b}+segments")), |p| p.iter().all(gone));
    assert!(parts.iter().all(gone), "parts of the pruned chain are left: {parts:#?}");
    let dest = t.path().join("r");
    run_ok(&env, &[&["restore", dest.to_str().unwrap()][..], &common].concat());
    assert_eq!(manifest(&dest, false), manifest(&src, false));
}

#[test]
fn an_interrupted_backup_leaves_no_object_and_no_unfinished_upload() {
    let env = creds("S3");
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(6, 16 << 20));
    let b = bucket("abort");
    let common = ["-N", "a", "--storage", "s3", "-C", &b, "--max-segment-size", "5M"];
    let s = src.to_str().unwrap();
    let args = [&["backup", s, "--upload-limit", "4M"][..], &common].concat();
    let mut child = with_env(&bin(), &env).args(&args).spawn().unwrap();
    // Wait until a part is stored (s3api keeps parts in <bucket>+segments).
    for _ in 0..100 {
        if !objects(&tempauth(), &format!("{b}+segments")).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(!child.wait().unwrap().success());
    assert_eq!(objects(&tempauth(), &b), Vec::<String>::new(), "no object, no lock");
    let parts = settled(|| objects(&tempauth(), &format!("{b}+segments")), Vec::is_empty);
    assert!(parts.is_empty(), "the upload is aborted: {parts:#?}");
}

#[test]
fn a_wrong_secret_fails_clearly_and_is_not_printed() {
    let mut env = creds("S3");
    env[1].1 = "wrong-secret-value".into();
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("f"), "x");
    let b = bucket("secret");
    let out = run(&env, &["backup", t.path().to_str().unwrap(), "--storage", "s3", "-C", &b]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("secret key is wrong"), "{err}");
    assert!(!err.contains("wrong-secret-value"), "{err}");
}

fn agent_in_s3(env: &[(String, String)], args: &[&str]) -> Output {
    // The agent reads ACCESS_KEY, SECRET_KEY and ENDPOINT like we do. Unmended, it fails
    // every S3 backup when it uploads engine_metadata (`len()` of a file): scripts/agent
    // mends that one method so the streams and layout it writes can be checked.
    crate::swift::agent(env, &[("FREEZER_AGENT_S3_FIX", "1")], args)
}

/// freezer-agent 19 and freezer share one bucket: each restores the other's chain.
#[test]
fn freezer_agent_and_freezer_restore_each_others_chains_in_s3() {
    let env = creds("S3");
    let t = tempfile::tempdir().unwrap();
    let b = format!("{}/fleet", bucket("agent"));
    let src = t.path().join("src");
    write(&src.join("big"), noise(7, 300_000));
    sample_tree(&src.join("tree"));
    std::fs::remove_file(src.join("tree/fifo")).unwrap();
    let s = src.to_str().unwrap();
    let agent_backup = |name: &str| {
        agent_in_s3(
            &env,
            &[
                "--action",
                "backup",
                "--storage",
                "s3",
                "--container",
                &b,
                "--path-to-backup",
                s,
                "--backup-name",
                name,
                "--hostname",
                "ah",
                "--compression",
                "gzip",
                "--incremental",
                "--max-level",
                "2",
            ],
        )
    };
    let mut states = Vec::new();
    for level in 0..3 {
        if level > 0 {
            write(&src.join(format!("agent{level}")), noise(20 + level, 40_000));
        }
        agent_backup("theirs");
        states.push(manifest(&src, false));
        tick();
    }
    let common = ["-N", "theirs", "--hostname", "ah", "--storage", "s3", "-C", &b];
    let listed = run_ok(&env, &[&["list", "--json"][..], &common].concat()).stdout;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed).unwrap();
    assert_eq!(items.len(), 3);
    for (level, item) in items.iter().enumerate() {
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("ours-of-theirs{level}"));
        let d = dest.to_str().unwrap();
        run_ok(&env, &[&["restore", d, "--restore-from-date", &date][..], &common].concat());
        assert_eq!(manifest(&dest, false), states[level], "level {level}");
    }

    // We write three levels (the agent's gzip), with parts of 5 MiB, and the agent restores.
    write(&src.join("big2"), noise(8, 6 << 20));
    let ours = ["-N", "ours", "--hostname", "ah", "--storage", "s3", "-C", &b];
    for level in 0..3 {
        if level > 0 {
            write(&src.join(format!("ours{level}")), noise(30 + level, 40_000));
        }
        let args = ["backup", s, "--max-level", "2", "--compression", "gzip", "-M", "5M"];
        run_ok(&env, &[&args[..], &ours].concat());
        tick();
    }
    let dest = t.path().join("theirs-of-ours");
    agent_in_s3(
        &env,
        &[
            "--action",
            "restore",
            "--storage",
            "s3",
            "--container",
            &b,
            "--backup-name",
            "ours",
            "--hostname",
            "ah",
            "--restore-abs-path",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(manifest(&dest, true), manifest(&src, true));
}

/// `--secret-key` works but warns that `ps` shows it; from `--config` it does not warn, and
/// the secret is in no output and no log.
#[test]
fn a_secret_key_on_the_command_line_warns_and_is_never_logged() {
    let env = creds("S3");
    let secret = env[1].1.clone();
    let keyless: Vec<(String, String)> =
        env.iter().filter(|(k, _)| k != "SECRET_KEY").cloned().collect();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "data");
    let b = bucket("argv");
    let log = t.path().join("log");
    let (s, l) = (src.to_str().unwrap(), log.to_str().unwrap());
    let common = ["--storage", "s3", "-C", &b, "-N", "n", "--log-file", l];
    let out = run_ok(&keyless, &[&["backup", s, "--secret-key", &secret][..], &common].concat());
    assert!(stderr(&out).contains("visible to every user"), "{}", stderr(&out));
    let ini = t.path().join("job.ini");
    write(&ini, format!("[action]\nsecret_key = {secret}\n"));
    let args = ["backup", s, "--config", ini.to_str().unwrap(), "--debug"];
    let out = run_ok(&keyless, &[&args[..], &common].concat());
    assert!(!stderr(&out).contains("visible to every user"), "{}", stderr(&out));
    let logged = std::fs::read_to_string(&log).unwrap();
    for text in [&logged, &stderr(&out), &String::from_utf8_lossy(&out.stdout).into_owned()] {
        assert!(!text.contains(&secret), "the secret leaked: {text}");
    }
}
