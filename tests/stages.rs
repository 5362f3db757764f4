//! Every stage measured from the kernel's point of view: its effect with the stage on, and
//! its absence with the stage off. Needs root (skips loudly without it).

mod common;
use common::*;

#[test]
fn uts_gives_its_own_hostname_and_namespace() {
    if !root_or_skip("uts") {
        return;
    }
    let host_name = nix::sys::utsname::uname()
        .unwrap()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let out = sh_ok(&[], "hostname; readlink /proc/self/ns/uts");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("stagebox-") && lines[0].len() == "stagebox-".len() + 6,
        "{out}"
    );
    assert_ne!(lines[1], host_ns("uts"));
    let out = sh_ok(&["--hostname", "lesson-box"], "hostname");
    assert_eq!(out.trim(), "lesson-box");
    // The host's name did not change.
    let after = nix::sys::utsname::uname()
        .unwrap()
        .nodename()
        .to_string_lossy()
        .into_owned();
    assert_eq!(after, host_name);
    // Off: the host's namespace and name.
    let out = sh_ok(
        &["--without", "uts"],
        "hostname; readlink /proc/self/ns/uts",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host_name);
    assert_eq!(lines[1], host_ns("uts"));
}

/// A SysV shared memory segment made on the host, removed on drop.
struct Shm(i32);
impl Shm {
    fn new() -> Shm {
        // SAFETY: plain shmget; the id is removed in drop.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        assert!(id >= 0, "shmget failed");
        Shm(id)
    }
}
impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: removing the segment we created.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

#[test]
fn ipc_hides_the_hosts_sysv_objects() {
    if !root_or_skip("ipc") {
        return;
    }
    let seg = Shm::new();
    let id = seg.0.to_string();
    let has = |out: &str| {
        out.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(id.as_str()))
    };
    let out = sh_ok(&[], "readlink /proc/self/ns/ipc; cat /proc/sysvipc/shm");
    assert_ne!(out.lines().next().unwrap(), host_ns("ipc"));
    assert!(!has(&out), "host segment {id} visible with ipc on:\n{out}");
    let out = sh_ok(
        &["--without", "ipc"],
        "readlink /proc/self/ns/ipc; cat /proc/sysvipc/shm",
    );
    assert_eq!(out.lines().next().unwrap(), host_ns("ipc"));
    assert!(
        has(&out),
        "host segment {id} not visible with ipc off:\n{out}"
    );
}

#[test]
fn pid_makes_the_workload_pid_1_and_hides_host_processes() {
    if !root_or_skip("pid") {
        return;
    }
    let me = std::process::id();
    let script = format!("echo $$; ls /proc | grep -c '^[0-9]'; test -d /proc/{me} && echo sees-host || echo no-host");
    let out = sh_ok(&[], &script);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1", "{out}");
    let n: usize = l[1].parse().unwrap();
    assert!(n <= 3, "{n} pids visible with pid on");
    assert_eq!(l[2], "no-host");
    // Off: the workload has a host pid, and `ps` lists the host's processes (this test's own).
    let out = sh_ok(
        &["--without", "pid"],
        &format!("echo $$; ps -o pid | grep -qw {me} && echo sees-host"),
    );
    let l: Vec<&str> = out.lines().collect();
    assert_ne!(l[0], "1");
    assert_eq!(l[1], "sees-host", "{out}");
}

#[test]
fn net_has_only_loopback_and_it_is_up() {
    if !root_or_skip("net") {
        return;
    }
    let host: Vec<String> = stagebox::kernel::netif::parse_net_dev(
        &std::fs::read_to_string("/proc/self/net/dev").unwrap(),
    );
    let out = sh_ok(
        &["--network", "none"],
        "readlink /proc/self/ns/net; cat /proc/net/dev; ip link show lo",
    );
    let mut lines = out.lines();
    assert_ne!(lines.next().unwrap(), host_ns("net"));
    let inside = stagebox::kernel::netif::parse_net_dev(
        &out.lines()
            .skip(1)
            .take_while(|l| !l.starts_with("1:"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert_eq!(inside, vec!["lo"], "{out}");
    assert!(out.contains("UP"), "lo is not up: {out}");
    let out = sh_ok(
        &["--without", "net"],
        "readlink /proc/self/ns/net; cat /proc/net/dev",
    );
    assert_eq!(out.lines().next().unwrap(), host_ns("net"));
    let inside =
        stagebox::kernel::netif::parse_net_dev(&out.lines().skip(1).collect::<Vec<_>>().join("\n"));
    // Other tests' containers plug veths into the bridges meanwhile: those come and go.
    let own = |v: &[String]| {
        let mut v: Vec<String> = v.iter().filter(|n| !is_runtime_link(n)).cloned().collect();
        v.sort();
        v
    };
    assert_eq!(own(&inside), own(&host));
}

#[test]
fn mount_keeps_mounts_inside_and_without_it_they_leak_to_the_host() {
    if !root_or_skip("mount") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let me = std::process::id();
    // The workload mounts a tmpfs, then reads the *host's* view of the mount table, through
    // /proc/<this test's pid>/mountinfo (no rootfs here, so /proc is the host's).
    let script = format!("mount -t tmpfs stagebox-leak-test {d} && grep -c stagebox-leak-test /proc/{me}/mountinfo || true");
    let out = sh_ok(&["--only", "mount"], &script);
    assert_eq!(out.trim(), "0", "the mount leaked with the mount stage on");
    assert!(!host_mounts()
        .iter()
        .any(|m| m.contains("stagebox-leak-test")));
    let out = sh_ok(&["--only", "uts"], &script);
    let leaked = host_mounts()
        .iter()
        .any(|m| m.contains("stagebox-leak-test"));
    let _ = nix::mount::umount2(dir.path(), nix::mount::MntFlags::MNT_DETACH);
    assert_eq!(
        out.trim(),
        "1",
        "without the mount stage the host should see the mount"
    );
    assert!(leaked);
    assert!(!host_mounts()
        .iter()
        .any(|m| m.contains("stagebox-leak-test")));
}

#[test]
fn mount_makes_root_private() {
    if !root_or_skip("mount propagation") {
        return;
    }
    let out = sh_ok(
        &["--only", "mount"],
        "grep -c shared: /proc/self/mountinfo || true",
    );
    assert_eq!(out.trim(), "0");
}

#[test]
fn rootfs_gives_its_own_files_and_without_it_the_hosts() {
    if !root_or_skip("rootfs") {
        return;
    }
    let marker = tempfile::NamedTempFile::new().unwrap();
    let m = marker.path().display().to_string();
    let script = format!("test -e {m} && echo host-files || echo own-files; test -e /.stagebox-rootfs && echo rootfs-marker || true");
    let out = sh_ok(&[], &script);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["own-files", "rootfs-marker"]
    );
    let out = sh_ok(&["--without", "rootfs,pivot"], &script);
    assert_eq!(out.lines().next(), Some("host-files"));
}

#[test]
fn proc_is_fresh_and_without_it_the_hosts_proc_shows_through() {
    if !root_or_skip("proc") {
        return;
    }
    let me = std::process::id();
    let script = format!("ls /proc | grep -c '^[0-9]'; test -d /proc/{me} && echo sees-host || echo no-host; grep ' /proc ' /proc/self/mountinfo | wc -l");
    let out = sh_ok(&[], &script);
    let l: Vec<&str> = out.lines().collect();
    assert!(l[0].parse::<usize>().unwrap() <= 3);
    assert_eq!(l[1], "no-host");
    // Off, with the pid namespace still on: the host's /proc, so the host's processes.
    let out = sh_ok(&["--without", "proc"], &script);
    let l: Vec<&str> = out.lines().collect();
    assert!(l[0].parse::<usize>().unwrap() > 3, "{out}");
    assert_eq!(l[1], "sees-host");
    // The devices a container gets, and nothing of the host's disks.
    let out = sh_ok(
        &[],
        "ls /dev | tr '\\n' ' '; test -c /dev/null && echo null-ok; mount | grep -c ' /sys .*ro' ",
    );
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd", "stdin",
        "stdout", "stderr",
    ] {
        assert!(
            out.split_whitespace().any(|w| w == dev),
            "/dev lacks {dev}: {out}"
        );
    }
    assert!(!out.contains("vda") && !out.contains("sda"), "{out}");
    assert!(out.contains("null-ok"));
}

#[test]
fn pivot_detaches_the_host_tree_and_chroot_does_not() {
    if !root_or_skip("pivot") {
        return;
    }
    let rootfs = stagebox::rootfs::default::ensure(
        state_dir(),
        stagebox::rootfs::default::RootfsSource::Auto,
    )
    .unwrap()
    .path;
    let r = rootfs.display().to_string();
    let script = "cat /proc/self/mountinfo";
    // Without the paths stage, whose masks and /sys/fs/cgroup are mounts of the container's.
    let pivot = sh_ok(&["--without", "paths"], script);
    let chroot = sh_ok(&["--without", "paths", "--root-switch", "chroot"], script);
    // Field 5 is the mount point (field 4, the root of the mount within its filesystem,
    // names the rootfs directory, as it should for a bind mount).
    let points = |t: &str| {
        t.lines()
            .map(|l| l.split(' ').nth(4).unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        !points(&pivot).iter().any(|p| p.contains(&r)),
        "the rootfs host path is still a mount point after pivot:\n{pivot}"
    );
    // From inside, mountinfo hides mounts outside the process's root, so chroot and pivot
    // look alike there; the difference is what is still reachable (the escape below).
    assert_eq!(points(&chroot), points(&pivot));
    // Mount points only: the mount's root (field 4) names the rootfs directory on the host,
    // whose path may contain anything (this very checkout is called wt-cgroup).
    assert!(
        !points(&pivot).iter().any(|p| p.contains("cgroup")),
        "host mounts still visible after pivot:\n{pivot}"
    );
    // /, the three /etc files (Docker's init files, bind mounts), /proc, /sys, /dev and two
    // mounts under /dev.
    assert!(pivot.lines().count() <= 11, "{pivot}");
    // The real test: the classic escape, attempted from inside with stagebox's own probe
    // (exec'd from an fd, nothing copied in), looking for a marker file on the host.
    let marker = tempfile::NamedTempFile::new().unwrap();
    let m = marker.path().display().to_string();
    let probe = |mode: &str| -> serde_json::Value {
        let out = stagebox(&[
            "run",
            "--rm",
            "--trace",
            "off",
            "--root-switch",
            mode,
            "--probe",
            "--",
            "--json",
            "--escape",
            "--marker",
            &m,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let c = probe("chroot");
    assert_eq!(c["chroot_escape"]["escaped"], true, "{c}");
    assert_eq!(c["chroot_escape"]["marker_seen"], true, "{c}");
    let p = probe("pivot");
    assert_eq!(p["chroot_escape"]["escaped"], false, "{p}");
    assert_eq!(p["chroot_escape"]["marker_seen"], false, "{p}");
    assert_eq!(p["pid"], 1);
    // /proc/1/root as the kernel shows it from the host side: for pivot, the rootfs is "/".
    let out = sh_ok(&[], "readlink /proc/1/root");
    assert_eq!(out.trim(), "/");
}

#[test]
fn exit_status_is_the_workloads_and_signals_are_128_plus_n() {
    if !root_or_skip("exit status") {
        return;
    }
    assert_eq!(sh(&[], "exit 7").0, 7);
    assert_eq!(sh(&["--without", "pid"], "kill -9 $$").0, 137);
    // PID 1 of a namespace ignores signals it has no handler for, even SIGKILL, when they
    // come from inside the namespace: the shell survives its own kill -9.
    assert_eq!(sh(&[], "kill -9 $$; echo survived; exit 4").0, 4);
    // A signal the workload (PID 1, with a handler) is sent via stagebox: SIGTERM forwarded.
    assert_eq!(sh(&["--without", "pid"], "kill -TERM $$").0, 143);
}

#[test]
fn when_pivot_root_is_impossible_the_pivot_stage_falls_back_to_chroot_and_says_why() {
    if !root_or_skip("pivot fallback") {
        return;
    }
    // stagebox itself runs chrooted into a plain directory: its root is not a mount point,
    // which is what an initramfs looks like to pivot_root(2), and it answers EINVAL.
    let outer = tempfile::tempdir().unwrap();
    let o = outer.path();
    for d in [
        "proc",
        "state",
        "rootfs/bin",
        "rootfs/proc",
        "rootfs/sys",
        "rootfs/dev",
    ] {
        std::fs::create_dir_all(o.join(d)).unwrap();
    }
    std::fs::copy(bin(), o.join("stagebox")).unwrap();
    let busybox = stagebox::rootfs::default::ensure(
        state_dir(),
        stagebox::rootfs::default::RootfsSource::Auto,
    )
    .unwrap()
    .path
    .join("bin/busybox");
    if std::fs::copy(&busybox, o.join("rootfs/bin/busybox")).is_err() {
        std::fs::copy("/bin/busybox", o.join("rootfs/bin/busybox")).unwrap();
    }
    std::os::unix::fs::symlink("/bin/busybox", o.join("rootfs/bin/sh")).unwrap();
    let mounts = host_mounts();
    let script = format!(
        "mount -t proc proc {0}/proc && chroot {0} /stagebox run --rm --state /state --rootfs /rootfs --without cgroup,cgroupns,devices --trace json -- /bin/sh -c 'echo inside; cat /proc/self/mountinfo | wc -l'",
        o.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("inside"), "{stdout}");
    let note = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["stage"] == "pivot" && v["event"] == "note")
        .unwrap_or_else(|| panic!("no note from the pivot stage:\n{stderr}"));
    assert!(
        note["message"].as_str().unwrap().contains("EINVAL"),
        "{note}"
    );
    assert!(stderr.contains(r#""syscall":"chroot(\".\")""#), "{stderr}");
    assert_eq!(host_mounts(), mounts);
}

/// stagebox itself in a cgroup namespace rooted below the cgroup filesystem it sees mounted
/// (`unshare -C` without a remount, as in some nested setups): /proc/PID/cgroup then names
/// the container's cgroup as `/../stagebox.../ID`, and the cgroup stage must still confirm it.
#[test]
fn the_cgroup_stage_confirms_its_cgroup_from_inside_a_cgroup_namespace() {
    if !root_or_skip("cgroup stage inside a cgroup namespace") {
        return;
    }
    // The pids hierarchy on v1 and hybrid hosts, the one tree on v2.
    let layout = stagebox::cgroup::Layout::detect().expect("cgroup layout");
    let tree = match layout.kind().name() {
        "v2" => std::path::PathBuf::from("/sys/fs/cgroup"),
        _ => std::path::PathBuf::from("/sys/fs/cgroup/pids"),
    };
    let outer = tree.join(format!("sbtest-outer-{}", std::process::id()));
    std::fs::create_dir(&outer).expect("make the outer cgroup");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec unshare -C {} run --rm --trace off -- /bin/true",
        outer.display(),
        bin()
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .env("STAGEBOX_STATE", state_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sh");
    // The outer cgroup is empty once the shell (now stagebox) has exited.
    let mut removed = false;
    for _ in 0..50 {
        if std::fs::remove_dir(&outer).is_ok() {
            removed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(removed, "{} could not be removed", outer.display());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
