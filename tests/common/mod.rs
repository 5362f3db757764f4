//! Shared helpers for the integration tests: run the real binary, skip (loudly) without
//! root, read what the kernel shows from the outside.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stagebox")
}

/// True when the test can go on. Without root it prints why it skips; with
/// STAGEBOX_REQUIRE_ROOT=1 (as in CI) a skip is a failure.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("STAGEBOX_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: needs root, and STAGEBOX_REQUIRE_ROOT=1 forbids skipping");
    }
    eprintln!("SKIP {test}: needs root (namespaces, mounts); run the tests as root to include it");
    false
}

/// One state dir for the whole test binary, so the default rootfs is made once.
pub fn state_dir() -> &'static Path {
    // Under target/tmp (cargo's CARGO_TARGET_TMPDIR), not /tmp: the default rootfs there is
    // a cache kept between runs, and /tmp stays exactly as the tests found it.
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("state");
        std::fs::create_dir_all(&d).expect("state dir");
        let _ =
            stagebox::rootfs::default::ensure(&d, stagebox::rootfs::default::RootfsSource::Auto);
        d
    })
}

pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env("STAGEBOX_STATE", state_dir())
        .env("NO_COLOR", "1")
        .env_remove("STAGEBOX_TRACE")
        .stdin(Stdio::null());
    c
}

pub fn stagebox(args: &[&str]) -> Output {
    cmd(args).output().expect("run stagebox")
}

/// `stagebox run --trace off ARGS -- sh -c SCRIPT`; returns (exit code, stdout, stderr).
pub fn sh(args: &[&str], script: &str) -> (i32, String, String) {
    let mut all: Vec<&str> = vec!["run", "--rm", "--trace", "off"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let out = stagebox(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like `sh` but asserts the workload exited 0 and returns stdout.
pub fn sh_ok(args: &[&str], script: &str) -> String {
    let (code, out, err) = sh(args, script);
    assert_eq!(
        code, 0,
        "stagebox {args:?} -- sh -c {script:?} failed\nstdout: {out}\nstderr: {err}"
    );
    out
}

pub fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .expect("read own ns link")
        .to_string_lossy()
        .into_owned()
}

/// The host's mount table as "mount_point fstype source" lines, sorted.
pub fn host_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-").unwrap_or(f.len() - 1);
            format!(
                "{} {} {}",
                f[4],
                f.get(dash + 1).unwrap_or(&""),
                f.get(dash + 2).unwrap_or(&"")
            )
        })
        .collect();
    v.sort();
    v
}

/// What is in `after` and not in `before`, and the other way round.
pub fn differences<T: PartialEq + Clone>(before: &[T], after: &[T]) -> (Vec<T>, Vec<T>) {
    let added = after
        .iter()
        .filter(|x| !before.contains(x))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|x| !after.contains(x))
        .cloned()
        .collect();
    (added, removed)
}

/// Every file and directory under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(base, &p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Processes whose parent is this test process (a leaked container would show up here).
pub fn my_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(pid) = name.parse::<i32>() {
                if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    // field 4 is the ppid; the comm (field 2) may hold spaces, so split after ')'
                    if let Some(rest) = st.rsplit(')').next() {
                        let f: Vec<&str> = rest.split_whitespace().collect();
                        if f.get(1) == Some(&me.as_str()) {
                            v.push(pid);
                        }
                    }
                }
            }
        }
    }
    v
}

/// Starts `stagebox run --rm --trace off -- /bin/sh -c SCRIPT` and waits until the script
/// printed its first line, which must be `ready`. Returns the child and the rest of stdout.
pub fn spawn_ready(
    script: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    let mut child = cmd(&[
        "run", "--rm", "--trace", "off", "--", "/bin/sh", "-c", script,
    ])
    .stdout(Stdio::piped())
    .spawn()
    .expect("start stagebox");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the first line");
    assert_eq!(line.trim(), "ready", "the workload did not start");
    (child, out)
}
