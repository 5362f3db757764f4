//! Files in and out of a running container: `cp` and `export`, through the workload's root.
//!
//! `/proc/PID/root` is the workload's root directory as the kernel holds it: the overlay
//! with the container's mounts on it, whatever the run's root switch. A path given by the
//! user is never handed to the kernel whole from there: a symlink inside the container
//! (`/tmp/x -> /`) would then be resolved against the HOST's root. `rootfs::walk` opens it
//! one component at a time, each symlink resolved as if the container's root were `/`, and
//! everything below is reached with `openat(dirfd, name, O_NOFOLLOW)` from the descriptor of
//! its directory, so a copy never leaves the container, whatever the container does.
//!
//! Files copied in belong to the container's root (the host uid its uid_map gives 0).
//! `export` writes the root filesystem as a tar, staying on the root's own filesystem
//! (`/proc`, `/sys`, `/dev` and volumes are other mounts: their directories are kept empty,
//! as in Docker's export).
//!
//! A stopped container has no root to go through: its layers are mounted again, in a mount
//! namespace of this process's own (`unshare(CLONE_NEWNS)`, everything made private first, so
//! nothing reaches the host and the mount ends with the process). Copying out or exporting
//! mounts the writable layer read-only as the top lower layer (`lowerdir=upper:image...`), so
//! its whiteouts hide what it deleted; copying in mounts the overlay as the container had it
//! (`upperdir=upper`), so the new files land in its writable layer the way its own writes do.
//! Only `trusted.overlay.*` xattrs are read there: an opaque directory a user-namespace run
//! marked with `user.overlay.opaque` shows the lower layers' files under it.

use crate::error::{Error, Result};
use crate::rootfs::walk::{open_in_root, Make};
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One side of `cp`: a host path or `CONTAINER:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Host(PathBuf),
    Container(String, PathBuf),
}

/// Docker's rule: `NAME:PATH` is in a container unless the part before the colon looks like
/// a path (starts with `/` or `.`).
pub fn parse_side(s: &str) -> Side {
    match s.split_once(':') {
        Some((name, path)) if !name.is_empty() && !name.starts_with(['/', '.']) => Side::Container(
            name.to_string(),
            PathBuf::from(if path.is_empty() { "/" } else { path }),
        ),
        _ => Side::Host(PathBuf::from(s)),
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn sys(what: impl std::fmt::Display) -> impl Fn(nix::errno::Errno) -> Error {
    let what = what.to_string();
    move |e| Error::usage(format!("{what}: {}", e.desc()))
}

fn root_of(pid: i32) -> Result<OwnedFd> {
    let p = format!("/proc/{pid}/root");
    std::fs::File::open(&p)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {p}"), e))
}

/// The host uid and gid that are 0 inside (from the workload's uid_map and gid_map).
fn root_ids(pid: i32) -> (u32, u32) {
    let host_of_zero = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<u32> = l
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    (f.len() == 3 && f[0] == 0).then_some(f[1])
                })
            })
            .unwrap_or(0)
    };
    (host_of_zero("uid_map"), host_of_zero("gid_map"))
}

/// A real directory descriptor (readable) from an O_PATH one.
fn reopen_dir(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    openat(
        fd,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open directory"))
}

/// What the walk meets under a directory.
enum Entry<'a> {
    Dir(&'a Path, &'a FileStat),
    File(&'a Path, &'a FileStat, std::fs::File),
    Symlink(&'a Path, &'a FileStat, PathBuf),
    /// The end of a directory's entries (to close it on the host side).
    Leave,
}

/// Visits everything below the directory `dir` (rel is its name in the output), each child
/// opened from its parent's descriptor with O_NOFOLLOW; other filesystems than `dev` are
/// entered no further than their directory. Devices, fifos and sockets are left out.
fn walk(
    dir: &OwnedFd,
    rel: &Path,
    dev: u64,
    visit: &mut dyn FnMut(Entry<'_>) -> Result<()>,
) -> Result<()> {
    let mut d = nix::dir::Dir::from_fd(nix::unistd::dup(dir).map_err(sys("dup"))?)
        .map_err(sys(format!("read directory {}", rel.display())))?;
    let mut names: Vec<Vec<u8>> = d
        .iter()
        .flatten()
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort();
    for n in names {
        let name = OsStr::from_bytes(&n);
        let child_rel = rel.join(name);
        let Ok(st) = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        match kind(&st) {
            SFlag::S_IFDIR => {
                visit(Entry::Dir(&child_rel, &st))?;
                if st.st_dev == dev {
                    let Ok(fd) = openat(
                        dir,
                        name,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    ) else {
                        continue;
                    };
                    walk(&fd, &child_rel, dev, visit)?;
                }
                visit(Entry::Leave)?;
            }
            SFlag::S_IFREG if st.st_dev == dev => {
                let fd = openat(
                    dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(sys(format!("open {}", child_rel.display())))?;
                visit(Entry::File(&child_rel, &st, std::fs::File::from(fd)))?;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(dir, name)
                    .map_err(sys(format!("readlink {}", child_rel.display())))?;
                visit(Entry::Symlink(&child_rel, &st, PathBuf::from(target)))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `stagebox cp`: one side must be `CONTAINER:PATH` (running or not).
pub fn cp(state: &Path, src: &str, dest: &str) -> Result<()> {
    match (parse_side(src), parse_side(dest)) {
        (Side::Container(c, from), Side::Host(to)) => {
            let (root, _) = root_for(state, &c, false)?;
            copy_out(root, &from, &to)
        }
        (Side::Host(from), Side::Container(c, to)) => {
            if std::fs::symlink_metadata(&from).is_err() {
                return Err(Error::usage(format!("there is no {} to copy", from.display())));
            }
            let (root, ids) = root_for(state, &c, true)?;
            copy_in(root, ids, &from, &to)
        }
        _ => Err(Error::usage(
            "cp copies between a container and the host: one side is CONTAINER:PATH, the other a host path",
        )),
    }
}

/// The container's root and the host ids of its root user: the workload's root while it
/// runs, else its layers mounted again in a private mount namespace (see the top).
fn root_for(state: &Path, key: &str, writable: bool) -> Result<(OwnedFd, (u32, u32))> {
    if let Ok((_, pid)) = super::exec::running(state, key) {
        return Ok((root_of(pid)?, root_ids(pid)));
    }
    let c = crate::state::container::find(state, key)?;
    if c.lower.is_empty() {
        return Err(Error::usage(format!(
            "container {key} is not running and has no layers of its own (it ran on the host's filesystem)"
        )));
    }
    let lower: Vec<String> = c.lower.iter().map(|l| l.display().to_string()).collect();
    let (upper, work, merged) = (c.upper(state), c.work(state), c.merged(state));
    let data = if writable {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        )
    } else {
        format!("lowerdir={}:{}", upper.display(), lower.join(":"))
    };
    if data.len() > 4000 || data.matches(',').count() > 2 {
        return Err(Error::usage(format!(
            "container {key} is not running, and its layers' paths do not fit in one overlay mount here"
        )));
    }
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare(CLONE_NEWNS)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make this process's mounts private"))?;
    std::fs::create_dir_all(&merged)
        .map_err(|e| Error::io(format!("create {}", merged.display()), e))?;
    let flags = if writable {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(sys(format!("mount the layers of container {key}")))?;
    Ok((
        std::fs::File::open(&merged)
            .map(OwnedFd::from)
            .map_err(|e| Error::io(format!("open {}", merged.display()), e))?,
        (0, 0),
    ))
}

fn copy_out(root: OwnedFd, from: &Path, to: &Path) -> Result<()> {
    let opened = open_in_root(root.as_fd(), from, Make::Nothing)?;
    let st = fstat(&opened.fd).map_err(sys("fstat"))?;
    let base = opened
        .inside
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "root".into());
    let target = if to.is_dir() {
        to.join(&base)
    } else {
        to.to_path_buf()
    };
    match kind(&st) {
        SFlag::S_IFREG => {
            let mut f = std::fs::File::from(
                openat(
                    &opened.fd,
                    "",
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .or_else(|_| {
                    nix::fcntl::open(
                        format!("/proc/self/fd/{}", opened.fd.as_raw_fd()).as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                })
                .map_err(sys(format!("open {}", opened.inside.display())))?,
            );
            write_host_file(&target, &mut f, st.st_mode)
        }
        SFlag::S_IFDIR => {
            let dir = reopen_dir(opened.fd.as_fd())?;
            mkdir_host(&target, st.st_mode)?;
            walk(&dir, Path::new(""), st.st_dev as u64, &mut |e| match e {
                Entry::Dir(rel, st) => mkdir_host(&target.join(rel), st.st_mode),
                Entry::File(rel, st, mut f) => {
                    write_host_file(&target.join(rel), &mut f, st.st_mode)
                }
                Entry::Symlink(rel, _, t) => {
                    let p = target.join(rel);
                    let _ = std::fs::remove_file(&p);
                    std::os::unix::fs::symlink(&t, &p)
                        .map_err(|e| Error::io(format!("symlink {}", p.display()), e))
                }
                Entry::Leave => Ok(()),
            })
        }
        _ => Err(Error::usage(format!(
            "{} in the container is not a file or a directory",
            opened.inside.display()
        ))),
    }
}

fn mkdir_host(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode & 0o7777).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        Err(e) => Err(Error::io(format!("mkdir {}", p.display()), e)),
    }
}

fn write_host_file(p: &Path, from: &mut std::fs::File, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode & 0o7777)
        .open(p)
        .map_err(|e| Error::io(format!("create {}", p.display()), e))?;
    std::io::copy(from, &mut out).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
    Ok(())
}

fn copy_in(root: OwnedFd, ids: (u32, u32), from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from)
        .map_err(|e| Error::usage(format!("cannot copy {}: {e}", from.display())))?;
    // DEST an existing directory: SRC goes inside it under its own name (Docker's rule).
    let (parent, name) = match open_in_root(root.as_fd(), to, Make::Nothing) {
        Ok(o)
            if fstat(&o.fd)
                .map(|s| kind(&s) == SFlag::S_IFDIR)
                .unwrap_or(false) =>
        {
            let name = from.file_name().ok_or_else(|| {
                Error::usage(format!("{} has no file name to copy under", from.display()))
            })?;
            (o.fd, name.to_os_string())
        }
        _ => {
            let name = to
                .file_name()
                .ok_or_else(|| Error::usage(format!("{} is not a path to copy to", to.display())))?
                .to_os_string();
            let dir = to.parent().unwrap_or(Path::new("/"));
            (open_in_root(root.as_fd(), dir, Make::Dir)?.fd, name)
        }
    };
    let parent = reopen_dir(parent.as_fd())?;
    put(&parent, name.as_os_str(), from, &meta, ids)
}

/// Puts the host path `from` at `name` in the container directory `dir`, owned by the
/// container's root, recursing into directories. Nothing is followed on the container side.
fn put(
    dir: &OwnedFd,
    name: &OsStr,
    from: &Path,
    meta: &std::fs::Metadata,
    ids: (u32, u32),
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shown = || from.display().to_string();
    let chown = |fd: BorrowedFd<'_>, name: &OsStr| {
        nix::unistd::fchownat(
            fd,
            name,
            Some(nix::unistd::Uid::from_raw(ids.0)),
            Some(nix::unistd::Gid::from_raw(ids.1)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    };
    let mode = Mode::from_bits_truncate(meta.mode() & 0o7777);
    if meta.file_type().is_symlink() {
        let target =
            std::fs::read_link(from).map_err(|e| Error::io(format!("readlink {}", shown()), e))?;
        let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat(target.as_path(), dir, name)
            .map_err(sys(format!("symlink {}", shown())))?;
        chown(dir.as_fd(), name).map_err(sys("chown"))?;
    } else if meta.is_dir() {
        match nix::sys::stat::mkdirat(dir, name, mode) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(sys(format!("mkdir for {}", shown()))(e)),
        }
        chown(dir.as_fd(), name).map_err(sys("chown"))?;
        let sub = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(format!("open the directory made for {}", shown())))?;
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .map_err(|e| Error::io(format!("read {}", shown()), e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let m = std::fs::symlink_metadata(e.path())
                .map_err(|x| Error::io(format!("stat {}", e.path().display()), x))?;
            put(&sub, &e.file_name(), &e.path(), &m, ids)?;
        }
    } else if meta.is_file() {
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_TRUNC
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC;
        let fd = match openat(dir, name, flags, mode) {
            // A symlink there is replaced, never written through.
            Err(nix::errno::Errno::ELOOP) => {
                let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
                openat(dir, name, flags, mode)
            }
            r => r,
        }
        .map_err(sys(format!("create the file for {}", shown())))?;
        let mut out = std::fs::File::from(fd);
        let mut src =
            std::fs::File::open(from).map_err(|e| Error::io(format!("open {}", shown()), e))?;
        std::io::copy(&mut src, &mut out).map_err(|e| Error::io(format!("copy {}", shown()), e))?;
        nix::unistd::fchown(
            &out,
            Some(nix::unistd::Uid::from_raw(ids.0)),
            Some(nix::unistd::Gid::from_raw(ids.1)),
        )
        .map_err(sys("chown"))?;
    } else {
        return Err(Error::usage(format!(
            "{} is not a file, a directory or a symlink",
            shown()
        )));
    }
    Ok(())
}

/// `stagebox export`: the container's root filesystem as a tar, to `out` (running or not).
pub fn export(state: &Path, key: &str, out: &mut dyn Write) -> Result<()> {
    let (root, (uid0, gid0)) = root_for(state, key, false)?;
    let st = fstat(&root).map_err(sys("fstat the container's root"))?;
    let inside = |host: u32, zero: u32| host.checked_sub(zero).unwrap_or(host) as u64;
    let mut tar = tar::Builder::new(out);
    let bad = |e: std::io::Error| Error::io("write the tar", e);
    let header = |rel: &Path, st: &FileStat, t: tar::EntryType| -> Result<tar::Header> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(t);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(inside(st.st_uid, uid0));
        h.set_gid(inside(st.st_gid, gid0));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let _ = rel;
        Ok(h)
    };
    walk(&root, Path::new(""), st.st_dev as u64, &mut |e| match e {
        Entry::Dir(rel, st) => {
            let mut h = header(rel, st, tar::EntryType::Directory)?;
            tar.append_data(&mut h, rel, std::io::empty()).map_err(bad)
        }
        Entry::File(rel, st, f) => {
            let mut h = header(rel, st, tar::EntryType::Regular)?;
            h.set_size(st.st_size as u64);
            tar.append_data(&mut h, rel, std::io::Read::take(f, st.st_size as u64))
                .map_err(bad)
        }
        Entry::Symlink(rel, st, target) => {
            let mut h = header(rel, st, tar::EntryType::Symlink)?;
            tar.append_link(&mut h, rel, &target).map_err(bad)
        }
        Entry::Leave => Ok(()),
    })?;
    tar.finish().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_is_in_a_container_when_named_so() {
        assert_eq!(
            parse_side("web:/etc"),
            Side::Container("web".into(), "/etc".into())
        );
        assert_eq!(parse_side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(parse_side("/tmp/x"), Side::Host("/tmp/x".into()));
        assert_eq!(
            parse_side("web:"),
            Side::Container("web".into(), "/".into())
        );
    }
}
