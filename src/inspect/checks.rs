//! The isolation checks `stagebox probe --checks` runs from inside a container: each asks
//! one question a learner asks ("can it see my processes?"), answers it by trying, and gives
//! the evidence. The runner on the host (`stagebox compare`) prepares what the checks look
//! for (a marker file, a SysV segment, its own pid and hostname) and passes it in as JSON.
//!
//! Every check is read-only towards the host, except the mount-leak check, whose mount the
//! runner looks for from the host and removes again.

use std::path::Path;

pub use super::verdict::{HostFacts, IsolationCheck, Verdict};

/// Every row of the matrix, in order: the isolation checks, then the confinement checks
/// (`powers.rs`).
pub fn all_checks() -> Vec<(&'static str, &'static str, &'static str)> {
    ISOLATION
        .iter()
        .chain(super::powers::CHECKS)
        .copied()
        .collect()
}

/// The isolation checks, in the order the matrix prints them: (name, question, stage).
pub const ISOLATION: &[(&str, &str, &str)] = &[
    ("host_processes", "sees the host's processes", "pid"),
    ("hostname", "shares the host's hostname", "uts"),
    ("network", "shares the host's network interfaces", "net"),
    ("host_files", "sees the host's files", "pivot"),
    (
        "chroot_escape",
        "can climb out of its root (chroot escape)",
        "pivot",
    ),
    ("sysv_ipc", "shares System V IPC with the host", "ipc"),
    (
        "mount_leak",
        "a mount made inside appears on the host",
        "mount",
    ),
    (
        "cgroup_path",
        "sees where it sits in the host's cgroup tree",
        "cgroupns",
    ),
    ("memory_limit", "memory use is not limited", "cgroup"),
    (
        "pids_limit",
        "the number of processes is not limited",
        "cgroup",
    ),
    ("host_root", "runs as the host's root", "user"),
];

fn check(name: &str, leaks: bool, evidence: String) -> IsolationCheck {
    super::verdict::check_in(ISOLATION, name, leaks, evidence)
}

fn host_processes(h: &HostFacts) -> IsolationCheck {
    let count = crate::kernel::observe::count_pids(Path::new("/proc"));
    let seen = Path::new(&format!("/proc/{}", h.host_pid)).exists();
    let evidence = match count {
        Some(n) if seen => format!(
            "{n} processes visible, including the runner's pid {}",
            h.host_pid
        ),
        Some(n) => format!(
            "{n} processes visible; the runner's pid {} is not",
            h.host_pid
        ),
        None => "no /proc mounted".into(),
    };
    check("host_processes", seen, evidence)
}

fn hostname(h: &HostFacts) -> IsolationCheck {
    let name = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let same = name == h.host_hostname;
    check(
        "hostname",
        same,
        if same {
            format!("the hostname inside is the host's, {name:?}")
        } else {
            format!(
                "the hostname inside is {name:?}, the host's is {:?}",
                h.host_hostname
            )
        },
    )
}

fn network() -> Vec<String> {
    crate::kernel::netif::own_interfaces()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn network_check(h: &HostFacts) -> IsolationCheck {
    let inside = network();
    let own_ns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shared = if h.host_net_ns.is_empty() {
        inside
            .iter()
            .any(|i| i != "lo" && h.host_interfaces.contains(i))
    } else {
        own_ns == h.host_net_ns
    };
    check(
        "network",
        shared,
        if !shared {
            format!("interfaces inside: {}", inside.join(" "))
        } else {
            format!("the host's interfaces are visible: {}", inside.join(" "))
        },
    )
}

fn host_files(h: &HostFacts) -> IsolationCheck {
    let seen = h.marker.exists();
    check(
        "host_files",
        seen,
        format!(
            "the host's marker {} is {}",
            h.marker.display(),
            if seen { "visible" } else { "not visible" }
        ),
    )
}

fn chroot_escape(h: &HostFacts) -> IsolationCheck {
    match crate::inspect::escape::attempt(Some(&h.marker)) {
        Ok(r) => check("chroot_escape", r.escaped, r.evidence),
        // No escape tried, but none needed when its root is already the host's.
        Err(e) if h.marker.exists() => check(
            "chroot_escape",
            true,
            format!("not attempted ({e}), and nothing to escape: the process's root is already the host's (the host's marker is visible without climbing)"),
        ),
        Err(e) => check("chroot_escape", false, format!("not attempted: {e}")),
    }
}

fn sysv_ipc(h: &HostFacts) -> IsolationCheck {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    let id = h.shm_id.to_string();
    let seen = text
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(id.as_str()));
    check(
        "sysv_ipc",
        seen,
        format!(
            "the host's shared memory segment {} is {}",
            h.shm_id,
            if seen {
                "listed in /proc/sysvipc/shm"
            } else {
                "not listed"
            }
        ),
    )
}

fn mount_leak(h: &HostFacts) -> IsolationCheck {
    // The verdict is the runner's (it looks from the host after the run); here only the mount.
    let src = format!("stagebox-leak-{}", h.leak_token);
    let r = std::fs::create_dir_all(&h.leak_dir)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            nix::mount::mount(
                Some(src.as_str()),
                &h.leak_dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("size=16k"),
            )
            .map_err(|e| e.to_string())
        });
    check(
        "mount_leak",
        false,
        match r {
            Ok(()) => format!(
                "mounted tmpfs {src} on {}; the runner looks for it from the host",
                h.leak_dir.display()
            ),
            Err(e) => format!("could not mount a tmpfs on {}: {e}", h.leak_dir.display()),
        },
    )
}

fn cgroup_path(h: &HostFacts) -> IsolationCheck {
    // In the host's cgroup namespace, /proc/self/cgroup names paths of the host's tree.
    let own = std::fs::read_link("/proc/self/ns/cgroup")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shared = !own.is_empty() && own == h.host_cgroup_ns;
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let not_root = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|p| *p != "/")
        .count();
    check(
        "cgroup_path",
        shared,
        if shared {
            format!("same cgroup namespace as the host; {not_root} line(s) of /proc/self/cgroup name a path below the host's root")
        } else {
            "its own cgroup namespace: its cgroup is / in /proc/self/cgroup".into()
        },
    )
}

/// Allocates and touches `mib` MiB in a child; true when the child was killed (OOM).
fn alloc_killed(mib: usize) -> Option<bool> {
    // SAFETY: the child only allocates, touches memory and _exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let mut v: Vec<u8> = Vec::new();
            for _ in 0..mib {
                let mut chunk = vec![0u8; 1 << 20];
                for i in (0..chunk.len()).step_by(4096) {
                    chunk[i] = 1;
                }
                v.extend_from_slice(&chunk[..4096]);
                std::mem::forget(chunk);
            }
            // SAFETY: end the child without the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match nix::sys::wait::waitpid(child, None)
        {
            Ok(nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)) => {
                Some(true)
            }
            Ok(_) => Some(false),
            Err(_) => None,
        },
        Err(_) => None,
    }
}

fn memory_limit(h: &HostFacts) -> IsolationCheck {
    const MIB: usize = 256;
    match alloc_killed(MIB) {
        Some(true) => check(
            "memory_limit",
            false,
            format!("a child touching {MIB} MiB was OOM-killed: the limit is enforced"),
        ),
        Some(false) => check(
            "memory_limit",
            true,
            format!(
                "a child allocated and touched {MIB} MiB unhindered{}",
                if h.limits_expected {
                    " although a limit was asked for"
                } else {
                    ""
                }
            ),
        ),
        None => check(
            "memory_limit",
            true,
            "the allocation test could not run".into(),
        ),
    }
}

fn pids_limit() -> IsolationCheck {
    const MAX: usize = 128;
    let mut children = Vec::new();
    let mut failure = None;
    for _ in 0..MAX {
        // SAFETY: the child only pauses until it is killed.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => loop {
                nix::unistd::pause();
            },
            Ok(nix::unistd::ForkResult::Parent { child }) => children.push(child),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    for c in &children {
        let _ = nix::sys::signal::kill(*c, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(*c, None);
    }
    match failure {
        Some(e) => check(
            "pids_limit",
            false,
            format!(
                "fork failed with {e} after {} children: a pids limit holds",
                children.len()
            ),
        ),
        None => check(
            "pids_limit",
            true,
            format!("{MAX} children forked without a limit"),
        ),
    }
}

/// Reads up to 4 KiB of `name` in the directory `dir` (a descriptor), and its owner as this
/// process's user namespace shows it.
fn read_at(dir: i32, name: &str) -> std::io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated name relative to a descriptor the runner passed.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here only.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let owner = f.metadata()?.uid();
    let mut buf = Vec::new();
    f.by_ref().take(4096).read_to_end(&mut buf)?;
    Ok((buf, owner))
}

/// Opens `name` in `dir` for writing and writes `same` back at offset 0: the bytes it read,
/// so the file is written without being changed.
fn write_back_at(dir: i32, name: &str, same: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: as in read_at; O_WRONLY without O_TRUNC leaves the content as it is.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here only.
    let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.write_all_at(same, 0)
}

fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// Is the container's root the host's root? Two answers from the kernel: the host uid its
/// own uid is (through /proc/self/uid_map), and whether it may write a file that only the
/// host's root may write (the runner's marker, reached through a descriptor it passed). A
/// write puts back exactly the bytes read; the runner checks from the host that the content
/// stayed the same.
fn host_root(h: &HostFacts) -> IsolationCheck {
    let euid = nix::unistd::geteuid().as_raw();
    let mut parts = Vec::new();
    let mut leaks = false;
    let mut known = false;
    match crate::kernel::idmap::read(None, "uid_map") {
        Ok(map) => {
            known = true;
            let shown = crate::kernel::idmap::format(&map)
                .trim_end()
                .replace('\n', "; ");
            match crate::kernel::idmap::to_outside(&map, euid) {
                Some(0) => {
                    leaks = true;
                    parts.push(format!(
                        "uid {euid} here is host uid 0, the host's root (uid_map {shown:?})"
                    ));
                }
                Some(host) => parts.push(format!(
                    "uid {euid} here is host uid {host}, not the host's root (uid_map {shown:?})"
                )),
                None => parts.push(format!(
                    "uid {euid} is not mapped to any host uid (uid_map {shown:?})"
                )),
            }
        }
        Err(e) => parts.push(format!(
            "/proc/self/uid_map cannot be read ({}), so its host uid is not known from there",
            errno_text(&e)
        )),
    }
    match &h.root_marker {
        Some(m) => {
            known = true;
            match read_at(m.fd, &m.name) {
                Err(e) => parts.push(format!(
                    "the host's root-owned marker could not be read: {}",
                    errno_text(&e)
                )),
                Ok((bytes, owner)) => match write_back_at(m.fd, &m.name, &bytes) {
                    Ok(()) => {
                        leaks = true;
                        parts.push(format!(
                            "opened the host's marker (owner uid 0, mode 0644: only the host's root may write it) for writing and wrote back the {} bytes it read",
                            bytes.len()
                        ));
                    }
                    Err(e) => parts.push(format!(
                        "the host's root-owned marker shows as owned by uid {owner} here{}; opening it for writing failed: {}",
                        if owner == 0 { "" } else { " (host uid 0 is not mapped, so root's capabilities do not reach it)" },
                        errno_text(&e)
                    )),
                },
            }
        }
        None => match h.runner_uid {
            Some(u) if u != 0 => {
                known = true;
                parts.push(format!(
                    "the runner is host uid {u}, not root: nothing it starts is the host's root (and it cannot make a file only root may write to try)"
                ));
            }
            _ => parts.push("the runner passed no root-owned marker to try".into()),
        },
    }
    if !known && euid == 0 {
        // Neither the map nor a marker: say so rather than call it isolated.
        leaks = true;
        parts.push("uid 0 with nothing to show it is not the host's root".into());
    }
    check("host_root", leaks, parts.join("; "))
}

/// Runs every check.
pub fn run_all(h: &HostFacts) -> Vec<IsolationCheck> {
    vec![
        host_processes(h),
        hostname(h),
        network_check(h),
        host_files(h),
        chroot_escape(h),
        sysv_ipc(h),
        mount_leak(h),
        cgroup_path(h),
        memory_limit(h),
        pids_limit(),
        host_root(h),
    ]
    .into_iter()
    .chain(super::powers::run_all(h))
    .collect()
}
