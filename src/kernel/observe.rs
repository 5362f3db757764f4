//! What a process sees, read from /proc from the outside, and the difference between two
//! such readings. The trace prints the difference after every stage.
//!
//! Everything here is read from the kernel: /proc/PID/ns/*, /proc/PID/root,
//! /proc/PID/mountinfo, /proc/PID/net/dev, and the process's own view of /proc through
//! /proc/PID/root/proc. The hostname and the System V IPC objects can only be read from
//! inside the namespaces that hold them (uname(2) and /proc/sysvipc answer for the *reader*),
//! so the container process reports those itself ([`InsideFacts`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Namespace links in /proc/PID/ns, in the order the trace prints them.
pub use super::ns::NAMES as NS_NAMES;

/// The names of the facts [`diff`] reports besides `ns/<name>` (one per namespace in
/// [`NS_NAMES`]), in the order the trace prints them. Lessons may only name these (a test
/// checks them); a stage that reports facts of its own from the host side adds them here.
pub const FACT_NAMES: &[&str] = &[
    "uid_map",
    "uid on the host",
    "uid inside",
    "pid inside",
    "hostname",
    "interfaces",
    "addresses",
    "routes",
    "sysv ipc objects",
    "CapBnd",
    "CapEff",
    "NoNewPrivs",
    "Seccomp",
    "visible pids",
    "root",
    "propagation of /",
    "mount count",
    "mount",
];

/// Every fact name the trace can print: `ns/<name>` for each namespace, then [`FACT_NAMES`].
pub fn fact_names() -> Vec<String> {
    NS_NAMES
        .iter()
        .map(|n| format!("ns/{n}"))
        .chain(FACT_NAMES.iter().map(|f| f.to_string()))
        .collect()
}

/// Facts only the process itself can read (uname and /proc/sysvipc answer for the reader).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsideFacts {
    pub hostname: String,
    /// Interfaces with their up/down state.
    pub interfaces: Vec<(String, bool)>,
    /// Local IPv4 addresses (/proc/self/net/fib_trie) and routes (/proc/self/net/route).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    pub sysv_objects: usize,
    /// The effective uid as the process itself sees it (65534 when it is unmapped).
    #[serde(default)]
    pub uid: u32,
}

impl InsideFacts {
    pub fn read() -> Self {
        InsideFacts {
            uid: nix::unistd::geteuid().as_raw(),
            hostname: nix::sys::utsname::uname()
                .map(|u| u.nodename().to_string_lossy().into_owned())
                .unwrap_or_default(),
            interfaces: crate::kernel::netif::own_interfaces(),
            addresses: crate::kernel::netif::own_addresses(),
            routes: crate::kernel::netif::own_routes(),
            sysv_objects: super::sysv::visible_objects(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountLine {
    pub id: i32,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

impl std::fmt::Display for MountLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.mount_point, self.fs_type, self.source)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub ns: BTreeMap<String, String>,
    pub root: String,
    pub mounts: Vec<MountLine>,
    pub root_propagation: String,
    /// Numeric entries in the /proc the process sees (None when it has no /proc).
    pub pids_visible: Option<usize>,
    /// The device number of that /proc: a new procfs mount is a new device.
    pub proc_dev: Option<u64>,
    /// The process's pid in its own PID namespace (last field of NSpid in /proc/PID/status).
    pub pid_inside: String,
    /// Capability sets, no_new_privs and seccomp mode from /proc/PID/status.
    pub privileges: Option<super::status::Privileges>,
    /// /proc/PID/uid_map, one line per mapping joined with ", " ("0 0 4294967295" on the host).
    pub uid_map: String,
    /// The effective uid in /proc/PID/status: the process's uid as the host sees it.
    pub host_uid: String,
    pub inside: InsideFacts,
}

/// Counts the numeric entries of a /proc directory.
pub fn count_pids(proc_dir: &Path) -> Option<usize> {
    let rd = std::fs::read_dir(proc_dir).ok()?;
    let n = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count();
    if n == 0 && !proc_dir.join("self").exists() {
        None
    } else {
        Some(n)
    }
}

impl Snapshot {
    /// Reads what process `pid` sees, from the outside. `inside` comes from the process.
    ///
    /// `view` is where, inside the process's root, the container's future root is mounted
    /// (the rootfs before the switch, "/" otherwise): visible pids are counted in VIEW/proc,
    /// the /proc the workload will see.
    pub fn of(pid: i32, inside: InsideFacts, view: &Path) -> Snapshot {
        let base = format!("/proc/{pid}");
        let mut ns = BTreeMap::new();
        for name in NS_NAMES {
            match std::fs::read_link(format!("{base}/ns/{name}")) {
                Ok(l) => {
                    ns.insert(name.to_string(), l.to_string_lossy().into_owned());
                }
                // pid_for_children right after unshare(CLONE_NEWPID): no process there yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    ns.insert(name.to_string(), "(new, no process yet)".into());
                }
                Err(_) => {}
            }
        }
        let root = std::fs::read_link(format!("{base}/root"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("unreadable ({e})"));
        let mut mounts = Vec::new();
        let mut root_propagation = String::new();
        if let Ok(infos) = super::mountinfo::read_pid(pid) {
            for m in infos.into_iter() {
                if m.mount_point == "/" {
                    root_propagation = m.propagation_str();
                }
                mounts.push(MountLine {
                    id: m.mount_id,
                    mount_point: m.mount_point,
                    fs_type: m.fs_type,
                    source: m.source,
                });
            }
        }
        let rel = view.strip_prefix("/").unwrap_or(view);
        let proc_path = Path::new(&format!("{base}/root")).join(rel).join("proc");
        let pids_visible = count_pids(&proc_path);
        let proc_dev = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&proc_path).ok().map(|m| m.dev())
        };
        let pid_inside = std::fs::read_to_string(format!("{base}/status"))
            .ok()
            .and_then(|st| {
                st.lines()
                    .find(|l| l.starts_with("NSpid:"))
                    .and_then(|l| l.split_whitespace().last().map(str::to_string))
            })
            .unwrap_or_default();
        let status = std::fs::read_to_string(format!("{base}/status")).unwrap_or_default();
        let host_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_string();
        let uid_map = super::idmap::read(Some(pid), "uid_map")
            .map(|m| {
                m.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        Snapshot {
            uid_map,
            host_uid,
            privileges: super::status::Privileges::read(Some(pid)).ok(),
            pid_inside,
            ns,
            root,
            mounts,
            root_propagation,
            pids_visible,
            proc_dev,
            inside,
        }
    }
}

/// One fact that changed: the trace's `fact`, `before`, `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub fact: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Change {
    /// A host mount the process no longer sees: a `mount` line with a `before` and no
    /// `after`. Only the root switch takes mounts out of a process's view here: pivot_root
    /// and `umount2(MNT_DETACH)` detach the host's whole tree, chroot leaves it outside the
    /// new root. The container's own mounts are added (`+`) or moved (`old -> new`), never
    /// this. The one definition of the idea: the pretty trace folds these into one line.
    pub fn is_host_mount_gone(&self) -> bool {
        self.fact == "mount" && self.before.is_some() && self.after.is_none()
    }
}

fn change(out: &mut Vec<Change>, fact: &str, before: String, after: String) {
    if before != after {
        out.push(Change {
            fact: fact.to_string(),
            before: Some(before),
            after: Some(after),
        });
    }
}

fn ifaces(v: &[(String, bool)]) -> String {
    if v.is_empty() {
        return "(none)".into();
    }
    v.iter()
        .map(|(n, up)| format!("{n}({})", if *up { "up" } else { "down" }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What changed between two snapshots, in the order the trace prints it.
pub fn diff(a: &Snapshot, b: &Snapshot) -> Vec<Change> {
    let mut out = Vec::new();
    for name in NS_NAMES {
        let before = a.ns.get(*name).cloned().unwrap_or_default();
        let after = b.ns.get(*name).cloned().unwrap_or_default();
        change(&mut out, &format!("ns/{name}"), before, after);
    }
    change(&mut out, "uid_map", a.uid_map.clone(), b.uid_map.clone());
    change(
        &mut out,
        "uid on the host",
        a.host_uid.clone(),
        b.host_uid.clone(),
    );
    change(
        &mut out,
        "uid inside",
        a.inside.uid.to_string(),
        b.inside.uid.to_string(),
    );
    if a.ns.get("pid") != b.ns.get("pid") {
        change(
            &mut out,
            "pid inside",
            a.pid_inside.clone(),
            b.pid_inside.clone(),
        );
    }
    change(
        &mut out,
        "hostname",
        a.inside.hostname.clone(),
        b.inside.hostname.clone(),
    );
    change(
        &mut out,
        "interfaces",
        ifaces(&a.inside.interfaces),
        ifaces(&b.inside.interfaces),
    );
    let list = |v: &[String], sep: &str| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(sep)
        }
    };
    change(
        &mut out,
        "addresses",
        list(&a.inside.addresses, " "),
        list(&b.inside.addresses, " "),
    );
    change(
        &mut out,
        "routes",
        list(&a.inside.routes, ", "),
        list(&b.inside.routes, ", "),
    );
    change(
        &mut out,
        "sysv ipc objects",
        a.inside.sysv_objects.to_string(),
        b.inside.sysv_objects.to_string(),
    );
    if let (Some(p), Some(q)) = (&a.privileges, &b.privileges) {
        let hex = |v: u64| format!("{v:016x}");
        change(&mut out, "CapBnd", hex(p.cap_bnd), hex(q.cap_bnd));
        change(&mut out, "CapEff", hex(p.cap_eff), hex(q.cap_eff));
        change(
            &mut out,
            "NoNewPrivs",
            p.no_new_privs.to_string(),
            q.no_new_privs.to_string(),
        );
        let seccomp = |p: &super::status::Privileges| match p.seccomp {
            0 => "0 (none)".to_string(),
            1 => "1 (strict)".to_string(),
            m => format!("{m} (filter, {} loaded)", p.seccomp_filters),
        };
        change(&mut out, "Seccomp", seccomp(p), seccomp(q));
    }
    // The host's process count moves all the time; what matters is whether the process now
    // looks at another /proc (a new procfs mount is a new device number).
    if a.proc_dev != b.proc_dev {
        let pids = |p: Option<usize>| {
            p.map(|n| n.to_string())
                .unwrap_or_else(|| "no /proc".into())
        };
        change(
            &mut out,
            "visible pids",
            pids(a.pids_visible),
            pids(b.pids_visible),
        );
    }
    change(&mut out, "root", a.root.clone(), b.root.clone());
    change(
        &mut out,
        "propagation of /",
        a.root_propagation.clone(),
        b.root_propagation.clone(),
    );
    change(
        &mut out,
        "mount count",
        a.mounts.len().to_string(),
        b.mounts.len().to_string(),
    );
    mount_changes(a, b, &mut out);
    out
}

/// Mount lines added, removed or moved. Within one mount namespace a mount keeps its id, so
/// a mount that pivot_root moved shows as `old -> new`; across namespaces (the mount stage
/// copies the table, with new ids) lines are compared as text.
fn mount_changes(a: &Snapshot, b: &Snapshot, out: &mut Vec<Change>) {
    let same_ns = a.ns.get("mnt") == b.ns.get("mnt");
    let key = |m: &MountLine| {
        if same_ns {
            m.id.to_string()
        } else {
            m.to_string()
        }
    };
    let mut removed: Vec<&MountLine> = Vec::new();
    let mut left: Vec<&MountLine> = b.mounts.iter().collect();
    for m in &a.mounts {
        if let Some(i) = left.iter().position(|n| key(n) == key(m)) {
            let n = left.remove(i);
            if n.to_string() != m.to_string() {
                out.push(Change {
                    fact: "mount".into(),
                    before: Some(m.to_string()),
                    after: Some(n.to_string()),
                });
            }
        } else {
            removed.push(m);
        }
    }
    for m in left {
        out.push(Change {
            fact: "mount".into(),
            before: None,
            after: Some(m.to_string()),
        });
    }
    for m in removed {
        out.push(Change {
            fact: "mount".into(),
            before: Some(m.to_string()),
            after: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_only_what_changed() {
        let mut a = Snapshot::default();
        a.ns.insert("uts".into(), "uts:[1]".into());
        a.inside.hostname = "host".into();
        let mut b = a.clone();
        b.ns.insert("uts".into(), "uts:[2]".into());
        b.inside.hostname = "box".into();
        b.mounts.push(MountLine {
            id: 7,
            mount_point: "/proc".into(),
            fs_type: "proc".into(),
            source: "proc".into(),
        });
        let d = diff(&a, &b);
        let facts: Vec<&str> = d.iter().map(|c| c.fact.as_str()).collect();
        assert_eq!(facts, vec!["ns/uts", "hostname", "mount count", "mount"]);
        assert_eq!(d[3].before, None);
        assert_eq!(d[3].after.as_deref(), Some("/proc proc proc"));
    }

    #[test]
    fn host_mounts_gone_are_the_removed_lines_not_the_moved_or_added_ones() {
        let line = |id, at: &str| MountLine {
            id,
            mount_point: at.into(),
            fs_type: "tmpfs".into(),
            source: "tmpfs".into(),
        };
        let mut a = Snapshot::default();
        a.ns.insert("mnt".into(), "mnt:[1]".into());
        a.mounts = vec![line(1, "/"), line(2, "/box"), line(3, "/host/dir")];
        let mut b = a.clone();
        b.mounts = vec![line(2, "/"), line(4, "/proc")];
        let d = diff(&a, &b);
        let gone: Vec<&str> = d
            .iter()
            .filter(|c| c.is_host_mount_gone())
            .filter_map(|c| c.before.as_deref())
            .collect();
        assert_eq!(gone, vec!["/ tmpfs tmpfs", "/host/dir tmpfs tmpfs"]);
        // The move (/box -> /) and the new /proc are not folded.
        assert_eq!(d.iter().filter(|c| c.fact == "mount").count(), 4, "{d:?}");
    }

    #[test]
    fn every_fact_diff_reports_is_a_known_fact_name() {
        let a = Snapshot {
            privileges: Some(Default::default()),
            ..Snapshot::default()
        };
        let mut b = Snapshot {
            privileges: Some(crate::kernel::status::Privileges {
                cap_bnd: 1,
                cap_eff: 1,
                no_new_privs: 1,
                seccomp: 2,
                ..Default::default()
            }),
            root: "/x".into(),
            root_propagation: "private".into(),
            uid_map: "0 100000 65536".into(),
            host_uid: "100000".into(),
            pid_inside: "1".into(),
            proc_dev: Some(1),
            pids_visible: Some(1),
            ..Snapshot::default()
        };
        for name in NS_NAMES {
            b.ns.insert(name.to_string(), format!("{name}:[1]"));
        }
        b.inside = InsideFacts {
            hostname: "h".into(),
            interfaces: vec![("lo".into(), true)],
            addresses: vec!["127.0.0.1".into()],
            routes: vec!["default via 10.0.0.1 dev eth0".into()],
            sysv_objects: 1,
            uid: 1,
        };
        b.mounts.push(MountLine {
            id: 1,
            mount_point: "/".into(),
            fs_type: "ext4".into(),
            source: "x".into(),
        });
        let names = fact_names();
        let d = diff(&a, &b);
        assert_eq!(d.len(), names.len(), "{d:?}");
        for c in d {
            assert!(names.contains(&c.fact), "{} is not in fact_names()", c.fact);
        }
    }

    #[test]
    fn snapshot_of_self_sees_namespaces_and_mounts() {
        let s = Snapshot::of(
            std::process::id() as i32,
            InsideFacts::read(),
            Path::new("/"),
        );
        assert!(s.ns.get("uts").is_some_and(|v| v.starts_with("uts:[")));
        assert!(!s.mounts.is_empty());
        assert!(s.pids_visible.unwrap_or(0) >= 1);
    }
}
