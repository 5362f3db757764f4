//! Following the container process through its stages. The container process reports each
//! stage (`Reached` before, `Done` after) and waits; meanwhile the runtime runs the stage's
//! host-side hook and reads from outside, in /proc, what the kernel now shows, and prints
//! the difference. When the channel reaches end of file the container process has exec'd
//! the workload (the channel was close-on-exec).

use super::channel::{self, Channel, ToChild, ToParent};
use super::host::HostState;
use super::prepare::Prepared;
use super::wait::Reaper;
use crate::error::{Error, Result};
use crate::kernel::observe::{diff, InsideFacts, Snapshot};
use crate::stages::plan::Plan;
use crate::stages::StageId;
use crate::trace;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

/// What the trace compares the first stage with: the runtime's own view, before the fork.
pub fn first_snapshot(tracing: bool) -> Option<Snapshot> {
    tracing.then(|| {
        Snapshot::of(
            std::process::id() as i32,
            InsideFacts::read(),
            Path::new("/"),
        )
    })
}

fn chan_err(e: channel::ChannelError) -> Error {
    Error::Stage {
        stage: "run".into(),
        message: e.to_string(),
    }
}

fn reason_off(plan: &Plan, id: StageId) -> String {
    plan.stages
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.why.clone())
        .unwrap_or_default()
}

/// Answers the container process's messages until it execs the workload; returns the
/// workload's pid (after the pid stage's fork, not the process first forked).
pub fn follow_stages(
    host: &mut HostState<'_>,
    plan: &Plan,
    prepared: &Prepared,
    mut ch: Channel,
    first: Pid,
    reaper: &mut Reaper,
    mut prev: Option<Snapshot>,
) -> Result<Pid> {
    let tracing = host.tracing;
    let mut current = first;
    // Where the workload's future root is, as seen from the container process right now.
    let mut view = PathBuf::from("/");
    let mut pending_notes: Vec<String> = Vec::new();
    let mut acted_midway = std::collections::HashSet::new();
    while let Some(msg) = ch.recv::<ToParent>().map_err(chan_err)? {
        match msg {
            ToParent::Handover { pid } => {
                let pid = Pid::from_raw(pid);
                reaper.pids.push(pid);
                ch.send(&ToChild::Continue).map_err(chan_err)?;
                let _ = waitpid(current, None);
                reaper.pids.retain(|p| *p != current);
                pending_notes.push(format!(
                    "forked: host pid {pid} is PID 1 in the new namespace; the intermediate process {current} exited"
                ));
                current = pid;
            }
            ToParent::NotRunnable { message, code } => {
                reaper.kill_all();
                return Err(Error::NotRunnable { message, code });
            }
            ToParent::Exec { path, argv } => {
                if !prepared.ulimits.is_empty() {
                    let lines = super::rlimits::apply(current.as_raw(), &prepared.ulimits)
                        .inspect_err(|_| reaper.kill_all())?;
                    if tracing {
                        for l in lines {
                            trace::exec(&l);
                        }
                    }
                }
                if tracing {
                    trace::exec(&format!("execve({path:?}, {argv:?}) as host pid {current}"));
                    let n = prepared.exec.preserve_fds;
                    if n > 0 {
                        trace::exec(&format!(
                            "descriptors 3..{} stay open for the workload (--preserve-fds {n}); close_range({}, ~0U, CLOSE_RANGE_CLOEXEC) closes the rest at exec",
                            2 + n,
                            3 + n
                        ));
                    }
                }
                ch.send(&ToChild::Continue).map_err(chan_err)?;
            }
            ToParent::Reached { stage } => {
                host.header(stage);
                host.hook(stage, |s, ctx| s.parent_before(ctx, current))?;
                let fds = std::mem::take(&mut host.pending_fds);
                let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
                ch.send_with_fds(&ToChild::Continue, &raw)
                    .map_err(chan_err)?;
                // The container process has its own copies now.
                drop(fds);
            }
            ToParent::Midway {
                stage,
                syscalls,
                notes,
            } => {
                if tracing {
                    host.header(stage);
                    for rec in &syscalls {
                        trace::syscall(stage.name(), rec);
                    }
                    for n in &notes {
                        trace::note(stage.name(), n);
                    }
                }
                host.hook(stage, |s, ctx| s.parent_after(ctx, current))?;
                acted_midway.insert(stage);
                ch.send(&ToChild::Continue).map_err(chan_err)?;
            }
            ToParent::Done {
                stage,
                enabled,
                syscalls,
                notes,
                inside,
            } => {
                let name = stage.name();
                if tracing {
                    if enabled {
                        host.header(stage);
                    } else {
                        trace::off(name, &reason_off(plan, stage));
                    }
                    for rec in &syscalls {
                        trace::syscall(name, rec);
                    }
                    for n in notes.into_iter().chain(pending_notes.drain(..)) {
                        trace::note(name, &n);
                    }
                }
                if enabled && !acted_midway.contains(&stage) {
                    host.hook(stage, |s, ctx| s.parent_after(ctx, current))?;
                }
                if tracing {
                    if stage == StageId::Rootfs && enabled {
                        if let Some(ov) = &prepared.spec.overlay {
                            view = ov.merged.clone();
                        } else if let Some(r) = &prepared.spec.rootfs {
                            view = r.clone();
                        }
                    }
                    if stage == StageId::Pivot && enabled {
                        view = PathBuf::from("/");
                    }
                    let snap = Snapshot::of(current.as_raw(), inside.unwrap_or_default(), &view);
                    if let Some(p) = &prev {
                        trace::facts(name, &diff(p, &snap));
                    }
                    prev = Some(snap);
                }
                ch.send(&ToChild::Continue).map_err(chan_err)?;
            }
            ToParent::Error {
                stage,
                message,
                syscalls,
            } => {
                if tracing {
                    for rec in &syscalls {
                        trace::syscall(&stage, rec);
                    }
                    trace::error(&stage, &message);
                }
                reaper.kill_all();
                return Err(Error::Stage { stage, message });
            }
        }
    }
    Ok(current)
}
