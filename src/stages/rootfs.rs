//! # rootfs: the files the container will call /
//!
//! pivot_root(2) can only switch to a directory that is a *mount point*, so this stage
//! mounts the container's root filesystem somewhere, inside the container's own mount
//! namespace (the host never sees the mount).
//!
//! The mount is an **overlay**, the way Docker gives every container the same image files
//! yet its own changes:
//!
//! ```text
//! mount("overlay", MERGED, "overlay", 0, "lowerdir=IMAGE,upperdir=UPPER,workdir=WORK")
//! ```
//!
//! - `lowerdir`: the image (or the rootfs directory), read-only, shared by every container.
//!   With several image layers the list is `top:...:bottom`.
//! - `upperdir`: this container's writable layer, in its state directory. Every write lands
//!   here (a changed file is first copied up whole); the lower layers never change.
//! - Deleting a lower file leaves a *whiteout* in upper: a character device 0/0 with the
//!   file's name. Replacing a lower directory leaves an *opaque* directory (xattr
//!   `trusted.overlay.opaque=y`), which hides everything below it.
//! - `workdir`: overlayfs's scratch space for atomic copy-ups, on the same filesystem as upper.
//!
//! From the host, a learner can look at UPPER while the container runs or after it exits
//! (`stagebox diff ID` lists it as A/C/D). Without a writable layer (`--rootfs` with no
//! container state) the stage falls back to bind-mounting the directory onto itself.
//!
//! **In a user namespace** the container's root is, say, host uid 100000, while the image's
//! files belong to host uid 0: inside they would all show as 65534 (nobody), and the
//! container's root could not even walk into the state directory (0700, host root's). So the
//! runtime (root on the host) makes an *idmapped* copy of the state directory,
//!
//! ```text
//! fd = open_tree(STATE, OPEN_TREE_CLONE)                     # a detached bind mount
//! mount_setattr(fd, "", AT_EMPTY_PATH, {MOUNT_ATTR_IDMAP, userns=/proc/PID/ns/user})
//! ```
//!
//! and hands the descriptor over; this stage attaches it over STATE in the container's own
//! mount namespace with `move_mount(fd, "", AT_FDCWD, STATE, MOVE_MOUNT_F_EMPTY_PATH)`.
//! Through it, a file of host uid 0 shows as uid 0, and a file the container's root writes
//! is stored as host uid 0 again, so a `commit` of the layer needs no translating. Only
//! pivot_root takes that view away again, which is why the plan refuses the user stage
//! with a chroot switch as root. The overlay gets the `userxattr` option: without
//! CAP_SYS_ADMIN on the host it keeps opaque directories in `user.overlay.opaque`, since a
//! namespace's root may not write `trusted.*` xattrs. (Rootless, the layers are the user's
//! own files, which the namespace maps to root already.)
//!
//! Why here in the order: after the mount namespace (or this mount would land in the host's
//! table), before volumes and proc, which mount things *inside* this tree, and before pivot,
//! which makes it the root.

use super::{ChildCtx, ChildSpec, HostCtx, Stage, StageError, StageId, StageInfo};
use nix::mount::MsFlags;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

pub struct Rootfs;

static INFO: StageInfo = StageInfo {
    id: StageId::Rootfs,
    summary: "mount the root filesystem: the image read-only under a writable overlay layer",
    shows: "the overlay's mountinfo line and its lowerdir/upperdir/workdir",
    default_on: true,
    lesson: "04-rootfs-and-chroot",
    requires: &[(
        StageId::Mount,
        "without a mount namespace of its own, the rootfs mount would land in the host's mount table",
    )],
};

pub use super::{is_mount_point, mount_at};

/// overlayfs splits its options at ',' and lowerdir at ':'; such paths cannot be passed.
pub fn check_overlay_path(p: &Path) -> Result<(), String> {
    let s = p.to_string_lossy();
    if s.contains(',') || s.contains(':') {
        return Err(format!(
            "{s} contains ',' or ':', which overlayfs cannot take in its mount options; use another state directory or rootfs path"
        ));
    }
    Ok(())
}

/// The overlay mount's data string.
pub fn overlay_data(ov: &super::OverlaySpec) -> String {
    overlay_data_within(ov, usize::MAX).1
}

/// The kernel copies mount data into one page: longer option strings are cut off.
pub const MOUNT_DATA_MAX: usize = 4095;

/// The overlay mount's data string, no longer than `max`: when the absolute lower paths make
/// it too long and the layers share a parent directory (STATE/layers), the lower dirs are
/// given relative to it, and the first value says to chdir there before mounting.
pub fn overlay_data_within(
    ov: &super::OverlaySpec,
    max: usize,
) -> (Option<std::path::PathBuf>, String) {
    let fmt = |lower: Vec<String>| {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            ov.upper.display(),
            ov.work.display()
        )
    };
    let data = fmt(ov.lower.iter().map(|p| p.display().to_string()).collect());
    let parent = ov.lower.first().and_then(|p| p.parent());
    match parent {
        Some(parent) if data.len() > max && ov.lower.iter().all(|p| p.parent() == Some(parent)) => {
            let names = ov
                .lower
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            (Some(parent.to_path_buf()), fmt(names))
        }
        _ => (None, data),
    }
}

/// The paths the runtime covers with idmapped copies for this run (empty without a user
/// namespace, or rootless).
fn idmapped(spec: &ChildSpec) -> &[std::path::PathBuf] {
    spec.userns
        .as_ref()
        .map(|u| u.idmapped.as_slice())
        .unwrap_or(&[])
}

/// Attaches the idmapped copies the runtime sent, each over the path it was made from.
fn attach_idmapped(ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
    let paths = idmapped(ctx.spec).to_vec();
    let fds = std::mem::take(&mut ctx.fds);
    if fds.len() != paths.len() {
        return Err(StageError::msg(format!(
            "the runtime sent {} idmapped mounts for {} paths",
            fds.len(),
            paths.len()
        )));
    }
    for (fd, path) in fds.iter().zip(&paths) {
        let call = format!(
            "move_mount(<idmapped copy of {}>, \"\", AT_FDCWD, {path:?}, MOVE_MOUNT_F_EMPTY_PATH)",
            path.display()
        );
        ctx.sys
            .raw(call.clone(), &mut || {
                crate::kernel::idmap::attach(fd, path).map(|_| 0)
            })
            .map_err(|e| StageError::sys(&call, e))?;
        if ctx.verify {
            let md = std::fs::metadata(path)
                .map_err(|e| StageError::msg(format!("cannot stat {}: {e}", path.display())))?;
            if md.uid() != 0 {
                return Err(StageError::no_effect(format!(
                    "{} shows as owned by uid {} inside, not 0, after the idmapped mount",
                    path.display(),
                    md.uid()
                )));
            }
        }
    }
    if !paths.is_empty() {
        ctx.note(format!(
            "idmapped mount over {}: host uid 0's files show as uid 0 here, and what this root writes is stored as host uid 0",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    Ok(())
}

impl Stage for Rootfs {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    /// With a user namespace and a root runtime: the runtime makes the idmapped copies while
    /// the container process waits.
    fn waits_for_parent(&self, spec: &ChildSpec) -> bool {
        !idmapped(spec).is_empty()
    }

    fn parent_before(&self, ctx: &mut HostCtx<'_>, pid: nix::unistd::Pid) -> crate::Result<()> {
        let Some(u) = ctx.userns else {
            return Ok(());
        };
        let paths = u.idmapped.clone();
        let ns_path = format!("/proc/{pid}/ns/user");
        let userns: std::os::fd::OwnedFd = std::fs::File::open(&ns_path)
            .map_err(|e| crate::Error::io(format!("open {ns_path}"), e))?
            .into();
        let err = |message: String| crate::Error::Stage {
            stage: "rootfs".into(),
            message,
        };
        for path in paths {
            let tree = crate::kernel::idmap::clone_tree(&path);
            ctx.record(
                format!("open_tree({path:?}, OPEN_TREE_CLONE)"),
                match &tree {
                    Ok(_) => "a detached copy of the mount".to_string(),
                    Err(e) => format!("error: {e}"),
                },
            );
            let tree =
                tree.map_err(|e| err(format!("open_tree({}) failed: {e}", path.display())))?;
            let r = crate::kernel::idmap::set_idmap(&tree, &userns);
            ctx.record(
                format!("mount_setattr(<copy>, \"\", AT_EMPTY_PATH, {{MOUNT_ATTR_IDMAP, userns={ns_path}}})"),
                match &r {
                    Ok(()) => "0".to_string(),
                    Err(e) => format!("error: {e}"),
                },
            );
            r.map_err(|e| {
                err(format!(
                    "the kernel cannot idmap a mount of {} ({e}); it needs Linux 5.12 and a filesystem that supports idmapped mounts (ext4, xfs, btrfs, tmpfs from 6.3); run without --userns or move the state directory to such a filesystem",
                    path.display()
                ))
            })?;
            ctx.fds.push(tree);
        }
        Ok(())
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        attach_idmapped(ctx)?;
        if let Some(ov) = ctx.spec.overlay.clone() {
            let (chdir, mut data) = overlay_data_within(&ov, MOUNT_DATA_MAX);
            if ctx.spec.userns.is_some() {
                data.push_str(",userxattr");
                ctx.note("in a user namespace (Linux 5.11 and later) overlayfs keeps its xattrs in user.overlay.* (the userxattr option): the namespace's root may not write trusted.* ones");
            }
            if data.len() > MOUNT_DATA_MAX {
                return Err(StageError::msg(format!(
                    "the overlay options are {} bytes, more than the one page ({MOUNT_DATA_MAX}) the kernel takes; use an image with fewer layers",
                    data.len()
                )));
            }
            if let Some(dir) = &chdir {
                // Many layers: short relative lowerdir names, resolved from the layers' dir.
                ctx.sys
                    .chdir(dir)
                    .map_err(|e| StageError::sys(&format!("chdir({dir:?})"), e))?;
            }
            let mounted = ctx
                .sys
                .mount(
                    Some("overlay"),
                    &ov.merged,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(&data),
                )
                .map_err(|e| {
                    StageError::sys(
                        &format!("mount(\"overlay\", {:?}, \"overlay\", {data:?})", ov.merged),
                        e,
                    )
                });
            if chdir.is_some() {
                ctx.sys
                    .chdir(Path::new("/"))
                    .map_err(|e| StageError::sys("chdir(\"/\")", e))?;
            }
            mounted?;
            if ctx.verify {
                match mount_at(&ov.merged)? {
                    Some((fs, _)) if fs == "overlay" => {}
                    other => {
                        return Err(StageError::no_effect(format!(
                            "{} is {:?} in mountinfo, not an overlay",
                            ov.merged.display(),
                            other.map(|o| o.0)
                        )))
                    }
                }
            }
            ctx.note(format!(
                "writes land in {} (the container's layer); {} stays untouched",
                ov.upper.display(),
                ov.lower
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ));
            bind_etc_files(ctx, &ov.merged)?;
            ctx.root = Some(ov.merged);
            return Ok(());
        }
        let dir =
            ctx.spec.rootfs.clone().ok_or_else(|| {
                StageError::msg("no rootfs directory was given to the rootfs stage")
            })?;
        let s = dir.to_string_lossy().into_owned();
        ctx.sys
            .mount(
                Some(&s),
                &dir,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| StageError::sys(&format!("mount({s:?}, {s:?}, MS_BIND|MS_REC)"), e))?;
        if ctx.verify && !is_mount_point(&dir)? {
            return Err(StageError::no_effect(format!(
                "{s} is not a mount point in /proc/self/mountinfo after the bind mount"
            )));
        }
        ctx.note("no writable layer: writes go straight to the rootfs directory");
        ctx.root = Some(dir);
        Ok(())
    }
}

/// Docker's "init layer": /etc/hostname, /etc/hosts and /etc/resolv.conf, written by the
/// runtime into the container's state directory, bind-mounted over the image's own. What the
/// container writes to them goes to those files, never into its layer, so `commit` never
/// takes them (a missing one leaves only an empty mount point, which `diff` and `commit`
/// skip).
fn bind_etc_files(ctx: &mut ChildCtx<'_>, merged: &Path) -> Result<(), StageError> {
    if ctx.spec.etc_files.is_empty() {
        return Ok(());
    }
    use nix::fcntl::{open, OFlag};
    let root = open(
        merged,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| StageError::sys(&format!("open({merged:?}, O_PATH|O_DIRECTORY)"), e))?;
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&root)
    ))
    .map_err(|e| StageError::msg(format!("readlink of the rootfs's descriptor: {e}")))?;
    for f in ctx.spec.etc_files.clone() {
        super::volumes::bind_one(ctx, std::os::fd::AsFd::as_fd(&root), &real, &f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::RootSwitch;
    use crate::stages::{ChildSpec, OverlaySpec};

    #[test]
    fn overlay_options_list_layers_top_first() {
        let spec = ChildSpec {
            hostname: "h".into(),
            rootfs: Some("/img".into()),
            root_switch: RootSwitch::Pivot,
            root_propagation: Default::default(),
            overlay: Some(OverlaySpec {
                lower: vec!["/l2".into(), "/l1".into()],
                upper: "/c/upper".into(),
                work: "/c/work".into(),
                merged: "/c/merged".into(),
            }),
            volumes: vec![],
            read_only: false,
            confine: Default::default(),
            userns: None,
            net: Default::default(),
            etc_files: vec![],
            tmpfs: vec![],
            sysctl: vec![],
            cgroup_mount: None,
            join: vec![],
            mqueue: false,
        };
        let mut rec = Recorder::new();
        let mut ctx = ChildCtx::new(&mut rec, &spec);
        ctx.verify = false;
        Rootfs.apply(&mut ctx).unwrap();
        assert_eq!(ctx.root.as_deref(), Some(Path::new("/c/merged")));
        assert_eq!(
            rec.calls,
            vec!["mount(\"overlay\", \"/c/merged\", \"overlay\", 0, \"lowerdir=/l2:/l1,upperdir=/c/upper,workdir=/c/work\")"]
        );
    }

    #[test]
    fn long_lower_lists_become_relative_to_the_layers_dir() {
        let ov = OverlaySpec {
            lower: (0..60)
                .map(|i| format!("/var/lib/stagebox/layers/{i:064x}").into())
                .collect(),
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            merged: "/c/merged".into(),
        };
        assert!(overlay_data(&ov).len() > MOUNT_DATA_MAX);
        let (dir, data) = overlay_data_within(&ov, MOUNT_DATA_MAX);
        assert_eq!(dir.as_deref(), Some(Path::new("/var/lib/stagebox/layers")));
        assert!(
            data.starts_with(&format!("lowerdir={:064x}:", 0)) && data.len() < MOUNT_DATA_MAX,
            "{data}"
        );
    }

    #[test]
    fn commas_and_colons_cannot_be_overlay_paths() {
        assert!(check_overlay_path(Path::new("/a,b")).is_err());
        assert!(check_overlay_path(Path::new("/a:b")).is_err());
        assert!(check_overlay_path(Path::new("/var/lib/stagebox")).is_ok());
    }
}
