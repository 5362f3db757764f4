//! After any run (success, failing workload, stagebox error, workload killed) the host is as
//! it was: same mount table, same state dir contents, no process left behind (found by the
//! marker in its command line, wherever it was reparented to).
//! These tests run one at a time (a lock), so that no other container's host-side activity
//! can blur the comparison.

mod common;
use common::*;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

/// The entries directly in a directory (stagebox makes no temp dirs; a leak would be a new
/// top-level entry, and deeper changes belong to whoever else uses /tmp).
fn top_level(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn check_clean(what: &str, args: &[&str], script: &str, want_code: i32) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Make sure the default rootfs exists first: it is a cache, created once on purpose.
    let _ = sh(&[], "true");
    let mounts = host_mounts();
    let state = tree(state_dir());
    let tmp = top_level("/tmp");
    let (code, out, err, marker) = sh_marked(args, script);
    assert_eq!(
        code, want_code,
        "{what}: exit code\nstdout: {out}\nstderr: {err}"
    );
    let d = lasting_differences(&mounts, host_mounts);
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "{what}: the host's mount table changed: {d:?}"
    );
    let d = differences(&state, &tree(state_dir()));
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "{what}: the state dir changed: {d:?}"
    );
    let (new, _) = lasting_differences(&tmp, || top_level("/tmp"));
    assert!(new.is_empty(), "{what}: left in /tmp: {new:?}");
    assert_none_left(&marker, what);
}

/// A loop in the background that keeps the marker (`$0`) in its command line. A plain
/// `sleep 60 &` would carry no marker, and `sh -c 'sleep 60'` may exec sleep.
const MARKED_LOOP: &str = "sh -c 'while :; do sleep 1; done' \"$0\" &";

#[test]
fn the_leak_detector_finds_a_marked_process_wherever_it_was_reparented() {
    let m = marker();
    // A child of this test...
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "while :; do sleep 1; done", &m])
        .spawn()
        .unwrap();
    let found = marked_processes(&m);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(&format!("{}: ", child.id())),
        "{found:?}"
    );
    // ...and an orphan, reparented to init or a subreaper: not among our children.
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", MARKED_LOOP, &m])
        .status()
        .unwrap();
    assert!(status.success());
    let found = marked_processes(&m);
    assert_eq!(found.len(), 2, "{found:?}");
    let detector = std::panic::catch_unwind(|| assert_none_left(&m, "the detector's own test"));
    assert!(detector.is_err(), "assert_none_left saw nothing: {found:?}");
    for p in &found {
        let pid: i32 = p.split(':').next().unwrap().parse().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    child.wait().unwrap();
    assert_none_left(&m, "after SIGKILL");
    assert!(marked_processes(&m).is_empty());
}

#[test]
fn clean_after_success() {
    if !root_or_skip("clean after success") {
        return;
    }
    check_clean(
        "success",
        &[],
        "echo hi > /dev/shm/inside-only; ls / >/dev/null",
        0,
    );
}

#[test]
fn clean_after_a_failing_workload() {
    if !root_or_skip("clean after failure") {
        return;
    }
    check_clean("failing workload", &[], "exit 3", 3);
}

#[test]
fn clean_after_the_workload_is_killed() {
    if !root_or_skip("clean after SIGKILL") {
        return;
    }
    // Without a PID namespace the workload can SIGKILL itself; what it left running is
    // killed by stagebox...
    check_clean(
        "SIGKILL",
        &["--without", "pid"],
        &format!("{MARKED_LOOP} kill -9 $$"),
        137,
    );
    // ...with one it is PID 1, which the kernel protects from signals sent inside its own
    // namespace, so the kill comes from the host, as `docker kill` does.
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mounts = host_mounts();
    let (mut child, _out, marker) = spawn_ready(&format!("{MARKED_LOOP} echo ready; wait"));
    assert_eq!(
        marked_processes(&marker).len(),
        3,
        "stagebox, the workload and its loop: {:?}",
        marked_processes(&marker)
    );
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let workload: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workload),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    assert_eq!(lasting_differences(&mounts, host_mounts), (vec![], vec![]));
    assert_none_left(&marker, "workload killed from the host");
}

#[test]
fn clean_after_a_stage_fails_inside_the_container() {
    if !root_or_skip("clean after stage error") {
        return;
    }
    // A rootfs whose /proc is a file: the proc stage's mount fails after several mounts were
    // already made in the container's namespace.
    let d = tempfile::tempdir().unwrap();
    let busybox_root = stagebox::rootfs::default::ensure(
        state_dir(),
        stagebox::rootfs::default::RootfsSource::Auto,
    )
    .unwrap()
    .path;
    std::fs::create_dir_all(d.path().join("bin")).unwrap();
    std::fs::copy(busybox_root.join("bin/busybox"), d.path().join("bin/sh")).ok();
    if !d.path().join("bin/sh").exists() {
        std::fs::copy("/bin/sh", d.path().join("bin/sh")).unwrap();
    }
    std::fs::write(d.path().join("proc"), b"not a directory").unwrap();
    let r = d.path().display().to_string();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mounts = host_mounts();
    let marker = marker();
    let out = stagebox(&[
        "run", "--trace", "off", "--rootfs", &r, "--", "/bin/sh", "-c", "true", &marker,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("stage proc"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert_eq!(lasting_differences(&mounts, host_mounts), (vec![], vec![]));
    assert_none_left(&marker, "stage error");
}

#[test]
fn sigterm_to_stagebox_reaches_the_workload() {
    if !root_or_skip("SIGTERM forwarding") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (mut child, mut out, marker) =
        spawn_ready("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("got-term"), "{rest}");
    assert_eq!(status.code(), Some(3));
    assert_none_left(&marker, "SIGTERM");
}
