//! Where the state lives, and who may enter it.
//!
//! The state directory holds every container's writable layer (`containers/ID/upper`), the
//! image layers and the volumes: files a container wrote, or an image brought, owned by root
//! and possibly setuid. If another host user could reach them, a `chmod 4755` inside a
//! container would hand that user a root shell on the host. So the state directory is 0700
//! (Docker makes its root 0711 and the directories below 0710 for the same reason), and so
//! are `containers/`, `layers/`, `images/`, `volumes/` and `rootfs/` and each container's own
//! directory. Nothing outside needs to enter: the container runs as root while it is set up,
//! and after the root switch its paths start at its own root, not at the host's.
//!
//! What must stay as it is: the directories a container sees as its own (an overlay's
//! `upper/` gives the container's `/` its mode, a volume's `_data/` the volume's), so
//! `--user` workloads can still enter them.

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The mode of the state directory and of the directories in it that only root may enter.
pub const PRIVATE_MODE: u32 = 0o700;

/// The directories directly in the state directory that [`secure`] closes when it finds
/// them open.
pub const PRIVATE_SUBDIRS: [&str; 5] = ["containers", "layers", "images", "volumes", "rootfs"];

/// True when a directory's mode lets anyone but its owner (and its group's traverse bit,
/// Docker's 0710) in.
pub fn too_open(mode: u32) -> bool {
    mode & 0o067 != 0
}

/// Closes `dir` to everyone but its owner when its mode is too open; does nothing to a
/// symlink or something that is not there.
fn close(dir: &Path) -> Result<()> {
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if !md.is_dir() || !too_open(md.mode()) {
        return Ok(());
    }
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && md.uid() != euid.as_raw() {
        // Not ours to change (and not ours to use either: the command fails on its own).
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_MODE))
        .map_err(|e| Error::io(format!("chmod 0700 {}", dir.display()), e))
}

/// Makes `dir` a directory only its owner may enter (missing parents are made with the usual
/// mode); an existing one that is open to others is closed.
pub fn create_private(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    match std::fs::DirBuilder::new().mode(PRIVATE_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
    }
    close(dir)
}

/// At the start of a command that uses the state directory: closes it, the directories
/// [`PRIVATE_SUBDIRS`] names and every container's directory, when an older stagebox (or a
/// `mkdir`) left them open to other users. With `create`, a missing state directory is made
/// 0700 first; that is best effort (the command reports its own error if it needs it and
/// cannot make it, for example "needs root").
///
/// A directory shared with other users (`/`, or sticky or world-writable like /tmp) is
/// refused: closing it would break the host, and leaving it open would leak the layers.
pub fn secure(state: &Path, create: bool) -> Result<()> {
    if create && !state.exists() {
        let _ = create_private(state);
    }
    let Ok(md) = std::fs::metadata(state) else {
        return Ok(());
    };
    let shared = md.mode() & 0o1002 != 0;
    if shared || state.parent().is_none() {
        return Err(Error::usage(format!(
            "the state directory {} is shared with other users (mode {:04o}); point STAGEBOX_STATE or --state at a directory of its own",
            state.display(),
            md.mode() & 0o7777
        )));
    }
    if !md.is_dir() {
        return Ok(());
    }
    let euid = nix::unistd::geteuid();
    if too_open(md.mode()) && (euid.is_root() || md.uid() == euid.as_raw()) {
        std::fs::set_permissions(state, std::fs::Permissions::from_mode(PRIVATE_MODE))
            .map_err(|e| Error::io(format!("chmod 0700 {}", state.display()), e))?;
    }
    for sub in PRIVATE_SUBDIRS {
        close(&state.join(sub))?;
    }
    if let Ok(rd) = std::fs::read_dir(state.join("containers")) {
        for e in rd.flatten() {
            close(&e.path())?;
        }
    }
    Ok(())
}

/// Removes a directory tree (a container's directory). Overlayfs makes its `work/work`
/// directory mode 0000: root removes it anyway, but an ordinary user (a rootless run) may not
/// list it, so on "permission denied" the directories this user owns get their owner's
/// rwx back, and the removal is tried again.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_own_dirs(dir, nix::unistd::geteuid().as_raw());
            std::fs::remove_dir_all(dir)
        }
        r => r,
    }
}

/// Gives every directory under `dir` (itself included) that `uid` owns the mode bits u+rwx;
/// symlinks are not followed.
fn open_own_dirs(dir: &Path, uid: u32) {
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !md.is_dir() {
        return;
    }
    if md.uid() == uid && md.mode() & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode(md.mode() & 0o7777 | 0o700),
        );
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                open_own_dirs(&e.path(), uid);
            }
        }
    }
}

/// The state root of root when STAGEBOX_STATE is not set.
pub const ROOT_DEFAULT: &str = "/var/lib/stagebox";

/// The state root: STAGEBOX_STATE, else /var/lib/stagebox as root, else
/// $XDG_DATA_HOME/stagebox (or ~/.local/share/stagebox).
pub fn default_state_dir() -> PathBuf {
    if let Some(s) = std::env::var_os("STAGEBOX_STATE").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from(ROOT_DEFAULT);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("stagebox");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/stagebox")
}

/// The name of the cgroup directory that holds the containers of this state directory, in
/// every hierarchy: `stagebox` for the default one ([`ROOT_DEFAULT`]), and `stagebox-` with the
/// first 8 hex digits of the SHA-256 of the canonical path for any other. Two state
/// directories (two installs, two test runs) therefore never see each other's cgroups.
pub fn cgroup_parent(state_dir: &Path) -> String {
    use sha2::{Digest as _, Sha256};
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let dir = canonical(state_dir);
    if dir == canonical(Path::new(ROOT_DEFAULT)) {
        return "stagebox".into();
    }
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("stagebox-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn secure_closes_an_open_state_dir_and_leaves_what_containers_see() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        for sub in ["containers/abc/upper", "layers/x", "volumes/v/_data"] {
            std::fs::create_dir_all(state.join(sub)).unwrap();
        }
        let open = std::fs::Permissions::from_mode(0o755);
        for p in [&state, &state.join("containers"), &state.join("layers")] {
            std::fs::set_permissions(p, open.clone()).unwrap();
        }
        secure(&state, false).unwrap();
        for p in ["", "containers", "containers/abc", "layers", "volumes"] {
            assert_eq!(mode(&state.join(p)), 0o700, "{p}");
        }
        // What the container sees as its / and its volume keeps its mode.
        assert_eq!(mode(&state.join("containers/abc/upper")), 0o755);
        assert_eq!(mode(&state.join("volumes/v/_data")), 0o755);
        assert_eq!(mode(&state.join("layers/x")), 0o755);
        // 0710 (Docker's group traverse bit) is left alone.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o710)).unwrap();
        secure(&state, false).unwrap();
        assert_eq!(mode(&state), 0o710);
    }

    #[test]
    fn secure_makes_a_missing_state_dir_private_and_refuses_a_shared_one() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("a/state");
        secure(&state, false).unwrap();
        assert!(!state.exists(), "without create nothing is made");
        secure(&state, true).unwrap();
        assert_eq!(mode(&state), 0o700);
        let shared = d.path().join("tmp");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = secure(&shared, true).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        assert!(e.to_string().contains("shared with other users"), "{e}");
        assert_eq!(mode(&shared), 0o1777, "a shared directory is left as it is");
        assert!(secure(Path::new("/"), false).is_err());
    }

    #[test]
    fn remove_tree_opens_a_mode_0000_directory_of_its_own_first() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("c");
        std::fs::create_dir_all(c.join("work/work/inner")).unwrap();
        std::fs::write(c.join("work/work/inner/f"), "x").unwrap();
        std::fs::set_permissions(
            c.join("work/work/inner"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        std::fs::set_permissions(c.join("work/work"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        remove_tree(&c).unwrap();
        assert!(!c.exists());
        assert!(
            remove_tree(&c).is_err(),
            "a missing tree is an error, as remove_dir_all's"
        );
    }

    #[test]
    fn the_default_state_keeps_the_plain_parent_and_others_get_their_own() {
        assert_eq!(cgroup_parent(Path::new(ROOT_DEFAULT)), "stagebox");
        let a = cgroup_parent(Path::new("/nonexistent/state-a"));
        let b = cgroup_parent(Path::new("/nonexistent/state-b"));
        assert_ne!(a, b);
        for p in [&a, &b] {
            let hex = p.strip_prefix("stagebox-").unwrap_or_default();
            assert_eq!(hex.len(), 8, "{p}");
            assert!(hex.chars().all(|c| c.is_ascii_hexdigit()), "{p}");
        }
        // The same directory by another spelling is the same parent.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        assert_eq!(
            cgroup_parent(d.path()),
            cgroup_parent(&d.path().join("sub/.."))
        );
    }
}
