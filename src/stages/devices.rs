//! # devices (skeleton: its helper fills it in)

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};

pub struct Devices;

static INFO: StageInfo = StageInfo {
    id: StageId::Devices,
    summary: "only the default device nodes may be opened (cgroup v1 devices, v2 BPF program)",
    shows: "devices.list (v1) or the BPF program attached (v2)",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[(
        StageId::Cgroup,
        "the device rules live in the container's cgroup",
    )],
};

impl Stage for Devices {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        ctx.note("skeleton: not done yet");
        Ok(())
    }
}
