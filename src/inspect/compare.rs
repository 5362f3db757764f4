//! `stagebox compare`: what does each stage actually protect? Runs stagebox's own probe
//! (`probe --checks`) in containers with every stage on, then with each stage off in turn
//! (or, with `--build-up`, from no stage at all adding one at a time), and prints a matrix:
//! one row per check, one column per configuration, each cell isolated or LEAKS.
//!
//! The user stage is off by default as root (as in Docker), so it is not switched off but
//! added: a last column `+user` is the column before it with `--userns auto`. As an ordinary
//! user the user stage is on in every column (the kernel lets an ordinary user make
//! namespaces only inside a user namespace of their own). What needs root there is shown as
//! `needs root`: a column whose plan only root may run (`-user`, `-pid`), and a row that
//! leaks because the stage guarding it needs root on this host (the cgroup stage without a
//! delegated cgroup).
//!
//! The runner prepares on the host what the checks look for (a marker file, a SysV shared
//! memory segment, a file only the host's root may write) and removes it again, with any
//! mount that leaked, even when a probe fails or the user presses Ctrl-C.

use crate::error::{Error, Result};
use crate::inspect::checks::{HostFacts, IsolationCheck, Verdict};
use crate::inspect::verdict::FdMarker;
use crate::stages::plan::{ConfineToggles, Plan, Toggles};
use crate::stages::RootSwitch;
use crate::stages::{self, StageId};
use colored::Colorize;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Clone)]
pub struct CompareOpts {
    pub rootfs: Option<PathBuf>,
    /// Extra arguments for every `stagebox run` (an image, for example).
    pub run_args: Vec<String>,
    /// Stages to switch off in turn (default: every available stage).
    pub stages: Option<Vec<String>>,
    pub build_up: bool,
    pub format: Format,
    pub evidence: bool,
    pub state: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    pub label: String,
    /// The stages on in this configuration, in pipeline order.
    pub stages: Vec<String>,
    pub root_switch: String,
    /// Why the plan refused this configuration, if it did.
    pub refused: Option<String>,
    /// Why the probe could not run, if it could not.
    pub error: Option<String>,
    /// Why only root may run this configuration, when the runner is not root.
    #[serde(default)]
    pub needs_root: Option<String>,
    /// What this column is, when its label does not say it all.
    #[serde(default)]
    pub note: Option<String>,
    pub checks: Vec<IsolationCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    pub columns: Vec<Column>,
}

struct Config {
    label: String,
    toggles: Toggles,
    root_switch: RootSwitch,
    /// `--userns auto`: the user stage on, where it is off by default (as root).
    userns_auto: bool,
    note: Option<String>,
}

impl Config {
    fn new(label: String, only: Option<Vec<String>>, without: Vec<String>) -> Config {
        Config {
            label,
            toggles: Toggles {
                only,
                without,
                volumes_given: false,
                confine: Default::default(),
            },
            root_switch: RootSwitch::Pivot,
            userns_auto: false,
            note: None,
        }
    }

    /// The toggles `stagebox run` makes of this column's flags, for a runner that is root
    /// or not.
    fn toggles(&self, root: bool) -> Toggles {
        Toggles {
            confine: ConfineToggles {
                user: self.userns_auto.then_some(true),
                rootless: !root,
                ..self.toggles.confine
            },
            ..self.toggles.clone()
        }
    }
}

/// Why the `+user` column comes last.
const USER_NOTE_BUILD_UP: &str = "the user stage comes first in the pipeline, but as root it is off by default (as in Docker), so it is added last: the column before with --userns auto (a range of 65536 host ids of its own)";
const USER_NOTE: &str = "the user stage is off by default as root (as in Docker), so it is added rather than switched off: `all` with --userns auto (a range of 65536 host ids of its own)";
const ROOTLESS_NOTE: &str = "not root: the user stage is on in every column (the kernel lets an ordinary user make namespaces only inside a user namespace of their own)";

fn available() -> Vec<StageId> {
    stages::registry::all()
        .iter()
        .map(|s| s.info().id)
        .filter(|id| *id != StageId::Volumes)
        .collect()
}

/// The columns, for a runner that is root or not.
fn configs(opts: &CompareOpts, root: bool) -> Result<Vec<Config>> {
    let all = available();
    let chosen: Vec<StageId> = match &opts.stages {
        None => all.clone(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names
                .iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.is_empty())
            {
                let id: StageId = n.parse().map_err(|_| {
                    Error::usage(format!(
                        "unknown stage {n:?} in --stages; `stagebox stages` lists them"
                    ))
                })?;
                if !all.contains(&id) {
                    return Err(Error::usage(format!(
                        "stage {n:?} in --stages is not available in this version"
                    )));
                }
                v.push(id);
            }
            v.sort();
            v.dedup();
            v
        }
    };
    let user = chosen.contains(&StageId::User);
    let steps: Vec<StageId> = chosen
        .into_iter()
        .filter(|id| *id != StageId::User)
        .collect();
    let mut out = Vec::new();
    if opts.build_up {
        let mut on: Vec<String> = Vec::new();
        out.push(Config::new("none".into(), Some(vec![]), vec![]));
        for id in &steps {
            on.push(id.name().to_string());
            out.push(Config::new(
                format!("+{}", id.name()),
                Some(on.clone()),
                vec![],
            ));
        }
        if user && root {
            out.push(Config {
                userns_auto: true,
                note: Some(USER_NOTE_BUILD_UP.into()),
                ..Config::new("+user".into(), Some(on), vec![])
            });
        }
    } else {
        out.push(Config::new("all".into(), None, vec![]));
        for id in &steps {
            out.push(Config::new(
                format!("-{}", id.name()),
                None,
                vec![id.name().to_string()],
            ));
        }
        if steps.contains(&StageId::Pivot) {
            out.push(Config {
                root_switch: RootSwitch::Chroot,
                ..Config::new("chroot".into(), None, vec![])
            });
        }
        if user && root {
            out.push(Config {
                userns_auto: true,
                note: Some(USER_NOTE.into()),
                ..Config::new("+user".into(), None, vec![])
            });
        } else if user {
            out.push(Config::new("-user".into(), None, vec!["user".into()]));
        }
    }
    if !root {
        if let Some(first) = out.first_mut() {
            first.note = Some(ROOTLESS_NOTE.into());
        }
    }
    Ok(out)
}

/// The stages this host gives only to root. Without a cgroup v2 subtree delegated to them,
/// an ordinary user has no cgroup to put a container in, and the devices stage's rules live
/// in the container's cgroup. Rootless, they go off in every column (as `stagebox run` turns
/// them off), and a row they guard that leaks shows `needs root`.
const ROOT_ONLY: [(StageId, &str); 2] = [
    (
        StageId::Cgroup,
        "the cgroup stage needs root here: an ordinary user may make cgroups only in a cgroup v2 subtree delegated to them",
    ),
    (
        StageId::Devices,
        "the devices stage needs root: its rules live in the container's cgroup",
    ),
];

/// Rootless: `toggles` with the stages only root may have here switched off.
fn without_root_only(mut toggles: Toggles) -> Toggles {
    let names: Vec<&str> = ROOT_ONLY.iter().map(|(id, _)| id.name()).collect();
    match &mut toggles.only {
        Some(only) => only.retain(|n| !names.contains(&n.as_str())),
        None => {
            for n in names {
                if !toggles.without.iter().any(|w| w == n) {
                    toggles.without.push(n.to_string());
                }
            }
        }
    }
    toggles
}

/// The descriptor the runner leaves open on the marker's directory across `stagebox run`,
/// as a careless caller would (`exec 9</tmp; stagebox run ...`).
const INHERITED_FD: i32 = 9;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The descriptor on the directory of the file only the host's root may write, passed to the
/// workload on purpose (`--preserve-fds 1`), as a volume would show it.
const ROOT_MARKER_FD: i32 = 3;

/// A file only the host's root may write (owner 0, mode 0644) in a directory of its own
/// (mode 0755, so that any uid may look it up), made by the runner when it is root.
struct RootMarker {
    dir: PathBuf,
    name: String,
    content: Vec<u8>,
}

/// The mtime the runner gives the root marker before each run: a write changes it.
const MARKER_MTIME: libc::time_t = 1_000_000_000;

impl RootMarker {
    fn new(token: &str) -> Result<RootMarker> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(".stagebox-hostroot-{token}"));
        std::fs::create_dir(&dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
        let m = RootMarker {
            dir,
            name: "only-root-may-write".into(),
            content: format!("written by the host's root; token {token}\n").into_bytes(),
        };
        let file = m.dir.join(&m.name);
        std::fs::set_permissions(&m.dir, std::fs::Permissions::from_mode(0o755))
            .and_then(|_| std::fs::write(&file, &m.content))
            .and_then(|_| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)))
            .map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        Ok(m)
    }

    fn file(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// Sets the marker's mtime to [`MARKER_MTIME`].
    fn reset_mtime(&self) {
        let t = nix::sys::time::TimeSpec::new(MARKER_MTIME, 0);
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &self.file(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }

    /// What the host sees of the marker after a run: (written, content unchanged).
    fn seen(&self) -> (bool, bool) {
        use std::os::unix::fs::MetadataExt;
        let written = std::fs::metadata(self.file())
            .map(|m| m.mtime() != MARKER_MTIME)
            .unwrap_or(false);
        let same = std::fs::read(self.file()).is_ok_and(|c| c == self.content);
        (written, same)
    }
}

impl Drop for RootMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.file());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// What the runner put on the host; removed on drop.
struct HostSetup {
    facts: HostFacts,
    root: bool,
    root_marker: Option<RootMarker>,
}

impl HostSetup {
    fn new(state: &Path) -> Result<HostSetup> {
        let token = crate::state::ids::new_id();
        let marker = std::env::temp_dir().join(format!(".stagebox-marker-{token}"));
        std::fs::write(&marker, b"a file only the host has\n")
            .map_err(|e| Error::io(format!("write {}", marker.display()), e))?;
        let euid = nix::unistd::geteuid();
        // Built before the root marker is made, so that a failure there still removes the
        // marker and the segment (on drop).
        let mut setup = HostSetup {
            facts: HostFacts::default(),
            root: euid.is_root(),
            root_marker: None,
        };
        // SAFETY: plain shmget; the segment is removed in drop.
        let shm_id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        let host_hostname = nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = state;
        setup.facts = HostFacts {
            marker,
            host_pid: std::process::id() as i32,
            host_hostname,
            host_interfaces: crate::kernel::netif::own_interfaces()
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
            host_net_ns: std::fs::read_link("/proc/self/ns/net")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            shm_id,
            leak_token: String::new(),
            leak_dir: PathBuf::new(),
            limits_expected: false,
            host_cgroup_ns: std::fs::read_link("/proc/self/ns/cgroup")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            root_dev: host_block_device(),
            inherited_fd: Some(INHERITED_FD),
            root_marker: None,
            runner_uid: Some(euid.as_raw()),
        };
        if setup.root {
            setup.root_marker = Some(RootMarker::new(&token)?);
        }
        Ok(setup)
    }
}

impl Drop for HostSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.facts.marker);
        if self.facts.shm_id >= 0 {
            // SAFETY: removing the segment created in new().
            unsafe { libc::shmctl(self.facts.shm_id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
}

/// A block device of the host the runner itself can open (and so a container could, if
/// nothing stopped it): the one holding / when it can, else the first one in /sys/dev/block
/// that opens (on hosts that are themselves confined, a loop device). Opened, never read.
pub fn host_block_device() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let opens = |major: u64, minor: u64| -> bool {
        let dir = std::env::temp_dir().join(format!(".stagebox-dev-{}", std::process::id()));
        if std::fs::create_dir(&dir).is_err() {
            return false;
        }
        let node = dir.join("d");
        let ok = nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major, minor),
        )
        .is_ok()
            && std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&node)
                .is_ok();
        let _ = std::fs::remove_file(&node);
        let _ = std::fs::remove_dir(&dir);
        ok
    };
    use std::os::unix::fs::OpenOptionsExt;
    let root = std::fs::metadata("/").ok().map(|m| {
        let d = m.dev();
        (nix::sys::stat::major(d), nix::sys::stat::minor(d))
    });
    if let Some((ma, mi)) = root {
        if opens(ma, mi) {
            return Some((ma, mi));
        }
    }
    let mut devs: Vec<(u64, u64)> = std::fs::read_dir("/sys/dev/block")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let (a, b) = n.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    devs.sort();
    devs.into_iter().find(|(a, b)| opens(*a, *b))
}

/// Host mounts whose source is the leak check's tmpfs.
fn leaked_mounts(token: &str) -> Vec<PathBuf> {
    let want = format!("stagebox-leak-{token}");
    crate::kernel::mountinfo::read_self()
        .map(|infos| {
            infos
                .into_iter()
                .filter(|m| m.source == want)
                .map(|m| PathBuf::from(m.mount_point))
                .collect()
        })
        .unwrap_or_default()
}

/// The plan of a column as `stagebox run` will make it for this runner, and the stages that
/// are off in it only because the runner is not root. A plan refused only because the runner
/// is not root sets `needs_root`, any other refusal `refused`.
fn plan_for(cfg: &Config, root: bool, col: &mut Column) -> Option<(Toggles, Plan, Vec<StageId>)> {
    let refuse = |col: &mut Column, e: Error| {
        let as_root = Plan::resolve(&cfg.toggles(true), cfg.root_switch);
        if !root && as_root.is_ok() {
            col.needs_root = Some(e.to_string());
        } else {
            col.refused = Some(e.to_string());
        }
    };
    let toggles = if root {
        cfg.toggles(true)
    } else {
        // With a delegated cgroup v2 subtree an ordinary user keeps the cgroup stage (the run
        // fits its plan the same way); without one it goes off in every column.
        let t = cfg.toggles(false);
        let keeps_cgroup = !nix::unistd::geteuid().is_root()
            && Plan::resolve(&t, cfg.root_switch)
                .and_then(|p| p.fit_rootless_cgroup(&crate::cgroup::Limits::default()))
                .is_ok_and(|p| p.is_on(StageId::Cgroup));
        if keeps_cgroup {
            t
        } else {
            without_root_only(t)
        }
    };
    let plan = match Plan::resolve(&toggles, cfg.root_switch) {
        Ok(p) => p,
        Err(e) => {
            refuse(col, e);
            return None;
        }
    };
    if root {
        return Some((toggles, plan, Vec::new()));
    }
    let need_root = match Plan::resolve(&cfg.toggles(true), cfg.root_switch) {
        Ok(as_root) => ROOT_ONLY
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| as_root.is_on(*id) && !plan.is_on(*id))
            .collect(),
        Err(_) => Vec::new(),
    };
    Some((toggles, plan, need_root))
}

fn run_column(cfg: &Config, opts: &CompareOpts, setup: &mut HostSetup) -> Column {
    let mut col = Column {
        label: cfg.label.clone(),
        stages: Vec::new(),
        root_switch: match cfg.root_switch {
            RootSwitch::Pivot => "pivot".into(),
            RootSwitch::Chroot => "chroot".into(),
        },
        refused: None,
        error: None,
        needs_root: None,
        note: cfg.note.clone(),
        checks: Vec::new(),
    };
    let Some((toggles, plan, need_root)) = plan_for(cfg, setup.root, &mut col) else {
        return col;
    };
    col.stages = plan
        .stages
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.id.name().to_string())
        .collect();
    let token = crate::state::ids::new_id();
    setup.facts.leak_token = token.clone();
    setup.facts.leak_dir = PathBuf::from(format!("/tmp/.stagebox-leak-{token}"));
    let cgroup_on = plan.is_on(StageId::Cgroup);
    setup.facts.limits_expected = cgroup_on;
    // The root marker's directory, open, to be descriptor 3 of the workload.
    let root_dir = setup.root_marker.as_ref().and_then(|m| {
        m.reset_mtime();
        std::fs::File::open(&m.dir).ok()
    });
    setup.facts.root_marker = setup
        .root_marker
        .as_ref()
        .filter(|_| root_dir.is_some())
        .map(|m| FdMarker {
            fd: ROOT_MARKER_FD,
            name: m.name.clone(),
        });
    let facts = match serde_json::to_string(&setup.facts) {
        Ok(f) => f,
        Err(e) => {
            col.error = Some(e.to_string());
            return col;
        }
    };
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--trace".into(), "off".into()];
    match &toggles.only {
        Some(only) => args.push(format!("--only={}", only.join(","))),
        None => {
            if !toggles.without.is_empty() {
                args.push(format!("--without={}", toggles.without.join(",")));
            }
        }
    }
    if cfg.userns_auto {
        args.push("--userns=auto".into());
    }
    args.push("--root-switch".into());
    args.push(col.root_switch.clone());
    if let Some(r) = &opts.rootfs {
        if plan.is_on(StageId::Rootfs) {
            args.push("--rootfs".into());
            args.push(r.display().to_string());
        }
    }
    if cgroup_on {
        args.extend(["--memory", "64m", "--pids-limit", "32"].map(String::from));
    }
    if root_dir.is_some() {
        args.extend(["--preserve-fds", "1"].map(String::from));
    }
    args.extend(opts.run_args.iter().cloned());
    args.extend(["--probe", "--", "--json", "--checks"].map(String::from));
    args.push(facts);
    let marker_dir = setup
        .facts
        .marker
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    // Both descriptors are moved above 9 first, so that placing one as 3 or 9 in the child
    // cannot close the other.
    let high = |f: std::fs::File| -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        let fd = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).ok()?;
        // SAFETY: fd was just made by fcntl and is owned here only.
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    };
    let held = std::fs::File::open(&marker_dir).ok().and_then(high);
    let root_dir = root_dir.and_then(high);
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(&args)
        .env("STAGEBOX_STATE", &opts.state)
        .stdin(std::process::Stdio::null());
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let moves: Vec<(i32, i32)> = [
            held.as_ref().map(|f| (f.as_raw_fd(), INHERITED_FD)),
            root_dir.as_ref().map(|f| (f.as_raw_fd(), ROOT_MARKER_FD)),
        ]
        .into_iter()
        .flatten()
        .collect();
        // SAFETY: dup2 is async-signal-safe; the new descriptors have no close-on-exec flag,
        // so they reach stagebox run as descriptors 9 (the careless caller's) and 3 (the
        // root marker's directory, which --preserve-fds 1 passes on).
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in &moves {
                    if libc::dup2(*from, *to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let out = cmd.output();
    drop(held);
    drop(root_dir);
    // Whatever happened, a leaked mount is removed from the host again.
    let leaked = leaked_mounts(&token);
    for m in &leaked {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(&setup.facts.leak_dir);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            col.error = Some(format!("could not start stagebox: {e}"));
            return col;
        }
    };
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            col.error = Some(
                err.lines()
                    .last()
                    .unwrap_or("the probe printed nothing")
                    .to_string(),
            );
            return col;
        }
    };
    let mut checks: Vec<IsolationCheck> =
        serde_json::from_value(v["checks"].clone()).unwrap_or_default();
    for c in checks.iter_mut() {
        match c.name.as_str() {
            "mount_leak" if leaked.is_empty() => {
                c.verdict = Verdict::Isolated;
                c.evidence = format!("{}; not seen in the host's mount table", c.evidence);
            }
            "mount_leak" => {
                c.verdict = Verdict::Leaks;
                c.evidence = format!(
                    "{}; the host's mount table showed it at {} (removed again)",
                    c.evidence,
                    leaked
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            "host_root" => {
                if let (Some(m), Some(_)) = (&setup.root_marker, &setup.facts.root_marker) {
                    let (written, same) = m.seen();
                    if written {
                        c.verdict = Verdict::Leaks;
                    }
                    c.evidence = format!(
                        "{}; on the host the marker {}",
                        c.evidence,
                        match (written, same) {
                            (true, true) =>
                                "was written (its mtime changed) and its content is the same",
                            (true, false) => "was written and its content changed",
                            (false, true) => "was not written (its mtime is as the runner set it)",
                            (false, false) => "was not written, yet its content changed",
                        }
                    );
                }
            }
            "host_disk" if !setup.root && setup.facts.root_dev.is_none() => {
                c.verdict = Verdict::NeedsRoot;
                c.evidence = "the runner is not root and can open none of the host's block devices itself, so there is no disk to try".into();
            }
            _ => {}
        }
        if c.verdict == Verdict::Leaks {
            if let Some((_, why)) = ROOT_ONLY
                .iter()
                .find(|(id, _)| need_root.contains(id) && c.stage == id.name())
            {
                c.verdict = Verdict::NeedsRoot;
                c.evidence = format!("{}; {why}", c.evidence);
            }
        }
    }
    col.checks = checks;
    col
}

/// Runs every configuration and returns the matrix.
pub fn compare(opts: &CompareOpts) -> Result<Matrix> {
    let configs = configs(opts, nix::unistd::geteuid().is_root())?;
    let mut setup = HostSetup::new(&opts.state)?;
    // Ctrl-C stops between configurations, so the host setup is always removed.
    let handler = nix::sys::signal::SigHandler::Handler(on_signal);
    let action = nix::sys::signal::SigAction::new(
        handler,
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &action);
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &action);
    }
    let mut columns = Vec::new();
    for cfg in &configs {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(Error::usage("interrupted; the host was cleaned up"));
        }
        columns.push(run_column(cfg, opts, &mut setup));
    }
    drop(setup);
    Ok(Matrix { columns })
}

fn cell(col: &Column, check: &str) -> (&'static str, Option<String>) {
    if col.refused.is_some() {
        return ("refused", None);
    }
    if col.needs_root.is_some() {
        return ("needs root", None);
    }
    if col.error.is_some() {
        return ("error", None);
    }
    match col.checks.iter().find(|c| c.name == check) {
        Some(c) => (
            match c.verdict {
                Verdict::Isolated => "isolated",
                Verdict::Leaks => "LEAKS",
                Verdict::NotYet => "not yet",
                Verdict::NeedsRoot => "needs root",
            },
            Some(c.evidence.clone()),
        ),
        None => ("?", None),
    }
}

fn paint(s: &str, width: usize) -> String {
    let padded = format!("{s:<width$}");
    match s {
        "isolated" => padded.green().to_string(),
        "LEAKS" => padded.red().bold().to_string(),
        "refused" => padded.yellow().to_string(),
        "error" => padded.magenta().to_string(),
        "needs root" => padded.blue().to_string(),
        _ => padded.dimmed().to_string(),
    }
}

fn notes(m: &Matrix) -> String {
    let mut out = String::new();
    for c in &m.columns {
        if let Some(r) = &c.refused {
            out.push_str(&format!("{}: refused: {r}\n", c.label));
        }
        if let Some(e) = &c.error {
            out.push_str(&format!("{}: error: {e}\n", c.label));
        }
        if let Some(r) = &c.needs_root {
            out.push_str(&format!("{}: needs root: {r}\n", c.label));
        }
        if let Some(n) = &c.note {
            out.push_str(&format!("{}: {n}\n", c.label));
        }
    }
    out
}

pub fn render_table(m: &Matrix, evidence: bool) -> String {
    let qw = crate::inspect::checks::all_checks()
        .iter()
        .map(|c| c.1.len())
        .max()
        .unwrap_or(10);
    let names: Vec<&str> = crate::inspect::checks::all_checks()
        .iter()
        .map(|c| c.0)
        .collect();
    let widths: Vec<usize> = m
        .columns
        .iter()
        .map(|c| {
            names
                .iter()
                .map(|n| cell(c, n).0.len())
                .fold(c.label.len().max(9), usize::max)
        })
        .collect();
    let mut out = format!("{:<qw$}", "check");
    for (c, w) in m.columns.iter().zip(&widths) {
        out.push_str(&format!("  {:<w$}", c.label, w = *w));
    }
    out.push('\n');
    for (name, question, _) in crate::inspect::checks::all_checks() {
        out.push_str(&format!("{question:<qw$}"));
        for (c, w) in m.columns.iter().zip(&widths) {
            out.push_str("  ");
            out.push_str(&paint(cell(c, name).0, *w));
        }
        out.push('\n');
    }
    let n = notes(m);
    if !n.is_empty() {
        out.push('\n');
        out.push_str(&n);
    }
    if evidence {
        out.push_str("\nevidence:\n");
        for c in &m.columns {
            for ch in &c.checks {
                out.push_str(&format!("  [{}] {}: {}\n", c.label, ch.name, ch.evidence));
            }
        }
    }
    out
}

pub fn render_markdown(m: &Matrix) -> String {
    let mut out = String::from("| check |");
    for c in &m.columns {
        out.push_str(&format!(" `{}` |", c.label));
    }
    out.push_str("\n|---|");
    for _ in &m.columns {
        out.push_str("---|");
    }
    out.push('\n');
    for (name, question, stage) in crate::inspect::checks::all_checks() {
        out.push_str(&format!("| {question} ({stage}) |"));
        for c in &m.columns {
            let (v, _) = cell(c, name);
            let v = match v {
                "isolated" => "isolated".to_string(),
                "LEAKS" => "**LEAKS**".to_string(),
                other => format!("_{other}_"),
            };
            out.push_str(&format!(" {v} |"));
        }
        out.push('\n');
    }
    let n = notes(m);
    if !n.is_empty() {
        out.push('\n');
        for l in n.lines() {
            out.push_str(&format!("- {l}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(stages: Option<&str>, build_up: bool) -> CompareOpts {
        CompareOpts {
            rootfs: None,
            run_args: Vec::new(),
            stages: stages.map(|s| vec![s.to_string()]),
            build_up,
            format: Format::Json,
            evidence: false,
            state: PathBuf::from("/nonexistent"),
        }
    }

    fn labels(c: &[Config]) -> Vec<&str> {
        c.iter().map(|c| c.label.as_str()).collect()
    }

    #[test]
    fn as_root_the_user_stage_is_added_last_with_userns_auto() {
        let c = configs(&opts(Some("uts,user"), false), true).unwrap();
        assert_eq!(labels(&c), ["all", "-uts", "+user"]);
        let user = &c[2];
        assert!(user.userns_auto && user.note.as_deref() == Some(USER_NOTE));
        let t = user.toggles(true);
        assert_eq!(t.confine.user, Some(true));
        assert!(Plan::resolve(&t, RootSwitch::Pivot)
            .unwrap()
            .is_on(StageId::User));
        assert!(!Plan::resolve(&c[0].toggles(true), RootSwitch::Pivot)
            .unwrap()
            .is_on(StageId::User));

        let c = configs(&opts(Some("user,mount,uts"), true), true).unwrap();
        assert_eq!(labels(&c), ["none", "+uts", "+mount", "+user"]);
        let last = c.last().unwrap();
        assert_eq!(
            last.toggles.only.as_deref(),
            Some(&["uts".to_string(), "mount".to_string()][..])
        );
        assert!(last.userns_auto && last.note.as_deref() == Some(USER_NOTE_BUILD_UP));
        // Every stage: no -user column, and the user stage off in every other one.
        let c = configs(&opts(None, false), true).unwrap();
        assert!(!labels(&c).contains(&"-user"));
        assert_eq!(labels(&c).last(), Some(&"+user"));
        assert!(c.iter().all(|c| c.note.is_none() || c.label == "+user"));
    }

    #[test]
    fn not_root_the_user_stage_is_always_on_and_its_column_needs_root() {
        let c = configs(&opts(Some("uts,user"), false), false).unwrap();
        assert_eq!(labels(&c), ["all", "-uts", "-user"]);
        assert_eq!(c[0].note.as_deref(), Some(ROOTLESS_NOTE));
        let mut col = Column {
            label: String::new(),
            stages: Vec::new(),
            root_switch: String::new(),
            refused: None,
            error: None,
            needs_root: None,
            note: None,
            checks: Vec::new(),
        };
        // -user: root may run it, an ordinary user may not.
        assert!(plan_for(&c[2], false, &mut col).is_none());
        assert!(col.refused.is_none());
        assert!(col
            .needs_root
            .as_deref()
            .is_some_and(|r| r.contains("without root")));
        // all: runs, with the user stage on and what needs root here off.
        let (t, plan, need_root) = plan_for(&c[0], false, &mut col).unwrap();
        assert!(plan.is_on(StageId::User) && plan.is_on(StageId::Uts));
        assert!(!plan.is_on(StageId::Cgroup) && !plan.is_on(StageId::Devices));
        assert_eq!(t.without, ["cgroup", "devices"]);
        assert_eq!(need_root, [StageId::Cgroup, StageId::Devices]);
        // Build-up: no +user column; a stage only root may have is left out of --only.
        let c = configs(&opts(Some("uts,user,cgroup"), true), false).unwrap();
        assert_eq!(labels(&c), ["none", "+cgroup", "+uts"]);
        let (t, _, need_root) = plan_for(&c[2], false, &mut col).unwrap();
        assert_eq!(t.only.as_deref(), Some(&["uts".to_string()][..]));
        assert_eq!(need_root, [StageId::Cgroup]);
        let (_, _, need_root) = plan_for(&c[0], false, &mut col).unwrap();
        assert!(
            need_root.is_empty(),
            "none asks for no cgroup: {need_root:?}"
        );
    }

    #[test]
    fn needs_root_cells_are_named_and_widen_only_their_column() {
        let check = |name: &str, verdict: Verdict| IsolationCheck {
            name: name.into(),
            question: String::new(),
            stage: String::new(),
            verdict,
            evidence: String::new(),
        };
        let col = |label: &str, needs_root: Option<&str>, checks: Vec<IsolationCheck>| Column {
            label: label.into(),
            stages: Vec::new(),
            root_switch: "pivot".into(),
            refused: None,
            error: None,
            needs_root: needs_root.map(String::from),
            note: None,
            checks,
        };
        let m = Matrix {
            columns: vec![
                col("all", None, vec![check("memory_limit", Verdict::NeedsRoot)]),
                col("-user", Some("without root ..."), vec![]),
                col("-uts", None, vec![check("hostname", Verdict::Leaks)]),
            ],
        };
        assert_eq!(cell(&m.columns[0], "memory_limit").0, "needs root");
        assert_eq!(cell(&m.columns[1], "hostname").0, "needs root");
        let table = render_table(&m, false);
        let header = table.lines().next().unwrap();
        assert!(
            header.ends_with("all         -user       -uts     "),
            "{header:?}"
        );
        assert!(
            table.contains("-user: needs root: without root ..."),
            "{table}"
        );
        let md = render_markdown(&m);
        assert!(md.contains("_needs root_"), "{md}");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["columns"][0]["checks"][0]["verdict"], "needs_root");
    }
}
