//! The monitor of a detached container (`run -d`, `start`): the role conmon or
//! containerd-shim plays for Docker and Podman.
//!
//! `stagebox run -d` checks its flags, then forks once, while it is still single-threaded
//! and before anything on the host has changed. The child calls setsid(2) (no controlling
//! terminal: closing the caller's terminal does not reach it) and becomes the **monitor**:
//! it runs the ordinary `runtime::run`, so it makes the container, is its subreaper, holds
//! its stdio and collects its exit status into the record. The parent (the foreground
//! `stagebox run -d`) waits on a pipe for one line:
//!
//! - `ok ID`, sent once the workload has been exec'd (`detached::started`): it prints the
//!   full id on stdout and exits 0, as `docker run -d` does;
//! - `err SENTENCE`, when the run failed before that: it prints the sentence, exit 125;
//! - end-of-file without a line (the monitor died): a sentence saying so, exit 125.
//!
//! While the stages build, the monitor's trace goes to the caller's stderr (they share it).
//! Once the workload runs, the monitor's own 0/1/2 point at STATE/containers/ID/monitor.log
//! (the trace's last lines, the exit line among them, are kept there) and the caller's
//! terminal is free. The workload never sees either: its 0/1/2 are pipes or a pty
//! (`detached::WorkloadIo`), logged to STATE/containers/ID/ID-json.log in Docker's
//! json-file format, which outlives the monitor until `rm`.
//!
//! `--restart`: when the workload exits, `runtime::run` (which knows the policy and the
//! count) leaves the record "running" if it will restart; the monitor waits a fixed
//! `RESTART_DELAY` (Docker's doubling back-off from 100 ms is simplified to one second),
//! checks that `stop` did not mark the container `stopping` meanwhile, counts the restart in
//! the record and runs the same container again on its own writable layer (`reuse`).
//!
//! The monitor's cwd stays the caller's (relative paths were resolved before the fork).

use super::config::RunConfig;
use super::detached;
use crate::error::{Error, Result};
use crate::state::container::{containers_dir, update, Container};
use crate::state::lifecycle::{clear_stopping, is_stopping};
use std::io::Read;
use std::time::Duration;

/// The pause before a restart.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// In the foreground: forks the monitor and waits until the workload runs. Returns the
/// container's full id.
pub fn detach(cfg: &RunConfig) -> Result<String> {
    let mut cfg = cfg.clone();
    let id = cfg
        .lifecycle
        .id
        .clone()
        .unwrap_or_else(crate::state::ids::new_id);
    cfg.lifecycle.id = Some(id.clone());
    cfg.lifecycle.detach = true;
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    // SAFETY: stagebox is single-threaded here (nothing has started a thread before a run).
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::sys("fork", e)),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            let _ = nix::unistd::setsid();
            detached::set_notify(w);
            let code = monitor(&cfg);
            // SAFETY: _exit(2) without the parent's atexit handlers or stdio buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(w);
            let mut f = std::fs::File::from(r);
            let mut text = Vec::new();
            let mut b = [0u8; 512];
            while !text.contains(&b'\n') {
                match f.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => text.extend_from_slice(&b[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let line = String::from_utf8_lossy(&text);
            let line = line.lines().next().unwrap_or("");
            if let Some(got) = line.strip_prefix("ok ") {
                return Ok(got.to_string());
            }
            // The monitor is ending: collect it so it is not left a zombie.
            let _ = nix::sys::wait::waitpid(child, None);
            match line.strip_prefix("err ") {
                Some(sentence) => Err(Error::Usage(sentence.to_string())),
                None => Err(Error::usage(format!(
                    "the monitor of container {id} ended before the workload started"
                ))),
            }
        }
    }
}

/// The monitor's life: the run, and the restarts its policy asks for. Returns the exit
/// status of the last run.
fn monitor(cfg: &RunConfig) -> i32 {
    let mut cfg = cfg.clone();
    let id = cfg.lifecycle.id.clone().unwrap_or_default();
    let dir = containers_dir(&cfg.state_dir).join(&id);
    loop {
        clear_stopping(&dir);
        let code = match super::run(&cfg) {
            Ok(code) => code,
            Err(e) => {
                if detached::waiting() {
                    detached::notify(&format!("err {e}"));
                } else {
                    eprintln!("stagebox: {e}");
                }
                if dir.exists() {
                    let _ = update(&cfg.state_dir, &id, |rec| {
                        rec.status = "exited".into();
                        rec.exit_code = Some(e.exit_code());
                        rec.set_workload(None);
                    });
                }
                return e.exit_code();
            }
        };
        // The run left the record "running" only if it is to restart.
        match Container::load(&dir) {
            Ok(rec) if rec.status == "running" => {}
            _ => return code,
        }
        std::thread::sleep(RESTART_DELAY);
        if is_stopping(&dir) {
            let _ = update(&cfg.state_dir, &id, |rec| rec.status = "exited".into());
            return code;
        }
        let Ok(rec) = update(&cfg.state_dir, &id, |rec| rec.lifecycle.restart_count += 1) else {
            return code;
        };
        eprintln!(
            "stagebox: restarting container {id} (restart {}, it exited {code})",
            rec.lifecycle.restart_count
        );
        cfg.lifecycle.reuse = true;
    }
}
