//! `--pre-exec`/`--post-exec` around a backup without a snapshot, and freezer-agent's
//! `--action exec --command`: order and failure semantics, observed through a log the hooks
//! write.

use std::path::Path;

use crate::support::*;

/// Hooks that append `<which> <number of visible backups>` to `log`.
fn hooks(log: &Path, c: &Path, pre_rc: u8, post_rc: u8) -> [String; 4] {
    let hook = |which: &str, rc: u8| {
        format!(
            "echo {which} $(find {} -name metadata -type f 2>/dev/null | wc -l) >> {}; \
             [ {rc} = 0 ] || {{ echo {which} is unhappy >&2; exit {rc}; }}",
            c.display(),
            log.display()
        )
    };
    ["--pre-exec".into(), hook("pre", pre_rc), "--post-exec".into(), hook("post", post_rc)]
}

fn backup(src: &Path, c: &Path, hooks: &[String]) -> std::process::Output {
    let mut args: Vec<String> =
        ["backup", src.to_str().unwrap(), "-C", c.to_str().unwrap()].map(String::from).to_vec();
    args.extend(["-N".into(), "b".into()]);
    args.extend_from_slice(hooks);
    freezer(args)
}

#[test]
fn without_a_snapshot_the_post_hook_runs_after_the_backup() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, log) = (t.path().join("src"), t.path().join("c"), t.path().join("log"));
    write(&src.join("f"), "x");
    let out = backup(&src, &c, &hooks(&log, &c, 0, 0));
    assert_code(&out, 0);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre 0\npost 1\n");
}

#[test]
fn a_failing_pre_hook_stores_nothing_and_the_post_hook_still_runs() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, log) = (t.path().join("src"), t.path().join("c"), t.path().join("log"));
    write(&src.join("f"), "x");
    let out = backup(&src, &c, &hooks(&log, &c, 5, 0));
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("the pre-exec hook failed (exit status: 5)"), "{err}");
    assert!(err.contains("saying \"pre is unhappy\""), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre 0\npost 0\n");
    let data = sh(&format!("find {} -path '*/data/*' 2>/dev/null || true", c.display()));
    assert_eq!(data, "", "no data stored");
}

#[test]
fn a_failing_post_hook_keeps_the_backup_and_exits_3() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, log) = (t.path().join("src"), t.path().join("c"), t.path().join("log"));
    write(&src.join("f"), "x");
    let out = backup(&src, &c, &hooks(&log, &c, 0, 9));
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("the post-exec hook failed (exit status: 9)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre 0\npost 1\n");
    let r = t.path().join("r");
    freezer_ok(["restore", r.to_str().unwrap(), "-C", c.to_str().unwrap(), "-N", "b"]);
    assert_eq!(std::fs::read_to_string(r.join("f")).unwrap(), "x");
}

#[test]
fn hook_output_goes_to_the_log_not_to_stdout() {
    let t = tempfile::tempdir().unwrap();
    let (src, c, logf) = (t.path().join("src"), t.path().join("c"), t.path().join("freezer.log"));
    write(&src.join("f"), "x");
    let out = freezer([
        "--action",
        "backup",
        "-F",
        src.to_str().unwrap(),
        "-C",
        c.to_str().unwrap(),
        "-N",
        "b",
        "--storage",
        "local",
        "--metadata-out",
        "-",
        "--log-file",
        logf.to_str().unwrap(),
        "--pre-exec",
        "echo hello from the hook",
    ]);
    assert_code(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let log = std::fs::read_to_string(&logf).unwrap();
    assert!(log.contains("pre-exec: hello from the hook"), "{log}");
}

#[test]
fn the_exec_action_runs_its_command_and_fails_with_it() {
    let t = tempfile::tempdir().unwrap();
    let out_file = t.path().join("out");
    let cmd = format!("echo one two | wc -w > {}", out_file.display());
    freezer_ok(["--action", "exec", "--command", &cmd]);
    assert_eq!(std::fs::read_to_string(&out_file).unwrap().trim(), "2");
    let out = freezer(["--action", "exec", "--command", "exit 4"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("--command failed (exit status: 4)"), "{}", stderr(&out));
    let out = freezer(["--action", "exec"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--action exec needs --command"), "{}", stderr(&out));
}
