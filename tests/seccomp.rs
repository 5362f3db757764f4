//! The seccomp stage against the real kernel: what a workload can and cannot call under
//! Docker's default profile, with it off, with CAP_SYS_ADMIN, and under a profile of its own.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

/// The bad-profile test compares the state dir before and after: no run may overlap it.
static HOST: RwLock<()> = RwLock::new(());

/// A scratch directory of this test binary's own (not /tmp).
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A static C program that makes the calls the profile decides on and prints
/// "NAME ERRNO" (0: it passed): keyctl, clone3, socket(AF_VSOCK), personality(0x4), a
/// pthread (glibc tries clone3, then clone), and last unshare(CLONE_NEWUSER) in a child.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
static void *thread(void *a) { return a; }
static void say(const char *what, long r) { printf("%s %d\n", what, r < 0 ? errno : 0); }
int main(void) {
    say("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    say("clone3", syscall(SYS_clone3, NULL, 0));
    say("vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    say("personality", personality(0x4) == -1 ? -1 : 0);
    pthread_t t;
    int e = pthread_create(&t, NULL, thread, NULL);
    if (e == 0) pthread_join(t, NULL);
    printf("thread %d\n", e);
    /* In a child: the process that made a thread may still count two threads for a moment
       after pthread_join, and unshare(CLONE_NEWUSER) refuses a threaded process (EINVAL). */
    pid_t pid = fork();
    if (pid == 0) _exit(syscall(SYS_unshare, CLONE_NEWUSER) < 0 ? errno : 0);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("unshare_user %d\n", WEXITSTATUS(status));
    return 0;
}
"#;

/// The probe compiled once (None without a C compiler and a static libc).
fn probe_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("seccomp-probe");
        std::fs::create_dir_all(&dir).ok()?;
        let src = dir.join("probe.c");
        std::fs::write(&src, PROBE_C).ok()?;
        let ok = std::process::Command::new("gcc")
            .args(["-static", "-O2", "-pthread", "-o"])
            .arg(dir.join("probe"))
            .arg(&src)
            .status()
            .ok()?
            .success();
        std::fs::remove_file(&src).ok()?;
        ok.then_some(dir)
    })
    .as_deref()
}

/// Runs the probe in the container with these flags; the lines it printed.
fn probe(args: &[&str]) -> Option<String> {
    let dir = probe_dir()?;
    let vol = format!("{}:/probe:ro", dir.display());
    let mut all = vec!["-v", vol.as_str()];
    all.extend_from_slice(args);
    let (code, out, err) = sh(&all, "/probe/probe");
    assert_eq!(code, 0, "{args:?}: {out} {err}");
    Some(out)
}

fn has(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

#[test]
fn the_default_profile_shows_in_status_and_denies_a_user_namespace() {
    if !root_or_skip("seccomp default") {
        return;
    }
    let _g = HOST.read();
    let (code, out, err) = sh(
        &[],
        "grep -E '^Seccomp' /proc/self/status; unshare -U true; echo unshare=$?; mkdir /tmp/x && echo mkdir=0",
    );
    assert_eq!(code, 0, "{err}");
    assert!(has(&out, "Seccomp:\t2"), "{out}");
    assert!(has(&out, "unshare=1"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(has(&out, "mkdir=0"), "{out}");
    // The workload does not keep the CAP_SYS_ADMIN the filter was loaded with.
    let caps = sh_ok(&[], "grep CapEff /proc/self/status");
    assert!(caps.contains("00000000a80425fb"), "{caps}");
}

#[test]
fn unconfined_switches_the_filter_off_and_the_same_unshare_succeeds() {
    if !root_or_skip("seccomp unconfined") {
        return;
    }
    let _g = HOST.read();
    let out = sh_ok(
        &["--security-opt", "seccomp=unconfined"],
        "grep -E '^Seccomp:' /proc/self/status; unshare -U true && echo unshare=0",
    );
    assert!(has(&out, "Seccomp:\t0"), "{out}");
    assert!(has(&out, "unshare=0"), "{out}");
}

#[test]
fn with_cap_sys_admin_namespace_flags_are_allowed() {
    if !root_or_skip("seccomp sys_admin") {
        return;
    }
    let _g = HOST.read();
    let out = sh_ok(
        &["--cap-add", "SYS_ADMIN"],
        "grep -E '^Seccomp:' /proc/self/status; unshare -U true && echo user=0; unshare -m true && echo mnt=0",
    );
    assert!(has(&out, "Seccomp:\t2"), "{out}");
    assert!(has(&out, "user=0") && has(&out, "mnt=0"), "{out}");
}

#[test]
fn a_profile_of_ones_own_denies_mkdir_while_the_default_allows_it() {
    if !root_or_skip("seccomp custom profile") {
        return;
    }
    let _g = HOST.read();
    let dir = scratch();
    let path = dir.path().join("no-mkdir.json");
    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", path.display());
    let (code, out, err) = sh(
        &["--security-opt", &opt],
        "grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/x; echo mkdir=$?",
    );
    assert_eq!(code, 0, "{err}");
    assert!(has(&out, "Seccomp:\t2") && has(&out, "mkdir=1"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    let out = sh_ok(&[], "mkdir /tmp/x && echo mkdir=0");
    assert!(has(&out, "mkdir=0"), "{out}");
}

#[test]
fn calls_a_program_makes_get_eperm_enosys_or_pass() {
    if !root_or_skip("seccomp probe") {
        return;
    }
    let _g = HOST.read();
    let Some(out) = probe(&[]) else {
        eprintln!("SKIP seccomp probe: no gcc with a static libc here");
        return;
    };
    for want in [
        "keyctl 1",
        "clone3 38",
        "vsock 1",
        "personality 1",
        "thread 0",
        "unshare_user 1",
    ] {
        assert!(has(&out, want), "{want:?} not in:\n{out}");
    }
    // Without the filter clone3 reaches the kernel, which refuses its NULL argument (EINVAL)
    // rather than pretending not to exist.
    let out = probe(&["--security-opt", "seccomp=unconfined"]).unwrap();
    assert!(has(&out, "clone3 22") && has(&out, "thread 0"), "{out}");
    assert!(
        !has(&out, "keyctl 1") && has(&out, "unshare_user 0"),
        "{out}"
    );
    // With CAP_SYS_ADMIN kept, Docker's profile lets clone3 and namespaces through.
    let out = probe(&["--cap-add", "SYS_ADMIN"]).unwrap();
    assert!(
        has(&out, "clone3 22") && has(&out, "unshare_user 0"),
        "{out}"
    );
    assert!(has(&out, "keyctl 1"), "{out}");
}

#[test]
fn a_bad_profile_is_one_sentence_with_its_json_path_and_changes_nothing() {
    if !root_or_skip("seccomp bad profile") {
        return;
    }
    let _g = HOST.write();
    let dir = scratch();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}"#,
    )
    .unwrap();
    let containers = state_dir().join("containers");
    let list = || -> Vec<String> {
        std::fs::read_dir(&containers)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mounts = host_mounts_but_compare_leaks();
    let before = list();
    let name = format!("seccomp-bad-{}", std::process::id());
    let opt = format!("seccomp={}", path.display());
    for extra in [
        &[][..],
        &["--security-opt", "seccomp=/nonexistent/profile.json"][..],
    ] {
        let mut args = vec!["run", "--name", &name, "--security-opt", &opt];
        args.extend_from_slice(extra);
        let out = stagebox(&[&args[..], &["--", "true"]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty());
        if extra.is_empty() {
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains("syscalls[1].args[0].op"), "{err}");
            assert!(err.contains("SCMP_CMP_SOMETIMES"), "{err}");
        } else {
            assert!(err.contains("/nonexistent/profile.json"), "{err}");
        }
    }
    assert_eq!(list(), before, "a container record was left");
    assert_eq!(
        lasting_differences(&mounts, host_mounts_but_compare_leaks),
        (vec![], vec![])
    );
}

#[test]
fn the_trace_shows_the_filter_loaded_and_what_it_does() {
    if !root_or_skip("seccomp trace") {
        return;
    }
    let _g = HOST.read();
    let out = stagebox(&["run", "--rm", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for want in [
        "seccomp(SECCOMP_SET_MODE_FILTER, 0, {len=",
        "Docker's default profile, ",
        "clone3 -> SCMP_ACT_ERRNO(ENOSYS)",
        "any other -> SCMP_ACT_ERRNO(EPERM)",
        "names skipped",
    ] {
        assert!(err.contains(want), "{want:?} not in the trace:\n{err}");
    }
    assert!(
        err.lines()
            .any(|l| l.contains("Seccomp") && l.contains("0 (none) -> 2 (filter, 1 loaded)")),
        "{err}"
    );
}
