//! Containers that live on their own (#15): `run -d` and its monitor, `logs` in Docker's
//! json-file format, `stop`/`kill`/`wait`/`start`, `-t`, `--restart`. Each test has its own
//! state directory, `--network none` (nothing on the host's network changes), removes its
//! containers with `rm -f` and proves no process with its marker (the workload's and the
//! monitor's command lines carry it) is left.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

struct Box_ {
    state: PathBuf,
    marker: String,
    names: Vec<String>,
}

impl Box_ {
    fn new(test: &str) -> Box_ {
        let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("detach-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        Box_ {
            state,
            marker: marker(),
            names: Vec::new(),
        }
    }

    fn sb(&self, args: &[&str]) -> Output {
        cmd(args)
            .env("STAGEBOX_STATE", &self.state)
            .output()
            .expect("run stagebox")
    }

    /// `run -d --name NAME --network none FLAGS -- /bin/sh -c SCRIPT MARKER`.
    fn run_d(&mut self, name: &str, flags: &[&str], script: &str) -> (Output, Duration) {
        self.names.push(name.to_string());
        let mut all = vec!["run", "-d", "--name", name, "--network", "none"];
        all.extend_from_slice(flags);
        let m = self.marker.clone();
        all.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
        let t = Instant::now();
        let out = self.sb(&all);
        (out, t.elapsed())
    }

    fn text(&self, args: &[&str]) -> String {
        let out = self.sb(args);
        assert!(
            out.status.success(),
            "stagebox {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn record(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.text(&["inspect", name])).expect("inspect prints JSON")
    }

    fn dir(&self, name: &str) -> PathBuf {
        let id = self.record(name)["id"].as_str().unwrap().to_string();
        self.state.join("containers").join(id)
    }

    /// rm -f every container, then: no process with the marker is left.
    fn finish(&mut self) {
        for n in std::mem::take(&mut self.names) {
            let _ = self.sb(&["rm", "-f", &n]);
        }
        assert_none_left(&self.marker, "a detached container after rm -f");
    }
}

impl Drop for Box_ {
    fn drop(&mut self) {
        for n in std::mem::take(&mut self.names) {
            let _ = self.sb(&["rm", "-f", &n]);
        }
        drop(KillMarked(self.marker.clone()));
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn status_field(pid: i64, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_d_prints_the_id_quickly_and_the_container_runs_on_its_own() {
    if !root_or_skip("run_d_prints_the_id_quickly_and_the_container_runs_on_its_own") {
        return;
    }
    let mut b = Box_::new("quick");
    let (out, took) = b.run_d("q", &[], "echo hello; while :; do sleep 1; done");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out);
    // Only the id on stdout: the trace went to stderr, the workload's output to the log.
    assert!(
        id.len() == 13 && id.trim().bytes().all(|c| c.is_ascii_hexdigit()),
        "run -d printed {id:?}"
    );
    assert!(
        stderr(&out).contains("execve"),
        "the trace goes to the caller's stderr while the stages build"
    );
    eprintln!("run -d latency: {took:?}");
    assert!(took < Duration::from_secs(10), "run -d took {took:?}");
    // stagebox has exited; the workload runs, seen from outside in /proc.
    let rec = b.record("q");
    assert_eq!(rec["id"].as_str(), Some(id.trim()));
    assert_eq!(rec["state"].as_str(), Some("running"));
    let pid = rec["pid"]
        .as_i64()
        .expect("a running record has the workload's pid");
    let nspid = status_field(pid, "NSpid").expect("the recorded pid is alive");
    assert!(
        nspid.ends_with("\t1") || nspid.ends_with(" 1"),
        "PID 1 of its namespace: NSpid {nspid}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains(&b.marker));
    // Its monitor is not stagebox's foreground process (gone) but a session leader of its own.
    let monitor = rec["runtime_pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[3],
        monitor.to_string(),
        "the monitor is its session's leader (setsid)"
    );
    // The workload's output is in the log, not on run's stdout.
    assert!(until(Duration::from_secs(3), || b.text(&["logs", "q"])
        == "hello\n"));
    b.finish();
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "the workload is gone"
    );
    assert!(
        until(Duration::from_secs(2), || status_field(monitor, "State")
            .is_none_or(|s| s.starts_with('Z'))),
        "the monitor is gone"
    );
}

#[test]
fn logs_outlive_stagebox_in_json_file_format() {
    if !root_or_skip("logs_outlive_stagebox_in_json_file_format") {
        return;
    }
    let mut b = Box_::new("logs");
    let (out, _) = b.run_d(
        "l",
        &[],
        "i=0; while [ $i -lt 3 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; sleep 0.5; echo last",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // logs -f follows until the container stops.
    let f = b.sb(&["logs", "-f", "l"]);
    assert_eq!(stdout(&f), "out0\nout1\nout2\nlast\n");
    assert_eq!(stderr(&f), "err0\nerr1\nerr2\n");
    assert_eq!(b.text(&["wait", "l"]), "0\n");
    // On disk: one JSON object per line, as Docker's json-file driver writes it.
    let dir = b.dir("l");
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(dir.join(format!("{id}-json.log"))).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 7);
    for l in &lines {
        let obj = l.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
    }
    assert!(lines
        .iter()
        .any(|l| l["log"] == "err1\n" && l["stream"] == "stderr"));
    assert!(lines
        .iter()
        .any(|l| l["log"] == "out1\n" && l["stream"] == "stdout"));
    assert!(
        !text.contains("execve"),
        "no trace line in the workload's log"
    );
    // Still there after the container exited; --tail and -t.
    assert_eq!(b.text(&["logs", "--tail", "1", "l"]), "last\n");
    let stamped = b.text(&["logs", "-t", "--tail", "1", "l"]);
    assert!(
        stamped.ends_with("Z last\n") && stamped.starts_with("20"),
        "{stamped}"
    );
    assert_eq!(
        b.text(&["logs", "--since", "1h", "--tail", "all", "l"])
            .lines()
            .count(),
        4
    );
    b.finish();
}

#[test]
fn stop_sends_sigkill_after_the_timeout_to_a_workload_that_ignores_sigterm() {
    if !root_or_skip("stop_sends_sigkill_after_the_timeout_to_a_workload_that_ignores_sigterm") {
        return;
    }
    let mut b = Box_::new("stopkill");
    let (out, _) = b.run_d("ign", &["--trace", "off"], "trap '' TERM; sleep 100");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid = b.record("ign")["pid"].as_i64().unwrap();
    assert!(until(Duration::from_secs(2), || status_field(
        pid, "SigIgn"
    )
    .is_some_and(
        |m| u64::from_str_radix(&m, 16).unwrap() & (1 << 14) != 0
    )));
    let t = Instant::now();
    let s = b.sb(&["stop", "-t", "1", "ign"]);
    let took = t.elapsed();
    eprintln!("stop -t 1 of a SIGTERM-ignoring workload: {took:?}");
    assert_eq!(stdout(&s), "ign\n", "{}", stderr(&s));
    assert!(
        took >= Duration::from_millis(950),
        "SIGKILL came before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(b.record("ign")["exit_code"], 137, "killed by SIGKILL");
    assert!(status_field(pid, "State").is_none());
    b.finish();
}

#[test]
fn stop_of_a_workload_that_takes_sigterm_is_quick() {
    if !root_or_skip("stop_of_a_workload_that_takes_sigterm_is_quick") {
        return;
    }
    let mut b = Box_::new("stopterm");
    // Without the pid stage `sleep` is not PID 1, so SIGTERM's default action applies.
    let (out, _) = b.run_d(
        "n",
        &["--trace", "off", "--without", "pid"],
        "exec sleep 100",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = Instant::now();
    assert_eq!(b.text(&["stop", "n"]), "n\n");
    let took = t.elapsed();
    eprintln!("stop of a workload that takes SIGTERM: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(b.record("n")["exit_code"], 143);
    assert_eq!(b.text(&["wait", "n"]), "143\n");
    b.finish();
}

#[test]
fn kill_sends_the_signal_and_wait_prints_the_exit_code() {
    if !root_or_skip("kill_sends_the_signal_and_wait_prints_the_exit_code") {
        return;
    }
    let mut b = Box_::new("kill");
    let (out, _) = b.run_d(
        "k",
        &["--trace", "off"],
        "trap 'echo got USR1; exit 7' USR1; echo ready; while :; do sleep 0.1; done",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(until(Duration::from_secs(3), || b.text(&["logs", "k"])
        == "ready\n"));
    assert_eq!(b.text(&["kill", "-s", "USR1", "k"]), "k\n");
    assert_eq!(b.text(&["wait", "k"]), "7\n");
    assert_eq!(b.text(&["logs", "k"]), "ready\ngot USR1\n");
    // Not running any more: kill is refused, in one sentence.
    let again = b.sb(&["kill", "k"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(stderr(&again).contains("is not running"));
    b.finish();
}

#[test]
fn start_runs_the_same_container_again_on_its_writable_layer() {
    if !root_or_skip("start_runs_the_same_container_again_on_its_writable_layer") {
        return;
    }
    let mut b = Box_::new("start");
    let script =
        "if [ -f /kept ]; then echo again; cat /kept; else echo first-run > /kept; echo made; fi";
    let (out, _) = b.run_d("s", &["--trace", "off"], script);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(b.text(&["wait", "s"]), "0\n");
    let upper = b.dir("s").join("upper/kept");
    assert_eq!(std::fs::read_to_string(&upper).unwrap(), "first-run\n");
    assert_eq!(b.text(&["start", "s"]), "s\n");
    assert_eq!(b.text(&["wait", "s"]), "0\n");
    assert_eq!(b.text(&["logs", "s"]), "made\nagain\nfirst-run\n");
    let rec = b.record("s");
    assert_eq!(rec["id"].as_str(), Some(id.as_str()), "the same container");
    assert_eq!(b.text(&["ps", "-a"]).lines().count(), 2, "one container");
    b.finish();
}

#[test]
fn dash_t_gives_the_workload_a_terminal() {
    if !root_or_skip("dash_t_gives_the_workload_a_terminal") {
        return;
    }
    let mut b = Box_::new("tty");
    let (out, _) = b.run_d(
        "t",
        &["-t", "--trace", "off"],
        "test -t 0 && echo stdin-tty; test -t 1 && echo stdout-tty; echo to-stderr >&2",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(b.text(&["wait", "t"]), "0\n");
    let logs = b.sb(&["logs", "t"]);
    // The pty turns \n into \r\n; everything is one stream, stdout.
    assert_eq!(stdout(&logs), "stdin-tty\r\nstdout-tty\r\nto-stderr\r\n");
    assert_eq!(stderr(&logs), "");
    b.finish();
}

#[test]
fn restart_on_failure_restarts_as_often_as_it_says() {
    if !root_or_skip("restart_on_failure_restarts_as_often_as_it_says") {
        return;
    }
    let mut b = Box_::new("restart");
    let (out, _) = b.run_d(
        "r",
        &["--trace", "off", "--restart", "on-failure:2"],
        "echo run; exit 3",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(until(Duration::from_secs(15), || {
        let r = b.record("r");
        r["status"] == "exited" && r["lifecycle"]["restart_count"] == 2
    }));
    assert_eq!(b.record("r")["exit_code"], 3);
    assert_eq!(b.text(&["logs", "r"]), "run\nrun\nrun\n");
    // stop is not followed by a restart.
    let (out, _) = b.run_d("a", &["--trace", "off", "--restart", "always"], "sleep 100");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(b.text(&["stop", "-t", "0", "a"]), "a\n");
    std::thread::sleep(Duration::from_millis(1500));
    let a = b.record("a");
    assert_eq!(a["state"], "exited (137)");
    assert_eq!(a["lifecycle"]["restart_count"], 0);
    b.finish();
}

#[test]
fn mistakes_are_one_sentence_and_125() {
    if !root_or_skip("mistakes_are_one_sentence_and_125") {
        return;
    }
    let mut b = Box_::new("mistakes");
    for (args, says) in [
        (vec!["stop", "nosuch"], "no container named"),
        (vec!["logs", "nosuch"], "no container named"),
        (
            vec!["run", "-d", "--restart", "sometimes", "--", "true"],
            "not a restart policy",
        ),
        (
            vec!["run", "--restart", "always", "--", "true"],
            "--restart needs -d",
        ),
        (vec!["kill", "-s", "NOPE", "x"], "not a signal"),
    ] {
        let o = b.sb(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(says) && e.lines().count() == 1, "{args:?}: {e}");
    }
    // A container run without -d: its output went to the terminal.
    b.names.push("fg".into());
    let o = b.sb(&[
        "run",
        "--name",
        "fg",
        "--network",
        "none",
        "--trace",
        "off",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = b.sb(&["logs", "fg"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("went to the terminal it ran on"));
    // A run that fails before its workload starts: the sentence and 125 from run -d itself.
    let mut all = vec![
        "run",
        "-d",
        "--network",
        "none",
        "--trace",
        "off",
        "--",
        "/no/such/cmd",
    ];
    all.push(&b.marker);
    let o = b.sb(&all);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    b.finish();
}

#[test]
fn attach_relays_input_and_both_streams() {
    if !root_or_skip("attach_relays_input_and_both_streams") {
        return;
    }
    use std::io::{BufRead, Write};
    let mut b = Box_::new("attach");
    let (out, _) = b.run_d(
        "a",
        &["-i", "--trace", "off"],
        "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut child = cmd(&["attach", "a"])
        .env("STAGEBOX_STATE", &b.state)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    // Read both streams on threads, so that a hang shows as a failure with what came.
    let (tx, rx) = std::sync::mpsc::channel();
    for (name, r) in [
        ("stdout", Box::new(out) as Box<dyn std::io::Read + Send>),
        ("stderr", Box::new(err)),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(format!("{name}: {line}"));
            }
        });
    }
    input.write_all(b"hello\n").unwrap();
    input.flush().unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.len() < 2 && Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec!["stderr: err hello", "stdout: got hello"],
        "attach gave nothing; the log has {:?}, attach exited {:?}",
        b.text(&["logs", "a"]),
        child.try_wait()
    );
    // Ending attach leaves the container running.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(b.record("a")["state"], "running");
    assert_eq!(b.text(&["logs", "a"]), "got hello\n");
    assert_eq!(b.text(&["stop", "-t", "1", "a"]), "a\n");
    // Not running: attach is refused in one sentence.
    let o = b.sb(&["attach", "a"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("is not running"));
    b.finish();
}
