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
//! Safety: TARGET is inside the rootfs, and what leads there may be under the control of the
//! container (a directory a previous run wrote into the image, or a volume another container
//! shares and can rename things in). Resolving the path once and then calling `mkdir` and
//! `mount` with the path string lets such a process swap a directory for a symlink to a host
//! directory in between (`renameat2(RENAME_EXCHANGE)`), and the mount point gets made on the
//! host: runc's CVE-2021-30465. So TARGET is opened one component at a time from a descriptor
//! on the rootfs (`rootfs::walk`: `openat(O_PATH|O_NOFOLLOW)`, `mkdirat` for what is missing,
//! symlinks resolved as if the rootfs were `/`), and the bind mount goes onto
//! `/proc/self/fd/N`, the directory that descriptor holds, as runc does since the fix. Before
//! the mount, `readlink /proc/self/fd/N` must show the path the walk took; after it, the same
//! walk must arrive at the source's inode. The source is pinned the same way (an `O_PATH`
//! descriptor, mounted from `/proc/self/fd/M`), so the directory checked is the one mounted.
//! The trace shows the intended container path with "(through an O_PATH fd)".
//!
//! `--tmpfs /path[:opts]` and `--mount type=tmpfs,target=/path` are mounted here too: a
//! tmpfs is memory, not a host directory (`mount("tmpfs", TARGET, "tmpfs", MS_NOSUID|
//! MS_NODEV|MS_NOEXEC, "size=...,mode=...")`), made on the same kind of O_PATH descriptor
//! and read back from /proc/self/mountinfo (a tmpfs mount at the target). Like every mount
//! here it exists only in the container's mount namespace and goes when the namespace does.
//!
//! Why here in the order: after rootfs (the mount points live inside it) and before pivot
//! (the host paths must still be reachable).

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use crate::rootfs::walk::{open_in_root, Make, Opened};
use nix::fcntl::{open, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, Mode};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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

/// `/proc/self/fd/N`: the path the kernel resolves to the very file a descriptor holds.
fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn identity(fd: BorrowedFd<'_>, what: &str) -> Result<(u64, u64), StageError> {
    fstat(fd)
        .map(|st| (st.st_dev, st.st_ino))
        .map_err(|e| StageError::sys(&format!("fstat({what})"), e))
}

/// Opens TARGET inside the rootfs `root` (a descriptor on `root_path`), making what is missing
/// (directories, and an empty file at the end when the source is a file), and checks through
/// /proc/self/fd that the descriptor is where the walk says, under the rootfs.
fn open_target(
    root: BorrowedFd<'_>,
    root_path: &Path,
    target: &str,
    make: Make,
) -> Result<(Opened, PathBuf), StageError> {
    let opened = open_in_root(root, Path::new(target), make)
        .map_err(|e| StageError::msg(format!("volume target {e}")))?;
    let mut expected = root_path.to_path_buf();
    expected.extend(opened.inside.strip_prefix("/").unwrap_or(&opened.inside));
    let link = fd_path(opened.fd.as_fd());
    let real = std::fs::read_link(&link)
        .map_err(|e| StageError::msg(format!("readlink {}: {e}", link.display())))?;
    if real != expected {
        return Err(StageError::msg(format!(
            "volume target {target} is really {} (the walk inside the rootfs reached {}): something moved it; refusing",
            real.display(),
            expected.display()
        )));
    }
    Ok((opened, expected))
}

impl Stage for Volumes {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let root_path = ctx.target_root();
        if ctx.spec.volumes.is_empty() && ctx.spec.tmpfs.is_empty() {
            return Ok(());
        }
        let root: OwnedFd = open(
            &root_path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StageError::sys(&format!("open({root_path:?}, O_PATH|O_DIRECTORY)"), e))?;
        // Where the rootfs really is (the state directory's path may go through a symlink):
        // what every descriptor under it must read back as.
        let root_path = std::fs::read_link(fd_path(root.as_fd()))
            .map_err(|e| StageError::msg(format!("readlink of the rootfs's descriptor: {e}")))?;
        for v in ctx.spec.volumes.clone() {
            bind_one(ctx, root.as_fd(), &root_path, &v)?;
        }
        for t in ctx.spec.tmpfs.clone() {
            tmpfs_one(ctx, root.as_fd(), &root_path, &t)?;
        }
        Ok(())
    }
}

/// Splits Docker's tmpfs options into mount flags and the data tmpfs reads (size, mode,
/// uid, gid, nr_inodes ...). Docker's default: nosuid, nodev, noexec.
fn tmpfs_flags(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags -= MsFlags::MS_RDONLY,
            "exec" => flags -= MsFlags::MS_NOEXEC,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "suid" => flags -= MsFlags::MS_NOSUID,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "dev" => flags -= MsFlags::MS_NODEV,
            "nodev" => flags |= MsFlags::MS_NODEV,
            // What an OCI config also writes (mount(8)'s words for atime flags).
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// One tmpfs mounted onto TARGET inside the rootfs (through an O_PATH descriptor, as the
/// bind mounts are), and read back from /proc/self/mountinfo.
fn tmpfs_one(
    ctx: &mut ChildCtx<'_>,
    root: BorrowedFd<'_>,
    root_path: &Path,
    t: &crate::state::volume::TmpfsMount,
) -> Result<(), StageError> {
    let (opened, path) = open_target(root, root_path, &t.target, Make::Dir)?;
    let (flags, data) = tmpfs_flags(&t.options);
    let onto = fd_path(opened.fd.as_fd());
    let data_arg = (!data.is_empty()).then_some(data.as_str());
    ctx.sys
        .raw(
            format!(
                "mount(\"tmpfs\", {:?} (through an O_PATH fd), \"tmpfs\", {}, {:?})",
                t.target,
                crate::kernel::sys::ms_flags_str(flags),
                data
            ),
            &mut || {
                nix::mount::mount(Some("tmpfs"), &onto, Some("tmpfs"), flags, data_arg).map(|()| 0)
            },
        )
        .map_err(|e| StageError::sys(&format!("mount(tmpfs, {:?}, {data:?})", t.target), e))?;
    drop(opened);
    if ctx.verify {
        match super::mount_at(&path)? {
            Some((fs, opts)) if fs == "tmpfs" => ctx.note(format!(
                "tmpfs at {}: mountinfo shows a tmpfs there ({opts})",
                t.target
            )),
            other => {
                return Err(StageError::no_effect(format!(
                    "{} is not a tmpfs mount after mount(2) (mountinfo: {other:?})",
                    t.target
                )))
            }
        }
    }
    Ok(())
}

/// One bind mount of a host file or directory onto TARGET inside the rootfs (a descriptor
/// `root` on `root_path`, the real path): made through O_PATH descriptors, `:ro` remounted,
/// and read back (same device and inode inside and on the host, a mount point). The rootfs
/// stage uses it for /etc/hosts, /etc/hostname and /etc/resolv.conf.
pub fn bind_one(
    ctx: &mut ChildCtx<'_>,
    root: BorrowedFd<'_>,
    root_path: &Path,
    v: &crate::state::container::VolumeMount,
) -> Result<(), StageError> {
    let root_path = root_path.to_path_buf();
    let src = v.source.to_string_lossy().into_owned();
    // The source is the user's host path: symlinks in it are followed, once, here.
    let src_fd: OwnedFd = open(&v.source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| StageError::msg(format!("volume source {src}: {e}")))?;
    let src_st = fstat(&src_fd).map_err(|e| StageError::sys(&format!("fstat({src:?})"), e))?;
    let src_is_dir = src_st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let make = if src_is_dir { Make::Dir } else { Make::File };
    let (opened, path) = open_target(root, &root_path, &v.target, make)?;
    if !opened.made.is_empty() {
        let made: Vec<String> = opened
            .made
            .iter()
            .map(|m| m.display().to_string())
            .collect();
        ctx.note(format!(
            "made {} in the rootfs, by mkdirat/openat from a descriptor, never by path",
            made.join(", ")
        ));
    }
    if opened.inside != Path::new(&v.target) {
        ctx.note(format!(
            "{} resolves to {} inside the rootfs",
            v.target,
            opened.inside.display()
        ));
    }
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    let (from, onto) = (fd_path(src_fd.as_fd()), fd_path(opened.fd.as_fd()));
    ctx.sys
        .raw(
            format!(
                "mount({src:?}, {:?} (through an O_PATH fd), NULL, {}, NULL)",
                v.target,
                crate::kernel::sys::ms_flags_str(flags)
            ),
            &mut || {
                nix::mount::mount(Some(&from), &onto, None::<&str>, flags, None::<&str>).map(|()| 0)
            },
        )
        .map_err(|e| {
            StageError::sys(
                &format!("mount({src:?}, {:?}, MS_BIND|MS_REC)", v.target),
                e,
            )
        })?;
    drop(opened);
    // The same walk again, now into the new mount: the descriptor for the :ro remount
    // and for the checks.
    let (mounted, _) = open_target(root, &root_path, &v.target, Make::Nothing)?;
    if v.read_only {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        let onto = fd_path(mounted.fd.as_fd());
        ctx.sys
            .raw(
                format!(
                    "mount(NULL, {:?} (through an O_PATH fd), NULL, {}, NULL)",
                    v.target,
                    crate::kernel::sys::ms_flags_str(flags)
                ),
                &mut || {
                    nix::mount::mount(None::<&str>, &onto, None::<&str>, flags, None::<&str>)
                        .map(|()| 0)
                },
            )
            .map_err(|e| {
                StageError::sys(
                    &format!("mount(NULL, {:?}, MS_BIND|MS_REMOUNT|MS_RDONLY)", v.target),
                    e,
                )
            })?;
    }
    if ctx.verify {
        let a = identity(src_fd.as_fd(), &src)?;
        let b = identity(mounted.fd.as_fd(), &v.target)?;
        if a != b {
            return Err(StageError::no_effect(format!(
                    "{} is device:inode {}:{} but the host's {} is {}:{} (the mount did not land there, or something renamed a directory on the way since)",
                    v.target, b.0, b.1, src, a.0, a.1
                )));
        }
        if !super::is_mount_point(&path)? {
            return Err(StageError::no_effect(format!(
                "{} is not a mount point",
                path.display()
            )));
        }
        if v.read_only {
            let ro = nix::sys::statvfs::fstatvfs(&mounted.fd)
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_target_through_a_link_to_a_host_dir_is_made_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let root = d.path();
        symlink(host.path(), root.join("data")).unwrap();
        let fd = open(root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let (o, path) = open_target(fd.as_fd(), root, "/data/x", Make::Dir).unwrap();
        let mut want = root.to_path_buf();
        want.extend(host.path().strip_prefix("/").unwrap());
        assert_eq!(path, want.join("x"));
        assert_eq!(o.inside, host.path().join("x"));
        assert!(std::fs::read_dir(host.path()).unwrap().next().is_none());
    }
}
