//! freezerc 1.0's Swift layout, read-only: chains written by `scripts/freezerc-fixture`
//! (GNU tar, gzip, openssl and curl, exactly as freezerc 1.0.8 called them) are listed,
//! restored at every point in time and verified. 1.0.8 numbered segments without padding, so
//! its own restore broke past 10 segments; ours orders them by number.

use crate::support::*;
use crate::swift::{container, noise, objects, run_ok, tempauth, with_env};

/// One freezerc run at `level` (checked by the script before it writes anything).
fn freezerc(src: &std::path::Path, c: &str, level: u32, extra: &[&str]) {
    let script = repo().join("scripts/freezerc-fixture");
    let out = with_env(&script, &tempauth())
        .args(["-F", src.to_str().unwrap(), "-C", c, "-N", "web", "--hostname", "oldhost"])
        .args(["--expect-level", &level.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert_code(&out, 0);
}

fn restore_every_point(c: &str, states: &[String], extra: &[&str]) {
    let env = tempauth();
    let common = ["-N", "web", "--hostname", "oldhost", "--storage", "swift", "-C", c];
    let listed = run_ok(&env, &[&["list", "--json"][..], &common].concat());
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(items.len(), states.len(), "{}", String::from_utf8_lossy(&listed.stdout));
    let t = tempfile::tempdir().unwrap();
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["level"], i, "a chain's depth is its level here");
        let date =
            jiff::Timestamp::from_second(item["timestamp"].as_i64().unwrap()).unwrap().to_string();
        let dest = t.path().join(format!("r{i}"));
        let args = [
            &["restore", dest.to_str().unwrap(), "--restore-from-date", &date][..],
            extra,
            &common,
        ]
        .concat();
        run_ok(&env, &args);
        assert_eq!(manifest(&dest, false), states[i], "point {i}");
    }
    let out = run_ok(&env, &[&["verify"][..], extra, &common].concat());
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("ok ").count(), states.len());
}

#[test]
fn freezerc_1_0_8_chains_restore_even_past_ten_unpadded_segments() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src.join("big"), noise(40, 200_000));
    write(&src.join("dir/a"), "a");
    let c = container("fc108");
    let mut states = Vec::new();
    for level in 0..3 {
        if level == 1 {
            write(&src.join("dir/b"), noise(41, 30_000));
        }
        if level == 2 {
            std::fs::remove_file(src.join("dir/a")).unwrap();
        }
        freezerc(&src, &c, level, &["--max-level", "3", "-M", "8192"]);
        states.push(manifest(&src, false));
        tick();
    }
    let segments = objects(&tempauth(), &format!("{c}_segments"));
    assert!(
        segments.iter().any(|n| n.ends_with("/8192/12")),
        "unpadded numbers past 10: {segments:?}"
    );
    restore_every_point(&c, &states, &[]);
}

#[test]
fn encrypted_always_level_chains_of_freezerc_1_0_restore() {
    let t = tempfile::tempdir().unwrap();
    let pass = t.path().join("pass");
    write(&pass, "freezerc era secret\n");
    chmod(&pass, 0o600);
    let p = pass.to_str().unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), noise(50, 20_000));
    let c = container("fcenc");
    let mut states = Vec::new();
    // always-level 1: levels 0, 1, 1, 1, each on the one before.
    for (i, level) in [0, 1, 1, 1].into_iter().enumerate() {
        write(&src.join(format!("n{i}")), format!("step {i}"));
        let flags = ["--always-level", "1", "--encrypt-pass-file", p, "--flavor", "1.0.9"];
        freezerc(&src, &c, level, &flags);
        states.push(manifest(&src, false));
        tick();
    }
    restore_every_point(&c, &states, &["--encrypt-pass-file", p]);
}
