//! A `Sys` that makes no syscall and records what would have been called: the unit tests'
//! stand-in for the kernel. Compiled only for tests, so it never ships in the binary.

use super::sys::*;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::SFlag;
use std::path::Path;

/// Makes no syscall; records what would have been called. `fail` makes the first call whose
/// description starts with the given prefix return the given errno.
#[derive(Default)]
pub struct Recorder {
    pub calls: Vec<String>,
    pub fail: Vec<(String, Errno)>,
    log: Vec<SyscallRecord>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn failing(prefix: &str, errno: Errno) -> Self {
        Self {
            fail: vec![(prefix.to_string(), errno)],
            ..Self::default()
        }
    }
    fn record(&mut self, call: String) -> SysResult {
        let mut r = Ok(());
        if let Some(i) = self
            .fail
            .iter()
            .position(|(p, _)| call.starts_with(p.as_str()))
        {
            r = Err(self.fail.remove(i).1);
        }
        self.calls.push(call.clone());
        self.log.push(SyscallRecord {
            call,
            result: res(&r),
        });
        r
    }
}

impl Sys for Recorder {
    fn unshare(&mut self, flags: CloneFlags) -> SysResult {
        self.record(d_unshare(flags))
    }
    fn sethostname(&mut self, name: &str) -> SysResult {
        self.record(d_sethostname(name))
    }
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        self.record(describe_mount(source, target, fstype, flags, data))
    }
    fn umount2(&mut self, target: &Path, flags: MntFlags) -> SysResult {
        self.record(d_umount2(target, flags))
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> SysResult {
        self.record(d_pivot_root(new_root, put_old))
    }
    fn chroot(&mut self, path: &Path) -> SysResult {
        self.record(d_chroot(path))
    }
    fn chdir(&mut self, path: &Path) -> SysResult {
        self.record(d_chdir(path))
    }
    fn mkdir(&mut self, path: &Path, mode: u32) -> SysResult {
        self.record(d_mkdir(path, mode))
    }
    fn mknod(&mut self, path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) -> SysResult {
        self.record(d_mknod(path, kind, mode, major, minor))
    }
    fn symlink(&mut self, target: &str, link: &Path) -> SysResult {
        self.record(d_symlink(target, link))
    }
    fn link_up(&mut self, ifname: &str) -> SysResult {
        self.record(d_link_up(ifname))
    }
    fn raw(&mut self, call: String, _f: &mut dyn FnMut() -> SysResult<i64>) -> SysResult<i64> {
        self.record(call).map(|()| 0)
    }
    fn take_log(&mut self) -> Vec<SyscallRecord> {
        std::mem::take(&mut self.log)
    }
}
