//! Encryption is never silently off: an encrypted chain is not continued without its key, an
//! encryption format without a key is refused, a misspelt key in a job file is an error, and
//! recipient mode's local snapshot copies must be writable when incrementals are asked for.

use std::path::Path;

use crate::support::*;

fn pass(t: &Path) -> String {
    let p = t.join("pass");
    write(&p, "a long random pass phrase\n");
    chmod(&p, 0o600);
    p.to_str().unwrap().to_string()
}

#[test]
fn an_encrypted_chain_is_not_continued_in_plaintext() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("f"), "secret");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "backup",
            src.to_str().unwrap(),
            "-N",
            "k",
            "-C",
            c.to_str().unwrap(),
            "--max-level",
            "3",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let p = pass(t.path());
    freezer_ok(args(&["--encrypt-pass-file", &p]));
    tick();
    write(&src.join("g"), "more secret");
    let out = freezer(args(&[]));
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("is encrypted and no key was given: add --encrypt-pass-file"),
        "{}",
        stderr(&out)
    );
    let listed = freezer_ok(["list", "--json", "-C", c.to_str().unwrap()]);
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&listed.stdout).unwrap().len(), 1);
    // With the key it goes on.
    freezer_ok(args(&["--encrypt-pass-file", &p]));
}

#[test]
fn an_encryption_format_without_a_key_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("f"), "x");
    for format in ["age", "openssl-aes-256-cfb"] {
        let out = freezer([
            "backup",
            src.to_str().unwrap(),
            "-C",
            c.to_str().unwrap(),
            "--encryption",
            format,
        ]);
        assert_code(&out, 2);
        assert!(
            stderr(&out).contains(&format!("--encryption {format} needs a key")),
            "{}",
            stderr(&out)
        );
    }
    assert!(!c.exists());
}

#[test]
fn a_misspelt_key_in_a_job_file_is_an_error_or_a_hint() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("f"), "x");
    let p = pass(t.path());
    let ini = t.path().join("job.ini");
    let job = |line: &str| {
        write(
            &ini,
            format!(
                "[job]\naction = backup\npath_to_backup = {}\ncontainer = {}\n{line}\n",
                src.display(),
                c.display()
            ),
        );
        freezer(["--config", ini.to_str().unwrap()])
    };
    let out = job(&format!("encrypt_pass_flie = {p}"));
    assert_code(&out, 2);
    assert!(
        stderr(&out)
            .contains("unknown option 'encrypt_pass_flie'; did you mean 'encrypt_pass_file'?"),
        "{}",
        stderr(&out)
    );
    assert!(!c.exists(), "nothing was backed up in plaintext");
    let out = job("remove_older_thn = 7");
    assert_code(&out, 2);
    let out = job("max_levle = 3");
    assert_code(&out, 0);
    assert!(stderr(&out).contains("did you mean 'max_level'?"), "{}", stderr(&out));
}

#[test]
fn recipient_mode_needs_a_writable_state_directory_for_incrementals() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("f"), "x");
    sh(&format!("cd '{}' && age-keygen -o id.txt 2>/dev/null", t.path().display()));
    let recipient =
        sh(&format!("age-keygen -y '{}/id.txt'", t.path().display())).trim().to_string();
    // Under a regular file: no directory can be made there, even by root.
    let blocked = t.path().join("src/f/state");
    let run = |extra: &[&str]| {
        std::process::Command::new(bin())
            .args([
                "backup",
                src.to_str().unwrap(),
                "-N",
                "r",
                "-C",
                c.to_str().unwrap(),
                "--encrypt-recipient",
                &recipient,
            ])
            .args(extra)
            .env_remove("STATE_DIRECTORY")
            .env("XDG_STATE_HOME", &blocked)
            .output()
            .unwrap()
    };
    let out = run(&["--max-level", "3"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("need a writable state directory"), "{}", stderr(&out));
    let listed = freezer_ok(["list", "--json", "-C", c.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "[]",
        "the failed backup is not visible"
    );
    // A level 0 only (no incrementals asked for) needs no copy: a warning.
    let out = run(&[]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("cannot keep a local copy of the snapshot"), "{}", stderr(&out));
}

#[test]
fn the_pass_file_warning_is_said_once_and_state_directory_is_used() {
    let t = tempfile::tempdir().unwrap();
    let (src, c) = (t.path().join("src"), t.path().join("c"));
    write(&src.join("f"), "x");
    let p = t.path().join("open-pass");
    write(&p, "a long random pass phrase\n");
    chmod(&p, 0o644);
    let out = freezer_ok([
        "backup",
        src.to_str().unwrap(),
        "-C",
        c.to_str().unwrap(),
        "--encrypt-pass-file",
        p.to_str().unwrap(),
    ]);
    assert_eq!(stderr(&out).matches("can be read by other users").count(), 1, "{}", stderr(&out));
    // systemd's StateDirectory= arrives as $STATE_DIRECTORY: recipient mode keeps its copies there.
    sh(&format!("cd '{}' && age-keygen -o id.txt 2>/dev/null", t.path().display()));
    let recipient =
        sh(&format!("age-keygen -y '{}/id.txt'", t.path().display())).trim().to_string();
    let state = t.path().join("state");
    let out = std::process::Command::new(bin())
        .args([
            "backup",
            src.to_str().unwrap(),
            "-N",
            "r",
            "-C",
            c.to_str().unwrap(),
            "--encrypt-recipient",
            &recipient,
            "--max-level",
            "2",
        ])
        .env("STATE_DIRECTORY", &state)
        .output()
        .unwrap();
    assert_code(&out, 0);
    let copies = sh(&format!("find '{}' -name '*.snar' | wc -l", state.display()));
    assert_eq!(copies.trim(), "1", "the snapshot copy is under $STATE_DIRECTORY");
}
