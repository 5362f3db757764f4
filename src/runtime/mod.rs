//! The runtime on the host: checks everything it can before touching anything, forks the
//! container process, follows it stage by stage (tracing what the kernel shows after each),
//! then waits for the workload, forwarding signals, and returns its exit status.
//!
//! Nothing a run does survives it: every namespace and mount lives only as long as the
//! container's processes, the container process dies with the runtime (PR_SET_PDEATHSIG),
//! and on any error the runtime kills and reaps what it started before returning.
//!
//! - `config`: what to run (`RunConfig`), as the CLI hands it over.
//! - `prepare`: every check and path resolution before the first change to the host.
//! - `host`: the host side of the stages (their hooks, traced) and the undo list.
//! - `child`: the container process, stage after stage, then execve.
//! - `channel`: the messages between the two.
//! - `wait`: waiting for the workload, forwarding signals, and its exit status.
//! - `exec`: a new process in a running container, by setns(2) into its namespaces.
//! - `ops`: `pause`/`unpause` (the freezer), `top` and `stats` of a running container.
//! - `copy`: `cp` and `export` through a running container's root, never leaving it.
//! - `rlimits`: `--ulimit`, set on the container process with prlimit(2) before the exec.
//! - `init`: `stagebox init`, the PID 1 of `run --init`: forwards signals, reaps zombies.
//! - `cleanup`: `rm` and `container prune`: everything a container left, its runtime killed
//!   or not (record, cgroups in every hierarchy, processes, leases, rules, orphan directories).
//! - `lifecycle`: `-d`, `-i`, `-t`, `--restart`, stop settings, and the container a run reuses.
//! - `detached`: inside a detached run, the workload's stdio and its json-file log.
//! - `control`: `stop`, `kill`, `wait`, `logs`, `attach` on a container from outside.
//! - `monitor`: the process that holds a detached container (`run -d`, `start`, restarts).
//! - `oci`: an OCI bundle's container: `create` stops it before the exec (runc's exec.fifo)
//!   until `start`; the pid file, the console socket, oomScoreAdj.
//!
//! May import: everything from `stages` down. Nothing below imports it.

pub mod channel;
pub mod child;
pub mod cleanup;
pub mod config;
pub mod control;
pub mod copy;
pub mod detached;
pub mod exec;
pub mod follow;
pub mod host;
pub mod init;
pub mod lifecycle;
pub mod monitor;
pub mod oci;
pub mod ops;
pub mod prepare;
pub mod rlimits;
pub mod wait;

use crate::error::{Error, Result};
use crate::stages::{ExitKind, StageId};
use crate::state::container::Container;
use crate::state::ids::new_id;
use crate::trace;
use config::RunConfig;
use host::HostState;
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
use std::cell::Cell;
use std::rc::Rc;
use wait::Reaper;

/// Runs the container; returns the workload's exit status (128+N when signal N killed it).
pub fn run(cfg: &RunConfig) -> Result<i32> {
    // Without root, the cgroup stage works only in a delegated cgroup v2 subtree: the plan
    // is fitted to what this user may do here (or a limit is refused) before anything else.
    let fitted = RunConfig {
        plan: cfg.plan.clone().fit_rootless_cgroup(&cfg.limits)?,
        ..cfg.clone()
    };
    let cfg = &fitted;
    let id = cfg.lifecycle.id.clone().unwrap_or_else(new_id);
    let mut prepared = prepare::prepare(cfg, &id)?;
    let mut host = HostState::new(cfg, &id, prepared.spec.userns.clone());
    // From here on the host changes; every change is on the undo list, and what should
    // outlive the run is kept by flipping this flag once the workload has started.
    let started = Rc::new(Cell::new(false));
    let mut container = host::create_container(cfg, &id, &prepared, &mut host.undo, &started)?;
    host::attach_volumes(
        cfg,
        &id,
        &mut prepared,
        &mut container,
        &mut host.undo,
        &started,
    )?;
    if cfg.oci.is_none() {
        // An OCI bundle's rootfs is the engine's, writable as it is: bound, no overlay.
        host::make_overlay_dirs(cfg, &mut prepared, &container)?;
    }
    host::bind_ports(cfg, &prepared, &mut container, &mut host)?;
    host::attach_network(cfg, &mut prepared, &mut container, &mut host)?;
    save_setup(cfg, &container)?;
    let enabled = cfg.plan.enabled();
    for sid in &enabled {
        host.hook(*sid, |s, ctx| s.prepare(ctx))?;
    }

    let mut io = detached::WorkloadIo::new(cfg)?;
    if let Some(io) = &io {
        prepared.exec.stdio = Some(io.child_stdio());
        prepared.exec.tty = cfg.lifecycle.tty;
    }
    // An OCI bundle's container waits on exec.fifo before its exec; its terminal's master
    // goes to the engine's console socket.
    let (_fifo_dir, _console) = match &cfg.oci {
        Some(o) => oci_setup(o, &mut prepared, &container.dir(&cfg.state_dir))?,
        None => (None, None),
    };
    let (parent_ch, child_ch) = channel::pair().map_err(|e| Error::Stage {
        stage: "run".into(),
        message: e.to_string(),
    })?;
    wait::become_subreaper()?;
    let (mask, old_mask) = wait::block_signals()?;
    let before = follow::first_snapshot(host.tracing);
    let me = nix::unistd::getpid();
    // SAFETY: the runtime is single-threaded here (the trace layer writes synchronously).
    let first = match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(Error::sys("fork", e)),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(parent_ch);
            let exec = &prepared.exec;
            child::main(
                child_ch,
                &prepared.spec,
                &cfg.plan,
                exec,
                host.tracing,
                &old_mask,
                me,
            )
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
    };
    drop(child_ch);
    if let Some(io) = &mut io {
        io.after_fork();
    }
    // Declared after `host`, so dropped before it: on an early return the container's
    // processes are killed before the undo list removes their cgroup.
    let mut reaper = Reaper { pids: vec![first] };
    let workload = follow::follow_stages(
        &mut host,
        &cfg.plan,
        &prepared,
        parent_ch,
        first,
        &mut reaper,
        before,
    )?;

    if let Some(o) = &cfg.oci {
        let who = oci::Identity {
            id: &id,
            bundle: &o.bundle,
            annotations: &o.annotations,
            hooks: o.hooks.as_ref(),
        };
        // Until `create` returns, a failure undoes everything (record included).
        let made = (|| -> Result<()> {
            if let Some(v) = o.oom_score_adj {
                oci::set_oom_score_adj(workload.as_raw(), v)?;
            }
            if let Some(p) = &o.pid_file {
                oci::write_pid_file(p, workload.as_raw())?;
            }
            oci::created_hooks(&who, workload.as_raw())
        })();
        if let Err(e) = made {
            reaper.kill_all();
            return Err(e);
        }
        started.set(true);
        mark_created(cfg, &mut container, workload);
        if o.create {
            // The process waits for `start`, and belongs to whoever called `create` now:
            // what the run made stays for `delete`.
            reaper.pids.clear();
            host.undo.forget();
            if host.tracing {
                trace::note(
                    "exec",
                    &format!(
                        "created: host pid {workload} waits on exec.fifo for `stagebox start`"
                    ),
                );
            }
            return Ok(0);
        }
        oci::start(
            &container.dir(&cfg.state_dir),
            &who,
            Some(workload.as_raw()),
        )
        .inspect_err(|_| reaper.kill_all())?;
    }
    started.set(true);
    mark_running(cfg, &mut container, workload);
    if let Some(io) = &mut io {
        if let Err(e) = io.start_logging(&detached::log_file(cfg, &container)) {
            trace::error("run", &e.to_string());
        }
    }
    detached::started(cfg, &container);
    let status = wait_for_workload(&mut host, workload, &mask, &mut reaper)?;
    if let Some(io) = io {
        io.finish();
    }
    record_exit(cfg, &mut container, status);
    let description = report_finish(&mut host, &enabled, status);
    if host.tracing {
        trace::exit(&description);
    } else if description != status.describe() {
        // What the kernel enforced is worth a line even with the trace off.
        eprintln!("stagebox: {description}");
    }
    for e in host.undo.run_all() {
        trace::error("cleanup", &e);
        eprintln!("stagebox: cleanup: {e}");
    }
    Ok(status.code())
}

/// What the setup added to the record (volumes, network, ports), written under its lock; the
/// name is the record's own (a `rename` may have changed it).
fn save_setup(cfg: &RunConfig, container: &Container) -> Result<()> {
    crate::state::container::update(&cfg.state_dir, &container.id, |rec| {
        let name = std::mem::take(&mut rec.name);
        *rec = container.clone();
        rec.name = name;
    })
    .map(|_| ())
}

/// An OCI run's FIFO (its directory's descriptor, for the container process) and, with
/// `process.terminal`, the pty's slave as the container's 0, 1 and 2.
fn oci_setup(
    o: &oci::OciRun,
    prepared: &mut prepare::Prepared,
    dir: &std::path::Path,
) -> Result<(Option<std::os::fd::OwnedFd>, Option<std::os::fd::OwnedFd>)> {
    use std::os::fd::AsRawFd;
    let fifo_dir = oci::make_fifo(dir)?;
    prepared.exec.start_fifo = Some(fifo_dir.as_raw_fd());
    let console = match (o.terminal, &o.console_socket) {
        (false, _) => None,
        (true, Some(socket)) => {
            let sock = oci::console_connect(socket)?;
            prepared.exec.console = Some(sock.as_raw_fd());
            Some(sock)
        }
        (true, None) => {
            return Err(Error::usage(
                "process.terminal is true but no --console-socket was given: the terminal's master must go to someone; pass --console-socket PATH, or set process.terminal to false",
            ))
        }
    };
    Ok((Some(fifo_dir), console))
}

/// An OCI container's record says "created" with its process's pid; no runtime stays with it.
fn mark_created(cfg: &RunConfig, container: &mut Container, workload: Pid) {
    container.status = "created".into();
    container.set_workload(Some(workload.as_raw()));
    let c = container.clone();
    let r = crate::state::container::update(&cfg.state_dir, &container.id, |rec| {
        rec.status = c.status;
        rec.pid = c.pid;
        rec.pid_start = c.pid_start;
        rec.runtime_pid = None;
        rec.runtime_start = None;
    });
    if let Err(e) = r {
        trace::error("run", &e.to_string());
    }
}

/// The record says "running", with the workload's and the runtime's pids and start times.
fn mark_running(cfg: &RunConfig, container: &mut Container, workload: Pid) {
    container.status = "running".into();
    container.set_workload(Some(workload.as_raw()));
    container.set_runtime(std::process::id() as i32);
    let c = container.clone();
    let r = crate::state::container::update(&cfg.state_dir, &container.id, |rec| {
        rec.status = c.status;
        rec.pid = c.pid;
        rec.pid_start = c.pid_start;
        rec.runtime_pid = c.runtime_pid;
        rec.runtime_start = c.runtime_start;
    });
    if let Err(e) = r {
        trace::error("run", &e.to_string());
    }
}

/// Waits for the workload, then ends what it left behind.
fn wait_for_workload(
    host: &mut HostState<'_>,
    workload: Pid,
    mask: &SigSet,
    reaper: &mut Reaper,
) -> Result<ExitKind> {
    let status = wait::wait_forwarding(workload, mask)?;
    reaper.pids.clear();
    // Before the stragglers: a rootless proxy's helper is a child of the runtime too.
    host.stop_proxy();
    let stragglers = wait::kill_stragglers();
    if host.tracing && stragglers > 0 {
        trace::note(
            "run",
            &format!("killed {stragglers} process(es) the workload left behind (no PID namespace to end them with it)"),
        );
    }
    Ok(status)
}

/// The record says "exited" with the status (kept unless `--rm`).
fn record_exit(cfg: &RunConfig, container: &mut Container, status: ExitKind) {
    container.exit_code = Some(status.code());
    container.set_workload(None);
    // A detached container whose policy restarts it stays "running" for its monitor.
    let lc = &cfg.lifecycle;
    let restarts = lc.detach
        && !crate::state::lifecycle::is_stopping(&container.dir(&cfg.state_dir))
        && lc
            .restart
            .restarts(status.code(), container.lifecycle.restart_count);
    let now = if restarts { "running" } else { "exited" };
    container.status = now.into();
    if !cfg.remove {
        let r = crate::state::container::update(&cfg.state_dir, &container.id, |rec| {
            rec.status = now.into();
            rec.exit_code = Some(status.code());
            rec.pid = None;
            rec.pid_start = None;
        });
        if let Err(e) = r {
            if !container.dir(&cfg.state_dir).exists() {
                return; // removed meanwhile (rm -f): nothing to say
            }
            // The exit status must reach the user even when the record cannot say it (a
            // full disk), with the trace off too: one line.
            eprintln!(
                "stagebox: could not save the record of container {}: {e} (exit status {})",
                container.name,
                status.code()
            );
        }
    }
}

/// The stages' `finish` hooks report what the kernel enforced; the last sentence one of
/// them returns replaces the plain description of the exit.
fn report_finish(host: &mut HostState<'_>, enabled: &[StageId], status: ExitKind) -> String {
    let mut description = status.describe();
    // Stages that report after the exit get their header again: their lines belong to them,
    // not to the last stage printed.
    host.headed.clear();
    for sid in enabled {
        match host.hook(*sid, |s, ctx| s.finish(ctx, status)) {
            Ok(Some(d)) => description = d,
            Ok(None) => {}
            Err(e) => trace::error(sid.name(), &e.to_string()),
        }
    }
    description
}
