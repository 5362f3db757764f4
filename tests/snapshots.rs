//! Human-facing output, reviewed as snapshots: the stage list, a plan, and a pretty trace
//! with what changes from run to run (inode numbers, pids, ids, host-specific mounts and
//! interfaces) redacted by `common::redact`.

mod common;
use common::redact::redact;
use common::*;

fn stdout(args: &[&str]) -> String {
    let out = stagebox(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stages_list() {
    insta::assert_snapshot!(stdout(&["stages"]));
}

#[test]
fn plan_without_pid() {
    insta::assert_snapshot!(stdout(&["plan", "--without", "pid"]));
}

#[test]
fn plan_only_and_chroot() {
    insta::assert_snapshot!(stdout(&["plan", "--root-switch", "chroot"]));
    insta::assert_snapshot!(
        "plan_only_uts_mount",
        stdout(&["plan", "--only", "mount,uts"])
    );
}

#[test]
fn pretty_trace_of_a_full_run() {
    if !root_or_skip("pretty trace snapshot") {
        return;
    }
    // Without the cgroup stage: its files differ between v1, v2 and hybrid hosts, so it has
    // a snapshot of its own per layout (cgroup_part_of_a_trace).
    let out = stagebox(&[
        "run",
        "--rm",
        "--trace",
        "pretty",
        "--hostname",
        "tour",
        "--without",
        "cgroup",
        "--",
        "/bin/true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the trace must not go to stdout");
    insta::assert_snapshot!(redact(&String::from_utf8_lossy(&out.stderr)));
}

#[test]
fn json_trace_has_stable_fields() {
    if !root_or_skip("json trace") {
        return;
    }
    let out = stagebox(&["run", "--rm", "--trace", "json", "--", "/bin/true"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let mut stages_seen = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let obj = v.as_object().unwrap();
        for k in obj.keys() {
            assert!(
                ["stage", "event", "syscall", "result", "fact", "before", "after", "message"]
                    .contains(&k.as_str()),
                "unexpected key {k}"
            );
        }
        assert!(obj.contains_key("stage") && obj.contains_key("event"));
        if obj["event"] == "stage" {
            stages_seen.push(obj["stage"].as_str().unwrap().to_string());
        }
        if obj["event"] == "fact" {
            assert!(
                obj.contains_key("fact") && obj.contains_key("before") && obj.contains_key("after")
            );
        }
    }
    // The cgroup stage comes back after the exit with what the kernel enforced.
    assert_eq!(
        stages_seen,
        vec![
            "cgroup", "devices", "uts", "ipc", "pid", "net", "cgroupns", "mount", "rootfs", "proc",
            "pivot", "paths", "caps", "seccomp", "cgroup"
        ]
    );
    assert!(text.contains(r#""fact":"hostname""#));
}

/// The cgroup stage's part of a pretty trace, up to the next stage: every mkdir, every limit
/// written and read back, the pid moved in. One reviewed snapshot per cgroup layout (the
/// files differ): on a layout without one the test fails, unless INSTA_UPDATE asks for a
/// new snapshot (to review before it is committed).
#[test]
fn cgroup_part_of_a_trace() {
    if !root_or_skip("cgroup trace snapshot") {
        return;
    }
    let layout = stagebox::cgroup::Layout::detect().unwrap().kind().name();
    let name = format!("cgroup_trace_{layout}");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/snapshots/snapshots__{name}.snap"));
    assert!(
        file.exists() || std::env::var_os("INSTA_UPDATE").is_some(),
        "no reviewed snapshot of the cgroup trace for this host's {layout} layout ({}): make \
         one with INSTA_UPDATE=always on a {layout} host, review it and commit it",
        file.display()
    );
    let out = stagebox(&[
        "run",
        "--trace",
        "pretty",
        "-m",
        "32m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "10",
        "--",
        "/bin/true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = redact(&String::from_utf8_lossy(&out.stderr));
    let mut part = String::new();
    for line in text.lines().skip_while(|l| !l.starts_with("▶ cgroup")) {
        if line.starts_with('▶') && !line.starts_with("▶ cgroup") {
            break;
        }
        part.push_str(line);
        part.push('\n');
    }
    insta::assert_snapshot!(name, part);
}
