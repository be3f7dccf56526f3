//! The text of the main errors a newcomer meets, rendered by the binary and compared whole,
//! so that they stay short, name the problem and the fix, and do not repeat themselves.

use crate::support::*;

/// Run and return stderr with the temp dir replaced by `T`.
fn message(t: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .env_remove("OS_AUTH_URL")
        .env_remove("ST_AUTH")
        .env_remove("OS_CLOUD")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8_lossy(&out.stderr).replace(t.to_str().unwrap(), "T").trim_end().to_string()
}

#[test]
fn main_errors_read_well() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("file");
    write(&f, "x");
    let c = t.path().join("c");
    let (fs, cs) = (f.to_str().unwrap(), c.to_str().unwrap());
    let under_file = format!("{fs}/sub");
    let existing = t.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    let es = existing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["restore", &under_file, "-C", fs],
            "freezer: error: the container does not exist: local directory T/file; check --container and --storage".into(),
        ),
        (
            vec!["list", "-C", cs],
            "freezer: error: the container does not exist: local directory T/c; check --container and --storage".into(),
        ),
        (
            vec!["restore", "/tmp/x", "-C", es, "--restore-from-date", "2026-02-30T00:00:00"],
            "freezer: error: cannot read the date \"2026-02-30T00:00:00\": that day does not exist in that month; use YYYY-MM-DDThh:mm:ss (local time, as freezer-agent takes it; a space may replace the T) or RFC 3339 with an offset (2026-11-20T03:00:00Z, 2026-11-20T03:00:00+01:00)".into(),
        ),
        (
            vec!["backup", fs, "-C", cs, "--encrypt-pass-file", "/nonexistent/key"],
            "freezer: error: cannot read --encrypt-pass-file /nonexistent/key: No such file or directory (os error 2)".into(),
        ),
        (
            vec!["backup", "/nonexistent/src", "-C", cs],
            "freezer: error: the path to back up /nonexistent/src does not exist".into(),
        ),
        (
            vec!["backup", fs, "-C", cs, "--storage", "swift"],
            "freezer: error: no Swift credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (or source an openrc file, or pick a clouds.yaml entry with OS_CLOUD / --os-cloud, or set ST_AUTH, ST_USER and ST_KEY for tempauth)".into(),
        ),
        (
            vec!["--action", "backup", "-F", fs, "-C", cs, "--nova-inst-id", "1a2b"],
            "freezer: error: --nova-inst-id (Nova backups) is not supported yet by this version of freezer".into(),
        ),
    ];
    for (args, want) in cases {
        assert_eq!(message(t.path(), &args), want, "{args:?}");
    }
}
