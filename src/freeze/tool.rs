//! Running the system tools a snapshot needs (`lvcreate`, `mount`, `btrfs`…): their output is
//! captured, and a failure says which command failed and what it printed.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};

/// Run `program args…`; its stdout on success. On failure the error names the command line and
/// carries the tool's own message (stderr), which is what an operator needs to fix it.
pub(crate) fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let line = command_line(program, &args);
    log::debug!("running {line}");
    let out = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        // lvm warns about every inherited descriptor (our lock and pipes) on stderr.
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "; {program} is not installed (Debian: apt-get install {})",
                    package(program)
                ),
                _ => String::new(),
            };
            Error::io(format!("cannot run {line}{hint}"), e)
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr.trim();
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "{line} failed ({}){}",
            out.status,
            if said.is_empty() { String::new() } else { format!(": {said}") }
        ),
    ))
}

/// `program arg arg`, for messages; arguments with spaces quoted.
pub(crate) fn command_line(program: &str, args: &[std::ffi::OsString]) -> String {
    let mut line = program.to_string();
    for a in args {
        let a = a.to_string_lossy();
        line.push(' ');
        if a.contains(' ') || a.is_empty() {
            line.push_str(&format!("'{a}'"));
        } else {
            line.push_str(&a);
        }
    }
    line
}

fn package(program: &str) -> &'static str {
    match program {
        "btrfs" => "btrfs-progs",
        "mount" | "umount" => "mount",
        _ => "lvm2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_command_and_its_message() {
        let e = run("sh", ["-c", "echo oops >&2; exit 3"]).unwrap_err().to_string();
        assert!(e.contains("sh -c 'echo oops >&2; exit 3' failed"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.ends_with(": oops"), "{e}");
        assert_eq!(run("sh", ["-c", "echo hi"]).unwrap(), "hi\n");
    }

    #[test]
    fn a_missing_tool_says_which_package_has_it() {
        let e = run("lvcreate-that-does-not-exist", ["x"]).unwrap_err().to_string();
        assert!(e.contains("is not installed (Debian: apt-get install lvm2)"), "{e}");
    }
}
