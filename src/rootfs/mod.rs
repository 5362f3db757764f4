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
}
