//! Both formats against the real `age` and `openssl` CLIs, in both directions.

use std::fs;
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;

use super::*;

fn sh(cmd: &str) {
    let out = Command::new("bash").arg("-ec").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

fn data(n: usize) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect()
}

fn pass_file(dir: &Path, pass: &str) -> Passphrase {
    let p = dir.join("pass");
    fs::write(&p, format!("{pass}\nsecond line is ignored\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    read_pass_file(&p).unwrap()
}

fn accept(_: &[u8]) -> bool {
    true
}

#[test]
fn cfb_matches_openssl_both_ways_and_both_digests() {
    let t = tempfile::tempdir().unwrap();
    let plain = data(300_001);
    let pass = pass_file(t.path(), "s3cret pass");
    fs::write(t.path().join("plain"), &plain).unwrap();
    // Ours → openssl.
    let ours =
        encrypt_bytes(Format::OpensslAes256Cfb, &EncryptKey::Passphrase(pass), &plain).unwrap();
    fs::write(t.path().join("ours.enc"), &ours).unwrap();
    sh(&format!(
        "cd {} && openssl enc -d -aes-256-cfb -pass file:pass -in ours.enc -out ours.dec 2>/dev/null",
        t.path().display()
    ));
    assert_eq!(fs::read(t.path().join("ours.dec")).unwrap(), plain);
    // openssl → ours, with each digest; detection picks the right one by the plaintext check.
    let starts_right = |b: &[u8]| b.starts_with(&plain[..16]);
    for md in ["sha256", "md5"] {
        sh(&format!(
            "cd {} && openssl enc -aes-256-cfb -md {md} -pass file:pass -in plain -out {md}.enc 2>/dev/null",
            t.path().display()
        ));
        let enc = fs::read(t.path().join(format!("{md}.enc"))).unwrap();
        let key = DecryptKey::Passphrase(pass_file(t.path(), "s3cret pass"));
        let got = decrypt_bytes(Format::OpensslAes256Cfb, &key, &enc, None, &starts_right).unwrap();
        assert_eq!(got, plain, "{md}");
        // Forcing the wrong digest fails as a wrong key.
        let wrong = if md == "md5" { Md::Sha256 } else { Md::Md5 };
        let e = decrypt_bytes(Format::OpensslAes256Cfb, &key, &enc, Some(wrong), &starts_right)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongKey);
    }
}

#[test]
fn cfb_wrong_passphrase_is_detected_up_front() {
    let t = tempfile::tempdir().unwrap();
    let plain = data(10_000);
    let enc = encrypt_bytes(
        Format::OpensslAes256Cfb,
        &EncryptKey::Passphrase(pass_file(t.path(), "right")),
        &plain,
    )
    .unwrap();
    let key = DecryptKey::Passphrase(pass_file(t.path(), "wrong"));
    let e = decrypt_bytes(Format::OpensslAes256Cfb, &key, &enc, None, &|b: &[u8]| {
        b.starts_with(&plain[..8])
    })
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    assert!(
        !e.to_string().contains("wrong\n") && !e.to_string().contains("right"),
        "no secret in: {e}"
    );
}

#[test]
fn age_recipients_and_identities_with_the_age_cli() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().display();
    sh(&format!(
        "cd {dir} && age-keygen -o id.txt 2>/dev/null && age-keygen -y id.txt > recipient.txt"
    ));
    let recipient = fs::read_to_string(t.path().join("recipient.txt")).unwrap();
    let plain = data(1_000_003);
    let key = parse_recipients(&[recipient.trim().to_string()]).unwrap();
    fs::write(t.path().join("ours.age"), encrypt_bytes(Format::Age, &key, &plain).unwrap())
        .unwrap();
    sh(&format!("cd {dir} && age -d -i id.txt -o ours.dec ours.age"));
    assert_eq!(fs::read(t.path().join("ours.dec")).unwrap(), plain);
    fs::write(t.path().join("plain"), &plain).unwrap();
    sh(&format!("cd {dir} && age -R recipient.txt -o cli.age plain"));
    let id = read_identity_file(&t.path().join("id.txt")).unwrap();
    let got = decrypt_bytes(
        Format::Age,
        &id,
        &fs::read(t.path().join("cli.age")).unwrap(),
        None,
        &accept,
    )
    .unwrap();
    assert_eq!(got, plain);
    // Another identity cannot decrypt: a wrong key, not damage.
    sh(&format!("cd {dir} && age-keygen -o other.txt 2>/dev/null"));
    let other = read_identity_file(&t.path().join("other.txt")).unwrap();
    let e = decrypt_bytes(
        Format::Age,
        &other,
        &fs::read(t.path().join("cli.age")).unwrap(),
        None,
        &accept,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
}

#[test]
fn age_passphrase_with_the_age_cli() {
    // The age CLI reads passphrases from a terminal only: script(1) gives it one.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().display();
    let plain = data(200_000);
    let pass = pass_file(t.path(), "correct horse battery");
    fs::write(
        t.path().join("ours.age"),
        encrypt_bytes(Format::Age, &EncryptKey::Passphrase(pass), &plain).unwrap(),
    )
    .unwrap();
    sh(&format!(
        "cd {dir} && printf 'correct horse battery\\n' | script -qec 'age -d -o ours.dec ours.age' /dev/null >/dev/null"
    ));
    assert_eq!(fs::read(t.path().join("ours.dec")).unwrap(), plain);
    fs::write(t.path().join("plain"), &plain).unwrap();
    sh(&format!(
        "cd {dir} && printf 'correct horse battery\\ncorrect horse battery\\n' | script -qec 'age -p -o cli.age plain' /dev/null >/dev/null"
    ));
    let key = DecryptKey::Passphrase(pass_file(t.path(), "correct horse battery"));
    let got = decrypt_bytes(
        Format::Age,
        &key,
        &fs::read(t.path().join("cli.age")).unwrap(),
        None,
        &accept,
    )
    .unwrap();
    assert_eq!(got, plain);
    let wrong = DecryptKey::Passphrase(pass_file(t.path(), "incorrect"));
    let e = decrypt_bytes(
        Format::Age,
        &wrong,
        &fs::read(t.path().join("cli.age")).unwrap(),
        None,
        &accept,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
}

#[test]
fn age_detects_tampering_and_truncation() {
    let t = tempfile::tempdir().unwrap();
    let plain = data(500_000);
    let key = EncryptKey::Passphrase(pass_file(t.path(), "k"));
    let dkey = DecryptKey::Passphrase(pass_file(t.path(), "k"));
    let enc = encrypt_bytes(Format::Age, &key, &plain).unwrap();
    let mut flipped = enc.clone();
    let i = enc.len() / 2;
    flipped[i] ^= 1;
    assert_eq!(
        decrypt_bytes(Format::Age, &dkey, &flipped, None, &accept).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    let truncated = &enc[..enc.len() - 70_000];
    assert_eq!(
        decrypt_bytes(Format::Age, &dkey, truncated, None, &accept).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    // Swap two 64 KiB payload chunks (age's chunk size): authentication fails too.
    let header_end = enc.windows(4).position(|w| w == b"--- ").unwrap();
    let payload = enc[header_end..].iter().position(|&b| b == b'\n').unwrap() + header_end + 1 + 16;
    let mut swapped = enc.clone();
    let (a, b) = (payload, payload + 65_552);
    let chunk_a = enc[a..a + 65_552].to_vec();
    swapped[a..a + 65_552].copy_from_slice(&enc[b..b + 65_552]);
    swapped[b..b + 65_552].copy_from_slice(&chunk_a);
    assert_eq!(
        decrypt_bytes(Format::Age, &dkey, &swapped, None, &accept).unwrap_err().kind(),
        ErrorKind::Corrupt
    );
}

#[test]
fn pass_file_is_read_like_openssl_and_never_shown() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("pf");
    fs::write(&p, "line one\r\nline two\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let pass = read_pass_file(&p).unwrap(); // readable by others: a warning, not a failure
    assert_eq!(pass.secret.expose_secret(), "line one\r", "as openssl: only the newline goes");
    assert!(!format!("{pass:?}").contains("line one"));
    fs::write(&p, "x".repeat(1024)).unwrap();
    assert_eq!(read_pass_file(&p).unwrap_err().kind(), ErrorKind::Usage);
    fs::write(&p, "\n").unwrap();
    assert_eq!(read_pass_file(&p).unwrap_err().kind(), ErrorKind::Usage);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_write_and_read_sizes_round_trip(
        len in 0usize..300_000,
        writes in prop::collection::vec(1usize..100_000, 1..8),
        read_size in 1usize..100_000,
        cfb in any::<bool>(),
    ) {
        let t = tempfile::tempdir().unwrap();
        let plain = data(len);
        let format = if cfb { Format::OpensslAes256Cfb } else { Format::Age };
        let mut w = encryptor(format, &EncryptKey::Passphrase(pass_file(t.path(), "p")), Vec::new()).unwrap();
        let mut at = 0;
        let mut i = 0;
        while at < plain.len() {
            let n = writes[i % writes.len()].min(plain.len() - at);
            w.write_all(&plain[at..at + n]).unwrap();
            at += n;
            i += 1;
        }
        let enc = w.finish().unwrap();
        let key = DecryptKey::Passphrase(pass_file(t.path(), "p"));
        let want = plain.clone();
        let check = move |b: &[u8]| want.starts_with(b) || b.starts_with(&want);
        let mut r = decryptor(format, &key, &enc[..], None, &check).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 { break; }
            out.extend_from_slice(&buf[..n]);
        }
        prop_assert_eq!(out, plain);
    }
}
