//! # seccomp (skeleton: its helper fills it in)

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};

pub struct Seccomp;

static INFO: StageInfo = StageInfo {
    id: StageId::Seccomp,
    summary: "Docker's default seccomp profile, compiled to BPF, loaded right before execve",
    shows: "Seccomp 0 -> 2 in /proc/PID/status, the number of rules",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[],
};

impl Stage for Seccomp {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        ctx.note("skeleton: not done yet");
        Ok(())
    }
}
