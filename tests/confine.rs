//! The caps and nnp stages, `--privileged` and the confinement flags, as the kernel shows
//! them: /proc/PID/status read by the workload itself after execve, and the trace's facts
//! read from outside. (The devices, paths and seccomp stages have their own test files.)

mod common;
use common::*;

/// A field of a status file, as text.
fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn status(args: &[&str]) -> String {
    sh_ok(args, "cat /proc/self/status")
}

#[test]
fn default_container_root_has_dockers_fourteen_capabilities_and_nothing_to_pass_on() {
    if !root_or_skip("caps") {
        return;
    }
    let s = status(&[]);
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(field(&s, set), "00000000a80425fb", "{set}");
    }
    assert_eq!(field(&s, "CapInh"), "0000000000000000");
    assert_eq!(field(&s, "CapAmb"), "0000000000000000");
    // no_new_privs stays off by default, as in Docker.
    assert_eq!(field(&s, "NoNewPrivs"), "0");
}

#[test]
fn cap_add_and_cap_drop_change_the_sets_as_dockers_flags_do() {
    if !root_or_skip("caps flags") {
        return;
    }
    let s = status(&["--cap-drop", "ALL"]);
    assert_eq!(field(&s, "CapBnd"), "0000000000000000");
    assert_eq!(field(&s, "CapEff"), "0000000000000000");
    let s = status(&["--cap-drop", "ALL", "--cap-add", "NET_RAW,cap_chown"]);
    assert_eq!(field(&s, "CapEff"), format!("{:016x}", 1u64 << 13 | 1));
    let s = status(&["--cap-add", "SYS_ADMIN", "--cap-drop", "MKNOD"]);
    assert_eq!(
        field(&s, "CapEff"),
        format!("{:016x}", (0xa80425fbu64 | 1 << 21) & !(1 << 27))
    );
}

#[test]
fn a_user_switch_works_with_setuid_and_setgid_dropped_and_leaves_no_capability() {
    if !root_or_skip("user switch") {
        return;
    }
    let s = status(&["--user", "1000:1000", "--cap-drop", "SETUID,SETGID"]);
    assert_eq!(field(&s, "Uid").split_whitespace().next(), Some("1000"));
    assert_eq!(field(&s, "CapEff"), "0000000000000000");
    assert_eq!(
        field(&s, "CapBnd"),
        format!("{:016x}", 0xa80425fbu64 & !(1 << 6 | 1 << 7))
    );
}

#[test]
fn a_workload_without_sys_admin_cannot_remount_a_read_only_root() {
    if !root_or_skip("read-only root") {
        return;
    }
    // The default rootfs is a disposable overlay and the root switch is on.
    let (code, out, err) = sh(
        &["--read-only"],
        "mount -o remount,rw / 2>&1; touch /x 2>&1; grep ' / / ' /proc/self/mountinfo | grep -c ' ro,'",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Permission denied") || out.contains("permission denied"),
        "{out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("1"),
        "/ is still mounted ro: {out}"
    );
}

#[test]
fn no_new_privileges_sets_the_bit_and_a_setuid_file_then_gives_nothing() {
    if !root_or_skip("nnp") {
        return;
    }
    let s = status(&["--security-opt", "no-new-privileges"]);
    assert_eq!(field(&s, "NoNewPrivs"), "1");
    // A root-owned setuid copy of stagebox, run by nobody inside the container.
    let script = "cp /mnt/stagebox /tmp/s && chmod 4755 /tmp/s && su nobody -s /bin/sh -c '/tmp/s probe' | grep '^uid/gid'";
    let vol = format!("{}:/mnt/stagebox:ro", bin());
    let out = sh_ok(&["-v", &vol], script);
    assert!(
        out.contains("65534/65534 (euid 0,"),
        "setuid works without nnp: {out}"
    );
    let out = sh_ok(&["-v", &vol, "--security-opt", "no-new-privileges"], script);
    assert!(
        out.contains("65534/65534 (euid 65534,"),
        "with no_new_privs the setuid bit is ignored: {out}"
    );
}

#[test]
fn privileged_switches_the_confinement_stages_off() {
    if !root_or_skip("privileged") {
        return;
    }
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let s = status(&["--privileged"]);
    assert_eq!(field(&s, "CapBnd"), field(&host, "CapBnd"));
    assert_eq!(field(&s, "Seccomp"), "0");
    let out = stagebox(&["plan", "--privileged", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for stage in plan["stages"].as_array().unwrap() {
        if ["devices", "paths", "caps", "seccomp"].contains(&stage["id"].as_str().unwrap()) {
            assert_eq!(stage["enabled"], false, "{stage}");
            assert_eq!(stage["why"], "--privileged", "{stage}");
        }
    }
}

#[test]
fn the_trace_names_the_dropped_capabilities_and_shows_the_sets_change() {
    if !root_or_skip("caps trace") {
        return;
    }
    let out = cmd(&["run", "--rm", "--trace", "json", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let caps: Vec<&serde_json::Value> = lines.iter().filter(|l| l["stage"] == "caps").collect();
    let text = format!("{caps:?}");
    assert!(
        caps.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("dropped 27: ") && m.contains("SYS_ADMIN"))),
        "{text}"
    );
    assert!(
        caps.iter()
            .any(|l| l["fact"] == "CapBnd" && l["after"] == "00000000a80425fb"),
        "{text}"
    );
}

#[test]
fn bad_confinement_flags_are_one_sentence_and_change_nothing() {
    for (args, says) in [
        (
            vec!["--cap-add", "NET_ADMIM"],
            "unknown capability \"NET_ADMIM\" in --cap-add",
        ),
        (
            vec!["--security-opt", "apparmor=x"],
            "unknown --security-opt \"apparmor=x\"",
        ),
    ] {
        let name = format!("bad-flags-{}", marker());
        let mut all = vec!["run", "--name", &name];
        all.extend(args.iter().copied());
        all.extend(["--", "/bin/true"]);
        let out = stagebox(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{all:?}: {err}");
        assert!(err.contains(says), "{all:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one sentence: {err}");
        let ps = stagebox(&["ps", "-a"]);
        assert!(
            !String::from_utf8_lossy(&ps.stdout).contains(&name),
            "a container record was made: {all:?}"
        );
    }
}
