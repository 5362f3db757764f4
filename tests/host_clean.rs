//! After any run (success, failing workload, stagebox error, workload killed) the host is as
//! it was: same mount table, same state dir contents, no process left behind (found by the
//! marker in its command line, wherever it was reparented to).
//! These tests run one at a time (a lock), so that no other container's host-side activity
//! can blur the comparison.

mod common;
use common::*;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

/// The entries directly in /tmp that stagebox could have made: it names what it makes
/// `stagebox...` or `.stagebox...`. (It makes no temp files; whatever it would put in the
/// temp dir goes to the tests' private TMPDIR, checked whole. Other programs on a shared host
/// come and go in /tmp with names of their own.)
fn stagebox_in_tmp() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir("/tmp")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .map(|n| {
                            n.to_string_lossy()
                                .trim_start_matches('.')
                                .starts_with("stagebox")
                        })
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn check_clean(what: &str, args: &[&str], script: &str, want_code: i32) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Make sure the default rootfs exists first: it is a cache, created once on purpose.
    let _ = sh(&[], "true");
    let mounts = host_mounts_but_compare_leaks();
    let state = tree(state_dir());
    let tmp = stagebox_in_tmp();
    let private = tree(private_tmp());
    let (code, out, err, marker) = sh_marked(args, script);
    assert_eq!(
        code, want_code,
        "{what}: exit code\nstdout: {out}\nstderr: {err}"
    );
    let d = lasting_differences(&mounts, host_mounts_but_compare_leaks);
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "{what}: the host's mount table changed: {d:?}"
    );
    let d = differences(&state, &tree(state_dir()));
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "{what}: the state dir changed: {d:?}"
    );
    let (new, _) = lasting_differences(&tmp, stagebox_in_tmp);
    assert!(new.is_empty(), "{what}: left in /tmp: {new:?}");
    let d = differences(&private, &tree(private_tmp()));
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "{what}: left in its TMPDIR: {d:?}"
    );
    assert_none_left(&marker, what);
}

/// A loop in the background that keeps the marker (`$0`) in its command line. A plain
/// `sleep 60 &` would carry no marker, and `sh -c 'sleep 60'` may exec sleep.
const MARKED_LOOP: &str = "sh -c 'while :; do sleep 1; done' \"$0\" &";

#[test]
fn the_leak_detector_finds_a_marked_process_wherever_it_was_reparented() {
    let m = marker();
    let _cleanup = KillMarked(m.clone());
    // A child of this test...
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "while :; do sleep 1; done", &m])
        .spawn()
        .unwrap();
    let child_pid = child.id() as i32;
    let seen = within_2s(|| marked_pids(&m).contains(&child_pid).then_some(()));
    assert!(seen.is_some(), "{:?}", marked_processes(&m));
    // ...and an orphan, reparented to init or a subreaper: not among our children, and
    // not the child's own fork of sleep.
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", MARKED_LOOP, &m])
        .status()
        .unwrap();
    assert!(status.success());
    let me = std::process::id() as i32;
    let orphan = within_2s(|| {
        marked_pids(&m)
            .into_iter()
            .find(|p| *p != child_pid && parent_of(*p).is_some_and(|pp| pp != child_pid))
    })
    .unwrap_or_else(|| panic!("no orphan: {:?}", marked_processes(&m)));
    assert_ne!(parent_of(orphan), Some(me), "the orphan was not reparented");
    let detector = std::panic::catch_unwind(|| assert_none_left(&m, "the detector's own test"));
    assert!(detector.is_err(), "assert_none_left saw nothing");
    for pid in [child_pid, orphan] {
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
    let mounts = host_mounts_but_compare_leaks();
    let (mut child, _out, marker) = spawn_ready(&format!("{MARKED_LOOP} echo ready; wait"));
    let _cleanup = KillMarked(marker.clone());
    // stagebox, the workload and its loop all carry the marker.
    for part in [bin(), "echo ready; wait", "while :; do sleep 1; done"] {
        let seen = within_2s(|| {
            marked_processes(&marker)
                .iter()
                .any(|p| p.contains(part))
                .then_some(())
        });
        assert!(seen.is_some(), "{part}: {:?}", marked_processes(&marker));
    }
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
    assert_eq!(
        lasting_differences(&mounts, host_mounts_but_compare_leaks),
        (vec![], vec![])
    );
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
    let mounts = host_mounts_but_compare_leaks();
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
    assert_eq!(
        lasting_differences(&mounts, host_mounts_but_compare_leaks),
        (vec![], vec![])
    );
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
