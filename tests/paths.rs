//! The paths stage against the real kernel: Docker's masked paths hidden, its read-only paths
//! and /sys/fs/cgroup read-only, all seen from inside the default container (the disposable
//! busybox rootfs, root switched). No test writes a host kernel knob: the one write that
//! must fail (/proc/sys/kernel/core_pattern) writes back the value it read, so even a
//! broken stage would change nothing.

mod common;

use common::{root_or_skip, sh, stagebox};
use stagebox::confine::paths::{MASKED, READONLY};
use stagebox::kernel::mountinfo;
use std::path::Path;

/// The masked paths this kernel has, each with whether it is a directory.
fn host_masked() -> Vec<(&'static str, bool)> {
    MASKED
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| (*p, m.is_dir())))
        .collect()
}

/// The container's mountinfo, as printed by `cat /proc/self/mountinfo` inside.
fn mounts_inside(args: &[&str]) -> Vec<mountinfo::Mount> {
    let (code, out, err) = sh(args, "cat /proc/self/mountinfo");
    assert_eq!(code, 0, "stagebox {args:?}: {err}");
    mountinfo::parse(&out)
}

fn is_ro(m: &mountinfo::Mount) -> bool {
    m.mount_opts.split(',').any(|o| o == "ro")
}

#[test]
fn masked_files_read_empty_and_masked_directories_are_empty() {
    if !root_or_skip("masked_files_read_empty_and_masked_directories_are_empty") {
        return;
    }
    let masked = host_masked();
    assert!(
        !masked.is_empty(),
        "this kernel has none of Docker's masked paths: {MASKED:?}"
    );
    // A file: its type letter, and its size read (only when it is a character device, so a
    // broken mask never reads the host's /proc/kcore). A directory: how many entries.
    let mut script = String::new();
    for (p, dir) in &masked {
        if *dir {
            script += &format!("echo \"{p} dir $(ls -A {p} | wc -l)\"\n");
        } else {
            script += &format!(
                "t=$(ls -l {p} | cut -c1); if [ \"$t\" = c ]; then n=$(cat {p} | wc -c); else n=unread; fi; echo \"{p} $t $n\"\n"
            );
        }
    }
    let (code, out, err) = sh(&[], &script);
    assert_eq!(code, 0, "{err}");
    for (p, dir) in &masked {
        let want = if *dir {
            format!("{p} dir 0")
        } else {
            format!("{p} c 0")
        };
        assert!(
            out.lines().any(|l| l.trim() == want),
            "inside the container {p} should show as {want:?}:\n{out}"
        );
    }
    // And the kernel shows a mount at each, from inside.
    let mounts = mounts_inside(&[]);
    for (p, dir) in &masked {
        let m = mountinfo::top_at(&mounts, Path::new(p))
            .unwrap_or_else(|| panic!("no mount at {p} inside"));
        if *dir {
            assert!(m.fs_type == "tmpfs" && is_ro(m), "{p}: {m:?}");
        }
    }
    // The host's own are untouched: a masked file is still no character device here.
    for (p, dir) in &masked {
        if !*dir {
            let t = std::fs::metadata(p).unwrap().file_type();
            use std::os::unix::fs::FileTypeExt;
            assert!(!t.is_char_device(), "the host's {p} became a device");
        }
    }
}

#[test]
fn proc_sys_is_read_only_and_the_hosts_core_pattern_stays() {
    if !root_or_skip("proc_sys_is_read_only_and_the_hosts_core_pattern_stays") {
        return;
    }
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    // Writes back what it read: a failure is the test's point, a success would change nothing.
    let (code, out, err) = sh(
        &[],
        "v=$(cat /proc/sys/kernel/core_pattern); printf '%s\\n' \"$v\" > /proc/sys/kernel/core_pattern && echo WROTE",
    );
    assert_ne!(code, 0, "the write succeeded: {out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
    let after = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    assert_eq!(before, after, "the host's core_pattern changed");

    let mounts = mounts_inside(&[]);
    for p in READONLY.iter().filter(|p| Path::new(p).exists()) {
        let m = mountinfo::top_at(&mounts, Path::new(p))
            .unwrap_or_else(|| panic!("no mount at {p} inside"));
        assert!(is_ro(m), "{p} inside: {}", m.mount_opts);
    }
}

/// Whether the host is pure cgroup v2 (cgroup2 at /sys/fs/cgroup).
fn host_is_v2() -> bool {
    let m = mountinfo::read_self().unwrap();
    mountinfo::top_at(&m, Path::new("/sys/fs/cgroup")).is_some_and(|m| m.fs_type == "cgroup2")
}

#[test]
fn sys_fs_cgroup_shows_the_containers_own_cgroup_read_only() {
    if !root_or_skip("sys_fs_cgroup_shows_the_containers_own_cgroup_read_only") {
        return;
    }
    let host = mountinfo::read_self().unwrap();
    let has_memory = host
        .iter()
        .any(|m| m.fs_type == "cgroup" && m.super_opts.split(',').any(|o| o == "memory"));
    let v2 = host_is_v2();
    if !v2 && !has_memory {
        eprintln!("SKIP: no memory controller mounted on this host");
        return;
    }
    // The limit file of the container's own cgroup: 48M, as asked.
    let (limit, procs) = if v2 {
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cgroup.procs")
    } else {
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/cgroup.procs",
        )
    };
    // release_agent (v1, at a hierarchy's top) is written back with its own value.
    let script = format!(
        "cat /proc/self/cgroup; echo limit=$(cat {limit}); \
         echo $$ > {procs} || echo procs-refused; \
         touch /sys/fs/cgroup/x || echo touch-refused; \
         for f in /sys/fs/cgroup/release_agent /sys/fs/cgroup/*/release_agent; do \
           [ -e \"$f\" ] || continue; v=$(cat \"$f\"); printf '%s' \"$v\" > \"$f\" && echo \"WROTE $f\"; \
         done; true"
    );
    let (code, out, err) = sh(&["-m", "48m"], &script);
    assert_eq!(code, 0, "{err}");
    let cgroup_lines = out.lines().filter(|l| {
        l.split(':')
            .next()
            .is_some_and(|n| n.parse::<u32>().is_ok())
    });
    for l in cgroup_lines {
        assert!(l.ends_with(":/"), "/proc/self/cgroup inside: {l}\n{out}");
    }
    assert!(out.contains("limit=50331648"), "{out}\n{err}");
    assert!(out.contains("procs-refused"), "{out}");
    assert!(out.contains("touch-refused"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert!(err.matches("Read-only file system").count() >= 2, "{err}");

    let mounts = mounts_inside(&[]);
    let top = mountinfo::top_at(&mounts, Path::new("/sys/fs/cgroup")).expect("/sys/fs/cgroup");
    assert!(is_ro(top), "{top:?}");
    if v2 {
        assert_eq!(top.fs_type, "cgroup2");
    } else {
        assert_eq!(top.fs_type, "tmpfs");
        let below: Vec<&mountinfo::Mount> = mounts
            .iter()
            .filter(|m| m.mount_point.starts_with("/sys/fs/cgroup/"))
            .collect();
        assert!(!below.is_empty());
        for m in below {
            assert!(
                is_ro(m) && (m.fs_type == "cgroup" || m.fs_type == "cgroup2"),
                "{m:?}"
            );
        }
    }
}

#[test]
fn without_cgroupns_sys_fs_cgroup_is_still_read_only_and_the_trace_says_so() {
    if !root_or_skip("without_cgroupns_sys_fs_cgroup_is_still_read_only_and_the_trace_says_so") {
        return;
    }
    let out = stagebox(&[
        "run",
        "--rm",
        "--without",
        "cgroupns",
        "--",
        "cat",
        "/proc/self/mountinfo",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("host's whole cgroup tree"), "{err}");
    let mounts = mountinfo::parse(&String::from_utf8_lossy(&out.stdout));
    let top = mountinfo::top_at(&mounts, Path::new("/sys/fs/cgroup")).expect("/sys/fs/cgroup");
    assert!(is_ro(top), "{top:?}");
}

#[test]
fn without_paths_the_kernels_files_are_open_again() {
    if !root_or_skip("without_paths_the_kernels_files_are_open_again") {
        return;
    }
    let masked = host_masked();
    let mounts = mounts_inside(&["--without", "paths"]);
    for (p, _) in &masked {
        assert!(
            mountinfo::top_at(&mounts, Path::new(p)).is_none(),
            "{p} is still a mount point without the paths stage"
        );
    }
    assert!(
        mountinfo::top_at(&mounts, Path::new("/proc/sys")).is_none(),
        "/proc/sys is still a mount of its own"
    );
    let proc = mountinfo::top_at(&mounts, Path::new("/proc")).expect("/proc");
    assert!(!is_ro(proc), "{proc:?}");
    // A masked file is the kernel's regular file again (only its type is looked at).
    if let Some((p, _)) = masked.iter().find(|(_, d)| !d) {
        let (code, out, err) = sh(&["--without", "paths"], &format!("ls -l {p} | cut -c1"));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "-", "{p} without the paths stage");
    }
}

#[test]
fn privileged_switches_paths_off_and_the_masks_are_gone() {
    if !root_or_skip("privileged_switches_paths_off_and_the_masks_are_gone") {
        return;
    }
    let out = stagebox(&[
        "run",
        "--rm",
        "--privileged",
        "--trace",
        "json",
        "--",
        "cat",
        "/proc/self/mountinfo",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines().any(|l| l.contains("\"stage\":\"paths\"")
            && l.contains("\"event\":\"off\"")
            && l.contains("--privileged")),
        "{err}"
    );
    let mounts = mountinfo::parse(&String::from_utf8_lossy(&out.stdout));
    for (p, _) in host_masked() {
        assert!(mountinfo::top_at(&mounts, Path::new(p)).is_none(), "{p}");
    }
    assert!(mountinfo::top_at(&mounts, Path::new("/proc/sys")).is_none());
}

#[test]
fn read_only_root_survives_a_remount_without_cap_sys_admin() {
    if !root_or_skip("read_only_root_survives_a_remount_without_cap_sys_admin") {
        return;
    }
    let script =
        "mount -o remount,rw / ; touch /x && echo TOUCHED; grep ' / / ' /proc/self/mountinfo";
    let (code, out, err) = sh(&["--read-only"], script);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("TOUCHED"), "{out}");
    let root = mountinfo::parse(&out);
    assert!(root.first().is_some_and(is_ro), "{out}");
    // With caps and seccomp off the container's root may remount its own (disposable) root.
    let (code, out, err) = sh(&["--read-only", "--without", "caps,seccomp"], script);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("TOUCHED"), "{out}\n{err}");
    let root = mountinfo::parse(&out);
    assert!(root.first().is_some_and(|m| !is_ro(m)), "{out}");
}

#[test]
fn shared_propagation_is_refused_while_paths_is_on() {
    let out = stagebox(&[
        "plan",
        "--only",
        "mount,paths",
        "--root-propagation",
        "shared",
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paths"), "{err}");
}
