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
    /// subuid, subgid, newuidmap, newgidmap, cgroup_delegation, busybox, pivot_root.
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

use crate::kernel::idmap::SubIdRange;

/// The name of the account with this uid in an /etc/passwd text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
    })
}

/// The subordinate ids of one file (/etc/subuid or /etc/subgid).
#[derive(Debug, Clone, Serialize)]
pub struct SubIds {
    pub file: String,
    /// False when the file is missing or unreadable.
    pub readable: bool,
    /// The ranges of the user running doctor (named by name or by uid).
    pub mine: Vec<SubIdRange>,
    /// The ranges of the `stagebox` entry (what root's `--userns=auto` maps to).
    pub stagebox: Vec<SubIdRange>,
}

impl SubIds {
    fn read(file: &str, name: Option<&str>, uid: u32) -> SubIds {
        use crate::kernel::idmap::{parse_subid, ranges_of};
        let text = std::fs::read_to_string(file);
        let t = text.as_deref().unwrap_or_default();
        SubIds {
            file: file.to_string(),
            readable: text.is_ok(),
            mine: ranges_of(t, name, uid),
            stagebox: parse_subid(t)
                .into_iter()
                .filter(|r| r.owner == crate::state::subids::ENTRY)
                .collect(),
        }
    }
}

fn ranges_text(r: &[SubIdRange]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|r| format!("{}:{}", r.start, r.count))
        .collect::<Vec<_>>()
        .join(", ")
}

/// newuidmap or newgidmap, as found in PATH.
#[derive(Debug, Clone, Serialize)]
pub struct IdMapTool {
    pub path: String,
    /// Owned by root with the setuid bit.
    pub setuid_root: bool,
    /// Its file capabilities (the security.capability attribute, as getcap shows them):
    /// `cap_setuid=ep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_caps: Option<String>,
    /// Whether it can write a map for a user: setuid root, or the capability it needs
    /// (CAP_SETUID for newuidmap, CAP_SETGID for newgidmap) permitted and effective.
    pub can_map: bool,
}

/// The first executable `name` in PATH (or the usual directories without one).
fn in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A `security.capability` value (struct vfs_cap_data, little endian): the permitted and
/// inheritable sets, and whether they are effective, as getcap writes them.
fn decode_file_caps(b: &[u8]) -> Option<(u64, u64, bool)> {
    let word = |i: usize| -> Option<u64> {
        b.get(i * 4..i * 4 + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64)
    };
    let magic = word(0)?;
    let effective = magic & 1 != 0;
    let (mut permitted, mut inheritable) = (word(1)?, word(2)?);
    // Version 2 and 3 carry a second 32 bits of each set.
    if magic & 0xff00_0000 >= 0x0200_0000 {
        permitted |= word(3)? << 32;
        inheritable |= word(4)? << 32;
    }
    Some((permitted, inheritable, effective))
}

fn file_caps_text(permitted: u64, inheritable: u64, effective: bool) -> String {
    let mut parts = Vec::new();
    for c in crate::confine::caps::names(permitted | inheritable) {
        let bit = 1u64 << crate::confine::caps::number(c).unwrap_or(63);
        let mut flags = String::new();
        if effective {
            flags.push('e');
        }
        if inheritable & bit != 0 {
            flags.push('i');
        }
        if permitted & bit != 0 {
            flags.push('p');
        }
        parts.push(format!("cap_{}={flags}", c.to_ascii_lowercase()));
    }
    parts.join(" ")
}

fn read_file_caps(p: &Path) -> Option<(u64, u64, bool)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: both names are NUL-terminated and the buffer's length is passed with it.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    decode_file_caps(&buf[..n as usize])
}

impl IdMapTool {
    /// `name` in PATH; `cap`: the capability it needs (CAP_SETUID, CAP_SETGID).
    fn find(name: &str, cap: u32) -> Option<IdMapTool> {
        use std::os::unix::fs::MetadataExt;
        let p = in_path(name)?;
        let m = std::fs::metadata(&p).ok()?;
        let setuid_root = m.uid() == 0 && m.mode() & 0o4000 != 0;
        let caps = read_file_caps(&p);
        let has_cap = caps.is_some_and(|(perm, _, eff)| eff && perm & (1u64 << cap) != 0);
        Some(IdMapTool {
            path: p.display().to_string(),
            setuid_root,
            file_caps: caps.map(|(p, i, e)| file_caps_text(p, i, e)),
            can_map: setuid_root || has_cap,
        })
    }

    fn how(&self) -> String {
        match (&self.file_caps, self.setuid_root) {
            (_, true) => "setuid root".to_string(),
            (Some(c), false) => c.clone(),
            (None, false) => "neither setuid root nor file capabilities".to_string(),
        }
    }
}

/// Whether a cgroup v2 subtree is delegated to the user (rootless runs make their cgroup
/// there), and if not, why.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupDelegation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegation: Option<crate::cgroup::delegation::Delegation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub none: Option<crate::cgroup::delegation::NoDelegation>,
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
    pub subuid: SubIds,
    pub subgid: SubIds,
    /// None: not in PATH.
    pub newuidmap: Option<IdMapTool>,
    pub newgidmap: Option<IdMapTool>,
    /// Not looked for as root (root makes its cgroups anywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_delegation: Option<CgroupDelegation>,
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

    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| user_name(&t, euid));
    let subuid = SubIds::read("/etc/subuid", name.as_deref(), euid);
    let subgid = SubIds::read("/etc/subgid", name.as_deref(), euid);
    let newuidmap = IdMapTool::find("newuidmap", crate::confine::caps::CAP_SETUID);
    let newgidmap = IdMapTool::find("newgidmap", crate::confine::caps::CAP_SETGID);
    let cgroup_delegation = (!root).then(|| match crate::cgroup::delegation::detect() {
        Ok(d) => CgroupDelegation {
            delegation: Some(d),
            none: None,
        },
        Err(none) => CgroupDelegation {
            delegation: None,
            none: Some(none),
        },
    });

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
            Status::Warn,
            format!("not root (euid {euid}): rootless runs"),
            Some(
                "not root: a run is rootless, in a user namespace of its own where your uid is root; what needs the host's root is refused with its reason (--userns=auto, limits without a delegated cgroup, the device rules; see the rows below)"
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
    let who = match &name {
        Some(n) => format!("{n} (uid {euid})"),
        None => format!("uid {euid}"),
    };
    for (row, ids, kind) in [("subuid", &subuid, "uid"), ("subgid", &subgid, "gid")] {
        let (status, found, problem) = subid_check(root, &who, ids, kind);
        add(row, status, found, problem);
    }
    for (row, tool, what) in [
        ("newuidmap", &newuidmap, "uid"),
        ("newgidmap", &newgidmap, "gid"),
    ] {
        let (status, found, problem) = idmap_tool_check(root, row, tool.as_ref(), what);
        add(row, status, found, problem);
    }
    let (status, found, problem) = delegation_check(euid, cgroup_delegation.as_ref());
    add("cgroup_delegation", status, found, problem);
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
        subuid,
        subgid,
        newuidmap,
        newgidmap,
        cgroup_delegation,
        checks,
    }
}

type Row = (Status, String, Option<String>);

/// The subuid or subgid row: as root what the `stagebox` entry has (made on the first
/// `--userns=auto` when missing), otherwise what the user has for a rootless run.
fn subid_check(root: bool, who: &str, ids: &SubIds, kind: &str) -> Row {
    let file = &ids.file;
    let found = format!(
        "{who}: {}; stagebox: {}{}",
        ranges_text(&ids.mine),
        ranges_text(&ids.stagebox),
        if ids.readable {
            ""
        } else {
            " (no readable file)"
        }
    );
    if root {
        return (Status::Ok, found, None);
    }
    let total: u64 = ids.mine.iter().map(|r| r.count as u64).sum();
    if ids.mine.is_empty() {
        (
            Status::Warn,
            found,
            Some(format!(
                "{file}: no range for {who}, so a rootless run maps only your own {kind} (to root inside) and every other {kind} in an image shows as nobody; ask root for one (usermod --add-sub{kind}s 100000-165535 USER)"
            )),
        )
    } else if total < 65536 {
        (
            Status::Warn,
            found,
            Some(format!(
                "{file}: {who} has {total} subordinate {kind}s, fewer than the 65536 a full container map needs; images that use higher {kind}s will show them as nobody"
            )),
        )
    } else {
        (Status::Ok, found, None)
    }
}

/// The newuidmap/newgidmap row: needed only for a rootless run with a subordinate range.
fn idmap_tool_check(root: bool, name: &str, tool: Option<&IdMapTool>, kind: &str) -> Row {
    match tool {
        Some(t) if t.can_map => (Status::Ok, format!("{} ({})", t.path, t.how()), None),
        _ if root => (
            Status::Ok,
            match tool {
                Some(t) => format!("{} ({}); root writes {kind}_map itself", t.path, t.how()),
                None => format!("not installed; root writes {kind}_map itself"),
            },
            None,
        ),
        Some(t) => (
            Status::Warn,
            format!("{} ({})", t.path, t.how()),
            Some(format!(
                "{name}: {} is neither setuid root nor has CAP_SET{} as an effective file capability (getcap), so it cannot write a {kind}_map for you, and a rootless run maps only your own {kind}",
                t.path,
                kind.to_ascii_uppercase()
            )),
        ),
        None => (
            Status::Warn,
            "not installed".into(),
            Some(format!(
                "{name}: not in PATH, so a rootless run maps only your own {kind} and not your subordinate range; install it (Debian, Ubuntu: the uidmap package)"
            )),
        ),
    }
}

/// The cgroup delegation row: where a rootless run's cgroup would go, or why it gets none.
fn delegation_check(euid: u32, d: Option<&CgroupDelegation>) -> Row {
    let Some(d) = d else {
        return (
            Status::Ok,
            "not needed as root: the cgroups are made at the top of each hierarchy".into(),
            None,
        );
    };
    match (&d.delegation, &d.none) {
        (Some(d), _) => {
            let ctrls = if d.controllers.is_empty() {
                "no controllers".to_string()
            } else {
                d.controllers.join(" ")
            };
            let found = format!("{} is delegated to uid {euid}: {ctrls}", d.root.display());
            if d.has_processes && d.enabled.is_empty() {
                (
                    Status::Warn,
                    found,
                    Some(format!(
                        "cgroup delegation: {} has processes of its own, so cgroup v2 lets it hand no controller to the container's cgroup (the \"no internal processes\" rule) and limits are refused; start stagebox from a child cgroup of it",
                        d.root.display()
                    )),
                )
            } else {
                (Status::Ok, found, None)
            }
        }
        (None, none) => {
            let (why, remedy) = none
                .as_ref()
                .map(|n| (n.reason.as_str(), n.remedy))
                .unwrap_or(("", crate::cgroup::delegation::HOW_TO_DELEGATE));
            (
                Status::Warn,
                format!("none for uid {euid}"),
                Some(format!(
                    "cgroup delegation: no cgroup v2 subtree is delegated to you ({why}), so a rootless run gets no cgroup of its own and refuses limits (-m, --cpus, --pids-limit ...); {remedy}"
                )),
            )
        }
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
    fn subid_files_are_read_by_name_or_uid() {
        let text = "# comment\nalice:100000:65536\n1001:165536:65536\nstagebox:231072:65536\nbad line\nzero:1:0\nalice:300000:10\n";
        let passwd = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 1001), None);
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("subuid");
        std::fs::write(&f, text).unwrap();
        let f = f.to_str().unwrap();
        let ids = SubIds::read(f, Some("alice"), 1000);
        assert_eq!(ranges_text(&ids.mine), "100000:65536, 300000:10");
        assert_eq!(ranges_text(&ids.stagebox), "231072:65536");
        let by_uid = SubIds::read(f, None, 1001);
        assert_eq!(ranges_text(&by_uid.mine), "165536:65536");
        // Rootless: a full range is fine, none or a short one says what that costs.
        assert_eq!(subid_check(false, "alice", &ids, "uid").0, Status::Ok);
        let none = SubIds::read(f, Some("bob"), 1002);
        let (st, found, problem) = subid_check(false, "bob (uid 1002)", &none, "uid");
        assert_eq!(st, Status::Warn);
        assert_eq!(found, "bob (uid 1002): none; stagebox: 231072:65536");
        assert!(problem.unwrap().contains("usermod --add-subuids"));
        let short = SubIds {
            mine: vec![SubIdRange {
                owner: "bob".into(),
                start: 1,
                count: 1000,
            }],
            ..none.clone()
        };
        assert!(subid_check(false, "bob", &short, "gid")
            .2
            .unwrap()
            .contains("1000 subordinate gids"));
        // Root: only the stagebox entry matters, and it is made when missing.
        assert_eq!(subid_check(true, "root", &none, "uid").0, Status::Ok);
        let missing = SubIds::read("/nonexistent/subuid", Some("bob"), 1002);
        assert!(!missing.readable && missing.mine.is_empty());
    }

    #[test]
    fn file_capabilities_decode_as_getcap_shows_them() {
        // vfs_cap_data revision 2: magic 0x02000001 (effective), permitted CAP_SETUID.
        let mut v2 = Vec::new();
        for w in [0x0200_0001u32, 1 << 7, 0, 0, 0] {
            v2.extend_from_slice(&w.to_le_bytes());
        }
        let (p, i, e) = decode_file_caps(&v2).unwrap();
        assert_eq!((p, i, e), (1 << 7, 0, true));
        assert_eq!(file_caps_text(p, i, e), "cap_setuid=ep");
        // Revision 3 (a rootid after the sets), CAP_SETGID permitted, not effective.
        let mut v3 = Vec::new();
        for w in [0x0300_0000u32, 1 << 6, 0, 0, 0, 0] {
            v3.extend_from_slice(&w.to_le_bytes());
        }
        let (p, i, e) = decode_file_caps(&v3).unwrap();
        assert_eq!(file_caps_text(p, i, e), "cap_setgid=p");
        assert_eq!(decode_file_caps(&[1, 2]), None);
        let t = |setuid_root, file_caps: Option<&str>, can_map| IdMapTool {
            path: "/usr/bin/newuidmap".into(),
            setuid_root,
            file_caps: file_caps.map(str::to_string),
            can_map,
        };
        let ok = t(false, Some("cap_setuid=ep"), true);
        let (st, found, _) = idmap_tool_check(false, "newuidmap", Some(&ok), "uid");
        assert_eq!(
            (st, found.as_str()),
            (Status::Ok, "/usr/bin/newuidmap (cap_setuid=ep)")
        );
        let (st, found, _) =
            idmap_tool_check(false, "newuidmap", Some(&t(true, None, true)), "uid");
        assert_eq!(
            (st, found.as_str()),
            (Status::Ok, "/usr/bin/newuidmap (setuid root)")
        );
        let (st, _, p) = idmap_tool_check(false, "newuidmap", Some(&t(false, None, false)), "uid");
        assert!(st == Status::Warn && p.unwrap().contains("cannot write a uid_map"));
        let (st, _, p) = idmap_tool_check(false, "newgidmap", None, "gid");
        assert!(st == Status::Warn && p.unwrap().contains("uidmap package"));
        let (st, found, p) = idmap_tool_check(true, "newgidmap", None, "gid");
        assert!(st == Status::Ok && p.is_none() && found.contains("root writes gid_map"));
    }

    #[test]
    fn the_delegation_row_says_where_or_why_not() {
        let (st, found, _) = delegation_check(0, None);
        assert!(st == Status::Ok && found.starts_with("not needed as root"));
        let hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let none = CgroupDelegation {
            delegation: None,
            none: crate::cgroup::delegation::find(
                &crate::cgroup::CgroupRoot::host(),
                hybrid,
                "0::/\n",
                &crate::cgroup::delegation::Who::me(),
            )
            .err(),
        };
        let (st, _, p) = delegation_check(1000, Some(&none));
        let p = p.unwrap();
        assert!(
            st == Status::Warn
                && p.contains("(this host mounts cgroups hybrid")
                && p.contains("systemd.unified_cgroup_hierarchy=1"),
            "{p}"
        );
        let mut d = crate::cgroup::delegation::Delegation {
            root: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service".into(),
            cgroup: "/user.slice/user-1000.slice/user@1000.service".into(),
            controllers: vec!["cpu".into(), "memory".into(), "pids".into()],
            enabled: vec!["memory".into()],
            has_processes: false,
        };
        let some = |d: &crate::cgroup::delegation::Delegation| CgroupDelegation {
            delegation: Some(d.clone()),
            none: None,
        };
        let (st, found, _) = delegation_check(1000, Some(&some(&d)));
        assert_eq!(st, Status::Ok);
        assert!(
            found.ends_with("is delegated to uid 1000: cpu memory pids"),
            "{found}"
        );
        d.has_processes = true;
        d.enabled.clear();
        let (st, _, p) = delegation_check(1000, Some(&some(&d)));
        assert!(st == Status::Warn && p.unwrap().contains("no internal processes"));
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
                "subuid",
                "subgid",
                "newuidmap",
                "newgidmap",
                "cgroup_delegation",
                "busybox",
                "pivot_root"
            ]
        );
        for c in &d.checks {
            assert_eq!(c.status != Status::Ok, c.problem.is_some(), "{c:?}");
        }
        let text = render_text(&d);
        assert!(
            text.lines().next().unwrap().starts_with("ok ") || text.starts_with("warn"),
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
            "subuid",
            "subgid",
            "newuidmap",
            "checks",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
