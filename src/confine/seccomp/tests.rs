//! The compiled filters run here in a small classic-BPF interpreter, combined as the kernel
//! combines loaded filters, so the tests check what a syscall would get, not the code's intent.

use super::*;
use crate::confine::caps;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const ALLOW: u32 = SECCOMP_RET_ALLOW;
const EPERM: u32 = SECCOMP_RET_ERRNO | 1;
const ENOSYS: u32 = SECCOMP_RET_ERRNO | 38;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// struct seccomp_data, as bytes.
fn data(arch: u32, nr: i64, args: &[u64]) -> Vec<u8> {
    let mut d = Vec::with_capacity(64);
    d.extend_from_slice(&(nr as i32).to_le_bytes());
    d.extend_from_slice(&arch.to_le_bytes());
    d.extend_from_slice(&0u64.to_le_bytes());
    for i in 0..6 {
        d.extend_from_slice(&args.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    d
}

/// Runs one classic BPF program (the instructions seccompiler emits) on seccomp_data.
fn run(prog: &[Insn], d: &[u8]) -> u32 {
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            0x20 => {
                let k = i.k as usize;
                a = u32::from_le_bytes([d[k], d[k + 1], d[k + 2], d[k + 3]]);
            }
            0x54 => a &= i.k,
            0x05 => pc += i.k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let t = match i.code {
                    0x15 => a == i.k,
                    0x25 => a > i.k,
                    0x35 => a >= i.k,
                    _ => a & i.k != 0,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            0x06 => return i.k,
            c => panic!("instruction {c:#x} not in the test interpreter"),
        }
    }
}

/// What the kernel returns with every filter loaded: it runs them newest first and keeps
/// the first of the most restrictive (lowest signed action) answers.
fn verdict(p: &Program, arch: u32, nr: i64, args: &[u64]) -> u32 {
    let d = data(arch, nr, args);
    let mut best = ALLOW;
    for f in p.filters.iter().rev() {
        let r = run(f, &d);
        if ((r & 0xffff_0000) as i32) < ((best & 0xffff_0000) as i32) {
            best = r;
        }
    }
    best
}

fn sys(p: &Program, name: &str, args: &[u64]) -> u32 {
    let nr = names::number(name).unwrap_or_else(|| panic!("{name} has no number here"));
    verdict(p, AUDIT_ARCH, nr, args)
}

fn default_with(add: &[&str]) -> Program {
    let mut c = caps::DOCKER_DEFAULT;
    for a in add {
        c |= 1u64 << caps::number(a).unwrap();
    }
    compile(None, c).unwrap()
}

const NS_FLAGS: u64 = 0x7e02_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;

#[test]
fn the_default_profile_allows_ordinary_calls_and_denies_the_rest_with_eperm() {
    let p = default_with(&[]);
    assert_eq!(p.source, "Docker's default profile");
    assert_eq!(p.default_action, "SCMP_ACT_ERRNO(EPERM)");
    assert!(p.rules > 280, "{}", p.rules);
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "futex",
        "mmap",
        "arch_prctl",
        "chroot",
    ] {
        assert_eq!(sys(&p, name, &[]), ALLOW, "{name}");
    }
    for name in [
        "keyctl",
        "add_key",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "reboot",
        "init_module",
        "kexec_load",
        "bpf",
        "open_by_handle_at",
        "pivot_root",
        "swapon",
    ] {
        assert_eq!(sys(&p, name, &[]), EPERM, "{name}");
    }
    // Each filter fits the kernel's limit of 4096 instructions.
    assert!(p.filters.iter().all(|f| f.len() < 4096));
}

#[test]
fn clone_passes_without_namespace_flags_and_clone3_gets_enosys_without_sys_admin() {
    let p = default_with(&[]);
    let sigchld = libc::SIGCHLD as u64;
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    assert_eq!(sys(&p, "clone", &[sigchld]), ALLOW);
    assert_eq!(sys(&p, "clone", &[thread]), ALLOW);
    assert_eq!(sys(&p, "clone", &[CLONE_NEWUSER | sigchld]), EPERM);
    for bit in 0..32 {
        let flag = 1u64 << bit;
        if NS_FLAGS & flag != 0 {
            assert_eq!(sys(&p, "clone", &[flag | sigchld]), EPERM, "{flag:#x}");
        }
    }
    // glibc's pthread_create tries clone3 first and falls back to clone on ENOSYS (not EPERM).
    assert_eq!(sys(&p, "clone3", &[]), ENOSYS);
    assert_eq!(p.filters.len(), 1, "{:?}", p.describe);
}

#[test]
fn with_sys_admin_kept_mounts_namespaces_and_clone3_pass() {
    let p = default_with(&["SYS_ADMIN"]);
    assert_eq!(sys(&p, "clone", &[CLONE_NEWUSER]), ALLOW);
    assert_eq!(sys(&p, "clone3", &[]), ALLOW);
    for name in ["mount", "umount2", "unshare", "setns", "sethostname", "bpf"] {
        assert_eq!(sys(&p, name, &[]), ALLOW, "{name}");
    }
    assert_eq!(sys(&p, "keyctl", &[]), EPERM);
    assert_eq!(p.filters.len(), 1, "{:?}", p.describe);
}

#[test]
fn capabilities_switch_their_syscalls_on() {
    let p = default_with(&["SYS_PTRACE", "SYS_TIME", "SYS_MODULE"]);
    for name in ["kcmp", "settimeofday", "clock_settime", "init_module"] {
        assert_eq!(sys(&p, name, &[]), ALLOW, "{name}");
    }
    // CAP_SYS_CHROOT dropped: chroot is denied.
    let p = compile(
        None,
        caps::DOCKER_DEFAULT & !(1u64 << caps::number("SYS_CHROOT").unwrap()),
    )
    .unwrap();
    assert_eq!(sys(&p, "chroot", &[]), EPERM);
}

#[test]
fn argument_conditions_socket_and_personality() {
    let p = default_with(&[]);
    assert_eq!(sys(&p, "socket", &[libc::AF_INET as u64]), ALLOW);
    assert_eq!(sys(&p, "socket", &[libc::AF_UNIX as u64]), ALLOW);
    assert_eq!(sys(&p, "socket", &[libc::AF_VSOCK as u64]), EPERM);
    for v in [0u64, 0x8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(sys(&p, "personality", &[v]), ALLOW, "{v:#x}");
    }
    for v in [0x4u64, 0x0040_0000, 0x1_0000_0000] {
        assert_eq!(sys(&p, "personality", &[v]), EPERM, "{v:#x}");
    }
}

#[test]
fn another_architecture_is_killed_and_unknown_names_are_skipped() {
    let p = default_with(&[]);
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    assert_eq!(
        verdict(&p, AUDIT_ARCH_I386, 0, &[]),
        SECCOMP_RET_KILL_PROCESS
    );
    // 32-bit-only names such as socketcall and _llseek have no number on a 64-bit arch.
    assert!(
        p.skipped.iter().any(|n| n == "socketcall"),
        "{:?}",
        p.skipped
    );
    assert!(!p.skipped.iter().any(|n| n == "read"));
    // Entries for another arch are not applied, so their names are not counted as skipped.
    assert!(!p.skipped.iter().any(|n| n == "s390_runtime_instr"));
}

#[test]
fn every_syscall_the_runtime_makes_after_the_filter_is_allowed() {
    let p = default_with(&[]);
    for name in [
        "sendmsg",
        "sendto",
        "recvmsg",
        "recvfrom",
        "read",
        "write",
        "openat",
        "close",
        "uname",
        "chdir",
        "setgroups",
        "setgid",
        "setuid",
        "setresuid",
        "rt_sigprocmask",
        "rt_sigaction",
        "close_range",
        "execve",
        "execveat",
        "fcntl",
        "newfstatat",
        "statx",
        "exit_group",
        "prctl",
        "capget",
        "capset",
        "getpid",
        "wait4",
        "set_robust_list",
        "rseq",
    ] {
        assert_eq!(sys(&p, name, &[]), ALLOW, "{name}");
    }
}

fn write_profile(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_custom_profile_denies_mkdir_only() {
    let (_d, path) = write_profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "comment": "no new directories"}]}"#,
    );
    let p = compile(Some(&path), caps::DOCKER_DEFAULT).unwrap();
    assert_eq!(p.source, path.display().to_string());
    assert_eq!(p.filters.len(), 1);
    assert_eq!(sys(&p, "mkdirat", &[]), EPERM);
    assert_eq!(sys(&p, "mkdir", &[]), EPERM);
    assert_eq!(sys(&p, "read", &[]), ALLOW);
    assert_eq!(sys(&p, "keyctl", &[]), ALLOW);
}

#[test]
fn conditions_on_two_arguments_and_twice_on_one() {
    // Two arguments: both must hold.
    let (_d, path) = write_profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"},
                     {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    let p = compile(Some(&path), 0).unwrap();
    assert_eq!(sys(&p, "kill", &[5, 15]), ALLOW);
    assert_eq!(sys(&p, "kill", &[1, 15]), EPERM);
    assert_eq!(sys(&p, "kill", &[5, 9]), EPERM);
    // One argument twice: either may hold (runc's rule, as libseccomp cannot AND them).
    let (_d, path) = write_profile(
        r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                     {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    let p = compile(Some(&path), 0).unwrap();
    assert_eq!(sys(&p, "kill", &[5, 15]), ALLOW);
    assert_eq!(sys(&p, "kill", &[5, 9]), ALLOW);
    assert_eq!(sys(&p, "kill", &[5, 2]), SECCOMP_RET_KILL_PROCESS);
}

fn refused(text: &str) -> String {
    let (_d, path) = write_profile(text);
    let e = compile(Some(&path), caps::DOCKER_DEFAULT).unwrap_err();
    assert_eq!(e.exit_code(), 125, "{e}");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(!msg.contains('\n'), "one sentence: {msg}");
    msg
}

#[test]
fn bad_profiles_are_one_sentence_naming_the_file_and_the_json_path() {
    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["kill"], "action": "SCMP_ACT_MAYBE"}]}"#,
    );
    assert!(
        m.contains("syscalls[1].action") && m.contains("SCMP_ACT_MAYBE"),
        "{m}"
    );

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
    );
    assert!(m.contains("syscalls[0].args[1].op"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    assert!(m.contains("syscalls[0].names"), "{m}");

    let m = refused(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {"names": ["read"]}}"#);
    assert!(m.contains("syscalls"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",]}"#,
    );
    assert!(m.contains("line 1"), "{m}");

    let m = refused(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#);
    assert!(m.contains("defaultAction"), "{m}");

    let m = refused(r#"{"syscalls": []}"#);
    assert!(m.contains("defaultAction"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
    );
    assert!(m.contains("syscalls[0].args[0].index"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#,
    );
    assert!(
        m.contains("syscalls[0].errnoRet") && m.contains("70000"),
        "{m}"
    );

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    );
    assert!(m.contains("SCMP_ACT_NOTIFY"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYSADMIN"]}}]}"#,
    );
    assert!(m.contains("syscalls[0].includes.caps[0]"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
    );
    assert!(m.contains("syscalls[0].includes.minKernel"), "{m}");

    let m = refused(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
    );
    assert!(m.contains("syscalls[0]"), "{m}");
}

#[test]
fn an_unreadable_profile_is_refused() {
    let e = compile(Some(Path::new("/nonexistent/profile.json")), 0).unwrap_err();
    assert_eq!(e.exit_code(), 125);
    let m = e.to_string();
    assert!(
        m.contains("/nonexistent/profile.json") && m.contains("cannot read"),
        "{m}"
    );
}

#[test]
fn min_kernel_and_arches_are_applied() {
    let (_d, path) = write_profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["tkill"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "3.0"}},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
            {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64", "arm64"]}},
            {"names": ["getppid", "no_such_call"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "arm64"]}}
        ]}"#,
    );
    let p = compile(Some(&path), 0).unwrap();
    assert_eq!(sys(&p, "kill", &[]), EPERM);
    assert_eq!(sys(&p, "tkill", &[]), ALLOW);
    assert_eq!(sys(&p, "getpid", &[]), EPERM);
    assert_eq!(sys(&p, "gettid", &[]), EPERM);
    assert_eq!(sys(&p, "getppid", &[]), ALLOW);
    assert_eq!(p.skipped, vec!["no_such_call".to_string()]);
    assert_eq!(parse_version("5.10.0-18-amd64"), Some((5, 10)));
    assert_eq!(parse_version("4.8"), Some((4, 8)));
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(compile::kernel_release(), release.trim());
}

#[test]
fn compiling_the_default_profile_is_cheap() {
    let t = std::time::Instant::now();
    for _ in 0..20 {
        compile(None, caps::DOCKER_DEFAULT).unwrap();
    }
    let each = t.elapsed() / 20;
    eprintln!("compiling Docker's default profile: {each:?}");
    // Generous: a debug build on a loaded machine; the release figure is in the report.
    assert!(each < std::time::Duration::from_millis(50), "{each:?}");
}

#[test]
fn every_syscall_number_gets_what_the_profile_says() {
    // A profile that gives every third syscall ALLOW, every seventh ENOSYS (ENOSYS wins where
    // both name it: the more restrictive), every eleventh a condition; checked for every
    // number this architecture has, and for numbers beyond.
    let all = names::all();
    let pick = |k: usize| {
        all.iter()
            .enumerate()
            .filter(|(i, _)| i % k == 0)
            .map(|(_, (n, _))| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let text = format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {{"names": [{}], "action": "SCMP_ACT_ALLOW"}},
            {{"names": [{}], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}},
            {{"names": [{}], "action": "SCMP_ACT_TRAP", "args": [{{"index": 2, "value": 7, "op": "SCMP_CMP_EQ"}}]}}]}}"#,
        pick(3),
        pick(7),
        pick(11)
    );
    let (_d, path) = write_profile(&text);
    let p = compile(Some(&path), 0).unwrap();
    const TRAP: u32 = 0x0003_0000;
    for (i, (name, nr)) in all.iter().enumerate() {
        let plain = if i % 7 == 0 {
            ENOSYS
        } else if i % 3 == 0 {
            ALLOW
        } else {
            EPERM
        };
        let with7 = if i % 11 == 0 { TRAP } else { plain };
        assert_eq!(verdict(&p, AUDIT_ARCH, *nr, &[0, 0, 1]), plain, "{name}");
        assert_eq!(verdict(&p, AUDIT_ARCH, *nr, &[0, 0, 7]), with7, "{name}");
    }
    for nr in [1000i64, 0x4000_0000, -1, i32::MAX as i64] {
        assert_eq!(verdict(&p, AUDIT_ARCH, nr, &[]), EPERM, "{nr}");
    }
    assert!(p.filters[0].len() < 4096);
}

#[test]
fn the_default_filter_is_short() {
    let p = default_with(&[]);
    eprintln!("{:?}", p.describe);
    // A binary search over ranges, not one comparison per syscall.
    assert!(p.filters[0].len() < 400, "{}", p.filters[0].len());
    assert!(
        p.describe[0].contains("clone3 -> SCMP_ACT_ERRNO(ENOSYS)"),
        "{:?}",
        p.describe
    );
    assert!(
        p.describe[0].contains("socket clone personality -> by their arguments"),
        "{:?}",
        p.describe
    );
}
