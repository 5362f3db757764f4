//! The freezer: `pause` stops every process of a cgroup where it stands, `unpause` lets them
//! go on. A frozen process is not stopped by a signal (no SIGSTOP it could notice or a parent
//! could see in waitpid): the scheduler simply never runs it again until it is thawed.
//!
//! - v2: write `1` to `cgroup.freeze`; freezing takes a moment, and `cgroup.events` says
//!   `frozen 1` once every process is frozen (`0` to thaw).
//! - v1: the `freezer` controller: write `FROZEN` to `freezer.state`, which reads `FREEZING`
//!   until done, then `FROZEN` (`THAWED` to thaw).
//!
//! A SIGKILL reaches a process frozen by v2 (it dies), but on v1 it waits in the frozen
//! process until the cgroup is thawed: stop and kill thaw first, as Docker does.

use super::member::Member;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What freezing or thawing wrote and then read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The file written and the value: (`.../freezer.state`, `FROZEN`).
    pub wrote: (PathBuf, String),
    /// The file read back and what it said once settled: (`.../freezer.state`, `FROZEN`) or
    /// (`.../cgroup.events`, `frozen 1`).
    pub read: (PathBuf, String),
}

/// The freezer of these cgroups: the v1 freezer hierarchy if the process is in one, else v2.
fn pick(members: &[Member]) -> Option<&Member> {
    members.iter().find(|m| m.has("freezer")).or_else(|| {
        members
            .iter()
            .find(|m| m.is_v2() && m.dir.join("cgroup.freeze").exists())
    })
}

/// What the freezer says now: Some(true) frozen, Some(false) thawed, None no freezer.
pub fn state(members: &[Member]) -> Option<bool> {
    let m = pick(members)?;
    if m.is_v2() {
        let ev = std::fs::read_to_string(m.dir.join("cgroup.events")).ok()?;
        Some(super::keyed(&ev, "frozen")? == 1)
    } else {
        let s = std::fs::read_to_string(m.dir.join("freezer.state")).ok()?;
        Some(s.trim() == "FROZEN")
    }
}

/// Freezes (`frozen`) or thaws the cgroup, and waits up to 5 s for the kernel to say so.
pub fn set(members: &[Member], frozen: bool) -> Result<Outcome> {
    let Some(m) = pick(members) else {
        return Err(Error::usage(
            "the container is in no freezer cgroup (no v1 freezer hierarchy, no cgroup.freeze); it cannot be paused",
        ));
    };
    let (file, value, read, want) = if m.is_v2() {
        let v = if frozen { "1" } else { "0" };
        (
            m.dir.join("cgroup.freeze"),
            v,
            m.dir.join("cgroup.events"),
            format!("frozen {v}"),
        )
    } else {
        let v = if frozen { "FROZEN" } else { "THAWED" };
        let f = m.dir.join("freezer.state");
        (f.clone(), v, f, v.to_string())
    };
    std::fs::write(&file, value)
        .map_err(|e| Error::io(format!("write {value} to {}", file.display()), e))?;
    let start = Instant::now();
    loop {
        let now = std::fs::read_to_string(&read)
            .map_err(|e| Error::io(format!("read {}", read.display()), e))?;
        let settled = if m.is_v2() {
            now.lines().any(|l| l.trim() == want)
        } else {
            now.trim() == want
        };
        if settled {
            return Ok(Outcome {
                wrote: (file, value.to_string()),
                read: (read, want),
            });
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(Error::usage(format!(
                "{} still says {:?} 5 s after writing {value} to {}",
                read.display(),
                now.trim(),
                file.display()
            )));
        }
        if !m.is_v2() && frozen {
            // v1 retries the freeze of tasks that were busy when it is written again.
            let _ = std::fs::write(&file, value);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
