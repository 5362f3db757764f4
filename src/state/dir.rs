//! Where the state lives.

use std::path::{Path, PathBuf};

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
