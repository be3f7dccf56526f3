//! `--max-priority`: run at the highest CPU and I/O priority, as freezer-agent does with
//! `os.nice(-19)` and `ionice -c 1 -n 0` — here with the system calls themselves, not a child
//! `ionice` process.
//!
//! On Linux both priorities belong to a thread and are inherited by threads started later, so
//! [`raise`] must run early, before the pipeline starts its threads.

use std::io;

use nix::libc;

use crate::error::{Error, ErrorKind, Result};

/// The nice value freezer-agent sets.
const NICE: libc::c_int = -19;

/// `ioprio_set` constants from `<linux/ioprio.h>`, which libc does not carry.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_PRIO_MASK: libc::c_int = (1 << IOPRIO_CLASS_SHIFT) - 1;
/// The real-time I/O class, `ionice -c 1`.
pub const IOPRIO_CLASS_RT: u8 = 1;

/// Whether the agent's `--max-priority VALUE` asks for it. The option is a string that takes
/// a dummy value, so any value turns it on except an empty one or `False`/`false` (what an INI
/// file's `max_priority = False` becomes).
pub fn requested(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty() || v.eq_ignore_ascii_case("false"))
}

/// A thread's CPU and I/O priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// The nice value, -20 (highest) to 19.
    pub nice: i32,
    /// The I/O scheduling class: 0 none, 1 real-time, 2 best-effort, 3 idle.
    pub io_class: u8,
    /// The level within the class, 0 (highest) to 7.
    pub io_level: u8,
}

/// Set nice -19 and the real-time I/O class at level 0 for the calling thread (and the threads
/// it starts afterwards). Without root (CAP_SYS_NICE; CAP_SYS_ADMIN for real-time I/O on
/// older kernels) this fails with a usage error saying so.
pub fn raise() -> Result<()> {
    // SAFETY: setpriority only reads its integer arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) } != 0 {
        return Err(failed(&format!("cannot set nice {NICE}"), io::Error::last_os_error()));
    }
    // IOPRIO_PRIO_VALUE(class, level), level 0 being the highest.
    let value = libc::c_int::from(IOPRIO_CLASS_RT) << IOPRIO_CLASS_SHIFT;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(failed("cannot set the real-time I/O class (ionice -c 1 -n 0)", e));
    }
    Ok(())
}

/// The calling thread's priority, e.g. to log it after [`raise`].
pub fn current() -> Result<Priority> {
    // getpriority may return -1 as a value: only errno tells a failure apart.
    nix::errno::Errno::clear();
    // SAFETY: getpriority only reads its integer arguments.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if nice == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(Error::io("cannot read the nice value", io::Error::last_os_error()));
    }
    // SAFETY: ioprio_get takes two integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
    let io = libc::c_int::try_from(rc).map_err(|_| {
        Error::io("cannot read the I/O priority", io::Error::other("out-of-range value"))
    })?;
    if io < 0 {
        return Err(Error::io("cannot read the I/O priority", io::Error::last_os_error()));
    }
    Ok(Priority {
        nice,
        io_class: u8::try_from(io >> IOPRIO_CLASS_SHIFT).unwrap_or(u8::MAX),
        io_level: u8::try_from(io & IOPRIO_PRIO_MASK).unwrap_or(u8::MAX),
    })
}

/// A refusal becomes a usage error that names the fix; anything else stays an I/O error.
fn failed(what: &str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => Error::new(
            ErrorKind::Usage,
            format!(
                "--max-priority: {what}: {e}; raising the priority needs root (or the \
                 CAP_SYS_NICE capability): run as root or drop --max-priority"
            ),
        ),
        _ => Error::io(format!("--max-priority: {what}"), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, Uid, fork, setuid};

    #[test]
    fn any_value_but_false_requests_it() {
        for on in ["True", "true", "1", "yes", "x", "0"] {
            assert!(requested(on), "{on}");
        }
        for off in ["", " ", "False", "false", "FALSE"] {
            assert!(!requested(off), "{off:?}");
        }
    }

    /// Run `child` in a forked process (priorities are per thread and would leak into the
    /// other tests) and return its exit code.
    fn in_child(child: fn() -> i32) -> i32 {
        // SAFETY: the child only makes system calls and formats small strings before _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = child();
                // SAFETY: leave without running the test harness's exit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, code) => code,
                other => panic!("child ended by {other:?}"),
            },
        }
    }

    #[test]
    fn raise_sets_nice_and_realtime_io() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: raising the priority needs root");
            return;
        }
        let code = in_child(|| {
            if raise().is_err() {
                return 10;
            }
            match current() {
                Ok(Priority { nice: -19, io_class: IOPRIO_CLASS_RT, io_level: 0 }) => 0,
                Ok(Priority { nice, .. }) if nice != -19 => 11,
                Ok(_) => 12,
                Err(_) => 13,
            }
        });
        assert_eq!(code, 0, "10: raise failed, 11: nice not -19, 12: I/O not RT 0, 13: read");
    }

    #[test]
    fn without_root_it_says_root_is_needed() {
        if !Uid::effective().is_root() {
            let e = raise().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
            return;
        }
        let code = in_child(|| {
            // Become nobody: all capabilities go.
            if setuid(Uid::from_raw(65534)).is_err() {
                return 20;
            }
            match raise() {
                Ok(()) => 21,
                Err(e) if e.kind() != ErrorKind::Usage => 22,
                Err(e) if !e.to_string().contains("needs root") => 23,
                Err(_) => 0,
            }
        });
        assert_eq!(code, 0, "20: setuid, 21: raise worked, 22: wrong kind, 23: wrong message");
    }
}
