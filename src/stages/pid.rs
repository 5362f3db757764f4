//! # pid: the workload becomes PID 1
//!
//! A PID namespace numbers processes afresh. The first process created in it is PID 1, its
//! init: when it exits, the kernel kills every other process in the namespace, and signals
//! from inside reach it only if it installed a handler for them.
//!
//! `unshare(CLONE_NEWPID)` is different from the other namespaces: it does not move the
//! caller (a process never changes its PID). It only sets the namespace its *future children*
//! are born in, which is why /proc/self/ns/pid_for_children changes while /proc/self/ns/pid
//! does not. So this stage asks the runtime to fork once more; the child is PID 1 in the new
//! namespace, and every later stage runs in it. The runtime, a child subreaper, adopts it
//! when the intermediate process exits, and waits for it as the workload.
//!
//! Seen from the host it is still an ordinary process with an ordinary PID; /proc/PID/status
//! lists both numbers on its NSpid line. Note that `ps` inside still reads /proc: until the
//! proc stage mounts a procfs for the new namespace, it lists the host's processes.
//!
//! Why here in the order: after uts and ipc (the forked child inherits them), and before the
//! mount namespace, so that the proc stage can mount a procfs belonging to this namespace.

use super::{ns_inode, ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::sched::CloneFlags;

pub struct Pid;

static INFO: StageInfo = StageInfo {
    id: StageId::Pid,
    summary: "new PID namespace, then fork: the workload is PID 1 and sees no host process",
    shows: "ns/pid_for_children, then ns/pid and the pid seen inside",
    default_on: true,
    lesson: "02-pid-namespace",
    requires: &[],
};

impl Stage for Pid {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let own = if ctx.verify {
            Some(ns_inode("pid")?)
        } else {
            None
        };
        ctx.sys
            .unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| StageError::sys("unshare(CLONE_NEWPID)", e))?;
        if let Some(own) = own {
            // Until the first process is born in the new namespace the link has nothing to
            // point at, and readlink fails with ENOENT: that, too, shows the change.
            match std::fs::read_link("/proc/self/ns/pid_for_children") {
                Ok(children) if children.to_string_lossy() == own => {
                    return Err(StageError::no_effect(format!(
                        "/proc/self/ns/pid_for_children is still {own}"
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => ctx.note(
                    "pid_for_children has no target yet: the new namespace holds no process until the fork",
                ),
                Err(e) => {
                    return Err(StageError::msg(format!(
                        "cannot read /proc/self/ns/pid_for_children: {e}"
                    )))
                }
            }
        }
        ctx.fork_requested = true;
        Ok(())
    }
}

/// Called in the forked child: it must be PID 1 of the new namespace.
pub fn verify_pid1() -> Result<(), StageError> {
    let me = nix::unistd::getpid().as_raw();
    if me != 1 {
        return Err(StageError::no_effect(format!(
            "the forked child is pid {me} in its namespace, not 1"
        )));
    }
    Ok(())
}
