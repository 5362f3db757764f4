//! What a cgroup uses right now, for `stats`: CPU time, memory and the number of processes,
//! each read from the controller's own file.
//!
//! | | v2 | v1 |
//! |---|---|---|
//! | CPU time | `cpu.stat` usage_usec | `cpuacct.usage` (ns) |
//! | memory | `memory.current` | `memory.usage_in_bytes` |
//! | memory limit | `memory.max` | `memory.limit_in_bytes` |
//! | processes | `pids.current` | `pids.current` |
//!
//! CPU % is a rate: two samples of the CPU time, a known wall time apart (Docker's `stats`
//! does the same, as a share of one CPU: 200% is two CPUs busy).

use super::member::Member;
use std::path::Path;

/// One reading; None where the host has no such file for this cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub cpu_usec: Option<u64>,
    pub memory: Option<u64>,
    /// None also when unlimited (`max`, or v1's huge number).
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
}

fn num(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Reads the usage of the cgroups a process is in ([`super::member::of_pid`]).
pub fn read(members: &[Member]) -> Usage {
    let mut u = Usage::default();
    for m in members {
        if m.is_v2() {
            let d = &m.dir;
            if let Ok(t) = std::fs::read_to_string(d.join("cpu.stat")) {
                u.cpu_usec = u.cpu_usec.or(super::keyed(&t, "usage_usec"));
            }
            u.memory = u.memory.or(num(&d.join("memory.current")));
            u.memory_limit = u.memory_limit.or(num(&d.join("memory.max")));
            u.pids = u.pids.or(num(&d.join("pids.current")));
        } else {
            if m.has("cpuacct") {
                u.cpu_usec = num(&m.dir.join("cpuacct.usage")).map(|ns| ns / 1000);
            }
            if m.has("memory") {
                u.memory = num(&m.dir.join("memory.usage_in_bytes"));
                // v1 says "no limit" with the largest page-aligned i64.
                u.memory_limit =
                    num(&m.dir.join("memory.limit_in_bytes")).filter(|l| *l < (1 << 62));
            }
            if m.has("pids") {
                u.pids = num(&m.dir.join("pids.current"));
            }
        }
    }
    u
}

/// CPU % between two readings `wall_usec` apart (a share of one CPU).
pub fn cpu_percent(before: &Usage, after: &Usage, wall_usec: u64) -> Option<f64> {
    let d = after.cpu_usec?.checked_sub(before.cpu_usec?)?;
    (wall_usec > 0).then(|| d as f64 * 100.0 / wall_usec as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_percent_is_a_share_of_one_cpu() {
        let a = super::Usage {
            cpu_usec: Some(1_000),
            ..Default::default()
        };
        let b = super::Usage {
            cpu_usec: Some(501_000),
            ..Default::default()
        };
        assert_eq!(super::cpu_percent(&a, &b, 1_000_000), Some(50.0));
        assert_eq!(super::cpu_percent(&a, &super::Usage::default(), 1), None);
    }
}
