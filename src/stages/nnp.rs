//! # nnp: no_new_privs, so that execve can never raise privileges again
//!
//! A setuid-root file (`passwd`, `su`, `mount`) makes the kernel give its caller euid 0 and
//! full capabilities at execve, and a file with capabilities in its `security.capability`
//! attribute adds those. Inside a container whose root was cut down by the caps stage, such
//! a file is a way back up: a non-root workload runs it and becomes root with every
//! capability the bounding set still allows.
//!
//! `prctl(PR_SET_NO_NEW_PRIVS, 1)` closes that door for good: from then on execve ignores
//! setuid and setgid bits and file capabilities, for this process and every child. It
//! cannot be unset. The kernel shows it as `NoNewPrivs: 1` in /proc/PID/status.
//!
//! Docker leaves it off by default (`--security-opt no-new-privileges` turns it on), and so
//! does stagebox: the stage is off unless that flag, or `--only nnp`, asks for it.
//!
//! Why here in the order: runc sets it after the mounts and masked paths and before the
//! capabilities are cut (`standard_init_linux.go`). It must come before seccomp: with it set,
//! loading a seccomp filter needs no capability at all, so the caps stage may then drop
//! CAP_SYS_ADMIN at once.

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};

pub struct Nnp;

static INFO: StageInfo = StageInfo {
    id: StageId::Nnp,
    summary: "no_new_privs: setuid files and file capabilities no longer raise privileges",
    shows: "NoNewPrivs 0 -> 1 in /proc/PID/status",
    default_on: false,
    lesson: "11-root-but-powerless",
    requires: &[],
};

impl Stage for Nnp {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        ctx.sys
            .raw("prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)".into(), &mut || {
                // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes plain integers, no memory.
                let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                nix::errno::Errno::result(r).map(i64::from)
            })
            .map_err(|e| StageError::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
        if ctx.verify {
            let p = crate::kernel::status::Privileges::read(None)
                .map_err(|e| StageError::msg(format!("cannot read /proc/self/status: {e}")))?;
            if p.no_new_privs != 1 {
                return Err(StageError::no_effect(format!(
                    "NoNewPrivs is {} after prctl(PR_SET_NO_NEW_PRIVS)",
                    p.no_new_privs
                )));
            }
        }
        ctx.note("execve will ignore setuid bits and file capabilities from now on");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::{ChildSpec, RootSwitch};

    #[test]
    fn sets_no_new_privs_with_one_prctl() {
        let spec = ChildSpec::for_test(RootSwitch::Pivot);
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        ctx.verify = false;
        Nnp.apply(&mut ctx).unwrap();
        assert_eq!(sys.calls, vec!["prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)"]);
    }
}
