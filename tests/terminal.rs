//! An interactive shell on a terminal: input reaches it, Ctrl-C reaches the workload (and
//! not only stagebox), and the exit status comes back. `script` gives the run a real pty.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn on_a_terminal(steps: &[(&str, u64)]) -> (Option<i32>, String) {
    let line = format!("{} run --rm --trace off -- /bin/sh", bin());
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("STAGEBOX_STATE", state_dir())
        .env("TERM", "dumb")
        .env("PS1", "$ ")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) is installed");
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for (text, pause_ms) in steps {
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(*pause_ms));
    }
    drop(stdin);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status.code(), out);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let mut out = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            panic!("the interactive run did not finish; output so far:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_interactive_shell_takes_input_and_returns_its_status() {
    if !root_or_skip("interactive shell") {
        return;
    }
    let (code, out) = on_a_terminal(&[("echo $((6*7)); hostname\n", 300), ("exit 5\n", 300)]);
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("stagebox-"), "{out}");
    assert_eq!(code, Some(5), "{out}");
}

#[test]
fn ctrl_c_reaches_the_workload() {
    if !root_or_skip("ctrl-c") {
        return;
    }
    // Ctrl-C interrupts the sleep inside; the shell lives on and takes the next line.
    let (code, out) = on_a_terminal(&[
        ("sleep 30; echo after-sleep\n", 800),
        ("\x03", 500),
        ("echo alive\n", 300),
        ("exit\n", 300),
    ]);
    assert!(out.contains("alive"), "{out}");
    assert!(!out.contains("after-sleep\r\n$"), "{out}");
    assert!(code.is_some(), "{out}");
}
