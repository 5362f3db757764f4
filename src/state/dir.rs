//! Where the state lives.

use std::path::PathBuf;

/// The state root: STAGEBOX_STATE, else /var/lib/stagebox as root, else
/// $XDG_DATA_HOME/stagebox (or ~/.local/share/stagebox).
pub fn default_state_dir() -> PathBuf {
    if let Some(s) = std::env::var_os("STAGEBOX_STATE").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/stagebox");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(x).join("stagebox");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/stagebox")
}
