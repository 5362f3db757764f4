//! stagebox as the OCI runtime of real engines (#16): podman (through conmon) and containerd
//! (through containerd-shim-runc-v2) call the binary with runc's command line and a bundle.
//!
//! The runtime under test is this checkout's `stagebox`; `STAGEBOX_ENGINE_RUNTIME=/usr/sbin/runc`
//! runs the same tests against runc, the reference (that is how the harness itself is proved).
//!
//! Nothing on the host changes. Every test has its own stores under a temp dir: podman with
//! `--root/--runroot/--tmpdir`, the vfs driver, a `containers.conf` of its own (CNI backend with
//! a private config dir: netavark would create /run/containers/networks even for `--network
//! none`) and `--network none` (podman's default bridge adds iptables chains and a netns in
//! /run/netns); containerd started by the test with its own `root`, `state` and socket, the CRI
//! plugin off. Containers live in a cgroup parent named after the test process, removed at the
//! end. Each test then proves that no mount under its temp dir, no process with its marker or
//! its temp dir in the command line (conmon, shims, containerd), no cgroup it made and no
//! runtime state is left, and that the host's links, routes and nft tables are as before.
//!
//! Without root, or without podman/containerd, the tests skip with a line; with
//! STAGEBOX_REQUIRE_ROOT=1 (CI) that is a failure. The engines are heavy: the tests run one at
//! a time (a lock), each command bounded by a timeout.

mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Seconds any one engine command may take.
const CMD_SECS: u64 = 90;

/// The runtime binary the engines are given: stagebox, or `$STAGEBOX_ENGINE_RUNTIME`.
fn runtime() -> PathBuf {
    match std::env::var_os("STAGEBOX_ENGINE_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(bin()),
    }
}

/// One engine test at a time: they start daemons, share /run/containerd/s (containerd 1.6
/// puts its shims' sockets there whatever its config says) and load a small machine.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            let p = d.join(tool);
            p.is_file()
        })
    })
}

/// True when the test can go on: root, and every tool installed. Otherwise a SKIP line, or a
/// failure under STAGEBOX_REQUIRE_ROOT=1.
fn engine_or_skip(test: &str, tools: &[&str]) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("STAGEBOX_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: {missing:?} not installed, and STAGEBOX_REQUIRE_ROOT=1 forbids skipping (.ci/run installs them)");
    }
    eprintln!("SKIP {test}: {missing:?} not installed");
    false
}

/// Runs `cmd` with stdin from /dev/null, stdout and stderr captured, for at most `secs`
/// seconds (then it is killed and the test fails). A daemon the command leaves behind
/// (conmon) may hold the pipes open: the output is whatever came by 5 s after the exit.
fn bounded(cmd: Command, secs: u64) -> Output {
    bounded_stdin(cmd, secs, false)
}

/// [`bounded`], with stdin a pipe held open until the command exits when `hold_stdin` (for
/// script(1): at the end of its input it would send an EOF into the terminal).
fn bounded_stdin(mut cmd: Command, secs: u64, hold_stdin: bool) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(if hold_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => v.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(v);
        });
        rx
    };
    let out_rx = collect(Box::new(child.stdout.take().expect("piped stdout")));
    let err_rx = collect(Box::new(child.stderr.take().expect("piped stderr")));
    let stdin = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the engine command") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_rx
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            panic!(
                "{what} still ran after {secs} s; stderr so far:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    Output {
        status,
        stdout,
        stderr,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed:\n{}", show(&o));
    text(&o.stdout)
}

/// `'…'` quoting for a shell command line (for `script -c`).
fn shell_quote(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A temp dir of the test's own, under cargo's target tmp dir (not /tmp).
fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("target tmp dir");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .expect("temp dir")
}

/// A cgroup parent named after this test process: `stagebox-engines-<pid>-<n>`.
fn cgroup_parent() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "stagebox-engines-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every cgroup hierarchy's mount point (v1 controllers, name=systemd, the v2 unified one).
fn cgroup_roots() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut roots: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            let fstype = *f.get(dash + 1)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(f[4]))
        })
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// The directories under `dir`, deepest first.
fn subdirs_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(subdirs_deepest_first(&e.path()));
                out.push(e.path());
            }
        }
    }
    out
}

/// The cgroups under `parent` in every hierarchy, as "hierarchy/relative path".
fn cgroups_under(parent: &str) -> Vec<String> {
    let mut found = Vec::new();
    for root in cgroup_roots() {
        let top = root.join(parent);
        for d in subdirs_deepest_first(&top) {
            found.push(format!(
                "{}/{}",
                root.display(),
                d.strip_prefix(&root).unwrap_or(&d).display()
            ));
        }
    }
    found.sort();
    found
}

/// Removes `parent` in every hierarchy, killing what still runs in it first (only after a
/// failure is anything left). Returns what could not be removed.
fn remove_cgroup_tree(parent: &str) -> Vec<String> {
    let mut left = Vec::new();
    for root in cgroup_roots() {
        let top = root.join(parent);
        if !top.exists() {
            continue;
        }
        let mut dirs = subdirs_deepest_first(&top);
        dirs.push(top.clone());
        for d in dirs {
            let mut gone = false;
            for _ in 0..100 {
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !gone {
                left.push(d.display().to_string());
            }
        }
    }
    left
}

/// Live processes whose command line mentions `needle` anywhere (conmon, a shim, containerd
/// name the test's temp dir), as "PID: command line".
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let me = std::process::id().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let line = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if line.contains(needle) {
            found.push(format!("{name}: {line}"));
        }
    }
    found
}

fn kill_processes_mentioning(needle: &str) {
    for p in processes_mentioning(needle) {
        if let Some(pid) = p.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Mount points under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix) || *m == dir.display().to_string())
        .collect()
}

fn unmount_under(dir: &Path) {
    let mut ms = mounts_under(dir);
    ms.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ms {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// What an engine could change on the host outside its temp dir: its well-known state paths,
/// the nft tables, the links and routes. Taken before, compared after.
struct HostView {
    paths: Vec<(String, bool)>,
    blob_cache: Option<std::time::SystemTime>,
    nft_tables: String,
    links: String,
    routes: String,
}

const ENGINE_HOST_PATHS: &[&str] = &[
    "/var/lib/containers/cache",
    "/run/containers",
    "/run/libpod",
    "/etc/containers/networks",
    "/etc/cni/net.d/cni.lock",
    "/run/containerd",
    "/run/containerd/fifo",
    "/run/containerd/s",
    "/run/containerd/runc",
    "/sys/fs/cgroup/memory/libpod_parent",
    "/sys/fs/cgroup/libpod_parent",
];

impl HostView {
    /// What differs from `before`, one line each (empty: the host is as it was).
    fn changes_since(&self, before: &HostView) -> Vec<String> {
        let mut v = Vec::new();
        for ((p, was), (_, is)) in before.paths.iter().zip(&self.paths) {
            if was != is {
                v.push(format!("{p}: existed {was}, now {is}"));
            }
        }
        if before.blob_cache != self.blob_cache {
            v.push("/var/lib/containers/cache/blob-info-cache-v1.boltdb was written".into());
        }
        for (what, a, b) in [
            ("nft tables", &before.nft_tables, &self.nft_tables),
            ("links", &before.links, &self.links),
            ("routes", &before.routes, &self.routes),
        ] {
            if a != b {
                v.push(format!("{what}: before\n{a}\nafter\n{b}"));
            }
        }
        v
    }

    fn now() -> HostView {
        let nft = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        // stagebox's own table comes and goes with other tests' bridges: not the engines'.
        let mut tables: Vec<&str> = nft
            .lines()
            .filter(|t| !t.trim_end().ends_with(" stagebox"))
            .collect();
        tables.sort();
        let (links, routes) = host_network();
        HostView {
            paths: ENGINE_HOST_PATHS
                .iter()
                .map(|p| (p.to_string(), Path::new(p).exists()))
                .collect(),
            blob_cache: std::fs::metadata("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
                .and_then(|m| m.modified())
                .ok(),
            nft_tables: tables.join("\n"),
            links,
            routes,
        }
    }
}

// ----------------------------------------------------------------------------------------
// podman

/// What the podman tests run: the engine, its monitor, and for the image import tar and unshare.
const PODMAN_TOOLS: &[&str] = &["podman", "conmon", "tar", "unshare"];

const PODMAN_IMAGE: &str = "localhost/stagebox-engines:latest";

/// `cmd` run in a mount namespace of its own where /var/lib/containers/cache is an empty
/// tmpfs: an image copy (podman import) writes its blob-info cache there, for root always
/// in that host path whatever --root says. The nearest existing dir of the path is covered.
fn in_private_blob_cache(cmd: Command) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "for d in /var/lib/containers/cache /var/lib/containers /var/lib; do \
               if [ -d \"$d\" ]; then mount -t tmpfs -o size=64m stagebox-engines \"$d\" || exit 125; break; fi; \
             done; exec \"$@\"",
        )
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// A podman of the test's own: private stores and config, the runtime under test.
struct Podman {
    dir: tempfile::TempDir,
    /// podman refuses a --runroot longer than 50 characters (its sockets are there and in
    /// tmp_dir): both live in a short dir in /tmp.
    short: tempfile::TempDir,
    parent: String,
    marker: String,
    before: HostView,
    finished: bool,
}

/// The default rootfs (made if needed) as a tarball at `to`.
fn default_rootfs_tar(to: &Path) {
    let out = ok(
        bounded(cmd(&["rootfs", "--json"]), CMD_SECS),
        "stagebox rootfs --json",
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("rootfs --json is JSON");
    let path = v["path"].as_str().expect("rootfs --json has a path");
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(path).arg("-cf").arg(to).arg(".");
    ok(bounded(tar, CMD_SECS), "tar of the default rootfs");
}

impl Podman {
    fn new() -> Podman {
        let before = HostView::now();
        let dir = temp_dir("podman-");
        let d = dir.path();
        std::fs::create_dir_all(d.join("tmp")).expect("tmp dir");
        let short = tempfile::Builder::new()
            .prefix("sbe-")
            .tempdir()
            .expect("short dir for podman's runroot");
        let conf = format!(
            r#"[engine]
tmp_dir = "{s}/tmp"
image_copy_tmp_dir = "{d}/tmp"
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime_supports_json = ["crun", "runc", "stagebox"]
[network]
network_backend = "cni"
network_config_dir = "{d}/networks"
"#,
            d = d.display(),
            s = short.path().display()
        );
        std::fs::write(d.join("containers.conf"), conf).expect("containers.conf");
        let p = Podman {
            dir,
            short,
            parent: cgroup_parent(),
            marker: marker(),
            before,
            finished: false,
        };
        let tar = p.dir.path().join("rootfs.tar");
        default_rootfs_tar(&tar);
        let import = p.podman(&["import"]);
        let mut import = in_private_blob_cache(import);
        import.arg(&tar).arg(PODMAN_IMAGE);
        ok(bounded(import, CMD_SECS), "podman import");
        p
    }

    /// `podman <private stores> --runtime RUNTIME ARGS`.
    fn podman(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("TMPDIR", d.join("tmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(self.short.path().join("runroot"))
            .arg("--tmpdir")
            .arg(self.short.path().join("tmp"))
            .args(["--storage-driver", "vfs", "--runtime"])
            .arg(runtime())
            .args(args);
        c
    }

    /// The options every `podman run` of these tests takes: no network, the test's cgroup
    /// parent, rlimits this host allows (podman's default NOFILE is above its hard limit).
    fn run_opts(&self) -> Vec<String> {
        [
            "--network",
            "none",
            "--cgroup-parent",
            &format!("/{}", self.parent),
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `podman run OPTS… EXTRA… IMAGE sh -c SCRIPT MARKER`, as a Command.
    fn run_sh(&self, extra: &[&str], script: &str) -> Command {
        let mut c = self.podman(&["run"]);
        c.args(self.run_opts())
            .args(extra)
            .args([PODMAN_IMAGE, "sh", "-c", script, &self.marker]);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        bounded(self.podman(args), CMD_SECS)
    }

    /// Removes every container, then proves nothing is left: no process with the marker or
    /// the temp dir in its command line, no mount under the temp dir, no container cgroup
    /// (the runtime's `delete` removes it; podman's own `conmon` cgroup is removed here), no
    /// runtime state for `ids`, the host's engine paths, nft tables, links and routes as before.
    fn finish(mut self, ids: &[String]) {
        self.finished = true;
        let rm = self.out(&["rm", "--all", "--force", "--time", "0"]);
        assert!(rm.status.success(), "podman rm -af:\n{}", show(&rm));
        assert_none_left(&self.marker, "podman's containers");
        for d in [self.dir.path(), self.short.path()] {
            let dir = d.display().to_string();
            let left = within(10, || processes_mentioning(&dir).is_empty().then_some(()));
            assert!(
                left.is_some(),
                "processes of podman (conmon) left:\n{}",
                processes_mentioning(&dir).join("\n")
            );
            let mounts = mounts_under(d);
            assert!(mounts.is_empty(), "mounts left under {dir}: {mounts:?}");
        }
        let containers: Vec<String> = cgroups_under(&self.parent)
            .into_iter()
            .filter(|c| !c.ends_with("/conmon"))
            .filter(|c| !c.ends_with(&format!("/{}", self.parent)))
            .collect();
        assert!(
            containers.is_empty(),
            "the runtime left container cgroups: {containers:?}"
        );
        let stuck = remove_cgroup_tree(&self.parent);
        assert!(
            stuck.is_empty(),
            "cgroups that cannot be removed: {stuck:?}"
        );
        for id in ids {
            let mut state = Command::new(runtime());
            state.args(["state", id]);
            let s = bounded(state, CMD_SECS);
            assert!(
                !s.status.success(),
                "the runtime still knows container {id} after podman removed it:\n{}",
                show(&s)
            );
        }
        let changes = HostView::now().changes_since(&self.before);
        assert!(
            changes.is_empty(),
            "podman changed the host:\n{}",
            changes.join("\n")
        );
    }
}

impl Drop for Podman {
    /// After a failure: the best cleanup there is, so the next test starts clean.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let _ = bounded(self.podman(&["rm", "--all", "--force", "--time", "0"]), 30);
        let _ = KillMarked(self.marker.clone());
        for d in [self.dir.path(), self.short.path()] {
            kill_processes_mentioning(&d.display().to_string());
            unmount_under(d);
        }
        let _ = remove_cgroup_tree(&self.parent);
    }
}

#[test]
fn podman_one_shot_returns_the_exit_status() {
    if !engine_or_skip("podman one-shot", PODMAN_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    let cid = p.dir.path().join("cid");
    let run = p.run_sh(&["--rm", "--cidfile", &cid.display().to_string()], "exit 3");
    let out = bounded(run, CMD_SECS);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let id = std::fs::read_to_string(&cid).unwrap_or_default();
    assert_eq!(
        id.trim().len(),
        64,
        "podman wrote the container id to --cidfile: {id:?}"
    );
    p.finish(&[id.trim().to_string()]);
}

#[test]
fn podman_it_gives_the_workload_a_pts() {
    if !engine_or_skip("podman -it", &[PODMAN_TOOLS, &["script"]].concat()) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    // script(1) gives podman a terminal; -e returns the status of what it ran.
    let run = p.run_sh(&["--rm", "-it"], "tty; exit 4");
    let line: Vec<String> = std::iter::once(run.get_program())
        .chain(run.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut script = Command::new("script");
    let line = shell_quote(&line);
    script
        .args(["-qec", &line, "/dev/null"])
        .envs(run.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("TERM", "dumb");
    let out = bounded_stdin(script, CMD_SECS, true);
    let so = text(&out.stdout);
    assert!(
        so.contains("/dev/pts/"),
        "tty in the container is not a /dev/pts device:\n{}\n(script -qec {line})",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    p.finish(&[]);
}

#[test]
fn podman_detached_then_exec_logs_and_stop() {
    if !engine_or_skip("podman -d", PODMAN_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    let name = format!("stagebox-engines-{}", std::process::id());
    // pid 1 ignores a signal it has no handler for: the trap makes SIGTERM end it with 0.
    let id = ok(
        bounded(
            p.run_sh(
                &["-d", "--name", &name],
                "trap 'exit 0' TERM; echo hello-from-the-workload; while :; do sleep 1; done",
            ),
            CMD_SECS,
        ),
        "podman run -d",
    )
    .trim()
    .to_string();
    assert_eq!(id.len(), 64, "podman run -d prints the id: {id:?}");
    assert!(
        within(10, || (!marked_processes(&p.marker).is_empty())
            .then_some(()))
        .is_some(),
        "the detached workload is not running on the host"
    );

    let logs = within(10, || {
        let l = p.out(&["logs", &name]);
        text(&l.stdout)
            .contains("hello-from-the-workload")
            .then_some(())
    });
    assert!(
        logs.is_some(),
        "podman logs: {}",
        show(&p.out(&["logs", &name]))
    );

    let exec = p.out(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo in-exec $$; cat /proc/1/cmdline | tr '\\0' ' '; exit 5",
    ]);
    assert_eq!(exec.status.code(), Some(5), "podman exec: {}", show(&exec));
    let eo = text(&exec.stdout);
    assert!(eo.contains("in-exec"), "podman exec: {}", show(&exec));
    assert!(
        eo.contains(&p.marker),
        "exec did not join the container's pid namespace (pid 1 is not the workload): {eo}"
    );

    let started = Instant::now();
    let stop = p.out(&["stop", "--time", "10", &name]);
    assert!(stop.status.success(), "podman stop: {}", show(&stop));
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "SIGTERM did not reach the workload: stop waited for its timeout ({:?})",
        started.elapsed()
    );
    assert_none_left(&p.marker, "podman stop");
    let code = ok(
        p.out(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        "podman inspect",
    );
    assert_eq!(code.trim(), "0", "the trap's exit status");
    ok(p.out(&["rm", &name]), "podman rm");
    p.finish(&[id]);
}

#[test]
fn podman_memory_and_pids_limits_reach_the_cgroup() {
    if !engine_or_skip("podman -m --pids-limit", PODMAN_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    // v2 files first, else the v1 controllers (this host is hybrid). Then 60 sleeps in the
    // background: a limit of 50 tasks stops some of them.
    let script = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; \
                  grep -E ':memory:|^0::' /proc/self/cgroup; \
                  i=0; while [ $i -lt 60 ]; do (sleep 3 &) 2>/dev/null; i=$((i+1)); done; \
                  set -- /proc/[0-9]*; echo tasks=$#";
    let out = bounded(
        p.run_sh(&["--rm", "-m", "64m", "--pids-limit", "50"], script),
        CMD_SECS,
    );
    let so = text(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(
        lines.first().map(|l| l.trim()),
        Some("67108864"),
        "memory limit:\n{so}"
    );
    assert_eq!(
        lines.get(1).map(|l| l.trim()),
        Some("50"),
        "pids limit:\n{so}"
    );
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        // cgroup v1, no cgroup namespace: the path shows, under the test's parent.
        assert!(
            so.contains(&format!(":memory:/{}/", p.parent)),
            "the container's memory cgroup is not under --cgroup-parent:\n{so}"
        );
    }
    let tasks: usize = so
        .lines()
        .find_map(|l| l.strip_prefix("tasks="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        tasks <= 50,
        "pids.max 50 not enforced: {tasks} processes\n{so}"
    );
    p.finish(&[]);
}

#[test]
fn podman_bind_mount_shows_the_host_dir() {
    if !engine_or_skip("podman -v", PODMAN_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    let vol = temp_dir("podman-vol-");
    std::fs::write(vol.path().join("marker"), format!("{}\n", p.marker)).expect("marker file");
    let bind = format!("{}:/v", vol.path().display());
    let out = bounded(
        p.run_sh(
            &["--rm", "-v", &bind],
            "cat /v/marker; echo back > /v/from-container",
        ),
        CMD_SECS,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout).trim(), p.marker, "{}", show(&out));
    assert_eq!(
        std::fs::read_to_string(vol.path().join("from-container"))
            .unwrap_or_default()
            .trim(),
        "back",
        "a write in /v did not reach the host dir"
    );
    p.finish(&[]);
    assert!(
        mounts_under(vol.path()).is_empty(),
        "the bind mount stays on the host"
    );
}

#[test]
fn podman_network_none_has_only_lo() {
    if !engine_or_skip("podman --network none", PODMAN_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    let out = bounded(p.run_sh(&["--rm"], "cat /proc/net/dev"), CMD_SECS);
    assert!(out.status.success(), "{}", show(&out));
    let ifaces: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect();
    assert_eq!(ifaces, vec!["lo".to_string()], "{}", show(&out));
    p.finish(&[]);
}

#[test]
fn podman_missing_command_is_127_with_the_runtimes_sentence() {
    if !engine_or_skip("podman missing command", PODMAN_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let p = Podman::new();
    // runc looks the command up at `create`; podman turns a message with "no such file or
    // directory" into 127, as Docker does, and shows the runtime's sentence.
    let mut run = p.podman(&["run"]);
    run.args(p.run_opts())
        .args(["--rm", PODMAN_IMAGE, "/no-such-command", &p.marker]);
    let out = bounded(run, CMD_SECS);
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("/no-such-command"),
        "the runtime's error names the command: {}",
        show(&out)
    );
    p.finish(&[]);
}

// ----------------------------------------------------------------------------------------
// containerd

const CONTAINERD_TOOLS: &[&str] = &["containerd", "ctr", "containerd-shim-runc-v2", "tar"];

const CTR_IMAGE: &str = "docker.io/library/stagebox-engines:latest";

/// A containerd of the test's own, started by hand (there is no systemd): its root, state,
/// sockets and config in a temp dir, the CRI plugin off.
struct Containerd {
    dir: tempfile::TempDir,
    /// A short dir in /tmp for the sockets when the temp dir's path is too long for sun_path.
    sock_dir: Option<tempfile::TempDir>,
    daemon: Option<Child>,
    parent: String,
    marker: String,
    before: HostView,
    made_run_containerd: bool,
    ids: Vec<String>,
    finished: bool,
}

impl Containerd {
    fn start() -> Containerd {
        let before = HostView::now();
        let made_run_containerd = !Path::new("/run/containerd").exists();
        let dir = temp_dir("containerd-");
        let d = dir.path().to_path_buf();
        let sock_dir = (d.join("containerd.sock.ttrpc").as_os_str().len() > 100).then(|| {
            tempfile::Builder::new()
                .prefix("sbe-")
                .tempdir()
                .expect("short socket dir")
        });
        let socks = sock_dir
            .as_ref()
            .map(|s| s.path().to_path_buf())
            .unwrap_or(d.clone());
        std::fs::create_dir_all(d.join("tmp")).expect("tmp dir");
        let conf = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{s}/containerd.sock"
[ttrpc]
  address = "{s}/containerd.sock.ttrpc"
[debug]
  address = "{s}/debug.sock"
[metrics]
  address = ""
"#,
            d = d.display(),
            s = socks.display()
        );
        std::fs::write(d.join("config.toml"), conf).expect("config.toml");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd.log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("TMPDIR", d.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            dir,
            sock_dir,
            daemon: Some(daemon),
            parent: cgroup_parent(),
            marker: marker(),
            before,
            made_run_containerd,
            ids: Vec::new(),
            finished: false,
        };
        let up = within(30, || c.out(&["version"]).status.success().then_some(()));
        assert!(
            up.is_some(),
            "containerd did not come up in 30 s:\n{}",
            std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
        );
        c.import_image();
        c
    }

    /// The temp dir, and the socket dir when it is apart.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.path().to_path_buf()];
        v.extend(self.sock_dir.as_ref().map(|s| s.path().to_path_buf()));
        v
    }

    fn sock(&self) -> PathBuf {
        self.sock_dir
            .as_ref()
            .map(|s| s.path())
            .unwrap_or(self.dir.path())
            .join("containerd.sock")
    }

    /// `stagebox save` of the default image into an OCI layout, tarred, `ctr image import`ed.
    fn import_image(&self) {
        let d = self.dir.path();
        let layout = d.join("oci");
        let mut save = cmd(&["save", "default:latest"]);
        save.arg(&layout);
        ok(bounded(save, CMD_SECS), "stagebox save");
        let mut tar = Command::new("tar");
        tar.arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(d.join("oci.tar"))
            .arg(".");
        ok(bounded(tar, CMD_SECS), "tar of the OCI layout");
        let mut import = self.ctr(&[
            "image",
            "import",
            "--base-name",
            "docker.io/library/stagebox-engines",
            "--digests",
        ]);
        import.arg(d.join("oci.tar"));
        ok(bounded(import, CMD_SECS), "ctr image import");
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.sock()).args(args);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        bounded(self.ctr(args), CMD_SECS)
    }

    /// `ctr run FLAGS --runc-binary RUNTIME --runc-root … --cgroup /PARENT/ID --fifo-dir …
    /// IMAGE ID sh -c SCRIPT MARKER`.
    fn run_sh(&mut self, flags: &[&str], id: &str, script: &str) -> Command {
        self.ids.push(id.to_string());
        let d = self.dir.path();
        let mut c = self.ctr(&["run"]);
        c.args(flags)
            .arg("--runc-binary")
            .arg(runtime())
            .arg("--runc-root")
            .arg(d.join("runc-root"))
            .arg("--cgroup")
            .arg(format!("/{}/{id}", self.parent))
            .arg("--fifo-dir")
            .arg(d.join("fifo"))
            .args([CTR_IMAGE, id, "sh", "-c", script, &self.marker]);
        c
    }

    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(_)) = d.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = d.kill();
                    let _ = d.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// /run/containerd/{s,fifo} and /run/containerd itself when this test made it (containerd
    /// 1.6 puts its shims' sockets there whatever its config says). Returns what stays.
    fn remove_run_containerd(&self) -> Vec<String> {
        if !self.made_run_containerd {
            return Vec::new();
        }
        let mut left = Vec::new();
        for p in [
            "/run/containerd/s",
            "/run/containerd/fifo",
            "/run/containerd",
        ] {
            let p = Path::new(p);
            if p.exists() && std::fs::remove_dir(p).is_err() {
                left.push(format!(
                    "{} ({:?})",
                    p.display(),
                    std::fs::read_dir(p)
                        .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                ));
            }
        }
        left
    }

    /// Deletes every task and container, stops containerd, then proves nothing is left: no
    /// process with the marker or the temp dir in its command line (shims, containerd), no
    /// mount under the temp dir, no container cgroup, no runtime state in --runc-root, the
    /// host's engine paths, nft tables, links and routes as before.
    fn finish(mut self) {
        self.finished = true;
        for id in self.ids.clone() {
            let _ = self.out(&["task", "delete", "--force", &id]);
            let _ = self.out(&["container", "rm", &id]);
        }
        let left_containers = text(&self.out(&["container", "ls", "--quiet"]).stdout);
        assert!(
            left_containers.trim().is_empty(),
            "containers left: {left_containers}"
        );
        assert_none_left(&self.marker, "containerd's tasks");
        let state_dir = self.dir.path().join("runc-root").join("default");
        let state: Vec<PathBuf> = tree(&state_dir);
        assert!(
            state.is_empty(),
            "the runtime left state in its --root {}: {state:?}",
            state_dir.display()
        );
        self.stop_daemon();
        for d in self.dirs() {
            let dir = d.display().to_string();
            let gone = within(10, || processes_mentioning(&dir).is_empty().then_some(()));
            assert!(
                gone.is_some(),
                "processes of containerd (shims) left:\n{}",
                processes_mentioning(&dir).join("\n")
            );
            let mounts = mounts_under(&d);
            assert!(mounts.is_empty(), "mounts left under {dir}: {mounts:?}");
        }
        let cgroups: Vec<String> = cgroups_under(&self.parent);
        assert!(
            cgroups.is_empty(),
            "the runtime left container cgroups: {cgroups:?}"
        );
        let stuck = remove_cgroup_tree(&self.parent);
        assert!(
            stuck.is_empty(),
            "cgroups that cannot be removed: {stuck:?}"
        );
        let run = self.remove_run_containerd();
        assert!(run.is_empty(), "/run/containerd keeps: {run:?}");
        let changes = HostView::now().changes_since(&self.before);
        assert!(
            changes.is_empty(),
            "containerd changed the host:\n{}",
            changes.join("\n")
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for id in self.ids.clone() {
            let _ = bounded(self.ctr(&["task", "delete", "--force", &id]), 30);
            let _ = bounded(self.ctr(&["container", "rm", &id]), 30);
        }
        self.stop_daemon();
        let _ = KillMarked(self.marker.clone());
        for d in self.dirs() {
            kill_processes_mentioning(&d.display().to_string());
            unmount_under(&d);
        }
        let _ = remove_cgroup_tree(&self.parent);
        let _ = self.remove_run_containerd();
    }
}

#[test]
fn containerd_one_shot_returns_the_exit_status() {
    if !engine_or_skip("containerd one-shot", CONTAINERD_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let mut c = Containerd::start();
    let run = c.run_sh(&["--rm"], "oneshot", "exit 3");
    let out = bounded(run, CMD_SECS);
    assert_eq!(out.status.code(), Some(3), "ctr run --rm: {}", show(&out));
    c.finish();
}

#[test]
fn containerd_detached_then_exec_kill_delete() {
    if !engine_or_skip("containerd -d", CONTAINERD_TOOLS) {
        return;
    }
    let _one = one_at_a_time();
    let mut c = Containerd::start();
    let run = c.run_sh(
        &["-d"],
        "detached",
        "trap 'exit 7' TERM; while :; do sleep 1; done",
    );
    ok(bounded(run, CMD_SECS), "ctr run -d");
    let running = within(10, || {
        let ls = text(&c.out(&["task", "ls"]).stdout);
        ls.lines()
            .any(|l| l.starts_with("detached ") && l.contains("RUNNING"))
            .then_some(())
    });
    assert!(
        running.is_some(),
        "task ls: {}",
        show(&c.out(&["task", "ls"]))
    );
    assert!(
        !marked_processes(&c.marker).is_empty(),
        "the workload is not on the host"
    );

    // `ctr task ps` is the runtime's `ps --format json`.
    let ps = ok(c.out(&["task", "ps", "detached"]), "ctr task ps");
    assert!(
        ps.lines().count() >= 2,
        "ctr task ps lists the workload: {ps}"
    );

    let exec = c.out(&[
        "task",
        "exec",
        "--exec-id",
        "x",
        "detached",
        "sh",
        "-c",
        "echo in-exec; cat /proc/1/cmdline | tr '\\0' ' '; exit 5",
    ]);
    assert_eq!(
        exec.status.code(),
        Some(5),
        "ctr task exec: {}",
        show(&exec)
    );
    let eo = text(&exec.stdout);
    assert!(
        eo.contains("in-exec") && eo.contains(&c.marker),
        "ctr task exec: {}",
        show(&exec)
    );

    ok(c.out(&["task", "kill", "detached"]), "ctr task kill");
    let stopped = within(10, || {
        let ls = text(&c.out(&["task", "ls"]).stdout);
        ls.lines()
            .any(|l| l.starts_with("detached ") && l.contains("STOPPED"))
            .then_some(())
    });
    assert!(
        stopped.is_some(),
        "SIGTERM did not stop the task: {}",
        show(&c.out(&["task", "ls"]))
    );
    assert_none_left(&c.marker, "ctr task kill");
    let del = c.out(&["task", "delete", "detached"]);
    assert!(del.status.success(), "ctr task delete: {}", show(&del));
    let ls = text(&c.out(&["task", "ls"]).stdout);
    assert!(
        !ls.contains("detached"),
        "task still listed after delete: {ls}"
    );
    ok(c.out(&["container", "rm", "detached"]), "ctr container rm");
    c.finish();
}
