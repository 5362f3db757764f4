//! # pivot: the rootfs becomes / and the host's tree is gone
//!
//! `pivot_root(new_root, put_old)` swaps the mount at / for new_root in the caller's mount
//! namespace and puts the old root at put_old. Passing "." for both (after chdir into the
//! new root) stacks the old root on top of the new one; `umount2(".", MNT_DETACH)` then
//! detaches it, and nothing of the host's tree is reachable any more: not by path, not by
//! `..`, not by a second chroot. mountinfo inside shows only the container's mounts.
//!
//! `chroot(2)` (`--root-switch chroot`) only changes the process's root *directory*. The old
//! root is still mounted in the namespace, and a process with CAP_SYS_CHROOT can climb out:
//! chroot into a subdirectory without chdir'ing into it, so its cwd is now *outside* its root,
//! then chdir("..") until it reaches the real /, and chroot("."). Lesson 04 shows that escape
//! for real, lesson 05 shows it failing after pivot_root.
//!
//! pivot_root is impossible when the current root is the initramfs (rootfs), which can never
//! be unmounted: the kernel answers EINVAL. Then this stage falls back, as runc and
//! switch_root do, to moving the new root over / (`mount(DIR, "/", MS_MOVE)`) and
//! `chroot(".")`, and the trace says why.
//!
//! Why here in the order: last of the filesystem stages, because everything the container
//! needs from the host (the rootfs bind, later volumes) must be mounted while the host's paths
//! are still reachable; after it, only the container's tree exists.

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use crate::stages::RootSwitch;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub struct Pivot;

static INFO: StageInfo = StageInfo {
    id: StageId::Pivot,
    summary:
        "pivot_root into the rootfs and detach the old root (or chroot, with --root-switch chroot)",
    shows: "/proc/PID/root, mount count",
    default_on: true,
    lesson: "05-pivot-root",
    requires: &[
        (
            StageId::Mount,
            "pivot_root would have to move the host's own root, for every process on the host",
        ),
        (
            StageId::Rootfs,
            "there would be no mounted root filesystem to switch into",
        ),
    ],
};

fn identity(p: &Path) -> Result<(u64, u64), StageError> {
    let md = std::fs::metadata(p)
        .map_err(|e| StageError::msg(format!("cannot stat {}: {e}", p.display())))?;
    Ok((md.dev(), md.ino()))
}

fn call(r: Result<(), Errno>, what: &str) -> Result<(), StageError> {
    r.map_err(|e| StageError::sys(what, e))
}

/// chroot(".") after moving the new root over /: what switch_root does on an initramfs.
fn move_and_chroot(ctx: &mut ChildCtx<'_>, root: &Path) -> Result<(), StageError> {
    let s = root.to_string_lossy().into_owned();
    call(
        ctx.sys
            .mount(Some(&s), Path::new("/"), None, MsFlags::MS_MOVE, None),
        &format!("mount({s:?}, \"/\", MS_MOVE)"),
    )?;
    call(ctx.sys.chroot(Path::new(".")), "chroot(\".\")")?;
    call(ctx.sys.chdir(Path::new("/")), "chdir(\"/\")")
}

impl Stage for Pivot {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let root = ctx.root.clone().ok_or_else(|| {
            StageError::msg("the rootfs stage did not mount a root to switch into")
        })?;
        let want = if ctx.verify {
            Some(identity(&root)?)
        } else {
            None
        };
        call(ctx.sys.chdir(&root), &format!("chdir({root:?})"))?;
        match ctx.spec.root_switch {
            RootSwitch::Chroot => {
                call(ctx.sys.chroot(Path::new(".")), "chroot(\".\")")?;
                call(ctx.sys.chdir(Path::new("/")), "chdir(\"/\")")?;
                ctx.note("chroot only changed the root directory: the host's mounts are all still in this namespace, and a root process can climb out");
            }
            RootSwitch::Pivot => match ctx.sys.pivot_root(Path::new("."), Path::new(".")) {
                Ok(()) => {
                    call(
                        ctx.sys.umount2(Path::new("."), MntFlags::MNT_DETACH),
                        "umount2(\".\", MNT_DETACH)",
                    )?;
                    call(ctx.sys.chdir(Path::new("/")), "chdir(\"/\")")?;
                }
                Err(Errno::EINVAL) => {
                    ctx.note("pivot_root returned EINVAL: the current root cannot be unmounted (it is the initramfs, or not a mount point), so falling back to MS_MOVE + chroot; the old root stays reachable to a root process");
                    move_and_chroot(ctx, &root)?;
                }
                Err(e) => return Err(StageError::sys("pivot_root(\".\", \".\")", e)),
            },
        }
        if ctx.spec.read_only {
            // --read-only: the container's root mount becomes read-only; mounts on top of it
            // (volumes, /proc, /dev) keep their own flags.
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
            call(
                ctx.sys.mount(None, Path::new("/"), None, flags, None),
                "mount(NULL, \"/\", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY)",
            )?;
            if ctx.verify {
                let ro = nix::sys::statvfs::statvfs("/")
                    .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
                    .unwrap_or(false);
                if !ro {
                    return Err(StageError::no_effect(
                        "/ is still writable after the read-only remount",
                    ));
                }
            }
        }
        if let Some(want) = want {
            let got = identity(Path::new("/"))?;
            if got != want {
                return Err(StageError::no_effect(format!(
                    "/ is device {} inode {} after the switch, the rootfs is device {} inode {}",
                    got.0, got.1, want.0, want.1
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::ChildSpec;

    fn run(rec: &mut Recorder, mode: RootSwitch) -> (Result<(), StageError>, Vec<String>) {
        let spec = ChildSpec::for_test(mode);
        let mut ctx = ChildCtx::new(rec, &spec);
        ctx.verify = false;
        ctx.root = Some("/r".into());
        let r = Pivot.apply(&mut ctx);
        let notes = ctx.notes.clone();
        (r, notes)
    }

    #[test]
    fn pivot_root_then_detach_the_old_root() {
        let mut rec = Recorder::new();
        let (r, _) = run(&mut rec, RootSwitch::Pivot);
        r.unwrap();
        assert_eq!(
            rec.calls,
            vec![
                "chdir(\"/r\")",
                "pivot_root(\".\", \".\")",
                "umount2(\".\", MNT_DETACH)",
                "chdir(\"/\")"
            ]
        );
    }

    #[test]
    fn einval_falls_back_to_move_and_chroot_and_says_why() {
        let mut rec = Recorder::failing("pivot_root", Errno::EINVAL);
        let (r, notes) = run(&mut rec, RootSwitch::Pivot);
        r.unwrap();
        assert_eq!(
            rec.calls,
            vec![
                "chdir(\"/r\")",
                "pivot_root(\".\", \".\")",
                "mount(\"/r\", \"/\", NULL, MS_MOVE, NULL)",
                "chroot(\".\")",
                "chdir(\"/\")"
            ]
        );
        assert!(notes[0].contains("EINVAL"), "{notes:?}");
    }

    #[test]
    fn other_pivot_errors_are_not_hidden() {
        let mut rec = Recorder::failing("pivot_root", Errno::EPERM);
        let (r, _) = run(&mut rec, RootSwitch::Pivot);
        assert!(r.unwrap_err().0.contains("EPERM"));
    }

    #[test]
    fn chroot_mode_never_calls_pivot_root() {
        let mut rec = Recorder::new();
        let (r, notes) = run(&mut rec, RootSwitch::Chroot);
        r.unwrap();
        assert_eq!(
            rec.calls,
            vec!["chdir(\"/r\")", "chroot(\".\")", "chdir(\"/\")"]
        );
        assert!(notes[0].contains("climb out"));
    }
}
