//! What a check found, shared by the isolation checks (`checks.rs`) and the confinement
//! checks (`powers.rs`): the runner's host facts, the verdict, and how a verdict is made.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the runner prepared on the host and what it knows about the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostFacts {
    /// A file that exists only on the host.
    pub marker: PathBuf,
    /// A pid that exists only on the host (the runner's own).
    pub host_pid: i32,
    pub host_hostname: String,
    pub host_interfaces: Vec<String>,
    /// The host's network namespace (readlink /proc/self/ns/net of the runner): a container on
    /// a bridge has an `eth0` too, so names alone do not tell.
    #[serde(default)]
    pub host_net_ns: String,
    /// A System V shared memory segment id made on the host.
    pub shm_id: i32,
    /// The mount-leak check mounts a tmpfs named `stagebox-leak-TOKEN` on LEAK_DIR.
    pub leak_token: String,
    pub leak_dir: PathBuf,
    /// Whether the runner asked for memory and pid limits (the cgroup stage is on).
    pub limits_expected: bool,
    /// The host's cgroup namespace (readlink /proc/self/ns/cgroup of the runner).
    #[serde(default)]
    pub host_cgroup_ns: String,
    /// The device (major, minor) that holds the host's / (the host-disk check mknods it).
    #[serde(default)]
    pub root_dev: Option<(u64, u64)>,
    /// A descriptor the runner left open on the marker's directory, across `stagebox run`.
    #[serde(default)]
    pub inherited_fd: Option<i32>,
    /// A file only the host's root may write, reached through a descriptor the runner passes
    /// on purpose (`--preserve-fds`), as a volume or a leaked descriptor would reach it.
    #[serde(default)]
    pub root_marker: Option<FdMarker>,
    /// The runner's effective uid on the host.
    #[serde(default)]
    pub runner_uid: Option<u32>,
}

/// A file `name` in the directory open as descriptor `fd`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdMarker {
    pub fd: i32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Isolated,
    Leaks,
    /// The stage that would isolate this is not in this version of stagebox.
    NotYet,
    /// It leaks because the stage that isolates it needs root on this host, and the runner
    /// is not root (`stagebox compare` as an ordinary user).
    #[serde(rename = "needs_root")]
    NeedsRoot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationCheck {
    pub name: String,
    /// The question, in words.
    pub question: String,
    /// The stage that isolates this.
    pub stage: String,
    pub verdict: Verdict,
    pub evidence: String,
}

/// A check's result, with its question and stage from `table`. When the stage that would
/// stop a leak is not in this build, the verdict is "not yet". The stage "exec" is the
/// runtime's last step (closing descriptors), always there.
pub fn check_in(
    table: &[(&str, &str, &str)],
    name: &str,
    leaks: bool,
    evidence: String,
) -> IsolationCheck {
    let (question, stage) = table
        .iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1, c.2))
        .unwrap_or(("", ""));
    let available = stage == "exec"
        || stage
            .parse::<crate::stages::StageId>()
            .ok()
            .and_then(crate::stages::registry::get)
            .is_some();
    let verdict = if leaks && !available {
        Verdict::NotYet
    } else if leaks {
        Verdict::Leaks
    } else {
        Verdict::Isolated
    };
    let evidence = if verdict == Verdict::NotYet {
        format!("{evidence} (the {stage} stage is not in this version yet)")
    } else {
        evidence
    };
    IsolationCheck {
        name: name.into(),
        question: question.into(),
        stage: stage.into(),
        verdict,
        evidence,
    }
}
