//! The cgroup and cgroupns stages, measured on this host's real kernel: the OOM killer
//! under -m, a fork loop stopped by --pids-limit, CPU throttling under --cpus, "/" inside a
//! cgroup namespace, bad values refused with nothing created, and the host's cgroup tree
//! left as it was found. Needs root (skips loudly without it).
//!
//! The tests run one at a time (a lock): the tree comparison must not see another test's
//! container.

mod common;
use common::*;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every hierarchy's `stagebox` directory with everything under it, recursively:
/// `/sys/fs/cgroup/memory/stagebox/<id>/memory.max ...`, sorted.
fn stagebox_cgroups() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                roots.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    for r in roots {
        let dir = r.join("stagebox");
        if dir.is_dir() {
            out.push(dir.clone());
            out.extend(tree(&dir).into_iter().map(|p| dir.join(p)));
        }
    }
    out.sort();
    out
}

fn assert_tree_unchanged(what: &str, before: &[PathBuf]) {
    let after = stagebox_cgroups();
    let (added, removed) = differences(before, &after);
    assert!(
        added.is_empty() && removed.is_empty(),
        "{what}: the host's cgroup tree changed\nadded: {added:?}\nremoved: {removed:?}"
    );
}

/// `stagebox run --trace json ARGS -- sh -c SCRIPT`: (exit code, the trace's events).
fn json_run(args: &[&str], script: &str) -> (i32, Vec<serde_json::Value>) {
    let mut all: Vec<&str> = vec!["run", "--trace", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let out = stagebox(&all);
    let events = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code().unwrap_or(-1), events)
}

fn fact<'a>(events: &'a [serde_json::Value], name: &str) -> Option<&'a str> {
    events
        .iter()
        .find(|e| e["event"] == "fact" && e["stage"] == "cgroup" && e["fact"] == name)
        .and_then(|e| e["after"].as_str())
}

#[test]
fn a_memory_hog_is_oom_killed_and_named_as_such() {
    if !root_or_skip("cgroup OOM") {
        return;
    }
    let _g = serial();
    let before = stagebox_cgroups();
    // dd allocates its 64M buffer and reads /dev/zero into it: every page is touched, so
    // the memory cgroup is charged for it (busybox has no other simple hog).
    let (code, _out, err) = sh(
        &["-m", "32M"],
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
    );
    assert_eq!(code, 137, "{err}");
    assert!(
        err.contains("killed by the OOM killer: memory limit 32M reached"),
        "{err}"
    );
    // The same run is fine with room to spare.
    let (code, _out, err) = sh(
        &["-m", "256m"],
        "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null",
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("OOM"), "{err}");
    // The trace reads the limit back and counts the kill.
    let (code, ev) = json_run(
        &["-m", "32M"],
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
    );
    assert_eq!(code, 137);
    let limit_file = fact(&ev, "memory.max").or_else(|| fact(&ev, "memory.limit_in_bytes"));
    assert_eq!(limit_file, Some("33554432"), "{ev:?}");
    let kills = fact(&ev, "oom kills").unwrap_or_default();
    assert!(
        kills.starts_with('1') || kills.starts_with('2'),
        "oom kills: {kills}"
    );
    assert_tree_unchanged("OOM", &before);
}

#[test]
fn a_fork_loop_stops_at_the_pid_limit() {
    if !root_or_skip("cgroup pids") {
        return;
    }
    let _g = serial();
    let before = stagebox_cgroups();
    let script = "i=0; while [ $i -lt 50 ]; do sleep 5 & i=$((i+1)); done; echo all-started";
    let (code, out, err) = sh(&["--pids-limit", "10"], script);
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("all-started"), "{out}");
    assert!(err.contains("can't fork"), "{err}");
    assert!(err.contains("the pid limit 10 refused"), "{err}");
    // The sleeps left behind were killed with the cgroup: nothing remains.
    assert!(my_children().is_empty());
    // Without the limit all 50 start.
    let out = sh_ok(
        &[],
        "i=0; while [ $i -lt 50 ]; do sleep 1 & i=$((i+1)); done; echo all-started",
    );
    assert!(out.contains("all-started"));
    assert_tree_unchanged("pids", &before);
}

#[test]
fn a_cpu_burner_is_throttled() {
    if !root_or_skip("cgroup cpu") {
        return;
    }
    let _g = serial();
    let (code, ev) = json_run(&["--cpus", "0.2"], "timeout 1 yes >/dev/null; true");
    assert_eq!(code, 0, "{ev:?}");
    let throttled =
        fact(&ev, "cpu throttled").unwrap_or_else(|| panic!("no cpu throttled fact: {ev:?}"));
    // "in 9 of 10 periods, 0.78s in all (cpu.stat)"
    let number = |i: usize| -> u64 {
        throttled
            .split_whitespace()
            .nth(i)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{throttled}"))
    };
    let (n, periods) = (number(1), number(3));
    assert!(n >= 5, "throttled in only {n} periods: {throttled}");
    // The container is in the cgroup from before its namespaces and mounts are made, so the
    // CPU time is measured against the 100 ms periods the cgroup ran in, not against the
    // second of `yes`: on a slow machine (an emulated VM) the setup alone takes seconds.
    // 0.2 CPUs is 20 ms a period; half as much again is room for the scheduler's slices.
    let used = fact(&ev, "cpu time").unwrap_or_default();
    let secs: f64 = used.trim_end_matches('s').parse().unwrap_or(99.0);
    let allowed = periods as f64 * 0.020 * 1.5;
    assert!(
        secs <= allowed,
        "0.2 CPUs over {periods} periods used {used}, more than {allowed:.2}s: {throttled}"
    );
}

#[test]
fn cgroupns_shows_slash_inside() {
    if !root_or_skip("cgroupns") {
        return;
    }
    let _g = serial();
    let out = sh_ok(&[], "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup");
    let lines: Vec<&str> = out.lines().collect();
    let (ns, cg) = lines.split_last().unwrap();
    assert_ne!(*ns, host_ns("cgroup"));
    for l in cg {
        assert!(l.ends_with(":/"), "{l} in\n{out}");
    }
    // Without the namespace the container sees where it sits on the host.
    let out = sh_ok(&["--without", "cgroupns"], "cat /proc/self/cgroup");
    assert!(out.lines().any(|l| l.contains(":/stagebox/")), "{out}");
    // Without the cgroup stage, "/" is the runtime's own cgroup: still "/" inside.
    let out = sh_ok(&["--without", "cgroup"], "cat /proc/self/cgroup");
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");
}

#[test]
fn bad_values_are_refused_and_nothing_is_created() {
    if !root_or_skip("cgroup bad values") {
        return;
    }
    let _g = serial();
    let before = stagebox_cgroups();
    let cases: &[(&[&str], &str)] = &[
        (&["-m", "64Q"], "--memory 64Q is not a size"),
        (&["-m", "-5"], "--memory -5 is not a size"),
        (&["--memory", "1k"], "below the minimum"),
        (&["--cpus", "0"], "--cpus 0 is too small"),
        (&["--cpus", "-1"], "--cpus -1 is not a number of CPUs"),
        (&["--cpus", "4096"], "more than this host has"),
        (
            &["--pids-limit", "-5"],
            "--pids-limit -5 is not a positive whole number",
        ),
        (&["--cpu-shares", "1"], "--cpu-shares 1 is out of range"),
        (&["--memory-swap", "1g"], "needs --memory"),
        (&["--cpuset-cpus", "9999"], "--cpuset-cpus"),
        (
            &["--without", "cgroup", "-m", "64m"],
            "the cgroup stage is off",
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = sh(args, "echo ran");
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: the workload ran: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one sentence:\n{err}");
        assert!(
            err.starts_with("stagebox: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert_tree_unchanged(&format!("{args:?}"), &before);
    }
}

#[test]
fn the_host_cgroup_tree_is_left_as_found() {
    if !root_or_skip("cgroup clean") {
        return;
    }
    let _g = serial();
    let before = stagebox_cgroups();
    sh_ok(
        &["-m", "64m", "--cpus", "0.5", "--pids-limit", "20"],
        "true",
    );
    assert_tree_unchanged("success", &before);
    let (code, ..) = sh(&["-m", "64m"], "exit 3");
    assert_eq!(code, 3);
    assert_tree_unchanged("failing workload", &before);
    // Processes left running inside (no PID namespace to end them) are killed first.
    let (code, ..) = sh(&["--without", "pid"], "sleep 30 & sleep 30 & exit 0");
    assert_eq!(code, 0);
    assert_tree_unchanged("stragglers", &before);
    let (code, _, err) = sh(&["-m", "64m", "--without", "pid"], "kill -9 $$");
    assert_eq!(code, 137, "{err}");
    assert_tree_unchanged("killed", &before);
    // A stage error after the cgroup was made (exec of a file that is no program): the undo
    // list still removes it.
    let bad = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("not-a-program-root");
    std::fs::create_dir_all(bad.join("bin")).unwrap();
    std::fs::write(bad.join("bin/sh"), "this is not a program\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bad.join("bin/sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let rootfs = bad.display().to_string();
    let (code, _, err) = sh(&["-m", "64m", "--rootfs", &rootfs], "true");
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("exec"), "{err}");
    assert_tree_unchanged("stage error", &before);
    assert!(my_children().is_empty());
}
