//! What to run: the command, its root filesystem, the stage toggles and the trace format.

use crate::plan::Plan;
use crate::rootfs::default::Source;
use crate::trace::TraceMode;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// argv of the workload (empty with `probe`).
    pub command: Vec<String>,
    /// `--rootfs DIR`; None means the default rootfs.
    pub rootfs: Option<PathBuf>,
    pub default_source: Source,
    pub hostname: Option<String>,
    pub plan: Plan,
    /// Run stagebox's own `probe` inside instead of a command, with these extra arguments.
    pub probe: Option<Vec<String>>,
    pub state_dir: PathBuf,
    /// Extra environment, KEY=VALUE.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub trace: TraceMode,
    /// `--name`; default `box-<short id>`.
    pub name: Option<String>,
    /// `--rm`: remove the container (and its anonymous volumes) when it exits.
    pub remove: bool,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
    /// `-v` arguments, parsed and checked.
    pub volumes: Vec<crate::volume::VolumeSpec>,
    /// Resource limits for the cgroup stage (`-m`, `--cpus`, `--pids-limit` ...), parsed and
    /// checked already.
    pub limits: crate::cgroup::Limits,
    /// The image to run (its layers, command, env, workdir, user), `--entrypoint`, `--user`.
    pub image: crate::image::run::RunImage,
}

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

/// A hostname the kernel accepts: 1 to 64 bytes, no '/', no NUL, no whitespace.
pub fn check_hostname(name: &str) -> Result<(), crate::Error> {
    if name.is_empty()
        || name.len() > 64
        || name.contains(['/', '\0'])
        || name.contains(char::is_whitespace)
    {
        return Err(crate::Error::usage(format!(
            "--hostname {name:?} is not a valid hostname; use 1 to 64 letters, digits, dots or dashes"
        )));
    }
    Ok(())
}

/// 12 random hex digits from the kernel's random pool.
pub fn new_id() -> String {
    let mut buf = [0u8; 6];
    // SAFETY: getrandom(2) writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < buf.len() as isize {
        // Practically never: fall back to time and pid, still unique enough for a name.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!(
            "{:012x}",
            (t ^ std::process::id() as u128) & 0xffff_ffff_ffff
        );
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
