//! The cgroup and cgroupns stages, measured on this host's real kernel: the OOM killer
//! under -m, a fork loop stopped by --pids-limit, CPU throttling under --cpus, "/" inside a
//! cgroup namespace, bad values refused with nothing created, the host's cgroup tree left as
//! it was found, and one cgroup parent per state directory. Needs root (skips loudly
//! without it).
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

/// The cgroup parent of the tests' state directory (`stagebox-<hash>`).
fn parent() -> String {
    stagebox::state::dir::cgroup_parent(state_dir())
}

/// Every hierarchy's directory for `parent`, with what is under it, recursively:
/// `/sys/fs/cgroup/memory/<parent>/<id>/memory.max ...`, sorted.
fn cgroups_under(parent: &str) -> Vec<PathBuf> {
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
        let dir = r.join(parent);
        if dir.is_dir() {
            out.push(dir.clone());
            out.extend(tree(&dir).into_iter().map(|p| dir.join(p)));
        }
    }
    out.sort();
    out
}

/// The cgroups of the tests' state directory. Other state directories (another checkout's
/// tests, an install) have parents of their own, so their runs do not show here.
fn stagebox_cgroups() -> Vec<PathBuf> {
    cgroups_under(&parent())
}

/// A background loop that keeps the marker (`$0`) in its command line.
const MARKED_LOOP: &str = "sh -c 'while :; do sleep 1; done' \"$0\" &";

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
    let script =
        format!("i=0; while [ $i -lt 50 ]; do {MARKED_LOOP} i=$((i+1)); done; echo all-started");
    let (code, out, err, marker) = sh_marked(&["--pids-limit", "10"], &script);
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("all-started"), "{out}");
    assert!(err.contains("can't fork"), "{err}");
    assert!(err.contains("the pid limit 10 refused"), "{err}");
    // The loops left behind were killed with the cgroup: nothing remains.
    assert_none_left(&marker, "fork loop under --pids-limit");
    // Without the limit all 50 start (and end with the container).
    let (code, out, err, marker) = sh_marked(&[], &script);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("all-started"), "{out}");
    assert_none_left(&marker, "fork loop without a limit");
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
    let want = format!(":/{}/", parent());
    assert!(out.lines().any(|l| l.contains(&want)), "{want} in {out}");
    // Without the cgroup stage, "/" is the runtime's own cgroup: still "/" inside.
    let out = sh_ok(&["--without", "cgroup,devices"], "cat /proc/self/cgroup");
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
            &["--without", "cgroup,devices", "-m", "64m"],
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
    let (code, _, err, marker) = sh_marked(
        &["--without", "pid"],
        &format!("{MARKED_LOOP} {MARKED_LOOP} exit 0"),
    );
    assert_eq!(code, 0, "{err}");
    assert_none_left(&marker, "stragglers");
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
    // Docker's status for a command that cannot be invoked: 126.
    let (code, _, err, marker) = sh_marked(&["-m", "64m", "--rootfs", &rootfs], "true");
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("exec"), "{err}");
    assert_tree_unchanged("stage error", &before);
    assert_none_left(&marker, "stage error");
}

/// The host cgroups of a running process, from /proc/PID/cgroup: (hierarchy, path).
fn cgroups_of(pid: u32) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    stagebox::cgroup::proc_cgroup_lines(&text)
}

#[test]
fn each_state_directory_has_a_cgroup_parent_of_its_own() {
    if !root_or_skip("cgroup parent per state dir") {
        return;
    }
    let _g = serial();
    let tmp = env!("CARGO_TARGET_TMPDIR");
    let states = [
        tempfile::tempdir_in(tmp).unwrap(),
        tempfile::tempdir_in(tmp).unwrap(),
    ];
    let parents: Vec<String> = states
        .iter()
        .map(|d| stagebox::state::dir::cgroup_parent(d.path()))
        .collect();
    assert_ne!(parents[0], parents[1]);
    assert!(parents
        .iter()
        .all(|p| p.starts_with("stagebox-") && p != &parent()));
    // Both containers run at once, each in its own state directory; the cgroups are read
    // from outside, from /proc/PID/cgroup of each workload.
    let mut running = Vec::new();
    for (dir, parent) in states.iter().zip(&parents) {
        use std::io::BufRead;
        let m = marker();
        let mut child = cmd(&[
            "run",
            "--rm",
            "--trace",
            "off",
            "--",
            "/bin/sh",
            "-c",
            "echo ready; while :; do sleep 1; done",
            &m,
        ])
        .env("STAGEBOX_STATE", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
        let workload: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
        let lines = cgroups_of(workload);
        let own = format!("/{parent}/");
        assert!(
            lines.iter().any(|(_, p)| p.starts_with(&own)),
            "the workload is not under {own}: {lines:?}"
        );
        assert!(
            lines
                .iter()
                .all(|(_, p)| p.starts_with(&own) || !p.starts_with("/stagebox")),
            "the workload is under another stagebox parent: {lines:?}"
        );
        assert!(
            !cgroups_under(parent).is_empty(),
            "no /sys/fs/cgroup/.../{parent} directory"
        );
        running.push((child, m, workload));
    }
    // Neither sees the other: the first workload's cgroups are not under the second parent.
    let first = cgroups_of(running[0].2);
    assert!(
        first
            .iter()
            .all(|(_, p)| !p.starts_with(&format!("/{}/", parents[1]))),
        "{first:?}"
    );
    for (mut child, m, workload) in running {
        // PID 1 of its namespace: only SIGKILL from the host ends it.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(workload as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(137));
        assert_none_left(&m, "a run in its own state directory");
    }
    // The last container of each parent took the empty parent with it.
    for parent in &parents {
        assert_eq!(
            cgroups_under(parent),
            Vec::<PathBuf>::new(),
            "{parent} is left"
        );
    }
}
