//! Removing a container completely, whatever killed its runtime: `rm` and `container prune`.
//!
//! A runtime that ends normally undoes what it made. One that was SIGKILLed (or whose monitor
//! was) undoes nothing, and leaves: its record ("dead"), its cgroup in every hierarchy (v1,
//! v2, hybrid: `<mount>/<parent>/<id>`, the parent named after the state directory by
//! `state::dir::cgroup_parent`), processes still in that cgroup, its address lease (a file whose
//! flock went with it), the firewall rules of its published ports, and, when it was killed
//! between making its directory and saving its record, a directory without `config.json`.
//! This file finds each of those again and removes it: processes first (SIGKILL to the
//! cgroup, or to the recorded pid when it is still the recorded process), then cgroups
//! depth-first, then leases and rules, then the directory. The overlay is mounted only in the
//! container's own mount namespace, which died with its processes; a mount found on the host
//! under the container's directory is detached anyway.
//!
//! It lives on the runtime's floor because it needs `cgroup` and `network`; `state` keeps only
//! the records. A `run` sweeps nothing of other containers (it stays fast); `rm` and
//! `container prune` do.

use crate::cgroup::{self, CgroupRoot, Layout};
use crate::error::{Error, Result};
use crate::state::container::{self, Container};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `container prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub ids: Vec<String>,
    /// Bytes of the removed directories (their writable layers).
    pub reclaimed: u64,
    /// One sentence per thing that could not be removed.
    pub errors: Vec<String>,
}

/// Every hierarchy's mount point on this host (v2, each v1 mount once, named v1 ones); for a
/// user other than root, the cgroup v2 subtree delegated to it, where its runs' cgroups are.
fn hierarchy_mounts() -> Vec<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        return cgroup::delegation::detect()
            .map(|d| vec![d.root])
            .unwrap_or_default();
    }
    let Ok(layout) = Layout::detect() else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = layout.v2.iter().cloned().collect();
    v.extend(layout.v1.values().cloned());
    v.extend(layout.v1_named.iter().cloned());
    v.sort();
    v.dedup();
    v
}

/// The directories of this state directory's cgroup parent, one per hierarchy.
pub fn cgroup_parents(state: &Path) -> Vec<PathBuf> {
    let parent = crate::state::dir::cgroup_parent(state);
    hierarchy_mounts()
        .into_iter()
        .map(|m| m.join(&parent))
        .collect()
}

/// The container `id`'s cgroup directories that exist now, in every hierarchy.
pub fn cgroup_dirs(state: &Path, id: &str) -> Vec<PathBuf> {
    cgroup_parents(state)
        .into_iter()
        .map(|p| p.join(id))
        .filter(|d| d.is_dir())
        .collect()
}

/// Kills every process in `dir` and below, and removes the directories, children first.
fn remove_cgroup_tree(root: &CgroupRoot, dir: &Path) -> std::result::Result<(), String> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(root, &e.path())?;
            }
        }
    }
    if !dir.exists() {
        return Ok(());
    }
    // A frozen process cannot die: thaw first (v1 freezer, v2 cgroup.freeze).
    if dir.join("freezer.state").exists() {
        let _ = root.write(&dir.join("freezer.state"), "THAWED");
    }
    if dir.join("cgroup.freeze").exists() {
        let _ = root.write(&dir.join("cgroup.freeze"), "0");
    }
    if dir.join("cgroup.kill").exists() {
        let _ = root.write(&dir.join("cgroup.kill"), "1");
    }
    cgroup::kill_all_by_pid(root, dir)?;
    cgroup::rmdir_retry(root, dir)
}

/// Removes container `id`'s cgroups in every hierarchy (killing what is in them), then the
/// parents that are left empty.
fn remove_cgroups(state: &Path, id: &str, errors: &mut Vec<String>) {
    remove_cgroups_at(&crate::state::dir::cgroup_parent(state), id, errors)
}

/// Removes the cgroup `PARENT/LEAF` in every hierarchy, then the parent if it is left empty.
fn remove_cgroups_at(parent: &str, leaf: &str, errors: &mut Vec<String>) {
    let root = CgroupRoot::host();
    for parent in hierarchy_mounts().into_iter().map(|m| m.join(parent)) {
        let dir = parent.join(leaf);
        if dir.is_dir() {
            if let Err(e) = remove_cgroup_tree(&root, &dir) {
                errors.push(e);
            }
        }
        if parent.is_dir() {
            cgroup::rmdir_parent_if_empty(&root, &parent);
        }
    }
}

/// Mounts on the host at or under `dir` (none expected: the overlay is mounted in the
/// container's own mount namespace), detached deepest first.
fn unmount_under(dir: &Path, errors: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = crate::kernel::mountinfo::parse(&text)
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            errors.push(format!("umount {}: {e}", p.display()));
        }
    }
}

/// Address leases whose holder died, in the state directory's networks and the default one.
fn prune_leases(state: &Path) {
    use crate::network::{bridge, ipam};
    let _ = ipam::prune(state);
    let _ = ipam::prune(&bridge::home(state, ipam::DEFAULT_NETWORK));
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    if !md.is_dir() {
        return if md.is_file() { md.blocks() * 512 } else { 0 };
    }
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// Polls `done` every 10 ms for up to `limit`.
fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL to `pid` only while it is still the process that started at `start`.
fn kill_if_same(pid: i32, start: Option<u64>) {
    if let Some(start) = start {
        if crate::kernel::proc::is_same_process(pid, start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Everything a container left, once its runtime is gone: its workload, cgroups, mounts,
/// lease, firewall rules and directory. Returns the bytes freed.
fn clean(state: &Path, c: &Container, errors: &mut Vec<String>) -> u64 {
    if let Some(pid) = c.live_workload() {
        kill_if_same(pid, c.pid_start);
    }
    match c.oci.as_ref().and_then(|o| o.cgroup.as_ref()) {
        Some((parent, leaf)) => remove_cgroups_at(parent, leaf, errors),
        None => remove_cgroups(state, &c.id, errors),
    }
    let dir = c.dir(state);
    unmount_under(&dir, errors);
    if c.network.is_some() {
        prune_leases(state);
    }
    if !c.ports.is_empty() && nix::unistd::geteuid().is_root() {
        if let Ok(mut fw) = crate::network::firewall::Firewall::new() {
            if let Err(e) = fw.remove_container(&c.id) {
                errors.push(e.to_string());
            }
        }
    }
    let bytes = disk_usage(&dir);
    if let Err(e) = container::remove_dir(state, &c.id) {
        errors.push(e.to_string());
    }
    bytes
}

/// `stagebox rm [-f] KEY`: the record and everything its container left. A running one is
/// refused without `force`; with it, its workload is killed and its runtime waited for. A
/// directory without a record is removed by its id. Returns the id.
pub fn remove(state: &Path, key: &str, force: bool) -> Result<String> {
    let c = match container::find(state, key) {
        Ok(c) => c,
        Err(e) => {
            // An orphan: a directory named `key`, without a record.
            let dir = container::containers_dir(state).join(key);
            if !key.is_empty() && !key.contains('/') && dir.is_dir() {
                let mut errors = Vec::new();
                remove_cgroups(state, key, &mut errors);
                if container::remove_orphan(state, key)? {
                    return match errors.first() {
                        None => Ok(key.to_string()),
                        Some(e) => Err(Error::usage(format!("removed {key}, but {e}"))),
                    };
                }
            }
            return Err(e);
        }
    };
    container::stop_for_removal(state, &c, force)?;
    let now = Container::load(&c.dir(state)).unwrap_or(c);
    if now.runtime_alive() {
        // Its stagebox (or monitor) still runs: taking the container down after its exit
        // (a moment), or still setting it up.
        if now.exit_code.is_some() || force {
            wait_until(Duration::from_secs(3), || !now.runtime_alive());
        }
        if now.runtime_alive() {
            if !force {
                return Err(Error::usage(format!(
                    "container {} is still being set up by stagebox pid {}; wait for it, or use rm -f",
                    now.name,
                    now.runtime_pid.unwrap_or(0)
                )));
            }
            if let Some(p) = now.runtime_pid {
                kill_if_same(p, now.runtime_start);
            }
            wait_until(Duration::from_secs(2), || !now.runtime_alive());
        }
    }
    let mut errors = Vec::new();
    clean(state, &now, &mut errors);
    match errors.first() {
        None => Ok(now.id),
        Some(e) => Err(Error::usage(format!("removed {}, but {e}", now.id))),
    }
}

/// `stagebox container prune`: every container whose runtime is gone (exited, dead, or a
/// directory without a record) is removed with all it left; then cgroups of this state
/// directory that belong to no container are removed too.
pub fn prune(state: &Path) -> Pruned {
    let mut out = Pruned::default();
    for c in container::list(state) {
        // An OCI container has no runtime process: it is alive while its own process is.
        if c.runtime_alive() || (c.oci.is_some() && c.live_workload().is_some()) {
            continue;
        }
        out.reclaimed += clean(state, &c, &mut out.errors);
        out.ids.push(c.id);
    }
    match container::orphans(state) {
        Ok(ids) => {
            for id in ids {
                remove_cgroups(state, &id, &mut out.errors);
                let bytes = disk_usage(&container::containers_dir(state).join(&id));
                match container::remove_orphan(state, &id) {
                    Ok(true) => {
                        out.reclaimed += bytes;
                        out.ids.push(id);
                    }
                    Ok(false) => {}
                    Err(e) => out.errors.push(e.to_string()),
                }
            }
        }
        Err(e) => out.errors.push(e.to_string()),
    }
    // Cgroups named like a container id with no directory in the state: a runtime killed while
    // it took itself down. The parent is this state directory's own, so none is another's.
    let cdir = container::containers_dir(state);
    let root = CgroupRoot::host();
    for parent in cgroup_parents(state) {
        let Ok(rd) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_id = name.len() == 12 && name.chars().all(|c| c.is_ascii_hexdigit());
            if is_id && e.file_type().is_ok_and(|t| t.is_dir()) && !cdir.join(&name).exists() {
                if let Err(err) = remove_cgroup_tree(&root, &e.path()) {
                    out.errors.push(err);
                }
            }
        }
        cgroup::rmdir_parent_if_empty(&root, &parent);
    }
    out
}
