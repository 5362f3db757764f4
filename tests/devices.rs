//! The devices stage, measured on the real kernel: a node the container makes for a device
//! outside the allow list cannot be opened (EPERM, for root too), the host's disk included;
//! `--device` adds a node that works; the BPF device program stagebox assembles does what
//! it says when attached to a cgroup2 directory (on a hybrid host too, where the runtime
//! itself uses the v1 devices controller); and on v1 the container is in a cgroup of its own
//! in every hierarchy, none of them the host's root. Needs root (skips loudly without).

mod common;
use common::*;
use std::path::{Path, PathBuf};

#[test]
fn a_node_made_inside_cannot_be_opened_and_device_adds_one_that_can() {
    if !root_or_skip("devices: mknod then open") {
        return;
    }
    // kmem (c 1:2) is not in the list: mknod is allowed (c *:* m), the open is not.
    let (code, out, err) = sh(&[], "mknod /tmp/k c 1 2 && echo made; cat /tmp/k");
    assert_ne!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("made"), "mknod was refused: {out} {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // Without the stage the same open reaches the driver, which has no kmem any more
    // (ENXIO): the EPERM above came from the device rules, not from the node.
    let (_, _, err) = sh(&["--without", "devices"], "mknod /tmp/k c 1 2; cat /tmp/k");
    assert!(!err.contains("Operation not permitted"), "{err}");
    // --device: a node in /dev with the host node's numbers, allowed.
    let out = sh_ok(
        &["--device", "/dev/null:/dev/mynull"],
        "echo hi > /dev/mynull && echo wrote; ls -l /dev/mynull",
    );
    assert!(out.contains("wrote"), "{out}");
    assert!(out.contains("1,   3"), "{out}");
    // A read-only --device (fuse, 10:229, not in the default list): it opens for reading,
    // and opening it for writing is refused by the rules (`exec 3>>` opens, writes nothing).
    if Path::new("/dev/fuse").exists() {
        let (_, out, err) = sh(
            &["--device", "/dev/fuse:/dev/myfuse:r"],
            "(exec 4</dev/myfuse) && echo read-open; (exec 3>>/dev/myfuse) || echo write-refused",
        );
        assert!(
            out.contains("read-open") && out.contains("write-refused"),
            "{out} {err}"
        );
        assert!(err.contains("Operation not permitted"), "{err}");
    }
}

#[test]
fn the_host_disk_can_be_named_but_not_opened() {
    if !root_or_skip("devices: host disk") {
        return;
    }
    // The disk under /, or, where the host itself refuses to open that one (some sandboxes
    // do), another of its block devices that the host can open.
    let Some((maj, min)) = stagebox::inspect::compare::host_block_device() else {
        eprintln!("SKIP the host disk test: the host opens none of its block devices");
        return;
    };
    eprintln!("the host block device used: {maj}:{min}");
    // Read-only, count=0: the open is the whole test; nothing is read or written.
    let script = format!(
        "mknod /tmp/d b {maj} {min} && echo made; dd if=/tmp/d of=/dev/null count=0 && echo opened"
    );
    let (_, out, err) = sh(&[], &script);
    assert!(out.contains("made"), "{out} {err}");
    assert!(
        !out.contains("opened"),
        "the host's disk opened: {out} {err}"
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    let out = sh_ok(&["--without", "devices,caps"], &script);
    assert!(out.contains("opened"), "{out}");
}

#[test]
fn bad_device_flags_are_one_sentence_and_125() {
    for (flag, says) in [
        ("/etc/passwd", "/etc/passwd: not a device node"),
        ("/dev/null:/dev/x:rwz", "bad permissions"),
        ("/dev/null:/etc/x", "under /dev"),
    ] {
        let out = stagebox(&["run", "--rm", "--device", flag, "--", "true"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{flag}: {err}");
        assert!(err.contains(says), "{flag}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{flag}: {err}");
    }
}

/// A cgroup of the test's own under the cgroup2 mount, removed on drop.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Runs `script` in /bin/sh, first moving the shell into `cgroup` when given.
fn shell_in(cgroup: Option<&Path>, script: &str) -> (String, String) {
    let full = match cgroup {
        Some(cg) => format!(
            "echo $$ > {}/cgroup.procs || exit 99; {script}",
            cg.display()
        ),
        None => script.to_string(),
    };
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &full])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(99), "could not join the cgroup");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_bpf_device_program_allows_null_and_denies_kmem_in_a_cgroup2_directory() {
    if !root_or_skip("devices: BPF program") {
        return;
    }
    let layout = stagebox::cgroup::Layout::detect().unwrap();
    let Some(v2) = layout.v2.clone() else {
        eprintln!("SKIP the BPF device program: no cgroup2 mount on this host");
        return;
    };
    let nodes = tempfile::tempdir().unwrap();
    let null = nodes.path().join("null");
    let kmem = nodes.path().join("kmem");
    for (p, minor) in [(&null, 3), (&kmem, 2)] {
        nix::sys::stat::mknod(
            p.as_path(),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, minor),
        )
        .unwrap();
    }
    let script = format!(
        "head -c1 {0} && echo null-ok; head -c1 {1}; echo kmem-done",
        null.display(),
        kmem.display()
    );
    // Before: kmem reaches the driver, which says it has no such device (not EPERM).
    let (out, err) = shell_in(None, &script);
    assert!(out.contains("null-ok"), "{out} {err}");
    assert!(!err.contains("Operation not permitted"), "{err}");

    let cg = TestCgroup(v2.join(format!("stagebox-test-devices-{}", std::process::id())));
    std::fs::create_dir(&cg.0).unwrap();
    let rules = stagebox::confine::devices::DeviceConfig::default().rules();
    let id = stagebox::stages::devices::attach_program(&cg.0, &rules).unwrap();
    let dir = std::fs::File::open(&cg.0).unwrap();
    let ids =
        stagebox::kernel::bpf::prog_query(&dir, stagebox::kernel::bpf::CGROUP_DEVICE).unwrap();
    assert_eq!(ids, vec![id]);
    let (out, err) = shell_in(Some(&cg.0), &script);
    assert!(out.contains("null-ok"), "null was refused: {out} {err}");
    assert!(out.contains("kmem-done"), "{out}");
    assert!(
        err.contains("Operation not permitted"),
        "kmem was not refused: {err}"
    );
}

/// Starts a container that prints `ready` and waits; returns it and its workload's host pid.
fn running() -> (std::process::Child, u32, String) {
    let (child, _, m) = spawn_ready("echo ready; while :; do sleep 1; done");
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let workload: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    (child, workload, m)
}

fn stop(mut child: std::process::Child, workload: u32, m: &str) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workload as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_none_left(m, "devices: running container");
}

#[test]
fn the_container_is_in_its_own_cgroup_everywhere_with_the_rules_on_it() {
    if !root_or_skip("devices: cgroups from outside") {
        return;
    }
    let parent = stagebox::state::dir::cgroup_parent(state_dir());
    let layout = stagebox::cgroup::Layout::detect().unwrap();
    let (child, workload, m) = running();
    let text = std::fs::read_to_string(format!("/proc/{workload}/cgroup")).unwrap();
    let lines = stagebox::cgroup::proc_cgroup_lines(&text);
    let result = std::panic::catch_unwind(|| {
        let own = format!("/{parent}/");
        // Every line, every v1 hierarchy: the container's own cgroup, never the root.
        for (ctls, path) in &lines {
            assert!(path.starts_with(&own), "{ctls}:{path} in {text}");
        }
        if let Some(mount) = layout.v1.get("devices") {
            let (_, path) = lines
                .iter()
                .find(|(c, _)| c.split(',').any(|x| x == "devices"))
                .unwrap();
            let list = std::fs::read_to_string(
                mount
                    .join(path.trim_start_matches('/'))
                    .join("devices.list"),
            )
            .unwrap();
            assert!(!list.contains("a *:* rwm"), "{list}");
            assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
            assert!(list.lines().any(|l| l == "b *:* m"), "{list}");
        } else {
            let v2 = layout.v2.clone().unwrap();
            let (_, path) = lines.iter().find(|(c, _)| c.is_empty()).unwrap();
            let dir = std::fs::File::open(v2.join(path.trim_start_matches('/'))).unwrap();
            let ids = stagebox::kernel::bpf::prog_query(&dir, stagebox::kernel::bpf::CGROUP_DEVICE)
                .unwrap();
            assert_eq!(ids.len(), 1, "{ids:?}");
        }
    });
    stop(child, workload, &m);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn the_cgroups_of_a_runtime_killed_by_sigkill_are_swept_by_the_next_run() {
    if !root_or_skip("devices: leftover cgroups") {
        return;
    }
    let parent = stagebox::state::dir::cgroup_parent(state_dir());
    let (mut child, workload, m) = running();
    let text = std::fs::read_to_string(format!("/proc/{workload}/cgroup")).unwrap();
    let lines = stagebox::cgroup::proc_cgroup_lines(&text);
    let id = lines[0].1.rsplit('/').next().unwrap().to_string();
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path()),
    );
    let dirs: Vec<PathBuf> = roots
        .iter()
        .map(|r| r.join(&parent).join(&id))
        .filter(|d| d.is_dir())
        .collect();
    assert_eq!(dirs.len(), lines.len(), "{dirs:?} for {text}");
    // The runtime dies without running its undo list; then the container's processes.
    // The workload may be gone already: its PR_SET_PDEATHSIG fires when the runtime dies.
    for pid in [child.id(), workload] {
        match nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        ) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => panic!("kill {pid}: {e}"),
        }
    }
    let _ = child.wait();
    assert_none_left(&m, "the killed runtime's container");
    for d in &dirs {
        assert!(d.is_dir(), "{} went without a cleanup", d.display());
        // Empty once init has reaped the killed processes.
        let empty = within_2s(|| {
            std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .trim()
                .is_empty()
                .then_some(())
        });
        assert!(
            empty.is_some(),
            "{}: processes are still in it",
            d.display()
        );
        // As if the kill had been two hours ago: the next run takes them for leftovers only
        // after a minute (a younger empty cgroup may be a run that has not joined yet).
        let past = nix::sys::time::TimeSpec::new(
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 7200) as i64,
            0,
        );
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            d.as_path(),
            &past,
            &past,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
    }
    sh_ok(&[], "true");
    let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    // The killed run's record stays until `rm -f`, as after any crash.
    let _ = stagebox(&["rm", "-f", &id]);
    assert!(left.is_empty(), "left behind: {left:?}");
}
