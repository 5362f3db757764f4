//! `linux.namespaces[i].path` (#16): the uts, ipc, net and cgroupns stages join an existing
//! namespace with setns(2) instead of making one, and read back that /proc/self/ns/TYPE has the
//! inode of the file they joined. The test makes the namespaces itself (`ip netns add`, and a
//! holder process started by `unshare --ipc --uts --cgroup`), runs a bundle with runc's
//! command line (`stagebox --root DIR run ID`), and compares the inodes the workload reads with
//! `stat -L` of the files. Bad paths are one sentence naming the field, with nothing left.
//! Everything made is removed, and the host's namespaces and mounts are shown unchanged.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The tests change the host's mount table (`ip netns add`): one at a time, so that each
/// one's before/after comparison sees only its own.
static HOST: Mutex<()> = Mutex::new(());

/// A bundle (config.json from `stagebox spec`, a copy of the default rootfs) and a --root
/// state directory, both under the test's temp dir.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("oci-join-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let out = stagebox(&["rootfs", "--json"]);
        assert!(out.status.success(), "stagebox rootfs --json: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rootfs --json");
        let rootfs = v["path"].as_str().expect("rootfs --json has a path");
        let b = Bundle { dir };
        let bundle = b.bundle();
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        let cp = Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(bundle.join("rootfs"))
            .status()
            .expect("cp -a");
        assert!(cp.success(), "cp -a {rootfs}");
        let out = cmd(&["--root", b.root().to_str().unwrap(), "spec"])
            .current_dir(&bundle)
            .output()
            .expect("stagebox spec");
        assert!(out.status.success(), "stagebox spec: {out:?}");
        b
    }
    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    /// Rewrites config.json: this script as the process, these namespaces.
    fn configure(&self, script: &str, namespaces: serde_json::Value) {
        self.configure_with(script, namespaces, None)
    }
    /// `configure`, with this `hostname` (none: the field removed).
    fn configure_with(&self, script: &str, namespaces: serde_json::Value, hostname: Option<&str>) {
        let file = self.bundle().join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("config.json"))
                .expect("config.json is JSON");
        c["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        c["process"]["terminal"] = serde_json::json!(false);
        c["linux"]["namespaces"] = namespaces;
        match hostname {
            Some(h) => c["hostname"] = serde_json::json!(h),
            None => {
                if let Some(o) = c.as_object_mut() {
                    o.remove("hostname");
                }
            }
        }
        std::fs::write(&file, serde_json::to_vec_pretty(&c).expect("json")).expect("write");
    }
    /// `stagebox --root ROOT --trace pretty run ID` in the bundle: (code, stdout, stderr).
    fn run(&self, id: &str) -> (i32, String, String) {
        let out = cmd(&[
            "--root",
            self.root().to_str().unwrap(),
            "--trace",
            "pretty",
            "run",
            id,
        ])
        .current_dir(self.bundle())
        .output()
        .expect("stagebox run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
    /// What the runtime keeps in --root for containers: nothing once a run is over.
    fn containers_left(&self) -> Vec<PathBuf> {
        tree(&self.root().join("containers"))
    }
}

/// A network namespace made with `ip netns add` (a bind mount of its nsfs file under
/// /run/netns), deleted when dropped.
/// The second field: whether /run/netns was there before (`ip netns add` makes it a mount
/// point the first time and leaves it; the test takes away what it made).
struct NetNs(String, bool);

fn run_netns_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some("/run/netns"))
}

impl NetNs {
    fn new() -> NetNs {
        let had = run_netns_mounted() || Path::new("/run/netns").exists();
        let name = format!("sbtest-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name}");
        NetNs(name, had)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        let empty = std::fs::read_dir("/run/netns").is_ok_and(|mut d| d.next().is_none());
        if !self.1 && empty {
            if run_netns_mounted() {
                let _ = Command::new("umount").arg("/run/netns").status();
            }
            let _ = std::fs::remove_dir("/run/netns");
        }
    }
}

/// `unshare --ipc --uts --cgroup`: a process in an IPC, UTS and cgroup namespace of its own,
/// with a hostname and one System V shared memory segment, sleeping until killed.
struct Holder {
    child: Child,
    hostname: String,
}

impl Holder {
    fn new() -> Holder {
        let hostname = format!("sbholder{}", std::process::id());
        let child = Command::new("unshare")
            .args(["--ipc", "--uts", "--cgroup", "sh", "-c"])
            .arg(format!(
                "hostname {hostname} && ipcmk -M 4096 >/dev/null && exec sleep 60"
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let pid = child.id();
        let ready = within(10, || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "sleep").then_some(())
        });
        let h = Holder { child, hostname };
        assert!(ready.is_some(), "the holder {pid} did not reach its sleep");
        h
    }
    fn ns(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{name}", self.child.id()))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stat -L -c %i`: the inode of the namespace a file names.
fn ino(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

fn netns_list() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host's mounts, without /run/netns itself: `ip netns add` makes that mount point the
/// first time and keeps it (it is `ip`'s, not the test's); the namespace files under it are
/// checked on their own.
fn mounts() -> Vec<String> {
    host_mounts_but_compare_leaks()
        .into_iter()
        .filter(|m| !m.starts_with("/run/netns "))
        .collect()
}

fn assert_host_unchanged(before_mounts: &[String], before_netns: &str, netns: &str) {
    let (added, removed) = lasting_differences(before_mounts, mounts);
    assert!(
        added.is_empty() && removed.is_empty(),
        "the host's mounts changed: added {added:?}, removed {removed:?}"
    );
    let now = netns_list();
    assert!(!now.contains(netns), "{netns} is still listed: {now}");
    assert_eq!(now, before_netns, "ip netns list changed");
    assert!(
        !Path::new(&format!("/run/netns/{netns}")).exists(),
        "/run/netns/{netns} is left"
    );
}

#[test]
fn net_ipc_uts_and_cgroup_namespaces_are_joined_by_path() {
    if !root_or_skip("net_ipc_uts_and_cgroup_namespaces_are_joined_by_path") {
        return;
    }
    let _one = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before_mounts = mounts();
    let before_netns = netns_list();
    let b = Bundle::new();
    let name;
    {
        let net = NetNs::new();
        name = net.0.clone();
        let holder = Holder::new();
        let want = [
            ("net", ino(&net.path())),
            ("ipc", ino(&holder.ns("ipc"))),
            ("uts", ino(&holder.ns("uts"))),
            ("cgroup", ino(&holder.ns("cgroup"))),
        ];
        // The host's own namespaces differ from every one of them: the check can fail.
        for (n, i) in want {
            assert_ne!(
                common::host_ns(n),
                format!("{n}:[{i}]"),
                "the test's {n} namespace is the host's"
            );
        }
        b.configure_with(
            "for n in net ipc uts cgroup; do readlink /proc/self/ns/$n; done; hostname; \
             grep -c . /proc/sysvipc/shm; cat /proc/net/dev | tail -n +3 | cut -d: -f1",
            serde_json::json!([
                {"type": "pid"},
                {"type": "network", "path": net.path()},
                {"type": "ipc", "path": holder.ns("ipc")},
                {"type": "uts", "path": holder.ns("uts")},
                {"type": "mount"},
                {"type": "cgroup", "path": holder.ns("cgroup")},
            ]),
            // The joined namespace keeps its own name: the config's is not set.
            Some("notthisname"),
        );
        let (code, out, err) = b.run("joiner");
        assert_eq!(code, 0, "stagebox run: {out}\n{err}");
        let lines: Vec<&str> = out.lines().collect();
        for (k, (n, i)) in want.iter().enumerate() {
            assert_eq!(
                lines.get(k).copied(),
                Some(format!("{n}:[{i}]").as_str()),
                "/proc/self/ns/{n} inside is not the joined namespace\n{out}"
            );
        }
        assert_eq!(
            lines.get(4).copied(),
            Some(holder.hostname.as_str()),
            "the joined UTS namespace's hostname\n{out}"
        );
        // The header line of /proc/sysvipc/shm plus the holder's one segment.
        assert_eq!(
            lines.get(5).copied(),
            Some("2"),
            "the holder's shm segment is shared\n{out}"
        );
        let ifaces: Vec<&str> = lines[6..].iter().map(|l| l.trim()).collect();
        assert_eq!(
            ifaces,
            ["lo"],
            "the joined network namespace's interfaces\n{out}"
        );
        // The trace shows the setns of each stage and the inode it read back.
        for (stage, path, (n, i)) in [
            ("network", net.path(), want[0]),
            ("IPC", holder.ns("ipc"), want[1]),
            ("UTS", holder.ns("uts"), want[2]),
            ("cgroup", holder.ns("cgroup"), want[3]),
        ] {
            let call = format!("setns(open({:?})", path.display().to_string());
            assert!(err.contains(&call), "the trace lacks {call}\n{err}");
            let note = format!(
                "joined the {stage} namespace {n}:[{i}] of {}",
                path.display()
            );
            assert!(err.contains(&note), "the trace lacks {note:?}\n{err}");
        }
        let note = "hostname \"notthisname\": not set: the uts namespace is joined";
        assert!(err.contains(note), "the trace lacks {note:?}\n{err}");
        assert_eq!(b.containers_left(), Vec::<PathBuf>::new(), "state left");
    }
    assert_host_unchanged(&before_mounts, &before_netns, &name);
}

#[test]
fn bad_namespace_paths_are_one_sentence_and_leave_nothing() {
    if !root_or_skip("bad_namespace_paths_are_one_sentence_and_leave_nothing") {
        return;
    }
    let _one = HOST.lock().unwrap_or_else(|e| e.into_inner());
    let before_mounts = mounts();
    let before_netns = netns_list();
    let b = Bundle::new();
    let me = std::process::id();
    let field = "stagebox: config.json linux.namespaces[1].path: ";
    let cases: Vec<(serde_json::Value, String)> = vec![
        (
            serde_json::json!({"type": "network", "path": "/etc/hostname"}),
            "/etc/hostname is not a namespace file; name one such as /proc/PID/ns/net or /run/netns/NAME".into(),
        ),
        (
            serde_json::json!({"type": "network", "path": format!("/proc/{me}/ns/ipc")}),
            format!("/proc/{me}/ns/ipc is a namespace of type ipc, not net; name a net namespace such as /proc/PID/ns/net"),
        ),
        (
            serde_json::json!({"type": "uts", "path": "/run/netns/sbtest-none-such"}),
            "cannot open /run/netns/sbtest-none-such: No such file or directory".into(),
        ),
        (
            serde_json::json!({"type": "ipc", "path": "ns/ipc"}),
            "\"ns/ipc\" must be an absolute path to a namespace file such as /proc/PID/ns/ipc or /run/netns/NAME".into(),
        ),
        (
            serde_json::json!({"type": "pid", "path": format!("/proc/{me}/ns/pid")}),
            "joining an existing pid namespace is not supported: ".into(),
        ),
        (
            serde_json::json!({"type": "mount", "path": format!("/proc/{me}/ns/mnt")}),
            "joining an existing mount namespace is not supported: ".into(),
        ),
        (
            serde_json::json!({"type": "user", "path": format!("/proc/{me}/ns/user")}),
            "joining an existing user namespace is not supported: ".into(),
        ),
    ];
    for (i, (entry, want)) in cases.into_iter().enumerate() {
        b.configure(
            "echo ran",
            serde_json::json!([{"type": "pid"}, entry, {"type": "mount"}]),
        );
        let (code, out, err) = b.run(&format!("bad{i}"));
        assert_ne!(code, 0, "{entry}: exit 0\n{out}\n{err}");
        assert_eq!(out, "", "{entry}: the workload ran");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{entry}: one sentence, got\n{err}");
        assert!(
            lines[0].starts_with(&format!("{field}{want}")),
            "{entry}: got\n{}\nwant it to start with\n{field}{want}",
            lines[0]
        );
        assert_eq!(
            b.containers_left(),
            Vec::<PathBuf>::new(),
            "{entry}: state left"
        );
    }
    // A joined namespace with a new user namespace: the setns would fail inside.
    b.configure(
        "echo ran",
        serde_json::json!([
            {"type": "user"},
            {"type": "ipc", "path": format!("/proc/{me}/ns/ipc")},
            {"type": "mount"}
        ]),
    );
    let (code, out, err) = b.run("baduser");
    assert_ne!(
        code, 0,
        "join with a new user namespace: exit 0\n{out}\n{err}"
    );
    assert!(
        err.starts_with(&format!(
            "{field}joining /proc/{me}/ns/ipc from a new user namespace is not supported"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(b.containers_left(), Vec::<PathBuf>::new(), "state left");
    assert_host_unchanged(&before_mounts, &before_netns, "sbtest-none-such");
}
