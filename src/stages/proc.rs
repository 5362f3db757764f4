//! # proc: a /proc, /sys and /dev that belong to the container
//!
//! /proc is not a list of "all processes": it is a filesystem whose contents depend on the
//! PID namespace it was *mounted* for. The host's /proc, even seen from a new PID namespace,
//! still lists the host's processes, which is why `ps` in a container without this stage
//! shows everything. Mounting a fresh procfs from inside the new PID namespace
//! (`mount("proc", ROOT/proc, "proc", MS_NOSUID|MS_NOEXEC|MS_NODEV)`) makes it list only the
//! container's processes.
//!
//! /sys is mounted read-only (sysfs shows the network namespace of whoever mounts it, and a
//! container must not write the host's kernel knobs). /dev becomes a small tmpfs with only
//! the harmless character devices (null zero full random urandom tty), a private devpts
//! instance for terminals (`newinstance`, with /dev/ptmx pointing into it), a tmpfs at
//! /dev/shm for POSIX shared memory, and the /dev/fd, stdin, stdout, stderr links into
//! /proc/self/fd. The host's disks are simply not there.
//!
//! When this stage is off and the root is switched, the container gets the host's /proc,
//! /sys and /dev bind-mounted in instead, and the trace says so: that is what "no proc
//! isolation" means, and it is how a learner sees `ps` list the host's processes from a new
//! PID namespace.
//!
//! Why here in the order: after pid (so the procfs belongs to the container's PID namespace),
//! after net (so sysfs shows its interfaces), after mount and rootfs (so the mounts land inside
//! the container's tree, in its namespace), and before pivot (which would otherwise have to
//! reach back into the old root for them).

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use std::path::{Path, PathBuf};

pub struct Proc;

static INFO: StageInfo = StageInfo {
    id: StageId::Proc,
    summary: "fresh /proc for the PID namespace, read-only /sys, a minimal /dev",
    shows: "mountinfo lines for /proc /sys /dev, visible pid count",
    default_on: true,
    lesson: "02-pid-namespace",
    requires: &[(
        StageId::Mount,
        "without a mount namespace of its own, the new /proc, /sys and /dev would be mounted over the host's",
    )],
};

/// The character devices a container gets: name, major, minor.
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn mount(
    ctx: &mut ChildCtx<'_>,
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), StageError> {
    ctx.sys
        .mount(Some(source), target, fstype, flags, data)
        .map_err(|e| {
            StageError::sys(
                &crate::kernel::sys::describe_mount(Some(source), target, fstype, flags, data),
                e,
            )
        })
}

fn mkdir(ctx: &mut ChildCtx<'_>, path: &Path, mode: u32) -> Result<(), StageError> {
    ctx.sys
        .mkdir(path, mode)
        .map_err(|e| StageError::sys(&format!("mkdir({path:?})"), e))
}

fn make_dev(ctx: &mut ChildCtx<'_>, dev: &Path) -> Result<(), StageError> {
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mkdir(ctx, dev, 0o755)?;
    mount(
        ctx,
        "tmpfs",
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    if ctx.spec.userns.is_some() {
        // Inside a user namespace the kernel refuses mknod(2) of a device, even to the
        // namespace's root (it would make a node for the host's disk): runc bind-mounts
        // the host's nodes instead, and so does this stage.
        for (name, _, _) in DEVICES {
            bind_host_node(ctx, Path::new(&format!("/dev/{name}")), &dev.join(name))?;
        }
        ctx.note(format!(
            "in a user namespace the kernel refuses mknod(2) of devices: the host's {} are bind-mounted instead, as runc does",
            DEVICES.iter().map(|d| d.0).collect::<Vec<_>>().join(" ")
        ));
    } else {
        make_nodes(ctx, dev)?;
    }
    let pts = dev.join("pts");
    mkdir(ctx, &pts, 0o755)?;
    mount(
        ctx,
        "devpts",
        &pts,
        Some("devpts"),
        nosuid_noexec,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    mkdir(ctx, &shm, 0o1777)?;
    mount(
        ctx,
        "shm",
        &shm,
        Some("tmpfs"),
        nosuid_noexec | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )?;
    if ctx.spec.mqueue {
        mount_mqueue(ctx, &dev.join("mqueue"))?;
    }
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        let path = dev.join(link);
        ctx.sys
            .symlink(target, &path)
            .map_err(|e| StageError::sys(&format!("symlink({target:?}, {path:?})"), e))?;
    }
    for d in &ctx.spec.confine.devices.extra.clone() {
        add_device(ctx, dev, d)?;
    }
    Ok(())
}

/// An OCI config's /dev/mqueue: a POSIX message queue filesystem (it shows the queues of the
/// IPC namespace that mounts it), read back from mountinfo.
fn mount_mqueue(ctx: &mut ChildCtx<'_>, target: &Path) -> Result<(), StageError> {
    mkdir(ctx, target, 0o755)?;
    mount(
        ctx,
        "mqueue",
        target,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    if ctx.verify {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| StageError::msg(format!("cannot read /proc/self/mountinfo: {e}")))?;
        let want = target.to_string_lossy();
        let found = text.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            f.get(4) == Some(&want.as_ref()) && fstype == Some("mqueue")
        });
        if !found {
            return Err(StageError::no_effect(format!(
                "no mqueue filesystem at {want} in /proc/self/mountinfo"
            )));
        }
    }
    ctx.note(
        "/dev/mqueue: the config's mqueue filesystem (POSIX message queues of this IPC namespace)",
    );
    Ok(())
}

/// Bind-mounts the host's device node `host` onto an empty file at `path`.
fn bind_host_node(ctx: &mut ChildCtx<'_>, host: &Path, path: &Path) -> Result<(), StageError> {
    std::fs::File::create(path)
        .map_err(|e| StageError::msg(format!("cannot create {}: {e}", path.display())))?;
    let h = host.to_string_lossy().into_owned();
    mount(ctx, &h, path, None, MsFlags::MS_BIND, None)
}

/// The default nodes with mknod; where mknod is not permitted, the host's node is bound.
fn make_nodes(ctx: &mut ChildCtx<'_>, dev: &Path) -> Result<(), StageError> {
    // mknod applies the umask; the devices must be 0666, as on every Linux system.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut result = Ok(());
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        if let Err(e) = ctx.sys.mknod(&path, SFlag::S_IFCHR, 0o666, *major, *minor) {
            if e == nix::errno::Errno::EPERM {
                // Without CAP_MKNOD the host's node is bind-mounted instead.
                let host = format!("/dev/{name}");
                ctx.note(format!(
                    "mknod {name} not permitted; bind-mounting the host's {host}"
                ));
                if let Err(e) = bind_host_node(ctx, Path::new(&host), &path) {
                    result = Err(e);
                    break;
                }
            } else {
                result = Err(StageError::sys(&format!("mknod({path:?})"), e));
                break;
            }
        }
    }
    nix::sys::stat::umask(old);
    result
}

/// A `--device` node: mknod with the host node's type, numbers and mode, then its owner.
/// The devices stage allowed its numbers; here it gets a name in the container's /dev.
fn add_device(
    ctx: &mut ChildCtx<'_>,
    dev: &Path,
    d: &crate::confine::devices::Device,
) -> Result<(), StageError> {
    use std::os::unix::fs::MetadataExt;
    let rel = d.container.trim_start_matches("/dev/");
    let path = dev.join(rel);
    // Directories on the way (/dev/net for /dev/net/tun).
    let mut parent = dev.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        parent.push(c);
        if !parent.exists() {
            mkdir(ctx, &parent, 0o755)?;
        }
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        // --device /dev/null:/dev/null: the given node replaces the default one. In a user
        // namespace that one is a bind mount of the host's node (EBUSY): unmount it first.
        if let Err(e) = std::fs::remove_file(&path) {
            if e.raw_os_error() != Some(libc::EBUSY) {
                return Err(StageError::msg(format!(
                    "cannot replace {}: {e}",
                    path.display()
                )));
            }
            ctx.sys
                .umount2(&path, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| StageError::sys(&format!("umount2({path:?})"), e))?;
            std::fs::remove_file(&path)
                .map_err(|e| StageError::msg(format!("cannot replace {}: {e}", path.display())))?;
        }
    }
    if ctx.spec.userns.is_some() {
        // No mknod in a user namespace: the host's node itself, with its own owner and mode.
        bind_host_node(ctx, &d.host, &path)?;
        if ctx.verify {
            let md = std::fs::metadata(&path)
                .map_err(|e| StageError::no_effect(format!("{}: {e}", path.display())))?;
            if md.rdev() != nix::sys::stat::makedev(d.major, d.minor) {
                return Err(StageError::no_effect(format!(
                    "{} is not the device {}:{} after the bind mount",
                    path.display(),
                    d.major,
                    d.minor
                )));
            }
        }
        ctx.note(format!(
            "--device {}: bind-mounted at {} (no mknod in a user namespace)",
            d.host.display(),
            d.container
        ));
        return Ok(());
    }
    let kind = match d.kind {
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let r = ctx.sys.mknod(&path, kind, d.mode, d.major, d.minor);
    nix::sys::stat::umask(old);
    r.map_err(|e| StageError::sys(&format!("mknod({path:?})"), e))?;
    let (uid, gid) = (d.uid, d.gid);
    let p = path.clone();
    ctx.sys
        .raw(format!("chown({path:?}, {uid}, {gid})"), &mut || {
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map(|_| 0)
        })
        .map_err(|e| StageError::sys(&format!("chown({path:?})"), e))?;
    if ctx.verify {
        let md = std::fs::symlink_metadata(&path)
            .map_err(|e| StageError::no_effect(format!("{}: {e}", path.display())))?;
        let rdev = if d.kind == 'p' {
            0
        } else {
            nix::sys::stat::makedev(d.major, d.minor)
        };
        if md.rdev() != rdev || md.mode() & 0o7777 != d.mode & 0o7777 || md.uid() != d.uid {
            return Err(StageError::no_effect(format!(
                "{} is not the device {}:{} with mode {:o}",
                path.display(),
                d.major,
                d.minor,
                d.mode
            )));
        }
    }
    ctx.note(format!(
        "--device {}: {} is {} {}:{}",
        d.host.display(),
        d.container,
        d.kind,
        d.major,
        d.minor
    ));
    Ok(())
}

/// An OCI config's `/sys/fs/cgroup` mount, as runc makes it without a cgroup namespace: the
/// container's *own* cgroup directories, read-only. On cgroup v2 that is its directory of
/// the unified tree bound onto /sys/fs/cgroup; on v1 and hybrid hosts a tmpfs with one
/// directory per hierarchy (`memory`, `cpu,cpuacct` with `cpu` and `cpuacct` links,
/// `unified`, `systemd`), each the container's directory there. A workload then reads its
/// own limits where it expects them (`/sys/fs/cgroup/memory/memory.limit_in_bytes` on v1,
/// `/sys/fs/cgroup/memory.max` on v2).
fn mount_cgroups(ctx: &mut ChildCtx<'_>, target: &Path) -> Result<(), StageError> {
    let ro = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY;
    // In a cgroup namespace /proc/self/cgroup says `/`: the container's place is the one the
    // cgroup stage made, PARENT/LEAF in each hierarchy this process is in.
    let Some((parent, leaf)) = ctx.spec.cgroup_mount.clone() else {
        return Ok(());
    };
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| StageError::msg(format!("read /proc/self/cgroup: {e}")))?;
    let placed: String = own
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (id, ctls) = (parts.next()?, parts.next()?);
            Some(format!("{id}:{ctls}:/{parent}/{leaf}\n"))
        })
        .collect();
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| StageError::msg(format!("read /proc/self/mountinfo: {e}")))?;
    let members: Vec<_> = crate::cgroup::member::resolve(&placed, &info)
        .into_iter()
        .filter(|m| m.dir.is_dir())
        .collect();
    if members.is_empty() {
        return Err(StageError::msg(
            "/sys/fs/cgroup: the container is in no cgroup this process can see (the cgroup stage is off?)",
        ));
    }
    let bind_ro = |ctx: &mut ChildCtx<'_>, from: &Path, to: &Path| -> Result<(), StageError> {
        let src = from.to_string_lossy().into_owned();
        mount(ctx, &src, to, None, MsFlags::MS_BIND, None)?;
        mount(
            ctx,
            &src,
            to,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
            None,
        )
    };
    if members.iter().all(|m| m.is_v2()) {
        bind_ro(ctx, &members[0].dir, target)?;
        ctx.note("/sys/fs/cgroup: the container's own cgroup v2 directory, read-only");
        return Ok(());
    }
    mount(
        ctx,
        "tmpfs",
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        Some("mode=755"),
    )?;
    for m in &members {
        let name = if m.is_v2() {
            "unified".to_string()
        } else {
            m.controllers.trim_start_matches("name=").to_string()
        };
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let dir = target.join(&name);
        mkdir(ctx, &dir, 0o755)?;
        bind_ro(ctx, &m.dir, &dir)?;
        if name.contains(',') {
            for part in name.split(',') {
                let _ = std::os::unix::fs::symlink(&name, target.join(part));
            }
        }
    }
    mount(ctx, "tmpfs", target, None, MsFlags::MS_REMOUNT | ro, None)?;
    ctx.note("/sys/fs/cgroup: a tmpfs with the container's own directory of each cgroup v1 hierarchy, read-only");
    Ok(())
}

fn verify(root: &Path) -> Result<(), StageError> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let infos = crate::kernel::mountinfo::read_self()
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/mountinfo: {e}")))?;
    for (dir, fstype) in [("proc", "proc"), ("sys", "sysfs"), ("dev", "tmpfs")] {
        let want = root.join(dir);
        let top = crate::kernel::mountinfo::top_at(&infos, &want);
        match top {
            Some(m) if m.fs_type == fstype => {}
            Some(m) => {
                return Err(StageError::no_effect(format!(
                    "{} is {} in mountinfo, not {fstype}",
                    want.display(),
                    m.fs_type
                )))
            }
            None => {
                return Err(StageError::no_effect(format!(
                    "{} is not a mount point in mountinfo",
                    want.display()
                )))
            }
        }
    }
    let null = root.join("dev/null");
    let md = std::fs::metadata(&null)
        .map_err(|e| StageError::no_effect(format!("{}: {e}", null.display())))?;
    if !md.file_type().is_char_device() || md.rdev() != nix::sys::stat::makedev(1, 3) {
        return Err(StageError::no_effect(format!(
            "{} is not the character device 1:3",
            null.display()
        )));
    }
    Ok(())
}

impl Stage for Proc {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let root = ctx.target_root();
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        let proc_dir = root.join("proc");
        mkdir(ctx, &proc_dir, 0o555)?;
        mount(ctx, "proc", &proc_dir, Some("proc"), flags, None)?;
        if ctx.spec.userns.is_some() {
            ctx.note("in a user namespace the kernel mounts proc only for a PID namespace the user namespace owns, and sysfs only for a network namespace it owns: the user stage came first, so both are the container's");
        }
        let sys_dir = root.join("sys");
        mkdir(ctx, &sys_dir, 0o555)?;
        if let Err(e) = mount(
            ctx,
            "sysfs",
            &sys_dir,
            Some("sysfs"),
            flags | MsFlags::MS_RDONLY,
            None,
        ) {
            // sysfs can only be mounted by the owner of the network namespace; fall back to
            // a read-only bind of the host's /sys, as runc does for rootless containers.
            ctx.note(format!(
                "{e}; bind-mounting the host's /sys read-only instead"
            ));
            mount(
                ctx,
                "/sys",
                &sys_dir,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            mount(
                ctx,
                "/sys",
                &sys_dir,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                None,
            )?;
        }
        if ctx.spec.cgroup_mount.is_some() {
            mount_cgroups(ctx, &sys_dir.join("fs/cgroup"))?;
        }
        make_dev(ctx, &root.join("dev"))?;
        if ctx.verify {
            verify(&root)?;
        }
        Ok(())
    }

    fn when_off(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let Some(root) = ctx.root.clone() else {
            ctx.note("proc is off: the container keeps the host's /proc, /sys and /dev");
            return Ok(());
        };
        ctx.note("proc is off: bind-mounting the host's /proc, /sys and /dev into the rootfs, so the container sees the host's processes and devices");
        for dir in ["proc", "sys", "dev"] {
            let target: PathBuf = root.join(dir);
            mkdir(ctx, &target, 0o755)?;
            mount(
                ctx,
                &format!("/{dir}"),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::ChildSpec;
    use crate::stages::RootSwitch;

    #[test]
    fn mounts_proc_sys_dev_inside_the_root() {
        let spec = ChildSpec::for_test(RootSwitch::Pivot);
        let mut rec = Recorder::new();
        let mut ctx = ChildCtx::new(&mut rec, &spec);
        ctx.verify = false;
        ctx.root = Some("/r".into());
        Proc.apply(&mut ctx).unwrap();
        let mounts: Vec<&String> = rec
            .calls
            .iter()
            .filter(|c| c.starts_with("mount("))
            .collect();
        assert!(mounts[0].contains("\"/r/proc\", \"proc\""), "{mounts:?}");
        assert!(
            mounts[1].contains("\"/r/sys\", \"sysfs\", MS_RDONLY"),
            "{mounts:?}"
        );
        assert!(mounts[2].contains("\"/r/dev\", \"tmpfs\""), "{mounts:?}");
        assert!(rec.calls.iter().any(|c| c.contains("makedev(1, 3)")));
        assert!(rec.calls.iter().any(|c| c.contains("newinstance")));
    }
}
