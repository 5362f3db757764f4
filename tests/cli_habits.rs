//! Docker's CLI habits on `stagebox run`, checked against the real kernel: did-you-mean for
//! a mistyped flag, `-h` as the hostname, `--pid host` and friends, `--env-file`, `--mount`,
//! `--tmpfs`, `--ulimit`, the command looked up after the volumes are mounted (127, 126),
//! and `--init` as PID 1 (signals forwarded, zombies reaped).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The tests compare the state directory and the cgroups before and after: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This test binary's own state directory (its default rootfs made once).
fn state() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-habits-state");
        std::fs::create_dir_all(&d).expect("state dir");
        d
    })
}

fn sb(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--state")
        .arg(state())
        .args(args)
        .env("TMPDIR", private_tmp())
        .env("NO_COLOR", "1")
        .env_remove("STAGEBOX_TRACE")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = sb(args).output().expect("run stagebox");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn containers() -> Vec<String> {
    std::fs::read_dir(state().join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_mistyped_flag_is_an_error_with_a_suggestion() {
    let _g = serial();
    let (code, out, err) = run(&["run", "--hostnme", "x", "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("unexpected argument '--hostnme'") && err.contains("'--hostname'"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    // Not read as an image any more.
    let (code, _, err) = run(&["run", "-Z", "default", "true"]);
    assert_eq!(code, 125);
    assert!(!err.contains("no image"), "{err}");
}

#[test]
fn long_help_prints_usage_and_short_h_is_the_hostname() {
    let _g = serial();
    let (code, out, _) = run(&["run", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage:") && out.contains("--hostname"),
        "{out}"
    );
    if !root_or_skip("short_h_is_the_hostname") {
        return;
    }
    let (code, out, err) = run(&[
        "run", "--rm", "--trace", "off", "-h", "lab", "--", "hostname",
    ]);
    assert_eq!((code, out.trim()), (0, "lab"), "{err}");
}

#[test]
fn pid_host_shares_the_hosts_pid_namespace_and_the_plan_says_so() {
    let _g = serial();
    if !root_or_skip("pid_host") {
        return;
    }
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--pid",
        "host",
        "--trace-stages",
        "pid",
        "--",
        "readlink",
        "/proc/self/ns/pid",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), host_ns("pid"));
    assert!(
        err.contains("(--pid host)"),
        "the trace names the flag: {err}"
    );
    let (code, out, _) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "--",
        "readlink",
        "/proc/self/ns/pid",
    ]);
    assert_eq!(code, 0);
    assert_ne!(out.trim(), host_ns("pid"), "private is the default");
    let (code, _, err) = run(&["run", "--ipc", "shared", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--ipc \"shared\" is not a mode"), "{err}");
}

#[test]
fn a_hostname_without_the_uts_stage_is_refused() {
    let _g = serial();
    let before = containers();
    for flags in [&["--uts", "host"][..], &["--without", "uts"][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--hostname", "x", "--", "true"]);
        let (code, _, err) = run(&args);
        assert_eq!(code, 125, "{err}");
        assert!(
            err.contains("needs the uts stage") && err.contains("the host's"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(containers(), before);
}

#[test]
fn env_file_mount_and_tmpfs() {
    let _g = serial();
    if !root_or_skip("env_file_mount_and_tmpfs") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("env");
    std::fs::write(
        &f,
        "# a comment\n\nA=1\nB=two words\nCALLER_VAR\nGONE_VAR\n",
    )
    .unwrap();
    let out = sb(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "--env-file",
        f.to_str().unwrap(),
        "-e",
        "A=from-e",
        "--",
        "sh",
        "-c",
        "echo \"$A|$B|$CALLER_VAR|${GONE_VAR-unset}\"",
    ])
    .env("CALLER_VAR", "mine")
    .env_remove("GONE_VAR")
    .output()
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from-e|two words|mine|unset",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = run(&["run", "--env-file", "/nonexistent-env-file", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("--env-file /nonexistent-env-file"), "{err}");

    // tmpfs, both ways: mountinfo inside shows a tmpfs there; nothing on the host.
    let host_before = host_mounts();
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "--mount",
        "type=tmpfs,target=/t",
        "--tmpfs",
        "/u:size=1m",
        "--",
        "cat",
        "/proc/self/mountinfo",
    ]);
    assert_eq!(code, 0, "{err}");
    for (path, size) in [("/t", None), ("/u", Some("size=1024k"))] {
        let line = out
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(path))
            .unwrap_or_else(|| panic!("no mount at {path}:\n{out}"));
        assert!(line.contains(" - tmpfs "), "{line}");
        if let Some(s) = size {
            assert!(line.contains(s), "{line}");
        }
    }
    assert_eq!(host_mounts(), host_before);

    // --mount type=bind, read-only.
    std::fs::write(d.path().join("hello"), "hi\n").unwrap();
    let m = format!("type=bind,source={},target=/b,readonly", d.path().display());
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "--mount",
        &m,
        "--",
        "sh",
        "-c",
        "cat /b/hello; touch /b/x || echo ro",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hi\nro\n");
    assert!(!d.path().join("x").exists());
    let (code, _, err) = run(&["run", "--mount", "type=nfs,target=/x", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown type \"nfs\""), "{err}");
}

#[test]
fn ulimit_is_set_in_the_container() {
    let _g = serial();
    if !root_or_skip("ulimit") {
        return;
    }
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--trace-stages",
        "uts",
        "--ulimit",
        "nofile=100:200",
        "--",
        "grep",
        "Max open files",
        "/proc/self/limits",
    ]);
    assert_eq!(code, 0, "{err}");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&f[3..5], &["100", "200"], "{out}");
    assert!(
        err.contains("prlimit(") && err.contains("RLIMIT_NOFILE"),
        "{err}"
    );
    let (code, _, err) = run(&["run", "--ulimit", "nofiles=1", "--", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown limit \"nofiles\""), "{err}");
}

#[test]
fn the_command_is_looked_up_after_the_volumes_with_dockers_exit_codes() {
    let _g = serial();
    if !root_or_skip("command_lookup") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("hello.sh"),
        "#!/bin/sh\necho hello from a volume\n",
    )
    .unwrap();
    std::fs::write(d.path().join("plain.sh"), "#!/bin/sh\necho no\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.path().join("hello.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        d.path().join("plain.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let v = format!("{}:/v", d.path().display());
    let before = containers();
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "-v",
        &v,
        "--",
        "/v/hello.sh",
    ]);
    assert_eq!((code, out.as_str()), (0, "hello from a volume\n"), "{err}");
    let (code, out, err) = run(&["run", "--rm", "--trace", "off", "--", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(out.is_empty());
    assert_eq!(
        err.trim(),
        "stagebox: exec: \"no-such-command\": executable file not found in $PATH"
    );
    let (code, _, err) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "-v",
        &v,
        "--",
        "/v/missing",
    ]);
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("stat /v/missing: no such file or directory"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "-v",
        &v,
        "--",
        "/v/plain.sh",
    ]);
    assert_eq!(code, 126, "{err}");
    assert_eq!(
        err.trim(),
        "stagebox: exec: \"/v/plain.sh\": permission denied"
    );
    assert_eq!(containers(), before, "nothing left behind");
    // No container cgroup left under this state directory's parent, in any hierarchy.
    let parent = stagebox::state::dir::cgroup_parent(state());
    let roots = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .chain([PathBuf::from("/sys/fs/cgroup")]);
    let mut seen = 0;
    for dir in roots.map(|r| r.join(&parent)).filter(|d| d.is_dir()) {
        seen += 1;
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "cgroups left under {}: {left:?}",
            dir.display()
        );
    }
    // The place looked at is the right one: a container's cgroup is under that parent.
    let (_, out, _) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "--without",
        "cgroupns",
        "--",
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(
        out.contains(&format!(":/{parent}/")),
        "{parent} not in {out}"
    );
    let _ = seen;
    // --probe still runs stagebox's own file.
    let (code, out, err) = run(&["run", "--rm", "--trace", "off", "--probe"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
}

fn spawn_named(name: &str, extra: &[&str], script: &str) -> std::process::Child {
    let mut args = vec!["run", "--rm", "--trace", "off", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    sb(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The host pid of the container's PID 1, once its record says running.
fn pid1(name: &str) -> i32 {
    within_2s(|| {
        let (code, out, _) = run(&["inspect", "-f", "pid", name]);
        let pid: i32 = out.trim().parse().ok()?;
        (code == 0 && pid > 0).then_some(pid)
    })
    .unwrap_or_else(|| panic!("{name} never ran"))
}

fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn init_is_pid_1_forwards_sigterm_and_reaps_orphans() {
    let _g = serial();
    if !root_or_skip("init") {
        return;
    }
    // PID 1 inside is stagebox init; the command is its child.
    let (code, out, err) = run(&[
        "run",
        "--rm",
        "--trace",
        "off",
        "--init",
        "--",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap_or("")
            .starts_with("stagebox init -- /bin/sh"),
        "{out}"
    );
    assert_ne!(lines.next(), Some("1"), "the shell is not PID 1: {out}");

    // SIGTERM to the container's PID 1 (init) reaches the shell, which dies of it: 143.
    let name = format!("habits-init-{}", std::process::id());
    let mut c = spawn_named(&name, &["--init"], "sleep 100");
    let p = pid1(&name);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let code = wait_bounded(&mut c, Duration::from_secs(5));
    assert_eq!(code, Some(143), "init forwarded SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(3));

    // Without --init, a shell as PID 1 ignores SIGTERM: still alive after 1.5 s; SIGKILL ends it.
    let name = format!("habits-noinit-{}", std::process::id());
    let mut c = spawn_named(&name, &[], "trap - TERM; sleep 100");
    let p = pid1(&name);
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        wait_bounded(&mut c, Duration::from_millis(1500)),
        None,
        "PID 1 shell died of SIGTERM"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(wait_bounded(&mut c, Duration::from_secs(5)), Some(137));

    // An orphan that ends becomes a zombie until PID 1 waits for it. PID 1's child makes an
    // orphan that exits at once, then execs `sleep`, which never waits: without --init the
    // orphan stays a zombie child of PID 1 (seen from the host); with --init, init reaps it.
    let script = "sh -c 'sleep 0.2 &'; exec sleep 30";
    for (init, want_zombie) in [(true, false), (false, true)] {
        let name = format!("habits-zombie-{init}-{}", std::process::id());
        let extra: &[&str] = if init { &["--init"] } else { &[] };
        let mut c = spawn_named(&name, extra, script);
        let p = pid1(&name);
        std::thread::sleep(Duration::from_millis(1200));
        let zombies: Vec<i32> = children(p)
            .into_iter()
            .chain(children(p).into_iter().flat_map(children))
            .filter(|c| state_of(*c) == Some('Z'))
            .collect();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert!(wait_bounded(&mut c, Duration::from_secs(5)).is_some());
        assert_eq!(
            !zombies.is_empty(),
            want_zombie,
            "--init {init}: zombies {zombies:?}"
        );
    }
}

/// The pids whose parent is `pid`, from /proc.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|c| parent_of(*c) == Some(pid))
        .collect()
}

/// A process's state letter from /proc/PID/stat.
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}
