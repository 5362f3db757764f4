//! The part of one run that differs when it is detached (`run -d`, `start`, a restart), as
//! seen from inside `runtime::run`; `monitor` is the process around it.
//!
//! - `WorkloadIo`: the workload's stdio. Without `-t`: two pipes (stdout, stderr) and
//!   stdin from /dev/null, or from a pipe the monitor keeps open with `-i`. With `-t`: a
//!   pseudo-terminal (openpty(3)); its slave is the workload's 0, 1 and 2 and the log
//!   stream is "stdout" only. The container process dup2()s these onto 0/1/2 as its first
//!   step (`child.rs`), so neither the caller's terminal nor the monitor's trace reaches the
//!   workload. After the workload starts, one thread per stream reads its pipe (or the pty
//!   master) and appends Docker json-file lines (`state::logs`) to STATE/containers/ID/ID-json.log.
//! - attach: the monitor listens on STATE/containers/ID/attach.sock while the workload
//!   runs. Each client gets the output from then on: with `-t` the pty's bytes as they are,
//!   without it in Docker's stdcopy framing (8-byte header: stream 1 or 2, three zero
//!   bytes, the length as a big-endian u32; then the bytes). With `-i` (or `-t`) what a
//!   client sends goes to the workload's stdin (the pipe's write end, or the pty master).
//! - `started`: once the workload runs, the monitor points its own 0/1/2 at
//!   STATE/containers/ID/monitor.log (so the caller's terminal is free and the trace's last
//!   lines are kept) and tells the waiting `stagebox run -d` the container's id.

use super::config::RunConfig;
use crate::error::{Error, Result};
use crate::state::container::Container;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The pipe to the waiting `stagebox run -d` (-1: none, or told already).
static NOTIFY: AtomicI32 = AtomicI32::new(-1);

/// The monitor hands over its end of the pipe to the foreground process.
pub fn set_notify(fd: OwnedFd) {
    use std::os::fd::IntoRawFd;
    let old = NOTIFY.swap(fd.into_raw_fd(), Ordering::SeqCst);
    close_raw(old);
}

fn close_raw(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: the fd was owned by NOTIFY and is closed exactly once (swapped out first).
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// Tells the waiting foreground process one line ("ok ID" or "err SENTENCE"), once.
pub fn notify(line: &str) {
    let fd = NOTIFY.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    // SAFETY: as in close_raw: the descriptor is ours alone now.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = f.write_all(format!("{}\n", line.replace('\n', " ")).as_bytes());
}

/// Is a foreground process still waiting for word?
pub fn waiting() -> bool {
    NOTIFY.load(Ordering::SeqCst) >= 0
}

/// The workload runs: free the caller's terminal (the monitor's 0/1/2 go to monitor.log,
/// stdin to /dev/null) and tell the foreground process the id.
pub fn started(cfg: &RunConfig, container: &Container) {
    if !cfg.lifecycle.detach {
        return;
    }
    let dir = container.dir(&cfg.state_dir);
    let _ = redirect_own_stdio(&crate::state::lifecycle::monitor_log_path(&dir));
    notify(&format!("ok {}", container.id));
}

fn redirect_own_stdio(log: &Path) -> std::io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let _ = nix::unistd::dup2_stdin(&null);
    let _ = nix::unistd::dup2_stdout(&out);
    let _ = nix::unistd::dup2_stderr(&out);
    Ok(())
}

/// The workload's stdio of a detached run, and the threads that log it.
pub struct WorkloadIo {
    /// What the container process puts on 0, 1 and 2 (closed here after the fork).
    child_ends: Vec<OwnedFd>,
    stdio: [RawFd; 3],
    /// (the monitor's read end, its stream name).
    readers: Vec<(OwnedFd, &'static str)>,
    /// Where attached clients' input goes: with `-i` the write end of stdin's pipe (kept
    /// open, so the workload's stdin does not end), with `-t` a copy of the pty master.
    stdin: Option<OwnedFd>,
    tty: bool,
    threads: Vec<JoinHandle<()>>,
    clients: Clients,
    stop: Arc<std::sync::atomic::AtomicBool>,
    socket: Option<PathBuf>,
}

type Clients = Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>;

fn io_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Stage {
        stage: "run".into(),
        message: format!("{what}: {e}"),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))
}

impl WorkloadIo {
    /// None unless the run is detached.
    pub fn new(cfg: &RunConfig) -> Result<Option<WorkloadIo>> {
        let lc = &cfg.lifecycle;
        if !lc.detach {
            return Ok(None);
        }
        if lc.tty {
            let pty = nix::pty::openpty(None, None).map_err(|e| Error::sys("openpty", e))?;
            for fd in [&pty.master, &pty.slave] {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
            let s = pty.slave.as_raw_fd();
            let input = pty
                .master
                .try_clone()
                .map_err(|e| io_err("dup(pty master)", e))?;
            return Ok(Some(WorkloadIo {
                child_ends: vec![pty.slave],
                stdio: [s, s, s],
                readers: vec![(pty.master, "stdout")],
                stdin: Some(input),
                tty: true,
                threads: Vec::new(),
                clients: Clients::default(),
                stop: Default::default(),
                socket: None,
            }));
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin, keep) = if lc.interactive {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            let null = std::fs::File::open("/dev/null").map_err(|e| io_err("open /dev/null", e))?;
            (OwnedFd::from(null), None)
        };
        let stdio = [stdin.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        Ok(Some(WorkloadIo {
            child_ends: vec![stdin, out_w, err_w],
            stdio,
            readers: vec![(out_r, "stdout"), (err_r, "stderr")],
            stdin: keep,
            tty: false,
            threads: Vec::new(),
            clients: Clients::default(),
            stop: Default::default(),
            socket: None,
        }))
    }

    /// What the container process dup2()s onto 0, 1 and 2.
    pub fn child_stdio(&self) -> [RawFd; 3] {
        self.stdio
    }

    /// In the monitor after the fork: only the container process holds the workload's ends,
    /// so the readers see end-of-file when it (and whatever it left) is gone.
    pub fn after_fork(&mut self) {
        self.child_ends.clear();
    }

    /// The workload runs: a thread per stream appends its lines to the json-file log.
    pub fn start_logging(&mut self, log: &Path) -> Result<()> {
        if let Some(dir) = log.parent() {
            self.listen(&crate::state::lifecycle::attach_socket_path(dir));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| io_err(&format!("open {}", log.display()), e))?;
        let file = Arc::new(Mutex::new(file));
        for (fd, stream) in self.readers.drain(..) {
            let file = file.clone();
            let clients = self.clients.clone();
            let tty = self.tty;
            self.threads.push(std::thread::spawn(move || {
                pump(fd, stream, &file, &clients, tty)
            }));
        }
        Ok(())
    }

    /// The attach socket: a thread accepts clients until the workload is gone.
    fn listen(&mut self, path: &Path) {
        let _ = std::fs::remove_file(path);
        let listener = match crate::kernel::unixsock::bind(path) {
            Ok(listener) => listener,
            Err(e) => {
                // The monitor's stderr is monitor.log: `attach` then says it cannot connect.
                eprintln!("stagebox: attach socket {}: {e}", path.display());
                return;
            }
        };
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        self.socket = Some(path.to_path_buf());
        let clients = self.clients.clone();
        let stop = self.stop.clone();
        let input = self.stdin.as_ref().and_then(|f| f.try_clone().ok());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(1)));
                        // A client gets the output first: the reply to its first input
                        // line must not come before it is on the list.
                        let reader = conn.try_clone();
                        if let Ok(mut c) = clients.lock() {
                            c.push(conn);
                        }
                        if let (Some(input), Ok(reader)) = (&input, reader) {
                            if let Ok(input) = input.try_clone() {
                                std::thread::spawn(move || relay_input(reader, input));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        });
    }

    /// After the workload and its leftovers are gone: the readers reach end-of-file; wait
    /// for them (at most two seconds: a writer that escaped must not hold the monitor).
    pub fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = &self.socket {
            let _ = std::fs::remove_file(s);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        for t in self.threads {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        // Attached clients see end-of-file: the container has stopped.
        if let Ok(mut c) = self.clients.lock() {
            for s in c.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Reads one stream until its end and appends each line as a json-file entry.
/// What an attached client typed, to the workload's stdin, until the client goes.
fn relay_input(mut from: std::os::unix::net::UnixStream, to: OwnedFd) {
    let mut to = std::fs::File::from(to);
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Docker's stdcopy frame header: the stream (1 stdout, 2 stderr), three zeros, the length.
pub fn frame_header(stream: &str, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    let s = if stream == "stderr" { 2 } else { 1 };
    [s, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// Sends the bytes to every attached client; those that fail are dropped.
fn to_clients(clients: &Clients, stream: &str, data: &[u8], tty: bool) {
    let Ok(mut c) = clients.lock() else {
        return;
    };
    c.retain_mut(|s| {
        let framed = if tty {
            s.write_all(data)
        } else {
            s.write_all(&frame_header(stream, data.len()))
                .and_then(|_| s.write_all(data))
        };
        framed.is_ok()
    });
}

fn pump(
    fd: OwnedFd,
    stream: &'static str,
    file: &Mutex<std::fs::File>,
    clients: &Clients,
    tty: bool,
) {
    let mut src = std::fs::File::from(fd);
    let mut split = crate::state::logs::LineSplitter::default();
    let mut buf = [0u8; 8192];
    let write = |lines: Vec<Vec<u8>>| {
        if lines.is_empty() {
            return;
        }
        let now = std::time::SystemTime::now();
        let text: String = lines
            .iter()
            .map(|l| crate::state::logs::entry_line(stream, l, now))
            .collect();
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    };
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                to_clients(clients, stream, &buf[..n], tty);
                write(split.push(&buf[..n]))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A pty master reads EIO once no slave is open: the end.
            Err(_) => break,
        }
    }
    write(split.finish().into_iter().collect());
}

/// Where the json-file log of this container is.
pub fn log_file(cfg: &RunConfig, container: &Container) -> PathBuf {
    crate::state::lifecycle::log_path(&container.dir(&cfg.state_dir), &container.id)
}
