//! # paths (skeleton: its helper fills it in)

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};

pub struct Paths;

static INFO: StageInfo = StageInfo {
    id: StageId::Paths,
    summary: "mask /proc/kcore and friends, make /proc/sys and /sys/fs/cgroup read-only",
    shows: "mountinfo lines over the masked and read-only paths",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[(
        StageId::Mount,
        "without a mount namespace of its own the masks would cover the host's /proc",
    )],
};

impl Stage for Paths {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        ctx.note("skeleton: not done yet");
        Ok(())
    }
}
