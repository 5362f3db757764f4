//! Root filesystems on the host side: finding paths inside a rootfs without ever leaving it,
//! finding the command to run, and the default rootfs.
//!
//! - `default/`: the default rootfs, made once per state dir from busybox-static or host tools.
//! - `walk`: opening a path inside a rootfs from a descriptor, one component at a time
//!   (what the volumes stage mounts onto).
//! - `whiteout`: how overlayfs marks deletions and replaced directories in an upper layer.
//!
//! May import: `error`, `units`, `kernel`, `state`. Nothing here mounts: mounting is the
//! rootfs stage's job, inside the container's mount namespace.

pub mod default;
pub mod walk;
pub mod whiteout;

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Resolves `path` (as the container would see it) inside `root`, following symlinks as if
/// `root` were `/`: an absolute link restarts at `root`, and `..` never climbs above it.
/// Returns the host path. A missing final component is allowed (the result is where it would
/// be); a missing directory in the middle is an error.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    resolve_in_layers(std::slice::from_ref(&root.to_path_buf()), path)
}

/// Like `resolve_in_root`, on the merged view of overlay layers (topmost first), as overlayfs
/// will show them: the topmost layer that has an entry wins; a whiteout (character device
/// 0/0) or an opaque directory hides what the layers below have. Returns the host path in the
/// layer that has the file (or, when it is missing, where it would be in the top layer).
pub fn resolve_in_layers(layers: &[PathBuf], path: &Path) -> Result<PathBuf> {
    let inside = resolve_inside(layers, path)?;
    Ok(host_path(layers, &inside).unwrap_or_else(|| {
        let mut p = layers.first().cloned().unwrap_or_default();
        p.extend(inside.iter());
        p
    }))
}

/// The host path of the merged view's entry at `rel` (components under /), if it exists.
pub fn host_path(layers: &[PathBuf], rel: &[std::ffi::OsString]) -> Option<PathBuf> {
    for layer in layers {
        let mut p = layer.clone();
        p.extend(rel.iter());
        if let Ok(md) = std::fs::symlink_metadata(&p) {
            if crate::rootfs::whiteout::is_whiteout(&md) && layers.len() > 1 {
                return None;
            }
            return Some(p);
        }
        // Does this layer hide the layers below at `rel`? A whiteout or a non-directory on
        // the way, or an opaque directory, does.
        let mut q = layer.clone();
        for c in rel.iter().take(rel.len().saturating_sub(1)) {
            q.push(c);
            match std::fs::symlink_metadata(&q) {
                Ok(md) if !md.is_dir() => return None,
                Ok(_) if crate::rootfs::whiteout::is_opaque(&q) => return None,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    None
}

/// `path` resolved inside the merged layers, as components under the container's `/`.
pub fn resolve_inside(layers: &[PathBuf], path: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        cur.push(part);
        let Some(candidate) = host_path(layers, &cur) else {
            if todo.is_empty() {
                break;
            }
            let mut shown = PathBuf::from("/");
            shown.extend(cur.iter());
            return Err(Error::Path {
                path: path.to_path_buf(),
                message: format!("{} does not exist in the root filesystem", shown.display()),
            });
        };
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                cur.pop();
                links += 1;
                if links > 40 {
                    return Err(Error::Path {
                        path: path.to_path_buf(),
                        message: "too many levels of symbolic links inside the rootfs".into(),
                    });
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| Error::io(format!("readlink {}", candidate.display()), e))?;
                if target.is_absolute() {
                    cur.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => todo.push(s.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => {}
            Err(e) => return Err(Error::io(format!("{}", candidate.display()), e)),
        }
    }
    Ok(cur)
}

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds `cmd` as the container will: a path is taken as it is, a bare name is looked up in
/// PATH. Returns the path inside the container. Nothing is changed on the host.
pub fn resolve_command(layers: &[PathBuf], cmd: &str, path_var: &str) -> Result<String> {
    let root = layers
        .first()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new("/"));
    if cmd.is_empty() {
        return Err(Error::usage(
            "the command to run is empty; give one after --",
        ));
    }
    if cmd.contains('/') {
        let inside = if cmd.starts_with('/') {
            cmd.to_string()
        } else {
            format!("/{cmd}")
        };
        let host = resolve_in_layers(layers, Path::new(&inside))?;
        if is_executable_file(&host) {
            return Ok(cmd.to_string());
        }
        return Err(Error::usage(format!(
            "command {cmd:?} is not an executable file in the root filesystem {}; check the path inside the rootfs",
            root.display()
        )));
    }
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let inside = format!("{}/{cmd}", dir.trim_end_matches('/'));
        if let Ok(host) = resolve_in_layers(layers, Path::new(&inside)) {
            if is_executable_file(&host) {
                return Ok(inside);
            }
        }
    }
    Err(Error::usage(format!(
        "command {cmd:?} was not found in the root filesystem {} (PATH={path_var}); give a command that exists there, or a full path",
        root.display()
    )))
}

/// Why a command cannot be exec'd, in Docker's words, and the exit status Docker gives:
/// 127 for a command that is not there, 126 for one that is there but cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotRunnable {
    pub message: String,
    pub code: i32,
}

impl NotRunnable {
    /// A bare name found in no directory of PATH.
    pub fn not_in_path(cmd: &str) -> NotRunnable {
        NotRunnable {
            message: format!("exec: {cmd:?}: executable file not found in $PATH"),
            code: 127,
        }
    }

    /// What execve(2) (or a stat before it) said about `cmd`, as Docker says it.
    pub fn from_errno(cmd: &str, e: nix::errno::Errno) -> NotRunnable {
        use nix::errno::Errno;
        match e {
            Errno::ENOENT | Errno::ENOTDIR => NotRunnable {
                message: format!("exec: {cmd:?}: stat {cmd}: no such file or directory"),
                code: 127,
            },
            Errno::EACCES | Errno::EPERM => NotRunnable {
                message: format!("exec: {cmd:?}: permission denied"),
                code: 126,
            },
            Errno::EISDIR => NotRunnable {
                message: format!("exec: {cmd:?}: is a directory"),
                code: 126,
            },
            other => NotRunnable {
                message: format!("exec: {cmd:?}: {}", other.desc().to_lowercase()),
                code: 126,
            },
        }
    }
}

/// Finds `cmd` the way execvp(3) and Docker's runtime do, in this process's own root: called
/// inside the container after the root switch, with the volumes mounted, so `/v/hello.sh` on
/// a volume is found. A path (with a `/`) is taken as it is (relative to `cwd`); a bare name
/// is looked up in the directories of `path_var`, the first regular file with an execute bit
/// winning. Returns the path to exec.
pub fn lookup_command(
    cmd: &str,
    path_var: &str,
    cwd: Option<&Path>,
) -> std::result::Result<String, NotRunnable> {
    use std::os::unix::fs::PermissionsExt;
    if cmd.contains('/') {
        let p = match cwd {
            Some(c) if !cmd.starts_with('/') => c.join(cmd),
            _ => PathBuf::from(cmd),
        };
        let md = std::fs::metadata(&p).map_err(|e| {
            NotRunnable::from_errno(
                cmd,
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)),
            )
        })?;
        if md.is_dir() {
            return Err(NotRunnable::from_errno(cmd, nix::errno::Errno::EISDIR));
        }
        if nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_err()
            || md.permissions().mode() & 0o111 == 0
        {
            return Err(NotRunnable::from_errno(cmd, nix::errno::Errno::EACCES));
        }
        return Ok(cmd.to_string());
    }
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{cmd}", dir.trim_end_matches('/'));
        if let Ok(md) = std::fs::metadata(&candidate) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(NotRunnable::not_in_path(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("link")).unwrap();
        symlink("../../../../etc", root.join("up")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/link/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/up/passwd")).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let d = tempfile::tempdir().unwrap();
        symlink("/a", d.path().join("a")).unwrap();
        assert!(resolve_in_root(d.path(), Path::new("/a/b")).is_err());
    }

    #[test]
    fn commands_are_found_in_path_through_links() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), b"x").unwrap();
        std::fs::set_permissions(
            root.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        let root = &[root.to_path_buf()];
        assert_eq!(
            resolve_command(root, "sh", DEFAULT_PATH).unwrap(),
            "/bin/sh"
        );
        let e = resolve_command(root, "nope", DEFAULT_PATH).unwrap_err();
        assert!(e.to_string().contains("\"nope\" was not found"), "{e}");
        assert!(resolve_command(root, "/bin/sh", DEFAULT_PATH).is_ok());
        assert!(resolve_command(root, "/bin/nope", DEFAULT_PATH).is_err());
    }

    #[test]
    fn lookup_says_what_docker_says() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let x = d.path().join("x");
        std::fs::write(&x, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o755)).unwrap();
        let n = d.path().join("n");
        std::fs::write(&n, b"").unwrap();
        std::fs::set_permissions(&n, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dir = d.path().to_str().unwrap();
        assert_eq!(lookup_command("x", dir, None).unwrap(), format!("{dir}/x"));
        let e = lookup_command("n", dir, None).unwrap_err();
        assert_eq!(e.code, 127);
        assert_eq!(e.message, "exec: \"n\": executable file not found in $PATH");
        let e = lookup_command(n.to_str().unwrap(), dir, None).unwrap_err();
        assert_eq!(e.code, 126, "{e}");
        assert!(e.message.ends_with("permission denied"), "{e}");
        let e = lookup_command("/no/such/x", dir, None).unwrap_err();
        assert_eq!(e.code, 127);
        assert_eq!(
            e.message,
            "exec: \"/no/such/x\": stat /no/such/x: no such file or directory"
        );
        assert_eq!(lookup_command("./x", "", Some(d.path())).unwrap(), "./x");
    }
}
