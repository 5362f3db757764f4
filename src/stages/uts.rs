//! # uts: a hostname of its own
//!
//! The UTS namespace ("UNIX Time-sharing System", after the `struct utsname` that uname(2)
//! fills) holds two strings: the hostname and the NIS domain name. `unshare(CLONE_NEWUTS)`
//! gives the process a private copy of them; `sethostname(2)` then changes only that copy.
//! From the outside, `readlink /proc/PID/ns/uts` shows a new inode number, and `hostname`
//! on the host still prints the host's name.
//!
//! Joining instead: `setns(2)` with a file of another process's namespace
//! (`/proc/PID/ns/uts`) puts the process into that namespace rather than a new one. That is
//! how the containers of a pod share one hostname, and how `exec` enters a container. An OCI
//! config asks for it with `linux.namespaces[i].path`; the stage then reads back that
//! /proc/self/ns/uts has the inode of that file, and sets no hostname: the joined namespace's
//! name is shared with everyone in it (renaming it would rename them all, or the host).
//!
//! Why here in the order: it is the simplest namespace and needs nothing before it except the
//! user namespace (the privilege context) and the cgroup (so that no process of the container
//! runs outside its limits). The hostname must be set after the unshare, or it would change
//! the host's.

use super::{setns_checked, unshare_checked, ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::sched::CloneFlags;

pub struct Uts;

static INFO: StageInfo = StageInfo {
    id: StageId::Uts,
    summary: "new UTS namespace, then sethostname: the container's own hostname",
    shows: "ns/uts inode, hostname",
    default_on: true,
    lesson: "01-uts-hostname",
    requires: &[],
};

impl Stage for Uts {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let name = ctx.spec.hostname.clone();
        if let Some(path) = ctx.spec.join_path(StageId::Uts) {
            let path = path.to_path_buf();
            let ino = setns_checked(ctx, &path, CloneFlags::CLONE_NEWUTS, "uts", "join")?;
            let seen = nix::sys::utsname::uname()
                .map_err(|e| StageError::sys("uname()", e))?
                .nodename()
                .to_string_lossy()
                .into_owned();
            ctx.note(format!(
                "joined the UTS namespace uts:[{ino}] of {}: its hostname {seen:?} is shared, not set",
                path.display()
            ));
            return Ok(());
        }
        unshare_checked(ctx, CloneFlags::CLONE_NEWUTS, "uts")?;
        ctx.sys
            .sethostname(&name)
            .map_err(|e| StageError::sys(&format!("sethostname({name:?})"), e))?;
        if ctx.verify {
            let seen = nix::sys::utsname::uname()
                .map_err(|e| StageError::sys("uname()", e))?
                .nodename()
                .to_string_lossy()
                .into_owned();
            if seen != name {
                return Err(StageError::no_effect(format!(
                    "uname() says the hostname is {seen:?}, not {name:?}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::ChildSpec;

    #[test]
    fn unshares_before_setting_the_hostname() {
        let spec = ChildSpec::for_tests("box");
        let mut rec = Recorder::new();
        let mut ctx = ChildCtx::new(&mut rec, &spec);
        ctx.verify = false;
        Uts.apply(&mut ctx).unwrap();
        assert_eq!(
            rec.calls,
            vec!["unshare(CLONE_NEWUTS)", "sethostname(\"box\")"]
        );
    }
}
