//! The one redactor (`tests/common/redact.rs`): every fact the program can print has a rule,
//! and each thing that differs between runs or hosts becomes its placeholder, at any length
//! and wherever it appears, while what does not differ is kept. No root needed.

mod common;
use common::redact::{
    assert_every_fact_has_a_rule, redact, rule_for, FACT_RULES, IN_THE_HOSTS_MOUNT_TABLE,
};
use common::*;

fn host() -> String {
    nix::sys::utsname::uname()
        .unwrap()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_fact_the_program_can_print_has_a_rule() {
    assert_every_fact_has_a_rule();
    // The rules are found by the names the trace prints.
    assert!(rule_for("uts", "ns/uts").is_some());
    assert!(rule_for("cgroup", "cgroup cpu,cpuacct").is_some());
    assert!(rule_for("cgroup", "/sys/fs/cgroup/stagebox/cgroup.subtree_control").is_some());
    assert!(rule_for("cgroup", "a fact nobody decided about").is_none());
    assert!(FACT_RULES.len() >= stagebox::kernel::observe::fact_names().len());
}

#[test]
fn mounts_are_host_noise_until_the_mount_stage() {
    let before_mount: Vec<String> = stagebox::stages::registry::all()
        .iter()
        .map(|s| s.info().id.name().to_string())
        .take_while(|n| n != "mount")
        .collect();
    assert_eq!(IN_THE_HOSTS_MOUNT_TABLE, before_mount);
    let trace = "\
▶ uts  new UTS namespace
    mount count        31 -> 32
    mount              + /run/user/1000/doc fuse.portal portal
▶ rootfs  mount the root filesystem
    mount count        32 -> 33
";
    assert_eq!(
        redact(trace),
        "▶ uts  new UTS namespace\n▶ rootfs  mount the root filesystem\n    mount count        [N] -> [N]\n"
    );
}

#[test]
#[should_panic(expected = "has no rule")]
fn a_json_fact_without_a_rule_fails() {
    redact(r#"{"stage":"uts","event":"fact","fact":"brand new","before":"a","after":"b"}"#);
}

#[test]
fn the_state_dir_is_redacted_whichever_it_is() {
    let ids = "containers/0123456789ab/merged";
    let mut dirs = vec![
        state_path().display().to_string(),
        stagebox::state::dir::ROOT_DEFAULT.to_string(),
    ];
    // Exported or not: the tests pass their own to every stagebox they start, and the value
    // exported (if any) is what a command a lesson runs by hand would use.
    if let Some(s) = std::env::var_os("STAGEBOX_STATE").filter(|s| !s.is_empty()) {
        dirs.push(s.to_string_lossy().into_owned());
    }
    for d in dirs {
        assert_eq!(
            redact(&format!("writes land in {d}/{ids}")),
            "writes land in [STATE]/containers/[ID]/merged\n",
            "{d}"
        );
    }
    // Not a longer name that starts the same.
    assert_eq!(
        redact("/var/lib/stagebox-old/x\n"),
        "/var/lib/stagebox-old/x\n"
    );
}

#[test]
fn ids_digests_ages_and_temp_names() {
    let id = "3f2a0b1c9d8e";
    let digest = "a".repeat(64);
    assert_eq!(
        redact(&format!(
            "{id}  {id}/upper sha256:{digest} 5 minutes ago x{id}"
        )),
        format!("[ID]  [ID]/upper sha[N]:[DIGEST] [AGO] x{id}\n")
    );
    assert_eq!(
        redact("sethostname(\"stagebox-3f2a0b\") /tmp/stagebox-lesson.Ab3dE9"),
        "sethostname(\"stagebox-[ID]\") /tmp/stagebox-lesson.[TMP]\n"
    );
}

#[test]
fn the_cgroup_parent_of_any_state_dir_reads_as_the_default_one() {
    let parent = stagebox::state::dir::cgroup_parent(&state_path());
    assert_ne!(parent, "stagebox");
    let id = "0123456789ab";
    assert_eq!(
        redact(&format!("/sys/fs/cgroup/memory/{parent}/{id}/")),
        "/sys/fs/cgroup/memory/stagebox/[ID]/\n"
    );
    assert_eq!(
        redact(&format!("4:memory:/{parent}/{id}\n0::/stagebox/{id}")),
        "4:memory:/stagebox/[ID]\n0::/stagebox/[ID]\n"
    );
}

#[test]
fn numbers_that_vary_are_redacted_at_any_length() {
    // The host's segment id is one digit on a fresh machine.
    for n in ["8", "32769"] {
        assert_eq!(
            redact(&format!(
                "  [all] sysv_ipc: the host's shared memory segment {n} is not listed"
            )),
            "  [all] sysv_ipc: the host's shared memory segment [N] is not listed\n"
        );
    }
    // Host pids in the trace's notes, however short.
    let trace = "▶ pid  new PID namespace\n    · forked: host pid 7 is PID 1 in the new namespace; the intermediate process 6 exited\n    · execve(\"/bin/true\", [\"/bin/true\"]) as host pid 12345\n";
    assert_eq!(
        redact(trace),
        "▶ pid  new PID namespace\n    · forked: host pid [N] is PID 1 in the new namespace; the intermediate process [N] exited\n    · execve(\"/bin/true\", [\"/bin/true\"]) as host pid [N]\n"
    );
    // Free text: runs of two or more digits, but not modes nor a lesson's number.
    assert_eq!(
        redact("07 · cgroups\nmode=755 0o1777 size 65536k, 3 of 12"),
        "07 · cgroups\nmode=755 0o1777 size [N]k, 3 of [N]\n"
    );
}

#[test]
fn facts_are_redacted_by_their_rule() {
    let h = host();
    let trace = format!(
        "\
▶ uts  new UTS namespace
    ns/uts             uts:[4026531838] -> uts:[4026532301]
    hostname           {h} -> tour
▶ net  new network namespace
    interfaces         lo(up) eth0(up) -> lo(up)
▶ ipc  new IPC namespace
    sysv ipc objects   3 -> 0
▶ rootfs  mount the root filesystem
    visible pids       173 -> no /proc
    mount count        31 -> 32
    mount              + {state}/containers/0123456789ab/merged overlay overlay
▶ proc  fresh /proc
    visible pids       no /proc -> 1
▶ pivot  pivot_root
    mount count        7 -> 6
    mount              {state}/containers/0123456789ab/merged overlay overlay -> / overlay overlay
    mount              - /boot ext4 /dev/sda1
▶ cgroup  create a cgroup
    cpu.cfs_quota_us   -1 -> 50000
    cgroup memory      /user.slice/session-3.scope -> /stagebox-1a2b3c4d/0123456789ab
    memory peak        + 1.2MiB of 32MiB (memory.max_usage_in_bytes)
    cpu time           + 0.01s
    cpu throttled      + in 2 of 3 periods, 0.04s in all (cpu.stat)
    forks refused      + 0 at pids.max 10 (pids.events max)
■ the workload exited with status 0
",
        state = state_path().display()
    );
    assert_eq!(
        redact(&trace),
        "\
▶ uts  new UTS namespace
    ns/uts             uts:[[N]] -> uts:[[N]]
    hostname           [HOST] -> tour
▶ net  new network namespace
    interfaces         [HOST INTERFACES] -> lo(up)
▶ ipc  new IPC namespace
▶ rootfs  mount the root filesystem
    visible pids       [N] -> no /proc
    mount count        [N] -> [N]
    mount              + [STATE]/containers/[ID]/merged overlay overlay
▶ proc  fresh /proc
    visible pids       no /proc -> 1
▶ pivot  pivot_root
    mount count        [N] -> [N]
    mount              [STATE]/containers/[ID]/merged overlay overlay -> / overlay overlay
▶ cgroup  create a cgroup
    cpu.cfs_quota_us   -1 -> 50000
    cgroup memory      [HOST CGROUP] -> /stagebox/[ID]
    memory peak        + [MEASURED] (memory.max_usage_in_bytes)
    cpu time           + [MEASURED]
    cpu throttled      + [MEASURED] (cpu.stat)
    forks refused      + 0 at pids.max 10 (pids.events max)
■ the workload exited with status 0
"
    );
}

#[test]
fn a_json_trace_is_redacted_like_the_pretty_one() {
    let h = host();
    let json = format!(
        "{{\"stage\":\"uts\",\"event\":\"fact\",\"fact\":\"hostname\",\"before\":\"{h}\",\"after\":\"tour\"}}\n\
         {{\"stage\":\"ipc\",\"event\":\"fact\",\"fact\":\"sysv ipc objects\",\"before\":\"3\",\"after\":\"0\"}}\n\
         {{\"stage\":\"cgroup\",\"event\":\"syscall\",\"syscall\":\"write(\\\"/sys/fs/cgroup/pids/stagebox-1a2b3c4d/0123456789ab/cgroup.procs\\\", \\\"4242\\\")\",\"result\":\"0\"}}\n"
    );
    assert_eq!(
        redact(&json),
        "{\"stage\":\"uts\",\"event\":\"fact\",\"fact\":\"hostname\",\"before\":\"[HOST]\",\"after\":\"tour\"}\n\
         {\"stage\":\"cgroup\",\"event\":\"syscall\",\"syscall\":\"write(\\\"/sys/fs/cgroup/pids/stagebox/[ID]/cgroup.procs\\\", \\\"[N]\\\")\",\"result\":\"0\"}\n"
    );
}

#[test]
fn syscalls_and_notes_of_the_cgroup_stages() {
    let trace = "\
▶ cgroup  create a cgroup
    $ mkdir(\"/sys/fs/cgroup/memory/stagebox-1a2b3c4d\") = 0
    $ mkdir(\"/sys/fs/cgroup/memory/stagebox-1a2b3c4d/0123456789ab\") = 0
    $ write(\"/sys/fs/cgroup/stagebox/cgroup.subtree_control\", \"+memory\") = 0
    $ write(\"/sys/fs/cgroup/memory/stagebox-1a2b3c4d/0123456789ab/memory.limit_in_bytes\", \"33554432\") = 0
    $ write(\"/sys/fs/cgroup/memory/stagebox-1a2b3c4d/0123456789ab/cgroup.procs\", \"4242\") = 0
    /sys/fs/cgroup/cgroup.subtree_control (none) -> cpu memory
▶ cgroupns  new cgroup namespace
    · /proc/self/cgroup inside: 4:memory:/user.slice -> 4:memory:/
▶ cgroupns  new cgroup namespace
    · /proc/self/cgroup inside: memory:/stagebox-1a2b3c4d/0123456789ab -> memory:/
";
    assert_eq!(
        redact(trace),
        "\
▶ cgroup  create a cgroup
    $ mkdir(\"/sys/fs/cgroup/memory/stagebox/[ID]\") = 0
    $ write(\"/sys/fs/cgroup/memory/stagebox/[ID]/memory.limit_in_bytes\", \"33554432\") = 0
    $ write(\"/sys/fs/cgroup/memory/stagebox/[ID]/cgroup.procs\", \"[N]\") = 0
▶ cgroupns  new cgroup namespace
    · /proc/self/cgroup [HOST CGROUP PATHS]
▶ cgroupns  new cgroup namespace
    · /proc/self/cgroup inside: memory:/stagebox/[ID] -> memory:/
"
    );
}

#[test]
fn the_busybox_and_the_host_tools_rootfs_read_the_same() {
    let state = state_path().display().to_string();
    let lines = |dir: &str, made: &str, size: &str| {
        redact(&format!(
            "lowerdir={state}/rootfs/{dir},upperdir=x\n\
             made from: {made}\n\
             default                       latest        0123456789ab  2 days ago        {size}\n\
             <missing>     2 days ago        stagebox: the default rootfs ({made}…  {size}     \n"
        ))
    };
    let busybox = lines(
        "busybox",
        "busybox-static (/bin/busybox, BusyBox v1.35.0, 268 applet links)",
        "2.1MB",
    );
    let host = lines("host", "host tools: sh ls cat + 12 libraries", "14.8MB");
    assert_eq!(busybox, host);
    assert!(busybox.contains("[STATE]/rootfs/[DEFAULT]"), "{busybox}");
    assert!(busybox.contains("made from: [MADE FROM]"), "{busybox}");
    assert!(!busybox.contains("2.1MB"), "{busybox}");
}

#[test]
fn the_host_name_is_redacted_only_as_a_whole_word() {
    let h = host();
    assert_eq!(
        redact(&format!("\"hostname\": \"{h}\", x{h}y")),
        format!("\"hostname\": \"[HOST]\", x{h}y\n")
    );
}
