//! The stages in pipeline order: the one list that says which stages exist.
//!
//! Kept apart from `mod.rs` so that the stage files import the shared types from `mod.rs`
//! and only this file imports the stage files: no file imports a file that imports it.

use super::{
    caps, cgroup, cgroupns, devices, ipc, mount, net, nnp, paths, pid, pivot, proc, rootfs,
    seccomp, user, uts, volumes,
};
use super::{Stage, StageId};

static REGISTRY: [&dyn Stage; 17] = [
    &user::User,
    &cgroup::Cgroup,
    &devices::Devices,
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
    &paths::Paths,
    &nnp::Nnp,
    &caps::Caps,
    &seccomp::Seccomp,
];

/// Every available stage, in pipeline order.
pub fn all() -> &'static [&'static dyn Stage] {
    &REGISTRY
}

pub fn get(id: StageId) -> Option<&'static dyn Stage> {
    REGISTRY.iter().copied().find(|s| s.info().id == id)
}
