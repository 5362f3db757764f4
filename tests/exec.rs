//! `exec`, `top`, `stats`, `pause`/`unpause`, `cp` and `export` against a real running
//! container: what the exec'd process sees of itself must be what the workload shows from
//! outside (namespace inodes, cgroups, capabilities, seccomp), read from /proc.

mod common;

use common::{cmd, marker, root_or_skip};
use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::Duration;

/// A container running in the background (`run --name` as a child process, not `run -d`),
/// in a state directory of its own; removed, reaped and checked for leftovers when dropped.
struct Running {
    state: PathBuf,
    name: String,
    marker: String,
    child: Option<Child>,
    pid: i32,
}

impl Running {
    fn start(name: &str, extra: &[&str], script: &str) -> Running {
        let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("exec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&state).unwrap();
        let m = marker();
        let mut args = vec![
            "--state",
            state.to_str().unwrap(),
            "run",
            "--name",
            name,
            "--trace",
            "off",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
        let child = cmd(&args).spawn().expect("start stagebox run");
        let mut r = Running {
            state,
            name: name.into(),
            marker: m,
            child: Some(child),
            pid: 0,
        };
        for _ in 0..300 {
            let out = r.sb(&["inspect", "-f", "pid", name]);
            if let Ok(pid) = String::from_utf8_lossy(&out.stdout).trim().parse::<i32>() {
                r.pid = pid;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(r.pid > 0, "the container {name} did not start");
        r
    }

    fn sb(&self, args: &[&str]) -> Output {
        let mut all = vec!["--state", self.state.to_str().unwrap()];
        all.extend_from_slice(args);
        cmd(&all).output().expect("run stagebox")
    }

    /// `exec --trace off NAME sh -c SCRIPT`: (status, stdout, stderr).
    fn exec(&self, script: &str) -> (i32, String, String) {
        let o = self.sb(&["exec", "--trace", "off", &self.name, "sh", "-c", script]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn exec_ok(&self, script: &str) -> String {
        let (code, out, err) = self.exec(script);
        assert_eq!(code, 0, "exec {script:?}: {err}");
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.sb(&["rm", "-f", &self.name]);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _kill = common::KillMarked(self.marker.clone());
        let _ = std::fs::remove_dir_all(&self.state);
        if !std::thread::panicking() {
            common::assert_none_left(&self.marker, "exec test container");
        }
    }
}

fn link(p: &str) -> String {
    std::fs::read_link(p)
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn status_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            [
                "CapBnd:",
                "CapEff:",
                "CapPrm:",
                "CapInh:",
                "NoNewPrivs:",
                "Seccomp:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

const LOOP: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";

#[test]
fn exec_joins_the_containers_namespaces_cgroups_and_confinement() {
    if !root_or_skip("exec_joins_the_containers_namespaces_cgroups_and_confinement") {
        return;
    }
    let r = Running::start("exec1", &[], LOOP);
    let pid = r.pid;
    for ns in ["mnt", "uts", "ipc", "net", "pid", "cgroup"] {
        let inside = r.exec_ok(&format!("readlink /proc/self/ns/{ns}"));
        let workload = link(&format!("/proc/{pid}/ns/{ns}"));
        assert_eq!(inside.trim(), workload, "{ns}: exec'd process vs workload");
        assert_ne!(
            workload,
            link(&format!("/proc/self/ns/{ns}")),
            "{ns}: the workload shares the host's"
        );
    }
    // Confinement: the same capability sets, no_new_privs and seccomp mode as the workload.
    let inside = status_lines(&r.exec_ok("cat /proc/self/status"));
    let workload = status_lines(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
    assert_eq!(inside, workload);
    assert!(workload.iter().any(|l| l == "Seccomp: 2"), "{workload:?}");
    // The cgroups, read from the host: a detached exec carries a marker to find it by.
    let m2 = marker();
    let o = r.sb(&["exec", "-d", "exec1", "sh", "-c", "sleep 30; :", &m2]);
    assert!(
        o.status.success(),
        "exec -d: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "-d prints nothing"
    );
    let _kill = common::KillMarked(m2.clone());
    let detached = common::within(10, || common::marked_pids(&m2).first().copied())
        .expect("the detached exec runs");
    let cg = |p: i32| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    assert_eq!(
        cg(detached),
        cg(pid),
        "cgroups of the exec'd process vs the workload"
    );
    assert_ne!(
        cg(pid),
        std::fs::read_to_string("/proc/self/cgroup").unwrap()
    );
    // Inside its cgroup namespace it reads what the workload reads.
    assert_eq!(
        r.exec_ok("cat /proc/self/cgroup"),
        r.exec_ok("cat /proc/1/cgroup")
    );
    // top lists both, seen from the host.
    let top = String::from_utf8_lossy(&r.sb(&["top", "exec1"]).stdout).into_owned();
    for p in [pid, detached] {
        assert!(
            top.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&p.to_string())),
            "{p} in:\n{top}"
        );
    }
    // Exit statuses pass through; a missing command is Docker's 127 and sentence.
    assert_eq!(r.exec("exit 7").0, 7);
    let o = r.sb(&["exec", "--trace", "off", "exec1", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("exec: \"no-such-command\": executable file not found in $PATH"));
    // The trace shows each setns with the inodes before and after.
    let o = r.sb(&["exec", "--trace", "pretty", "exec1", "true"]);
    let trace = String::from_utf8_lossy(&o.stderr);
    let net = link(&format!("/proc/{pid}/ns/net"));
    assert!(
        trace.contains(&format!("{} -> {net}", link("/proc/self/ns/net"))),
        "{trace}"
    );
    // -e and -w.
    assert_eq!(
        String::from_utf8_lossy(
            &r.sb(&[
                "exec",
                "--trace",
                "off",
                "-e",
                "X=42",
                "-w",
                "/tmp",
                "exec1",
                "sh",
                "-c",
                "echo $X $PWD"
            ])
            .stdout
        )
        .trim(),
        "42 /tmp"
    );
    // A stopped or unknown container: one sentence, 125.
    let o = r.sb(&["exec", "nope", "true"]);
    assert_eq!(o.status.code(), Some(125));
}

fn count(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/count")).unwrap_or_default()
}

#[test]
fn pause_freezes_and_stats_reads_the_cgroup() {
    if !root_or_skip("pause_freezes_and_stats_reads_the_cgroup") {
        return;
    }
    let r = Running::start("pause1", &[], LOOP);
    let pid = r.pid;
    let members = stagebox::cgroup::member::of_pid(pid).unwrap();
    // stats --no-stream: the memory it shows is the cgroup file's.
    let o = r.sb(&["stats", "--no-stream", "pause1"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = table
        .lines()
        .find(|l| l.contains("pause1"))
        .unwrap_or_else(|| panic!("{table}"));
    let usage = line.split_whitespace().nth(3).unwrap();
    let (num, unit) = usage.split_at(usage.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let mult = match unit {
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        u => panic!("unit {u}"),
    };
    let shown = num.parse::<f64>().unwrap() * mult;
    let file = stagebox::cgroup::stats::read(&members)
        .memory
        .expect("a memory cgroup file") as f64;
    assert!(
        (shown - file).abs() <= file * 0.5 + 1048576.0,
        "stats {shown} vs file {file}"
    );

    // pause: the freezer file says frozen, and the counter stops.
    std::thread::sleep(Duration::from_millis(300));
    assert!(r.sb(&["pause", "pause1"]).status.success());
    assert_eq!(stagebox::cgroup::freezer::state(&members), Some(true));
    let ps = String::from_utf8_lossy(&r.sb(&["ps"]).stdout).into_owned();
    assert!(
        ps.lines()
            .any(|l| l.contains("pause1") && l.contains("paused")),
        "{ps}"
    );
    let a = count(pid);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(a, count(pid), "the counter moved while paused");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let state = st
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .map(str::trim)
        .unwrap_or("");
    assert!(
        !state.starts_with('R'),
        "a frozen workload is not runnable: {state}"
    );
    // exec into a frozen cgroup would freeze too: refused in one sentence.
    let e = r.sb(&["exec", "pause1", "true"]);
    assert_eq!(e.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("is paused"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    assert!(r.sb(&["unpause", "pause1"]).status.success());
    assert_eq!(stagebox::cgroup::freezer::state(&members), Some(false));
    let b = count(pid);
    std::thread::sleep(Duration::from_millis(400));
    assert_ne!(b, count(pid), "the counter did not resume");
    // A paused container is still removed by rm -f (thawed first).
    assert!(r.sb(&["pause", "pause1"]).status.success());
    let o = r.sb(&["rm", "-f", "pause1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(common::within_2s(
        || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    )
    .is_some());
}

#[test]
fn cp_and_export_stay_inside_the_container() {
    if !root_or_skip("cp_and_export_stay_inside_the_container") {
        return;
    }
    let r = Running::start("cp1", &[], "while :; do sleep 1; done");
    let host =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cp-{}", std::process::id()));
    std::fs::create_dir_all(&host).unwrap();
    // In: a file and a directory, owned by the container's root.
    std::fs::write(host.join("f.txt"), "round trip\n").unwrap();
    std::fs::create_dir_all(host.join("d/sub")).unwrap();
    std::fs::write(host.join("d/sub/g"), "g\n").unwrap();
    for (src, dest) in [("f.txt", "cp1:/tmp/f.txt"), ("d", "cp1:/tmp/")] {
        let o = r.sb(&["cp", host.join(src).to_str().unwrap(), dest]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        r.exec_ok("cat /tmp/f.txt /tmp/d/sub/g; stat -c %u:%g /tmp/f.txt"),
        "round trip\ng\n0:0\n"
    );
    // Out again.
    let back = host.join("back.txt");
    assert!(r
        .sb(&["cp", "cp1:/tmp/f.txt", back.to_str().unwrap()])
        .status
        .success());
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "round trip\n");
    // A symlink to / inside resolves to the container's /, never the host's.
    r.exec_ok("ln -s / /tmp/x; echo inside-only > /etc/cp-marker");
    let out = host.join("m");
    let o = r.sb(&["cp", "cp1:/tmp/x/etc/cp-marker", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "inside-only\n");
    assert!(!std::path::Path::new("/etc/cp-marker").exists());
    let pw = host.join("pw");
    assert!(r
        .sb(&["cp", "cp1:/tmp/x/etc/passwd", pw.to_str().unwrap()])
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(&pw).unwrap(),
        r.exec_ok("cat /etc/passwd")
    );
    // Copying in through the symlink lands inside too.
    let o = r.sb(&[
        "cp",
        host.join("f.txt").to_str().unwrap(),
        "cp1:/tmp/x/etc/in-marker",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !std::path::Path::new("/etc/in-marker").exists(),
        "cp wrote on the host"
    );
    assert_eq!(r.exec_ok("cat /etc/in-marker"), "round trip\n");
    // export: a tar of the root filesystem.
    let tar = host.join("e.tar");
    let o = r.sb(&["export", "-o", tar.to_str().unwrap(), "cp1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .entries()
        .unwrap()
        .flatten()
        .map(|e| e.path().unwrap().display().to_string())
        .collect();
    for want in ["bin/sh", "etc/passwd", "etc/cp-marker", "tmp/f.txt"] {
        assert!(names.iter().any(|n| n == want), "{want} not in the export");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("proc/") && n.len() > 5),
        "export went into /proc"
    );
    let _ = std::fs::remove_dir_all(&host);
}

#[test]
fn exec_joins_a_user_namespace_first_and_keeps_no_new_privs() {
    if !root_or_skip("exec_joins_a_user_namespace_first_and_keeps_no_new_privs") {
        return;
    }
    let r = Running::start(
        "user1",
        &["--userns", "auto", "--security-opt", "no-new-privileges"],
        "while :; do sleep 1; done",
    );
    let pid = r.pid;
    for ns in ["user", "mnt", "pid", "net"] {
        let inside = r.exec_ok(&format!("readlink /proc/self/ns/{ns}"));
        assert_eq!(inside.trim(), link(&format!("/proc/{pid}/ns/{ns}")), "{ns}");
        assert_ne!(inside.trim(), link(&format!("/proc/self/ns/{ns}")), "{ns}");
    }
    let inside = status_lines(&r.exec_ok("cat /proc/self/status"));
    let workload = status_lines(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
    assert_eq!(inside, workload);
    assert!(
        workload.iter().any(|l| l == "NoNewPrivs: 1"),
        "{workload:?}"
    );
    // Root inside, the workload's mapped uid outside: the same uid_map and the same ids.
    assert_eq!(
        r.exec_ok("id -u; cat /proc/self/uid_map"),
        format!(
            "0\n{}",
            std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap()
        )
    );
}

#[test]
fn cp_and_export_of_a_stopped_container_read_its_layers() {
    if !root_or_skip("cp_and_export_of_a_stopped_container_read_its_layers") {
        return;
    }
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("exec-stopped-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let sb = |args: &[&str]| {
        let mut all = vec!["--state", state.to_str().unwrap()];
        all.extend_from_slice(args);
        cmd(&all).output().expect("run stagebox")
    };
    let mounts_before = common::host_mounts();
    let o = sb(&[
        "run",
        "--name",
        "s1",
        "--trace",
        "off",
        "--",
        "sh",
        "-c",
        "echo stopped > /etc/s-marker; rm /etc/passwd; mkdir /tmp/d",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let export = |file: &PathBuf| -> Vec<String> {
        let o = sb(&["export", "-o", file.to_str().unwrap(), "s1"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        tar::Archive::new(std::fs::File::open(file).unwrap())
            .entries()
            .unwrap()
            .flatten()
            .map(|e| e.path().unwrap().display().to_string())
            .collect()
    };
    let tar = state.join("e.tar");
    let names = export(&tar);
    assert!(
        names.iter().any(|n| n == "etc/s-marker"),
        "the writable layer is in the export"
    );
    assert!(
        names.iter().any(|n| n == "etc/group"),
        "the image is in the export"
    );
    assert!(
        !names.iter().any(|n| n == "etc/passwd"),
        "the whiteout hides the deleted file"
    );
    // Out and in: into the writable layer, as the container's own writes go.
    let out = state.join("m");
    assert!(sb(&["cp", "s1:/etc/s-marker", out.to_str().unwrap()])
        .status
        .success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "stopped\n");
    assert_eq!(
        sb(&["cp", "s1:/etc/passwd", out.to_str().unwrap()])
            .status
            .code(),
        Some(125)
    );
    let f = state.join("newf");
    std::fs::write(&f, "new\n").unwrap();
    assert!(sb(&["cp", f.to_str().unwrap(), "s1:/tmp/d/"])
        .status
        .success());
    let upper = PathBuf::from(
        String::from_utf8_lossy(&sb(&["inspect", "-f", "upper_dir", "s1"]).stdout).trim(),
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/d/newf")).unwrap(),
        "new\n"
    );
    assert!(export(&tar).iter().any(|n| n == "tmp/d/newf"));
    // The layers were mounted in a namespace of the command's own: nothing left on the host.
    assert_eq!(common::host_mounts(), mounts_before);
    assert!(sb(&["rm", "s1"]).status.success());
    let _ = std::fs::remove_dir_all(&state);
}
