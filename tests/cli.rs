//! Bad input: one sentence naming the problem and the fix, exit 125, nothing changed.

mod common;
use common::*;

fn fails(args: &[&str], needle: &str) {
    let mounts = host_mounts();
    let out = stagebox(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "more than one line: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(host_mounts(), mounts);
}

#[test]
fn unknown_stage() {
    fails(
        &["run", "--without", "pdi", "--", "true"],
        "unknown stage \"pdi\"",
    );
    fails(&["plan", "--only", "uts,bogus"], "unknown stage \"bogus\"");
}

#[test]
fn refused_combinations_say_why() {
    fails(
        &["run", "--without", "mount", "--", "true"],
        "needs the mount stage",
    );
    fails(
        &["plan", "--without", "rootfs"],
        "the pivot stage needs the rootfs stage",
    );
    fails(
        &["plan", "--only", "uts", "--root-switch", "chroot"],
        "mode of the pivot stage",
    );
}

#[test]
fn unknown_flag_and_bad_values() {
    fails(&["run", "--frobnicate", "--", "true"], "--frobnicate");
    fails(
        &["run", "--trace", "loud", "--", "true"],
        "unknown trace format",
    );
    fails(
        &["run", "--root-switch", "jump", "--", "true"],
        "unknown --root-switch",
    );
}

#[test]
fn missing_rootfs_and_missing_command() {
    if !root_or_skip("missing rootfs") {
        return;
    }
    fails(
        &["run", "--rootfs", "/nonexistent/rootfs", "--", "true"],
        "--rootfs /nonexistent/rootfs does not exist",
    );
    fails(
        &["run", "--", "no-such-command"],
        "\"no-such-command\" was not found",
    );
    fails(&["run"], "no command given");
    fails(
        &["run", "--hostname", "a/b", "--", "true"],
        "not a valid hostname",
    );
}

#[test]
fn not_root_is_one_sentence() {
    if !nix::unistd::geteuid().is_root() {
        fails(&["run", "--", "true"], "needs root");
        return;
    }
    // As root: drop to nobody for this one command.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin(),
            "run",
            "--state",
            "/nonexistent-state",
            "--",
            "true",
        ])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP not_root: setpriv is not installed");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn stages_and_plan_need_no_root_and_change_nothing() {
    let out = stagebox(&["stages"]);
    assert!(out.status.success());
    let out = stagebox(&["plan", "--without", "pid"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pid      off  (--without)"), "{text}");
}

#[test]
fn image_commands_name_what_is_wrong() {
    fails(
        &["build", "-t", "x", "/nonexistent-context"],
        "the build context /nonexistent-context is not a directory",
    );
    let empty = tempfile::tempdir().unwrap();
    fails(
        &["build", "-t", "x", &empty.path().display().to_string()],
        "write a Containerfile there, or name one with -f",
    );
    fails(
        &["load", "/nonexistent-layout"],
        "give an OCI layout directory or a `docker save` tarball",
    );
    let not_tar = empty.path().join("notes.txt");
    std::fs::write(&not_tar, "line one\nline two\n").unwrap();
    fails(
        &["import", &not_tar.display().to_string(), "x"],
        "is not a usable tar archive",
    );
    fails(
        &["run", "no-such-image-anywhere"],
        "no image \"no-such-image-anywhere\"",
    );
}
