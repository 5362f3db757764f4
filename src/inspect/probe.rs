//! `stagebox probe`: what the calling process sees, read from the kernel.
//!
//! Everything comes from syscalls (getpid, uname, stat) or from /proc/self. Inside a
//! container /proc may be missing (the proc stage switched off): then each field that needs
//! it says so, and the rest is still reported. Nothing here needs any file of the rootfs:
//! the binary is static and is exec'd with fexecve.

use crate::error::{Error, Result};
use crate::kernel::mountinfo::{self, Mount};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Namespace links of /proc/self/ns, in the order they are printed (the trace's order).
pub const NAMESPACES: &[&str] = crate::kernel::observe::NS_NAMES;

/// How many process names the report lists.
pub const MAX_PROCESSES: usize = 20;

/// What uname(2) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

/// uname(2). None only if the call fails (it does not, in practice).
pub fn uname() -> Option<Uname> {
    // SAFETY: utsname is plain old data; uname(2) fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(Uname {
        sysname: s(&u.sysname),
        nodename: s(&u.nodename),
        release: s(&u.release),
        version: s(&u.version),
        machine: s(&u.machine),
    })
}

/// The filesystem type of the topmost mount at "/" (the last mountinfo line for "/").
pub fn root_fs_type(mounts: &[Mount]) -> Option<String> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == "/")
        .map(|m| m.fs_type.clone())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NsLink {
    /// As readlink shows it: `uts:[4026531838]`.
    pub link: String,
    pub inode: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessEntry {
    pub pid: i32,
    pub comm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    /// IFF_UP from SIOCGIFFLAGS; None when the ioctl failed.
    pub up: Option<bool>,
}

/// The probe's report. Fields that could not be read are None (or absent from a map) and
/// `unavailable` says why, under the field's key.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub hostname: Option<String>,
    /// Namespace name -> link and inode. A missing one has an `unavailable` entry
    /// `namespaces.NAME`.
    pub namespaces: BTreeMap<String, NsLink>,
    /// readlink /proc/self/root.
    pub root_link: Option<String>,
    /// stat("/"): device as major:minor, and inode.
    pub root_dev: Option<String>,
    pub root_ino: Option<u64>,
    pub mount_count: Option<usize>,
    pub root_fs_type: Option<String>,
    pub uid_map: Option<Vec<String>>,
    pub gid_map: Option<Vec<String>>,
    /// Numeric entries in /proc.
    pub process_count: Option<usize>,
    /// The first MAX_PROCESSES of them, by pid.
    pub processes: Option<Vec<ProcessEntry>>,
    pub interfaces: Option<Vec<Interface>>,
    /// CapEff from /proc/self/status, hex as the kernel prints it.
    pub cap_eff: Option<String>,
    /// Number of capabilities set in CapEff.
    pub cap_eff_count: Option<u32>,
    /// Lines of /proc/self/cgroup.
    pub cgroup: Option<Vec<String>>,
    /// Field -> why it could not be read.
    pub unavailable: BTreeMap<String, String>,
}

/// Why a /proc read failed, in words: "/proc is not mounted" when there is no /proc/self.
fn why(e: &std::io::Error, proc_dir: &Path) -> String {
    if !proc_dir.join("self").exists() {
        format!("{} is not mounted", proc_dir.display())
    } else {
        e.to_string()
    }
}

/// Lines of a uid_map or gid_map, with runs of spaces collapsed: `0 1000 1`.
pub fn parse_id_map(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The value of `Key:` in a /proc/PID/status text.
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Reads everything the probe reports, from `proc_dir` (normally "/proc").
pub fn collect_from(proc_dir: &Path) -> Probe {
    let mut unavailable = BTreeMap::new();
    let selfdir = proc_dir.join("self");
    let read =
        |key: &str, rel: &str, unavailable: &mut BTreeMap<String, String>| -> Option<String> {
            match std::fs::read_to_string(selfdir.join(rel)) {
                Ok(t) => Some(t),
                Err(e) => {
                    unavailable.insert(key.to_string(), why(&e, proc_dir));
                    None
                }
            }
        };

    let hostname = match uname() {
        Some(u) => Some(u.nodename),
        None => {
            unavailable.insert(
                "hostname".into(),
                format!("uname: {}", std::io::Error::last_os_error()),
            );
            None
        }
    };

    let mut namespaces = BTreeMap::new();
    for name in NAMESPACES {
        match std::fs::read_link(selfdir.join("ns").join(name)) {
            Ok(l) => {
                let link = l.to_string_lossy().into_owned();
                let inode = crate::kernel::ns::inode(&link).unwrap_or(0);
                namespaces.insert(name.to_string(), NsLink { link, inode });
            }
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound && selfdir.exists() {
                    format!("this kernel has no {name} namespace link")
                } else {
                    why(&e, proc_dir)
                };
                unavailable.insert(format!("namespaces.{name}"), reason);
            }
        }
    }

    let root_link = match std::fs::read_link(selfdir.join("root")) {
        Ok(l) => Some(l.to_string_lossy().into_owned()),
        Err(e) => {
            unavailable.insert("root_link".into(), why(&e, proc_dir));
            None
        }
    };
    let (root_dev, root_ino) = match std::fs::metadata("/") {
        Ok(m) => (
            Some(format!(
                "{}:{}",
                nix::sys::stat::major(m.dev()),
                nix::sys::stat::minor(m.dev())
            )),
            Some(m.ino()),
        ),
        Err(e) => {
            unavailable.insert("root_dev".into(), format!("stat /: {e}"));
            unavailable.insert("root_ino".into(), format!("stat /: {e}"));
            (None, None)
        }
    };

    let (mount_count, root_fs_type) = match read("mount_count", "mountinfo", &mut unavailable) {
        Some(t) => {
            let m = mountinfo::parse(&t);
            let fs = root_fs_type(&m);
            if fs.is_none() {
                unavailable.insert("root_fs_type".into(), "no mount at / in mountinfo".into());
            }
            (Some(m.len()), fs)
        }
        None => {
            if let Some(r) = unavailable.get("mount_count").cloned() {
                unavailable.insert("root_fs_type".into(), r);
            }
            (None, None)
        }
    };

    let uid_map = read("uid_map", "uid_map", &mut unavailable).map(|t| parse_id_map(&t));
    let gid_map = read("gid_map", "gid_map", &mut unavailable).map(|t| parse_id_map(&t));

    let (process_count, processes) = match std::fs::read_dir(proc_dir) {
        Ok(rd) if selfdir.exists() => {
            let mut pids: Vec<i32> = rd
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
                .collect();
            pids.sort_unstable();
            let list = pids
                .iter()
                .take(MAX_PROCESSES)
                .map(|&pid| ProcessEntry {
                    pid,
                    comm: std::fs::read_to_string(proc_dir.join(pid.to_string()).join("comm"))
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_else(|_| "?".into()),
                })
                .collect();
            (Some(pids.len()), Some(list))
        }
        Ok(_) => {
            let r = format!("{} is not mounted", proc_dir.display());
            unavailable.insert("process_count".into(), r.clone());
            unavailable.insert("processes".into(), r);
            (None, None)
        }
        Err(e) => {
            let r = why(&e, proc_dir);
            unavailable.insert("process_count".into(), r.clone());
            unavailable.insert("processes".into(), r);
            (None, None)
        }
    };

    let interfaces = read("interfaces", "net/dev", &mut unavailable).map(|t| {
        crate::kernel::netif::parse_net_dev(&t)
            .into_iter()
            .map(|name| {
                let up = crate::kernel::netif::flags(&name)
                    .ok()
                    .map(|f| f & libc::IFF_UP != 0);
                Interface { name, up }
            })
            .collect()
    });

    let (cap_eff, cap_eff_count) = match read("cap_eff", "status", &mut unavailable) {
        Some(t) => match status_field(&t, "CapEff") {
            Some(hex) => {
                let n = u64::from_str_radix(&hex, 16).map(|v| v.count_ones()).ok();
                (Some(hex), n)
            }
            None => {
                unavailable.insert("cap_eff".into(), "no CapEff line in status".into());
                (None, None)
            }
        },
        None => (None, None),
    };
    if cap_eff_count.is_none() {
        if let Some(r) = unavailable.get("cap_eff").cloned() {
            unavailable.insert("cap_eff_count".into(), r);
        }
    }

    let cgroup = read("cgroup", "cgroup", &mut unavailable).map(|t| {
        t.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    });

    Probe {
        pid: nix::unistd::getpid().as_raw(),
        ppid: nix::unistd::getppid().as_raw(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        euid: nix::unistd::geteuid().as_raw(),
        egid: nix::unistd::getegid().as_raw(),
        hostname,
        namespaces,
        root_link,
        root_dev,
        root_ino,
        mount_count,
        root_fs_type,
        uid_map,
        gid_map,
        process_count,
        processes,
        interfaces,
        cap_eff,
        cap_eff_count,
        cgroup,
        unavailable,
    }
}

/// Reads everything the probe reports about the calling process.
pub fn collect() -> Probe {
    collect_from(Path::new("/proc"))
}

/// The report for people: aligned `key: value` lines; a field that could not be read says
/// why; a value of several lines continues under the first.
pub fn render_text(p: &Probe) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let un = |key: &str| -> Vec<String> {
        vec![format!(
            "unavailable: {}",
            p.unavailable
                .get(key)
                .map(String::as_str)
                .unwrap_or("unknown")
        )]
    };
    let one = |s: String| vec![s];
    rows.push(("pid".into(), one(p.pid.to_string())));
    rows.push(("ppid".into(), one(p.ppid.to_string())));
    rows.push((
        "uid/gid".into(),
        one(format!(
            "{}/{} (euid {}, egid {})",
            p.uid, p.gid, p.euid, p.egid
        )),
    ));
    rows.push((
        "hostname".into(),
        p.hostname
            .clone()
            .map(one)
            .unwrap_or_else(|| un("hostname")),
    ));
    for name in NAMESPACES {
        let v = match p.namespaces.get(*name) {
            Some(ns) => one(ns.link.clone()),
            None => un(&format!("namespaces.{name}")),
        };
        rows.push((format!("ns {name}"), v));
    }
    let root = match (&p.root_link, &p.root_dev, p.root_ino) {
        (Some(l), Some(d), Some(i)) => format!("{l} (stat /: dev {d}, ino {i})"),
        (None, Some(d), Some(i)) => format!(
            "stat /: dev {d}, ino {i}; readlink /proc/self/root unavailable: {}",
            p.unavailable
                .get("root_link")
                .map(String::as_str)
                .unwrap_or("unknown")
        ),
        (l, _, _) => format!(
            "{}; stat / unavailable: {}",
            l.as_deref().unwrap_or("?"),
            p.unavailable
                .get("root_dev")
                .map(String::as_str)
                .unwrap_or("unknown")
        ),
    };
    rows.push(("root".into(), one(root)));
    rows.push((
        "mounts".into(),
        match (p.mount_count, &p.root_fs_type) {
            (Some(n), Some(fs)) => one(format!("{n} (/ is {fs})")),
            (Some(n), None) => one(format!("{n} (no mount at /)")),
            _ => un("mount_count"),
        },
    ));
    for (key, map) in [("uid_map", &p.uid_map), ("gid_map", &p.gid_map)] {
        rows.push((
            key.into(),
            match map {
                Some(m) if m.is_empty() => one("(empty: no ids mapped)".into()),
                Some(m) => m.clone(),
                None => un(key),
            },
        ));
    }
    rows.push((
        "processes".into(),
        match (p.process_count, &p.processes) {
            (Some(n), Some(list)) => {
                let names: Vec<String> = list
                    .iter()
                    .map(|e| format!("{} {}", e.pid, e.comm))
                    .collect();
                let more = if n > list.len() {
                    format!(", ... {} more", n - list.len())
                } else {
                    String::new()
                };
                one(format!("{n} visible: {}{more}", names.join(", ")))
            }
            _ => un("process_count"),
        },
    ));
    rows.push((
        "interfaces".into(),
        match &p.interfaces {
            Some(l) if l.is_empty() => one("(none)".into()),
            Some(l) => one(l
                .iter()
                .map(|i| {
                    let s = match i.up {
                        Some(true) => "up",
                        Some(false) => "down",
                        None => "state unknown",
                    };
                    format!("{} ({s})", i.name)
                })
                .collect::<Vec<_>>()
                .join(", ")),
            None => un("interfaces"),
        },
    ));
    rows.push((
        "cap_eff".into(),
        match (&p.cap_eff, p.cap_eff_count) {
            (Some(h), Some(n)) => one(format!("{h} ({n} capabilities)")),
            (Some(h), None) => one(h.clone()),
            _ => un("cap_eff"),
        },
    ));
    rows.push((
        "cgroup".into(),
        match &p.cgroup {
            Some(c) if c.is_empty() => one("(empty)".into()),
            Some(c) => c.clone(),
            None => un("cgroup"),
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, vals) in rows {
        for (i, v) in vals.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
            } else {
                out.push_str(&format!("{:<width$} {v}\n", ""));
            }
        }
    }
    out
}

/// Prints the report to stdout; returns the exit code.
pub fn run(json: bool) -> Result<i32> {
    run_with(json, None)
}

/// Like [`run`]; with `escape`, also attempts the chroot escape (see [`crate::inspect::escape`]),
/// looking for the given marker file (a path on the host) once out.
pub fn run_with(json: bool, escape: Option<Option<&Path>>) -> Result<i32> {
    run_full(json, escape, None)
}

/// Like [`run_with`]; with `checks` (the runner's [`crate::inspect::checks::HostFacts`] as JSON), also
/// runs the isolation checks and reports them under `checks`.
pub fn run_full(json: bool, escape: Option<Option<&Path>>, checks: Option<&str>) -> Result<i32> {
    let facts: Option<crate::inspect::checks::HostFacts> = match checks {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| {
            Error::usage(format!(
                "--checks takes the runner's host facts as JSON: {e}"
            ))
        })?),
        None => None,
    };
    let results = facts.as_ref().map(crate::inspect::checks::run_all);
    let p = collect();
    let esc = escape.map(|marker| crate::inspect::escape::attempt(marker));
    let text = if json {
        let mut v = serde_json::to_value(&p)
            .map_err(|e| Error::usage(format!("encoding the probe report: {e}")))?;
        if let (Some(esc), Some(obj)) = (&esc, v.as_object_mut()) {
            let e = match esc {
                Ok(r) => serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
                Err(msg) => serde_json::json!({ "error": msg }),
            };
            obj.insert("chroot_escape".into(), e);
        }
        if let (Some(r), Some(obj)) = (&results, v.as_object_mut()) {
            obj.insert(
                "checks".into(),
                serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
            );
        }
        serde_json::to_string_pretty(&v)
            .map_err(|e| Error::usage(format!("encoding the probe report: {e}")))?
            + "\n"
    } else {
        let mut t = render_text(&p);
        match &esc {
            Some(Ok(r)) => {
                t.push_str(&format!("chroot escape:       {}\n", r.evidence));
                if r.escaped {
                    t.push_str(&format!(
                        "  top of the tree:   {}\n",
                        r.top_entries.join(" ")
                    ));
                }
                if let Some(seen) = r.marker_seen {
                    t.push_str(&format!(
                        "  host marker seen:  {}\n",
                        if seen { "yes" } else { "no" }
                    ));
                }
            }
            Some(Err(msg)) => t.push_str(&format!("chroot escape:       not attempted: {msg}\n")),
            None => {}
        }
        for c in results.iter().flatten() {
            t.push_str(&format!(
                "check {:<15} {:?}: {}\n",
                c.name, c.verdict, c.evidence
            ));
        }
        t
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("write the probe report to stdout", e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_process_is_seen_as_it_is() {
        let p = collect();
        assert_eq!(p.pid as u32, std::process::id());
        assert!(p.ppid > 0);
        assert_eq!(p.uid, nix::unistd::getuid().as_raw());
        let uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
        assert_eq!(p.namespaces["uts"].link, uts.to_string_lossy());
        assert!(p.namespaces["mnt"].inode > 0);
        for n in ["user", "uts", "ipc", "pid", "net", "mnt"] {
            assert!(p.namespaces.contains_key(n), "{n}: {:?}", p.unavailable);
        }
        assert_eq!(
            p.hostname.as_deref(),
            Some(uname().unwrap().nodename.as_str())
        );
        assert!(p.mount_count.unwrap() > 0);
        assert!(p.root_fs_type.is_some());
        let st = std::fs::metadata("/").unwrap();
        assert_eq!(p.root_ino, Some(st.ino()));
        assert!(!p.uid_map.as_ref().unwrap().is_empty());
        // The test process itself is one of the visible processes.
        assert!(p.process_count.unwrap() >= 1);
        assert!(p.processes.as_ref().unwrap().len() <= MAX_PROCESSES);
        assert!(p
            .interfaces
            .as_ref()
            .unwrap()
            .iter()
            .any(|i| i.name == "lo"));
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(p.cap_eff, status_field(&status, "CapEff"));
        assert!(p
            .cgroup
            .as_ref()
            .unwrap()
            .iter()
            .any(|l| l.contains("::") || l.contains(':')));
        // JSON keys are the stable snake_case names.
        let v = serde_json::to_value(&p).unwrap();
        for k in [
            "pid",
            "ppid",
            "hostname",
            "namespaces",
            "root_link",
            "mount_count",
            "uid_map",
            "process_count",
            "interfaces",
            "cap_eff",
            "cgroup",
            "unavailable",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let text = render_text(&p);
        assert!(
            text.contains("pid:") && text.contains("ns pid_for_children:"),
            "{text}"
        );
    }

    #[test]
    fn without_proc_each_field_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = collect_from(&d.path().join("proc"));
        assert_eq!(p.pid as u32, std::process::id());
        assert!(p.namespaces.is_empty());
        assert!(p.mount_count.is_none() && p.cgroup.is_none() && p.process_count.is_none());
        assert!(
            p.unavailable["mount_count"].ends_with("is not mounted"),
            "{:?}",
            p.unavailable
        );
        assert!(p.unavailable["namespaces.uts"].ends_with("is not mounted"));
        let text = render_text(&p);
        assert!(
            text.contains("unavailable:") && text.contains("is not mounted"),
            "{text}"
        );
        assert!(p.root_ino.is_some());
    }

    #[test]
    fn root_fs_type_and_id_maps() {
        let m = mountinfo::parse(
            "1 0 0:1 / / rw - rootfs rootfs rw\n27 1 254:0 / / rw - ext4 /dev/vda rw\n",
        );
        assert_eq!(root_fs_type(&m).as_deref(), Some("ext4"));
        assert_eq!(
            parse_id_map("         0          0 4294967295\n"),
            vec!["0 0 4294967295"]
        );
    }
}
