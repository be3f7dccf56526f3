//! Encrypted backups end to end, against the real `age`, `openssl` and freezer-agent 19.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

const PASS: &str = "a long random passphrase 7f3a9c";

fn pass_file(dir: &Path) -> PathBuf {
    let p = dir.join("passfile");
    fs::write(&p, format!("{PASS}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Levels 0..2 of `name` with changes between them; returns the tree at each level.
fn chain(t: &Path, name: &str, extra: &[&str]) -> (PathBuf, Vec<PathBuf>) {
    let src = t.join(format!("src-{name}"));
    sample_tree(&src);
    let c = t.join(format!("c-{name}"));
    let mut states = Vec::new();
    for level in 0..3 {
        if level == 1 {
            write(&src.join("a/new"), "level 1");
            fs::remove_file(src.join("top.txt")).unwrap();
            // Incompressible, so level 1 spans several 64 KiB segments.
            let mut x = 0x9e3779b97f4a7c15u64;
            let noise: Vec<u8> = (0..300_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            write(&src.join("noise.bin"), noise);
        }
        if level == 2 {
            fs::rename(src.join("a/b"), src.join("a/b2")).unwrap();
        }
        let mut args: Vec<String> = [
            "backup",
            src.to_str().unwrap(),
            "-N",
            name,
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--max-level",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        freezer_ok(&args);
        let s = t.join(format!("{name}-state{level}"));
        copy_tree(&src, &s);
        states.push(s);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (c, states)
}

fn restore_each(c: &Path, name: &str, states: &[PathBuf], key: &[&str]) {
    let dirs = level_dirs(c, &format!("h_{name}"));
    assert_eq!(dirs.len(), states.len());
    for (i, d) in dirs.iter().enumerate() {
        let dest = c.parent().unwrap().join(format!("restore-{name}-{i}"));
        let mut args = vec![
            "restore",
            dest.to_str().unwrap(),
            "-N",
            name,
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
        ];
        let date = level_date(d);
        args.extend(["--restore-from-date", &date]);
        args.extend(key);
        freezer_ok(&args);
        assert_eq!(manifest(&dest, true), manifest(&states[i], true), "level {i}");
    }
}

#[test]
fn age_passphrase_chain_restores_and_the_age_cli_decrypts_it() {
    let t = tempfile::tempdir().unwrap();
    let pf = pass_file(t.path());
    let (c, states) = chain(t.path(), "agep", &["--encrypt-pass-file", pf.to_str().unwrap()]);
    restore_each(&c, "agep", &states, &["--encrypt-pass-file", pf.to_str().unwrap()]);
    for d in level_dirs(&c, "h_agep") {
        // The snapshot lists every file name: it is encrypted too.
        assert!(fs::read(d.join("engine_metadata")).unwrap().starts_with(b"age-encryption.org/v1"));
        let data = d.join("data");
        let listing = sh(&format!(
            "printf '%s\\n' '{PASS}' | script -qec \"age -d -o '{0}.zst' '{0}'\" /dev/null >/dev/null && zstd -dc '{0}.zst' | tar -t",
            data.display()
        ));
        assert!(listing.contains("./"), "{listing}");
    }
    let meta = fs::read_to_string(
        c.join("metadata/tar/h_agep")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join(level_dirs(&c, "h_agep")[0].file_name().unwrap())
            .join("metadata"),
    )
    .unwrap();
    assert!(
        meta.contains(r#""encryption":true"#) && meta.contains(r#""encryption_format":"age""#),
        "{meta}"
    );
    assert!(!meta.contains(PASS));
}

#[test]
fn age_recipients_chain_with_a_host_that_cannot_decrypt() {
    let t = tempfile::tempdir().unwrap();
    sh(&format!("cd '{}' && age-keygen -o id.txt 2>/dev/null", t.path().display()));
    let recipient =
        sh(&format!("age-keygen -y '{}/id.txt'", t.path().display())).trim().to_string();
    let state = t.path().join("state");
    // The backups only know the public key; incrementals use the local snapshot copies.
    let src = t.path().join("src");
    sample_tree(&src);
    let c = t.path().join("c");
    let mut states = Vec::new();
    for level in 0..2 {
        if level == 1 {
            write(&src.join("added"), "x");
        }
        let out = std::process::Command::new(bin())
            .env("XDG_STATE_HOME", &state)
            .args([
                "backup",
                src.to_str().unwrap(),
                "-N",
                "rcp",
                "--hostname",
                "h",
                "-C",
                c.to_str().unwrap(),
                "--max-level",
                "3",
                "--encrypt-recipient",
                &recipient,
            ])
            .output()
            .unwrap();
        assert_code(&out, 0);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("level {level}")));
        let s = t.path().join(format!("s{level}"));
        copy_tree(&src, &s);
        states.push(s);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let id = t.path().join("id.txt");
    restore_each(&c, "rcp", &states, &["--encrypt-identity-file", id.to_str().unwrap()]);
    let data = level_dirs(&c, "h_rcp")[1].join("data");
    let listing =
        sh(&format!("age -d -i '{}' '{}' | zstd -dc | tar -t", id.display(), data.display()));
    assert!(listing.contains("./added"), "{listing}");
}

#[test]
fn openssl_cfb_chain_is_what_openssl_and_gnu_tar_read() {
    let t = tempfile::tempdir().unwrap();
    let pf = pass_file(t.path());
    let args = [
        "--encrypt-pass-file",
        pf.to_str().unwrap(),
        "--encryption",
        "openssl-aes-256-cfb",
        "--compression",
        "gzip",
    ];
    let (c, states) = chain(t.path(), "cfb", &args);
    restore_each(&c, "cfb", &states, &["--encrypt-pass-file", pf.to_str().unwrap()]);
    let out = t.path().join("by-openssl");
    fs::create_dir(&out).unwrap();
    for d in level_dirs(&c, "h_cfb") {
        assert!(fs::read(d.join("data")).unwrap().starts_with(b"Salted__"));
        // freezer-agent leaves the snapshot plain; so do we in its format.
        assert!(fs::read(d.join("engine_metadata")).unwrap().starts_with(b"GNU tar-"));
        sh(&format!(
            "openssl enc -d -aes-256-cfb -pass file:'{}' -in '{}' 2>/dev/null | tar -xz --incremental -C '{}'",
            pf.display(),
            d.join("data").display(),
            out.display()
        ));
    }
    assert_eq!(manifest(&out, true), manifest(&states[2], true));
}

/// A level made by `tar | gzip | openssl enc -md MD`, stored as freezer-agent would.
fn openssl_made(container: &Path, src: &Path, pf: &Path, md: &str) {
    let d = container.join("data/tar/h_ossl/1700000000/0_1700000000");
    fs::create_dir_all(&d).unwrap();
    sh(&format!(
        "tar -c -z --listed-incremental='{}' -C '{}' . | openssl enc -aes-256-cfb -md {md} -pass file:'{}' -out '{}' 2>/dev/null",
        d.join("engine_metadata").display(),
        src.display(),
        pf.display(),
        d.join("data").display()
    ));
    let m = container.join("metadata/tar/h_ossl/1700000000/0_1700000000");
    fs::create_dir_all(&m).unwrap();
    fs::write(
        m.join("metadata"),
        r#"{"engine_name": "tar", "compression": "gzip", "encryption": true}"#,
    )
    .unwrap();
}

#[test]
fn openssl_made_backups_restore_with_either_digest() {
    for md in ["sha256", "md5"] {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        sample_tree(&src);
        let pf = pass_file(t.path());
        let c = t.path().join("c");
        openssl_made(&c, &src, &pf, md);
        let dest = t.path().join("dest");
        freezer_ok([
            "restore",
            dest.to_str().unwrap(),
            "-N",
            "ossl",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--encrypt-pass-file",
            pf.to_str().unwrap(),
        ]);
        assert_eq!(manifest(&dest, true), manifest(&src, true), "{md}");
        // Forcing the other digest is a wrong key, before anything is written.
        let other = if md == "md5" { "sha256" } else { "md5" };
        let dest2 = t.path().join("dest2");
        let out = freezer([
            "restore",
            dest2.to_str().unwrap(),
            "-N",
            "ossl",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--encrypt-pass-file",
            pf.to_str().unwrap(),
            "--openssl-md",
            other,
        ]);
        assert_code(&out, 6);
    }
}

#[test]
fn wrong_missing_key_and_damage_are_refused_clearly() {
    let t = tempfile::tempdir().unwrap();
    let pf = pass_file(t.path());
    let (c, _) =
        chain(t.path(), "bad", &["--encrypt-pass-file", pf.to_str().unwrap(), "-M", "64K"]);
    let wrong = t.path().join("wrong");
    fs::write(&wrong, "not it\n").unwrap();
    fs::set_permissions(&wrong, fs::Permissions::from_mode(0o600)).unwrap();
    let dest = t.path().join("dest");
    let base = [
        "restore",
        dest.to_str().unwrap(),
        "-N",
        "bad",
        "--hostname",
        "h",
        "-C",
        c.to_str().unwrap(),
    ];

    let out = freezer(base.iter().chain(&["--encrypt-pass-file", wrong.to_str().unwrap()]));
    assert_code(&out, 6);
    assert!(
        stderr(&out).contains("cannot decrypt") && !stderr(&out).contains("not it"),
        "{}",
        stderr(&out)
    );
    assert!(!dest.exists() || fs::read_dir(&dest).unwrap().next().is_none(), "nothing restored");

    let out = freezer(base);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--encrypt-pass-file"), "{}", stderr(&out));

    // Damage to level 1: a flipped byte, a truncation, two segments swapped.
    let data = level_dirs(&c, "h_bad")[1].join("data");
    let good = fs::read(&data).unwrap();
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x40;
    let cut = good[..good.len() - 1000].to_vec();
    let mut swapped = good.clone();
    assert!(good.len() > 3 * 65536, "several 64K segments");
    swapped[65536..131072].copy_from_slice(&good[131072..196608]);
    swapped[131072..196608].copy_from_slice(&good[65536..131072]);
    for (what, bytes) in [("flipped", flipped), ("truncated", cut), ("swapped", swapped)] {
        fs::write(&data, &bytes).unwrap();
        let d = t.path().join(format!("dest-{what}"));
        let out = freezer([
            "restore",
            d.to_str().unwrap(),
            "-N",
            "bad",
            "--hostname",
            "h",
            "-C",
            c.to_str().unwrap(),
            "--encrypt-pass-file",
            pf.to_str().unwrap(),
        ]);
        assert_code(&out, 5);
        let err = stderr(&out);
        assert!(
            err.contains("level 1") && err.contains("h_bad/1_"),
            "{what}: names the backup and level: {err}"
        );
    }
    fs::write(&data, &good).unwrap();
}

#[test]
fn pass_file_readable_by_others_is_a_warning_and_secrets_stay_out_of_logs() {
    let t = tempfile::tempdir().unwrap();
    let pf = pass_file(t.path());
    fs::set_permissions(&pf, fs::Permissions::from_mode(0o644)).unwrap();
    let src = t.path().join("src");
    write(&src.join("f"), "x");
    let c = t.path().join("c");
    let log = t.path().join("log");
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-N",
        "w",
        "-C",
        c.to_str().unwrap(),
        "--encrypt-pass-file",
        pf.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        "--debug",
    ]);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    let everything = format!(
        "{}{}{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout),
        fs::read_to_string(&log).unwrap()
    );
    assert!(!everything.contains(PASS));
    let stored = sh(&format!("grep -rl '{PASS}' '{}' || true", c.display()));
    assert!(stored.trim().is_empty(), "passphrase stored in {stored}");
}
