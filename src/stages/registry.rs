//! The stages in pipeline order: the one list that says which stages exist.
//!
//! Kept apart from `mod.rs` so that the stage files import the shared types from `mod.rs`
//! and only this file imports the stage files: no file imports a file that imports it.

use super::{cgroup, cgroupns, ipc, mount, net, pid, pivot, proc, rootfs, uts, volumes};
use super::{Stage, StageId};

static REGISTRY: [&dyn Stage; 11] = [
    &cgroup::Cgroup,
    &uts::Uts,
    &ipc::Ipc,
    &pid::Pid,
    &net::Net,
    &cgroupns::Cgroupns,
    &mount::Mount,
    &rootfs::Rootfs,
    &volumes::Volumes,
    &proc::Proc,
    &pivot::Pivot,
];

/// Every available stage, in pipeline order.
pub fn all() -> &'static [&'static dyn Stage] {
    &REGISTRY
}

pub fn get(id: StageId) -> Option<&'static dyn Stage> {
    REGISTRY.iter().copied().find(|s| s.info().id == id)
}
