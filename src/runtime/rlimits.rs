//! `--ulimit NAME=SOFT[:HARD]`: resource limits (rlimits) for the container's processes.
//!
//! An rlimit is per process, not per container or per cgroup: every process has a soft and
//! a hard value for each resource (open files, processes, core size, stack ...). The kernel
//! enforces the soft one; a process may raise its soft limit up to the hard one, and lower
//! the hard one, but only CAP_SYS_RESOURCE raises a hard limit. Limits are inherited across
//! fork(2) and kept across execve(2), so setting them on the container process just before
//! it execs the workload gives them to the workload and to everything it starts. One
//! exception to "per process": RLIMIT_NPROC is checked against the number of processes of
//! the process's real uid, counted across the whole system (all containers whose root is the
//! same host uid share the count), which is why a pids limit in a cgroup is the better fork
//! bomb guard.
//!
//! The runtime sets them from outside with prlimit(2) on the container process while it
//! waits at the exec step (after every stage, so the caps stage's dropping of
//! CAP_SYS_RESOURCE does not matter: the runtime's own capability is what counts), then
//! reads /proc/PID/limits back and traces both.

use super::config::{Ulimit, ULIMIT_NAMES};
use crate::error::{Error, Result};

fn show(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Sets each limit on `pid` with prlimit(2) and reads /proc/PID/limits back; returns the
/// trace lines (the call, then what the kernel shows).
pub fn apply(pid: i32, ulimits: &[Ulimit]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for u in ulimits {
        let new = libc::rlimit {
            rlim_cur: u.soft,
            rlim_max: u.hard,
        };
        let call = format!(
            "prlimit({pid}, RLIMIT_{}, {{soft {}, hard {}}}, NULL)",
            u.name.to_uppercase(),
            show(u.soft),
            show(u.hard)
        );
        // SAFETY: prlimit reads `new` and writes nothing (old is NULL).
        let r = unsafe {
            libc::prlimit(
                pid,
                u.resource as libc::__rlimit_resource_t,
                &new,
                std::ptr::null_mut(),
            )
        };
        if r != 0 {
            let e = nix::errno::Errno::last();
            return Err(Error::Stage {
                stage: "ulimit".into(),
                message: format!(
                    "{call} failed: {}{}",
                    e.desc(),
                    if e == nix::errno::Errno::EPERM {
                        " (raising a hard limit needs CAP_SYS_RESOURCE)"
                    } else {
                        ""
                    }
                ),
            });
        }
        lines.push(format!("{call} = 0"));
        let (soft, hard) = read_back(pid, &u.name)?;
        if (soft.as_str(), hard.as_str()) != (show(u.soft).as_str(), show(u.hard).as_str()) {
            return Err(Error::Stage {
                stage: "ulimit".into(),
                message: format!(
                    "/proc/{pid}/limits shows {} {soft} {hard} after {call}: the limit did not take",
                    u.name
                ),
            });
        }
        lines.push(format!(
            "/proc/{pid}/limits: {} soft {soft}, hard {hard}",
            label(&u.name)
        ));
    }
    Ok(lines)
}

fn label(name: &str) -> &'static str {
    ULIMIT_NAMES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, l)| *l)
        .unwrap_or("")
}

/// The soft and hard values /proc/PID/limits shows for `name`.
pub fn read_back(pid: i32, name: &str) -> Result<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .map_err(|e| Error::io(format!("read /proc/{pid}/limits"), e))?;
    let label = label(name);
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(label)?;
            let mut it = rest.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .ok_or_else(|| Error::Stage {
            stage: "ulimit".into(),
            message: format!("/proc/{pid}/limits has no {label:?} line"),
        })
}
