//! Root filesystems on the host side: finding paths inside a rootfs without ever leaving it,
//! finding the command to run, and the default rootfs.

pub mod default;

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Resolves `path` (as the container would see it) inside `root`, following symlinks as if
/// `root` were `/`: an absolute link restarts at `root`, and `..` never climbs above it.
/// Returns the host path. A missing final component is allowed (the result is where it would
/// be); a missing directory in the middle is an error.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf> {
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
        let mut candidate = root.to_path_buf();
        candidate.extend(cur.iter());
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
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
            Ok(_) => cur.push(part),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && todo.is_empty() => cur.push(part),
            Err(e) => return Err(Error::io(format!("{}", candidate.display()), e)),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(cur.iter());
    Ok(out)
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
pub fn resolve_command(root: &Path, cmd: &str, path_var: &str) -> Result<String> {
    if cmd.is_empty() {
        return Err(Error::usage("the command to run is empty; give one after --"));
    }
    if cmd.contains('/') {
        let inside = if cmd.starts_with('/') {
            cmd.to_string()
        } else {
            format!("/{cmd}")
        };
        let host = resolve_in_root(root, Path::new(&inside))?;
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
        if let Ok(host) = resolve_in_root(root, Path::new(&inside)) {
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
        assert_eq!(resolve_in_root(root, Path::new("/link/passwd")).unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, Path::new("/up/passwd")).unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, Path::new("/../../x")).unwrap(), root.join("x"));
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
        std::fs::set_permissions(root.join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
        symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        assert_eq!(resolve_command(root, "sh", DEFAULT_PATH).unwrap(), "/bin/sh");
        let e = resolve_command(root, "nope", DEFAULT_PATH).unwrap_err();
        assert!(e.to_string().contains("\"nope\" was not found"), "{e}");
        assert!(resolve_command(root, "/bin/sh", DEFAULT_PATH).is_ok());
        assert!(resolve_command(root, "/bin/nope", DEFAULT_PATH).is_err());
    }
}
