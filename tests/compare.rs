//! The stage matrix matches the kernel, and the runner leaves the host as it found it.

mod common;
use common::*;

/// These tests look at host-wide state (mounts, SysV segments, /tmp): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn same_mounts(before: &[String]) {
    let d = differences(before, &host_mounts());
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "the host's mount table changed: {d:?}"
    );
}

fn matrix(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["compare", "--json"];
    all.extend_from_slice(args);
    let out = stagebox(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The matrix column with this label.
fn column<'a>(m: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == label)
        .unwrap_or_else(|| panic!("no column {label}"))
}

/// What the runner put on the host (marker, segment, leaked mount) is gone again.
fn host_as_found(mounts: &[String], shm: usize) {
    same_mounts(mounts);
    assert_eq!(ipc_segments(), shm);
    assert!(markers().is_empty(), "{:?}", markers());
}

fn verdict(m: &serde_json::Value, column_label: &str, check: &str) -> String {
    let col = column(m, column_label);
    if !col["refused"].is_null() {
        return "refused".into();
    }
    col["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .unwrap()["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ipc_segments() -> usize {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap()
        .lines()
        .skip(1)
        .count()
}

fn markers() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".stagebox-marker-") || n.starts_with(".stagebox-leak-"))
        .collect()
}

#[test]
fn each_stage_off_leaks_what_it_protects_and_all_on_leaks_nothing() {
    if !root_or_skip("compare") {
        return;
    }
    let _g = serial();
    let mounts = host_mounts();
    let shm = ipc_segments();
    let m = matrix(&[]);
    // Everything on: every check whose stage exists is isolated.
    let all = column(&m, "all");
    for c in all["checks"].as_array().unwrap() {
        assert_ne!(c["verdict"], "leaks", "with every stage on: {c}");
    }
    assert_eq!(verdict(&m, "-pid", "host_processes"), "leaks");
    assert_eq!(verdict(&m, "-proc", "host_processes"), "leaks");
    assert_eq!(verdict(&m, "-uts", "hostname"), "leaks");
    assert_eq!(verdict(&m, "-net", "network"), "leaks");
    assert_eq!(verdict(&m, "-ipc", "sysv_ipc"), "leaks");
    assert_eq!(verdict(&m, "-uts", "network"), "isolated");
    // chroot is escapable, pivot_root is not.
    assert_eq!(verdict(&m, "chroot", "chroot_escape"), "leaks");
    assert_eq!(verdict(&m, "all", "chroot_escape"), "isolated");
    // Refused combinations are shown, with the reason.
    let mount_off = column(&m, "-mount");
    assert!(mount_off["refused"]
        .as_str()
        .unwrap()
        .contains("needs the mount stage"));
    // And the host is as it was.
    host_as_found(&mounts, shm);
}

#[test]
fn build_up_shows_the_mount_leak_and_cleans_it_up() {
    if !root_or_skip("compare --build-up") {
        return;
    }
    let _g = serial();
    let mounts = host_mounts();
    let m = matrix(&["--build-up", "--stages", "uts,mount"]);
    let labels: Vec<&str> = m["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, vec!["none", "+uts", "+mount"]);
    assert_eq!(verdict(&m, "none", "hostname"), "leaks");
    assert_eq!(verdict(&m, "+uts", "hostname"), "isolated");
    // Without a mount namespace the probe's tmpfs was seen in the host's mount table...
    assert_eq!(verdict(&m, "+uts", "mount_leak"), "leaks");
    assert_eq!(verdict(&m, "+mount", "mount_leak"), "isolated");
    // ...and removed again.
    same_mounts(&mounts);
    assert!(markers().is_empty());
}

#[test]
fn a_failing_probe_still_leaves_the_host_clean() {
    if !root_or_skip("compare cleanup") {
        return;
    }
    let _g = serial();
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("proc"), b"a file where /proc should be").unwrap();
    let mounts = host_mounts();
    let shm = ipc_segments();
    let m = matrix(&[
        "--rootfs",
        &bad.path().display().to_string(),
        "--stages",
        "uts",
    ]);
    let all = column(&m, "all");
    assert!(
        all["error"].as_str().unwrap_or("").contains("proc"),
        "{all}"
    );
    host_as_found(&mounts, shm);
}

#[test]
fn the_table_and_markdown_render() {
    if !root_or_skip("compare output") {
        return;
    }
    let _g = serial();
    let out = stagebox(&["compare", "--stages", "uts", "--markdown"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("| check | `all` | `-uts` | `chroot` |")
            || text.starts_with("| check | `all` | `-uts` |"),
        "{text}"
    );
    assert!(
        text.contains("| shares the host's hostname (uts) | isolated | **LEAKS** |"),
        "{text}"
    );
}
