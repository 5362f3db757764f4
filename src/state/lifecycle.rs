//! What a container record keeps about a container's life beyond one run: whether it ran
//! detached (with a monitor, see `runtime::monitor`), the `run` arguments that `start` runs
//! again, how it is stopped (`StopSignal`, `--stop-timeout`), its restart policy and count,
//! and the files its monitor keeps in the container's directory:
//!
//! - `ID-json.log`: the workload's output in Docker's json-file format (`state::logs`);
//! - `monitor.log`: the monitor's own trace once the workload runs;
//! - `attach.sock`: the monitor's socket for `attach`, while the workload runs;
//! - `stopping`: a marker `stop` writes before it signals, so the monitor does not restart
//!   a container someone stopped on purpose (a run removes it when it starts).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LifecycleRecord {
    /// Ran with `-d`: a monitor holds it, its output is in the json-file log.
    #[serde(default)]
    pub detached: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub interactive: bool,
    /// The arguments after `run` (what `start` parses again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_args: Vec<String>,
    /// The signal `stop` sends first: `--stop-signal`, else the image's `StopSignal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL when `-t` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// `--restart` as given (`no`, `on-failure:3`, `always`, `unless-stopped`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart: String,
    /// How many times the monitor restarted it.
    #[serde(default)]
    pub restart_count: u32,
}

/// The workload's json-file log: STATE/containers/ID/ID-json.log.
pub fn log_path(container_dir: &Path, id: &str) -> PathBuf {
    container_dir.join(format!("{id}-json.log"))
}

/// The monitor's own output once the workload runs.
pub fn monitor_log_path(container_dir: &Path) -> PathBuf {
    container_dir.join("monitor.log")
}

/// Where the monitor listens for `attach` while the workload runs.
pub fn attach_socket_path(container_dir: &Path) -> PathBuf {
    container_dir.join("attach.sock")
}

fn stopping_path(container_dir: &Path) -> PathBuf {
    container_dir.join("stopping")
}

/// `stop` (and `kill` with SIGKILL) say: do not restart this one.
pub fn mark_stopping(container_dir: &Path) -> std::io::Result<()> {
    std::fs::write(stopping_path(container_dir), b"")
}

pub fn is_stopping(container_dir: &Path) -> bool {
    stopping_path(container_dir).exists()
}

pub fn clear_stopping(container_dir: &Path) {
    let _ = std::fs::remove_file(stopping_path(container_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stopping_marker_comes_and_goes() {
        let d = tempfile::tempdir().unwrap();
        assert!(!is_stopping(d.path()));
        mark_stopping(d.path()).unwrap();
        assert!(is_stopping(d.path()));
        clear_stopping(d.path());
        assert!(!is_stopping(d.path()));
        assert_eq!(
            log_path(d.path(), "abc").file_name().unwrap(),
            "abc-json.log"
        );
    }
}
