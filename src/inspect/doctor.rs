//! `stagebox doctor`: what this host can do, and for each thing that will not work, what
//! and why. Everything is read from the kernel (/proc, uname, stat); nothing is changed.

use crate::error::{Error, Result};
use crate::kernel::mountinfo::{self, Mount};
use serde::Serialize;
use std::path::Path;

/// How cgroups are mounted (the cgroup library's detection).
pub use crate::cgroup::LayoutKind as CgroupLayout;

/// Tells the cgroup layout from a /proc/PID/mountinfo text.
pub fn cgroup_layout_from_mountinfo(text: &str) -> CgroupLayout {
    crate::cgroup::Layout::from_mountinfo(text).kind()
}

/// Where cgroup2 is mounted (the first cgroup2 line), if anywhere.
pub fn cgroup2_mount_point(mounts: &[Mount]) -> Option<String> {
    mounts
        .iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.clone())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn marker(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorCheck {
    /// Stable name: root, kernel, proc, namespaces, cgroups, overlayfs, user_namespaces,
    /// busybox, pivot_root.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub found: String,
    /// For warn and fail: what will not work, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserNamespaces {
    /// /proc/sys/user/max_user_namespaces.
    pub max_user_namespaces: Option<u64>,
    /// /proc/sys/kernel/unprivileged_userns_clone (Debian/Ubuntu kernels only).
    pub unprivileged_userns_clone: Option<bool>,
    /// /proc/sys/kernel/apparmor_restrict_unprivileged_userns (Ubuntu 23.10 and later).
    pub apparmor_restrict_unprivileged_userns: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Doctor {
    pub root: bool,
    pub euid: u32,
    pub kernel: Option<String>,
    pub proc_mounted: bool,
    /// Namespace kinds this kernel lacks (no /proc/self/ns link).
    pub missing_namespaces: Vec<String>,
    pub cgroup_layout: CgroupLayout,
    pub cgroup2_mount: Option<String>,
    /// cgroup.controllers of the cgroup2 mount (the controllers v2 can use).
    pub cgroup2_controllers: Option<Vec<String>>,
    pub overlayfs: bool,
    pub user_namespaces: UserNamespaces,
    pub busybox_static: bool,
    pub root_fs_type: Option<String>,
    pub pivot_root: bool,
    pub checks: Vec<DoctorCheck>,
}

fn read_num(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads the host and decides each check.
pub fn collect() -> Doctor {
    let euid = nix::unistd::geteuid().as_raw();
    let root = euid == 0;
    let kernel = crate::inspect::probe::uname().map(|u| u.release);
    let proc_mounted = Path::new("/proc/self").exists();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
    let mounts = mountinfo
        .as_deref()
        .map(mountinfo::parse)
        .unwrap_or_default();
    let cgroup_layout = mountinfo
        .as_deref()
        .map(cgroup_layout_from_mountinfo)
        .unwrap_or(CgroupLayout::None);
    let cgroup2_mount = cgroup2_mount_point(&mounts);
    let cgroup2_controllers: Option<Vec<String>> = cgroup2_mount.as_ref().and_then(|m| {
        std::fs::read_to_string(Path::new(m).join("cgroup.controllers"))
            .ok()
            .map(|t| t.split_whitespace().map(str::to_string).collect())
    });
    let overlayfs = std::fs::read_to_string("/proc/filesystems")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false);
    let user_namespaces = UserNamespaces {
        max_user_namespaces: read_num("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read_num("/proc/sys/kernel/unprivileged_userns_clone")
            .map(|v| v != 0),
        apparmor_restrict_unprivileged_userns: read_num(
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        )
        .map(|v| v != 0),
    };
    let busybox_static =
        crate::rootfs::default::is_static_binary(Path::new(crate::rootfs::default::BUSYBOX));
    let root_fs_type = crate::inspect::probe::root_fs_type(&mounts);
    let pivot_root = matches!(root_fs_type.as_deref(), Some(fs) if fs != "rootfs" && fs != "ramfs");
    let missing_namespaces: Vec<String> = if proc_mounted {
        crate::inspect::probe::NAMESPACES
            .iter()
            .filter(|n| std::fs::symlink_metadata(format!("/proc/self/ns/{n}")).is_err())
            .map(|n| n.to_string())
            .collect()
    } else {
        Vec::new()
    };

    let mut checks = Vec::new();
    let mut add = |name, status, found: String, problem: Option<String>| {
        checks.push(DoctorCheck {
            name,
            status,
            found,
            problem,
        })
    };

    if root {
        add("root", Status::Ok, "running as root (euid 0)".into(), None);
    } else {
        add(
            "root",
            Status::Fail,
            format!("not root (euid {euid})"),
            Some(
                "not root: stagebox run needs root until the user stage exists; run it with sudo"
                    .into(),
            ),
        );
    }
    match &kernel {
        Some(k) => add("kernel", Status::Ok, format!("Linux {k}"), None),
        None => add(
            "kernel",
            Status::Warn,
            "uname(2) failed".into(),
            Some("kernel version unknown: uname(2) failed".into()),
        ),
    }
    if proc_mounted {
        add("proc", Status::Ok, "/proc is mounted".into(), None);
    } else {
        add(
            "proc",
            Status::Fail,
            "/proc is not mounted".into(),
            Some("/proc is not mounted: the tracer reads every stage's effect from /proc, and most checks here cannot be made; mount proc on /proc".into()),
        );
    }
    if !proc_mounted {
        add(
            "namespaces",
            Status::Warn,
            "unknown (no /proc)".into(),
            Some("namespace support unknown: /proc/self/ns cannot be read without /proc".into()),
        );
    } else if missing_namespaces.is_empty() {
        add(
            "namespaces",
            Status::Ok,
            format!(
                "all of {} present",
                crate::inspect::probe::NAMESPACES.join(" ")
            ),
            None,
        );
    } else {
        add(
            "namespaces",
            Status::Warn,
            format!("missing: {}", missing_namespaces.join(" ")),
            Some(format!(
                "this kernel has no {} namespace (no /proc/self/ns link): stages that create one will fail; the time namespace needs Linux 5.6, cgroup 4.6",
                missing_namespaces.join(", ")
            )),
        );
    }
    let v2_where = cgroup2_mount.clone().unwrap_or_default();
    let v1_names: Vec<&str> = mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup")
        .map(|m| m.mount_point.rsplit('/').next().unwrap_or(&m.mount_point))
        .collect();
    let v1_list = v1_names.join(" ");
    let ctrls = cgroup2_controllers
        .as_ref()
        .map(|c| {
            if c.is_empty() {
                "no controllers".to_string()
            } else {
                c.join(" ")
            }
        })
        .unwrap_or_else(|| "controllers unknown".into());
    match cgroup_layout {
        CgroupLayout::V2 => add(
            "cgroups",
            Status::Ok,
            format!("v2 (unified) at {v2_where}: {ctrls}"),
            None,
        ),
        CgroupLayout::Hybrid => add(
            "cgroups",
            Status::Ok,
            format!(
                "hybrid: limits through the v1 hierarchies ({v1_list}); cgroup2 at {v2_where} ({ctrls}) for membership and cgroup.kill"
            ),
            None,
        ),
        CgroupLayout::V1 => add(
            "cgroups",
            Status::Ok,
            format!("v1 only ({v1_list}): limits through the v1 hierarchies, cleanup kills by pid"),
            None,
        ),
        CgroupLayout::None => add(
            "cgroups",
            Status::Fail,
            if mountinfo.is_some() { "none mounted".into() } else { "unknown (no mountinfo)".into() },
            Some("cgroups: no cgroup filesystem is mounted (or /proc/self/mountinfo is unreadable), so no cgroup can be made".into()),
        ),
    }
    if overlayfs {
        add(
            "overlayfs",
            Status::Ok,
            "overlay in /proc/filesystems".into(),
            None,
        );
    } else {
        add(
            "overlayfs",
            Status::Warn,
            "overlay not in /proc/filesystems".into(),
            Some("overlayfs: the kernel does not list overlay, so image layers cannot be mounted as one root (it may be a module: modprobe overlay)".into()),
        );
    }
    let un = &user_namespaces;
    match un.max_user_namespaces {
        Some(0) => add(
            "user_namespaces",
            Status::Fail,
            "max_user_namespaces = 0".into(),
            Some("user namespaces: switched off (/proc/sys/user/max_user_namespaces is 0), so the user stage cannot work".into()),
        ),
        None => add(
            "user_namespaces",
            Status::Warn,
            "unknown".into(),
            Some("user namespaces: /proc/sys/user/max_user_namespaces is unreadable (no user namespace support, or no /proc)".into()),
        ),
        Some(n) => {
            let mut found = format!("max_user_namespaces = {n}");
            let mut problems = Vec::new();
            if let Some(v) = un.unprivileged_userns_clone {
                found.push_str(&format!(", unprivileged_userns_clone = {}", v as u8));
                if !v {
                    problems.push("kernel.unprivileged_userns_clone is 0: only root may create user namespaces, so rootless runs will fail");
                }
            }
            if let Some(v) = un.apparmor_restrict_unprivileged_userns {
                found.push_str(&format!(", apparmor_restrict_unprivileged_userns = {}", v as u8));
                if v {
                    problems.push("AppArmor restricts unprivileged user namespaces: a rootless user namespace gets no capabilities unless a profile allows it");
                }
            }
            if problems.is_empty() {
                add("user_namespaces", Status::Ok, found, None);
            } else {
                add(
                    "user_namespaces",
                    Status::Warn,
                    found,
                    Some(format!("user namespaces: {}", problems.join("; "))),
                );
            }
        }
    }
    let bb = crate::rootfs::default::BUSYBOX;
    if busybox_static {
        add("busybox", Status::Ok, format!("{bb} is static"), None);
    } else {
        let found = match crate::rootfs::default::elf_kind(Path::new(bb)) {
            Ok(crate::rootfs::default::ElfKind::Dynamic(i)) => {
                format!("{bb} is dynamic (needs {i})")
            }
            Ok(_) => format!("{bb} is not an ELF binary"),
            Err(_) => format!("no {bb}"),
        };
        add(
            "busybox",
            Status::Warn,
            found,
            Some(format!(
                "busybox rootfs: no static {bb}, so the default rootfs is assembled from the host's own tools and their libraries; install busybox-static for a self-contained one"
            )),
        );
    }
    match &root_fs_type {
        Some(fs) if pivot_root => add("pivot_root", Status::Ok, format!("/ is a mount point ({fs})"), None),
        Some(fs) => add(
            "pivot_root",
            Status::Fail,
            format!("/ is {fs}"),
            Some(format!(
                "pivot_root: / is the initial {fs}, which pivot_root(2) cannot move (EINVAL); use --root-switch chroot, or boot with a real root"
            )),
        ),
        None => add(
            "pivot_root",
            Status::Warn,
            "unknown: no mount at / in mountinfo".into(),
            Some("pivot_root: cannot tell whether / is a mount point (no /proc/self/mountinfo, or no line for /)".into()),
        ),
    }

    Doctor {
        root,
        euid,
        kernel,
        proc_mounted,
        missing_namespaces,
        cgroup_layout,
        cgroup2_mount,
        cgroup2_controllers,
        overlayfs,
        user_namespaces,
        busybox_static,
        root_fs_type,
        pivot_root,
        checks,
    }
}

/// The report for people: one line per check with an ok/warn/fail marker, then what will
/// not work and why.
pub fn render_text(d: &Doctor) -> String {
    let width = d.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in &d.checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.status.marker(),
            c.name,
            c.found
        ));
    }
    let problems: Vec<&DoctorCheck> = d.checks.iter().filter(|c| c.problem.is_some()).collect();
    if problems.is_empty() {
        out.push_str("\nEverything stagebox needs is here.\n");
    } else {
        out.push_str("\nWhat will not work here, and why:\n");
        for c in problems {
            out.push_str(&format!(
                "  {:<4}  {}\n",
                c.status.marker(),
                c.problem.as_deref().unwrap_or_default()
            ));
        }
    }
    out
}

pub fn run(json: bool) -> Result<i32> {
    let d = collect();
    let text = if json {
        serde_json::to_string_pretty(&d)
            .map_err(|e| Error::usage(format!("encoding the doctor report: {e}")))?
            + "\n"
    } else {
        render_text(&d)
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("write the doctor report to stdout", e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
25 22 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 22 0:24 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 26 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const V1: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";

    const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn cgroup_layouts_are_told_apart() {
        assert_eq!(cgroup_layout_from_mountinfo(V2), CgroupLayout::V2);
        assert_eq!(cgroup_layout_from_mountinfo(V1), CgroupLayout::V1);
        assert_eq!(cgroup_layout_from_mountinfo(HYBRID), CgroupLayout::Hybrid);
        assert_eq!(
            cgroup_layout_from_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw\n"),
            CgroupLayout::None
        );
        assert_eq!(cgroup_layout_from_mountinfo(""), CgroupLayout::None);
        assert_eq!(
            cgroup2_mount_point(&mountinfo::parse(HYBRID)).as_deref(),
            Some("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            serde_json::to_string(&CgroupLayout::Hybrid).unwrap(),
            "\"hybrid\""
        );
    }

    #[test]
    fn this_host_is_reported_and_every_problem_says_why() {
        let d = collect();
        assert_eq!(d.root, nix::unistd::geteuid().is_root());
        assert_eq!(
            d.kernel.as_deref(),
            Some(crate::inspect::probe::uname().unwrap().release.as_str())
        );
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(d.cgroup_layout, cgroup_layout_from_mountinfo(&mi));
        let names: Vec<&str> = d.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "root",
                "kernel",
                "proc",
                "namespaces",
                "cgroups",
                "overlayfs",
                "user_namespaces",
                "busybox",
                "pivot_root"
            ]
        );
        for c in &d.checks {
            assert_eq!(c.status != Status::Ok, c.problem.is_some(), "{c:?}");
        }
        let text = render_text(&d);
        assert!(
            text.lines().next().unwrap().starts_with("ok ") || text.starts_with("fail"),
            "{text}"
        );
        let v = serde_json::to_value(&d).unwrap();
        for k in [
            "root",
            "kernel",
            "cgroup_layout",
            "overlayfs",
            "user_namespaces",
            "busybox_static",
            "pivot_root",
            "checks",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
