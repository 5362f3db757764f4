//! Docker's masked and read-only paths (the lists its OCI spec carries by default).
//!
//! Masked: what a container must not read at all. /proc/kcore is the kernel's memory,
//! /proc/keys the host's keyrings, /proc/timer_list and /proc/sched_debug leak what other
//! processes on the host do, /sys/firmware the machine's firmware tables.
//! Read-only: kernel knobs the container may read but never turn: /proc/sys (sysctls such
//! as core_pattern, which runs a program on the host), /proc/sysrq-trigger (reboot, crash).

pub const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// One cgroup filesystem the container gets under /sys/fs/cgroup, as the host has it: the
/// paths stage mounts it afresh inside (read-only), where the cgroup namespace roots it at
/// the container's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupMount {
    /// The directory below /sys/fs/cgroup, as the host names it (`memory`, `cpu,cpuacct`,
    /// `systemd`, `unified`); empty for a pure v2 host, whose cgroup2 is /sys/fs/cgroup itself.
    pub dir: String,
    /// `cgroup` (a v1 hierarchy) or `cgroup2`.
    pub fs_type: String,
    /// A v1 hierarchy's controllers as mount options (`cpu,cpuacct`, `name=systemd`): a
    /// second mount of a hierarchy must name exactly its controllers. Empty for cgroup2.
    pub options: String,
}

/// Options of a v1 cgroup mount that are not controllers (mount(8) and cgroups(7)).
const V1_NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "xattr",
    "favordynmods",
    "nofavordynmods",
    "none",
];

/// What /sys/fs/cgroup holds on this host, from its mountinfo: one cgroup2 with an empty
/// `dir` on a pure v2 host; on v1 and hybrid hosts one entry per hierarchy (each superblock
/// once, the mount under /sys/fs/cgroup preferred), in mountinfo order. Empty when the host
/// mounts no cgroup filesystem.
pub fn cgroup_mounts(mounts: &[crate::kernel::mountinfo::Mount]) -> Vec<CgroupMount> {
    const TOP: &str = "/sys/fs/cgroup";
    let cgroups: Vec<&crate::kernel::mountinfo::Mount> = mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .collect();
    if let Some(v2) = cgroups
        .iter()
        .find(|m| m.fs_type == "cgroup2" && m.mount_point == TOP)
    {
        return vec![CgroupMount {
            dir: String::new(),
            fs_type: v2.fs_type.clone(),
            options: String::new(),
        }];
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    // Those under /sys/fs/cgroup first, so another mount of the same hierarchy elsewhere
    // does not decide its name.
    let (under, elsewhere): (Vec<_>, Vec<_>) = cgroups
        .into_iter()
        .partition(|m| m.mount_point.starts_with("/sys/fs/cgroup/"));
    let only_v2 = under
        .iter()
        .chain(&elsewhere)
        .all(|m| m.fs_type == "cgroup2");
    for m in under.iter().chain(&elsewhere) {
        if seen.contains(&m.dev.as_str()) {
            continue;
        }
        seen.push(&m.dev);
        let options = if m.fs_type == "cgroup" {
            m.super_opts
                .split(',')
                .filter(|o| !V1_NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent="))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            String::new()
        };
        let dir = match m.mount_point.strip_prefix("/sys/fs/cgroup/") {
            Some(d) if !d.is_empty() && !d.contains('/') => d.to_string(),
            _ if m.fs_type == "cgroup2" => "unified".to_string(),
            _ => options.replace("name=", ""),
        };
        if only_v2 {
            // A host with cgroup2 alone, mounted somewhere else: the container still gets
            // it at /sys/fs/cgroup, as on any v2 host.
            return vec![CgroupMount {
                dir: String::new(),
                fs_type: m.fs_type.clone(),
                options,
            }];
        }
        if dir.is_empty() || out.iter().any(|c: &CgroupMount| c.dir == dir) {
            continue;
        }
        out.push(CgroupMount {
            dir,
            fs_type: m.fs_type.clone(),
            options,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::mountinfo::parse;

    #[test]
    fn a_pure_v2_host_gives_one_cgroup2_at_the_top() {
        let m = parse(
            "25 1 0:21 / /sys rw - sysfs sysfs rw\n\
             30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            cgroup_mounts(&m),
            vec![CgroupMount {
                dir: "".into(),
                fs_type: "cgroup2".into(),
                options: "".into()
            }]
        );
    }

    #[test]
    fn a_hybrid_host_gives_each_hierarchy_once_with_its_controllers() {
        let m = parse(
            "31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             34 31 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd\n\
             35 31 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             36 1 0:30 /sub /mnt/mem rw - cgroup cgroup rw,memory\n",
        );
        let got: Vec<(String, String, String)> = cgroup_mounts(&m)
            .into_iter()
            .map(|c| (c.dir, c.fs_type, c.options))
            .collect();
        let want = [
            ("cpu,cpuacct", "cgroup", "cpu,cpuacct"),
            ("memory", "cgroup", "memory"),
            ("systemd", "cgroup", "name=systemd"),
            ("unified", "cgroup2", ""),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn no_cgroup_filesystem_gives_nothing() {
        let m = parse("25 1 0:21 / /sys rw - sysfs sysfs rw\n");
        assert!(cgroup_mounts(&m).is_empty());
    }
}
