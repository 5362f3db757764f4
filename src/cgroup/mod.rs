//! A small cgroup library: find how the host mounts cgroups, create one cgroup per container,
//! write its limits, move a process in, read back what the kernel enforced, and remove it.
//!
//! A cgroup is a directory in a cgroup filesystem; a limit is a file in it; joining is writing
//! a pid into its `cgroup.procs`. Everything here is therefore file I/O, and all of it goes
//! through [`CgroupRoot`], so that unit tests can point the library at a fake tree in a temp
//! directory and check which files were written with which values.
//!
//! Hosts mount cgroups in one of three ways ([`LayoutKind`]):
//! - **v2** (unified): one tree, usually at /sys/fs/cgroup; the controllers a child may use
//!   are switched on in its parent's `cgroup.subtree_control`. See [`v2`].
//! - **v1**: one tree per controller (/sys/fs/cgroup/memory, /sys/fs/cgroup/cpu ...); a process
//!   is in one cgroup per tree. See [`v1`].
//! - **hybrid**: the v1 trees hold the controllers, and a cgroup2 tree (often
//!   /sys/fs/cgroup/unified) with no controllers tracks processes. stagebox uses v1 for the
//!   limits and also makes a cgroup in the unified tree, for its `cgroup.kill`.
//!
//! A user other than root may make cgroups only in a cgroup v2 subtree delegated to it
//! (chowned by root, or by systemd for `user@UID.service`): `delegation.rs` finds the highest
//! such directory above the process's own cgroup, and a rootless run's cgroup goes there, v2
//! only (v1 hierarchies are root's).
//!
//! `mod.rs` holds the layout, the root, the event log and the helpers v1.rs and v2.rs share;
//! `manager.rs` picks one of them for the host (or the delegated subtree); `limits.rs` parses
//! Docker's flags; `delegation.rs` finds a delegated subtree. `member.rs` finds the host
//! directories of the cgroups a process is in and joins them (`exec`); `freezer.rs` freezes
//! and thaws a cgroup (`pause`); `stats.rs` reads what it uses now (`stats`).
//!
//! May import: `error`, `units`, `kernel` (the mountinfo reader). It knows nothing of stages
//! or containers: the cgroup stage drives it.

pub mod delegation;
pub mod freezer;
pub mod limits;
pub mod manager;
pub mod member;
pub mod stats;
pub mod v1;
pub mod v2;

pub use limits::{LimitFlags, Limits};

use crate::error::{Error, Result};
use crate::kernel::mountinfo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An error of the cgroup stage, in one sentence.
pub(crate) fn stage_err(message: String) -> Error {
    Error::Stage {
        stage: "cgroup".into(),
        message,
    }
}

/// The parent directory of every container's cgroup in each hierarchy: `<mount>/<parent>/<id>`,
/// at the top of the hierarchy as Docker's cgroupfs driver does (`/docker/<id>`), not below
/// the runtime's own cgroup: on v2 a cgroup with processes in it cannot hand controllers down
/// (the "no internal processes" rule), and the runtime's cgroup has the runtime in it. The
/// caller names the parent: `stagebox` for the default state directory, `stagebox-<hash>` for
/// any other (`state::dir::cgroup_parent`), so that two installs never see each other's
/// cgroups.
///
/// Decision: the parent is removed again when the last container's cgroup in it is gone, so
/// the host's tree is left as it was found; a run that finds the parent vanished under it
/// (another run removed it in between) simply makes it again. A parent name must be one
/// plain directory name: it is joined to each hierarchy's mount.
pub fn check_parent(parent: &str) -> Result<()> {
    if parent.is_empty() || parent == "." || parent == ".." || parent.contains('/') {
        return Err(stage_err(format!(
            "{parent:?} cannot be the parent of a cgroup: it must be one directory name"
        )));
    }
    Ok(())
}

/// How cgroups are mounted on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Only cgroup2 (the unified hierarchy), normally at /sys/fs/cgroup.
    V2,
    /// Only cgroup v1 controller hierarchies.
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount (e.g. /sys/fs/cgroup/unified).
    Hybrid,
    /// No cgroup filesystem mounted (or no mountinfo to tell).
    None,
}

impl LayoutKind {
    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::V2 => "v2",
            LayoutKind::V1 => "v1",
            LayoutKind::Hybrid => "hybrid",
            LayoutKind::None => "none",
        }
    }
}

/// Where each cgroup filesystem is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The first cgroup2 mount point.
    pub v2: Option<PathBuf>,
    /// v1 controller name -> mount point of its hierarchy (cpu and cpuacct may share one).
    pub v1: BTreeMap<String, PathBuf>,
    /// v1 hierarchies without a controller (`name=systemd`), by mount point.
    pub v1_named: Vec<PathBuf>,
}

/// The v1 controllers the cgroup stage knows how to use.
pub const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "pids", "cpuset"];

impl Layout {
    /// Reads the layout from a /proc/PID/mountinfo text.
    pub fn from_mountinfo(text: &str) -> Layout {
        let mut layout = Layout::default();
        for m in mountinfo::parse(text) {
            match m.fs_type.as_str() {
                "cgroup2" if layout.v2.is_none() => layout.v2 = Some(PathBuf::from(&m.mount_point)),
                "cgroup" => {
                    let mut any = false;
                    for opt in m.super_opts.split(',') {
                        if V1_CONTROLLERS.contains(&opt) || is_v1_controller(opt) {
                            layout
                                .v1
                                .entry(opt.to_string())
                                .or_insert_with(|| PathBuf::from(&m.mount_point));
                            any = true;
                        }
                    }
                    if !any {
                        layout.v1_named.push(PathBuf::from(&m.mount_point));
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// The layout of the host this process runs on.
    pub fn detect() -> Result<Layout> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
            Error::io(
                "read /proc/self/mountinfo to find the cgroup filesystems",
                e,
            )
        })?;
        Ok(Layout::from_mountinfo(&text))
    }

    pub fn kind(&self) -> LayoutKind {
        let v1 = !self.v1.is_empty() || !self.v1_named.is_empty();
        match (v1, self.v2.is_some()) {
            (true, true) => LayoutKind::Hybrid,
            (true, false) => LayoutKind::V1,
            (false, true) => LayoutKind::V2,
            (false, false) => LayoutKind::None,
        }
    }

    /// The v1 hierarchies with a controller, each mount point once (sorted by controller).
    pub fn v1_hierarchies(&self) -> Vec<(Vec<String>, PathBuf)> {
        let mut out: Vec<(Vec<String>, PathBuf)> = Vec::new();
        for (ctl, mount) in &self.v1 {
            match out.iter_mut().find(|(_, m)| m == mount) {
                Some((ctls, _)) => ctls.push(ctl.clone()),
                None => out.push((vec![ctl.clone()], mount.clone())),
            }
        }
        out
    }
}

fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "blkio"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "perf_event"
            | "hugetlb"
            | "rdma"
            | "misc"
    )
}

/// Every read and write of the cgroup library goes through here. On the host the base is `/`
/// and the files are the kernel's; in unit tests the base is a temp directory holding a fake
/// tree, where writes create plain files and rmdir removes a directory with its files.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    base: PathBuf,
    fake: bool,
}

impl CgroupRoot {
    /// The host's own filesystem.
    pub fn host() -> CgroupRoot {
        CgroupRoot {
            base: PathBuf::from("/"),
            fake: false,
        }
    }

    /// A fake tree under `dir` (tests): absolute paths are taken relative to it.
    pub fn fake(dir: &Path) -> CgroupRoot {
        CgroupRoot {
            base: dir.to_path_buf(),
            fake: true,
        }
    }

    /// Where an absolute cgroup path really is.
    pub fn real(&self, p: &Path) -> PathBuf {
        self.base.join(p.strip_prefix("/").unwrap_or(p))
    }

    pub fn read(&self, p: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(self.real(p))
    }

    /// The file's content, trimmed; None when it cannot be read (no such controller file).
    pub fn read_trim(&self, p: &Path) -> Option<String> {
        self.read(p).ok().map(|s| s.trim().to_string())
    }

    pub fn exists(&self, p: &Path) -> bool {
        self.real(p).exists()
    }

    /// One write(2) of the whole value, as the kernel wants for cgroup files.
    pub fn write(&self, p: &Path, value: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(self.fake)
            .truncate(self.fake)
            .open(self.real(p))?;
        f.write_all(value.as_bytes())
    }

    pub fn mkdir(&self, p: &Path) -> std::io::Result<()> {
        std::fs::create_dir(self.real(p))
    }

    pub fn rmdir(&self, p: &Path) -> std::io::Result<()> {
        if self.fake {
            std::fs::remove_dir_all(self.real(p))
        } else {
            std::fs::remove_dir(self.real(p))
        }
    }

    /// SIGKILL to one process of a cgroup. In a fake tree no signal is ever sent (the pids
    /// there are made up): the pid is only taken out of the directory's cgroup.procs, as the
    /// kernel would once the process died.
    pub fn kill(&self, dir: &Path, pid: i32) {
        if self.fake {
            let left: Vec<String> = self
                .procs(dir)
                .iter()
                .filter(|p| **p != pid)
                .map(|p| p.to_string())
                .collect();
            let _ = self.write(&dir.join("cgroup.procs"), &left.join("\n"));
        } else {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Waits a moment for killed processes to leave, reaping those that are ours (the
    /// runtime is the subreaper of the container's processes). Nothing to wait for in a fake.
    pub fn settle(&self) {
        if !self.fake {
            reap_and_wait();
        }
    }

    /// The pids listed in a `cgroup.procs` file (none when it is unreadable or gone).
    pub fn procs(&self, dir: &Path) -> Vec<i32> {
        self.read(&dir.join("cgroup.procs"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every file [`Log::write_limit`] writes, v2 and v1: each becomes a trace fact of that name.
/// A unit test of each layout checks that its facts are all listed here or are
/// [`SUBTREE_CONTROL_FACT`].
pub const LIMIT_FILES: &[&str] = &[
    "memory.max",
    "memory.swap.max",
    "cpu.max",
    "cpu.weight",
    "pids.max",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "cpu.cfs_period_us",
    "cpu.cfs_quota_us",
    "cpu.shares",
];

/// The fact v2 reports as it switches controllers on for a cgroup's children, named by the
/// file's path: `/sys/fs/cgroup/cgroup.subtree_control`, `/sys/fs/cgroup/stagebox/...`.
pub const SUBTREE_CONTROL_FACT: &str = "<cgroup>/cgroup.subtree_control";

/// Every fact name the library reports: the limit files and [`SUBTREE_CONTROL_FACT`].
pub fn fact_names() -> Vec<String> {
    LIMIT_FILES
        .iter()
        .chain(std::iter::once(&SUBTREE_CONTROL_FACT))
        .map(|f| f.to_string())
        .collect()
}

/// What the library did, for the trace: a call with its result, a value the kernel shows
/// (before and after), or a remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Call {
        call: String,
        result: String,
    },
    Fact {
        fact: String,
        before: Option<String>,
        after: Option<String>,
    },
    Note(String),
}

/// Records the library's steps; the cgroup stage turns them into trace lines.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<Event>,
}

fn errno_str(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let errno = nix::errno::Errno::from_raw(n);
            format!("-1 {errno}")
        }
        None => format!("-1 ({e})"),
    }
}

impl Log {
    pub fn call(&mut self, call: String, r: &std::io::Result<()>) {
        let result = match r {
            Ok(()) => "0".to_string(),
            Err(e) => errno_str(e),
        };
        self.events.push(Event::Call { call, result });
    }
    pub fn fact(&mut self, fact: impl Into<String>, before: Option<String>, after: Option<String>) {
        self.events.push(Event::Fact {
            fact: fact.into(),
            before,
            after,
        });
    }
    pub fn note(&mut self, s: impl Into<String>) {
        self.events.push(Event::Note(s.into()));
    }

    /// mkdir, recorded. For a parent (`exist_ok`) one that is there already is used as it
    /// is, without a call (EEXIST from a race with another run is fine too).
    pub fn mkdir(&mut self, root: &CgroupRoot, dir: &Path, exist_ok: bool) -> Result<()> {
        if exist_ok && root.exists(dir) {
            return Ok(());
        }
        let r = root.mkdir(dir);
        self.call(format!("mkdir({:?})", dir), &r);
        match r {
            Ok(()) => Ok(()),
            Err(e) if exist_ok && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(format!("mkdir {}", dir.display()), e)),
        }
    }

    /// Writes a limit file, recorded, then reads back what the kernel shows: the value
    /// before the write and after it become a fact named after the file.
    pub fn write_limit(&mut self, root: &CgroupRoot, file: &Path, value: &str) -> Result<()> {
        let before = root.read_trim(file);
        self.write(root, file, value)?;
        let after = root.read_trim(file);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.fact(name, before, after);
        Ok(())
    }

    /// Writes a file, recorded; no read-back.
    pub fn write(&mut self, root: &CgroupRoot, file: &Path, value: &str) -> Result<()> {
        let r = root.write(file, value);
        self.call(format!("write({:?}, {:?})", file, value), &r);
        r.map_err(|e| Error::io(format!("write {value:?} to {}", file.display()), e))
    }
}

/// What the kernel counted for the cgroup, read from its own files after the workload ended.
/// `None`: that file does not exist on this host (or the controller is not used).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub memory_limit: Option<u64>,
    /// memory.peak (v2) or memory.max_usage_in_bytes (v1).
    pub memory_peak: Option<u64>,
    /// memory.events oom_kill (v2) or memory.oom_control oom_kill (v1).
    pub oom_kills: Option<u64>,
    pub pids_limit: Option<u64>,
    /// pids.events max: how many forks the limit refused.
    pub pids_max_hits: Option<u64>,
    /// CPU time used, microseconds (cpu.stat usage_usec, or cpuacct.usage / 1000).
    pub cpu_usage_us: Option<u64>,
    pub cpu_periods: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    /// Time throttled, microseconds (cpu.stat throttled_usec, or throttled_time / 1000).
    pub cpu_throttled_us: Option<u64>,
    /// Where these were read from, for the trace ("memory.peak", "cpu.stat" ...).
    pub sources: Vec<String>,
}

/// A `key value` line of a flat-keyed file (cpu.stat, memory.events, pids.events ...).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A number file; "max" (no limit) and unreadable files are None.
pub fn number(root: &CgroupRoot, p: &Path) -> Option<u64> {
    root.read_trim(p)?.parse().ok()
}

/// Where a container's device rules go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCgroup {
    /// The container's cgroup in the v1 `devices` hierarchy: devices.deny, devices.allow.
    V1(PathBuf),
    /// The container's cgroup in a cgroup2 tree: a BPF_CGROUP_DEVICE program attaches there.
    V2(PathBuf),
}

/// One container's cgroup, in whichever hierarchies the layout needs.
pub trait Manager {
    /// "v2", "v1" or "hybrid".
    fn layout(&self) -> LayoutKind;
    /// The cgroup directories of this container (one per hierarchy used).
    fn dirs(&self) -> Vec<PathBuf>;
    /// Reads only: can these limits be set here? Says which controller is missing and why.
    fn check(&self, limits: &Limits) -> Result<()>;
    /// Creates the directories and writes the limits, each step logged.
    fn create(&self, limits: &Limits, log: &mut Log) -> Result<()>;
    /// Moves a process in: its pid into every `cgroup.procs`.
    fn join(&self, pid: i32, log: &mut Log) -> Result<()>;
    /// What the kernel counted.
    fn stats(&self) -> Stats;
    /// The parent directories the container's cgroups are made in (one per hierarchy), where
    /// [`sweep_leftovers`] looks.
    fn parents(&self) -> Vec<PathBuf>;
    /// Where the devices stage puts its rules: the v1 devices cgroup where that controller is
    /// mounted, else the cgroup2 one (None: neither was made).
    fn device_cgroup(&self) -> Option<DeviceCgroup>;
    /// Kills what is left inside, then removes the directories (and the parent when empty).
    /// Safe to call on a half-made cgroup: what does not exist is skipped.
    fn destroy(&self) -> Result<(), String>;
}

/// Kills every process in a cgroup directory, by pid (v1, or a v2 kernel without
/// cgroup.kill), until `cgroup.procs` is empty. Reaps zombies that are ours (the runtime is
/// the subreaper of the container's processes).
pub fn kill_all_by_pid(root: &CgroupRoot, dir: &Path) -> Result<(), String> {
    for _ in 0..200 {
        let pids = root.procs(dir);
        if pids.is_empty() {
            return Ok(());
        }
        for p in pids {
            root.kill(dir, p);
        }
        root.settle();
    }
    Err(format!(
        "processes are still in {} after SIGKILL",
        dir.display()
    ))
}

/// Reaps exited children (without blocking), then sleeps a moment.
fn reap_and_wait() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
}

/// rmdir, retrying while the kernel still says EBUSY (a process that was just killed may not
/// have left yet). A directory that is already gone is fine.
pub fn rmdir_retry(root: &CgroupRoot, dir: &Path) -> Result<(), String> {
    for _ in 0..200 {
        match root.rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => root.settle(),
            Err(e) => return Err(format!("rmdir {}: {e}", dir.display())),
        }
    }
    Err(format!("rmdir {}: still busy after 1 s", dir.display()))
}

/// How old an empty container cgroup must be before another run takes it for a leftover: a
/// live run's cgroup is empty only for the moments between its mkdir and the join, and
/// between the workload's exit and its own cleanup.
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the container cgroups a runtime that was itself killed (SIGKILL: no undo list
/// ran) left behind in these parents: a directory named like a container id (12 hex digits)
/// with no process and no child cgroup in it, made at least `older_than` ago. One with
/// processes still inside is left: they are still held by it. Each rmdir is logged.
pub fn sweep_leftovers(
    root: &CgroupRoot,
    parents: &[PathBuf],
    older_than: std::time::Duration,
    log: &mut Log,
) -> usize {
    let mut removed = 0;
    for parent in parents {
        let Ok(rd) = std::fs::read_dir(root.real(parent)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_id = name.len() == 12 && name.chars().all(|c| c.is_ascii_hexdigit());
            if !is_id || !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let dir = parent.join(&name);
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            let has_children = std::fs::read_dir(e.path())
                .map(|rd| {
                    rd.flatten()
                        .any(|c| c.file_type().map(|t| t.is_dir()).unwrap_or(false))
                })
                .unwrap_or(true);
            if old && !has_children && root.procs(&dir).is_empty() {
                let r = root.rmdir(&dir);
                log.call(format!("rmdir({dir:?})"), &r);
                if r.is_ok() {
                    removed += 1;
                }
            }
        }
    }
    removed
}

/// Removes the shared parent if no container's cgroup is left in it. Another run may be
/// using it (ENOTEMPTY/EBUSY) or have removed it already (ENOENT): both are fine.
pub fn rmdir_parent_if_empty(root: &CgroupRoot, parent: &Path) {
    let has_children = std::fs::read_dir(root.real(parent))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        })
        .unwrap_or(true);
    if !has_children {
        let _ = root.rmdir(parent);
    }
}

/// The controllers listed in a cgroup2 `cgroup.controllers` or `cgroup.subtree_control`.
pub fn controller_list(root: &CgroupRoot, file: &Path) -> Option<Vec<String>> {
    root.read(file)
        .ok()
        .map(|t| t.split_whitespace().map(str::to_string).collect())
}

/// Whether `cpus` (a CPU list) names only CPUs that `available` (another list) has.
pub fn cpus_within(cpus: &str, available: &str) -> bool {
    match (
        limits::parse_cpu_list(cpus),
        limits::parse_cpu_list(available),
    ) {
        (Some(want), Some(have)) => want.iter().all(|c| have.contains(c)),
        _ => false,
    }
}

/// The number of CPUs the host has online (for `--cpus` above it).
pub fn online_cpus(root: &CgroupRoot) -> Option<usize> {
    root.read_trim(Path::new("/sys/devices/system/cpu/online"))
        .and_then(|s| limits::parse_cpu_list(&s))
        .map(|v| v.len())
        .filter(|n| *n > 0)
}

/// Checks that do not depend on the cgroup version: `--cpus` and `--cpuset-cpus` within the
/// host's CPUs.
pub fn check_common(root: &CgroupRoot, limits: &Limits) -> Result<()> {
    if let (Some(c), Some(online)) = (
        &limits.cpuset_cpus,
        root.read_trim(Path::new("/sys/devices/system/cpu/online")),
    ) {
        if !cpus_within(c, &online) {
            return Err(Error::usage(format!(
                "--cpuset-cpus {c} names CPUs this host does not have (online: {online})"
            )));
        }
    }
    if let (Some(q), Some(n)) = (limits.cpus, online_cpus(root)) {
        if q.quota_us > q.period_us * n as u64 {
            return Err(Error::usage(format!(
                "--cpus {} is more than this host has: the range is 0.01 to {n}, as there are only {n} CPUs online",
                q.cpus()
            )));
        }
    }
    Ok(())
}

/// Reads /proc/PID/cgroup as (hierarchy, path) lines: `memory` -> `/stagebox/ID`, and the
/// v2 line as `""`. Used to show a process moving in, and by the cgroupns stage.
pub fn proc_cgroup_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            let ctls = f.next()?;
            let path = f.next()?;
            Some((ctls.to_string(), path.to_string()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! A fake cgroup tree in a temp dir: the files the kernel would show after mkdir.
    use super::*;

    pub fn touch(root: &CgroupRoot, p: &str, content: &str) {
        let real = root.real(Path::new(p));
        if let Some(d) = real.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(real, content).unwrap();
    }

    pub fn content(root: &CgroupRoot, p: &str) -> String {
        std::fs::read_to_string(root.real(Path::new(p))).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// Fails unless every fact of the log is one of [`fact_names`].
    pub fn facts_are_limit_files(log: &Log) {
        let mut seen = 0;
        for e in &log.events {
            if let Event::Fact { fact, .. } = e {
                seen += 1;
                assert!(
                    LIMIT_FILES.contains(&fact.as_str())
                        || fact.ends_with("/cgroup.subtree_control"),
                    "{fact} is not in cgroup::fact_names()"
                );
            }
        }
        assert!(seen > 0, "no fact at all");
    }

    /// The calls of a log, as "mkdir(...) = 0" lines.
    pub fn calls(log: &Log) -> Vec<String> {
        log.events
            .iter()
            .filter_map(|e| match e {
                Event::Call { call, result } => Some(format!("{call} = {result}")),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn layout_maps_controllers_to_mount_points() {
        let l = Layout::from_mountinfo(HYBRID);
        assert_eq!(l.kind(), LayoutKind::Hybrid);
        assert_eq!(l.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(l.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(l.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(l.v1_named, vec![PathBuf::from("/sys/fs/cgroup/systemd")]);
        let h = l.v1_hierarchies();
        assert_eq!(
            h[0],
            (
                vec!["cpu".to_string(), "cpuacct".to_string()],
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
            )
        );
        assert_eq!(h.len(), 3);
        let v2 = Layout::from_mountinfo(
            "30 26 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(v2.kind(), LayoutKind::V2);
        assert_eq!(Layout::from_mountinfo("").kind(), LayoutKind::None);
    }

    #[test]
    fn keyed_files_and_proc_cgroup_lines() {
        let stat = "usage_usec 1500\nuser_usec 1000\nnr_throttled 9\nthrottled_usec 780000\n";
        assert_eq!(keyed(stat, "usage_usec"), Some(1500));
        assert_eq!(keyed(stat, "throttled_usec"), Some(780000));
        assert_eq!(keyed(stat, "nope"), None);
        let lines = proc_cgroup_lines("4:memory:/stagebox/abc\n0::/\n");
        assert_eq!(
            lines,
            vec![
                ("memory".into(), "/stagebox/abc".into()),
                ("".into(), "/".into())
            ]
        );
        assert!(cpus_within("0-1", "0-3"));
        assert!(!cpus_within("4", "0-3"));
    }

    #[test]
    fn leftovers_without_processes_are_swept_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = CgroupRoot::fake(dir.path());
        let parent = PathBuf::from("/sys/fs/cgroup/memory/stagebox");
        testing::touch(
            &root,
            "/sys/fs/cgroup/memory/stagebox/aaaaaaaaaaaa/cgroup.procs",
            "",
        );
        testing::touch(
            &root,
            "/sys/fs/cgroup/memory/stagebox/bbbbbbbbbbbb/cgroup.procs",
            "42\n",
        );
        testing::touch(
            &root,
            "/sys/fs/cgroup/memory/stagebox/not-an-id/cgroup.procs",
            "",
        );
        let mut log = Log::default();
        // Too young: a run that has not joined yet.
        let n = sweep_leftovers(&root, std::slice::from_ref(&parent), LEFTOVER_AGE, &mut log);
        assert_eq!(n, 0);
        let n = sweep_leftovers(
            &root,
            std::slice::from_ref(&parent),
            std::time::Duration::ZERO,
            &mut log,
        );
        assert_eq!(n, 1);
        assert!(!root.exists(&parent.join("aaaaaaaaaaaa")));
        assert!(root.exists(&parent.join("bbbbbbbbbbbb")));
        assert!(root.exists(&parent.join("not-an-id")));
    }

    #[test]
    fn cpus_above_the_host_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = CgroupRoot::fake(dir.path());
        testing::touch(&root, "/sys/devices/system/cpu/online", "0-1\n");
        let l = Limits::from_flags(&LimitFlags {
            cpus: Some("3".into()),
            ..Default::default()
        })
        .unwrap();
        let e = check_common(&root, &l).unwrap_err().to_string();
        assert!(e.contains("range is 0.01 to 2"), "{e}");
    }
}
