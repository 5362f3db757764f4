//! Opening a path inside a rootfs one component at a time, from a descriptor on the rootfs, so
//! that nothing the container controls can lead the walk outside it.
//!
//! A path string is looked up again by the kernel every time it is used. Resolve
//! `ROOTFS/data/x` safely once, then `mkdir` or `mount` it by name, and a process that can
//! rename things under `ROOTFS/data` (another container sharing a volume there, a second
//! run's workload) can swap `data` for a symlink to a host directory in between: the
//! `mkdir` then lands on the host (runc's CVE-2021-30465 used exactly this race with
//! `renameat2(RENAME_EXCHANGE)`).
//!
//! Here every component is opened with `openat(dirfd, name, O_PATH|O_NOFOLLOW)` from the
//! descriptor of the one before it. A symlink is never followed by the kernel: its target is
//! read (`readlinkat(fd, "")`) and walked the same way, an absolute one from the rootfs's
//! descriptor and `..` by going back one descriptor, never above the rootfs, as if the rootfs
//! were `/` (`openat2` with `RESOLVE_IN_ROOT` does the same in the kernel since Linux 5.6; the
//! walk by hand works everywhere and creates the missing parts on the way). A missing part is
//! made with `mkdirat(dirfd, name)` and then opened with `O_NOFOLLOW|O_DIRECTORY`, so a symlink
//! swapped in after the `mkdirat` is refused rather than followed. What comes back is a
//! descriptor: mount onto `/proc/self/fd/N` and the mount lands on that very directory,
//! whatever the names are by then.
//!
//! Nothing here mounts; the volumes stage does.

use crate::error::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// What to make when a part of the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    /// Nothing: a missing part is an error.
    Nothing,
    /// Directories, the last one included (`mkdir -p`).
    Dir,
    /// Directories on the way, and an empty file at the end.
    File,
}

/// A path opened inside a rootfs.
#[derive(Debug)]
pub struct Opened {
    /// An `O_PATH` descriptor on what the path names.
    pub fd: OwnedFd,
    /// Where that is inside the rootfs, with every symlink resolved (`/etc/x` for `/data/x`
    /// when the image has `/data -> /etc`).
    pub inside: PathBuf,
    /// What the walk created, inside the rootfs, in the order it made them.
    pub made: Vec<PathBuf>,
}

fn shown(names: &[OsString]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(names);
    p
}

fn o_path(dir: BorrowedFd<'_>, name: &OsString, extra: OFlag) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name.as_os_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | extra,
        Mode::empty(),
    )
}

/// Opens `path` (as the container will see it) inside the rootfs `root` is a descriptor on,
/// making what is missing as `make` says. Every symlink on the way is resolved inside the
/// rootfs; nothing is ever followed, created or opened outside it.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, make: Make) -> Result<Opened> {
    let fail = |names: &[OsString], what: String| Error::Path {
        path: path.to_path_buf(),
        message: format!("{}: {what}", shown(names).display()),
    };
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    // The directories opened so far below the root, with their names.
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut names: Vec<OsString> = Vec::new();
    let mut made = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            fds.pop();
            names.pop();
            continue;
        }
        let last = todo.is_empty();
        let dir = fds.last().map(|f| f.as_fd()).unwrap_or(root);
        names.push(part.clone());
        let fd = match o_path(dir, &part, OFlag::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if make != Make::Nothing => {
                if last && make == Make::File {
                    let created = openat(
                        dir,
                        part.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    );
                    match created {
                        Ok(_) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fail(&names, format!("cannot create the file: {e}"))),
                    }
                    made.push(shown(&names));
                    o_path(dir, &part, OFlag::empty())
                        .map_err(|e| fail(&names, format!("cannot open what was made: {e}")))?
                } else {
                    match mkdirat(dir, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(fail(&names, format!("cannot make the directory: {e}")))
                        }
                    }
                    made.push(shown(&names));
                    // O_DIRECTORY with O_NOFOLLOW: a symlink put there since is refused.
                    o_path(dir, &part, OFlag::O_DIRECTORY).map_err(|e| {
                        fail(
                            &names,
                            format!("is no longer the directory just made ({e}); refusing"),
                        )
                    })?
                }
            }
            Err(Errno::ENOENT) => {
                return Err(fail(&names, "does not exist in the root filesystem".into()))
            }
            Err(e) => return Err(fail(&names, format!("cannot open: {e}"))),
        };
        let st = fstat(&fd).map_err(|e| fail(&names, format!("fstat: {e}")))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFLNK {
            links += 1;
            if links > 40 {
                return Err(fail(
                    &names,
                    "too many levels of symbolic links inside the rootfs".into(),
                ));
            }
            let target = readlinkat(&fd, "").map_err(|e| fail(&names, format!("readlink: {e}")))?;
            names.pop();
            let target = PathBuf::from(target);
            if target.is_absolute() {
                fds.clear();
                names.clear();
            }
            push_components(&mut todo, &target);
            continue;
        }
        if kind != SFlag::S_IFDIR && !last {
            return Err(fail(&names, "is not a directory".into()));
        }
        fds.push(fd);
    }
    let fd = match fds.pop() {
        Some(fd) => fd,
        None => root
            .try_clone_to_owned()
            .map_err(|e| Error::io("dup the rootfs descriptor", e))?,
    };
    Ok(Opened {
        fd,
        inside: shown(&names),
        made,
    })
}

/// Pushes `path`'s parts onto the stack `todo` so that the first part is popped first.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(s) => todo.push(s.to_os_string()),
            Component::ParentDir => todo.push("..".into()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;

    fn root_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_missing_parts_are_made_there() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("data")).unwrap();
        symlink("../../../../../etc", root.join("up")).unwrap();
        // An absolute link to a real host directory: inside the root it means ROOT/<that>.
        symlink(outside.path(), root.join("host")).unwrap();
        let r = root_fd(&root);
        let o = open_in_root(r.as_fd(), Path::new("/data/x"), Make::Dir).unwrap();
        assert_eq!(o.inside, Path::new("/etc/x"));
        assert_eq!(real(&o.fd), root.join("etc/x"));
        assert_eq!(o.made, vec![PathBuf::from("/etc/x")]);
        let o = open_in_root(r.as_fd(), Path::new("/up/y"), Make::File).unwrap();
        assert_eq!(real(&o.fd), root.join("etc/y"));
        assert!(root.join("etc/y").is_file());
        let o = open_in_root(r.as_fd(), Path::new("/host/a/b"), Make::Dir).unwrap();
        let mut want = root.clone();
        want.extend(outside.path().strip_prefix("/").unwrap());
        assert_eq!(real(&o.fd), want.join("a/b"));
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "the host directory the link names got something"
        );
        // Without Make, a missing part is an error, and nothing is made.
        let e = open_in_root(r.as_fd(), Path::new("/nope/z"), Make::Nothing).unwrap_err();
        assert!(e.to_string().contains("/nope"), "{e}");
        assert!(!root.join("nope").exists());
        // `/` itself and `..` above it are the root.
        let o = open_in_root(r.as_fd(), Path::new("/../.."), Make::Nothing).unwrap();
        assert_eq!(real(&o.fd), root);
        // A file on the way is not a directory.
        let e = open_in_root(r.as_fd(), Path::new("/etc/y/z"), Make::Dir).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn a_symlink_loop_is_refused() {
        let d = tempfile::tempdir().unwrap();
        symlink("/b", d.path().join("a")).unwrap();
        symlink("/a", d.path().join("b")).unwrap();
        let r = root_fd(d.path());
        let e = open_in_root(r.as_fd(), Path::new("/a/x"), Make::Dir).unwrap_err();
        assert!(e.to_string().contains("too many levels"), "{e}");
    }
}
