//! # ipc: System V IPC objects of its own
//!
//! System V shared memory segments, semaphore sets and message queues (and POSIX message
//! queues) live in an IPC namespace. Two processes can share a segment only if they are in the
//! same one. `unshare(CLONE_NEWIPC)` gives the container an empty set: a segment the host
//! made with `shmget(2)` is no longer listed in /proc/sysvipc/shm inside, and `ipcs` shows
//! nothing. Without this stage a container could attach to a database's shared memory.
//!
//! Joining instead: `setns(2)` with a file of another process's namespace
//! (`/proc/PID/ns/ipc`) enters that namespace rather than making one, so that the containers
//! of a pod (or `docker run --ipc container:x`) attach the same shared memory segments. An
//! OCI config asks for it with `linux.namespaces[i].path`; the stage reads back that
//! /proc/self/ns/ipc has that file's inode.
//!
//! Why here in the order: like uts it needs nothing but the user namespace and the cgroup
//! before it, and nothing after it depends on it.

use super::{setns_checked, unshare_checked, ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::sched::CloneFlags;

pub struct Ipc;

static INFO: StageInfo = StageInfo {
    id: StageId::Ipc,
    summary: "new IPC namespace: no System V shared memory, semaphores or queues of the host",
    shows: "ns/ipc inode, visible SysV objects",
    default_on: true,
    lesson: "06-ipc-and-net",
    requires: &[],
};

impl Stage for Ipc {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        if let Some(path) = ctx.spec.join_path(StageId::Ipc) {
            let path = path.to_path_buf();
            let ino = setns_checked(ctx, &path, CloneFlags::CLONE_NEWIPC, "ipc", "join")?;
            let n = crate::kernel::sysv::visible_objects();
            ctx.note(format!(
                "joined the IPC namespace ipc:[{ino}] of {}: {n} System V objects shared with it",
                path.display()
            ));
            return Ok(());
        }
        unshare_checked(ctx, CloneFlags::CLONE_NEWIPC, "ipc")?;
        if ctx.verify {
            let n = crate::kernel::sysv::visible_objects();
            if n != 0 {
                return Err(StageError::no_effect(format!(
                    "{n} System V IPC objects are still visible in the new IPC namespace"
                )));
            }
        }
        Ok(())
    }
}
