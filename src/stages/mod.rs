//! The stages, one file each, and the registry that puts them in pipeline order.
//!
//! A stage does its real syscalls in the container process (through [`crate::kernel::sys::Sys`],
//! so every call is traced), then reads back from /proc that the kernel did what was asked.
//! A stage that cannot confirm its effect fails: silently doing nothing is the one bug a
//! teaching runtime must never have.
//!
//! Order (see ARCHITECTURE.md): user, cgroup, devices, uts, ipc, pid, net, cgroupns, mount,
//! rootfs, volumes, proc, pivot, then the confinement stages in the order runc's init uses:
//! paths, nnp, caps, seccomp (last, right before execve).
//!
//! This file holds what every stage shares: [`StageId`], [`RootSwitch`], [`ExitKind`], the
//! contexts ([`ChildCtx`] in the container process, [`HostCtx`] in the runtime), the
//! [`Stage`] trait and the [`Undo`] list. `registry.rs` lists the stages in order; `plan.rs`
//! turns `--only`/`--without` into the pipeline. A stage sees the resource limits
//! (`&Limits`), the `--device` list, the user namespace it asks for (`UserNs`) and the name of
//! its state directory's cgroup parent,
//! never the whole run configuration.
//!
//! May import: `error`, `units`, `kernel`, `trace`, `state`, `cgroup`, `confine`, `rootfs`, `network` (the net stage makes its veth and starts the port proxy). Must not
//! import `runtime`: the runtime drives the stages, not the other way round.

use crate::kernel::sys::Sys;
use nix::sys::signal::Signal;
use std::path::PathBuf;

pub mod caps;
pub mod cgroup;
pub mod cgroupns;
pub mod devices;
pub mod ipc;
pub mod mount;
pub mod net;
pub mod nnp;
pub mod paths;
pub mod pid;
pub mod pivot;
pub mod plan;
pub mod proc;
pub mod registry;
pub mod rootfs;
pub mod seccomp;
pub mod user;
pub mod uts;
pub mod volumes;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum StageId {
    User,
    Cgroup,
    Devices,
    Uts,
    Ipc,
    Pid,
    Net,
    Cgroupns,
    Mount,
    Rootfs,
    Volumes,
    Proc,
    Pivot,
    Paths,
    Nnp,
    Caps,
    Seccomp,
}

impl StageId {
    pub const ORDER: [StageId; 17] = [
        StageId::User,
        StageId::Cgroup,
        StageId::Devices,
        StageId::Uts,
        StageId::Ipc,
        StageId::Pid,
        StageId::Net,
        StageId::Cgroupns,
        StageId::Mount,
        StageId::Rootfs,
        StageId::Volumes,
        StageId::Proc,
        StageId::Pivot,
        StageId::Paths,
        StageId::Nnp,
        StageId::Caps,
        StageId::Seccomp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageId::User => "user",
            StageId::Cgroup => "cgroup",
            StageId::Uts => "uts",
            StageId::Ipc => "ipc",
            StageId::Pid => "pid",
            StageId::Net => "net",
            StageId::Cgroupns => "cgroupns",
            StageId::Mount => "mount",
            StageId::Rootfs => "rootfs",
            StageId::Volumes => "volumes",
            StageId::Proc => "proc",
            StageId::Pivot => "pivot",
            StageId::Devices => "devices",
            StageId::Paths => "paths",
            StageId::Nnp => "nnp",
            StageId::Caps => "caps",
            StageId::Seccomp => "seccomp",
        }
    }
}

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StageId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        StageId::ORDER
            .iter()
            .copied()
            .find(|id| id.name() == s.to_ascii_lowercase())
            .ok_or(())
    }
}

/// What the mount stage makes of the propagation of every mount in the container's copy of
/// the mount table (OCI's `linux.rootfsPropagation`, always recursive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// MS_PRIVATE: nothing propagates in or out (stagebox's default).
    #[default]
    Private,
    /// MS_SLAVE: the host's new mounts still reach the container, none go out (runc's default).
    Slave,
    /// Left shared: mounts made inside reach the host's peers. Only for showing the leak.
    Shared,
}

impl Propagation {
    pub fn name(self) -> &'static str {
        match self {
            Propagation::Private => "private",
            Propagation::Slave => "slave",
            Propagation::Shared => "shared",
        }
    }
}

impl std::str::FromStr for Propagation {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "private" | "rprivate" => Ok(Propagation::Private),
            "slave" | "rslave" => Ok(Propagation::Slave),
            "shared" | "rshared" => Ok(Propagation::Shared),
            other => Err(crate::Error::usage(format!(
                "unknown --root-propagation {other:?}; use private, slave or shared"
            ))),
        }
    }
}

/// How the pivot stage switches the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootSwitch {
    /// pivot_root(2), then detach the old root: the host's tree is gone from the namespace.
    Pivot,
    /// chroot(2) only: the old root is still mounted, and a root process can climb out.
    Chroot,
}

impl std::str::FromStr for RootSwitch {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "pivot" | "pivot_root" => Ok(RootSwitch::Pivot),
            "chroot" => Ok(RootSwitch::Chroot),
            other => Err(crate::Error::usage(format!(
                "unknown --root-switch {other:?}; use pivot or chroot"
            ))),
        }
    }
}

/// How the workload ended, as waitpid(2) reported it.
#[derive(Debug, Clone, Copy)]
pub enum ExitKind {
    Exited(i32),
    Signaled(Signal),
}

impl ExitKind {
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Exited(c) => c,
            ExitKind::Signaled(s) => 128 + s as i32,
        }
    }
    pub fn describe(self) -> String {
        match self {
            ExitKind::Exited(c) => format!("the workload exited with status {c}"),
            ExitKind::Signaled(s) => format!(
                "the workload was killed by signal {} ({}), exit status {}",
                s as i32,
                s.as_str(),
                self.code()
            ),
        }
    }
}

/// What a stage is, for `stagebox stages`, the plan and the book.
pub struct StageInfo {
    pub id: StageId,
    /// One line: what the stage does.
    pub summary: &'static str,
    /// The kernel-visible fact the trace shows changing.
    pub shows: &'static str,
    pub default_on: bool,
    /// The lesson that teaches it (file name under lessons/, without .md).
    pub lesson: &'static str,
    /// Stages this one cannot work without, each with the reason in words.
    pub requires: &'static [(StageId, &'static str)],
}

/// What the container process is told by the runtime.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChildSpec {
    pub hostname: String,
    /// The rootfs directory on the host (already resolved and checked): the lowest
    /// read-only layer.
    pub rootfs: Option<PathBuf>,
    pub root_switch: RootSwitch,
    /// What the mount stage does to the propagation of the container's mounts.
    #[serde(default)]
    pub root_propagation: Propagation,
    /// The copy-on-write layers: when set, the rootfs stage mounts an overlay instead of a
    /// plain bind.
    #[serde(default)]
    pub overlay: Option<OverlaySpec>,
    #[serde(default)]
    pub volumes: Vec<crate::state::container::VolumeMount>,
    /// Remount / read-only at the end of the pivot stage (`--read-only`).
    #[serde(default)]
    pub read_only: bool,
    /// What the confinement stages enforce (capabilities, paths, devices, seccomp).
    #[serde(default)]
    pub confine: crate::confine::Confinement,
    /// The user namespace's maps and how they are written (None: the user stage is off).
    #[serde(default)]
    pub userns: Option<UserNs>,
    /// What the net stage connects the new network namespace to.
    #[serde(default)]
    pub net: NetSetup,
    /// /etc/hostname, /etc/hosts and /etc/resolv.conf, bind-mounted by the rootfs stage over
    /// the overlay (Docker's init layer).
    #[serde(default)]
    pub etc_files: Vec<crate::state::container::VolumeMount>,
    /// `--tmpfs` and `--mount type=tmpfs`: fresh tmpfs mounts the volumes stage makes.
    pub tmpfs: Vec<crate::state::volume::TmpfsMount>,
    /// An OCI config's `linux.sysctl`: written under the container's own /proc/sys right
    /// after the proc stage mounted it (before the paths stage makes it read-only).
    #[serde(default)]
    pub sysctl: Vec<(String, String)>,
    /// An OCI config's /sys/fs/cgroup mount: the proc stage binds the container's own cgroup
    /// directories there, read-only. The cgroup's PARENT and LEAF names (as the cgroup stage
    /// makes it in every hierarchy).
    #[serde(default)]
    pub cgroup_mount: Option<(String, String)>,
    /// Existing namespaces to join instead of making new ones (an OCI config's
    /// `linux.namespaces[i].path`): the uts, ipc, net and cgroupns stages `setns(2)` into
    /// these files in their `apply`.
    #[serde(default)]
    pub join: Vec<NsJoin>,
    /// An OCI config's /dev/mqueue mount: the proc stage mounts a POSIX message queue
    /// filesystem there.
    #[serde(default)]
    pub mqueue: bool,
}

/// An existing namespace a stage joins with `setns(2)` instead of making a new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NsJoin {
    /// The stage that joins: uts, ipc, net or cgroupns.
    pub stage: StageId,
    /// A namespace file: `/proc/PID/ns/TYPE`, or a bind mount of one (`/run/netns/NAME`).
    pub path: PathBuf,
}

/// What the runtime prepares for the net stage's `parent_after` before the fork: what it
/// did (the bridge, the lease: traced there) and the published ports' bound sockets.
#[derive(Default)]
pub struct NetHostData {
    pub records: Vec<crate::kernel::sys::SyscallRecord>,
    pub notes: Vec<String>,
    pub listeners: Option<crate::network::proxy::Listeners>,
    /// The running proxy, kept here until the runtime takes it.
    pub proxy: Option<crate::network::proxy::Proxy>,
}

/// What the net stage does besides bringing up `lo` (`--network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NetSetup {
    /// `--network none`: a new namespace with only `lo`.
    #[default]
    Loopback,
    /// `--network container:NAME`: join that container's namespace (`setns`) instead of
    /// making one.
    Join {
        /// The other container's name, for the trace.
        name: String,
        /// Its workload's host pid: the namespace is /proc/PID/ns/net.
        pid: i32,
    },
    /// `--network bridge` or a network's name: a veth pair, one end on the host plugged into
    /// the bridge, the other in the container as `eth0` with a leased address.
    Veth {
        network: String,
        bridge: String,
        /// The host end's name (`veth` and 7 hex digits of the container id).
        host_end: String,
        ip: std::net::Ipv4Addr,
        prefix: u8,
        gateway: std::net::Ipv4Addr,
    },
}

impl ChildSpec {
    /// A spec for unit tests: hostname "h", rootfs /r, pivot_root, nothing else.
    #[cfg(test)]
    pub fn for_test(root_switch: RootSwitch) -> ChildSpec {
        ChildSpec {
            hostname: "h".into(),
            rootfs: Some("/r".into()),
            root_switch,
            root_propagation: Propagation::Private,
            overlay: None,
            volumes: vec![],
            read_only: false,
            confine: crate::confine::Confinement::docker_default(),
            userns: None,
            net: NetSetup::Loopback,
            etc_files: vec![],
            tmpfs: vec![],
            sysctl: vec![],
            cgroup_mount: None,
            join: vec![],
            mqueue: false,
        }
    }

    /// The namespace file this stage joins, if it joins one instead of making one.
    pub fn join_path(&self, stage: StageId) -> Option<&std::path::Path> {
        self.join
            .iter()
            .find(|j| j.stage == stage)
            .map(|j| j.path.as_path())
    }

    /// A spec for unit tests with this hostname and no rootfs.
    #[cfg(test)]
    pub fn for_tests(hostname: &str) -> ChildSpec {
        ChildSpec {
            hostname: hostname.into(),
            rootfs: None,
            ..ChildSpec::for_test(RootSwitch::Pivot)
        }
    }
}

/// How the user stage's maps get written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MapWriter {
    /// The runtime is root: it writes any map into /proc/PID/uid_map itself.
    Root,
    /// The runtime is an ordinary user mapping only its own ids: `deny` into
    /// /proc/PID/setgroups first, as the kernel requires.
    Unprivileged,
    /// The runtime is an ordinary user with subordinate ranges: the setuid helpers write.
    Helpers {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
}

/// What the user stage maps, decided before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserNs {
    /// `--userns=auto`: the maps come from a slice of the `stagebox` range, taken in the
    /// stage's `prepare` (the maps below are then empty).
    pub auto: bool,
    pub uid_map: Vec<crate::kernel::idmap::IdMap>,
    pub gid_map: Vec<crate::kernel::idmap::IdMap>,
    pub writer: MapWriter,
    /// Paths (the state directory, a `--rootfs` outside it) the rootfs stage covers with
    /// copies idmapped to this namespace, so that files host root owns are root's inside.
    /// Empty when the runtime is not root (it may not idmap; the user's files are mapped).
    pub idmapped: Vec<PathBuf>,
}

/// The directories of an overlay mount.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OverlaySpec {
    /// Read-only layers, topmost first (overlayfs's lowerdir order).
    pub lower: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper: PathBuf,
    /// overlayfs's scratch directory, on the same filesystem as upper.
    pub work: PathBuf,
    /// Where the merged view is mounted (inside the container's mount namespace only).
    pub merged: PathBuf,
}

/// A stage failed: what it tried and what the kernel said, in one sentence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

impl StageError {
    pub fn sys(call: &str, errno: nix::errno::Errno) -> Self {
        StageError(format!("{call} failed: {errno}"))
    }
    /// The syscall returned success but /proc does not show the effect.
    pub fn no_effect(what: impl std::fmt::Display) -> Self {
        StageError(format!(
            "the kernel does not show the expected effect: {what}"
        ))
    }
    pub fn msg(m: impl Into<String>) -> Self {
        StageError(m.into())
    }
}

/// Everything a stage works with while it runs in the container process.
pub struct ChildCtx<'a> {
    pub sys: &'a mut dyn Sys,
    pub spec: &'a ChildSpec,
    /// Where the container's root is mounted (set by the rootfs stage), as a path in the
    /// container's mount namespace before the switch.
    pub root: Option<PathBuf>,
    /// Read the effect back from /proc (false only in unit tests with a recording Sys).
    pub verify: bool,
    /// Set by the pid stage: the runtime must fork so the next process is PID 1.
    pub fork_requested: bool,
    /// Lines for the trace: what the stage noticed or decided (a fallback and its reason).
    pub notes: Vec<String>,
    /// Descriptors the runtime sent with its go-ahead before this stage (the rootfs stage's
    /// idmapped mounts).
    pub fds: Vec<std::os::fd::OwnedFd>,
    /// Calls made outside `sys` (netlink requests), for the trace after `sys`'s own.
    pub records: Vec<crate::kernel::sys::SyscallRecord>,
}

impl<'a> ChildCtx<'a> {
    pub fn new(sys: &'a mut dyn Sys, spec: &'a ChildSpec) -> Self {
        ChildCtx {
            sys,
            spec,
            root: None,
            verify: true,
            fork_requested: false,
            notes: Vec::new(),
            fds: Vec::new(),
            records: Vec::new(),
        }
    }
    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }
    /// The directory that will be the container's root: the mounted rootfs, or / when there
    /// is no rootfs stage.
    pub fn target_root(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from("/"))
    }
}

/// Undo actions for what stages did to the host (a cgroup directory, later a veth), run in
/// reverse order when the run ends: on success, on error, and after Ctrl-C (the runtime
/// forwards the signal, waits for the workload, then returns normally through here).
#[derive(Default)]
pub struct Undo {
    actions: Vec<(String, Box<dyn FnOnce() -> Result<(), String>>)>,
}

impl Undo {
    pub fn push(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<(), String> + 'static,
    ) {
        self.actions.push((what.into(), Box::new(f)));
    }
    /// Runs every action, newest first; returns "what: error" for each that failed.
    pub fn run_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some((what, f)) = self.actions.pop() {
            if let Err(e) = f() {
                errors.push(format!("{what}: {e}"));
            }
        }
        errors
    }
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
    /// Drops every action without running it: what they would undo now outlives this
    /// process on purpose (an OCI `create`; `delete` removes it later).
    pub fn forget(&mut self) {
        self.actions.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        for e in self.run_all() {
            crate::trace::error("cleanup", &e);
        }
    }
}

/// What a stage's host-side hooks work with (in the runtime process, on the host).
pub struct HostCtx<'a> {
    /// The resource limits the user asked for (`-m`, `--cpus`, `--pids-limit` ...).
    pub limits: &'a crate::cgroup::Limits,
    /// The directory the container's cgroup goes in, in every hierarchy: one per state
    /// directory (`state::dir::cgroup_parent`), so that two installs never meet.
    pub cgroup_parent: &'a str,
    /// The name of the container's own cgroup directory under `cgroup_parent`: its id, or
    /// the last part of an OCI config's `linux.cgroupsPath`.
    pub cgroup_leaf: &'a str,
    /// The container's id (12 hex digits).
    pub id: &'a str,
    /// The devices `--device` adds to the allow list (the devices stage writes the rules).
    pub devices: &'a [crate::confine::devices::Device],
    pub undo: &'a mut Undo,
    /// Per-stage data kept between hooks (a cgroup's paths, from prepare to finish).
    pub data: &'a mut std::collections::HashMap<StageId, Box<dyn std::any::Any>>,
    /// Host-side calls for the trace (`mkdir(...)`, `write(... cgroup.procs, "1234")`).
    pub records: Vec<crate::kernel::sys::SyscallRecord>,
    pub notes: Vec<String>,
    /// Facts only the host side can tell (a limit file and the value the kernel shows).
    pub facts: Vec<crate::kernel::observe::Change>,
    /// The user namespace the run asks for (None: the user stage is off).
    pub userns: Option<&'a UserNs>,
    /// What the net stage connects the container to (its veth is made from here).
    pub net: &'a NetSetup,
    /// Descriptors `parent_before` hands to the container process with its go-ahead.
    pub fds: Vec<std::os::fd::OwnedFd>,
}

impl HostCtx<'_> {
    pub fn record(&mut self, call: impl Into<String>, result: impl Into<String>) {
        self.records.push(crate::kernel::sys::SyscallRecord {
            call: call.into(),
            result: result.into(),
        });
    }
    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }
}

pub trait Stage: Sync {
    fn info(&self) -> &'static StageInfo;

    /// On the host, before the container process exists (create a cgroup, write limits).
    /// Whatever it changes on the host it registers in `ctx.undo`. Only for enabled stages.
    fn prepare(&self, _ctx: &mut HostCtx<'_>) -> Result<(), crate::Error> {
        Ok(())
    }
    /// True when the container process must stop before `apply` and wait for
    /// `parent_before` (the cgroup stage: the runtime moves it in while it waits).
    fn waits_for_parent(&self, _spec: &ChildSpec) -> bool {
        false
    }
    /// In the runtime, while the container process waits just before this stage's `apply`.
    fn parent_before(
        &self,
        _ctx: &mut HostCtx<'_>,
        _pid: nix::unistd::Pid,
    ) -> Result<(), crate::Error> {
        Ok(())
    }
    /// In the runtime, after this stage's `apply`, while the container process waits (the
    /// user stage: write uid_map from outside). For a stage whose [`Stage::parent_acts_midway`]
    /// is true, it runs between `apply` and `apply_after_parent`.
    fn parent_after(
        &self,
        _ctx: &mut HostCtx<'_>,
        _pid: nix::unistd::Pid,
    ) -> Result<(), crate::Error> {
        Ok(())
    }
    /// In the runtime after the workload exited, before the undo list runs: report what
    /// the kernel enforced. A returned sentence replaces the plain exit description
    /// (for example "killed by the OOM killer: memory limit 32M reached").
    fn finish(
        &self,
        _ctx: &mut HostCtx<'_>,
        _exit: crate::stages::ExitKind,
    ) -> Result<Option<String>, crate::Error> {
        Ok(None)
    }

    /// Does the stage's syscalls in the container process and checks their effect.
    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError>;
    /// True when the stage's work in the container process has two halves with the runtime's
    /// `parent_after` between them (the user stage: unshare, then the maps are written from
    /// outside, then setresuid(0) inside).
    fn parent_acts_midway(&self, _spec: &ChildSpec) -> bool {
        false
    }
    /// The second half, after `parent_after` (only when `parent_acts_midway`).
    fn apply_after_parent(&self, _ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        Ok(())
    }
    /// Runs when the stage is switched off. Most stages then do nothing at all; the ones
    /// whose absence needs a stand-in (proc: the host's /proc) do it here and say so.
    fn when_off(&self, _ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

/// The top mount at `path` in /proc/self/mountinfo, if any: (fs type, super options).
pub fn mount_at(path: &std::path::Path) -> Result<Option<(String, String)>, StageError> {
    let infos = crate::kernel::mountinfo::read_self()
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/mountinfo: {e}")))?;
    Ok(crate::kernel::mountinfo::top_at(&infos, path)
        .map(|m| (m.fs_type.clone(), m.super_opts.clone())))
}

/// Is `path` a mount point in /proc/self/mountinfo?
pub fn is_mount_point(path: &std::path::Path) -> Result<bool, StageError> {
    Ok(mount_at(path)?.is_some())
}

/// Reads the inode of one of the process's namespaces, `/proc/self/ns/NAME`.
pub fn ns_inode(name: &str) -> Result<String, StageError> {
    crate::kernel::ns::own(name)
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/ns/{name}: {e}")))
}

/// unshare(flag) and check that /proc/self/ns/NAME now names another namespace.
pub fn unshare_checked(
    ctx: &mut ChildCtx<'_>,
    flag: nix::sched::CloneFlags,
    ns: &str,
) -> Result<(), StageError> {
    let before = if ctx.verify {
        Some(ns_inode(ns)?)
    } else {
        None
    };
    let call = format!("unshare({})", crate::kernel::sys::clone_flags_str(flag));
    ctx.sys
        .unshare(flag)
        .map_err(|e| StageError::sys(&call, e))?;
    if let Some(before) = before {
        let after = ns_inode(ns)?;
        if after == before {
            return Err(StageError::no_effect(format!(
                "/proc/self/ns/{ns} is still {before} after {call}"
            )));
        }
    }
    Ok(())
}

/// `setns(2)` into the namespace file at `path` instead of making a namespace, then check that
/// /proc/self/ns/NS now names the file's inode (a namespace file's `st_ino` is the
/// namespace's inode number). `what` says whose namespace it is, for the trace. Returns the
/// inode.
pub fn setns_checked(
    ctx: &mut ChildCtx<'_>,
    path: &std::path::Path,
    flag: nix::sched::CloneFlags,
    ns: &str,
    what: &str,
) -> Result<u64, StageError> {
    use std::os::unix::fs::MetadataExt as _;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        StageError::msg(format!(
            "cannot open the {ns} namespace to join, {shown}: {e}"
        ))
    })?;
    let theirs = file
        .metadata()
        .map_err(|e| StageError::msg(format!("cannot stat {shown}: {e}")))?
        .ino();
    let flags = crate::kernel::sys::clone_flags_str(flag);
    let call = format!("setns(open({shown:?}), {flags})");
    ctx.sys
        .raw(format!("{call}  # {what}"), &mut || {
            nix::sched::setns(&file, flag).map(|()| 0)
        })
        .map_err(|e| StageError::sys(&call, e))?;
    if ctx.verify {
        let now = ns_inode(ns)?;
        if crate::kernel::ns::inode(&now) != Some(theirs) {
            return Err(StageError::no_effect(format!(
                "/proc/self/ns/{ns} is {now} after {call}, not {ns}:[{theirs}]"
            )));
        }
    }
    Ok(theirs)
}
