//! The confinement checks: what a container's root may *do*, each answered by trying.
//!
//! The isolation checks (`checks.rs`) ask what a container sees; these ask whether its root
//! is still the host's root in power: can it open the host's disk, write kernel knobs, read
//! the kernel log, mount, raise its own cgroup limits, reach `release_agent`, open files by
//! handle out of its root, use a descriptor the caller left open, hold the dangerous
//! capabilities, or call the syscalls Docker's seccomp profile denies.
//!
//! Every check is harmless: a device node is opened, never read or written; a kernel knob or
//! a cgroup file is opened for writing, never written; a tmpfs or cgroup mount is made in a
//! temp dir this check made inside the container and unmounted at once; the kernel log is
//! read into a 64-byte buffer and dropped; a user namespace is made by a child that exits.
//! Nothing loads a module, reboots or touches the clock.

use super::verdict::{HostFacts, IsolationCheck};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The rows, in the order the matrix prints them: (name, question, stage).
pub const CHECKS: &[(&str, &str, &str)] = &[
    (
        "host_disk",
        "opens the host's disk (mknod, then open)",
        "devices",
    ),
    (
        "proc_sys",
        "can write kernel settings in /proc/sys",
        "paths",
    ),
    ("kernel_log", "reads the host's kernel log", "caps"),
    ("mount_fs", "can mount a filesystem", "caps"),
    ("cgroup_limit", "can raise its own cgroup limits", "caps"),
    (
        "release_agent",
        "reaches a cgroup v1 release_agent",
        "cgroup",
    ),
    (
        "open_by_handle",
        "opens host files by handle (the shocker escape)",
        "caps",
    ),
    (
        "inherited_fd",
        "uses a descriptor the caller left open",
        "exec",
    ),
    (
        "dangerous_caps",
        "holds SYS_ADMIN, SYS_MODULE, DAC_READ_SEARCH ...",
        "caps",
    ),
    (
        "user_namespace",
        "can make a user namespace (kernel attack surface)",
        "seccomp",
    ),
    (
        "keyring",
        "reaches the kernel's keyrings (keyctl)",
        "seccomp",
    ),
];

fn check(name: &str, leaks: bool, evidence: String) -> IsolationCheck {
    super::verdict::check_in(CHECKS, name, leaks, evidence)
}

fn errno_of(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// A temp dir made inside the container (the container's /tmp), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch, String> {
        let base = std::env::temp_dir();
        for i in 0..16u32 {
            let p = base.join(format!(".stagebox-{what}-{}-{i}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Scratch(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot make a temp dir in {}: {}",
                        base.display(),
                        errno_of(&e)
                    ))
                }
            }
        }
        Err("cannot make a temp dir".into())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Opens `path` with `flags`; the descriptor is closed at once.
fn try_open(path: &Path, flags: libc::c_int) -> Result<(), std::io::Error> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated path; the fd, if any, is closed right away.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned here only.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

fn host_disk(h: &HostFacts) -> IsolationCheck {
    let Some((major, minor)) = h.root_dev else {
        return check(
            "host_disk",
            false,
            "the runner gave no host disk to try".into(),
        );
    };
    let dir = match Scratch::new("disk") {
        Ok(d) => d,
        Err(e) => return check("host_disk", false, format!("not tried: {e}")),
    };
    let node = dir.0.join("disk");
    let made = nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(major, minor),
    );
    let result = match made {
        Err(e) => check(
            "host_disk",
            false,
            format!(
                "mknod of the host's disk {major}:{minor} was refused: {}",
                e.desc()
            ),
        ),
        Ok(()) => match try_open(&node, libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(()) => check(
                "host_disk",
                true,
                format!(
                    "made a node for the host's disk {major}:{minor} and opened it (nothing read)"
                ),
            ),
            Err(e) => check(
                "host_disk",
                false,
                format!(
                    "made a node for the host's disk {major}:{minor}, but opening it failed: {}",
                    errno_of(&e)
                ),
            ),
        },
    };
    let _ = std::fs::remove_file(&node);
    result
}

fn proc_sys() -> IsolationCheck {
    let knob = Path::new("/proc/sys/kernel/core_pattern");
    match try_open(knob, libc::O_WRONLY) {
        Ok(()) => check(
            "proc_sys",
            true,
            "opened /proc/sys/kernel/core_pattern for writing (nothing written); a pipe pattern there runs a program on the host".into(),
        ),
        Err(e) => check(
            "proc_sys",
            false,
            format!("opening /proc/sys/kernel/core_pattern for writing failed: {}", errno_of(&e)),
        ),
    }
}

fn kernel_log() -> IsolationCheck {
    let mut buf = [0u8; 64];
    // SAFETY: syslog(SYSLOG_ACTION_READ_ALL) copies at most buf.len() bytes into buf.
    let n = unsafe {
        libc::klogctl(
            3,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len() as libc::c_int,
        )
    };
    if n >= 0 {
        check(
            "kernel_log",
            true,
            format!("syslog(SYSLOG_ACTION_READ_ALL) read {n} bytes of the host's kernel log"),
        )
    } else {
        check(
            "kernel_log",
            false,
            format!(
                "syslog(SYSLOG_ACTION_READ_ALL) failed: {}",
                errno_of(&std::io::Error::last_os_error())
            ),
        )
    }
}

fn mount_at(src: &str, dir: &Path, fstype: &str, data: Option<&str>) -> nix::Result<()> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some(src),
        dir,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        data,
    )
}

fn unmount(dir: &Path) {
    let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
}

fn mount_fs() -> IsolationCheck {
    let dir = match Scratch::new("mount") {
        Ok(d) => d,
        Err(e) => return check("mount_fs", false, format!("not tried: {e}")),
    };
    match mount_at("stagebox-probe", &dir.0, "tmpfs", Some("size=4k")) {
        Ok(()) => {
            unmount(&dir.0);
            check(
                "mount_fs",
                true,
                "mounted a tmpfs (and unmounted it): it could as well mount proc, sysfs or a disk"
                    .into(),
            )
        }
        Err(e) => check(
            "mount_fs",
            false,
            format!("mount(tmpfs) failed: {}", e.desc()),
        ),
    }
}

/// The container's own cgroup lines: (controllers, path); "" for the v2 line.
fn own_cgroups() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Limit files of the container's own cgroup under a cgroup mount at `root` showing `path`.
fn limit_files(root: &Path, path: &str, v2: bool) -> Vec<PathBuf> {
    let own = root.join(path.trim_start_matches('/'));
    let names: &[&str] = if v2 {
        &["pids.max", "memory.max"]
    } else {
        &["pids.max", "memory.limit_in_bytes"]
    };
    names.iter().map(|n| own.join(n)).collect()
}

fn first_writable(files: &[PathBuf]) -> Option<&PathBuf> {
    files
        .iter()
        .find(|f| f.exists() && try_open(f, libc::O_WRONLY).is_ok())
}

fn cgroup_limit() -> IsolationCheck {
    let cgroups = own_cgroups();
    // 1. The container's /sys/fs/cgroup, as it is mounted.
    let mut seen = Vec::new();
    for (ctrl, path) in &cgroups {
        let v2 = ctrl.is_empty();
        let roots: Vec<PathBuf> = if v2 {
            vec!["/sys/fs/cgroup".into(), "/sys/fs/cgroup/unified".into()]
        } else {
            ctrl.split(',')
                .map(|c| PathBuf::from("/sys/fs/cgroup").join(c.trim_start_matches("name=")))
                .collect()
        };
        for r in roots {
            seen.extend(limit_files(&r, path, v2));
        }
    }
    if let Some(f) = first_writable(&seen) {
        return check(
            "cgroup_limit",
            true,
            format!(
                "opened its own {} for writing (nothing written)",
                f.display()
            ),
        );
    }
    // 2. A cgroup filesystem it mounts itself.
    let dir = match Scratch::new("cgroup") {
        Ok(d) => d,
        Err(e) => {
            return check(
                "cgroup_limit",
                false,
                format!("/sys/fs/cgroup is not writable; a mount was not tried: {e}"),
            )
        }
    };
    let mut tried = Vec::new();
    for (ctrl, path) in &cgroups {
        let wanted = ctrl.is_empty() || ctrl.split(',').any(|c| c == "pids" || c == "memory");
        if !wanted {
            continue;
        }
        let r = if ctrl.is_empty() {
            mount_at("cgroup2", &dir.0, "cgroup2", None)
        } else {
            mount_at("cgroup", &dir.0, "cgroup", Some(ctrl))
        };
        match r {
            Ok(()) => {
                let files = limit_files(&dir.0, path, ctrl.is_empty());
                let hit = first_writable(&files).map(|f| {
                    f.strip_prefix(&dir.0)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                });
                unmount(&dir.0);
                if let Some(f) = hit {
                    return check(
                        "cgroup_limit",
                        true,
                        format!("mounted the {} hierarchy itself and opened its own {f} for writing (nothing written)", if ctrl.is_empty() { "cgroup2" } else { ctrl }),
                    );
                }
            }
            Err(e) => tried.push(format!(
                "mount({}) {}",
                if ctrl.is_empty() { "cgroup2" } else { ctrl },
                e.desc()
            )),
        }
    }
    check(
        "cgroup_limit",
        false,
        format!(
            "no limit file of its own cgroup opens for writing{}",
            if tried.is_empty() {
                String::new()
            } else {
                format!("; {}", tried.join(", "))
            }
        ),
    )
}

fn release_agent() -> IsolationCheck {
    let cgroups = own_cgroups();
    let v1: Vec<&(String, String)> = cgroups.iter().filter(|(c, _)| !c.is_empty()).collect();
    if v1.is_empty() {
        return check(
            "release_agent",
            false,
            "no cgroup v1 hierarchy: cgroup v2 has no release_agent".into(),
        );
    }
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let f = e.path().join("release_agent");
            if f.exists() && try_open(&f, libc::O_WRONLY).is_ok() {
                found.push(f.display().to_string());
            }
        }
    }
    let mut refused = None;
    if found.is_empty() {
        if let Ok(dir) = Scratch::new("agent") {
            for (ctrl, _) in &v1 {
                let opts = if ctrl.starts_with("name=") {
                    format!("none,{ctrl}")
                } else {
                    ctrl.clone()
                };
                match mount_at("cgroup", &dir.0, "cgroup", Some(&opts)) {
                    Ok(()) => {
                        let f = dir.0.join("release_agent");
                        if f.exists() && try_open(&f, libc::O_WRONLY).is_ok() {
                            found.push(format!("release_agent of {ctrl} (mounted itself)"));
                        }
                        unmount(&dir.0);
                    }
                    Err(e) => refused = Some(e.desc()),
                }
            }
        }
    }
    if found.is_empty() {
        check(
            "release_agent",
            false,
            match refused {
                Some(e) => format!("no writable release_agent in /sys/fs/cgroup, and mounting a hierarchy failed: {e}"),
                None => "no writable release_agent: the container's cgroup is below the root of every v1 hierarchy".into(),
            },
        )
    } else {
        check(
            "release_agent",
            true,
            format!(
                "opened for writing (nothing written): {}; the kernel runs that program on the host as root",
                found.join(", ")
            ),
        )
    }
}

#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

fn open_by_handle() -> IsolationCheck {
    // /proc/self/exe is stagebox's own file, on a filesystem of the host: a descriptor on it
    // is the "mount fd" open_by_handle_at needs.
    let exe = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => {
            return check(
                "open_by_handle",
                false,
                format!("not tried: /proc/self/exe: {}", errno_of(&e)),
            )
        }
    };
    // An ext2/3/4 handle for inode 2 (the filesystem's root directory), generation 0.
    let mut h = FileHandle {
        handle_bytes: 8,
        handle_type: 1, // FILEID_INO32_GEN
        f_handle: [0; 128],
    };
    h.f_handle[..4].copy_from_slice(&2u32.to_ne_bytes());
    // SAFETY: h is a valid struct file_handle with handle_bytes bytes of handle.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            exe.as_raw_fd(),
            &mut h as *mut FileHandle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by the kernel and is owned here.
        let dir = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let names: Vec<String> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map(|rd| {
                let mut v: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v.truncate(6);
                v
            })
            .unwrap_or_default();
        return check(
            "open_by_handle",
            true,
            format!(
                "open_by_handle_at opened the root directory of the host filesystem holding its executable: {} ...",
                names.join(" ")
            ),
        );
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) => check(
            "open_by_handle",
            false,
            "open_by_handle_at failed: Operation not permitted".into(),
        ),
        _ => {
            // Not an ext filesystem: ask the kernel for the handle of the executable itself.
            let mut h = FileHandle {
                handle_bytes: 128,
                handle_type: 0,
                f_handle: [0; 128],
            };
            let mut mount_id: libc::c_int = 0;
            let empty = c"";
            // SAFETY: h has room for 128 handle bytes; the path is an empty C string.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_name_to_handle_at,
                    exe.as_raw_fd(),
                    empty.as_ptr(),
                    &mut h as *mut FileHandle,
                    &mut mount_id as *mut libc::c_int,
                    libc::AT_EMPTY_PATH,
                )
            };
            if r < 0 {
                return check(
                    "open_by_handle",
                    false,
                    format!(
                        "name_to_handle_at failed: {}",
                        errno_of(&std::io::Error::last_os_error())
                    ),
                );
            }
            // SAFETY: as above, with the handle the kernel filled in.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_open_by_handle_at,
                    exe.as_raw_fd(),
                    &mut h as *mut FileHandle,
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: just returned by the kernel.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
                check(
                    "open_by_handle",
                    true,
                    "open_by_handle_at works: with it, any inode of the host filesystem opens by number".into(),
                )
            } else {
                check(
                    "open_by_handle",
                    false,
                    format!(
                        "open_by_handle_at failed: {}",
                        errno_of(&std::io::Error::last_os_error())
                    ),
                )
            }
        }
    }
}

fn inherited_fd(h: &HostFacts) -> IsolationCheck {
    let Some(fd) = h.inherited_fd else {
        return check(
            "inherited_fd",
            false,
            "the runner left no descriptor open".into(),
        );
    };
    let name = h
        .marker
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    let through = PathBuf::from(format!("/proc/self/fd/{fd}")).join(&name);
    if through.exists() {
        check(
            "inherited_fd",
            true,
            format!(
                "descriptor {fd} is the host's {}: the marker {} is visible through it",
                h.marker
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                name.to_string_lossy()
            ),
        )
    } else if Path::new(&format!("/proc/self/fd/{fd}")).exists() {
        check(
            "inherited_fd",
            false,
            format!("descriptor {fd} is open but shows no host marker"),
        )
    } else {
        check(
            "inherited_fd",
            false,
            format!("descriptor {fd} was closed before exec"),
        )
    }
}

fn dangerous_caps() -> IsolationCheck {
    let eff = crate::kernel::status::Privileges::read(None)
        .map(|p| p.cap_eff)
        .unwrap_or(0);
    let held: Vec<&str> = crate::confine::caps::DANGEROUS
        .iter()
        .copied()
        .filter(|n| {
            crate::confine::caps::number(n)
                .map(|c| eff & (1u64 << c) != 0)
                .unwrap_or(false)
        })
        .collect();
    check(
        "dangerous_caps",
        !held.is_empty(),
        if held.is_empty() {
            format!(
                "CapEff {eff:016x}: {} capabilities, none of SYS_ADMIN SYS_MODULE SYS_TIME SYS_BOOT DAC_READ_SEARCH SYS_PTRACE",
                eff.count_ones()
            )
        } else {
            format!("CapEff {eff:016x} holds {}", held.join(" "))
        },
    )
}

fn user_namespace() -> IsolationCheck {
    // SAFETY: the child only calls unshare and _exits with the result.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            // SAFETY: end the child without the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => check(
                "user_namespace",
                true,
                "unshare(CLONE_NEWUSER) worked: inside it, the kernel's namespaced code runs with full capabilities".into(),
            ),
            Ok(nix::sys::wait::WaitStatus::Exited(_, n)) => check(
                "user_namespace",
                false,
                format!("unshare(CLONE_NEWUSER) failed: {}", nix::errno::Errno::from_raw(n).desc()),
            ),
            other => check("user_namespace", false, format!("the test child ended oddly: {other:?}")),
        },
        Err(e) => check("user_namespace", false, format!("not tried: fork failed: {}", e.desc())),
    }
}

fn keyring() -> IsolationCheck {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) takes integers only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    };
    let err = std::io::Error::last_os_error();
    match (r, err.raw_os_error()) {
        (n, _) if n >= 0 => check(
            "keyring",
            true,
            "keyctl(KEYCTL_GET_KEYRING_ID) answered with a keyring id: keyrings are not namespaced"
                .into(),
        ),
        (_, Some(libc::EPERM)) | (_, Some(libc::ENOSYS)) => check(
            "keyring",
            false,
            format!("keyctl failed: {}", errno_of(&err)),
        ),
        _ => check(
            "keyring",
            true,
            format!("keyctl reached the kernel (it answered {})", errno_of(&err)),
        ),
    }
}

/// Runs every confinement check.
pub fn run_all(h: &HostFacts) -> Vec<IsolationCheck> {
    vec![
        host_disk(h),
        proc_sys(),
        kernel_log(),
        mount_fs(),
        cgroup_limit(),
        release_agent(),
        open_by_handle(),
        inherited_fd(h),
        dangerous_caps(),
        user_namespace(),
        keyring(),
    ]
}
