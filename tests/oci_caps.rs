//! An OCI config's five capability sets, process.user.additionalGids, linux.devices and the
//! /dev/mqueue mount, as the kernel shows them inside the container (root: namespaces,
//! mknod, mounts). Each bundle is a copy of the default rootfs; each run uses its own --root.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A bundle: the default rootfs copied in, and `stagebox spec`'s config.json changed by `edit`.
fn bundle(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let out = stagebox(&["rootfs", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rootfs --json");
    let src = info["path"].as_str().expect("path");
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    let cp = std::process::Command::new("cp")
        .args(["-a", src, &b.join("rootfs").to_string_lossy()])
        .status()
        .expect("cp");
    assert!(cp.success());
    let out = cmd(&["spec"]).current_dir(&b).output().expect("spec");
    assert!(out.status.success(), "{out:?}");
    let path = b.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("config.json");
    c["process"]["terminal"] = false.into();
    edit(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    b
}

/// `stagebox --root DIR/state run ID` in the bundle: (exit code, stdout, stderr).
fn run(dir: &Path, b: &Path, id: &str) -> (i32, String, String) {
    let root = dir.join("state");
    let out = cmd(&["--root", &root.to_string_lossy(), "run", id])
        .current_dir(b)
        .output()
        .expect("run");
    let _ = cmd(&["--root", &root.to_string_lossy(), "delete", "--force", id]).output();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn caps(names: &[&str]) -> serde_json::Value {
    names.iter().map(|n| format!("CAP_{n}")).collect()
}

fn sets(c: &mut serde_json::Value, v: [&[&str]; 5]) {
    for (k, names) in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ]
    .iter()
    .zip(v)
    {
        c["process"]["capabilities"][*k] = caps(names);
    }
}

/// The Cap* line's value in a /proc/self/status text.
fn cap(status: &str, name: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

// CHOWN 0, KILL 5, NET_BIND_SERVICE 10, NET_RAW 13.
const CHOWN_KILL_NBS: u64 = 1 | 1 << 5 | 1 << 10;

#[test]
fn a_user_other_than_root_keeps_the_configured_sets_and_gets_its_additional_gids() {
    if !root_or_skip("a_user_other_than_root_keeps_the_configured_sets") {
        return;
    }
    let mounts = host_mounts_but_compare_leaks();
    let t = tempfile::tempdir().unwrap();
    let set: &[&str] = &["CHOWN", "KILL", "NET_BIND_SERVICE"];
    let b = bundle(t.path(), |c| {
        sets(c, [set, set, set, set, set]);
        c["process"]["user"] =
            serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 7]});
        c["process"]["args"] =
            serde_json::json!(["sh", "-c", "cat /proc/self/status; echo GROUPS $(id -G)"]);
    });
    let (code, out, err) = run(t.path(), &b, "ocicaps-user");
    assert_eq!(code, 0, "{out}\n{err}");
    for name in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(
            cap(&out, name),
            CHOWN_KILL_NBS,
            "{name} for uid 1000: {out}"
        );
    }
    let groups = out.lines().find(|l| l.starts_with("GROUPS ")).unwrap();
    let g: Vec<&str> = groups.split_whitespace().skip(1).collect();
    assert!(g.contains(&"5") && g.contains(&"7"), "{groups}");
    assert!(out.contains("Uid:\t1000\t1000\t1000\t1000"), "{out}");
    assert_eq!(
        host_mounts_but_compare_leaks(),
        mounts,
        "host mounts changed"
    );
}

#[test]
fn root_gets_the_bounding_set_and_the_inheritable_one() {
    if !root_or_skip("root_gets_the_bounding_set_and_the_inheritable_one") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let b = bundle(t.path(), |c| {
        sets(
            c,
            [
                &["CHOWN", "KILL", "NET_BIND_SERVICE", "NET_RAW"],
                &["CHOWN"],
                &["CHOWN", "KILL"],
                &["CHOWN", "KILL", "NET_BIND_SERVICE"],
                &[],
            ],
        );
        c["process"]["args"] = serde_json::json!(["cat", "/proc/self/status"]);
    });
    let (code, out, err) = run(t.path(), &b, "ocicaps-root");
    assert_eq!(code, 0, "{out}\n{err}");
    let bnd = CHOWN_KILL_NBS | 1 << 13;
    assert_eq!(cap(&out, "CapBnd"), bnd, "{out}");
    assert_eq!(cap(&out, "CapInh"), CHOWN_KILL_NBS, "{out}");
    // `stagebox spec` sets noNewPrivileges: execve then gives root no more than the permitted
    // set it had (CHOWN KILL), all of it effective (root's programs take every permitted one).
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(cap(&out, "CapPrm"), 1 | 1 << 5, "{out}");
    assert_eq!(cap(&out, "CapEff"), 1 | 1 << 5, "{out}");
    assert_eq!(cap(&out, "CapAmb"), 0, "{out}");
}

#[test]
fn linux_devices_are_made_and_mqueue_is_mounted() {
    if !root_or_skip("linux_devices_are_made_and_mqueue_is_mounted") {
        return;
    }
    let mounts = host_mounts_but_compare_leaks();
    let t = tempfile::tempdir().unwrap();
    let b = bundle(t.path(), |c| {
        c["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o664, "uid": 0, "gid": 1000},
            {"path": "/dev/myfifo", "type": "p", "fileMode": 0o600}
        ]);
        c["process"]["args"] = serde_json::json!(["sh", "-c",
            "stat -c '%n %F %t:%T %a %u %g' /dev/mynull /dev/myfifo; echo x > /dev/mynull && echo WROTE; grep ' /dev/mqueue ' /proc/self/mountinfo"]);
    });
    let cfg = std::fs::read_to_string(b.join("config.json")).unwrap();
    assert!(cfg.contains("/dev/mqueue"), "spec lists /dev/mqueue");
    let (code, out, err) = run(t.path(), &b, "ocicaps-dev");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("/dev/mynull character special file 1:3 664 0 1000"),
        "{out}"
    );
    assert!(out.contains("/dev/myfifo fifo 0:0 600 0 0"), "{out}");
    assert!(out.contains("WROTE"), "{out}");
    let mq = out
        .lines()
        .find(|l| l.contains(" /dev/mqueue "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        mq.contains(" - mqueue ") && mq.contains("nosuid,nodev,noexec"),
        "{mq}"
    );
    assert_eq!(
        host_mounts_but_compare_leaks(),
        mounts,
        "host mounts changed"
    );
}

#[test]
fn a_device_outside_dev_is_refused_in_one_sentence() {
    let t = tempfile::tempdir().unwrap();
    if !root_or_skip("a_device_outside_dev_is_refused_in_one_sentence") {
        return;
    }
    let b = bundle(t.path(), |c| {
        c["linux"]["devices"] =
            serde_json::json!([{"path": "/etc/evil", "type": "c", "major": 1, "minor": 3}]);
    });
    let (code, out, err) = run(t.path(), &b, "ocicaps-bad");
    // runc's exit status for a refused config (1), in one sentence.
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("linux.devices[0].path"), "{err}");
    assert!(!b.join("rootfs/etc/evil").exists());
}
