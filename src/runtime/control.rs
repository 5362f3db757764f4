//! Commands on a container that is already there, from outside its monitor: `stop`, `kill`,
//! `wait`, `logs`, `attach`. They read the record (liveness is the record's own
//! `Container::is_running`) and signal the workload's host pid as recorded.
//!
//! - `stop`: writes the `stopping` marker (so no restart follows), sends the stop signal
//!   (`--stop-signal`, else the image's StopSignal, else SIGTERM), waits up to the timeout
//!   (`-t`, else `--stop-timeout`, else 10 s) for the monitor to record the exit, then
//!   SIGKILL. A workload that is PID 1 of its pid namespace gets a signal from outside only
//!   if it installed a handler for it (SIGKILL always): `sleep` as PID 1 ignores SIGTERM.
//! - `kill`: one signal (SIGKILL by default; a SIGKILL also marks the container `stopping`).
//! - `attach`: the monitor's socket: the output from now on, stdin with -i/-t (see `attach`).

use super::lifecycle::parse_signal;
use crate::error::{Error, Result};
use crate::state::container::{find, Container};
use crate::state::lifecycle::{log_path, mark_stopping};
use crate::state::logs::{read_from, time_nanos, LogEntry};
use nix::sys::signal::Signal;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn reload(state: &Path, c: &Container) -> Option<Container> {
    Container::load(&c.dir(state)).ok()
}

/// Waits until the record says the container is not running (or is gone); false on timeout.
fn wait_stopped(state: &Path, c: &Container, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        match reload(state, c) {
            Some(now) if now.is_running() => {}
            _ => return true,
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Signals the workload, only if the recorded pid is still that process (its start time).
fn signal(c: &Container, sig: Signal) -> Result<()> {
    let Some(pid) = c.live_workload() else {
        return Ok(());
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::sys(format!("kill({pid}, {sig})"), e)),
    }
}

/// `stop [-t N]`: see the top of this file. A container that is not running is left as it is.
pub fn stop(state: &Path, key: &str, time: Option<u64>) -> Result<()> {
    let c = find(state, key)?;
    if !c.is_running() {
        return Ok(());
    }
    let _ = mark_stopping(&c.dir(state));
    let sig = c
        .lifecycle
        .stop_signal
        .as_deref()
        .and_then(|s| parse_signal(s, "StopSignal").ok())
        .unwrap_or(Signal::SIGTERM);
    let timeout = time.or(c.lifecycle.stop_timeout).unwrap_or(10);
    signal(&c, sig)?;
    if wait_stopped(state, &c, Duration::from_secs(timeout)) {
        return Ok(());
    }
    if let Some(now) = reload(state, &c).filter(|n| n.is_running()) {
        signal(&now, Signal::SIGKILL)?;
    }
    if wait_stopped(state, &c, Duration::from_secs(10)) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "container {} did not stop within 10 s of SIGKILL; `stagebox rm -f {}` removes it",
            c.name, c.name
        )))
    }
}

/// `kill [-s SIG]`.
pub fn kill(state: &Path, key: &str, sig: &str) -> Result<()> {
    let sig = parse_signal(sig, "kill -s")?;
    let c = find(state, key)?;
    if !c.is_running() {
        return Err(Error::usage(format!(
            "container {} is not running; `stagebox start {}` runs it again",
            c.name, c.name
        )));
    }
    if sig == Signal::SIGKILL {
        let _ = mark_stopping(&c.dir(state));
    }
    signal(&c, sig)
}

/// `wait`: blocks until the container is not running; its exit code.
pub fn wait(state: &Path, key: &str) -> Result<i32> {
    let c = find(state, key)?;
    while !wait_stopped(state, &c, Duration::from_secs(3600)) {}
    Ok(reload(state, &c).and_then(|n| n.exit_code).unwrap_or(-1))
}

/// What `logs` prints.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    /// The last N lines only.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Nanoseconds since the epoch.
    pub since: Option<u128>,
}

fn print_entries(entries: &[LogEntry], opts: &LogsOptions) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for e in entries {
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if opts.timestamps {
            write!(w, "{} ", e.time)?;
        }
        w.write_all(e.log.as_bytes())?;
    }
    out.flush()?;
    err.flush()
}

/// `logs`: the container's json-file log, to stdout and stderr by stream.
pub fn logs(state: &Path, key: &str, opts: &LogsOptions) -> Result<()> {
    let c = find(state, key)?;
    let path = log_path(&c.dir(state), &c.id);
    if !path.exists() {
        if !c.lifecycle.detached {
            return Err(Error::usage(format!(
                "container {} was not run with -d, so stagebox kept no log: its output went to the terminal it ran on",
                c.name
            )));
        }
        return Ok(());
    }
    let (mut entries, mut offset) = read_from(&path, 0)?;
    if let Some(since) = opts.since {
        entries.retain(|e| time_nanos(&e.time).is_some_and(|t| t >= since));
    }
    if let Some(n) = opts.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    if print_entries(&entries, opts).is_err() || !opts.follow {
        return Ok(());
    }
    follow(state, &c, &path, &mut offset, opts);
    Ok(())
}

/// Prints what is appended from `offset` on until the container stops (read once more then).
fn follow(state: &Path, c: &Container, path: &Path, offset: &mut u64, opts: &LogsOptions) {
    loop {
        let running = reload(state, c).is_some_and(|n| n.is_running());
        if let Ok((entries, next)) = read_from(path, *offset) {
            *offset = next;
            if print_entries(&entries, opts).is_err() {
                return;
            }
        }
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `attach`: connects to the monitor's socket (see `detached`): the output from now on
/// (stdout to stdout, stderr to stderr; a pty's bytes as they come), and with `-i` or `-t`
/// this terminal's input to the workload. It ends when the container stops; Ctrl-C (or the
/// end of input with neither -i nor -t) ends `attach`, not the container. The terminal is
/// not put in raw mode: input goes line by line.
pub fn attach(state: &Path, key: &str) -> Result<()> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let c = find(state, key)?;
    if !c.is_running() {
        return Err(Error::usage(format!(
            "container {} is not running; `stagebox start -a {}` runs it again attached",
            c.name, c.name
        )));
    }
    if !c.lifecycle.detached {
        return Err(Error::usage(format!(
            "container {} was not run with -d; its output goes to the terminal it runs on",
            c.name
        )));
    }
    let path = crate::state::lifecycle::attach_socket_path(&c.dir(state));
    let mut conn = crate::kernel::unixsock::connect(&path).map_err(|e| {
        Error::io(
            format!("connect to {} (the container's monitor)", path.display()),
            e,
        )
    })?;
    if c.lifecycle.interactive || c.lifecycle.tty {
        // A closed stdin (no descriptor 0) just sends nothing.
        let stdin = std::io::stdin().as_fd().try_clone_to_owned();
        if let (Ok(mut to), Ok(stdin)) = (conn.try_clone(), stdin) {
            std::thread::spawn(move || {
                // read(2) as it comes, line by line from a terminal (no splice, no buffering).
                let mut from = std::fs::File::from(stdin);
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        }
    }
    if c.lifecycle.tty {
        let _ = std::io::copy(&mut conn, &mut std::io::stdout().lock());
        return Ok(());
    }
    let mut header = [0u8; 8];
    while conn.read_exact(&mut header).is_ok() {
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; len];
        if conn.read_exact(&mut data).is_err() {
            break;
        }
        let ok = if header[0] == 2 {
            let mut e = std::io::stderr().lock();
            e.write_all(&data).and_then(|_| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&data).and_then(|_| o.flush())
        };
        if ok.is_err() {
            break;
        }
    }
    Ok(())
}

/// `--tail N` or `all`.
pub fn parse_tail(s: &str) -> Result<Option<usize>> {
    if s == "all" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        Error::usage(format!(
            "--tail {s:?} is not a number of lines; give a number or all"
        ))
    })
}
