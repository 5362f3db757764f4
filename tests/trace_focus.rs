//! A focused trace, against the real kernel: `--trace-stages` keeps some stages' lines (every
//! stage still runs), and the pretty trace folds the host mounts the root switch takes out of
//! view into one line that `--trace verbose` spells out.

mod common;
use common::*;

/// `stagebox run --rm ARGS -- COMMAND...`; returns (exit code, stdout, stderr).
fn run(args: &[&str], command: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = vec!["run", "--rm"];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(command);
    let out = stagebox(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stage names of the header (`▶`) and off (`▷`) lines, in order.
fn headers(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|l| l.starts_with('▶') || l.starts_with('▷'))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The lines of one stage's part of a pretty trace, header excluded.
fn part<'a>(trace: &'a str, stage: &str) -> Vec<&'a str> {
    let head = format!("▶ {stage} ");
    trace
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect()
}

/// The pivot stage's `mount - ...` lines: one per host mount gone.
fn host_mount_lines(trace: &str) -> Vec<String> {
    part(trace, "pivot")
        .into_iter()
        .map(str::trim_start)
        .filter(|l| l.starts_with("mount ") && l["mount".len()..].trim_start().starts_with("- "))
        .map(str::to_string)
        .collect()
}

/// N from the pivot stage's `mount  N host mount(s) gone from view` line, if there is one.
fn summary_count(trace: &str) -> Option<usize> {
    part(trace, "pivot").into_iter().find_map(|l| {
        let rest = l.trim_start().strip_prefix("mount ")?.trim_start();
        let (n, what) = rest.split_once(' ')?;
        if what.starts_with("host mount") && what.contains("gone from view") {
            n.parse().ok()
        } else {
            None
        }
    })
}

#[test]
fn trace_stages_shows_only_those_stages_and_still_runs_every_stage() {
    if !root_or_skip("--trace-stages pretty") {
        return;
    }
    let (code, out, err) = run(
        &["--trace-stages", "uts,pid"],
        &[
            "/bin/sh",
            "-c",
            "for n in ipc net mnt; do readlink /proc/self/ns/$n; done; echo $$",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(headers(&err), vec!["uts", "pid"], "{err}");
    assert!(
        err.lines().any(|l| l.trim_start().starts_with("· execve(")),
        "no exec line: {err}"
    );
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.starts_with("■ the workload exited with status 0")),
        "no exit line at the end: {err}"
    );
    // Nothing of the other stages: no ipc/net/mount facts, no pivot, no cgroup report.
    for absent in [
        "ns/ipc",
        "ns/net",
        "ns/mnt",
        "mount count",
        "memory peak",
        "pivot_root",
    ] {
        assert!(!err.contains(absent), "{absent} in a uts,pid trace: {err}");
    }
    // Every stage still ran: the workload has its own ipc, net and mount namespaces, and is
    // PID 1.
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 4, "{out}");
    for (line, ns) in got.iter().zip(["ipc", "net", "mnt"]) {
        assert_ne!(*line, host_ns(ns), "the {ns} stage did not run");
    }
    assert_eq!(got[3], "1", "the pid stage did not run");
}

#[test]
fn trace_stages_in_json_and_from_the_environment() {
    if !root_or_skip("--trace-stages json") {
        return;
    }
    let out = cmd(&["run", "--rm", "--trace", "json", "--", "/bin/true"])
        .env("STAGEBOX_TRACE_STAGES", "uts,pid")
        .output()
        .expect("run stagebox");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let mut headers = Vec::new();
    let mut events = Vec::new();
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let stage = v["stage"].as_str().unwrap_or_default().to_string();
        let event = v["event"].as_str().unwrap_or_default().to_string();
        assert!(
            ["uts", "pid"].contains(&stage.as_str())
                || (stage == "exec" && event == "note")
                || event == "exit",
            "a line of another stage: {line}"
        );
        if event == "stage" {
            headers.push(stage.clone());
        }
        events.push((stage, event));
    }
    assert_eq!(headers, vec!["uts", "pid"]);
    assert!(events.contains(&("exec".to_string(), "note".to_string())));
    assert_eq!(
        events.last().map(|(_, e)| e.as_str()),
        Some("exit"),
        "{err}"
    );
}

#[test]
fn an_unknown_trace_stage_is_one_sentence_and_makes_nothing() {
    let fresh = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("trace-focus-unknown");
    let _ = std::fs::remove_dir_all(&fresh);
    let check = |out: std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert!(
            err.contains(
                "unknown stage \"pdi\" in --trace-stages; the stages are: user, cgroup, devices, uts"
            ),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "more than one line: {err}");
        assert!(out.stdout.is_empty());
        let containers = fresh.join("containers");
        let made = std::fs::read_dir(&containers)
            .map(|rd| rd.count())
            .unwrap_or(0);
        assert_eq!(made, 0, "a container was made in {}", containers.display());
    };
    check(
        cmd(&["run", "--trace-stages", "uts,pdi", "--", "/bin/true"])
            .env("STAGEBOX_STATE", &fresh)
            .output()
            .expect("run stagebox"),
    );
    check(
        cmd(&["run", "--", "/bin/true"])
            .env("STAGEBOX_STATE", &fresh)
            .env("STAGEBOX_TRACE_STAGES", "pdi")
            .output()
            .expect("run stagebox"),
    );
    let _ = std::fs::remove_dir_all(&fresh);
}

/// How many mounts the pivot stage's `mount count  A -> B` line says went: A - B (the
/// container's own mounts are all moved, none go).
fn count_drop(trace: &str) -> Option<usize> {
    part(trace, "pivot").into_iter().find_map(|l| {
        let rest = l.trim_start().strip_prefix("mount count")?;
        let (a, b) = rest.split_once("->")?;
        let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        a.checked_sub(b)
    })
}

/// Two traces of runs made one after the other, with the host's mount table the same before
/// and after (another test may mount something on the host meanwhile: then try again).
fn two_runs(first: &[&str], second: &[&str]) -> (String, String) {
    for _ in 0..3 {
        let before = host_mounts();
        let (code, _, a) = run(first, &["/bin/true"]);
        assert_eq!(code, 0, "{a}");
        let (code, _, b) = run(second, &["/bin/true"]);
        assert_eq!(code, 0, "{b}");
        if host_mounts() == before {
            return (a, b);
        }
    }
    panic!("the host's mount table kept changing during the runs");
}

#[test]
fn pretty_folds_the_host_mounts_and_verbose_lists_each() {
    if !root_or_skip("host mounts summary") {
        return;
    }
    let (pretty, verbose) = two_runs(&["--trace", "pretty"], &["--trace", "verbose"]);

    let n = summary_count(&pretty).unwrap_or_else(|| panic!("no summary line: {pretty}"));
    assert!(n > 0);
    assert_eq!(count_drop(&pretty), Some(n), "{pretty}");
    assert!(
        host_mount_lines(&pretty).is_empty(),
        "pretty lists host mounts: {pretty}"
    );
    // The container's own mounts still print one by one: moved into place at the switch.
    assert!(
        part(&pretty, "pivot")
            .iter()
            .any(|l| l.contains("/proc proc proc -> /proc proc proc")),
        "{pretty}"
    );

    let listed = host_mount_lines(&verbose);
    assert_eq!(
        summary_count(&verbose),
        None,
        "verbose has a summary: {verbose}"
    );
    assert_eq!(count_drop(&verbose), Some(listed.len()), "{verbose}");
    assert_eq!(
        listed.len(),
        n,
        "the summary says {n}, verbose lists {listed:?}"
    );
    // The host's root is among them (the pivot detached it).
    assert!(listed.iter().any(|l| l.contains("- / ")), "{listed:?}");
    assert_eq!(
        headers(&pretty),
        headers(&verbose),
        "pretty and verbose differ in stages"
    );
}

#[test]
fn json_keeps_every_host_mount_fact() {
    if !root_or_skip("json host mounts") {
        return;
    }
    let (pretty, json) = two_runs(
        &["--trace", "pretty", "--trace-stages", "pivot"],
        &["--trace", "json", "--trace-stages", "pivot"],
    );
    let n = summary_count(&pretty).unwrap_or_else(|| panic!("no summary line: {pretty}"));
    let gone = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fact"] == "mount" && v["after"].is_null() && v["before"].is_string())
        .count();
    assert_eq!(gone, n, "json has {gone} host mount facts, pretty says {n}");
    assert!(!json.contains("gone from view"), "{json}");
}
