//! Shared helpers for the integration tests: run the real binary, skip (loudly) without
//! root, read what the kernel shows from the outside.
#![allow(dead_code)]

pub mod redact;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Where the tests' state dir is: under target/tmp (cargo's CARGO_TARGET_TMPDIR), not /tmp:
/// the default rootfs there is a cache kept between runs, and /tmp stays exactly as the
/// tests found it. The tests pass it to every stagebox they start, whether STAGEBOX_STATE
/// is exported or not.
pub fn state_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("state")
}

/// One state dir for the whole test binary, so the default rootfs is made once.
pub fn state_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = state_path();
        std::fs::create_dir_all(&d).expect("state dir");
        let _ =
            stagebox::rootfs::default::ensure(&d, stagebox::rootfs::default::RootfsSource::Auto);
        d
    })
}

/// A TMPDIR of this test binary's own, given to every stagebox it starts: whatever stagebox
/// puts in the temp dir lands here, where no other program on the host writes.
pub fn private_tmp() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tmpdir");
        std::fs::create_dir_all(&d).expect("private TMPDIR");
        d
    })
}

pub fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env("STAGEBOX_STATE", state_dir())
        .env("TMPDIR", private_tmp())
        .env("NO_COLOR", "1")
        .env_remove("STAGEBOX_TRACE")
        .stdin(Stdio::null());
    c
}

pub fn stagebox(args: &[&str]) -> Output {
    cmd(args).output().expect("run stagebox")
}

/// `stagebox run --rm --trace off ARGS -- /bin/sh -c SCRIPT MARKER`, with a fresh marker as
/// the script's `$0`; returns (exit code, stdout, stderr, the marker). A process the script
/// leaves in the background keeps the marker in its command line when it is started as
/// `sh -c 'while :; do sleep 1; done' "$0" &`.
pub fn sh_marked(args: &[&str], script: &str) -> (i32, String, String, String) {
    let m = marker();
    let mut all: Vec<&str> = vec!["run", "--rm", "--trace", "off"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
    let out = stagebox(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        m,
    )
}

/// `sh_marked` without the marker, after checking that no process of the run is left.
pub fn sh(args: &[&str], script: &str) -> (i32, String, String) {
    let (code, out, err, m) = sh_marked(args, script);
    assert_none_left(&m, &format!("stagebox {args:?} -- sh -c {script:?}"));
    (code, out, err)
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

/// The host's mounts without the leak-check tmpfs of `stagebox compare` runs: another test
/// binary or checkout may be running one (tests/compare.rs checks its own, by their tokens).
pub fn host_mounts_but_compare_leaks() -> Vec<String> {
    host_mounts()
        .into_iter()
        .filter(|m| !m.contains(" stagebox-leak-"))
        .collect()
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

/// What is in `now()` and not in `before`, and the other way round, counting only what is
/// still so after 2 s, in every look. Other programs on a shared host (another checkout's
/// tests) make and remove mounts and /tmp entries of their own for a moment, one after the
/// other; what a finished stagebox run left stays.
pub fn lasting_differences<T: PartialEq + Clone>(
    before: &[T],
    now: impl Fn() -> Vec<T>,
) -> (Vec<T>, Vec<T>) {
    let (mut added, mut removed) = differences(before, &now());
    for _ in 0..20 {
        if added.is_empty() && removed.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (a, r) = differences(before, &now());
        added.retain(|x| a.contains(x));
        removed.retain(|x| r.contains(x));
    }
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

/// A marker for one workload: `sbtest-<test pid>-<n>`, unique on this host while the test
/// runs. It goes into the command line of every process the workload starts, so that a
/// process left behind is found wherever it was reparented to (see [`marked_processes`]).
pub fn marker() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sbtest-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every live process with `marker` as one of its arguments, as "PID: command line". A leaked
/// process is reparented to a subreaper or to init, so it is looked for by what it runs, in
/// all of /proc, not among this test's children. Zombies have no command line: they are
/// not counted (they hold no resources but their pid).
pub fn marked_processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == marker) {
            found.push(format!("{name}: {}", args.join(" ")));
        }
    }
    found.sort();
    found
}

/// The pids of [`marked_processes`]. A shell carrying the marker shows twice for a moment
/// each time it forks a command (the child has its command line until it execs).
pub fn marked_pids(marker: &str) -> Vec<i32> {
    marked_processes(marker)
        .iter()
        .filter_map(|p| p.split(':').next()?.parse().ok())
        .collect()
}

/// A process's parent, from /proc/PID/stat (None once it is gone).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: the fields after it follow the last ')'.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Polls `found` until it returns Some, for up to 2 s (a process being exec'd shows an
/// empty command line for a moment).
pub fn within_2s<T>(found: impl Fn() -> Option<T>) -> Option<T> {
    within(2, found)
}

/// `found()` polled every 20 ms for up to `secs` seconds (a loaded CI machine is slow to
/// start a process).
pub fn within<T>(secs: u64, found: impl Fn() -> Option<T>) -> Option<T> {
    for _ in 0..secs * 50 {
        if let Some(t) = found() {
            return Some(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    found()
}

/// Kills every process carrying the marker when dropped, also when a test panics.
pub struct KillMarked(pub String);

impl Drop for KillMarked {
    fn drop(&mut self) {
        for _ in 0..100 {
            let pids = marked_pids(&self.0);
            if pids.is_empty() {
                return;
            }
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Fails when a process carrying `marker` is still alive: after up to 2 s, for a process
/// killed a moment ago to be gone.
pub fn assert_none_left(marker: &str, what: &str) {
    let mut left = marked_processes(marker);
    for _ in 0..100 {
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        left = marked_processes(marker);
    }
    panic!(
        "{what}: processes left behind (marker {marker}):\n{}",
        left.join("\n")
    );
}

/// Starts `stagebox run --rm --trace off -- /bin/sh -c SCRIPT MARKER` and waits until the
/// script printed its first line, which must be `ready`. Returns the child, the rest of
/// stdout and the marker (the script's `$0`).
pub fn spawn_ready(
    script: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::BufRead;
    let m = marker();
    let mut child = cmd(&[
        "run", "--rm", "--trace", "off", "--", "/bin/sh", "-c", script, &m,
    ])
    .stdout(Stdio::piped())
    .spawn()
    .expect("start stagebox");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the first line");
    assert_eq!(line.trim(), "ready", "the workload did not start");
    (child, out, m)
}

/// `mdbook build BOOK --dest-dir DEST`, asserting it succeeds: the one way the tests render
/// the book (a test of chapters, a test in a browser).
pub fn mdbook_build(mdbook: &Path, book: &Path, dest: &Path) {
    let run = Command::new(mdbook)
        .arg("build")
        .arg(book)
        .arg("--dest-dir")
        .arg(dest)
        .output()
        .expect("run mdbook");
    assert!(
        run.status.success(),
        "mdbook build failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Whether a link name is one stagebox's runs make and remove on their own while tests run in
/// parallel: the default bridge `stagebox0`, a network's `stagebox-<6 hex>`, a container's
/// `veth<7 hex>`.
pub fn is_runtime_link(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    name == "stagebox0"
        || name.strip_prefix("stagebox-").is_some_and(|h| hex(h, 6))
        || name.strip_prefix("veth").is_some_and(|h| hex(h, 7))
}

/// The host's links (`ip -o link`) and routes (`ip route`), without those of the containers
/// other tests run meanwhile ([`is_runtime_link`]): what a test that makes links of its own
/// compares before and after.
pub fn host_network() -> (String, String) {
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let links: String = ip(&["-o", "link"])
        .lines()
        .filter(|l| {
            let name = l.split(": ").nth(1).unwrap_or("");
            let name = name.split('@').next().unwrap_or(name);
            !is_runtime_link(name)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let routes: String = ip(&["route"])
        .lines()
        .filter(|l| {
            let dev = l
                .split(" dev ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("");
            !is_runtime_link(dev)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (links, routes)
}
