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
    /// The TMPDIR it was given (where its marker files go).
    tmpdir: PathBuf,
    /// Removed when the run is dropped.
    _dir: tempfile::TempDir,
}

fn compare(args: &[&str]) -> Run {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmpdir = dir.path().to_path_buf();
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    let mut c = cmd(&all);
    c.env("TMPDIR", &tmpdir);
    finish(c, &all, tmpdir, dir)
}

/// Starts `c` (a `stagebox compare`) and waits for it: it must exit 0.
fn finish(
    mut c: std::process::Command,
    all: &[&str],
    tmpdir: PathBuf,
    dir: tempfile::TempDir,
) -> Run {
    let child = c
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
        _dir: dir,
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
    let left: Vec<PathBuf> = tree(&run.tmpdir);
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
    // Every stage on by default: every check whose stage exists is isolated, except that the
    // container's root is the host's root (the user stage is off by default as root).
    let all = column(&m, "all");
    assert!(all["error"].is_null() && all["refused"].is_null(), "{all}");
    let checks = all["checks"].as_array().unwrap();
    assert!(checks.len() >= 10, "{all}");
    for c in checks {
        let stage_exists = c["stage"] == "exec"
            || stagebox::stages::registry::all()
                .iter()
                .any(|s| c["stage"] == s.info().id.name());
        let want = match () {
            _ if c["name"] == "host_root" => "leaks",
            _ if stage_exists => "isolated",
            _ => "notyet",
        };
        assert_eq!(c["verdict"], want, "with every stage on by default: {c}");
    }
    // The user stage is added, not switched off: the last column, where nothing leaks.
    let labels: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.last(), Some(&"+user"), "{labels:?}");
    assert!(!labels.contains(&"-user"), "{labels:?}");
    let user = column(&m, "+user");
    assert!(
        user["note"]
            .as_str()
            .is_some_and(|n| n.contains("--userns auto")),
        "{user}"
    );
    for c in user["checks"].as_array().unwrap() {
        assert_eq!(c["verdict"], "isolated", "with the user stage on too: {c}");
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

/// The evidence of a check in a column.
fn evidence(m: &serde_json::Value, column_label: &str, check: &str) -> String {
    column(m, column_label)["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .unwrap_or_else(|| panic!("no check {check} in {column_label}"))["evidence"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = text.split(prefix).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The `stagebox` range of /etc/subuid, as (first id, count).
fn stagebox_subuids() -> (u64, u64) {
    let text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == "stagebox").then_some(())?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no stagebox entry in /etc/subuid: {text}"))
}

#[test]
fn the_user_stage_makes_the_containers_root_an_unprivileged_host_uid() {
    if !root_or_skip("compare with the user stage") {
        return;
    }
    let _g = serial();
    let mounts = state_mounts();
    let (m, run) = matrix(&["--stages", "uts,user"]);
    let labels: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["all", "-uts", "+user"]);
    // Without the user stage: uid 0 inside is uid 0 outside, and it may write a file only
    // the host's root may write (the host saw the write; the content stayed the same).
    for label in ["all", "-uts"] {
        assert_eq!(verdict(&m, label, "host_root"), "leaks", "{label}");
        let ev = evidence(&m, label, "host_root");
        assert_eq!(number_after(&ev, "here is host uid "), Some(0), "{ev}");
        assert!(
            ev.contains("for writing and wrote back")
                && ev.contains("was written (its mtime changed) and its content is the same"),
            "{ev}"
        );
    }
    // With it: uid 0 inside is a uid of the stagebox range, and the write is refused.
    assert_eq!(verdict(&m, "+user", "host_root"), "isolated");
    let ev = evidence(&m, "+user", "host_root");
    let (first, count) = stagebox_subuids();
    let host = number_after(&ev, "here is host uid ").unwrap_or_else(|| panic!("{ev}"));
    assert!(
        host >= first && host < first + count,
        "{host} not in {first}+{count}: {ev}"
    );
    assert!(
        ev.contains("shows as owned by uid 65534 here")
            && ev.contains("Permission denied")
            && ev.contains("was not written"),
        "{ev}"
    );
    assert_eq!(verdict(&m, "+user", "hostname"), "isolated");
    host_as_found(&run, Some(&m), &mounts);
}

#[test]
fn build_up_adds_the_user_stage_last_and_the_host_root_row_flips() {
    if !root_or_skip("compare --build-up with the user stage") {
        return;
    }
    let _g = serial();
    let mounts = state_mounts();
    let (m, run) = matrix(&["--build-up", "--stages", "user,uts"]);
    let labels: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["none", "+uts", "+user"]);
    assert_eq!(verdict(&m, "none", "host_root"), "leaks");
    assert_eq!(verdict(&m, "+uts", "host_root"), "leaks");
    assert_eq!(verdict(&m, "+user", "host_root"), "isolated");
    let user = column(&m, "+user");
    assert_eq!(user["stages"], serde_json::json!(["user", "uts"]), "{user}");
    assert!(
        user["note"]
            .as_str()
            .is_some_and(|n| n.contains("added last")),
        "{user}"
    );
    // The table says why.
    let text = compare(&["--build-up", "--stages", "user"]).stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("+user: the user stage comes first in the pipeline")),
        "{text}"
    );
    host_as_found(&run, Some(&m), &mounts);
}

/// `stagebox compare --json ARGS` as nobody (65534), with a home and a TMPDIR of its own;
/// None when setpriv cannot drop to nobody here.
fn matrix_as_nobody(args: &[&str]) -> Option<(serde_json::Value, Run)> {
    let setpriv = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let works = std::process::Command::new("setpriv")
        .args(setpriv)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        if std::env::var("STAGEBOX_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!(
                "setpriv cannot drop to nobody here, and STAGEBOX_REQUIRE_ROOT=1 forbids skipping"
            );
        }
        eprintln!("SKIP compare as nobody: setpriv cannot drop to nobody here");
        return None;
    }
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmpdir = home.path().join("tmp");
    std::fs::create_dir(&tmpdir).unwrap();
    for p in [home.path(), &tmpdir] {
        nix::unistd::chown(p, Some(65534.into()), Some(65534.into())).unwrap();
    }
    let mut all = vec!["compare", "--json"];
    all.extend_from_slice(args);
    let mut c = std::process::Command::new("setpriv");
    c.args(setpriv)
        .arg(bin())
        .args(&all)
        .env("HOME", home.path())
        .env("TMPDIR", &tmpdir)
        .env("NO_COLOR", "1")
        .env_remove("STAGEBOX_STATE")
        .env_remove("XDG_DATA_HOME")
        .env_remove("STAGEBOX_TRACE")
        .stdin(std::process::Stdio::null());
    let run = finish(c, &all, tmpdir, home);
    let m = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    Some((m, run))
}

#[test]
fn as_an_ordinary_user_compare_runs_and_shows_what_needs_root() {
    if !root_or_skip("compare as nobody") {
        return;
    }
    let _g = serial();
    let mounts = state_mounts();
    let Some((m, run)) = matrix_as_nobody(&[]) else {
        return;
    };
    let home_mounts = || -> Vec<String> {
        let home = run.tmpdir.parent().unwrap().display().to_string();
        host_mounts()
            .into_iter()
            .filter(|l| l.contains(&home))
            .collect()
    };
    let cols = m["columns"].as_array().unwrap();
    // Every column ran, or says that only root may run it (or that the plan refuses it for
    // anyone): none failed.
    for col in cols {
        assert!(col["error"].is_null(), "{col}");
    }
    assert!(
        column(&m, "all")["note"]
            .as_str()
            .is_some_and(|n| n.contains("user stage is on in every column")),
        "{m}"
    );
    // The user stage cannot be switched off, nor can pid or net while it is on.
    for label in ["-user", "-pid", "-net"] {
        let col = column(&m, label);
        assert!(
            col["needs_root"].is_string() && col["refused"].is_null(),
            "{label}: {col}"
        );
    }
    assert!(!cols.iter().any(|c| c["label"] == "+user"));
    // The container's root is nobody on the host.
    assert_eq!(verdict(&m, "all", "host_root"), "isolated");
    let ev = evidence(&m, "all", "host_root");
    assert_eq!(number_after(&ev, "here is host uid "), Some(65534), "{ev}");
    // What the cgroup stage guards needs root here; everything else is measured.
    for row in ["memory_limit", "pids_limit", "host_disk"] {
        assert_eq!(verdict(&m, "all", row), "needs_root", "{row}");
    }
    assert_eq!(verdict(&m, "-cgroup", "memory_limit"), "leaks");
    for row in [
        "host_processes",
        "hostname",
        "network",
        "host_files",
        "sysv_ipc",
    ] {
        assert_eq!(verdict(&m, "all", row), "isolated", "{row}");
    }
    assert_eq!(verdict(&m, "-uts", "hostname"), "leaks");
    assert_eq!(verdict(&m, "-ipc", "sysv_ipc"), "leaks");
    assert_eq!(verdict(&m, "-pivot", "host_files"), "leaks");
    assert_eq!(verdict(&m, "chroot", "chroot_escape"), "leaks");
    assert_eq!(verdict(&m, "-caps", "dangerous_caps"), "leaks");
    assert_eq!(home_mounts(), Vec::<String>::new());
    host_as_found(&run, Some(&m), &mounts);

    // Building up: a stage asked for that needs root is left out, and its rows say so.
    let Some((m, run)) = matrix_as_nobody(&["--build-up", "--stages", "cgroup,uts,user"]) else {
        return;
    };
    let labels: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["none", "+cgroup", "+uts"]);
    assert_eq!(verdict(&m, "none", "memory_limit"), "leaks");
    assert_eq!(verdict(&m, "+cgroup", "memory_limit"), "needs_root");
    assert_eq!(verdict(&m, "+uts", "hostname"), "isolated");
    assert_eq!(column(&m, "none")["stages"], serde_json::json!(["user"]));
    host_as_found(&run, Some(&m), &mounts);
}
