//! # cgroup: how much the container may use
//!
//! Namespaces decide what a process *sees*; control groups decide how much it may *use*. A
//! cgroup is a directory in a cgroup filesystem (/sys/fs/cgroup/...), a limit is a file in
//! that directory (`memory.max`, `pids.max`, `cpu.max` on v2; `memory.limit_in_bytes`,
//! `pids.max`, `cpu.cfs_quota_us` on v1), and a process joins by having its pid written into
//! the directory's `cgroup.procs`. From then on the kernel charges every page it allocates,
//! every fork and every CPU slice to that cgroup, and to the cgroup of each child it creates:
//! membership is inherited across fork(2). Above the memory limit the kernel reclaims, then
//! calls the OOM killer *inside the cgroup*; at pids.max fork(2) fails with EAGAIN; beyond its
//! CPU quota the cgroup is throttled until the next period.
//!
//! On the host, before the container process exists, this stage makes `stagebox/<id>` in
//! each hierarchy it uses ([`crate::cgroup`] finds v2, v1 or hybrid; the parent is
//! `stagebox-<hash>` for a state directory other than the default one), writes the limits and
//! reads each one back. The container process then stops just before this stage and waits
//! while the runtime writes its pid into `cgroup.procs`; /proc/PID/cgroup shows it moved.
//! After the workload exits, the cgroup's own counters say what the kernel enforced (peak
//! memory, OOM kills, refused forks, CPU time and throttling), and the undo list kills what
//! is left (cgroup.kill on v2, SIGKILL by pid on v1) and removes the directories.
//!
//! Default on, as in Docker (every container gets a cgroup, limits or not): without limits
//! it still costs only a few mkdir/write/rmdir calls, and it buys the report at the end and
//! a cleanup that cannot miss a process.
//!
//! Rootless (a run by a user other than root): only a cgroup v2 subtree delegated to the user
//! can hold the container's cgroup ([`crate::cgroup::delegation`]); it is then made in
//! `<delegation root>/<parent>/<id>` and works as above. Without one (v1 and hybrid hosts
//! too), `Plan::fit_rootless_cgroup` switches this stage off before the run when no limit
//! was asked for, and the trace says why; a limit is refused in one sentence that says how to
//! get delegation.
//!
//! Why here in the order: first after the user namespace, and before anything else, so that
//! no process of the container ever runs outside its limits: the pid stage forks, and the
//! workload forks, and all of them inherit the cgroup from this one process. It must also
//! come before cgroupns, whose namespace is rooted at the cgroup the process is in when it
//! unshares.

use super::{ChildCtx, HostCtx, Stage, StageError, StageId, StageInfo};
use crate::cgroup::delegation::{self, Rootless};
use crate::cgroup::{self, stage_err, CgroupRoot, Event, Layout, Log, Manager};
use crate::error::{Error, Result};
use crate::stages::ExitKind;
use crate::units::size_binary;
use std::rc::Rc;

pub struct Cgroup;

static INFO: StageInfo = StageInfo {
    id: StageId::Cgroup,
    summary: "create a cgroup, write the limits, move the container in before it goes on",
    shows: "each mkdir and limit file with the value the kernel shows, /proc/PID/cgroup",
    default_on: true,
    lesson: "07-cgroups",
    requires: &[],
};

/// The facts this stage reports from the host side, besides those of the cgroup library
/// ([`cgroup::fact_names`]: one per limit file): `cgroup <hierarchy>` as the process moves
/// in, one per hierarchy (`cgroup memory`, `cgroup cpu,cpuacct`, `cgroup v2` ...), then what
/// the kernel enforced.
pub const HOST_FACTS: &[&str] = &[
    "cgroup <hierarchy>",
    "memory peak",
    "oom kills",
    "forks refused",
    "cpu time",
    "cpu throttled",
];

/// Every fact name this stage can print: [`HOST_FACTS`] and the library's.
pub fn fact_names() -> Vec<String> {
    HOST_FACTS
        .iter()
        .map(|f| f.to_string())
        .chain(cgroup::fact_names())
        .collect()
}

/// Kept from prepare to finish.
struct Data {
    mgr: Rc<dyn Manager>,
    /// The container's cgroup as /proc/PID/cgroup names it: `/<parent>/<id>`, or below the
    /// delegated subtree for a rootless run.
    cgroup_path: String,
}

/// The library's steps as trace lines.
fn emit(ctx: &mut HostCtx<'_>, log: Log) {
    for e in log.events {
        match e {
            Event::Call { call, result } => ctx.record(call, result),
            Event::Fact {
                fact,
                before,
                after,
            } => ctx.facts.push(crate::kernel::observe::Change {
                fact,
                before,
                after,
            }),
            Event::Note(n) => ctx.note(n),
        }
    }
}

/// The cgroup made in prepare; None when there is none (see prepare).
fn data(ctx: &HostCtx<'_>) -> Option<Rc<dyn Manager>> {
    ctx.data
        .get(&StageId::Cgroup)
        .and_then(|d| d.downcast_ref::<Data>())
        .map(|d| d.mgr.clone())
}

/// Its path as /proc/PID/cgroup names it.
fn cgroup_path(ctx: &HostCtx<'_>) -> Option<String> {
    ctx.data
        .get(&StageId::Cgroup)
        .and_then(|d| d.downcast_ref::<Data>())
        .map(|d| d.cgroup_path.clone())
}

/// Where the devices stage writes its rules: the container's v1 devices cgroup, or its
/// cgroup2 directory. None when the cgroup stage made no cgroup (see its prepare); Some(None)
/// when it did, but the host has neither a v1 devices hierarchy nor a cgroup2 tree.
pub fn device_cgroup(ctx: &HostCtx<'_>) -> Option<Option<cgroup::DeviceCgroup>> {
    data(ctx).map(|m| m.device_cgroup())
}

fn read_proc_cgroup(pid: i32) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| Error::io(format!("read /proc/{pid}/cgroup"), e))?;
    Ok(cgroup::proc_cgroup_lines(&text))
}

/// "memory", "cpu,cpuacct", or "v2" for the unified line.
fn hierarchy_name(ctls: &str) -> &str {
    if ctls.is_empty() {
        "v2"
    } else {
        ctls
    }
}

fn secs(us: u64) -> String {
    format!("{:.2}s", us as f64 / 1e6)
}

/// Does a path of /proc/PID/cgroup name the cgroup `want` (a path from the cgroup
/// filesystem's root)? /proc/PID/cgroup paths are relative to the *reader's* cgroup
/// namespace root. When stagebox itself runs in a cgroup namespace rooted below the
/// filesystem's root that it sees mounted (`unshare -C` without a remount), the kernel writes
/// the same cgroup as `/../stagebox/<id>`: climbing out of the namespace root, then down.
fn names_cgroup(path: &str, want: &str) -> bool {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("/..") {
        if !(rest.is_empty() || rest.starts_with('/')) {
            break;
        }
        p = rest;
    }
    p == want
}

impl Stage for Cgroup {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn prepare(&self, ctx: &mut HostCtx<'_>) -> Result<()> {
        let limits = ctx.limits;
        let layout = Layout::detect()?;
        let root = CgroupRoot::host();
        let euid = nix::unistd::geteuid();
        let (mgr, cgroup_path): (Rc<dyn Manager>, String) = if euid.is_root() {
            let mgr = cgroup::manager::for_layout(
                &root,
                &layout,
                ctx.cgroup_parent,
                ctx.cgroup_leaf,
                limits,
            )?;
            if ctx.userns.is_some() {
                ctx.note("with the user stage the container's root is an unprivileged host uid: it may read its cgroup (through its cgroup namespace) but not change it, since no subtree is delegated to it; the limits are written from the host");
            }
            (
                mgr.into(),
                format!("/{}/{}", ctx.cgroup_parent, ctx.cgroup_leaf),
            )
        } else {
            match delegation::decide(delegation::detect(), limits, euid.as_raw())? {
                Rootless::Delegated(d) => {
                    let mgr = cgroup::manager::delegated(
                        &root,
                        &d,
                        ctx.cgroup_parent,
                        ctx.cgroup_leaf,
                        limits,
                    )?;
                    ctx.note(format!(
                        "rootless: the cgroup goes in the subtree delegated to uid {euid}, {}",
                        d.root.display()
                    ));
                    (
                        mgr.into(),
                        d.container_cgroup(ctx.cgroup_parent, ctx.cgroup_leaf),
                    )
                }
                // The plan normally has this stage off then (Plan::fit_rootless_cgroup).
                Rootless::NoCgroup(reason) => {
                    ctx.note(format!(
                        "rootless: no cgroup of its own ({reason}); no limits were asked for, so the container runs in the runtime's cgroup"
                    ));
                    return Ok(());
                }
            }
        };
        // Everything that can be refused is refused here, before the first mkdir.
        mgr.check(limits)?;
        ctx.note(format!("cgroup layout: {}", layout.kind().name()));
        // What a run killed with SIGKILL left (its undo list never ran): empty and old.
        let mut swept = Log::default();
        let n = cgroup::sweep_leftovers(&root, &mgr.parents(), cgroup::LEFTOVER_AGE, &mut swept);
        if n > 0 {
            swept.note(format!(
                "removed {n} empty cgroup directories left by a run that was killed before its cleanup"
            ));
        }
        emit(ctx, swept);
        let undo_mgr = mgr.clone();
        ctx.undo.push(
            format!(
                "remove the cgroup {}/{}",
                ctx.cgroup_parent, ctx.cgroup_leaf
            ),
            move || undo_mgr.destroy(),
        );
        let mut log = Log::default();
        let r = mgr.create(limits, &mut log);
        emit(ctx, log);
        match r {
            Ok(()) => {
                ctx.data
                    .insert(StageId::Cgroup, Box::new(Data { mgr, cgroup_path }));
                Ok(())
            }
            // Default on, but not at any price: with no limit asked for, a host where no
            // cgroup can be made (a read-only cgroupfs in a container, no delegation) still
            // runs the container, in the runtime's own cgroup, and the trace says why.
            Err(e) if limits.is_empty() => {
                let _ = mgr.destroy();
                ctx.note(format!(
                    "no cgroup of its own ({e}); no limits were asked for, so the container runs in the runtime's cgroup"
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn waits_for_parent(&self, _spec: &crate::stages::ChildSpec) -> bool {
        true
    }

    fn parent_before(&self, ctx: &mut HostCtx<'_>, pid: nix::unistd::Pid) -> Result<()> {
        let Some(mgr) = data(ctx) else {
            return Ok(());
        };
        let pid = pid.as_raw();
        let before = read_proc_cgroup(pid)?;
        let mut log = Log::default();
        let r = mgr.join(pid, &mut log);
        emit(ctx, log);
        r?;
        let after = read_proc_cgroup(pid)?;
        for (ctls, path) in &after {
            let old = before
                .iter()
                .find(|(c, _)| c == ctls)
                .map(|(_, p)| p.clone());
            if old.as_deref() != Some(path.as_str()) {
                ctx.facts.push(crate::kernel::observe::Change {
                    fact: format!("cgroup {}", hierarchy_name(ctls)),
                    before: old,
                    after: Some(path.clone()),
                });
            }
        }
        // Read back: one line of /proc/PID/cgroup per directory, naming the new cgroup.
        let want = cgroup_path(ctx).unwrap_or_default();
        let moved = after.iter().filter(|(_, p)| names_cgroup(p, &want)).count();
        // And none of the v1 hierarchies may have been left out: in one, the container would
        // still be in the host's root cgroup (its release_agent, its freezer).
        if mgr.layout() != cgroup::LayoutKind::V2 {
            let at_root: Vec<&str> = after
                .iter()
                .filter(|(c, p)| !c.is_empty() && p == "/")
                .map(|(c, _)| c.as_str())
                .collect();
            if !at_root.is_empty() {
                return Err(stage_err(format!(
                    "the kernel does not show the expected effect: /proc/{pid}/cgroup still has the host's root cgroup in {}",
                    at_root.join(", ")
                )));
            }
        }
        if moved < mgr.dirs().len() {
            return Err(stage_err(format!(
                "the kernel does not show the expected effect: /proc/{pid}/cgroup names {want} in {moved} hierarchies, not {}",
                mgr.dirs().len()
            )));
        }
        Ok(())
    }

    fn finish(&self, ctx: &mut HostCtx<'_>, exit: ExitKind) -> Result<Option<String>> {
        let Some(mgr) = data(ctx) else {
            return Ok(None);
        };
        let s = mgr.stats();
        ctx.note("after the exit: what the kernel enforced, from the cgroup's own files");
        let from = |f: &str| format!(" ({f})");
        if let Some(peak) = s.memory_peak {
            let of = s
                .memory_limit
                .map(|l| format!(" of {}", size_binary(l)))
                .unwrap_or_default();
            let src = s
                .sources
                .iter()
                .find(|x| x.contains("peak") || x.contains("max_usage"))
                .cloned()
                .unwrap_or_default();
            ctx.facts.push(change(
                "memory peak",
                format!("{}{of}{}", size_binary(peak), from(&src)),
            ));
        }
        if let Some(n) = s.oom_kills {
            let src = s
                .sources
                .iter()
                .find(|x| {
                    x.starts_with("memory.") && !x.contains("peak") && !x.contains("max_usage")
                })
                .cloned()
                .unwrap_or_default();
            ctx.facts.push(change(
                "oom kills",
                format!("{n}{}", from(&format!("{src} oom_kill"))),
            ));
        }
        if let Some(n) = s.pids_max_hits {
            let lim = s
                .pids_limit
                .map(|l| format!(" at pids.max {l}"))
                .unwrap_or_default();
            ctx.facts.push(change(
                "forks refused",
                format!("{n}{lim} (pids.events max)"),
            ));
        }
        if let Some(u) = s.cpu_usage_us {
            ctx.facts.push(change("cpu time", secs(u)));
        }
        if let (Some(t), Some(p)) = (s.cpu_throttled_periods, s.cpu_periods) {
            // With a CPU quota the line is always there (a short run may see no period end);
            // without one the kernel counts no periods at all.
            if p > 0 || ctx.limits.cpus.is_some() {
                let us = s
                    .cpu_throttled_us
                    .map(|u| format!(", {} in all", secs(u)))
                    .unwrap_or_default();
                ctx.facts.push(change(
                    "cpu throttled",
                    format!("in {t} of {p} periods{us} (cpu.stat)"),
                ));
            }
        }
        let limit = s.memory_limit.map(size_binary);
        if let Some(n) = s.oom_kills.filter(|n| *n > 0) {
            let limit = limit
                .map(|l| format!("memory limit {l}"))
                .unwrap_or_else(|| "memory limit".into());
            let peak = s
                .memory_peak
                .map(|p| format!("peak {}, ", size_binary(p)))
                .unwrap_or_default();
            let what = if matches!(exit, ExitKind::Signaled(nix::sys::signal::Signal::SIGKILL)) {
                format!(
                    "killed by the OOM killer: {limit} reached ({peak}{n} OOM kill{} in the cgroup), exit status {}",
                    if n == 1 { "" } else { "s" },
                    exit.code()
                )
            } else {
                format!(
                    "{}; the OOM killer killed {n} process{} in the container ({limit} reached)",
                    exit.describe(),
                    if n == 1 { "" } else { "es" }
                )
            };
            return Ok(Some(what));
        }
        if let (Some(n), Some(l)) = (s.pids_max_hits.filter(|n| *n > 0), s.pids_limit) {
            return Ok(Some(format!(
                "{}; the pid limit {l} refused {n} fork{} (pids.events)",
                exit.describe(),
                if n == 1 { "" } else { "s" }
            )));
        }
        Ok(None)
    }

    /// Nothing to do in the container process: the runtime moved it in while it waited.
    fn apply(&self, _ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

fn change(fact: &str, after: String) -> crate::kernel::observe::Change {
    crate::kernel::observe::Change {
        fact: fact.to_string(),
        before: None,
        after: Some(after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_path_seen_from_another_namespace_root_still_names_it() {
        assert!(names_cgroup("/stagebox/abc", "/stagebox/abc"));
        assert!(names_cgroup("/../stagebox/abc", "/stagebox/abc"));
        assert!(names_cgroup("/../../stagebox/abc", "/stagebox/abc"));
        assert!(!names_cgroup("/other/stagebox/abc", "/stagebox/abc"));
        assert!(!names_cgroup("/..x/stagebox/abc", "/stagebox/abc"));
        assert!(!names_cgroup("/", "/stagebox/abc"));
    }
}
