//! # volumes: host directories inside the container
//!
//! A volume is a bind mount: `mount(SOURCE, TARGET, NULL, MS_BIND|MS_REC)` makes the same
//! directory (the same inode: `stat` inside and on the host give the same device and inode
//! number) visible at a second place. Made in the container's mount namespace, *before* the
//! root switch, while the host path is still reachable; after pivot_root it would be gone.
//! The host never sees the mount.
//!
//! `:ro` is a second step: a bind mount starts with the flags of its source, and only a
//! remount (`MS_BIND|MS_REMOUNT|MS_RDONLY`) makes this one mount read-only; writes then fail
//! with EROFS while the host can still write the same directory.
//!
//! Data in a volume is not in the container's writable layer: the bind mount sits on top of
//! the overlay, so writes go to the host directory. `stagebox diff` sees the mount point,
//! never what is written into it, and a volume outlives the container.
//!
//! Safety: TARGET is resolved inside the rootfs as if it were `/` (an image's symlink
//! `/data -> /etc` leads to ROOTFS/etc, never the host's /etc), then opened with O_PATH and
//! checked through /proc/self/fd before the mount goes onto that descriptor, so nothing can
//! swap the path for a link in between.
//!
//! Why here in the order: after rootfs (the mount points live inside it) and before pivot
//! (the host paths must still be reachable).

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::fcntl::{open, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Volumes;

static INFO: StageInfo = StageInfo {
    id: StageId::Volumes,
    summary: "bind-mount volumes (-v) into the rootfs before the root switch",
    shows: "a mountinfo line per volume; the same inode inside and on the host",
    default_on: true,
    lesson: "09-volumes",
    requires: &[(
        StageId::Mount,
        "without a mount namespace of its own, the volume mounts would land in the host's mount table",
    )],
};

fn identity(p: &Path) -> Result<(u64, u64), StageError> {
    std::fs::metadata(p)
        .map(|m| (m.dev(), m.ino()))
        .map_err(|e| StageError::msg(format!("cannot stat {}: {e}", p.display())))
}

/// Resolves TARGET inside ROOT and creates what is missing (a directory, or an empty file
/// when the source is a file). Returns the host-side path, always under ROOT.
fn prepare_target(root: &Path, target: &str, source_is_dir: bool) -> Result<PathBuf, StageError> {
    let path = crate::rootfs::resolve_in_root(root, Path::new(target))
        .map_err(|e| StageError::msg(format!("volume target {target}: {e}")))?;
    if !path.starts_with(root) {
        return Err(StageError::msg(format!(
            "volume target {target} resolves outside the rootfs ({}); refusing",
            path.display()
        )));
    }
    let exists = std::fs::symlink_metadata(&path).is_ok();
    if !exists {
        if source_is_dir {
            std::fs::create_dir_all(&path)
        } else {
            path.parent()
                .map(std::fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|_| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map(|_| ())
                })
        }
        .map_err(|e| {
            StageError::msg(format!(
                "cannot create the mount point {target} in the rootfs: {e}"
            ))
        })?;
    }
    Ok(path)
}

impl Stage for Volumes {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let root = ctx.target_root();
        for v in ctx.spec.volumes.clone() {
            let src_md = std::fs::metadata(&v.source).map_err(|e| {
                StageError::msg(format!("volume source {}: {e}", v.source.display()))
            })?;
            let path = prepare_target(&root, &v.target, src_md.is_dir())?;
            // Pin the mount point: open it without following a final symlink, check where the
            // descriptor really is, and mount onto the descriptor itself.
            let fd = open(
                &path,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| StageError::sys(&format!("open({path:?}, O_PATH|O_NOFOLLOW)"), e))?;
            let fd_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            let real = std::fs::read_link(&fd_path)
                .map_err(|e| StageError::msg(format!("readlink {}: {e}", fd_path.display())))?;
            if !real.starts_with(&root) {
                return Err(StageError::msg(format!(
                    "volume target {} is really {} (outside the rootfs); refusing",
                    v.target,
                    real.display()
                )));
            }
            let src = v.source.to_string_lossy().into_owned();
            ctx.sys
                .mount(
                    Some(&src),
                    &fd_path,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(|e| {
                    StageError::sys(
                        &format!("mount({src:?}, {:?}, MS_BIND|MS_REC)", v.target),
                        e,
                    )
                })?;
            if v.read_only {
                let flags =
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
                ctx.sys.mount(None, &path, None, flags, None).map_err(|e| {
                    StageError::sys(
                        &format!("mount(NULL, {:?}, MS_BIND|MS_REMOUNT|MS_RDONLY)", v.target),
                        e,
                    )
                })?;
            }
            drop(fd);
            if ctx.verify {
                let a = identity(&v.source)?;
                let b = identity(&path)?;
                if a != b {
                    return Err(StageError::no_effect(format!(
                        "{} is device:inode {}:{} but the host's {} is {}:{}",
                        v.target, b.0, b.1, src, a.0, a.1
                    )));
                }
                if !super::rootfs::is_mount_point(&path)? {
                    return Err(StageError::no_effect(format!(
                        "{} is not a mount point",
                        path.display()
                    )));
                }
                if v.read_only {
                    let ro = nix::sys::statvfs::statvfs(&path)
                        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
                        .unwrap_or(false);
                    if !ro {
                        return Err(StageError::no_effect(format!(
                            "{} is still writable after the :ro remount",
                            v.target
                        )));
                    }
                }
                ctx.note(format!(
                    "{} {} -> {}: same inode inside and on the host (device:inode {}:{}){}",
                    v.kind,
                    src,
                    v.target,
                    a.0,
                    a.1,
                    if v.read_only { ", read-only" } else { "" }
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn targets_through_image_symlinks_stay_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("data")).unwrap();
        symlink("../../../../../etc", root.join("up")).unwrap();
        let p = prepare_target(root, "/data/x", true).unwrap();
        assert_eq!(p, root.join("etc/x"));
        assert!(root.join("etc/x").is_dir());
        let p = prepare_target(root, "/up/y", false).unwrap();
        assert_eq!(p, root.join("etc/y"));
        assert!(root.join("etc/y").is_file());
        assert!(
            !Path::new("/etc/y").exists()
                || Path::new("/etc/y").metadata().unwrap().ino()
                    != root.join("etc/y").metadata().unwrap().ino()
        );
    }
}
