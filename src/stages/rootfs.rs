//! # rootfs: the files the container will call /
//!
//! pivot_root(2) can only switch to a directory that is a *mount point*, and a plain
//! directory such as /var/lib/stagebox/rootfs/default is not one. So this stage bind-mounts
//! the rootfs directory onto itself: `mount(DIR, DIR, NULL, MS_BIND|MS_REC)`. Nothing about
//! the files changes, but mountinfo now has a line for DIR, and the mount belongs to the
//! container's (private) mount namespace, so the host never sees it.
//!
//! A later issue replaces the bind with an overlay of read-only image layers under a
//! per-container writable layer; the idea stays the same: a mount that becomes the root.
//!
//! Why here in the order: after the mount namespace (or this mount would land on the host's
//! table), and before the proc stage, which mounts /proc, /sys and /dev *inside* this tree,
//! and the pivot stage, which makes it the root.

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::mount::MsFlags;

pub struct Rootfs;

static INFO: StageInfo = StageInfo {
    id: StageId::Rootfs,
    summary: "bind-mount the root filesystem directory onto itself so it can become the root",
    shows: "a new mountinfo line for the rootfs",
    default_on: true,
    lesson: "04-rootfs-and-chroot",
    requires: &[(
        StageId::Mount,
        "without a mount namespace of its own, the rootfs mount would land in the host's mount table",
    )],
};

/// Is `path` a mount point in /proc/self/mountinfo?
pub fn is_mount_point(path: &std::path::Path) -> Result<bool, StageError> {
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/mountinfo: {e}")))?;
    Ok(infos.into_iter().any(|m| m.mount_point == path))
}

impl Stage for Rootfs {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let dir = ctx
            .spec
            .rootfs
            .clone()
            .ok_or_else(|| StageError::msg("no rootfs directory was given to the rootfs stage"))?;
        let s = dir.to_string_lossy().into_owned();
        ctx.sys
            .mount(Some(&s), &dir, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .map_err(|e| StageError::sys(&format!("mount({s:?}, {s:?}, MS_BIND|MS_REC)"), e))?;
        if ctx.verify && !is_mount_point(&dir)? {
            return Err(StageError::no_effect(format!(
                "{s} is not a mount point in /proc/self/mountinfo after the bind mount"
            )));
        }
        ctx.root = Some(dir);
        Ok(())
    }
}
