//! Rootless runs (issue #13): stagebox started as an unprivileged user (nobody, 65534, through
//! `setpriv --reuid 65534 --regid 65534 --clear-groups`) by a root test harness. The user
//! stage goes on by itself; each stage that applies without root is checked by what the
//! kernel shows inside (uid_map, hostname, /proc, /proc/net/dev, mountinfo, status) and
//! outside (/proc/PID/status, the owner of what the container writes); what needs root or a
//! delegated cgroup is refused with its reason, in one sentence, before anything changes.
//! Needs root to switch to nobody (skips loudly without).
//!
//! The cgroup stage goes off by itself for a rootless run without a delegated cgroup v2
//! subtree (`Plan::fit_rootless_cgroup`), so the runs here use the default flags;
//! tests/rootless_cgroup.rs tests the cgroup stage itself.

mod common;
use common::*;
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The tests take turns: some add an /etc/subuid entry for nobody for a while, which changes
/// the map every other rootless run gets.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const NOBODY: u32 = 65534;

/// Extra flags for every rootless run here: none (the cgroup stage fits itself).
const NO_CGROUP: [&str; 0] = [];

/// Whether user 65534 can reach `p`: every directory above it lets others through.
fn reachable_by_others(p: &Path) -> bool {
    p.ancestors().skip(1).all(|a| {
        a.as_os_str().is_empty() || std::fs::metadata(a).is_ok_and(|m| m.mode() & 0o001 != 0)
    })
}

/// A home of nobody's for one test: HOME and XDG_DATA_HOME point into it; root removes it
/// (whatever the containers left there) when the test ends.
struct Home {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Home {
    fn new() -> Home {
        // Under the target dir when nobody can reach it (where the tests keep their files),
        // else in /tmp (a checkout under /root): removed again either way.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let base = if reachable_by_others(&target.join("x")) {
            target.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("rootless-")
            .tempdir_in(base)
            .expect("a home for nobody");
        chown(dir.path(), NOBODY);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // The binary must be executable by nobody: a copy when its own path is closed.
        let own = PathBuf::from(bin());
        let bin = if reachable_by_others(&own)
            && std::fs::metadata(&own).is_ok_and(|m| m.mode() & 0o001 != 0)
        {
            own
        } else {
            let copy = dir.path().join("stagebox");
            std::fs::copy(&own, &copy).expect("copy stagebox for nobody");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            copy
        };
        Home { dir, bin }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where stagebox keeps its state for nobody: $XDG_DATA_HOME/stagebox.
    fn state(&self) -> PathBuf {
        self.path().join("data/stagebox")
    }

    /// A directory of nobody's own in the home.
    fn owned_dir(&self, name: &str) -> PathBuf {
        let d = self.path().join(name);
        std::fs::create_dir(&d).unwrap();
        chown(&d, NOBODY);
        d
    }

    /// `stagebox ARGS` as nobody, with an environment of its own: PATH (`path`), HOME,
    /// XDG_DATA_HOME and TMPDIR in the home, nothing else.
    fn cmd_with_path(&self, path: &str, args: &[&str]) -> Command {
        let home = self.path().display().to_string();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "env",
            "-i",
        ])
        .arg(format!("PATH={path}"))
        .arg(format!("HOME={home}"))
        .arg(format!("XDG_DATA_HOME={home}/data"))
        .arg(format!("TMPDIR={home}"))
        .arg("NO_COLOR=1")
        .arg(&self.bin)
        .args(args)
        .stdin(Stdio::null());
        c
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with_path("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", args)
    }

    /// `stagebox run --rm --trace off --without cgroup ARGS -- /bin/sh -c SCRIPT MARKER` as
    /// nobody; (exit code, stdout, stderr), after checking no process of it is left.
    fn sh(&self, args: &[&str], script: &str) -> (i32, String, String) {
        let m = marker();
        let mut all = vec!["run", "--rm", "--trace", "off"];
        all.extend_from_slice(&NO_CGROUP);
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
        let out = self.cmd(&all).output().expect("run stagebox as nobody");
        assert_none_left(&m, &format!("rootless {args:?}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn sh_ok(&self, args: &[&str], script: &str) -> String {
        let (code, out, err) = self.sh(args, script);
        assert_eq!(
            code, 0,
            "rootless {args:?} -- sh -c {script:?}\nstdout: {out}\nstderr: {err}"
        );
        assert!(
            err.is_empty(),
            "rootless {args:?}: stderr is not empty: {err}"
        );
        out
    }

    /// What is left in the state directory's containers/ (nothing, after --rm runs).
    fn containers_left(&self) -> Vec<PathBuf> {
        tree(&self.state().join("containers"))
    }
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).expect("chown");
}

/// `key=value` lines of a script's output.
fn value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
}

/// The whitespace-normalised lines of an id map.
fn map_text(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// The lines between `BEGIN key` and `END key` in a script's output.
fn block(out: &str, key: &str) -> String {
    out.lines()
        .skip_while(|l| *l != format!("BEGIN {key}"))
        .skip(1)
        .take_while(|l| *l != format!("END {key}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether /etc/subuid or /etc/subgid gives nobody a range (then the default map is wide).
fn nobody_has_subids() -> bool {
    ["/etc/subuid", "/etc/subgid"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let owner = l.split(':').next().unwrap_or("");
                owner == "nobody" || owner == "65534"
            })
    })
}

fn newuidmap_installed() -> bool {
    ["/usr/bin/newuidmap", "/usr/bin/newgidmap"]
        .iter()
        .all(|p| Path::new(p).is_file())
}

/// An /etc/subuid and /etc/subgid line for nobody, for one test: added under the lock
/// stagebox itself takes to make its entry, and removed (exactly that line) when dropped.
struct SubidLine {
    line: String,
    before: Vec<(&'static str, Vec<u8>)>,
}

const NOBODY_START: u32 = 1_000_000_000;

/// stagebox's own lock over its range (so that it does not make its entry meanwhile).
fn subid_lock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::File::open("/run/stagebox/userns/.lock").ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

impl SubidLine {
    fn add() -> SubidLine {
        let line = format!("{NOBODY}:{NOBODY_START}:65536\n");
        let _lock = subid_lock();
        let mut before = Vec::new();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let old = std::fs::read(file).unwrap_or_default();
            let mut new = old.clone();
            if !new.is_empty() && !new.ends_with(b"\n") {
                new.push(b'\n');
            }
            new.extend_from_slice(line.as_bytes());
            std::fs::write(file, &new).expect("add nobody's subordinate ids");
            before.push((file, old));
        }
        SubidLine { line, before }
    }
}

impl Drop for SubidLine {
    fn drop(&mut self) {
        let _lock = subid_lock();
        for (file, old) in &self.before {
            let now = std::fs::read_to_string(file).unwrap_or_default();
            // Exactly the line added (and the newline added before it, if one was).
            let restored = match now.find(&self.line) {
                Some(i) => {
                    let mut t = now.clone();
                    t.replace_range(i..i + self.line.len(), "");
                    if !old.ends_with(b"\n") && t.ends_with('\n') && !old.is_empty() {
                        t.pop();
                    }
                    t
                }
                None => now,
            };
            let _ = std::fs::write(file, restored.as_bytes());
            if !std::thread::panicking() {
                assert_eq!(
                    &std::fs::read(file).unwrap_or_default(),
                    old,
                    "{file} is not back as it was"
                );
            }
        }
    }
}

#[test]
fn the_state_dir_is_made_in_xdg_data_home_private_to_the_user_and_left_empty_by_rm() {
    let _g = serial();
    if !root_or_skip("rootless state dir") {
        return;
    }
    let home = Home::new();
    home.sh_ok(&[], "true");
    let state = home.state();
    let md = std::fs::metadata(&state).expect("$XDG_DATA_HOME/stagebox was made");
    assert_eq!(md.uid(), NOBODY, "{}", state.display());
    assert_eq!(md.mode() & 0o7777, 0o700, "{}", state.display());
    assert!(
        home.containers_left().is_empty(),
        "--rm left {:?}",
        home.containers_left()
    );
    // Without XDG_DATA_HOME: ~/.local/share/stagebox.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["env", "-i", "PATH=/usr/bin:/bin"])
        .arg(format!("HOME={}", home.path().display()))
        .arg(&home.bin)
        .args([
            "run",
            "--rm",
            "--trace",
            "off",
            "--without",
            "cgroup",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = home.path().join(".local/share/stagebox");
    let md = std::fs::metadata(&local).expect("~/.local/share/stagebox was made");
    assert_eq!((md.uid(), md.mode() & 0o7777), (NOBODY, 0o700));
    assert!(tree(&local.join("containers")).is_empty());
}

#[test]
fn each_namespace_stage_shows_its_effect_inside_a_rootless_container() {
    let _g = serial();
    if !root_or_skip("rootless namespace stages") {
        return;
    }
    assert!(
        !nobody_has_subids(),
        "this host gives nobody subordinate ids; the test expects the single map"
    );
    let home = Home::new();
    let script = "\
        echo uid=$(id -u) gid=$(id -g); \
        echo BEGIN uid_map; cat /proc/self/uid_map; echo END uid_map; \
        echo BEGIN gid_map; cat /proc/self/gid_map; echo END gid_map; \
        echo setgroups=$(cat /proc/self/setgroups); \
        echo hostname=$(hostname); \
        for n in uts ipc net mnt pid cgroup user; do echo ns_$n=$(readlink /proc/self/ns/$n); done; \
        echo pid=$$; echo pids=$(ls /proc | grep -c '^[0-9]'); \
        echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '); \
        echo BEGIN mountinfo; cat /proc/self/mountinfo; echo END mountinfo; \
        echo sh_owner=$(stat -c %u:%g /bin/sh); \
        touch /made && echo made=$(stat -c %u /made)";
    let out = home.sh_ok(&["--hostname", "rootless-box"], script);
    // user: root inside is nobody outside; the kernel took the map only with setgroups denied.
    assert_eq!(value(&out, "uid"), "0 gid=0", "{out}");
    assert_eq!(map_text(&block(&out, "uid_map")), ["0 65534 1"], "{out}");
    assert_eq!(map_text(&block(&out, "gid_map")), ["0 65534 1"], "{out}");
    assert_eq!(value(&out, "setgroups"), "deny", "{out}");
    // uts: the hostname asked for; the host's stays.
    assert_eq!(value(&out, "hostname"), "rootless-box");
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "rootless-box"
    );
    // uts ipc net mnt pid cgroup user: every namespace is a new one.
    for ns in ["uts", "ipc", "net", "mnt", "pid", "cgroup", "user"] {
        assert_ne!(value(&out, &format!("ns_{ns}")), host_ns(ns), "{ns}: {out}");
    }
    // pid: the shell is PID 1 and sees a handful of processes, not the host's.
    assert_eq!(value(&out, "pid"), "1", "{out}");
    let pids: usize = value(&out, "pids").parse().unwrap();
    assert!((1..=4).contains(&pids), "{pids} pids visible: {out}");
    // net: only the loopback interface.
    assert_eq!(value(&out, "ifaces").trim(), "lo", "{out}");
    // mount, rootfs, proc, pivot: / is an overlay whose layers are in nobody's state dir,
    // /proc is a procfs of its own, and no host path is mounted.
    let mi = block(&out, "mountinfo");
    let root = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in mountinfo:\n{mi}"));
    assert!(root.contains(" - overlay overlay "), "{root}");
    assert!(
        root.contains(&format!("upperdir={}/containers/", home.state().display())),
        "{root}"
    );
    assert!(root.contains("userxattr"), "{root}");
    assert!(
        mi.lines()
            .any(|l| l.split(' ').nth(4) == Some("/proc") && l.contains(" - proc proc ")),
        "{mi}"
    );
    assert!(
        !mi.lines().any(|l| l
            .split(' ')
            .nth(4)
            .is_some_and(|p| p.starts_with(home.path().to_str().unwrap()))),
        "a host path is mounted after the root switch:\n{mi}"
    );
    // The image's files are nobody's on the host (the user's own), so root's inside; what
    // the container's root writes is root's inside.
    assert_eq!(value(&out, "sh_owner"), "0:0", "{out}");
    assert_eq!(value(&out, "made"), "0", "{out}");
    assert!(home.containers_left().is_empty());
}

#[test]
fn from_the_host_the_rootless_containers_root_is_the_user_who_ran_it() {
    let _g = serial();
    if !root_or_skip("rootless from outside") {
        return;
    }
    let home = Home::new();
    let m = marker();
    let _guard = KillMarked(m.clone());
    let mut args = vec!["run", "--rm", "--trace", "off"];
    args.extend_from_slice(&NO_CGROUP);
    let script = "touch \"/$0\"; echo ready; read -r _ || :";
    args.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
    let mut child = home
        .cmd(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // The workload: the marked process that is PID 1 of its PID namespace.
    let pid = within_2s(|| {
        marked_pids(&m).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"))
        })
    })
    .expect("the workload");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for id in ["Uid", "Gid"] {
        let line = status.lines().find(|l| l.starts_with(id)).unwrap();
        assert_eq!(
            line.split_whitespace().skip(1).collect::<Vec<_>>(),
            ["65534"; 4],
            "{line}"
        );
    }
    assert_eq!(
        map_text(&std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap()),
        ["0 65534 1"]
    );
    // What the container's root wrote is nobody's in the container's layer.
    let made: Vec<PathBuf> = std::fs::read_dir(home.state().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("upper").join(&m))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].metadata().unwrap().uid(), NOBODY);
    drop(stdin);
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_none_left(&m, "rootless from outside");
    assert!(home.containers_left().is_empty());
}

#[test]
fn a_volume_the_user_owns_is_writable_and_one_of_host_roots_is_not() {
    let _g = serial();
    if !root_or_skip("rootless volumes") {
        return;
    }
    let home = Home::new();
    let own = home.owned_dir("mine");
    let roots = home.path().join("roots");
    std::fs::create_dir(&roots).unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(roots.join("f"), "host\n").unwrap();
    std::fs::set_permissions(roots.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let v1 = format!("{}:/mine", own.display());
    let v2 = format!("{}:/roots", roots.display());
    let out = home.sh_ok(
        &["-v", &v1, "-v", &v2, "-v", "named:/named"],
        "echo x > /mine/new; echo mine=$?; echo x > /named/new; echo named=$?; \
         echo owner=$(stat -c %u /roots/f); { echo y >> /roots/f; } 2>/dev/null; echo append=$?; \
         touch /roots/new 2>/dev/null; echo create=$?",
    );
    assert_eq!(value(&out, "mine"), "0", "{out}");
    assert_eq!(value(&out, "named"), "0", "{out}");
    // Host root is unmapped: its files show as nobody inside, and stay out of reach.
    assert_eq!(value(&out, "owner"), "65534", "{out}");
    assert_ne!(value(&out, "append"), "0", "{out}");
    assert_ne!(value(&out, "create"), "0", "{out}");
    assert_eq!(std::fs::read_to_string(roots.join("f")).unwrap(), "host\n");
    assert!(!roots.join("new").exists());
    // What the container's root wrote on the user's volume is the user's.
    assert_eq!(own.join("new").metadata().unwrap().uid(), NOBODY);
    let named = home.state().join("volumes/named/_data/new");
    assert_eq!(
        named.metadata().unwrap().uid(),
        NOBODY,
        "{}",
        named.display()
    );
}

#[test]
fn the_confinement_stages_apply_rootless() {
    let _g = serial();
    if !root_or_skip("rootless confinement") {
        return;
    }
    let home = Home::new();
    let status =
        "grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t' | tr : =";
    // caps, seccomp: Docker's 14 and the filter, as with root.
    let out = home.sh_ok(&[], status);
    assert_eq!(value(&out, "CapBnd"), "00000000a80425fb", "{out}");
    assert_eq!(value(&out, "CapEff"), "00000000a80425fb", "{out}");
    assert_eq!(value(&out, "Seccomp"), "2", "{out}");
    assert_eq!(value(&out, "NoNewPrivs"), "0", "{out}");
    let out = home.sh_ok(
        &["--cap-drop", "ALL", "--security-opt", "no-new-privileges"],
        status,
    );
    assert_eq!(value(&out, "CapBnd"), "0000000000000000", "{out}");
    assert_eq!(value(&out, "NoNewPrivs"), "1", "{out}");
    // --privileged: every capability, over what the user namespace owns only.
    let out = home.sh_ok(&["--privileged"], status);
    assert_eq!(value(&out, "Seccomp"), "0", "{out}");
    assert_ne!(value(&out, "CapBnd"), "00000000a80425fb", "{out}");
    // paths: /proc/sys read-only; --read-only: the root too.
    let out = home.sh_ok(
        &["--read-only"],
        "grep -E ' /proc/sys | / ' /proc/self/mountinfo | cut -d' ' -f5,6; \
         touch /x 2>/dev/null; echo root_write=$?; { echo y > /proc/sys/kernel/hostname; } 2>/dev/null; echo sys_write=$?",
    );
    for line in ["/proc/sys ro,", "/ ro,"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line}: {out}");
    }
    assert_ne!(value(&out, "root_write"), "0", "{out}");
    assert_ne!(value(&out, "sys_write"), "0", "{out}");
    // The workload's user: one the single map has (0), or one sentence.
    let out = home.sh_ok(&["--user", "0:0"], "id -u");
    assert_eq!(out.trim(), "0");
    // devices: the device rules live in a cgroup, so the stage goes with the cgroup stage,
    // and the plan says why; a --device node is bind-mounted from the host (no mknod in a
    // user namespace) and keeps the host's owner and mode.
    let plan = home
        .cmd(&["plan", "--without", "cgroup", "--json"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    let devices = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "devices")
        .unwrap();
    assert_eq!(devices["enabled"], false, "{devices}");
    assert!(
        devices["why"].as_str().unwrap().contains("cgroup"),
        "{devices}"
    );
    if Path::new("/dev/net/tun").exists() {
        let out = home.sh_ok(
            &["--device", "/dev/net/tun", "--device", "/dev/null"],
            "stat -c '%t:%T' /dev/net/tun /dev/null; echo x > /dev/null && echo null=ok",
        );
        assert_eq!(out, "a:c8\n1:3\nnull=ok\n");
    }
    assert!(home.containers_left().is_empty());
}

/// What a refused rootless run must leave as it was (besides the host's mounts).
fn host_view(home: &Home) -> (Vec<PathBuf>, Vec<u8>, Vec<u8>) {
    (
        tree(&home.state()),
        std::fs::read("/etc/subuid").unwrap_or_default(),
        std::fs::read("/etc/subgid").unwrap_or_default(),
    )
}

/// `stagebox run ARGS -- /bin/true` as nobody: exit code 125, one sentence containing
/// `says` (when given), nothing changed.
fn refused(home: &Home, path: &str, args: &[&str], says: Option<&str>) {
    let before = host_view(home);
    let mounts = host_mounts_but_compare_leaks();
    let mut all = vec!["run", "--rm", "--trace", "off"];
    all.extend_from_slice(args);
    all.extend(["--", "/bin/true"]);
    let out = home.cmd_with_path(path, &all).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
    if let Some(says) = says {
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{args:?}: one sentence: {err}");
    assert!(out.stdout.is_empty());
    assert!(
        host_view(home) == before,
        "{args:?} changed the state dir or /etc/sub[ug]id"
    );
    let (added, removed) = lasting_differences(&mounts, host_mounts_but_compare_leaks);
    assert!(
        added.is_empty() && removed.is_empty(),
        "{args:?}: host mounts changed: +{added:?} -{removed:?}"
    );
}

const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

#[test]
fn what_needs_root_or_a_delegated_cgroup_is_refused_with_its_reason() {
    let _g = serial();
    if !root_or_skip("rootless refusals") {
        return;
    }
    let home = Home::new();
    // The state dir and default rootfs exist first: a refused run must not change them.
    home.sh_ok(&[], "true");
    let no_user = "without root, the kernel lets a process make namespaces only inside a user namespace of its own";
    refused(&home, PATH, &["--userns", "host"], Some(no_user));
    refused(&home, PATH, &["--without", "user,cgroup"], Some(no_user));
    refused(
        &home,
        PATH,
        &["--without", "cgroup", "--uidmap", "0:300000:10"],
        Some("--uidmap maps host ids outside your own id 65534"),
    );
    refused(
        &home,
        PATH,
        &["--without", "cgroup", "--user", "1000"],
        Some("is not mapped in the container's user namespace"),
    );
    refused(
        &home,
        PATH,
        &["--without", "cgroup", "-m", "32m"],
        Some("only a cgroup can enforce them"),
    );
    // Limits with the cgroup stage on and no delegated cgroup: refused, in one sentence.
    // (What the sentence says is up to the cgroup stage's rootless handling, which is
    // another branch's: here only the exit code, the one line and the untouched host.)
    refused(&home, PATH, &["-m", "32m"], None);
}

#[test]
fn without_newuidmap_a_range_asked_for_is_one_sentence_and_the_default_is_the_single_map() {
    let _g = serial();
    if !root_or_skip("rootless newuidmap missing") {
        return;
    }
    let home = Home::new();
    home.sh_ok(&[], "true");
    let subids = SubidLine::add();
    let no_helpers = "/nonexistent-stagebox-test-path";
    let range = format!("1:{NOBODY_START}:10");
    refused(
        &home,
        no_helpers,
        &[
            "--without",
            "cgroup",
            "--uidmap",
            "0:65534:1",
            "--uidmap",
            &range,
        ],
        Some("these maps need newuidmap and newgidmap"),
    );
    // A range of nobody's subordinate ids is one thing; one outside it is refused, naming it.
    refused(
        &home,
        PATH,
        &[
            "--without",
            "cgroup",
            "--uidmap",
            "0:65534:1",
            "--uidmap",
            "1:300000:10",
        ],
        Some("(1000000000..1000065535)"),
    );
    // Nothing asked: without the helpers the map is the single one.
    let m = marker();
    let out = home
        .cmd_with_path(
            no_helpers,
            &[
                "run",
                "--rm",
                "--trace",
                "off",
                "--without",
                "cgroup",
                "--",
                "/bin/sh",
                "-c",
                "cat /proc/self/uid_map",
                &m,
            ],
        )
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        map_text(&String::from_utf8_lossy(&out.stdout)),
        ["0 65534 1"]
    );
    assert_none_left(&m, "single map without newuidmap");
    drop(subids);
    assert!(home.containers_left().is_empty());
}

#[test]
fn with_newuidmap_and_a_subuid_entry_the_map_is_the_user_then_65536_more_ids() {
    let _g = serial();
    if !root_or_skip("rootless wide map") {
        return;
    }
    if !newuidmap_installed() {
        assert_ne!(
            std::env::var("STAGEBOX_REQUIRE_ROOT").as_deref(),
            Ok("1"),
            "newuidmap/newgidmap (the uidmap package) are not installed"
        );
        eprintln!("SKIP rootless wide map: newuidmap/newgidmap are not installed");
        return;
    }
    let home = Home::new();
    let subids = SubidLine::add();
    let wide = ["0 65534 1".to_string(), format!("1 {NOBODY_START} 65536")];
    let out = home.sh_ok(
        &[],
        "echo BEGIN uid_map; cat /proc/self/uid_map; echo END uid_map; \
         echo BEGIN gid_map; cat /proc/self/gid_map; echo END gid_map; \
         touch /tmp/f; chown 1000:1000 /tmp/f; echo owner=$(stat -c %u:%g /tmp/f); \
         echo setgroups=$(cat /proc/self/setgroups)",
    );
    assert_eq!(map_text(&block(&out, "uid_map")), wide, "{out}");
    assert_eq!(map_text(&block(&out, "gid_map")), wide, "{out}");
    // Container uid 1000 exists now (host 1000000999), and the helpers keep setgroups.
    assert_eq!(value(&out, "owner"), "1000:1000", "{out}");
    assert_eq!(value(&out, "setgroups"), "allow", "{out}");
    let out = home.sh_ok(
        &["--user", "1000:1000"],
        "id -u; grep '^Uid:' /proc/self/status",
    );
    assert_eq!(out.lines().next(), Some("1000"), "{out}");
    // An explicit map inside nobody's ranges, written by the helpers.
    let range = format!("1:{NOBODY_START}:100");
    let out = home.sh_ok(
        &["--uidmap", "0:65534:1", "--uidmap", &range],
        "cat /proc/self/uid_map",
    );
    assert_eq!(
        map_text(&out),
        ["0 65534 1".to_string(), format!("1 {NOBODY_START} 100")]
    );
    assert!(home.containers_left().is_empty());
    drop(subids);
}

/// The default flags, rootless: the cgroup stage goes off by itself when the user has no
/// delegated cgroup, and the run works.
#[test]
fn the_default_flags_run_rootless() {
    let _g = serial();
    if !root_or_skip("rootless default flags") {
        return;
    }
    let home = Home::new();
    let m = marker();
    let out = home
        .cmd(&[
            "run",
            "--rm",
            "--trace",
            "off",
            "--",
            "/bin/sh",
            "-c",
            "id -u; cat /proc/self/uid_map",
            &m,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some("0"), "{stdout}");
    if !nobody_has_subids() {
        assert_eq!(map_text(&stdout)[1..], ["0 65534 1"], "{stdout}");
    }
    assert_none_left(&m, "rootless default flags");
    assert!(home.containers_left().is_empty());
}

/// `-p` rootless: the proxy's helper joins the container's user namespace, then its network
/// namespace, and hands back sockets connected to the container's 127.0.0.1; a client of the
/// test's on the host's 127.0.0.1 gets what the server inside sends.
#[test]
fn a_published_port_answers_on_127_0_0_1_rootless() {
    if !root_or_skip("rootless -p") {
        return;
    }
    let _g = serial();
    let home = Home::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let spec = format!("127.0.0.1:{port}:8080");
    let m = marker();
    let child = home
        .cmd(&[
            "run", "--rm", "--trace", "off", "-p", &spec, "--", "/bin/sh", "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo published-rootless | nc -l -p 8080 && break; done", &m,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stagebox as nobody");
    let mut got = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline && !got.contains("published-rootless") {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            got = buf;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().expect("wait for stagebox");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        got.contains("published-rootless"),
        "nothing came back through 127.0.0.1:{port}: {got:?}; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_none_left(&m, "rootless -p");
    // The host port is free again: the proxy went with the run.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}
