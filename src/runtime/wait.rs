//! The runtime's side of the workload's life: it blocks the signals it forwards (so they
//! arrive on a signalfd instead of killing the runtime), becomes the subreaper of the
//! container's processes, waits for the workload, and reaps what the workload left behind.

use crate::error::{Error, Result};
use crate::stages;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals the runtime forwards to the workload (SIGCHLD is for its own wait loop).
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Kills and reaps whatever the runtime started, unless disarmed: the undo for every early
/// return.
pub struct Reaper {
    pub pids: Vec<Pid>,
}

impl Reaper {
    pub fn kill_all(&mut self) {
        for pid in self.pids.drain(..) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Orphans of the container (the intermediate process of the pid stage's fork, first of
/// all) are re-parented to the runtime, so that it can wait for the workload itself.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Blocks the forwarded signals and SIGCHLD; returns (the blocked set, the mask before),
/// the old mask for the container process to restore before execve.
pub fn block_signals() -> Result<(SigSet, SigSet)> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(|e| Error::sys("sigprocmask", e))?;
    Ok((mask, old_mask))
}

/// Processes of the container still alive after the workload exited: without a PID
/// namespace, its orphans were re-parented to the runtime (a subreaper). Kill and reap them,
/// as Docker does when a container's main process ends. Returns how many there were.
pub fn kill_stragglers() -> usize {
    let me = std::process::id();
    let mut count = 0;
    for _ in 0..100 {
        let children =
            std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        let pids: Vec<i32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        for p in &pids {
            if waitpid(Pid::from_raw(*p), None).is_ok() {
                count += 1;
            }
        }
    }
    count
}

/// Waits for the workload, forwarding the signals the runtime receives. Signals a terminal
/// sends to the whole foreground process group (Ctrl-C) already reached the workload, which
/// shares that group, so those are not sent twice.
pub fn wait_forwarding(workload: Pid, mask: &SigSet) -> Result<stages::ExitKind> {
    let sfd =
        SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::sys("signalfd", e))?;
    loop {
        // Reap everything that has exited (orphans of the container come to us too).
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == workload => {
                    return Ok(stages::ExitKind::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == workload => {
                    return Ok(stages::ExitKind::Signaled(sig))
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECHILD) => {
                    return Err(Error::Stage {
                        stage: "run".into(),
                        message: "the workload disappeared without an exit status".into(),
                    })
                }
                Err(e) => return Err(Error::sys("waitpid", e)),
            }
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("read(signalfd)", e)),
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig == Signal::SIGCHLD {
            continue;
        }
        let from_terminal = info.ssi_code == libc::SI_KERNEL;
        if !from_terminal {
            let _ = nix::sys::signal::kill(workload, sig);
        }
    }
}
