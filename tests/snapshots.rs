//! Human-facing output, reviewed as snapshots: the stage list, a plan, and a pretty trace
//! with what changes from run to run (inode numbers, pids, ids, host-specific mounts and
//! interfaces) redacted.

mod common;
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

/// Redactions for a trace: kernel ids, pids, the random hostname, and the lines that depend
/// on the host (its mounts, interfaces, hostname, state dir).
pub fn redact_trace(s: &str, state: &str) -> String {
    let mut out = String::new();
    let host = nix::sys::utsname::uname()
        .unwrap()
        .nodename()
        .to_string_lossy()
        .into_owned();
    for line in s.lines() {
        let t = line.trim_start();
        // The host's own SysV objects come and go.
        if t.starts_with("sysv ipc objects") {
            continue;
        }
        // Lines listing the host's own mounts differ from machine to machine.
        if t.starts_with("mount ") && t.contains(" - ") && !t.contains(state) {
            continue;
        }
        // How many host mounts the root switch takes out of view differs too (even below 10).
        if t.starts_with("mount ") && t.contains(" gone from view") {
            let indent = &line[..line.len() - t.len()];
            let rest = t["mount".len()..].trim_start();
            let what = rest.split_once(' ').map(|(_, w)| w).unwrap_or(rest);
            let what = what.replacen("host mount gone", "host mounts gone", 1);
            out.push_str(&format!("{indent}{:<18} [N] {what}\n", "mount"));
            continue;
        }
        // Which cgroups the runtime itself sits in differs from host to host.
        if t.starts_with("· /proc/self/cgroup") {
            out.push_str("    · /proc/self/cgroup [HOST CGROUP PATHS]\n");
            continue;
        }
        let mut l = line.replace(state, "[STATE]");
        l = redact_container_id(&l);
        l = regex_lite(&l, &host);
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// `stagebox/<12 hex digits>` (the container's cgroup) -> `stagebox/[ID]`.
fn redact_container_id(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("stagebox/") {
        out.push_str(&rest[..i + 9]);
        let tail = &rest[i + 9..];
        if tail.len() >= 12 && tail[..12].chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("[ID]");
            rest = &tail[12..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn regex_lite(line: &str, host: &str) -> String {
    let mut l = line.to_string();
    // namespace inodes: ns:[4026531838]
    let mut res = String::new();
    let mut rest = l.as_str();
    while let Some(i) = rest.find(":[") {
        res.push_str(&rest[..i + 2]);
        let after = &rest[i + 2..];
        let end = after.find(']').unwrap_or(0);
        res.push_str("INODE");
        rest = &after[end..];
    }
    res.push_str(rest);
    l = res;
    // containers/<12 hex id>
    let mut from = 0;
    while let Some(off) = l[from..].find("containers/") {
        let i = from + off;
        let tail = &l[i + 11..];
        if tail.len() >= 12 && tail[..12].chars().all(|c| c.is_ascii_hexdigit()) {
            l = format!("{}containers/[ID]{}", &l[..i], &tail[12..]);
        }
        from = i + 11;
    }
    // stagebox-<6 hex>
    if let Some(i) = l.find("stagebox-") {
        let tail = &l[i + 9..];
        if tail.len() >= 6 && tail[..6].chars().all(|c| c.is_ascii_hexdigit()) {
            l = format!("{}stagebox-[ID]{}", &l[..i], &tail[6..]);
        }
    }
    let words: Vec<String> = l
        .split(' ')
        .map(|w| {
            if w == host {
                "[HOST]".to_string()
            } else if !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) && w.len() >= 2 {
                "[N]".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    l = words.join(" ");
    if l.trim_start().starts_with("interfaces") {
        if let Some(i) = l.find("->") {
            let start = l.find("interfaces").unwrap_or(0) + "interfaces".len();
            l = format!("{} [HOST INTERFACES] {}", &l[..start], &l[i..]);
        }
    }
    l
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
    let state = state_dir().display().to_string();
    let text = redact_trace(&String::from_utf8_lossy(&out.stderr), &state);
    insta::assert_snapshot!(text);
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
            "cgroup", "uts", "ipc", "pid", "net", "cgroupns", "mount", "rootfs", "proc", "pivot",
            "cgroup"
        ]
    );
    assert!(text.contains(r#""fact":"hostname""#));
}

/// The cgroup stage's part of a pretty trace, up to the next stage: every mkdir, every limit
/// written and read back, the pid moved in. One reviewed snapshot per cgroup layout (the
/// files differ); on a layout without one the test says so and skips, unless INSTA_UPDATE
/// asks for a new snapshot.
#[test]
fn cgroup_part_of_a_trace() {
    if !root_or_skip("cgroup trace snapshot") {
        return;
    }
    let layout = stagebox::cgroup::Layout::detect().unwrap().kind().name();
    let name = format!("cgroup_trace_{layout}");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/snapshots/snapshots__{name}.snap"));
    if !file.exists() && std::env::var_os("INSTA_UPDATE").is_none() {
        eprintln!(
            "SKIP cgroup trace snapshot: no reviewed snapshot for the {layout} layout ({})",
            file.display()
        );
        return;
    }
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
    let text = String::from_utf8_lossy(&out.stderr);
    let mut part = String::new();
    for line in text.lines().skip_while(|l| !l.starts_with("▶ cgroup")) {
        if line.starts_with('▶') && !line.starts_with("▶ cgroup") {
            break;
        }
        // Whether the shared `stagebox` parent had to be made depends on other runs.
        if line.contains("/stagebox\")") {
            continue;
        }
        let mut l = redact_container_id(line);
        // The pid moved in, and where the runtime sat before (host-specific).
        if let Some(i) = l.find("cgroup.procs\", \"") {
            let start = i + "cgroup.procs\", \"".len();
            let end = l[start..].find('"').map(|e| start + e).unwrap_or(l.len());
            l = format!("{}[PID]{}", &l[..start], &l[end..]);
        }
        if l.trim_start().starts_with("cgroup ") && l.contains(" -> ") {
            let arrow = l.find(" -> ").unwrap_or(0);
            let head: String = l[..arrow]
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            l = format!("    {head:<18} [HOST CGROUP]{}", &l[arrow..]);
        }
        part.push_str(&l);
        part.push('\n');
    }
    insta::assert_snapshot!(name, part);
}
