//! # paths: hide what no container may read, freeze what no container may turn
//!
//! A fresh /proc for a PID namespace still holds files that are not namespaced at all: they
//! show the whole machine, and some of them change it. Docker hides them in two ways.
//!
//! **Masked** (`/dev/null` bind-mounted over a file, an empty read-only tmpfs over a
//! directory):
//! - `/proc/kcore`: the kernel's memory as an ELF core file. Reading it reads the host's RAM:
//!   keys, other containers' data.
//! - `/proc/keys`: the kernel keyrings the reader may see, not separated per container.
//! - `/proc/timer_list`, `/proc/sched_debug`, `/proc/latency_stats`, `/proc/timer_stats`:
//!   the timers and run queues of every CPU, with the names and pids of the host's processes:
//!   they tell a container what runs next to it.
//! - `/proc/acpi`, `/proc/asound`, `/proc/scsi`, `/sys/firmware`,
//!   `/sys/devices/virtual/powercap`: the machine's hardware, firmware tables (and the
//!   powercap energy counters, a side channel on the host's work, CVE-2020-8694).
//!
//! A file is covered with `/dev/null` because a bind mount needs a source of the same kind
//! (file over file): it opens and reads as empty, and writing it writes nowhere. A directory
//! cannot take a file, so it gets an empty tmpfs, read-only so nothing can be hidden in it.
//! runc checks first that the `/dev/null` it binds really is the character device 1:3 (a
//! rootfs that makes `/dev/null` a link to a kernel knob would otherwise turn the mask into
//! a writable window, CVE-2025-31133); so does this stage. A path the kernel does not have
//! (no ACPI, no sound) is skipped, as runc skips it: there is nothing to hide.
//!
//! **Read-only** (the path bind-mounted onto itself, then remounted `MS_RDONLY`):
//! `/proc/sys` (sysctls: `kernel/core_pattern` names a program the *host's* kernel runs as
//! root on every crash, `kernel/modprobe` the one it runs to load a module), `/proc/sysrq-trigger`
//! (one byte reboots or crashes the machine), `/proc/irq`, `/proc/bus`, `/proc/fs`. The
//! remount keeps the nosuid, nodev and noexec the mount already has (read with statvfs): in
//! a user namespace the kernel refuses a remount that would clear a flag it locked.
//!
//! **/sys/fs/cgroup**: the container's own cgroups, read-only, laid out as on the host
//! (`confine::paths::cgroup_mounts`, read from the host's mountinfo before the root switch).
//! A pure v2 host gives one `cgroup2` mount; a v1 or hybrid host a small tmpfs holding one
//! `cgroup` mount per hierarchy (its controllers as options) and, on hybrid, `unified`, then
//! the `cpu -> cpu,cpuacct` links, then the tmpfs turns read-only. The cgroupns stage has
//! already rooted the cgroup namespace at the container's cgroup, so each fresh mount shows
//! that cgroup as its top: the workload reads its limits, writes none of them, and cannot
//! reach `release_agent` (the file the kernel runs as root on the host when a v1 cgroup
//! empties: the classic escape when it is writable).
//!
//! Why here in the order: after pivot, as runc does it: the paths are the container's own
//! /proc and /sys, and the mounts must be made inside the new root, in the container's mount
//! namespace (hence the mount stage: never over the host's /proc). With the proc stage off,
//! the masks cover the host's /proc bound in, still inside the container's namespace only.
//! Before nnp, caps and seccomp: every mount here needs CAP_SYS_ADMIN, which the caps stage
//! takes away, and that is also what keeps these mounts on: without CAP_SYS_ADMIN the
//! workload cannot unmount a mask or remount /proc/sys read-write (nor `mount -o remount,rw /`
//! under `--read-only`). With the cgroupns stage off the cgroup mounts are still made,
//! read-only, and then show the host's whole tree: the trace says so.
//!
//! The read-back: mountinfo shows a mount at every masked path (a read-only tmpfs over a
//! directory; a file now stats as the device 1:3), `ro` at every read-only path, and
//! /sys/fs/cgroup (and each hierarchy under it) `ro`.

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use crate::confine::paths::CgroupMount;
use crate::kernel::mountinfo::{self, Mount};
use nix::mount::MsFlags;
use std::path::Path;

pub struct Paths;

static INFO: StageInfo = StageInfo {
    id: StageId::Paths,
    summary: "mask /proc/kcore and friends, make /proc/sys and /sys/fs/cgroup read-only",
    shows: "mountinfo lines over the masked and read-only paths",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[(
        StageId::Mount,
        "without a mount namespace of its own the masks would cover the host's /proc",
    )],
};

/// Where the cgroup filesystems go.
const CGROUP: &str = "/sys/fs/cgroup";

/// The flags every cgroup mount gets, as Docker's: nothing runs, no device opens from there.
const NO_SUID_DEV_EXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount(
    ctx: &mut ChildCtx<'_>,
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), StageError> {
    ctx.sys
        .mount(source, target, fstype, flags, data)
        .map_err(|e| {
            StageError::sys(
                &crate::kernel::sys::describe_mount(source, target, fstype, flags, data),
                e,
            )
        })
}

/// What a path is, or None when it does not exist.
fn kind(path: &Path) -> Result<Option<bool>, StageError> {
    match std::fs::metadata(path) {
        Ok(md) => Ok(Some(md.is_dir())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StageError::msg(format!(
            "cannot look at {}: {e}",
            path.display()
        ))),
    }
}

fn is_dev_null(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    std::fs::metadata(path)
        .map(|md| md.file_type().is_char_device() && md.rdev() == nix::sys::stat::makedev(1, 3))
        .unwrap_or(false)
}

/// The nosuid, nodev and noexec the mount at `path` has, which a read-only remount must keep.
fn locked_flags(path: &Path) -> Result<MsFlags, StageError> {
    use nix::sys::statvfs::FsFlags;
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| StageError::sys(&format!("statvfs({path:?})"), e))?;
    let mut flags = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if st.flags().contains(fs) {
            flags |= ms;
        }
    }
    Ok(flags)
}

/// Bind `path` onto itself, then remount that bind read-only (runc's `readonlyPath`).
fn make_readonly(ctx: &mut ChildCtx<'_>, path: &Path) -> Result<(), StageError> {
    let src = path.to_string_lossy().into_owned();
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(ctx, Some(&src), path, None, bind, None)?;
    let keep = locked_flags(path)?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep;
    mount(ctx, Some(&src), path, None, ro, None)
}

/// /dev/null over a file, an empty read-only tmpfs over a directory (runc's `maskPath`).
fn mask(ctx: &mut ChildCtx<'_>, path: &Path, dir: bool) -> Result<(), StageError> {
    if dir {
        mount(
            ctx,
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        mount(ctx, Some("/dev/null"), path, None, MsFlags::MS_BIND, None)
    }
}

fn has_opt(m: &Mount, opt: &str) -> bool {
    m.mount_opts.split(',').any(|o| o == opt)
}

/// /sys/fs/cgroup as the host lays it out, read-only, rooted at the container's cgroups.
fn mount_cgroups(ctx: &mut ChildCtx<'_>, mounts: &[CgroupMount]) -> Result<(), StageError> {
    let top = Path::new(CGROUP);
    let ro = MsFlags::MS_RDONLY | NO_SUID_DEV_EXEC;
    if let [only] = mounts {
        if only.dir.is_empty() {
            return mount(ctx, Some("cgroup"), top, Some("cgroup2"), ro, None);
        }
    }
    mount(
        ctx,
        Some("tmpfs"),
        top,
        Some("tmpfs"),
        NO_SUID_DEV_EXEC,
        Some("mode=755"),
    )?;
    for m in mounts {
        let dir = top.join(&m.dir);
        ctx.sys
            .mkdir(&dir, 0o755)
            .map_err(|e| StageError::sys(&format!("mkdir({dir:?})"), e))?;
        let data = (!m.options.is_empty()).then_some(m.options.as_str());
        mount(ctx, Some("cgroup"), &dir, Some(&m.fs_type), ro, data).map_err(|e| {
            StageError::msg(format!(
                "{e}; the host's cgroup hierarchy {:?} cannot be mounted again inside (run with --without paths to keep /sys/fs/cgroup empty)",
                m.dir
            ))
        })?;
    }
    // A hierarchy with several controllers gets a link per controller, as on the host:
    // /sys/fs/cgroup/cpu -> cpu,cpuacct.
    for m in mounts.iter().filter(|m| m.dir.contains(',')) {
        for name in m.dir.split(',') {
            if mounts.iter().any(|o| o.dir == name) {
                continue;
            }
            let link = top.join(name);
            ctx.sys
                .symlink(&m.dir, &link)
                .map_err(|e| StageError::sys(&format!("symlink({:?}, {link:?})", m.dir), e))?;
        }
    }
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro;
    mount(ctx, None, top, None, flags, None)
}

/// What the stage did, for the read-back.
struct Done {
    masked: Vec<(String, bool)>,
    readonly: Vec<String>,
    /// Whether /sys/fs/cgroup was mounted.
    cgroups: bool,
}

fn verify(ctx: &ChildCtx<'_>, done: &Done) -> Result<(), StageError> {
    let mounts = mountinfo::read_self()
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/mountinfo: {e}")))?;
    for (path, dir) in &done.masked {
        let p = Path::new(path);
        let Some(top) = mountinfo::top_at(&mounts, p) else {
            return Err(StageError::no_effect(format!(
                "{path} is not a mount point in mountinfo after masking it"
            )));
        };
        if *dir && (top.fs_type != "tmpfs" || !has_opt(top, "ro")) {
            return Err(StageError::no_effect(format!(
                "{path} is {} ({}) in mountinfo, not a read-only tmpfs",
                top.fs_type, top.mount_opts
            )));
        }
        if !*dir && !is_dev_null(p) {
            return Err(StageError::no_effect(format!(
                "{path} is not the character device 1:3 after binding /dev/null over it"
            )));
        }
    }
    for path in &done.readonly {
        match mountinfo::top_at(&mounts, Path::new(path)) {
            Some(m) if has_opt(m, "ro") => {}
            Some(m) => {
                return Err(StageError::no_effect(format!(
                    "{path} is mounted {} in mountinfo, not ro",
                    m.mount_opts
                )))
            }
            None => {
                return Err(StageError::no_effect(format!(
                    "{path} is not a mount point in mountinfo after the read-only bind"
                )))
            }
        }
    }
    let cg = &ctx.spec.confine.cgroup_mounts;
    if !done.cgroups {
        return Ok(());
    }
    let want_top = if cg.len() == 1 && cg[0].dir.is_empty() {
        "cgroup2"
    } else {
        "tmpfs"
    };
    let top = Path::new(CGROUP);
    match mountinfo::top_at(&mounts, top) {
        Some(m) if m.fs_type == want_top && has_opt(m, "ro") => {}
        Some(m) => {
            return Err(StageError::no_effect(format!(
                "{CGROUP} is {} ({}) in mountinfo, not a read-only {want_top}",
                m.fs_type, m.mount_opts
            )))
        }
        None => {
            return Err(StageError::no_effect(format!(
                "{CGROUP} is not a mount point in mountinfo"
            )))
        }
    }
    for c in cg.iter().filter(|c| !c.dir.is_empty()) {
        let dir = top.join(&c.dir);
        match mountinfo::top_at(&mounts, &dir) {
            Some(m) if m.fs_type == c.fs_type && has_opt(m, "ro") => {}
            _ => {
                return Err(StageError::no_effect(format!(
                    "{} is not a read-only {} mount in mountinfo",
                    dir.display(),
                    c.fs_type
                )))
            }
        }
    }
    Ok(())
}

/// Mounts below a read-only path keep their own flags: say which stay writable.
fn writable_below(readonly: &[String]) -> Vec<String> {
    let Ok(mounts) = mountinfo::read_self() else {
        return Vec::new();
    };
    mounts
        .iter()
        .filter(|m| {
            readonly
                .iter()
                .any(|r| m.mount_point.starts_with(&format!("{r}/")))
                && !has_opt(m, "ro")
        })
        .map(|m| m.mount_point.clone())
        .collect()
}

/// The cgroup paths this process sees that are not "/": without a cgroup namespace rooted
/// at its cgroup, a fresh cgroup mount shows the host's whole tree.
fn cgroup_paths_above() -> Vec<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|t| crate::cgroup::proc_cgroup_lines(&t))
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, p)| p != "/")
        .map(|(c, p)| if c.is_empty() { p } else { format!("{c}:{p}") })
        .collect()
}

impl Stage for Paths {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let spec = ctx.spec;
        let mut absent: Vec<String> = Vec::new();

        // /sys/fs/cgroup first: masks and read-only binds below /sys go on top of it.
        let cg = &spec.confine.cgroup_mounts;
        let mut cgroups = false;
        if cg.is_empty() {
            ctx.note("the host mounts no cgroup filesystem: /sys/fs/cgroup stays empty");
        } else if kind(Path::new(CGROUP))? != Some(true) {
            ctx.note("/sys/fs/cgroup is no directory in this /sys: no cgroup mounts");
        } else {
            let above = cgroup_paths_above();
            mount_cgroups(ctx, cg)?;
            cgroups = true;
            let what = if cg.len() == 1 && cg[0].dir.is_empty() {
                "cgroup2".to_string()
            } else {
                let dirs: Vec<&str> = cg.iter().map(|c| c.dir.as_str()).collect();
                format!("a tmpfs with {}", dirs.join(" "))
            };
            if above.is_empty() {
                ctx.note(format!(
                    "/sys/fs/cgroup: {what}, read-only, showing the container's own cgroups"
                ));
            } else {
                ctx.note(format!(
                    "/sys/fs/cgroup: {what}, read-only; /proc/self/cgroup shows {} (no cgroup namespace rooted here), so it shows the host's whole cgroup tree",
                    above.join(", ")
                ));
            }
        }

        // Read-only before masked, as runc does.
        let mut readonly = Vec::new();
        for path in &spec.confine.readonly_paths {
            let p = Path::new(path);
            if kind(p)?.is_none() {
                absent.push(path.clone());
                continue;
            }
            make_readonly(ctx, p)?;
            readonly.push(path.clone());
        }

        let mut masked = Vec::new();
        let mut checked_null = false;
        for path in &spec.confine.masked_paths {
            let p = Path::new(path);
            let Some(dir) = kind(p)? else {
                absent.push(path.clone());
                continue;
            };
            if !dir && !checked_null {
                if !is_dev_null(Path::new("/dev/null")) {
                    return Err(StageError::msg(
                        "/dev/null is not the character device 1:3 in this container, so it cannot mask files (binding something else over /proc/kcore could expose it)",
                    ));
                }
                checked_null = true;
            }
            mask(ctx, p, dir)?;
            masked.push((path.clone(), dir));
        }

        let files = masked.iter().filter(|(_, d)| !d).count();
        ctx.note(format!(
            "masked {}: /dev/null over {files} files, an empty read-only tmpfs over {} directories; read-only: {}",
            masked.len(),
            masked.len() - files,
            readonly.len()
        ));
        if !absent.is_empty() {
            ctx.note(format!(
                "absent here, skipped (as runc skips them): {}",
                absent.join(" ")
            ));
        }
        if ctx.verify {
            verify(
                ctx,
                &Done {
                    masked,
                    readonly: readonly.clone(),
                    cgroups,
                },
            )?;
            let open = writable_below(&readonly);
            if !open.is_empty() {
                ctx.note(format!(
                    "mounts below the read-only paths keep their own flags and stay writable: {}",
                    open.join(" ")
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::{ChildSpec, RootSwitch};

    fn spec_with(dir: &Path, cgroups: Vec<CgroupMount>) -> ChildSpec {
        let mut spec = ChildSpec::for_test(RootSwitch::Pivot);
        let d = |n: &str| dir.join(n).to_string_lossy().into_owned();
        spec.confine.masked_paths = vec![d("kcore"), d("acpi"), d("absent")];
        spec.confine.readonly_paths = vec![d("sys"), d("gone")];
        spec.confine.cgroup_mounts = cgroups;
        spec
    }

    fn tempdir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("kcore"), "secret").unwrap();
        std::fs::create_dir(t.path().join("acpi")).unwrap();
        std::fs::create_dir(t.path().join("sys")).unwrap();
        t
    }

    fn calls(spec: &ChildSpec) -> (Vec<String>, Vec<String>) {
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, spec);
        ctx.verify = false;
        Paths.apply(&mut ctx).unwrap();
        let notes = ctx.notes.clone();
        (sys.calls, notes)
    }

    #[test]
    fn masks_files_with_dev_null_dirs_with_tmpfs_and_binds_readonly_paths() {
        use crate::kernel::sys::describe_mount;
        let t = tempdir();
        let p = |n: &str| t.path().join(n);
        let (calls, notes) = calls(&spec_with(t.path(), vec![]));
        let sys = p("sys");
        let s = sys.to_string_lossy().into_owned();
        // The read-only remount keeps what statvfs says the temp dir's mount has.
        let keep = locked_flags(t.path()).unwrap();
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep;
        assert_eq!(
            calls,
            vec![
                describe_mount(
                    Some(&s),
                    &sys,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None
                ),
                describe_mount(Some(&s), &sys, None, ro, None),
                describe_mount(Some("/dev/null"), &p("kcore"), None, MsFlags::MS_BIND, None),
                describe_mount(
                    Some("tmpfs"),
                    &p("acpi"),
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None
                ),
            ]
        );
        assert!(notes.iter().any(|n| n.contains("masked 2")), "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("skipped") && n.contains("absent") && n.contains("gone")),
            "{notes:?}"
        );
    }

    fn cg(dir: &str, fs: &str, opts: &str) -> CgroupMount {
        CgroupMount {
            dir: dir.into(),
            fs_type: fs.into(),
            options: opts.into(),
        }
    }

    fn cgroup_calls(c: Vec<CgroupMount>) -> Vec<String> {
        let spec = ChildSpec::for_test(RootSwitch::Pivot);
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        mount_cgroups(&mut ctx, &c).unwrap();
        sys.calls
    }

    #[test]
    fn pure_v2_is_one_read_only_cgroup2() {
        assert_eq!(
            cgroup_calls(vec![cg("", "cgroup2", "")]),
            vec!["mount(\"cgroup\", \"/sys/fs/cgroup\", \"cgroup2\", MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC, NULL)"]
        );
    }

    #[test]
    fn hybrid_is_a_tmpfs_of_hierarchies_with_links_then_read_only() {
        let calls = cgroup_calls(vec![
            cg("cpu,cpuacct", "cgroup", "cpu,cpuacct"),
            cg("systemd", "cgroup", "name=systemd"),
            cg("unified", "cgroup2", ""),
        ]);
        let ro = "MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC";
        assert_eq!(
            calls,
            vec![
                "mount(\"tmpfs\", \"/sys/fs/cgroup\", \"tmpfs\", MS_NOSUID|MS_NODEV|MS_NOEXEC, \"mode=755\")".to_string(),
                "mkdir(\"/sys/fs/cgroup/cpu,cpuacct\", 0o755)".into(),
                format!("mount(\"cgroup\", \"/sys/fs/cgroup/cpu,cpuacct\", \"cgroup\", {ro}, \"cpu,cpuacct\")"),
                "mkdir(\"/sys/fs/cgroup/systemd\", 0o755)".into(),
                format!("mount(\"cgroup\", \"/sys/fs/cgroup/systemd\", \"cgroup\", {ro}, \"name=systemd\")"),
                "mkdir(\"/sys/fs/cgroup/unified\", 0o755)".into(),
                format!("mount(\"cgroup\", \"/sys/fs/cgroup/unified\", \"cgroup2\", {ro}, NULL)"),
                "symlink(\"cpu,cpuacct\", \"/sys/fs/cgroup/cpu\")".into(),
                "symlink(\"cpu,cpuacct\", \"/sys/fs/cgroup/cpuacct\")".into(),
                format!("mount(NULL, \"/sys/fs/cgroup\", NULL, {ro}|MS_REMOUNT|MS_BIND, NULL)"),
            ]
        );
    }
}
