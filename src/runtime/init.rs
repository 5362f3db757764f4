//! `stagebox init`: a tiny init for `run --init`, in the role of tini and docker-init.
//!
//! Why PID 1 is special. The first process of a PID namespace is its init, and the kernel
//! treats it differently from every other process in two ways:
//!
//! - **Signals.** A signal sent to PID 1 from inside its namespace is dropped when PID 1 has
//!   no handler for it: the kernel does not apply the default action (terminate) to a
//!   namespace's init, so that nothing inside can kill it by accident. A shell that is PID 1
//!   (`CMD sh -c '...'`) installs no SIGTERM handler, so `docker stop`'s SIGTERM does
//!   nothing, and the container dies only by SIGKILL after the timeout. (From the parent
//!   namespace SIGKILL and SIGSTOP still work; other signals sent from there are dropped too
//!   while PID 1 leaves them at their default action.)
//! - **Orphans.** A process whose parent exits is reparented to the init of its namespace,
//!   which must wait(2) for it, or it stays a zombie (a pid and a process-table entry) for
//!   the container's life. A program that was never meant to be an init does not do that.
//!
//! So `--init` puts this small program at PID 1: stagebox's own static binary, exec'd from
//! the runtime's descriptor on its own file (as `--probe` is: nothing copied into the
//! rootfs), as `stagebox init -- CMD ARGS...`. It blocks the signals it forwards, forks the
//! command (which gets the signal mask back, so it sees signals normally), then loops in
//! sigwait(2): SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are sent on
//! to the command; SIGCHLD means reap, with waitpid(-1, WNOHANG) in a loop, every child that
//! has ended, orphans included. When the command itself ends, init exits with its status
//! (128+N if signal N killed it), and the kernel kills what is left in the namespace.
//! Without a PID namespace of its own (`--pid host`) it is not PID 1, so it makes itself a
//! child subreaper (PR_SET_CHILD_SUBREAPER) to still receive its orphans.

use crate::error::{Error, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;

/// The signals init passes on to the command, as tini does.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs `argv` as init's only direct child; returns its exit status.
pub fn run(argv: &[String]) -> Result<i32> {
    let Some(cmd) = argv.first() else {
        return Err(Error::usage(
            "init needs a command: stagebox init -- CMD [ARGS...]",
        ));
    };
    let args = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::usage("an argument holds a NUL byte"))?;
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
        .map_err(|e| Error::sys("sigprocmask", e))?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    // SAFETY: init is single-threaded; the child only restores its mask and execs.
    let child = match unsafe { fork() } {
        Err(e) => return Err(Error::sys("fork", e)),
        Ok(ForkResult::Child) => {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            let e = match nix::unistd::execvp(&args[0], &args) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            let nr = crate::rootfs::NotRunnable::from_errno(cmd, e);
            eprintln!("stagebox init: {nr}");
            // SAFETY: ends the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(nr.code) }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    loop {
        let sig = mask.wait().map_err(|e| Error::sys("sigwait", e))?;
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        if let Some(code) = reap(child) {
            return Ok(code);
        }
    }
}

/// Reaps every child that has ended (orphans included); the command's exit status once it
/// is among them.
fn reap(child: Pid) -> Option<i32> {
    let mut status = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => status = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                status = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return status,
            Ok(_) => {}
        }
    }
}
