//! Copy-on-write root filesystem, kept containers and volumes, measured from the host:
//! the lower layer never changes, deletes leave whiteouts, volumes are the same inode inside
//! and out and outlive containers, :ro and --read-only are enforced by the kernel, and an
//! image's symlinks cannot steer a volume mount onto the host.

mod common;
use common::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

fn default_rootfs() -> PathBuf {
    stagebox::rootfs::default::ensure(state_dir(), stagebox::rootfs::default::RootfsSource::Auto)
        .unwrap()
        .path
}

/// Runs a kept container with a unique name; returns (code, stdout, stderr).
fn run_named(name: &str, extra: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec!["run", "--trace", "off", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    let out = stagebox(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn container_dir(name: &str) -> PathBuf {
    stagebox::state::container::find(state_dir(), name)
        .unwrap()
        .dir(state_dir())
}

fn rm(name: &str) {
    let out = stagebox(&["rm", "-f", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn writes_land_in_the_upper_layer_and_deletes_leave_whiteouts() {
    if !root_or_skip("overlay") {
        return;
    }
    let lower = default_rootfs();
    let passwd = std::fs::read(lower.join("etc/passwd")).unwrap();
    let mounts = host_mounts();
    let name = "ov-whiteout";
    let (code, _, err) = run_named(
        name,
        &[],
        "echo new > /newfile; echo more >> /etc/os-release; rm /etc/passwd; rm -rf /home; mkdir /home; touch /home/fresh",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        host_mounts(),
        mounts,
        "an overlay or bind mount leaked to the host"
    );
    // The image (lower layer) is untouched.
    assert_eq!(std::fs::read(lower.join("etc/passwd")).unwrap(), passwd);
    assert!(!lower.join("newfile").exists());
    let upper = container_dir(name).join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("newfile")).unwrap(),
        "new\n"
    );
    // The delete is a whiteout: a character device 0/0 named like the file.
    let wh = std::fs::symlink_metadata(upper.join("etc/passwd")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "not a whiteout: {wh:?}"
    );
    assert!(stagebox::rootfs::whiteout::is_whiteout(&wh));
    // A replaced directory is opaque.
    assert!(
        stagebox::rootfs::whiteout::is_opaque(&upper.join("home")),
        "/home is not opaque in the upper layer"
    );
    // diff, as docker diff prints it.
    let out = stagebox(&["diff", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "A /newfile",
        "C /etc/os-release",
        "D /etc/passwd",
        "C /home",
        "A /home/fresh",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in diff:\n{text}"
        );
    }
    rm(name);
    assert!(!upper.exists());
}

#[test]
fn containers_are_kept_listed_and_removed() {
    if !root_or_skip("ps/rm") {
        return;
    }
    let (code, _, _) = run_named("kept-one", &[], "exit 3");
    assert_eq!(code, 3);
    let ps = String::from_utf8_lossy(&stagebox(&["ps", "-a"]).stdout).into_owned();
    let line = ps
        .lines()
        .find(|l| l.contains("kept-one"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(line.contains("exited (3)"), "{line}");
    let ps = String::from_utf8_lossy(&stagebox(&["ps"]).stdout).into_owned();
    assert!(
        !ps.contains("kept-one"),
        "ps without -a lists only running ones"
    );
    // A second container with the same name is refused before anything happens.
    let (code, _, err) = run_named("kept-one", &[], "true");
    assert_eq!(code, 125);
    assert!(err.contains("is already in use by container"), "{err}");
    let dir = container_dir("kept-one");
    rm("kept-one");
    assert!(!dir.exists());
    // --rm leaves nothing behind (other tests here keep containers concurrently, so look for
    // this one by name).
    let (code, out, _) = run_named("gone-at-exit", &["--rm"], "echo x > /x; hostname");
    assert_eq!(code, 0);
    assert!(out.starts_with("stagebox-"));
    assert!(stagebox::state::container::find(state_dir(), "gone-at-exit").is_err());
}

#[test]
fn a_bind_mount_is_the_same_inode_and_ro_is_enforced() {
    if !root_or_skip("bind volume") {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("from-host"), "hello\n").unwrap();
    let h = host.path().display().to_string();
    let ino = std::fs::metadata(host.path()).unwrap().ino();
    let out = sh_ok(
        &["-v", &format!("{h}:/data")],
        "stat -c %i /data; cat /data/from-host; echo back > /data/from-container",
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], ino.to_string(), "not the same inode inside");
    assert_eq!(l[1], "hello");
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-container")).unwrap(),
        "back\n"
    );
    // :ro: the kernel refuses the write (EROFS), the host's file is unchanged.
    let (code, _, err) = sh(
        &["-v", &format!("{h}:/data:ro")],
        "echo no > /data/from-host",
    );
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-host")).unwrap(),
        "hello\n"
    );
}

#[test]
fn read_only_root_keeps_volumes_writable() {
    if !root_or_skip("--read-only") {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let h = host.path().display().to_string();
    let (code, _, err) = sh(
        &["--read-only", "-v", &format!("{h}:/data")],
        "echo x > /etc/x",
    );
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    sh_ok(
        &["--read-only", "-v", &format!("{h}:/data")],
        "echo ok > /data/x",
    );
    assert!(host.path().join("x").exists());
}

#[test]
fn named_volumes_outlive_containers_and_are_not_in_the_layer() {
    if !root_or_skip("named volume") {
        return;
    }
    let vol = "persist-test-vol";
    let _ = stagebox(&["volume", "rm", "-f", vol]);
    let (code, _, err) = run_named(
        "vol-writer",
        &["-v", &format!("{vol}:/cache")],
        "echo kept > /cache/data",
    );
    assert_eq!(code, 0, "{err}");
    // What was written to the volume is not in the container's writable layer.
    let upper = container_dir("vol-writer").join("upper");
    assert!(!upper.join("cache/data").exists());
    let diff = String::from_utf8_lossy(&stagebox(&["diff", "vol-writer"]).stdout).into_owned();
    assert!(
        diff.lines().any(|l| l == "A /cache") && !diff.contains("/cache/data"),
        "{diff}"
    );
    // rm of the volume is refused while the kept container uses it.
    let out = stagebox(&["volume", "rm", vol]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vol-writer"));
    rm("vol-writer");
    // The data outlived the container, and the next container sees it.
    let out = sh_ok(&["-v", &format!("{vol}:/again")], "cat /again/data");
    assert_eq!(out.trim(), "kept");
    let inspect =
        String::from_utf8_lossy(&stagebox(&["volume", "inspect", vol]).stdout).into_owned();
    assert!(inspect.contains("\"mountpoint\""), "{inspect}");
    assert!(stagebox(&["volume", "rm", vol]).status.success());
    assert!(!state_dir().join("volumes").join(vol).exists());
}

#[test]
fn anonymous_volumes_are_made_and_removed_with_rm() {
    if !root_or_skip("anonymous volume") {
        return;
    }
    let before = stagebox::state::volume::list(state_dir()).len();
    sh_ok(&["-v", "/scratch"], "echo x > /scratch/y && mountpoint -q /scratch || grep -q ' /scratch ' /proc/self/mountinfo");
    // sh() runs with --rm: the anonymous volume goes with the container, as with docker run --rm.
    assert_eq!(stagebox::state::volume::list(state_dir()).len(), before);
}

#[test]
fn image_symlinks_cannot_send_a_volume_onto_the_host() {
    if !root_or_skip("symlink escape") {
        return;
    }
    // A rootfs whose /data points at /etc and /up climbs with ../../..
    let img = tempfile::tempdir().unwrap();
    let root = img.path();
    let busybox = default_rootfs();
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox.join("bin/busybox"), root.join("bin/busybox")).unwrap();
    for app in ["sh", "cat", "ls", "test"] {
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin").join(app)).unwrap();
    }
    std::os::unix::fs::symlink("/etc", root.join("data")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", root.join("up")).unwrap();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), "s\n").unwrap();
    let h = host.path().display().to_string();
    let r = root.display().to_string();
    let name = format!("stagebox-escape-{}", std::process::id());
    for target in [format!("/data/{name}"), format!("/up/{name}")] {
        let mounts = host_mounts();
        let out = sh_ok(
            &["--rootfs", &r, "-v", &format!("{h}:{target}")],
            &format!("cat /etc/{name}/secret"),
        );
        assert_eq!(out.trim(), "s");
        assert!(
            !Path::new("/etc").join(&name).exists(),
            "the mount point landed in the host's /etc"
        );
        assert_eq!(host_mounts(), mounts);
    }
}

#[test]
fn bad_volume_arguments_change_nothing() {
    let mounts = host_mounts();
    for (arg, needle) in [
        ("/nonexistent-stagebox-dir:/x", "does not exist"),
        ("vol:relative/path", "must be absolute"),
        ("vol:/a/../../etc", "climbs above"),
        ("vol:/x:rx", "unknown option"),
        ("./rel:/x", "relative host paths"),
    ] {
        let out = stagebox(&["run", "-v", arg, "--", "true"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{arg}: {err}");
        assert!(err.contains(needle), "{arg}: {err}");
        assert_eq!(err.trim().lines().count(), 1);
    }
    assert_eq!(host_mounts(), mounts);
    // None of the named volumes in those arguments was created.
    assert!(!state_dir().join("volumes/vol").exists());
}
