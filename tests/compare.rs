//! The stage matrix matches the kernel, and the runner leaves the host as it found it.
//!
//! What the runner puts on the host is found precisely, so that another program using the
//! host at the same time cannot make these tests pass or fail: the marker file goes into a
//! TMPDIR of the test's own, the SysV segment is the one whose creator is the runner's pid,
//! and the leak check's mounts are named by the tokens in the matrix's evidence.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// These tests look at host-wide state (mounts, SysV segments, /tmp): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One `stagebox compare` run: its exit status must be 0.
struct Run {
    stdout: String,
    /// The runner's pid: the creator of the SysV segment it makes.
    pid: u32,
    /// The TMPDIR it was given (where its marker file goes).
    tmpdir: tempfile::TempDir,
}

fn compare(args: &[&str]) -> Run {
    let tmpdir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    let child = cmd(&all)
        .env("TMPDIR", tmpdir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start stagebox compare");
    let pid = child.id();
    let out = child.wait_with_output().expect("run stagebox compare");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stagebox {all:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        pid,
        tmpdir,
    }
}

fn matrix(args: &[&str]) -> (serde_json::Value, Run) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = compare(&all);
    let m = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    (m, run)
}

/// The matrix column with this label.
fn column<'a>(m: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no column {label}"))
}

/// The check's verdict in a column that ran; a column that was refused or failed fails.
fn verdict(m: &serde_json::Value, column_label: &str, check: &str) -> String {
    let col = column(m, column_label);
    assert!(
        col["refused"].is_null(),
        "{column_label} was refused: {col}"
    );
    assert!(col["error"].is_null(), "{column_label} failed: {col}");
    col["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .unwrap_or_else(|| panic!("no check {check} in {column_label}: {col}"))["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The SysV segments the runner (pid) created that still exist.
fn segments_made_by(pid: u32) -> Vec<String> {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(4) == Some(pid.to_string().as_str()))
        .map(str::to_string)
        .collect()
}

/// The tokens of the mount-leak checks, from the evidence (`stagebox-leak-TOKEN`).
fn leak_tokens(m: &serde_json::Value) -> Vec<String> {
    let mut tokens = Vec::new();
    for col in m["columns"].as_array().unwrap() {
        for c in col["checks"].as_array().into_iter().flatten() {
            if c["name"] == "mount_leak" {
                let ev = c["evidence"].as_str().unwrap_or_default();
                if let Some(rest) = ev.split("stagebox-leak-").nth(1) {
                    tokens.push(rest.chars().take(12).collect());
                }
            }
        }
    }
    tokens
}

/// Host mounts under the tests' state dir (overlays of the runner's containers).
fn state_mounts() -> Vec<String> {
    let state = state_dir().display().to_string();
    host_mounts()
        .into_iter()
        .filter(|m| m.starts_with(&state))
        .collect()
}

/// What the runner put on the host (marker, segment, leaked mount, its containers' mounts)
/// is gone again.
fn host_as_found(run: &Run, m: Option<&serde_json::Value>, state_mounts_before: &[String]) {
    let left: Vec<PathBuf> = tree(run.tmpdir.path());
    assert!(left.is_empty(), "left in the runner's TMPDIR: {left:?}");
    assert_eq!(segments_made_by(run.pid), Vec::<String>::new());
    assert_eq!(
        state_mounts(),
        state_mounts_before,
        "mounts under the state dir"
    );
    for token in m.map(leak_tokens).unwrap_or_default() {
        let dir = format!("/tmp/.stagebox-leak-{token}");
        assert!(!Path::new(&dir).exists(), "{dir} is left");
        let source = format!("stagebox-leak-{token}");
        let leaked: Vec<String> = host_mounts()
            .into_iter()
            .filter(|l| l.ends_with(&format!(" {source}")))
            .collect();
        assert!(leaked.is_empty(), "leaked mounts: {leaked:?}");
    }
}

#[test]
fn each_stage_off_leaks_what_it_protects_and_all_on_leaks_nothing() {
    if !root_or_skip("compare") {
        return;
    }
    let _g = serial();
    let mounts = state_mounts();
    let (m, run) = matrix(&[]);
    // Everything on: every check whose stage exists is isolated.
    let all = column(&m, "all");
    assert!(all["error"].is_null() && all["refused"].is_null(), "{all}");
    let checks = all["checks"].as_array().unwrap();
    assert!(checks.len() >= 10, "{all}");
    for c in checks {
        let stage_exists = c["stage"] == "exec"
            || stagebox::stages::registry::all()
                .iter()
                .any(|s| c["stage"] == s.info().id.name());
        let want = if stage_exists { "isolated" } else { "notyet" };
        assert_eq!(c["verdict"], want, "with every stage on: {c}");
    }
    assert_eq!(verdict(&m, "-pid", "host_processes"), "leaks");
    assert_eq!(verdict(&m, "-proc", "host_processes"), "leaks");
    assert_eq!(verdict(&m, "-uts", "hostname"), "leaks");
    assert_eq!(verdict(&m, "-net", "network"), "leaks");
    assert_eq!(verdict(&m, "-ipc", "sysv_ipc"), "leaks");
    assert_eq!(verdict(&m, "-uts", "network"), "isolated");
    // Root's powers: each confinement stage off gives back what it guards.
    assert_eq!(verdict(&m, "-devices", "host_disk"), "leaks");
    assert_eq!(verdict(&m, "-paths", "proc_sys"), "leaks");
    for row in [
        "dangerous_caps",
        "mount_fs",
        "kernel_log",
        "cgroup_limit",
        "open_by_handle",
    ] {
        assert_eq!(verdict(&m, "-caps", row), "leaks", "{row}");
        assert_eq!(verdict(&m, "-seccomp", row), "isolated", "{row}");
    }
    assert_eq!(verdict(&m, "-seccomp", "user_namespace"), "leaks");
    assert_eq!(verdict(&m, "-seccomp", "keyring"), "leaks");
    assert_eq!(verdict(&m, "-caps", "host_disk"), "isolated");
    // The runner held a descriptor open across every run: closed before each exec.
    for col in m["columns"].as_array().unwrap() {
        if col["refused"].is_null() && col["error"].is_null() {
            let label = col["label"].as_str().unwrap();
            assert_eq!(verdict(&m, label, "inherited_fd"), "isolated", "{label}");
        }
    }
    // chroot is escapable, pivot_root is not.
    assert_eq!(verdict(&m, "chroot", "chroot_escape"), "leaks");
    assert_eq!(verdict(&m, "all", "chroot_escape"), "isolated");
    // Refused combinations are shown, with the reason.
    let mount_off = column(&m, "-mount");
    assert!(
        mount_off["refused"]
            .as_str()
            .is_some_and(|r| r.contains("needs the mount stage")),
        "{mount_off}"
    );
    // And the host is as it was.
    host_as_found(&run, Some(&m), &mounts);
}

#[test]
fn build_up_shows_the_mount_leak_and_cleans_it_up() {
    if !root_or_skip("compare --build-up") {
        return;
    }
    let _g = serial();
    let mounts = state_mounts();
    let (m, run) = matrix(&["--build-up", "--stages", "uts,mount"]);
    let labels: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec!["none", "+uts", "+mount"]);
    assert_eq!(verdict(&m, "none", "hostname"), "leaks");
    assert_eq!(verdict(&m, "+uts", "hostname"), "isolated");
    // Without a mount namespace the probe's tmpfs was seen in the host's mount table...
    assert_eq!(verdict(&m, "+uts", "mount_leak"), "leaks");
    assert_eq!(verdict(&m, "+mount", "mount_leak"), "isolated");
    // ...and removed again.
    assert_eq!(leak_tokens(&m).len(), 3, "{m}");
    host_as_found(&run, Some(&m), &mounts);
}

#[test]
fn a_failing_probe_still_leaves_the_host_clean() {
    if !root_or_skip("compare cleanup") {
        return;
    }
    let _g = serial();
    let bad = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(bad.path().join("proc"), b"a file where /proc should be").unwrap();
    let mounts = state_mounts();
    let (m, run) = matrix(&[
        "--rootfs",
        &bad.path().display().to_string(),
        "--stages",
        "uts",
    ]);
    for label in ["all", "-uts"] {
        let col = column(&m, label);
        assert!(
            col["error"].as_str().is_some_and(|e| e.contains("proc")),
            "{col}"
        );
    }
    host_as_found(&run, Some(&m), &mounts);
}

#[test]
fn the_table_and_markdown_render() {
    if !root_or_skip("compare output") {
        return;
    }
    let _g = serial();
    // Only uts is switched off: no chroot column (that one comes with the pivot stage).
    let run = compare(&["--stages", "uts", "--markdown"]);
    let text = &run.stdout;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("| check | `all` | `-uts` |"), "{text}");
    assert_eq!(lines.next(), Some("|---|---|---|"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == "| shares the host's hostname (uts) | isolated | **LEAKS** |"),
        "{text}"
    );
    assert!(!text.contains("_error_"), "{text}");
    let run = compare(&["--stages", "uts"]);
    let text = &run.stdout;
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["check", "all", "-uts"], "{text}");
    let hostname = text
        .lines()
        .find(|l| l.starts_with("shares the host's hostname"))
        .unwrap_or_else(|| panic!("no hostname row: {text}"));
    assert!(
        hostname
            .split_whitespace()
            .rev()
            .take(2)
            .eq(["LEAKS", "isolated"]),
        "{hostname}"
    );
}
