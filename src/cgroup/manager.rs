//! Picks the cgroup implementation for the host's layout: one tree (v2), or one tree per
//! controller (v1 and hybrid). Kept apart from `mod.rs` so that v1.rs and v2.rs import the
//! shared helpers from `mod.rs` and only this file imports them.

use super::delegation::Delegation;
use super::{check_parent, v1, v2, CgroupRoot, Layout, LayoutKind, Limits, Manager};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// The manager for this layout: v2 on a pure v2 host, v1 (plus a unified cgroup for
/// cgroup.kill on a hybrid host) otherwise. The container's cgroup is `<parent>/<id>` in each
/// hierarchy.
pub fn for_layout(
    root: &CgroupRoot,
    layout: &Layout,
    parent: &str,
    id: &str,
    limits: &Limits,
) -> Result<Box<dyn Manager>> {
    check_parent(parent)?;
    match layout.kind() {
        LayoutKind::V2 => {
            let mount = layout.v2.clone().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
            Ok(Box::new(v2::V2::new(root.clone(), &mount, parent, id, limits, true)))
        }
        LayoutKind::V1 | LayoutKind::Hybrid => Ok(Box::new(v1::V1::new(root.clone(), layout, parent, id, limits))),
        LayoutKind::None => Err(Error::usage(
            "no cgroup filesystem is mounted on this host, so the cgroup stage cannot make a cgroup; mount one (see `stagebox doctor`) or run with --without cgroup",
        )),
    }
}

/// The manager for a run by a user other than root: cgroup v2 only, in the subtree delegated
/// to the user (see [`super::delegation`]). The container's cgroup is
/// `<delegation root>/<parent>/<id>`, and the delegation root stands where the cgroup2 mount
/// stands for root: its `cgroup.controllers` says what can be had, and the controllers are
/// switched on from there down.
pub fn delegated(
    root: &CgroupRoot,
    delegation: &Delegation,
    parent: &str,
    id: &str,
    limits: &Limits,
) -> Result<Box<dyn Manager>> {
    check_parent(parent)?;
    Ok(Box::new(v2::V2::new(
        root.clone(),
        &delegation.root,
        parent,
        id,
        limits,
        true,
    )))
}
