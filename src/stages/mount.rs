//! # mount: a mount table of its own
//!
//! A mount namespace is a copy of the mount table. After `unshare(CLONE_NEWNS)` the process
//! has its own copy, so later mounts and unmounts change only that copy... unless mount
//! propagation says otherwise. On systemd hosts `/` is a *shared* mount (mountinfo shows
//! `shared:1`), and shared mounts forward every new mount to their peers, including the
//! host's copy. That is why this stage goes on with
//! `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL)`: every mount in the copy becomes private
//! and nothing mounted inside the container can appear on the host. (runc uses MS_SLAVE
//! instead, so that host mounts still reach the container; private is the stricter choice.)
//! pivot_root also refuses to work on a shared mount (EINVAL), so this is needed for the root
//! switch too.
//!
//! Why here in the order: after pid and net, so the procfs and sysfs the proc stage mounts
//! belong to those namespaces; before rootfs, proc and pivot, which all mount things that
//! must stay inside this namespace.

use super::{unshare_checked, ChildCtx, Propagation, Stage, StageError, StageId, StageInfo};
use crate::kernel::mountinfo;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use std::path::Path;

pub struct Mount;

static INFO: StageInfo = StageInfo {
    id: StageId::Mount,
    summary: "new mount namespace, / made recursively private: no mount leaks to the host",
    shows: "ns/mnt inode, propagation of / (shared:N -> private)",
    default_on: true,
    lesson: "03-mount-namespace",
    requires: &[],
};

/// Mounts in /proc/self/mountinfo still tagged shared:N.
pub fn shared_mounts() -> Result<Vec<String>, StageError> {
    let infos = mountinfo::read_self()
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/mountinfo: {e}")))?;
    Ok(infos
        .into_iter()
        .filter(|m| m.is_shared())
        .map(|m| m.mount_point)
        .collect())
}

impl Stage for Mount {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        unshare_checked(ctx, CloneFlags::CLONE_NEWNS, "mnt")?;
        let mode = ctx.spec.root_propagation;
        let flags = MsFlags::MS_REC
            | match mode {
                Propagation::Private => MsFlags::MS_PRIVATE,
                Propagation::Slave => MsFlags::MS_SLAVE,
                Propagation::Shared => MsFlags::MS_SHARED,
            };
        if mode == Propagation::Shared {
            ctx.note("--root-propagation shared: the container's mounts stay in the host's peer groups, so a mount made inside appears on the host");
        }
        match ctx.sys.mount(None, Path::new("/"), None, flags, None) {
            Ok(()) => {}
            // "/" is not a mount point: the runtime itself runs in a chroot (or from an
            // initramfs). The mount that holds "/" is out of reach from here; make every mount
            // that can be seen private, and say what that leaves.
            Err(nix::errno::Errno::EINVAL) => {
                ctx.note("mount(NULL, \"/\", MS_REC|MS_PRIVATE) returned EINVAL: / is not a mount point (stagebox runs in a chroot or from an initramfs); making each visible mount private instead; the mount holding / keeps its propagation");
                let points: Vec<std::path::PathBuf> = mountinfo::read_self()
                    .map(|m| m.into_iter().map(|m| m.mount_point.into()).collect())
                    .unwrap_or_default();
                for p in points {
                    ctx.sys.mount(None, &p, None, flags, None).map_err(|e| {
                        StageError::sys(&format!("mount(NULL, {p:?}, NULL, MS_REC|MS_PRIVATE)"), e)
                    })?;
                }
            }
            Err(e) => {
                return Err(StageError::sys(
                    "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE)",
                    e,
                ))
            }
        }
        if ctx.verify {
            let shared = shared_mounts()?;
            match mode {
                Propagation::Shared if !shared.iter().any(|m| m == "/") => {
                    return Err(StageError::no_effect(
                        "/ is not shared after MS_REC|MS_SHARED",
                    ))
                }
                Propagation::Private | Propagation::Slave if !shared.is_empty() => {
                    return Err(StageError::no_effect(format!(
                        "these mounts are still shared after {}: {}",
                        crate::kernel::sys::ms_flags_str(flags),
                        shared.join(", ")
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
