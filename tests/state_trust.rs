//! Container state you can trust (#15): a runtime SIGKILLed at any moment is cleaned completely
//! by `container prune`; a name has one owner under concurrency; `rm` goes on past an unknown
//! container; a reused pid is never taken for a runtime (nor signalled); a full disk does not
//! swallow the exit status. Root tests, each with a state directory of its own (the default
//! rootfs is shared read-only through `--rootfs`).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The shared default rootfs, made once in the tests' state directory.
fn rootfs() -> PathBuf {
    stagebox::rootfs::default::ensure(state_dir(), stagebox::rootfs::default::RootfsSource::Auto)
        .expect("the default rootfs")
        .path
}

/// A temp dir under cargo's target tmp (not /tmp), removed when dropped.
fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// `stagebox --state STATE ARGS`.
fn sb(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--state")
        .arg(state)
        .args(args)
        .env("TMPDIR", private_tmp())
        .env("NO_COLOR", "1")
        .env_remove("STAGEBOX_TRACE")
        .stdin(Stdio::null());
    c
}

fn out(state: &Path, args: &[&str]) -> (i32, String, String) {
    let o: Output = sb(state, args).output().expect("run stagebox");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `run --trace off --rootfs R ARGS`.
fn run_args<'a>(rootfs: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--trace", "off", "--rootfs", rootfs];
    v.extend_from_slice(args);
    v
}

/// The container cgroup directories of this state directory, in every hierarchy.
fn cgroup_dirs(state: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for parent in stagebox::runtime::cleanup::cgroup_parents(state) {
        if let Ok(rd) = std::fs::read_dir(&parent) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    v.push(e.path());
                }
            }
        }
    }
    v.sort();
    v
}

/// Lines of /proc/self/mountinfo that mention `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&d))
        .map(str::to_string)
        .collect()
}

/// Lease files (held or not) of the default network and of the state's own whose holder is
/// one of `ids`.
fn leases_of(state: &Path, ids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for home in [
        state.to_path_buf(),
        stagebox::network::bridge::home(state, stagebox::network::ipam::DEFAULT_NETWORK),
    ] {
        let Ok(nets) = std::fs::read_dir(home.join("networks")) else {
            continue;
        };
        for n in nets.flatten() {
            let Ok(rd) = std::fs::read_dir(n.path().join("leases")) else {
                continue;
            };
            for e in rd.flatten() {
                let (holder, _) = stagebox::state::lease::holder_of(&e.path());
                if ids.contains(&holder) {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    found
}

/// A small xorshift, seeded from the clock: the kill moments differ from run to run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_hundred_killed_runs_are_pruned_completely() {
    if !root_or_skip("a_hundred_killed_runs_are_pruned_completely") {
        return;
    }
    let r = rootfs();
    let r = r.to_str().expect("utf-8 path");
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let m = marker();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut runs_with_cgroups = 0;
    let mut seen_before = 0;
    for n in 0..100 {
        let name = format!("k{n}");
        let mut child = sb(
            &state,
            &run_args(
                r,
                &["--name", &name, "--", "/bin/sh", "-c", "sleep 5; :", &m],
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stagebox");
        // Half of the moments count from the start of stagebox, half from the moment its
        // record appears: on a fast or a slow machine alike, kills land in every phase.
        if n % 2 == 1 {
            let t = Instant::now();
            while stagebox::state::container::find(&state, &name).is_err()
                && t.elapsed() < Duration::from_secs(3)
                && child.try_wait().ok().flatten().is_none()
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 51));
        let _ = child.kill();
        let _ = child.wait();
        let now = cgroup_dirs(&state).len();
        if now > seen_before {
            runs_with_cgroups += 1;
        }
        seen_before = now;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "100 runs took too long"
        );
    }
    let before = cgroup_dirs(&state);
    assert!(
        runs_with_cgroups > 0,
        "no kill landed after the cgroups were made"
    );
    let records = stagebox::state::container::list(&state);
    let ids: Vec<String> = records.iter().map(|c| c.id.clone()).collect();
    // ps -a shows each killed one as dead, none as running.
    let (code, dead, _) = out(&state, &["ps", "-a", "-q", "-f", "status=dead"]);
    assert_eq!(code, 0);
    let (_, running, _) = out(&state, &["ps", "-q"]);
    assert!(
        running.trim().is_empty(),
        "killed runs shown running: {running}"
    );
    let exited = records.iter().filter(|c| c.exit_code.is_some()).count();
    assert_eq!(
        dead.lines().count() + exited,
        records.len()
            + stagebox::state::container::orphans_unlocked(&state, Duration::from_secs(1)).len(),
        "every killed run is dead or exited in ps -a:\n{dead}"
    );
    let orphans = stagebox::state::container::orphans(&state).expect("orphans");
    let t = Instant::now();
    let (code, pruned, err) = out(&state, &["container", "prune", "-f"]);
    let took = t.elapsed();
    assert_eq!(code, 0, "prune: {err}");
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    for id in &ids {
        assert!(pruned.contains(id.as_str()), "{id} not pruned:\n{pruned}");
    }
    for id in &orphans {
        assert!(
            pruned.contains(id.as_str()),
            "orphan {id} not pruned:\n{pruned}"
        );
    }
    eprintln!(
        "state_trust: {runs_with_cgroups} of 100 killed runs left cgroup directories ({} in all), {} records, {} directories without a record; prune took {took:?}",
        before.len(),
        records.len(),
        orphans.len()
    );
    let after = cgroup_dirs(&state);
    assert!(after.is_empty(), "cgroups left after prune: {after:?}");
    for p in stagebox::runtime::cleanup::cgroup_parents(&state) {
        assert!(!p.exists(), "the parent {} is left", p.display());
    }
    let left: Vec<_> = std::fs::read_dir(state.join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "container directories left: {left:?}");
    assert_none_left(&m, "killed runs after prune");
    assert!(leases_of(&state, &ids).is_empty(), "leases left");
    assert!(mounts_under(tmp.path()).is_empty(), "mounts left");
    // A second prune finds nothing.
    let (_, again, _) = out(&state, &["container", "prune"]);
    assert_eq!(again, "Deleted Containers:\n\nTotal reclaimed space: 0B\n");
}

#[test]
fn an_orphan_directory_is_seen_and_removed() {
    if !root_or_skip("an_orphan_directory_is_seen_and_removed") {
        return;
    }
    let tmp = tempdir();
    let state = tmp.path().join("state");
    // What a run killed between its mkdir and its first save leaves.
    for id in ["0123456789ab", "ba9876543210"] {
        std::fs::create_dir_all(state.join("containers").join(id).join("upper")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (_, ps, _) = out(&state, &["ps", "-a", "--format", "{{.ID}} {{.State}}"]);
    assert!(ps.contains("0123456789ab dead"), "{ps}");
    let (code, o, e) = out(&state, &["rm", "0123456789ab"]);
    assert_eq!((code, o.as_str()), (0, "0123456789ab\n"), "{e}");
    let (code, o, _) = out(&state, &["container", "prune"]);
    assert_eq!(code, 0);
    assert!(o.contains("ba9876543210"), "{o}");
    assert!(!state.join("containers/ba9876543210").exists());
}

#[test]
fn concurrent_runs_of_one_name_have_one_winner() {
    if !root_or_skip("concurrent_runs_of_one_name_have_one_winner") {
        return;
    }
    let r = rootfs();
    let r = r.to_str().expect("utf-8 path");
    let tmp = tempdir();
    let state = tmp.path().join("state");
    for round in 0..3 {
        let name = format!("dup{round}");
        let children: Vec<_> = (0..5)
            .map(|_| {
                sb(&state, &run_args(r, &["--name", &name, "--", "true"]))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start stagebox")
            })
            .collect();
        let results: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect();
        let winners = results
            .iter()
            .filter(|o| o.status.code() == Some(0))
            .count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for o in results.iter().filter(|o| o.status.code() != Some(0)) {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(125), "{err}");
            assert!(
                err.starts_with(&format!(
                    "stagebox: Conflict: the container name \"{name}\" is already in use by container \""
                )) && err.lines().count() == 1,
                "{err}"
            );
        }
        let (_, ids, _) = out(&state, &["ps", "-a", "-q", "-f", &format!("name={name}")]);
        assert_eq!(ids.lines().count(), 1, "round {round}: {ids}");
    }
    let dirs = std::fs::read_dir(state.join("containers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .count();
    assert_eq!(dirs, 3, "the losers left directories");
    // rename: a taken name is a Conflict, a free one moves.
    let (code, _, err) = out(&state, &["rename", "dup0", "dup1"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("Conflict: the container name \"dup1\""),
        "{err}"
    );
    let (code, _, err) = out(&state, &["rename", "dup0", "fresh"]);
    assert_eq!(code, 0, "{err}");
    let (_, names, _) = out(&state, &["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["dup1", "dup2", "fresh"]);
    let (code, _, _) = out(&state, &["rm", "fresh", "dup1", "dup2"]);
    assert_eq!(code, 0);
}

#[test]
fn rm_goes_on_past_an_unknown_container() {
    if !root_or_skip("rm_goes_on_past_an_unknown_container") {
        return;
    }
    let r = rootfs();
    let r = r.to_str().expect("utf-8 path");
    let tmp = tempdir();
    let state = tmp.path().join("state");
    for n in ["a", "b"] {
        let (code, _, err) = out(&state, &run_args(r, &["--name", n, "--", "true"]));
        assert_eq!(code, 0, "{err}");
    }
    let (_, table, _) = out(&state, &["ps", "-a", "--format", "{{.Names}} {{.ID}}"]);
    let id_of = |n: &str| {
        table
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{n} in {table}"))
            .to_string()
    };
    let (code, o, e) = out(&state, &["rm", "a", "unknown", "b"]);
    assert_eq!(code, 1, "{e}");
    assert_eq!(
        o,
        format!("{}\n{}\n", id_of("a"), id_of("b")),
        "both removed, in order"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("\"unknown\""), "{e}");
    let (_, left, _) = out(&state, &["ps", "-a", "-q"]);
    assert!(left.is_empty(), "{left}");
    // Bad flags of ps are one sentence and 125.
    let (code, _, e) = out(&state, &["ps", "--format", "{{.Nope}}"]);
    assert_eq!((code, e.lines().count()), (125, 1), "{e}");
    let (code, _, e) = out(&state, &["ps", "-f", "status=asleep"]);
    assert_eq!((code, e.lines().count()), (125, 1), "{e}");
}

/// Writes a record that says "running" with `pid` as both its runtime and its workload, and
/// `start` as their start time.
fn fake_record(state: &Path, id: &str, name: &str, pid: i32, start: u64) {
    let c = serde_json::json!({
        "id": id, "name": name, "image": "fake", "command": ["sleep"], "created": 1,
        "status": "running", "exit_code": null, "runtime_pid": pid, "pid": pid,
        "runtime_start": start, "pid_start": start,
    });
    let dir = state.join("containers").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
}

#[test]
fn a_reused_pid_is_neither_running_nor_signalled() {
    if !root_or_skip("a_reused_pid_is_neither_running_nor_signalled") {
        return;
    }
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = sleeper.id() as i32;
    let start = stagebox::kernel::proc::start_time(pid).expect("its start time");
    // Its own runtime, with the right start time: running (so the test can tell).
    fake_record(&state, "aaaaaaaaaaaa", "mine", pid, start);
    // A record whose runtime died and whose pid now belongs to the sleeper.
    fake_record(&state, "bbbbbbbbbbbb", "reused", pid, start + 1);
    let (_, ps, _) = out(&state, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps, "mine running\nreused dead\n");
    let (code, _, e) = out(&state, &["rm", "mine"]);
    assert_eq!(code, 1);
    assert!(e.contains("is running"), "{e}");
    let (code, o, e) = out(&state, &["rm", "-f", "reused"]);
    assert_eq!((code, o.as_str()), (0, "bbbbbbbbbbbb\n"), "{e}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        sleeper.try_wait().expect("try_wait").is_none(),
        "rm -f signalled a process that only has the recorded pid"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let (_, ps, _) = out(&state, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(ps, "mine dead (its runtime was killed)\n");
    let (code, _, e) = out(&state, &["rm", "mine"]);
    assert_eq!(code, 0, "{e}");
}

/// A tmpfs of `size` mounted at `dir` for as long as it lives.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0700").as_str()),
        )
        .expect("mount a tmpfs");
        Tmpfs(dir.to_path_buf())
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Fills the filesystem of `dir` with one file.
fn fill(dir: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
}

#[test]
fn a_full_disk_does_not_swallow_the_exit_status() {
    if !root_or_skip("a_full_disk_does_not_swallow_the_exit_status") {
        return;
    }
    let r = rootfs();
    let r = r.to_str().expect("utf-8 path");
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let mounts_before = mounts_under(tmp.path());
    {
        let _fs = Tmpfs::mount(&state, "8m");
        // The workload fills the disk on its own writable layer (in the state dir), then exits 7.
        let (code, o, e) = out(
            &state,
            &run_args(
                r,
                &[
                    "--name",
                    "filler",
                    "--",
                    "/bin/sh",
                    "-c",
                    "dd if=/dev/zero of=/big bs=64k 2>/dev/null; echo done; exit 7",
                ],
            ),
        );
        assert_eq!(code, 7, "{e}");
        assert_eq!(o, "done\n");
        let lines: Vec<&str> = e.lines().collect();
        assert!(
            lines.len() == 1
                && lines[0]
                    .starts_with("stagebox: could not save the record of container filler: ")
                && lines[0].ends_with("(exit status 7)"),
            "{e}"
        );
        let dir = stagebox::state::container::find(&state, "filler")
            .unwrap()
            .dir(&state);
        let temps: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(temps.is_empty(), "temp files left: {temps:?}");
        let (code, _, e) = out(&state, &["rm", "-f", "filler"]);
        assert_eq!(code, 0, "{e}");

        // A new volume on a full disk is not left half-made, by the library or by a run.
        fill(&state);
        assert!(stagebox::state::volume::create(&state, "halfvol", false).is_err());
        assert!(
            !state.join("volumes/halfvol").exists(),
            "a half-made volume"
        );
        let (code, _, e) = out(&state, &run_args(r, &["-v", "newvol:/v", "--", "true"]));
        assert_eq!(code, 125, "{e}");
        assert!(!state.join("volumes/newvol").exists(), "a half-made volume");
        let left: Vec<_> = std::fs::read_dir(state.join("containers"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "a half-made container: {left:?}");
        assert!(cgroup_dirs(&state).is_empty());
    }
    assert_eq!(
        mounts_under(tmp.path()),
        mounts_before,
        "the tmpfs is still mounted"
    );
}

#[test]
fn rm_f_ends_a_running_container_and_all_it_made() {
    if !root_or_skip("rm_f_ends_a_running_container_and_all_it_made") {
        return;
    }
    let r = rootfs();
    let r = r.to_str().expect("utf-8 path");
    let tmp = tempdir();
    let state = tmp.path().join("state");
    let m = marker();
    let mut child = sb(
        &state,
        &run_args(
            r,
            &["--name", "live", "--", "/bin/sh", "-c", "sleep 30; :", &m],
        ),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start stagebox");
    let _guard = KillMarked(m.clone());
    let mut running = None;
    let t = Instant::now();
    while running.is_none() && t.elapsed() < Duration::from_secs(10) {
        let (_, ids, _) = out(&state, &["ps", "-q", "-f", "status=running"]);
        running = (!ids.trim().is_empty()).then_some(ids);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(running.is_some(), "the container never ran");
    assert!(
        !cgroup_dirs(&state).is_empty(),
        "a running container has cgroups"
    );
    let (code, _, e) = out(&state, &["rm", "live"]);
    assert_eq!(code, 1);
    assert!(e.contains("is running"), "{e}");
    let (code, o, e) = out(&state, &["rm", "-f", "live"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(o.trim(), running.unwrap_or_default().trim());
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(137),
        "the run ends with SIGKILL's status"
    );
    assert_none_left(&m, "rm -f");
    assert!(cgroup_dirs(&state).is_empty());
    let (_, all, _) = out(&state, &["ps", "-a", "-q"]);
    assert!(all.is_empty(), "{all}");
}
