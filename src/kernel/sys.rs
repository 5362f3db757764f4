//! The one seam every stage's syscalls go through.
//!
//! Stages never call `nix` directly for the calls that change the container: they call a
//! [`Sys`]. [`RealSys`] makes the real syscall and records it (name, arguments, result) so
//! the trace can print exactly what the kernel was asked. [`Recorder`] makes no syscall at
//! all: unit tests use it to check the order of a stage's calls without root, and can make
//! one call fail to test a fallback (pivot_root -> chroot, for example).

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use std::path::Path;

/// One syscall as the trace shows it: `mount("proc", "/proc", "proc", MS_NOSUID|MS_NODEV, NULL) = 0`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyscallRecord {
    pub call: String,
    pub result: String,
}

impl std::fmt::Display for SyscallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.call, self.result)
    }
}

pub type SysResult<T = ()> = Result<T, Errno>;

/// The syscalls stages make. Each returns the kernel's errno on failure.
pub trait Sys {
    fn unshare(&mut self, flags: CloneFlags) -> SysResult;
    fn sethostname(&mut self, name: &str) -> SysResult;
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult;
    fn umount2(&mut self, target: &Path, flags: MntFlags) -> SysResult;
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> SysResult;
    fn chroot(&mut self, path: &Path) -> SysResult;
    fn chdir(&mut self, path: &Path) -> SysResult;
    fn mkdir(&mut self, path: &Path, mode: u32) -> SysResult;
    fn mknod(&mut self, path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) -> SysResult;
    fn symlink(&mut self, target: &str, link: &Path) -> SysResult;
    /// Bring a network interface up (ioctl SIOCSIFFLAGS with IFF_UP).
    fn link_up(&mut self, ifname: &str) -> SysResult;
    /// Any other call a stage makes by hand (prctl, capset, seccomp, bpf): `call` is how the
    /// trace shows it; `f` makes it and returns the kernel's non-negative result. A recorder
    /// only records the description and returns 0.
    fn raw(&mut self, call: String, f: &mut dyn FnMut() -> SysResult<i64>) -> SysResult<i64>;
    /// Every call made so far, oldest first; drains the log.
    fn take_log(&mut self) -> Vec<SyscallRecord>;
}

/// Renders MS_* flags the way the man page names them.
pub fn ms_flags_str(flags: MsFlags) -> String {
    const NAMES: &[(MsFlags, &str)] = &[
        (MsFlags::MS_RDONLY, "MS_RDONLY"),
        (MsFlags::MS_NOSUID, "MS_NOSUID"),
        (MsFlags::MS_NODEV, "MS_NODEV"),
        (MsFlags::MS_NOEXEC, "MS_NOEXEC"),
        (MsFlags::MS_REMOUNT, "MS_REMOUNT"),
        (MsFlags::MS_BIND, "MS_BIND"),
        (MsFlags::MS_MOVE, "MS_MOVE"),
        (MsFlags::MS_REC, "MS_REC"),
        (MsFlags::MS_PRIVATE, "MS_PRIVATE"),
        (MsFlags::MS_SLAVE, "MS_SLAVE"),
        (MsFlags::MS_SHARED, "MS_SHARED"),
        (MsFlags::MS_STRICTATIME, "MS_STRICTATIME"),
        (MsFlags::MS_RELATIME, "MS_RELATIME"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

pub fn clone_flags_str(flags: CloneFlags) -> String {
    const NAMES: &[(CloneFlags, &str)] = &[
        (CloneFlags::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
        (CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
        (CloneFlags::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    names.join("|")
}

pub(crate) fn opt(s: Option<&str>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "NULL".to_string(),
    }
}

pub(crate) fn res(r: &SysResult) -> String {
    match r {
        Ok(()) => "0".to_string(),
        Err(e) => format!("-1 {e}"),
    }
}

pub(crate) fn res_value(r: &SysResult<i64>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(e) => format!("-1 {e}"),
    }
}

/// Describes a call without making it; shared by [`RealSys`] and [`Recorder`].
pub fn describe_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> String {
    format!(
        "mount({}, {:?}, {}, {}, {})",
        opt(source),
        target,
        opt(fstype),
        ms_flags_str(flags),
        opt(data)
    )
}

pub(crate) fn mntflags_str(flags: MntFlags) -> String {
    if flags.contains(MntFlags::MNT_DETACH) {
        "MNT_DETACH".into()
    } else {
        "0".into()
    }
}

// One description per call, shared by the real and the recording Sys.
pub(crate) fn d_unshare(flags: CloneFlags) -> String {
    format!("unshare({})", clone_flags_str(flags))
}
pub(crate) fn d_sethostname(name: &str) -> String {
    format!("sethostname({name:?})")
}
pub(crate) fn d_umount2(target: &Path, flags: MntFlags) -> String {
    format!("umount2({target:?}, {})", mntflags_str(flags))
}
pub(crate) fn d_pivot_root(new_root: &Path, put_old: &Path) -> String {
    format!("pivot_root({new_root:?}, {put_old:?})")
}
pub(crate) fn d_chroot(path: &Path) -> String {
    format!("chroot({path:?})")
}
pub(crate) fn d_chdir(path: &Path) -> String {
    format!("chdir({path:?})")
}
pub(crate) fn d_mkdir(path: &Path, mode: u32) -> String {
    format!("mkdir({path:?}, {mode:#o})")
}
pub(crate) fn d_mknod(path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) -> String {
    let k = if kind == SFlag::S_IFCHR {
        "S_IFCHR"
    } else {
        "S_IFBLK"
    };
    format!("mknod({path:?}, {k}|{mode:#o}, makedev({major}, {minor}))")
}
pub(crate) fn d_symlink(target: &str, link: &Path) -> String {
    format!("symlink({target:?}, {link:?})")
}
pub(crate) fn d_link_up(ifname: &str) -> String {
    format!("ioctl(SIOCSIFFLAGS, {{ifr_name={ifname:?}, ifr_flags|=IFF_UP}})")
}

/// The real thing: makes the syscall and records it.
#[derive(Default)]
pub struct RealSys {
    log: Vec<SyscallRecord>,
}

impl RealSys {
    pub fn new() -> Self {
        Self::default()
    }
    fn record(&mut self, call: String, r: SysResult) -> SysResult {
        self.log.push(SyscallRecord {
            call,
            result: res(&r),
        });
        r
    }
}

impl Sys for RealSys {
    fn unshare(&mut self, flags: CloneFlags) -> SysResult {
        let r = nix::sched::unshare(flags);
        self.record(d_unshare(flags), r)
    }
    fn sethostname(&mut self, name: &str) -> SysResult {
        let r = nix::unistd::sethostname(name);
        self.record(d_sethostname(name), r)
    }
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        let r = nix::mount::mount(source, target, fstype, flags, data);
        self.record(describe_mount(source, target, fstype, flags, data), r)
    }
    fn umount2(&mut self, target: &Path, flags: MntFlags) -> SysResult {
        let r = nix::mount::umount2(target, flags);
        self.record(d_umount2(target, flags), r)
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> SysResult {
        let r = nix::unistd::pivot_root(new_root, put_old);
        self.record(d_pivot_root(new_root, put_old), r)
    }
    fn chroot(&mut self, path: &Path) -> SysResult {
        let r = nix::unistd::chroot(path);
        self.record(d_chroot(path), r)
    }
    fn chdir(&mut self, path: &Path) -> SysResult {
        let r = nix::unistd::chdir(path);
        self.record(d_chdir(path), r)
    }
    fn mkdir(&mut self, path: &Path, mode: u32) -> SysResult {
        let r = match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) => Ok(()),
            other => other,
        };
        self.record(d_mkdir(path, mode), r)
    }
    fn mknod(&mut self, path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) -> SysResult {
        let dev = nix::sys::stat::makedev(major, minor);
        let r = nix::sys::stat::mknod(path, kind, Mode::from_bits_truncate(mode), dev);
        self.record(d_mknod(path, kind, mode, major, minor), r)
    }
    fn symlink(&mut self, target: &str, link: &Path) -> SysResult {
        let r = nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link);
        self.record(d_symlink(target, link), r)
    }
    fn link_up(&mut self, ifname: &str) -> SysResult {
        let r = crate::kernel::netif::set_up(ifname);
        self.record(d_link_up(ifname), r)
    }
    fn raw(&mut self, call: String, f: &mut dyn FnMut() -> SysResult<i64>) -> SysResult<i64> {
        let r = f();
        self.log.push(SyscallRecord {
            call,
            result: res_value(&r),
        });
        r
    }
    fn take_log(&mut self) -> Vec<SyscallRecord> {
        std::mem::take(&mut self.log)
    }
}
