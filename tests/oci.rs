//! stagebox as an OCI runtime, from the outside: the `stagebox` binary called with runc's
//! command line on bundles made here, each with a `--root` of its own. What is checked is
//! what the kernel shows: /proc/PID/cmdline and exe before and after `start`, the cgroup
//! directories of every hierarchy (from /proc/self/mountinfo), the mount table, the --root
//! directory left empty.
//!
//! This process makes itself a child subreaper, as conmon and containerd's shim do: a
//! container process outlives the `stagebox create` that forked it, and is reaped here.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Every command here is given this long, at most.
const CMD_SECS: u64 = 60;

fn subreaper() {
    // SAFETY: prctl with integer arguments only; it changes no memory of this process.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}

/// Runs `cmd` with a deadline: killed (and the test failed) when it outlives it. Its stdout
/// and stderr go to files, not pipes: the container process `create` leaves behind keeps
/// them (as runc's does), and a pipe would never see its end.
fn bounded(mut c: Command, secs: u64) -> Output {
    use std::io::{Read as _, Seek as _};
    let tmp = env!("CARGO_TARGET_TMPDIR");
    let mut out = tempfile::tempfile_in(tmp).expect("stdout file");
    let mut err = tempfile::tempfile_in(tmp).expect("stderr file");
    let mut child = c
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .expect("start stagebox");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |f: &mut std::fs::File| {
        let mut v = Vec::new();
        let _ = f.rewind();
        let _ = f.read_to_end(&mut v);
        v
    };
    Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `pid` is gone (reaped here if it was this process's child, as a subreaper's).
fn reaped(pid: i32) -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        // Not our child: gone when /proc says so (or it is a zombie of someone else).
        Err(_) => match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(s) => {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    == Some("Z")
            }
        },
    }
}

fn wait_gone(pid: i32, secs: u64) {
    assert!(
        within(secs, || reaped(pid).then_some(())).is_some(),
        "process {pid} still there after {secs} s"
    );
}

/// The cgroup file systems' mount points, from /proc/self/mountinfo.
fn cgroup_mounts() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            matches!(f.get(dash + 1), Some(&"cgroup") | Some(&"cgroup2"))
                .then(|| PathBuf::from(f[4]))
        })
        .collect()
}

/// Every cgroup directory, in every hierarchy (4 levels down), whose name is one of `names`.
fn cgroups_named(names: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, names: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let p = e.path();
            if names.iter().any(|n| e.file_name().to_str() == Some(n)) {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, depth - 1, names, out);
            }
        }
    }
    let mut out = Vec::new();
    for m in cgroup_mounts() {
        walk(&m, 3, names, &mut out);
    }
    out
}

/// The mount table's lines that mention `path`.
fn mounts_mentioning(path: &Path) -> Vec<String> {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(&p))
        .map(str::to_string)
        .collect()
}

/// A test's temp dir (under cargo's target tmp, not /tmp) with a bundle (`b`: config.json and
/// a copy of the default rootfs), a `--root` (`root`) and a shared dir (`m`) bind-mounted at
/// /m in the container. Dropped: `delete --force`, then the dir removed.
struct Oci {
    dir: PathBuf,
    id: String,
}

impl Oci {
    fn new() -> Oci {
        let id = marker().replace("sbtest", "ocit");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b")).expect("bundle dir");
        std::fs::create_dir_all(dir.join("m")).expect("shared dir");
        let out = bounded(cmd(&["rootfs", "--json"]), CMD_SECS);
        assert!(out.status.success(), "rootfs --json: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rootfs JSON");
        let src = v["path"].as_str().expect("rootfs path");
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(src).arg(dir.join("b/rootfs"));
        assert!(bounded(cp, CMD_SECS).status.success(), "cp -a {src}");
        Oci { dir, id }
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("b")
    }
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    fn m(&self) -> PathBuf {
        self.dir.join("m")
    }

    /// runc's default config (`stagebox spec`), no terminal, `args`, /m bound rw, and
    /// `edit` applied.
    fn config(&self, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) {
        let _ = std::fs::remove_file(self.bundle().join("config.json"));
        let out = self.oci(&["spec", "--bundle", self.bundle().to_str().unwrap_or("")]);
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        let file = self.bundle().join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("config")).expect("json");
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(args);
        c["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(serde_json::json!({
                "destination": "/m", "type": "bind", "source": self.m(),
                "options": ["rbind", "rw"]
            }));
        edit(&mut c);
        std::fs::write(&file, serde_json::to_string_pretty(&c).expect("json")).expect("write");
    }

    /// `stagebox --root ROOT ARGS`.
    fn oci(&self, args: &[&str]) -> Output {
        let root = self.root();
        let mut all = vec!["--root", root.to_str().unwrap_or("")];
        all.extend_from_slice(args);
        bounded(cmd(&all), CMD_SECS)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.oci(args);
        assert!(
            out.status.success(),
            "stagebox {args:?} failed: {}\n{}",
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }

    /// `create --bundle B --pid-file P ID`; the pid from the pid file.
    fn create(&self) -> i32 {
        let pid_file = self.dir.join("pid");
        let b = self.bundle();
        self.ok(&[
            "create",
            "--bundle",
            b.to_str().unwrap_or(""),
            "--pid-file",
            pid_file.to_str().unwrap_or(""),
            &self.id,
        ]);
        std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).expect("state is JSON")
    }

    fn wait_status(&self, want: &str, secs: u64) {
        let got = within(secs, || {
            let s = self.state();
            (s["status"] == want).then_some(())
        });
        assert!(
            got.is_some(),
            "status never became {want}: {}",
            self.state()
        );
    }

    /// Nothing of the container is left: no record, no cgroup, no mount, --root empty.
    fn assert_gone(&self) {
        let left = tree(&self.root());
        assert!(left.is_empty(), "--root not empty: {left:?}");
        let parent = stagebox::state::dir::cgroup_parent(&self.root());
        let cg = cgroups_named(&[&self.id, &parent]);
        assert!(cg.is_empty(), "cgroups left: {cg:?}");
        let m = mounts_mentioning(&self.dir);
        assert!(m.is_empty(), "mounts left: {m:#?}");
    }
}

impl Drop for Oci {
    fn drop(&mut self) {
        let _ = self.oci(&["delete", "--force", &self.id]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A loop that ends by itself after 60 s, trapping SIGUSR1 into /m/usr1.
const TRAPPING: &str = "trap 'echo usr1 > /m/usr1' USR1; echo up > /m/ready; i=0; \
                        while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done";

#[test]
fn create_start_stop_delete_is_the_oci_state_machine() {
    if !root_or_skip("create_start_stop_delete_is_the_oci_state_machine") {
        return;
    }
    subreaper();
    // The host's mounts under this test binary's dirs (other programs on a shared host mount
    // and unmount their own meanwhile).
    let ours = || -> Vec<String> {
        host_mounts()
            .into_iter()
            .filter(|m| m.contains(env!("CARGO_TARGET_TMPDIR")))
            .collect()
    };
    let mounts_before = ours();
    let c = Oci::new();
    c.config(&["sh", "-c", "echo done > /m/out"], |_| {});
    let pid = c.create();

    // created: the pid waits, still stagebox, blocked opening exec.fifo.
    let s = c.state();
    assert_eq!(s["status"], "created", "{s}");
    assert_eq!(s["pid"], pid, "{s}");
    assert_eq!(s["id"], c.id.as_str(), "{s}");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    let me = std::fs::canonicalize(bin()).expect("bin");
    assert_eq!(exe, me, "the created process is stagebox's until start");
    assert!(
        !cmdline(pid).iter().any(|a| a.contains("/m/out")),
        "the workload ran before start: {:?}",
        cmdline(pid)
    );
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    assert!(
        wchan.contains("fifo")
            || wchan.contains("partner")
            || syscall.split(' ').next() == Some(&libc::SYS_openat.to_string()),
        "the created process is not blocked on exec.fifo: wchan {wchan:?}, syscall {syscall:?}"
    );
    assert!(!c.m().join("out").exists(), "the workload ran before start");
    // The cgroups it is in, in every hierarchy, to look for after delete.
    let cgroups: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("cgroup")
        .lines()
        .map(|l| l.rsplit(':').next().unwrap_or("").to_string())
        .filter(|p| p.contains(&c.id))
        .collect();
    assert!(
        !cgroups.is_empty(),
        "the container is in no cgroup of its own"
    );

    c.ok(&["start", &c.id]);
    wait_gone(pid, 20);
    assert_eq!(
        std::fs::read_to_string(c.m().join("out")).unwrap_or_default(),
        "done\n"
    );
    c.wait_status("stopped", 10);
    c.ok(&["delete", &c.id]);
    c.assert_gone();
    for m in cgroup_mounts() {
        for cg in &cgroups {
            let p = m.join(cg.trim_start_matches('/'));
            assert!(!p.exists(), "{} left after delete", p.display());
        }
    }
    let (added, removed) = lasting_differences(&mounts_before, ours);
    assert!(
        added.is_empty() && removed.is_empty(),
        "mounts changed: +{added:?} -{removed:?}"
    );
}

#[test]
fn start_runs_the_workload_and_kill_signals_it() {
    if !root_or_skip("start_runs_the_workload_and_kill_signals_it") {
        return;
    }
    subreaper();
    let c = Oci::new();
    c.config(&["sh", "-c", TRAPPING], |_| {});
    let pid = c.create();
    c.ok(&["start", &c.id]);
    assert_eq!(c.state()["status"], "running");
    let argv = within(5, || {
        let a = cmdline(pid);
        (a.first().map(String::as_str) == Some("sh")).then_some(a)
    })
    .expect("the workload runs as the container's pid after start");
    assert_eq!(argv.get(2).map(String::as_str), Some(TRAPPING));
    assert!(within(10, || c.m().join("ready").exists().then_some(())).is_some());

    c.ok(&["kill", &c.id, "SIGUSR1"]);
    let got = within(10, || std::fs::read_to_string(c.m().join("usr1")).ok());
    assert_eq!(
        got.as_deref(),
        Some("usr1\n"),
        "SIGUSR1 did not reach the trap"
    );
    assert!(!reaped(pid), "SIGUSR1 ended the workload");

    c.ok(&["kill", &c.id, "9"]);
    wait_gone(pid, 10);
    c.wait_status("stopped", 10);
    let out = c.oci(&["kill", &c.id, "9"]);
    assert!(
        !out.status.success(),
        "kill of a stopped container succeeded"
    );
    c.ok(&["delete", &c.id]);
    c.assert_gone();
}

#[test]
fn delete_force_kills_a_running_container() {
    if !root_or_skip("delete_force_kills_a_running_container") {
        return;
    }
    subreaper();
    let c = Oci::new();
    c.config(&["sh", "-c", TRAPPING], |_| {});
    let pid = c.create();
    c.ok(&["start", &c.id]);
    assert!(within(10, || c.m().join("ready").exists().then_some(())).is_some());
    let out = c.oci(&["delete", &c.id]);
    assert!(
        !out.status.success(),
        "delete of a running container succeeded"
    );
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert!(!reaped(pid), "a refused delete killed the workload");
    c.ok(&["delete", "--force", &c.id]);
    wait_gone(pid, 10);
    c.assert_gone();
    // Deleting nothing with --force is fine (engines do it after a failed create).
    c.ok(&["delete", "--force", &c.id]);
    // A created container (never started) is deleted without --force, as by runc: its
    // waiting process is killed.
    let pid = c.create();
    assert!(!reaped(pid), "the created process is gone before delete");
    c.ok(&["delete", &c.id]);
    wait_gone(pid, 10);
    assert!(!c.m().join("usr1").exists());
    c.assert_gone();
}

const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn hook(dir: &Path, kind: &str, fail: bool) -> serde_json::Value {
    let d = dir.display();
    let script = if fail {
        format!("echo {kind} >> {d}/order; echo no way >&2; exit 3")
    } else {
        format!("cat > {d}/{kind}.json; echo {kind} >> {d}/order")
    };
    serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 20})
}

#[test]
fn hooks_run_in_order_with_the_state_json() {
    if !root_or_skip("hooks_run_in_order_with_the_state_json") {
        return;
    }
    subreaper();
    let c = Oci::new();
    let hooks_dir = c.dir.join("hooks");
    std::fs::create_dir_all(&hooks_dir).expect("hooks dir");
    c.config(&["sh", "-c", "exit 0"], |cfg| {
        for k in HOOKS {
            cfg["hooks"][k] = serde_json::json!([hook(&hooks_dir, k, false)]);
        }
    });
    let pid = c.create();
    c.ok(&["start", &c.id]);
    wait_gone(pid, 20);
    c.wait_status("stopped", 10);
    c.ok(&["delete", &c.id]);
    c.assert_gone();
    let order = std::fs::read_to_string(hooks_dir.join("order")).unwrap_or_default();
    assert_eq!(order.lines().collect::<Vec<_>>(), HOOKS, "hooks' order");
    let bundle = std::fs::canonicalize(c.bundle()).expect("bundle");
    for k in HOOKS {
        let text = std::fs::read_to_string(hooks_dir.join(format!("{k}.json"))).expect(k);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{k}: {e}: {text}"));
        assert_eq!(v["id"], c.id.as_str(), "{k}: {v}");
        assert_eq!(v["bundle"], bundle.to_str().unwrap_or(""), "{k}: {v}");
        let status = v["status"].as_str().unwrap_or("");
        match k {
            "poststart" => assert_eq!(status, "running", "{k}: {v}"),
            "poststop" => assert_eq!(status, "stopped", "{k}: {v}"),
            _ => assert!(matches!(status, "creating" | "created"), "{k}: {v}"),
        }
        if k != "poststop" {
            assert_eq!(v["pid"], pid, "{k}: {v}");
        }
    }
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    if !root_or_skip("a_failing_create_runtime_hook_fails_create_and_leaves_nothing") {
        return;
    }
    subreaper();
    let c = Oci::new();
    let hooks_dir = c.dir.join("hooks");
    std::fs::create_dir_all(&hooks_dir).expect("hooks dir");
    c.config(&["sh", "-c", "echo ran > /m/ran"], |cfg| {
        cfg["hooks"]["prestart"] = serde_json::json!([hook(&hooks_dir, "prestart", false)]);
        cfg["hooks"]["createRuntime"] =
            serde_json::json!([hook(&hooks_dir, "createRuntime", true)]);
        cfg["hooks"]["poststart"] = serde_json::json!([hook(&hooks_dir, "poststart", false)]);
    });
    let pid_file = c.dir.join("pid");
    let b = c.bundle();
    let out = c.oci(&[
        "create",
        "--bundle",
        b.to_str().unwrap_or(""),
        "--pid-file",
        pid_file.to_str().unwrap_or(""),
        &c.id,
    ]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {err}");
    assert!(err.contains("createRuntime"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    let order = std::fs::read_to_string(hooks_dir.join("order")).unwrap_or_default();
    assert_eq!(order, "prestart\ncreateRuntime\n");
    assert!(!pid_file.exists(), "a failed create left its pid file");
    assert!(!c.m().join("ran").exists(), "the workload ran");
    let dir = c.root().join("containers").join(&c.id);
    assert!(
        !dir.exists(),
        "a failed create left {}: {:?}",
        dir.display(),
        tree(&dir)
    );
    let parent = stagebox::state::dir::cgroup_parent(&c.root());
    let cg = cgroups_named(&[&c.id]);
    assert!(cg.is_empty(), "cgroups left: {cg:?} (parent {parent})");
    assert!(mounts_mentioning(&c.dir).is_empty());
    let state = c.oci(&["state", &c.id]);
    assert!(
        !state.status.success(),
        "state of a failed create succeeded"
    );
}

#[test]
fn bad_input_is_one_sentence_and_leaves_nothing() {
    if !root_or_skip("bad_input_is_one_sentence_and_leaves_nothing") {
        return;
    }
    subreaper();
    let c = Oci::new();
    let b = c.bundle();
    let b = b.to_str().unwrap_or("");
    let create = |id: &str| c.oci(&["create", "--bundle", b, id]);
    let check = |what: &str, out: Output, wants: &[&str]| {
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what}: exit 0");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one sentence: {err}");
        assert!(err.starts_with("stagebox: "), "{what}: {err}");
        for w in wants {
            assert!(err.contains(w), "{what}: {err:?} does not say {w:?}");
        }
        assert!(
            text(&out.stdout).is_empty(),
            "{what}: stdout {}",
            text(&out.stdout)
        );
        let recs = tree(&c.root().join("containers"));
        assert!(recs.is_empty(), "{what}: records left: {recs:?}");
        let cg = cgroups_named(&[&c.id]);
        assert!(cg.is_empty(), "{what}: cgroups left: {cg:?}");
        assert!(mounts_mentioning(&c.dir).is_empty(), "{what}: mounts left");
    };
    let file = c.bundle().join("config.json");

    c.config(&["true"], |_| {});
    let good = std::fs::read_to_string(&file).expect("config");
    let bad = good.replacen("\"args\": [", "\"args\": 7, \"x\": [", 1);
    assert_ne!(bad, good);
    let line = bad
        .lines()
        .position(|l| l.contains("\"args\": 7"))
        .expect("the bad line")
        + 1;
    std::fs::write(&file, &bad).expect("write");
    check(
        "a config that does not parse",
        create(&c.id),
        &["process.args", &format!("line {line}")],
    );

    c.config(&["true"], |v| v["ociVersion"] = "2.0.0".into());
    check("ociVersion 2.0.0", create(&c.id), &["ociVersion", "2.0.0"]);

    c.config(&["true"], |v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(serde_json::json!({"type": "bogus"}))
    });
    check(
        "an unknown namespace",
        create(&c.id),
        &["namespaces", "bogus"],
    );

    c.config(&["true"], |v| v["root"]["path"] = "no-such-rootfs".into());
    check("no rootfs", create(&c.id), &["root.path", "no-such-rootfs"]);

    c.config(&["true"], |_| {});
    check("start of nothing", c.oci(&["start", &c.id]), &[&c.id]);
    check("state of nothing", c.oci(&["state", &c.id]), &[&c.id]);
    check("kill of nothing", c.oci(&["kill", &c.id, "9"]), &[&c.id]);
    check("delete of nothing", c.oci(&["delete", &c.id]), &[&c.id]);
    check("an invalid id", create("a/b"), &["a/b"]);
    assert!(!c.bundle().join("rootfs/a").exists());
    c.assert_gone_but_root_dir();
}

impl Oci {
    /// [`Oci::assert_gone`] where the failed command may have made the (empty) --root.
    fn assert_gone_but_root_dir(&self) {
        let left: Vec<PathBuf> = tree(&self.root())
            .into_iter()
            .filter(|p| p != Path::new("containers"))
            .collect();
        assert!(left.is_empty(), "--root: {left:?}");
        assert!(tree(&self.root().join("containers")).is_empty());
        assert!(cgroups_named(&[&self.id]).is_empty());
        assert!(mounts_mentioning(&self.dir).is_empty());
    }
}

#[test]
fn the_trace_goes_to_the_log_and_stdout_stays_the_workloads() {
    if !root_or_skip("the_trace_goes_to_the_log_and_stdout_stays_the_workloads") {
        return;
    }
    subreaper();
    let c = Oci::new();
    c.config(&["echo", "hello"], |_| {});
    let log = c.dir.join("log");
    let root = c.root();
    let b = c.bundle();
    let out = bounded(
        cmd(&[
            "--root",
            root.to_str().unwrap_or(""),
            "--trace",
            "json",
            "--log",
            log.to_str().unwrap_or(""),
            "run",
            "--bundle",
            b.to_str().unwrap_or(""),
            &c.id,
        ]),
        CMD_SECS,
    );
    assert!(out.status.success(), "run: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "hello\n",
        "stdout is the workload's alone"
    );
    assert!(
        !text(&out.stderr).contains("\"stage\""),
        "{}",
        text(&out.stderr)
    );
    let lines = std::fs::read_to_string(&log).expect("the log");
    let stages: Vec<String> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
            v["stage"].as_str().unwrap_or("").to_string()
        })
        .collect();
    for s in ["cgroup", "mount", "exec"] {
        assert!(
            stages.iter().any(|x| x == s),
            "no {s} stage in the log: {stages:?}"
        );
    }
    c.assert_gone();

    // STAGEBOX_TRACE=pretty, no --log: the trace on stderr, stdout still clean.
    let mut pretty = cmd(&[
        "--root",
        root.to_str().unwrap_or(""),
        "run",
        "--bundle",
        b.to_str().unwrap_or(""),
        &c.id,
    ]);
    pretty.env("STAGEBOX_TRACE", "pretty");
    let out = bounded(pretty, CMD_SECS);
    assert!(out.status.success(), "run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    let err = text(&out.stderr);
    assert!(err.contains("▶ cgroup") && err.contains("mkdir("), "{err}");
    c.assert_gone();
}

#[test]
fn features_and_spec() {
    if !root_or_skip("features_and_spec") {
        return;
    }
    subreaper();
    let c = Oci::new();
    let f: serde_json::Value =
        serde_json::from_str(&c.ok(&["features"])).expect("features is JSON");
    assert!(
        f["ociVersionMin"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{f}"
    );
    assert!(
        f["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{f}"
    );
    assert!(f["hooks"].as_array().is_some_and(|h| h.len() == 6), "{f}");

    let b = c.bundle();
    let bs = b.to_str().unwrap_or("");
    c.ok(&["spec", "--bundle", bs]);
    let file = b.join("config.json");
    let written = std::fs::read_to_string(&file).expect("config.json");
    let out = c.oci(&["spec", "--bundle", bs]);
    assert!(!out.status.success(), "spec overwrote config.json");
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).expect("config"), written);

    let mut v: serde_json::Value = serde_json::from_str(&written).expect("spec JSON");
    v["root"]["path"] = b.join("rootfs").to_str().unwrap_or("").into();
    v["process"]["terminal"] = false.into();
    v["process"]["args"] = serde_json::json!(["sh", "-c", "exit 0"]);
    std::fs::write(&file, v.to_string()).expect("write");
    let pid = c.create();
    assert_eq!(c.state()["status"], "created");
    c.ok(&["start", &c.id]);
    wait_gone(pid, 20);
    c.wait_status("stopped", 10);
    c.ok(&["delete", &c.id]);
    c.assert_gone();
}
