//! # user: root inside is nobody outside
//!
//! A user namespace is a privilege context. `unshare(CLONE_NEWUSER)` gives the process a new
//! one in which it holds *every* capability, but only over objects this namespace owns: the
//! namespaces it creates next (uts, pid, net, mount ...), the mounts in its own mount
//! namespace, and files whose owners it maps. Over the host's files and devices it has
//! nothing more than the host user it really is.
//!
//! Who is who is written in two files, once, from outside (by a process in the parent
//! namespace): `/proc/PID/uid_map` and `/proc/PID/gid_map`. Each line is
//!
//! ```text
//! 0 100000 65536     # ids 0..65535 here are host ids 100000..165535
//! ```
//!
//! so uid 0 inside, "root", is host uid 100000, which owns nothing on the host. An id with no
//! line is unmapped and shows as 65534 (nobody). Only root (CAP_SETUID in the parent
//! namespace) may map other ids than its own; an ordinary user may map just their own uid,
//! and only after writing `deny` to `/proc/PID/setgroups` (else dropping a group with
//! setgroups(2) could grant access a "deny" ACL entry withheld). The setuid helpers
//! `newuidmap`/`newgidmap` write wider maps for a user from the ranges /etc/subuid and
//! /etc/subgid give them.
//!
//! The stage runs in three steps:
//! 1. in the container process: `unshare(CLONE_NEWUSER)`, checked by the new `ns/user` inode;
//! 2. in the runtime, while the container process waits: write the maps, read them back;
//! 3. in the container process again: `setresgid(0,0,0)`, `setgroups([])`, `setresuid(0,0,0)`,
//!    so the process is uid 0 inside, then check `getuid()`.
//!
//! Why first in the order: every namespace belongs to the user namespace that was current
//! when it was made, and only that namespace's root may manage it. Made first, the user
//! namespace owns all the others, so the container's root can mount in its own mount
//! namespace or set its own hostname, and nothing else. Made last, the other namespaces would
//! belong to the host's root.
//!
//! Inside a user namespace other stages change meaning: the kernel refuses mknod (device
//! nodes are bind-mounted instead), cgroup v1 cannot be mounted, `/sys` can only be mounted
//! with a network namespace of the container's own, and overlayfs needs Linux 5.11 and
//! keeps its xattrs in `user.overlay.*`. Their traces say so.

use super::{
    unshare_checked, ChildCtx, HostCtx, MapWriter, Stage, StageError, StageId, StageInfo, UserNs,
};
use crate::kernel::idmap::{self, IdMap};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::path::PathBuf;

pub struct User;

static INFO: StageInfo = StageInfo {
    id: StageId::User,
    summary: "new user namespace, then uid_map/gid_map from outside: root inside is an unprivileged uid outside",
    shows: "ns/user inode, uid_map, the container root's uid on the host",
    default_on: false,
    lesson: "12-user-namespaces",
    requires: &[],
};

/// The maps as the runtime decided them (in `prepare` for `--userns=auto`).
struct Maps {
    uid: Vec<IdMap>,
    gid: Vec<IdMap>,
}

fn maps_of<'a>(ctx: &'a HostCtx<'_>) -> Option<(&'a UserNs, Vec<IdMap>, Vec<IdMap>)> {
    let u = ctx.userns?;
    match ctx
        .data
        .get(&StageId::User)
        .and_then(|d| d.downcast_ref::<Maps>())
    {
        Some(m) => Some((u, m.uid.clone(), m.gid.clone())),
        None => Some((u, u.uid_map.clone(), u.gid_map.clone())),
    }
}

fn stage_err(message: String) -> crate::Error {
    crate::Error::Stage {
        stage: "user".into(),
        message,
    }
}

/// Writes one map file from outside and records the write for the trace.
fn write_proc(ctx: &mut HostCtx<'_>, pid: Pid, file: &str, text: &str) -> crate::Result<()> {
    let path = format!("/proc/{pid}/{file}");
    let r = std::fs::write(&path, text);
    ctx.record(
        format!("write({path:?}, {:?})", text.trim_end()),
        match &r {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        },
    );
    r.map_err(|e| stage_err(format!("writing {path} failed: {e}")))
}

/// Runs newuidmap/newgidmap: `HELPER PID inside outside count ...`.
fn run_helper(
    ctx: &mut HostCtx<'_>,
    helper: &PathBuf,
    pid: Pid,
    map: &[IdMap],
) -> crate::Result<()> {
    let mut args = vec![pid.to_string()];
    for m in map {
        args.extend([
            m.inside.to_string(),
            m.outside.to_string(),
            m.count.to_string(),
        ]);
    }
    let out = std::process::Command::new(helper).args(&args).output();
    let shown = format!("{} {}", helper.display(), args.join(" "));
    match out {
        Ok(o) if o.status.success() => {
            ctx.record(format!("exec({shown:?})"), "exit 0");
            Ok(())
        }
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).trim().to_string();
            ctx.record(format!("exec({shown:?})"), format!("{}: {why}", o.status));
            Err(stage_err(format!("{shown} failed: {why}")))
        }
        Err(e) => Err(stage_err(format!("cannot run {}: {e}", helper.display()))),
    }
}

impl Stage for User {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    /// `--userns=auto`: take a free slice of the `stagebox` range; given back on the undo
    /// list (and by the kernel's lock release if stagebox is killed).
    fn prepare(&self, ctx: &mut HostCtx<'_>) -> crate::Result<()> {
        let Some(u) = ctx.userns else {
            return Ok(());
        };
        if !u.auto {
            return Ok(());
        }
        let files = crate::state::subids::SubidFiles::default();
        let lease = crate::state::subids::allocate(&files, ctx.id)?;
        if lease.made_entry {
            ctx.note(format!(
                "added the entry `stagebox:{}:{}` to /etc/subuid and /etc/subgid (once, as Docker's userns-remap adds dockremap)",
                lease.uid_map[0].outside,
                crate::state::subids::SLICE * crate::state::subids::SLICES
            ));
        }
        ctx.record(
            format!(
                "flock(\"{}/{}\", LOCK_EX)",
                crate::state::subids::LEASE_DIR,
                lease.uid_map[0].outside
            ),
            "ok: this range of ids is ours while the container runs",
        );
        ctx.data.insert(
            StageId::User,
            Box::new(Maps {
                uid: lease.uid_map.clone(),
                gid: lease.gid_map.clone(),
            }),
        );
        ctx.undo.push("give back the range of ids", move || {
            lease.release().map_err(|e| e.to_string())
        });
        Ok(())
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        unshare_checked(ctx, CloneFlags::CLONE_NEWUSER, "user")?;
        Ok(())
    }

    fn parent_acts_midway(&self, _spec: &crate::stages::ChildSpec) -> bool {
        true
    }

    /// From outside: write the maps the kernel takes only from a process in the parent
    /// namespace, then read them back.
    fn parent_after(&self, ctx: &mut HostCtx<'_>, pid: Pid) -> crate::Result<()> {
        let Some((u, uid, gid)) = maps_of(ctx) else {
            return Err(stage_err("the user stage has no maps to write".into()));
        };
        let writer = u.writer.clone();
        match &writer {
            MapWriter::Root => {
                write_proc(ctx, pid, "uid_map", &idmap::format(&uid))?;
                write_proc(ctx, pid, "gid_map", &idmap::format(&gid))?;
            }
            MapWriter::Unprivileged => {
                write_proc(ctx, pid, "setgroups", "deny")?;
                write_proc(ctx, pid, "uid_map", &idmap::format(&uid))?;
                write_proc(ctx, pid, "gid_map", &idmap::format(&gid))?;
            }
            MapWriter::Helpers {
                newuidmap,
                newgidmap,
            } => {
                run_helper(ctx, newuidmap, pid, &uid)?;
                run_helper(ctx, newgidmap, pid, &gid)?;
            }
        }
        for (file, want) in [("uid_map", &uid), ("gid_map", &gid)] {
            let seen = idmap::read(Some(pid.as_raw()), file)
                .map_err(|e| stage_err(format!("cannot read /proc/{pid}/{file}: {e}")))?;
            if &seen != want {
                return Err(stage_err(format!(
                    "the kernel does not show the expected effect: /proc/{pid}/{file} says {:?}, not {:?}",
                    idmap::format(&seen).trim_end(),
                    idmap::format(want).trim_end()
                )));
            }
        }
        if let Some(root) = idmap::to_outside(&uid, 0) {
            ctx.note(format!(
                "uid 0 inside is host uid {root}: a user who owns nothing on the host"
            ));
        }
        Ok(())
    }

    /// Back in the container process, maps written: become uid 0 of the namespace.
    fn apply_after_parent(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let userns = ctx.spec.userns.clone();
        let may_setgroups = !matches!(
            userns.as_ref().map(|u| &u.writer),
            Some(MapWriter::Unprivileged)
        );
        ctx.sys
            .raw("setresgid(0, 0, 0)".into(), &mut || {
                nix::unistd::setresgid(0.into(), 0.into(), 0.into()).map(|_| 0)
            })
            .map_err(|e| StageError::sys("setresgid(0, 0, 0)", e))?;
        if may_setgroups {
            // The host's supplementary groups are unmapped here (they would show as 65534).
            ctx.sys
                .raw("setgroups([])".into(), &mut || {
                    nix::unistd::setgroups(&[]).map(|_| 0)
                })
                .map_err(|e| StageError::sys("setgroups([])", e))?;
        }
        ctx.sys
            .raw("setresuid(0, 0, 0)".into(), &mut || {
                nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map(|_| 0)
            })
            .map_err(|e| StageError::sys("setresuid(0, 0, 0)", e))?;
        // A change of uid makes the process non-dumpable, which would hide its /proc files
        // from the runtime that follows it; the workload's exec decides again.
        // SAFETY: prctl(PR_SET_DUMPABLE, 1) takes integers only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        if ctx.verify {
            let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
            if !uid.is_root() || !nix::unistd::geteuid().is_root() || gid.as_raw() != 0 {
                return Err(StageError::no_effect(format!(
                    "getuid() is {uid} and getgid() is {gid} after setresuid(0, 0, 0), not 0"
                )));
            }
            let map = idmap::read(None, "uid_map")
                .map_err(|e| StageError::msg(format!("cannot read /proc/self/uid_map: {e}")))?;
            if idmap::is_identity(&map) {
                return Err(StageError::no_effect(
                    "/proc/self/uid_map is still the host's identity map".to_string(),
                ));
            }
            let caps = crate::kernel::status::Privileges::read(None)
                .map_err(|e| StageError::msg(format!("cannot read /proc/self/status: {e}")))?;
            ctx.note(format!(
                "CapEff {:016x}: every capability, but only over what this user namespace owns (its own namespaces and mounts, files whose owners it maps); a host device or a file of the host's root stays out of reach",
                caps.cap_eff
            ));
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
    fn unshares_then_becomes_root_of_the_namespace() {
        let spec = ChildSpec::for_tests("box");
        let mut rec = Recorder::new();
        let mut ctx = ChildCtx::new(&mut rec, &spec);
        ctx.verify = false;
        User.apply(&mut ctx).unwrap();
        assert_eq!(rec.calls, vec!["unshare(CLONE_NEWUSER)"]);
    }
}
