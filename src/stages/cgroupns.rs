//! # cgroupns: the container's cgroup becomes its "/"
//!
//! /proc/PID/cgroup names the cgroup a process is in, as a path from the root of each
//! hierarchy: `0::/stagebox/3f2a...` on v2, `4:memory:/stagebox/3f2a...` per v1 hierarchy.
//! That path tells the container where it sits on the host. `unshare(CLONE_NEWCGROUP)` makes
//! a cgroup namespace whose root is the cgroup the process is in *at that moment* (in every
//! hierarchy): from then on the process and its children see that cgroup as `/`, in
//! /proc/self/cgroup and in a cgroupfs mounted inside. It is a view only, like a chroot for
//! cgroup paths: no limit changes, and the process cannot climb above its root.
//!
//! Why here in the order: after the cgroup stage, because the namespace root is fixed at
//! unshare time; a process that joined its cgroup afterwards would see `/..` paths. After
//! pid and net like the other namespaces, and before mount, so that a cgroupfs mounted later
//! in the container's mount namespace is rooted at the container's cgroup.
//!
//! Joining instead: `setns(2)` with `/proc/PID/ns/cgroup` of another process enters its
//! cgroup namespace, whose root stays where that process unshared it (an OCI config's
//! `linux.namespaces[i].path`). The stage reads back that /proc/self/ns/cgroup has that
//! file's inode; /proc/self/cgroup then shows paths relative to that root.
//!
//! Without the cgroup stage it still works and /proc/self/cgroup still shows `/`, but that
//! `/` is then the runtime's own cgroup, shared with whatever else runs there on the host.

use super::{setns_checked, unshare_checked, ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::sched::CloneFlags;

pub struct Cgroupns;

static INFO: StageInfo = StageInfo {
    id: StageId::Cgroupns,
    summary: "new cgroup namespace: the container's cgroup is \"/\" in /proc/self/cgroup",
    shows: "ns/cgroup inode, /proc/self/cgroup paths become /",
    default_on: true,
    lesson: "07-cgroups",
    requires: &[],
};

fn own_cgroup_lines() -> Result<Vec<(String, String)>, StageError> {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|t| crate::cgroup::proc_cgroup_lines(&t))
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/cgroup: {e}")))
}

/// A /proc/PID/cgroup line without its hierarchy number: `memory:/x`, or `0::/x` for v2.
fn line((ctls, path): &(String, String)) -> String {
    if ctls.is_empty() {
        format!("0::{path}")
    } else {
        format!("{ctls}:{path}")
    }
}

impl Stage for Cgroupns {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        if let Some(path) = ctx.spec.join_path(StageId::Cgroupns) {
            let path = path.to_path_buf();
            let ino = setns_checked(ctx, &path, CloneFlags::CLONE_NEWCGROUP, "cgroup", "join")?;
            let seen: Vec<String> = own_cgroup_lines()?.iter().map(line).collect();
            ctx.note(format!(
                "joined the cgroup namespace cgroup:[{ino}] of {}: /proc/self/cgroup inside: {}",
                path.display(),
                seen.join(", ")
            ));
            return Ok(());
        }
        let before = if ctx.verify {
            own_cgroup_lines()?
        } else {
            Vec::new()
        };
        unshare_checked(ctx, CloneFlags::CLONE_NEWCGROUP, "cgroup")?;
        if !ctx.verify {
            return Ok(());
        }
        // Every hierarchy's path is now "/": the namespace is rooted where the process is.
        let after = own_cgroup_lines()?;
        if let Some(l) = after.iter().find(|(_, p)| p != "/") {
            return Err(StageError::no_effect(format!(
                "/proc/self/cgroup still shows {} after unshare(CLONE_NEWCGROUP)",
                line(l)
            )));
        }
        let changed: Vec<String> = before
            .iter()
            .filter(|(_, p)| p != "/")
            .map(|b| format!("{} -> {}", line(b), line(&(b.0.clone(), "/".to_string()))))
            .collect();
        if changed.is_empty() {
            ctx.note("/proc/self/cgroup showed / already (the process is in the root cgroup of every hierarchy)");
        } else {
            ctx.note(format!("/proc/self/cgroup inside: {}", changed.join(", ")));
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
    fn unshares_the_cgroup_namespace() {
        let spec = ChildSpec::for_tests("box");
        let mut rec = Recorder::new();
        let mut ctx = ChildCtx::new(&mut rec, &spec);
        ctx.verify = false;
        Cgroupns.apply(&mut ctx).unwrap();
        assert_eq!(rec.calls, vec!["unshare(CLONE_NEWCGROUP)"]);
    }
}
