//! Cgroups when rootless, on this host's real kernel: a run by uid 65534 (started from a root
//! test with the groups cleared, as `setpriv --reuid 65534 --regid 65534 --clear-groups`
//! does) has no cgroup of its own where no cgroup v2 subtree is delegated to it, and refuses
//! a limit in one sentence with nothing made; a cgroup2 directory chowned to it is found as
//! a delegation on a pure v2 host (and its limits set there), and refused as one on a hybrid
//! host, whose controllers are in v1. Needs root (skips loudly without it).
//!
//! The tests run one at a time (a lock): the cgroup checks must not see another test's
//! directories.

mod common;
use common::*;
use stagebox::cgroup::delegation::{self, Who};
use stagebox::cgroup::{CgroupRoot, Layout, LayoutKind};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const NOBODY: u32 = 65534;

fn nobody() -> Who {
    Who {
        uid: NOBODY,
        gids: vec![NOBODY],
    }
}

/// A home for uid 65534: a directory it owns (state, TMPDIR, XDG_DATA_HOME), and a stagebox
/// binary it can reach (the one cargo built when the way there is open to everyone, else a
/// copy in the home). Removed on drop.
struct Home {
    dir: PathBuf,
    bin: PathBuf,
}

impl Home {
    fn new() -> Home {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let home = make_home(&base);
        if let Some(h) = home.filter(|h| h.reaches(&h.bin)) {
            return h;
        }
        // The target directory is not open to other users: a home under /tmp, with a copy.
        let mut h = make_home(&std::env::temp_dir()).expect("a home for uid 65534 under /tmp");
        let copy = h.dir.join("stagebox");
        std::fs::copy(bin(), &copy).expect("copy the stagebox binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        h.bin = copy;
        assert!(
            h.reaches(&h.bin),
            "uid 65534 cannot run {} even from its own home",
            h.bin.display()
        );
        h
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Whether uid 65534 can run `bin` and write its home.
    fn reaches(&self, bin: &Path) -> bool {
        let script = format!(
            "test -x '{}' && test -w '{}'",
            bin.display(),
            self.dir.display()
        );
        let mut c = Command::new("/bin/sh");
        c.args(["-c", &script]).stdin(Stdio::null());
        as_nobody(&mut c, None);
        c.status().is_ok_and(|s| s.success())
    }

    /// `stagebox ARGS` as uid 65534, moved into `join` (a cgroup2 directory) first when given.
    fn stagebox(&self, args: &[&str], join: Option<&Path>) -> Output {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("STAGEBOX_STATE", self.state())
            .env("TMPDIR", self.dir.join("tmp"))
            .env("HOME", &self.dir)
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env("NO_COLOR", "1")
            .env_remove("STAGEBOX_TRACE")
            .stdin(Stdio::null());
        as_nobody(&mut c, join);
        c.output().expect("run stagebox as uid 65534")
    }

    /// The container records in its state directory (none may be left by a refused run).
    fn records(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state().join("containers"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_home(base: &Path) -> Option<Home> {
    std::fs::create_dir_all(base).ok()?;
    let dir = tempfile::Builder::new()
        .prefix("rootless-")
        .tempdir_in(base)
        .ok()?
        .keep();
    for sub in ["", "state", "tmp", "data"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).ok()?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).ok()?;
        std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).ok()?;
    }
    Some(Home {
        dir,
        bin: PathBuf::from(bin()),
    })
}

/// In the child, before exec: join the cgroup (as root still), then drop to uid and gid
/// 65534 with no supplementary groups, as `setpriv --reuid 65534 --regid 65534
/// --clear-groups` does (real, effective and saved ids).
fn as_nobody(c: &mut Command, join: Option<&Path>) {
    let procs = join.map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).unwrap());
    // SAFETY: only async-signal-safe calls (open, write, close, setgroups, setres[ug]id) on
    // data made before the fork.
    unsafe {
        c.pre_exec(move || {
            if let Some(p) = &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(e);
                }
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(NOBODY, NOBODY, NOBODY) != 0
                || libc::setresuid(NOBODY, NOBODY, NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Every place a cgroup of this state directory could be made: `<parent>` at the top of
/// each hierarchy, and under `extra` (a delegated directory).
fn cgroups_of_state(state: &Path, extra: Option<&Path>) -> Vec<PathBuf> {
    let parent = stagebox::state::dir::cgroup_parent(state);
    let layout = Layout::detect().expect("mountinfo");
    let mut tops: Vec<PathBuf> = layout.v1.values().cloned().collect();
    tops.extend(layout.v1_named.iter().cloned());
    tops.extend(layout.v2.iter().cloned());
    tops.extend(extra.map(Path::to_path_buf));
    tops.sort();
    tops.dedup();
    tops.into_iter()
        .map(|t| t.join(&parent))
        .filter(|p| p.exists())
        .collect()
}

fn json_events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// This test process's cgroup v2 path (`0::/path`), and the layout.
fn own_v2_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    stagebox::cgroup::proc_cgroup_lines(&text)
        .into_iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| p)
        .unwrap_or_default()
}

/// The remedy the refusal must name on this host: delegation on pure v2, v2 itself else.
fn remedy_for(kind: LayoutKind) -> &'static str {
    match kind {
        LayoutKind::V2 => "systemd-run --user --scope -p Delegate=yes",
        _ => "systemd.unified_cgroup_hierarchy=1",
    }
}

/// The refusal: exit 125, one line on stderr naming the flags (`--memory needs`, `--memory,
/// --cpus need`) and the way to delegation, nothing on stdout (the workload never ran).
fn assert_refused(out: &Output, flags_need: &str, kind: LayoutKind, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(125),
        "{what}: exit status\nstderr: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: the workload ran: {:?}",
        out.stdout
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one sentence, not {lines:?}");
    let l = lines[0];
    assert!(
        l.starts_with(&format!(
            "stagebox: {flags_need} a cgroup of the container's own"
        )) && l.contains("as uid 65534")
            && l.contains(remedy_for(kind)),
        "{what}: {l}"
    );
}

/// A cgroup2 directory made for a test, chowned to uid 65534 as a delegation is (the
/// directory, cgroup.procs, cgroup.subtree_control, cgroup.threads), with a `leaf` the
/// runtime is started in. Removed on drop, with whatever was made below it.
struct Delegated {
    dir: PathBuf,
}

impl Delegated {
    fn new(mount: &Path) -> Delegated {
        let dir = mount.join(format!("stagebox-test-deleg-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("mkdir a test cgroup");
        let d = Delegated { dir };
        for f in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            let p = d.dir.join(f);
            if p.exists() {
                std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
            }
        }
        std::fs::create_dir(d.leaf()).expect("mkdir the leaf");
        d
    }

    fn leaf(&self) -> PathBuf {
        self.dir.join("leaf")
    }

    /// The cgroups below the directory (the leaf, and anything a run left).
    fn children(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = tree(&self.dir)
            .into_iter()
            .filter(|p| self.dir.join(p).is_dir())
            .collect();
        out.sort();
        out
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        // Deepest first; a process left inside is killed (cgroup.kill, else by pid).
        let mut dirs: Vec<PathBuf> = tree(&self.dir)
            .into_iter()
            .map(|p| self.dir.join(p))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        dirs.push(self.dir.clone());
        let root = CgroupRoot::host();
        for d in dirs {
            if !root.procs(&d).is_empty() {
                let _ = std::fs::write(d.join("cgroup.kill"), "1");
                let _ = stagebox::cgroup::kill_all_by_pid(&root, &d);
            }
            let _ = stagebox::cgroup::rmdir_retry(&root, &d);
        }
    }
}

/// Needs no change outside this crate's library: the library finds no delegation for uid
/// 65534 where this test runs (it is root's cgroup), and a chowned cgroup2 directory is
/// found as one on a pure v2 host, and not on v1 or hybrid hosts. Reads the real tree.
#[test]
fn a_chowned_cgroup2_directory_is_a_delegation_only_on_a_pure_v2_host() {
    if !root_or_skip("a_chowned_cgroup2_directory_is_a_delegation_only_on_a_pure_v2_host") {
        return;
    }
    let _g = serial();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let layout = Layout::from_mountinfo(&mi);
    let own = format!("0::{}\n", own_v2_cgroup());
    let host = CgroupRoot::host();
    let none = delegation::find(&host, &mi, &own, &nobody())
        .expect_err("this test's own cgroup must not be delegated to uid 65534");
    let Some(mount) = layout.v2.clone() else {
        assert!(none.reason.contains("cgroup v1") || none.reason.contains("no cgroup"));
        assert_eq!(none.remedy, delegation::HOW_TO_GET_V2);
        return;
    };
    let d = Delegated::new(&mount);
    // The cgroup as /proc/PID/cgroup would name it for a process in the leaf.
    let rel = d.dir.strip_prefix(&mount).unwrap();
    let in_leaf = format!("0::/{}/leaf\n", rel.display());
    let found = delegation::find(&host, &mi, &in_leaf, &nobody());
    match layout.kind() {
        LayoutKind::V2 => {
            let f = found.unwrap_or_else(|e| panic!("pure v2: no delegation found: {e}"));
            assert_eq!(f.root, d.dir);
            assert_eq!(f.cgroup, format!("/{}", rel.display()));
            assert!(!f.has_processes);
            // What the kernel says its parent passed on.
            let ctl = std::fs::read_to_string(d.dir.join("cgroup.controllers")).unwrap();
            assert_eq!(f.controllers.join(" "), ctl.trim());
        }
        kind => {
            let e = found.expect_err("v1 controllers cannot be delegated");
            assert!(e.reason.contains(kind.name()), "{kind:?}: {}", e.reason);
            assert_eq!(e.remedy, delegation::HOW_TO_GET_V2);
        }
    }
}

/// DEPENDS ON the lead's rootless core (no "must be root" check; `Plan::fit_rootless_cgroup`
/// called before the run changes anything): uid 65534 without a delegated subtree asks for
/// a limit, and is refused in one sentence, exit 125, with no cgroup and no record made.
#[test]
fn rootless_limits_without_delegation_are_refused_and_nothing_changes() {
    if !root_or_skip("rootless_limits_without_delegation_are_refused_and_nothing_changes") {
        return;
    }
    let _g = serial();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let kind = Layout::from_mountinfo(&mi).kind();
    let own = format!("0::{}\n", own_v2_cgroup());
    assert!(
        delegation::find(&CgroupRoot::host(), &mi, &own, &nobody()).is_err(),
        "this test's cgroup is delegated to uid 65534; run it from a cgroup of root's"
    );
    let home = Home::new();
    let before = cgroups_of_state(&home.state(), None);
    for (flags, named) in [
        (&["-m", "32m"][..], "--memory needs"),
        (&["--pids-limit", "10"][..], "--pids-limit needs"),
        (
            &["--cpus", "0.5", "--memory", "64m"][..],
            "--memory, --cpus need",
        ),
    ] {
        let mut args = vec!["run", "--trace", "off"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "/bin/sh", "-c", "echo ran"]);
        let out = home.stagebox(&args, None);
        let what = format!("uid 65534, {}", flags.join(" "));
        assert_refused(&out, named, kind, &what);
        assert_eq!(
            cgroups_of_state(&home.state(), None),
            before,
            "{what}: a cgroup was made"
        );
        assert!(
            home.records().is_empty(),
            "{what}: a record was left: {:?}",
            home.records()
        );
    }
}

/// DEPENDS ON the lead's rootless core (a whole run as uid 65534): without a delegated
/// subtree and without limits, the run goes on in the runtime's cgroup; the trace says the
/// cgroup stage is off and why, and the devices stage with it.
#[test]
fn rootless_run_without_limits_has_no_cgroup_of_its_own_and_says_why() {
    if !root_or_skip("rootless_run_without_limits_has_no_cgroup_of_its_own_and_says_why") {
        return;
    }
    let _g = serial();
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let own = format!("0::{}\n", own_v2_cgroup());
    assert!(
        delegation::find(&CgroupRoot::host(), &mi, &own, &nobody()).is_err(),
        "this test's cgroup is delegated to uid 65534; run it from a cgroup of root's"
    );
    let home = Home::new();
    let before = cgroups_of_state(&home.state(), None);
    let out = home.stagebox(
        &["run", "--trace", "json", "--", "/bin/sh", "-c", "echo ran"],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    let ev = json_events(&out);
    let off = |stage: &str| {
        ev.iter()
            .find(|e| e["stage"] == stage && e["event"] == "off")
            .and_then(|e| e["message"].as_str())
            .map(str::to_string)
    };
    assert_eq!(
        off("cgroup").as_deref(),
        Some(stagebox::stages::plan::ROOTLESS_NO_CGROUP),
        "{stderr}"
    );
    assert_eq!(off("devices").as_deref(), Some("the cgroup stage is off"));
    assert!(
        !ev.iter()
            .any(|e| e["stage"] == "cgroup" && e["event"] == "syscall"),
        "the cgroup stage made a call: {stderr}"
    );
    assert_eq!(cgroups_of_state(&home.state(), None), before);
}

/// DEPENDS ON the lead's rootless core. A cgroup2 directory chowned to uid 65534, with the
/// runtime started in a child of it: on a pure v2 host the container's cgroup is made in it
/// with `-m 32m` (memory.max read back from the kernel, /proc/PID/cgroup naming it) and
/// removed after; on a hybrid host the same run is refused, as v1 holds the controllers, and
/// nothing is made. (A v1-only host has no cgroup2 directory to chown: the refusal is
/// `rootless_limits_without_delegation_are_refused_and_nothing_changes`.)
#[test]
fn rootless_limits_go_into_a_chowned_cgroup2_directory_on_pure_v2_only() {
    if !root_or_skip("rootless_limits_go_into_a_chowned_cgroup2_directory_on_pure_v2_only") {
        return;
    }
    let _g = serial();
    let layout = Layout::detect().unwrap();
    let Some(mount) = layout.v2.clone() else {
        eprintln!("no cgroup2 mount: the v1 refusal is checked by rootless_limits_without_delegation_are_refused_and_nothing_changes");
        assert_eq!(layout.kind(), LayoutKind::V1);
        return;
    };
    let kind = layout.kind();
    if kind == LayoutKind::V2 {
        // The memory controller must reach the test directory (stagebox switches it on at
        // the top the same way as root; it stays on).
        let top = mount.join("cgroup.subtree_control");
        let on = std::fs::read_to_string(&top).unwrap_or_default();
        if !on.split_whitespace().any(|c| c == "memory") {
            std::fs::write(&top, "+memory").expect("switch the memory controller on at the top");
        }
    }
    let d = Delegated::new(&mount);
    let home = Home::new();
    let parent = stagebox::state::dir::cgroup_parent(&home.state());
    let out = home.stagebox(
        &[
            "run", "--trace", "json", "-m", "32m", "--", "/bin/sh", "-c", "echo ran",
        ],
        Some(&d.leaf()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if kind != LayoutKind::V2 {
        let e = stderr.lines().last().unwrap_or_default().to_string();
        assert_eq!(out.status.code(), Some(125), "{stderr}");
        assert!(
            e.contains("--memory needs a cgroup")
                && e.contains(kind.name())
                && e.contains(remedy_for(kind)),
            "{e}"
        );
        assert_eq!(d.children(), [PathBuf::from("leaf")], "a cgroup was made");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    let ev = json_events(&out);
    let fact = |name: &str| {
        ev.iter()
            .find(|e| e["stage"] == "cgroup" && e["event"] == "fact" && e["fact"] == name)
            .and_then(|e| e["after"].as_str())
            .map(str::to_string)
    };
    assert_eq!(fact("memory.max").as_deref(), Some("33554432"), "{stderr}");
    let rel = d.dir.strip_prefix(&mount).unwrap();
    let moved = fact("cgroup v2").unwrap_or_default();
    assert!(
        moved.starts_with(&format!("/{}/{parent}/", rel.display())),
        "/proc/PID/cgroup after the join: {moved}"
    );
    // The controllers were switched on by uid 65534 in its own subtree; the container's
    // cgroup and its parent are gone again.
    let on = std::fs::read_to_string(d.dir.join("cgroup.subtree_control")).unwrap();
    assert!(on.split_whitespace().any(|c| c == "memory"), "{on}");
    assert_eq!(d.children(), [PathBuf::from("leaf")], "left behind");
}
