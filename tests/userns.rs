//! The user stage as root (issue #13): what the kernel shows from the host (/proc/PID/status,
//! /proc/PID/uid_map, the owner of what the container writes, the leases of `--userns=auto`)
//! and from inside (id, uid_map, the owner of the image's files, what a volume lets it do),
//! and the bad input and plans it refuses before the host changes. Needs root (skips loudly
//! without); the rootless side is tests/rootless.rs.

mod common;
use common::*;
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};

/// The tests of this file take turns: `--userns=auto` takes slices of the one `stagebox`
/// range (two tests at once would take each other's), and the bad-input test compares the
/// state directory, /etc/subuid and the lease directory before and after.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const LEASES: &str = "/run/stagebox/userns";
const SLICE: u64 = 65536;

/// A container started with `stagebox run --rm --trace off ARGS -- /bin/sh -c SCRIPT MARKER`
/// whose script prints some lines, then `ready`, then waits for its stdin to close.
struct Running {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: BufReader<ChildStdout>,
    marker: String,
    /// What the script printed before `ready`.
    said: Vec<String>,
    _guard: KillMarked,
}

/// The script's last line: wait until the test closes stdin (the marker stays in the
/// shell's command line all along).
const WAIT: &str = "echo ready; read -r _ || :";

fn start(args: &[&str], script: &str) -> Running {
    let m = marker();
    let mut all = vec!["run", "--rm", "--trace", "off"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
    let mut child = cmd(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stagebox");
    let guard = KillMarked(m.clone());
    let stdin = child.stdin.take();
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut said = Vec::new();
    loop {
        let mut line = String::new();
        let n = out
            .read_line(&mut line)
            .expect("read the workload's output");
        if n == 0 {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let status = child.wait().expect("wait for stagebox");
            panic!("stagebox {all:?} ended before `ready` ({status}): {said:?}\n{err}");
        }
        if line.trim() == "ready" {
            break;
        }
        said.push(line.trim_end().to_string());
    }
    Running {
        child,
        stdin,
        out,
        marker: m,
        said,
        _guard: guard,
    }
}

impl Running {
    /// The workload's host pid: the marked process that is PID 1 of its own PID namespace.
    fn workload(&self) -> i32 {
        let runtime = self.child.id() as i32;
        within_2s(|| {
            marked_pids(&self.marker).into_iter().find(|p| {
                *p != runtime
                    && std::fs::read_to_string(format!("/proc/{p}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("NSpid:"))
                                .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
                        })
                        .is_some_and(|f| f.len() == 2 && f[1] == "1")
            })
        })
        .unwrap_or_else(|| panic!("no workload with marker {} found", self.marker))
    }

    /// Closes stdin: the script ends; returns stagebox's exit code, the rest of stdout and
    /// stderr, after checking that no process of the run is left.
    fn finish(mut self) -> (i32, String, String) {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().expect("wait for stagebox");
        assert_none_left(&self.marker, "a user-stage container");
        (status.code().unwrap_or(-1), rest, err)
    }
}

impl Drop for Running {
    /// Also when a test fails half-way: closing stdin ends the script and the runtime cleans
    /// up after it as after any run (the guard then kills whatever is still left).
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..250 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A field of /proc/PID/status, split on whitespace.
fn status_field(pid: i32, name: &str) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The lines of a uid_map/gid_map as (inside, outside, count).
fn map_lines(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .map(|x| x.parse().expect("a number in an id map"))
                .collect();
            assert_eq!(f.len(), 3, "an id map line has three numbers: {l:?}");
            (f[0], f[1], f[2])
        })
        .collect()
}

fn proc_map(pid: i32, file: &str) -> Vec<(u64, u64, u64)> {
    map_lines(&std::fs::read_to_string(format!("/proc/{pid}/{file}")).expect("read id map"))
}

/// The `stagebox` entry of an /etc/subuid-style file: (start, count).
fn stagebox_entry(file: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            (f.len() == 3 && f[0] == "stagebox")
                .then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no stagebox entry in {file}:\n{text}"))
}

/// Whether some process holds the lease file locked now (as `--userns=auto` does while its
/// container runs).
fn lease_locked(start: u64) -> bool {
    let Ok(f) = std::fs::File::open(format!("{LEASES}/{start}")) else {
        return false;
    };
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
}

fn lease_text(start: u64) -> Option<String> {
    std::fs::read_to_string(format!("{LEASES}/{start}")).ok()
}

fn lease_listing() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(LEASES)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The (only) upper directory holding a file named `name`: the running container's layer.
fn upper_with(name: &str) -> PathBuf {
    let containers = state_dir().join("containers");
    let found: Vec<PathBuf> = std::fs::read_dir(&containers)
        .expect("list containers")
        .flatten()
        .map(|e| e.path().join("upper").join(name))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    assert_eq!(found.len(), 1, "one upper dir holds {name}: {found:?}");
    found[0].clone()
}

#[test]
fn an_explicit_map_makes_the_containers_root_host_uid_200000_and_image_files_stay_roots() {
    let _g = serial();
    if !root_or_skip("explicit uid map") {
        return;
    }
    let mounts = host_mounts_but_compare_leaks();
    let run = start(
        &["--uidmap", "0:200000:65536"],
        &format!(
            "id -u; id -g; cat /proc/self/uid_map; stat -c '%u:%g' /bin/sh /etc/passwd; touch \"/$0\"; {WAIT}"
        ),
    );
    let pid = run.workload();
    // From the host: the container's root is host uid/gid 200000, in all four ids.
    assert_eq!(status_field(pid, "Uid"), vec!["200000"; 4]);
    assert_eq!(status_field(pid, "Gid"), vec!["200000"; 4]);
    assert_eq!(proc_map(pid, "uid_map"), vec![(0, 200000, 65536)]);
    assert_eq!(
        proc_map(pid, "gid_map"),
        vec![(0, 200000, 65536)],
        "--gidmap defaults to --uidmap"
    );
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        std::fs::read_link("/proc/self/ns/user").unwrap(),
        "the workload is in a user namespace of its own"
    );
    // From inside: root, the same map, and the image's files (host root's) are root's,
    // through the idmapped state directory.
    assert_eq!(run.said[0], "0", "{:?}", run.said);
    assert_eq!(run.said[1], "0", "{:?}", run.said);
    assert_eq!(map_lines(&run.said[2]), vec![(0, 200000, 65536)]);
    assert_eq!(run.said[3..], ["0:0", "0:0"], "{:?}", run.said);
    // What the container's root wrote is stored as host root's in its layer.
    let made = upper_with(&run.marker);
    let md = made.symlink_metadata().unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0), "{}", made.display());
    let (code, _, err) = run.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        made.symlink_metadata().is_err(),
        "--rm removes the container's layer"
    );
    let (added, removed) = lasting_differences(&mounts, host_mounts_but_compare_leaks);
    assert!(
        added.is_empty() && removed.is_empty(),
        "host mounts changed: +{added:?} -{removed:?}"
    );
}

#[test]
fn a_host_roots_file_on_a_volume_is_out_of_reach_of_the_containers_root() {
    let _g = serial();
    if !root_or_skip("volume of host root") {
        return;
    }
    // A directory and file of host root's, 0755 and 0644: any root may write them, an
    // unprivileged host uid may not.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "host\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let vol = format!("{}:/data", dir.path().display());
    let script = "id -u; stat -c '%u' /data/f; echo x >> /data/f; echo append=$?; touch /data/new; echo create=$?";

    let out = sh_ok(&["--uidmap", "0:200000:65536", "-v", &vol], script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "root inside: {out}");
    assert_eq!(lines[1], "65534", "host root is unmapped: nobody: {out}");
    assert_ne!(lines[2], "append=0", "{out}");
    assert_ne!(lines[3], "create=0", "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "host\n");
    assert!(!dir.path().join("new").exists());

    // The same run without the user stage: the container's root is the host's.
    let out = sh_ok(&["-v", &vol], script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1..], ["0", "append=0", "create=0"], "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "host\nx\n");
    assert_eq!(dir.path().join("new").symlink_metadata().unwrap().uid(), 0);
}

#[test]
fn userns_auto_takes_a_slice_of_the_stagebox_entry_and_two_containers_get_disjoint_ones() {
    let _g = serial();
    if !root_or_skip("userns auto") {
        return;
    }
    let script = format!("cat /proc/self/uid_map; stat -c '%u' /bin/sh; {WAIT}");
    let a = start(&["--userns", "auto"], &script);
    let b = start(&["--userns=auto"], &script);
    let (entry_start, entry_count) = stagebox_entry("/etc/subuid");
    let (gid_start, gid_count) = stagebox_entry("/etc/subgid");
    let mut slices = Vec::new();
    for run in [&a, &b] {
        let pid = run.workload();
        let uid = proc_map(pid, "uid_map");
        let gid = proc_map(pid, "gid_map");
        assert_eq!(map_lines(&run.said[0]), uid, "inside and outside agree");
        assert_eq!(run.said[1], "0", "the image's files are root's inside");
        assert_eq!(uid.len(), 1, "{uid:?}");
        let (inside, outside, count) = uid[0];
        assert_eq!((inside, count), (0, SLICE), "0..65535 mapped: {uid:?}");
        assert!(
            outside >= entry_start
                && outside + count <= entry_start + entry_count
                && (outside - entry_start) % SLICE == 0,
            "{uid:?} is not a slice of stagebox:{entry_start}:{entry_count}"
        );
        let k = outside - entry_start;
        assert_eq!(
            gid,
            vec![(0, gid_start + k, SLICE)],
            "the same slice of gids"
        );
        assert!(gid_start + k + SLICE <= gid_start + gid_count);
        assert_eq!(status_field(pid, "Uid")[0], outside.to_string());
        // The lease: locked while the container runs, naming its runtime.
        assert!(lease_locked(outside), "{LEASES}/{outside} is not locked");
        let lease = lease_text(outside).unwrap_or_default();
        assert!(
            lease.trim_end().ends_with(&format!(" {}", run.child.id())),
            "{LEASES}/{outside} names another holder: {lease:?}"
        );
        slices.push((outside, lease));
    }
    let (sa, sb) = (slices[0].0, slices[1].0);
    assert!(
        sa + SLICE <= sb || sb + SLICE <= sa,
        "the two containers share ids: {sa} and {sb}"
    );
    for run in [a, b] {
        let (code, _, err) = run.finish();
        assert_eq!(code, 0, "{err}");
    }
    // Released: the lease files are gone (or taken anew by another run, never still ours).
    for (start, lease) in slices {
        assert_ne!(
            lease_text(start).as_deref(),
            Some(lease.as_str()),
            "{LEASES}/{start} still holds the finished container's lease"
        );
    }
}

#[test]
fn a_slice_comes_back_when_the_runtime_is_killed_with_sigkill() {
    let _g = serial();
    if !root_or_skip("userns auto sigkill") {
        return;
    }
    let mounts = host_mounts_but_compare_leaks();
    let mut run = start(&["--userns", "auto"], WAIT);
    let pid = run.workload();
    let slice = proc_map(pid, "uid_map")[0].1;
    assert!(lease_locked(slice));
    let lease = lease_text(slice).unwrap_or_default();
    let id = lease
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        state_dir().join("containers").join(&id).is_dir(),
        "the lease names the container: {lease:?}"
    );
    // kill -9 of the runtime: nothing of stagebox runs to give the slice back.
    run.child.kill().expect("SIGKILL the runtime");
    run.child.wait().expect("reap the runtime");
    assert_none_left(&run.marker, "the workload of a killed runtime");
    assert!(
        within_2s(|| (!lease_locked(slice)).then_some(())).is_some(),
        "{LEASES}/{slice} is still locked after the runtime was killed"
    );
    // The next --userns=auto run takes the lowest free slice: this one, unless another
    // run on this host took it meanwhile.
    let out = sh_ok(&["--userns", "auto"], "cat /proc/self/uid_map");
    let next = map_lines(&out)[0].1;
    assert!(
        next == slice || lease_locked(slice),
        "the killed runtime's slice {slice} was not handed out again (got {next})"
    );
    // The dead container's record goes with `stagebox rm`, its mounts went with its
    // mount namespace.
    drop(run);
    let rm = stagebox(&["rm", &id]);
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(!state_dir().join("containers").join(&id).exists());
    // Its cgroup directories stay until a run a minute later sweeps them (or `rm` learns to,
    // #15); remove them now, so that no later test's trace shows that sweep.
    remove_cgroups_of(&id);
    let (added, removed) = lasting_differences(&mounts, host_mounts_but_compare_leaks);
    assert!(
        added.is_empty() && removed.is_empty(),
        "host mounts changed: +{added:?} -{removed:?}"
    );
}

/// What a refused run must leave as it was.
struct HostView {
    subuid: Vec<u8>,
    subgid: Vec<u8>,
    leases: Vec<String>,
    state: Vec<PathBuf>,
}

impl HostView {
    fn state_names(&self) -> Vec<String> {
        self.state.iter().map(|p| p.display().to_string()).collect()
    }
}

fn host_view() -> HostView {
    let read = |p: &str| std::fs::read(p).unwrap_or_default();
    HostView {
        subuid: read("/etc/subuid"),
        subgid: read("/etc/subgid"),
        leases: lease_listing(),
        state: tree(state_dir()),
    }
}

#[test]
fn bad_maps_and_impossible_plans_are_one_sentence_and_change_nothing() {
    let _g = serial();
    if !root_or_skip("userns bad input") {
        return;
    }
    // The default rootfs exists before the first look (a refused run must not make it).
    sh_ok(&[], "true");
    for (args, says) in [
        (
            vec!["--uidmap", "0:1"],
            "--uidmap \"0:1\" is not CONTAINER:HOST:SIZE",
        ),
        (
            vec!["--uidmap", "0:100000:10", "--uidmap", "5:200000:10"],
            "overlap",
        ),
        (vec!["--uidmap", "1:100000:10"], "does not map container uid 0"),
        (
            vec!["--uidmap", "0:100000:10", "--gidmap", "1:100000:10"],
            "does not map container gid 0",
        ),
        (
            vec!["--gidmap", "1:100000:10"],
            "does not map container uid 0; stagebox becomes root inside the namespace, so map 0 (for example 0:100000:65536) (--gidmap, used for the uids too)",
        ),
        (vec!["--userns", "bogus"], "unknown --userns \"bogus\""),
        (
            vec!["--userns", "host", "--uidmap", "0:100000:65536"],
            "--userns cannot be combined with --uidmap",
        ),
        (
            vec!["--userns", "auto", "--without", "net"],
            "the proc stage needs the net stage when the user stage is on",
        ),
        (
            vec!["--userns", "auto", "--without", "pid"],
            "the proc stage needs the pid stage when the user stage is on",
        ),
        (
            vec!["--userns", "auto", "--root-switch", "chroot"],
            "only pivot_root takes that view away",
        ),
        (
            vec!["--uidmap", "0:200000:65536", "--root-switch", "chroot"],
            "only pivot_root takes that view away",
        ),
        (
            vec!["--uidmap", "0:200000:100", "--user", "1000:1000"],
            "the workload's user 1000:1000 is not mapped in the container's user namespace, which has uids 0..99",
        ),
        (
            vec!["--userns", "auto", "--user", "70000"],
            "which has uids 0..65535",
        ),
    ] {
        let mounts = host_mounts_but_compare_leaks();
        let before = host_view();
        let name = format!("userns-bad-{}", marker());
        let mut all = vec!["run", "--name", &name];
        all.extend(args.iter().copied());
        all.extend(["--", "/bin/true"]);
        let child = cmd(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stagebox");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait for stagebox");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{all:?}: {err}");
        assert!(err.contains(says), "{all:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one sentence: {err}");
        assert!(out.stdout.is_empty(), "{all:?}");
        let after = host_view();
        assert!(
            after.subuid == before.subuid && after.subgid == before.subgid,
            "{all:?} changed /etc/subuid or /etc/subgid"
        );
        let (added, removed) = differences(&before.state_names(), &after.state_names());
        assert!(
            added.is_empty() && removed.is_empty(),
            "{all:?} changed the state directory: +{added:?} -{removed:?}"
        );
        // The lease directory is the host's: another checkout's runs may take and give back
        // slices meanwhile (or leave one behind when killed); a lease naming this run is
        // a leftover.
        for lease in &after.leases {
            let Ok(start) = lease.parse::<u64>() else {
                assert!(before.leases.contains(lease), "{all:?} left {LEASES}/{lease}");
                continue;
            };
            let text = lease_text(start).unwrap_or_default();
            assert!(
                !text.trim_end().ends_with(&format!(" {pid}")),
                "{all:?} left its lease {LEASES}/{lease}: {text:?}"
            );
        }
        let (added, removed) = lasting_differences(&mounts, host_mounts_but_compare_leaks);
        assert!(
            added.is_empty() && removed.is_empty(),
            "{all:?}: host mounts changed: +{added:?} -{removed:?}"
        );
    }
}

#[test]
fn a_mapped_user_and_host_devices_work_inside_the_user_namespace() {
    let _g = serial();
    if !root_or_skip("userns user and devices") {
        return;
    }
    // --user 1000: a uid of the slice; the exec step switches to it inside the namespace.
    let out = sh_ok(
        &["--userns", "auto", "--user", "1000:1000"],
        "id -u; id -g; grep -c . /proc/self/uid_map",
    );
    assert_eq!(out, "1000\n1000\n1\n");
    // --device: mknod is refused in a user namespace, so the host's node is bind-mounted,
    // replacing the default /dev/null too.
    let mut args = vec!["--userns", "auto", "--device", "/dev/null"];
    let mut want = "1:3\n".to_string();
    if Path::new("/dev/net/tun").exists() {
        args.extend(["--device", "/dev/net/tun"]);
        want.push_str("a:c8\n");
    }
    let out = sh_ok(
        &args,
        "stat -c '%t:%T' /dev/null; [ -e /dev/net/tun ] && stat -c '%t:%T' /dev/net/tun; echo x > /dev/null && echo null=ok",
    );
    assert_eq!(out, format!("{want}null=ok\n"));
}

#[test]
fn the_trace_shows_the_maps_written_from_outside_and_the_host_uid_of_root() {
    let _g = serial();
    if !root_or_skip("userns trace") {
        return;
    }
    let out = cmd(&[
        "run",
        "--rm",
        "--trace",
        "json",
        "--uidmap",
        "0:200000:65536",
        "--",
        "/bin/true",
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let user: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["stage"] == "user")
        .collect();
    let text = format!("{user:?}");
    assert!(
        text.contains("uid_map") && text.contains("0 200000 65536"),
        "{text}"
    );
    assert!(text.contains("host uid 200000"), "{text}");
}

/// The lease directory and slice size the tests look at are the library's.
#[test]
fn the_lease_directory_is_the_librarys() {
    assert_eq!(stagebox::state::subids::LEASE_DIR, LEASES);
    assert_eq!(u64::from(stagebox::state::subids::SLICE), SLICE);
    assert!(Path::new(LEASES).is_absolute());
}

/// Removes the cgroup directories a killed runtime left for container `id`, in every
/// hierarchy (`/sys/fs/cgroup/[HIERARCHY/]PARENT/ID`), retrying while its processes exit.
fn remove_cgroups_of(id: &str) {
    let parent = stagebox::state::dir::cgroup_parent(state_dir());
    let base = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join(&parent).join(id)];
    if let Ok(rd) = std::fs::read_dir(base) {
        dirs.extend(rd.flatten().map(|e| e.path().join(&parent).join(id)));
    }
    for d in dirs.into_iter().filter(|d| d.is_dir()) {
        let gone = within_2s(|| {
            std::fs::remove_dir(&d)
                .ok()
                .or_else(|| (!d.exists()).then_some(()))
        });
        assert!(gone.is_some(), "cannot remove {}", d.display());
    }
}
