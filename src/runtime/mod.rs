//! The runtime on the host: checks everything it can before touching anything, forks the
//! container process, follows it stage by stage (tracing what the kernel shows after each),
//! then waits for the workload, forwarding signals, and returns its exit status.
//!
//! Nothing a run does survives it: every namespace and mount lives only as long as the
//! container's processes, the container process dies with the runtime (PR_SET_PDEATHSIG),
//! and on any error the runtime kills and reaps what it started before returning.

pub mod channel;
pub mod child;
pub mod config;

use crate::state::ids::new_id;
use config::{check_hostname, RunConfig};
use crate::error::{Error, Result};
use crate::kernel::observe::{diff, InsideFacts, Snapshot};
use crate::stages::plan::Plan;
use crate::rootfs::{self, DEFAULT_PATH};
use crate::stages::{self, ChildSpec, HostCtx, StageId, Undo};
use crate::trace::{self, TraceMode};
use channel::{ToChild, ToParent};
use child::ExecSpec;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Signals the runtime forwards to the workload (SIGCHLD is for its own wait loop).
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Kills and reaps whatever the runtime started, unless disarmed: the undo for every early
/// return.
struct Reaper {
    pids: Vec<Pid>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
            let _ = waitpid(*pid, None);
        }
    }
}

/// Everything checked and resolved before the first change to the host.
struct Prepared {
    spec: ChildSpec,
    exec: ExecSpec,
    _exe: Option<OwnedFd>,
    /// The image run, if any (its layers are the overlay's lower dirs).
    image: Option<crate::image::run::Resolved>,
}

fn prepare(cfg: &RunConfig, id: &str) -> Result<Prepared> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot {
            what: "namespaces and mounts need CAP_SYS_ADMIN until the user stage exists".into(),
        });
    }
    let plan = &cfg.plan;
    if !plan.is_on(StageId::Cgroup) && !cfg.limits.is_empty() {
        return Err(Error::usage(
            "resource limits were given but the cgroup stage is off, and only a cgroup can enforce them; switch the cgroup stage on or drop the limits",
        ));
    }
    if let Some(h) = &cfg.hostname {
        check_hostname(h)?;
    }
    if let Some(n) = &cfg.name {
        crate::state::container::check_name(n)?;
        if crate::state::container::find(&cfg.state_dir, n).is_ok_and(|c| &c.name == n) {
            return Err(Error::usage(format!(
                "a container named {n:?} already exists; remove it with `stagebox rm {n}` or pick another --name"
            )));
        }
    }
    if !cfg.volumes.is_empty() && !plan.is_on(StageId::Volumes) {
        return Err(Error::usage(
            "-v was given but the volumes stage is off; switch it on or drop -v",
        ));
    }
    if cfg.read_only && !plan.is_on(StageId::Pivot) {
        return Err(Error::usage(
            "--read-only remounts the container's root, which needs the pivot stage; switch it on or drop --read-only",
        ));
    }
    let image = crate::image::run::resolve(&cfg.state_dir, &cfg.image, &cfg.command)?;
    if image.is_some() && (cfg.rootfs.is_some() || !plan.is_on(StageId::Rootfs)) {
        return Err(Error::usage(
            "an image was given together with --rootfs or without the rootfs stage; an image is the rootfs, so drop one of them",
        ));
    }
    let rootfs = if plan.is_on(StageId::Rootfs) {
        Some(match &cfg.rootfs {
            _ if image.is_some() => image
                .iter()
                .flat_map(|i| i.lower.first())
                .cloned()
                .next()
                .unwrap_or_default(),
            Some(dir) => {
                let canon = std::fs::canonicalize(dir).map_err(|_| {
                    Error::usage(format!(
                        "--rootfs {} does not exist; give a directory that holds a root filesystem (bin/, etc/ ...)",
                        dir.display()
                    ))
                })?;
                if !canon.is_dir() {
                    return Err(Error::usage(format!(
                        "--rootfs {} is not a directory; give a directory that holds a root filesystem",
                        dir.display()
                    )));
                }
                if canon == std::path::Path::new("/") {
                    return Err(Error::usage(
                        "--rootfs / is the host's own root; give a separate directory",
                    ));
                }
                canon
            }
            None => rootfs::default::ensure(&cfg.state_dir, cfg.default_source)?.path,
        })
    } else {
        if cfg.rootfs.is_some() {
            return Err(Error::usage(
                "--rootfs was given but the rootfs stage is off; switch the rootfs stage on or drop --rootfs",
            ));
        }
        None
    };
    let lookup: Vec<PathBuf> = match (&image, &rootfs, plan.switches_root()) {
        (Some(i), _, _) => i.lower.clone(),
        (None, Some(r), true) => vec![r.clone()],
        _ => vec![PathBuf::from("/")],
    };
    let user = match image
        .as_ref()
        .and_then(|i| i.user.clone())
        .or_else(|| cfg.image.user.clone())
    {
        Some(u) => Some(crate::image::user::resolve(&lookup, &u)?),
        None => None,
    };
    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    let hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(|| format!("stagebox-{}", &id[..6]));
    env.push(format!("HOSTNAME={hostname}"));
    env.push("HOME=/root".into());
    env.push("container=stagebox".into());
    if let Ok(term) = std::env::var("TERM") {
        env.push(format!("TERM={term}"));
    }
    if let Some(home) = user.as_ref().and_then(|u| u.home.clone()) {
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={home}"));
    }
    for kv in image.iter().flat_map(|i| i.env.iter()).chain(&cfg.env) {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(Error::usage(format!(
                "--env {kv:?} is not KEY=VALUE; write it as NAME=value"
            )));
        }
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let workdir = cfg
        .workdir
        .clone()
        .or_else(|| image.as_ref().and_then(|i| i.workdir.clone()));
    if let Some(w) = &workdir {
        if !w.starts_with('/') {
            return Err(Error::usage(format!(
                "--workdir {w:?} must be an absolute path inside the container"
            )));
        }
        let host = rootfs::resolve_in_layers(&lookup, std::path::Path::new(w));
        // With an image, a missing working directory is made, as Docker does.
        let ok = match &host {
            Ok(h) => h.is_dir() || (image.is_some() && !h.exists()),
            Err(_) => image.is_some(),
        };
        if !ok {
            return Err(Error::usage(format!(
                "--workdir {w} is not a directory in the container's root filesystem"
            )));
        }
    }
    let (exec, exe) = match &cfg.probe {
        Some(args) => {
            let exe = std::fs::File::open("/proc/self/exe")
                .map_err(|e| Error::io("open /proc/self/exe", e))?;
            let exe: OwnedFd = exe.into();
            let mut argv = vec!["stagebox".to_string(), "probe".to_string()];
            argv.extend(args.iter().cloned());
            (
                ExecSpec {
                    path: "/proc/self/exe".into(),
                    argv,
                    env,
                    workdir: workdir.clone(),
                    exe_fd: Some(exe.as_raw_fd()),
                    user: user.clone(),
                    make_workdir: image.is_some(),
                },
                Some(exe),
            )
        }
        None => {
            let argv = image
                .as_ref()
                .map(|i| i.argv.clone())
                .unwrap_or_else(|| cfg.command.clone());
            let Some(cmd) = argv.first() else {
                return Err(Error::usage(
                    "no command given; write it after --, for example: stagebox run -- /bin/sh",
                ));
            };
            let path = rootfs::resolve_command(&lookup, cmd, &path_var)?;
            (
                ExecSpec {
                    path,
                    argv,
                    env,
                    workdir,
                    exe_fd: None,
                    user,
                    make_workdir: image.is_some(),
                },
                None,
            )
        }
    };
    if rootfs.is_some() {
        crate::stages::rootfs::check_overlay_path(&cfg.state_dir).map_err(Error::Usage)?;
        if let Some(r) = &rootfs {
            crate::stages::rootfs::check_overlay_path(r).map_err(Error::Usage)?;
        }
    }
    Ok(Prepared {
        spec: ChildSpec {
            hostname,
            rootfs,
            root_switch: plan.root_switch,
            overlay: None,
            volumes: Vec::new(),
            read_only: cfg.read_only,
        },
        exec,
        _exe: exe,
        image,
    })
}

fn reason_off(plan: &Plan, id: StageId) -> String {
    plan.stages
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.why.clone())
        .unwrap_or_default()
}

fn chan_err(e: channel::ChannelError) -> Error {
    Error::Stage {
        stage: "run".into(),
        message: e.to_string(),
    }
}

/// The container's record and directory, registered for removal unless the workload starts
/// (and `--rm` was not given).
fn create_container(
    cfg: &RunConfig,
    id: &str,
    prepared: &Prepared,
    undo: &mut Undo,
    started: &std::rc::Rc<std::cell::Cell<bool>>,
) -> Result<crate::state::container::Container> {
    let image = match (&cfg.rootfs, &prepared.spec.rootfs) {
        _ if prepared.image.is_some() => {
            prepared.image.iter().map(|i| i.reference.clone()).collect()
        }
        (Some(dir), _) => dir.display().to_string(),
        (None, Some(r)) => format!(
            "default ({})",
            r.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        (None, None) => "(host filesystem)".into(),
    };
    let command = match &cfg.probe {
        Some(args) => std::iter::once("stagebox probe".to_string())
            .chain(args.iter().cloned())
            .collect(),
        None => prepared.exec.argv.clone(),
    };
    let c = crate::state::container::Container {
        id: id.to_string(),
        name: cfg
            .name
            .clone()
            .unwrap_or_else(|| format!("box-{}", &id[..6])),
        image,
        command,
        created: crate::units::now_secs(),
        status: "created".into(),
        exit_code: None,
        runtime_pid: None,
        pid: None,
        volumes: Vec::new(),
        lower: match &prepared.image {
            Some(i) => i.lower.clone(),
            None => prepared.spec.rootfs.iter().cloned().collect(),
        },
        remove_on_exit: cfg.remove,
        image_id: prepared.image.as_ref().and_then(|i| i.image_id.clone()),
    };
    let dir = c.dir(&cfg.state_dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let (started, remove) = (started.clone(), cfg.remove);
    undo.push(format!("remove container {}", dir.display()), move || {
        if started.get() && !remove {
            return Ok(());
        }
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())
    });
    Ok(c)
}

/// Host-side state of one run: the undo list and what stages keep between their hooks.
struct HostState<'a> {
    cfg: &'a RunConfig,
    id: &'a str,
    undo: Undo,
    data: HashMap<StageId, Box<dyn std::any::Any>>,
    headed: HashSet<StageId>,
    tracing: bool,
}

impl<'a> HostState<'a> {
    fn header(&mut self, id: StageId) {
        if self.tracing && self.headed.insert(id) {
            if let Some(s) = stages::registry::get(id) {
                trace::stage(id.name(), s.info().summary);
            }
        }
    }

    /// Runs one host-side hook of a stage and traces what it did.
    fn hook<T>(
        &mut self,
        id: StageId,
        f: impl FnOnce(&dyn stages::Stage, &mut HostCtx<'_>) -> Result<T>,
    ) -> Result<T> {
        let Some(stage) = stages::registry::get(id) else {
            return Err(Error::Stage {
                stage: id.name().into(),
                message: "this stage is not available in this build".into(),
            });
        };
        let mut ctx = HostCtx {
            limits: &self.cfg.limits,
            id: self.id,
            undo: &mut self.undo,
            data: &mut self.data,
            records: Vec::new(),
            notes: Vec::new(),
            facts: Vec::new(),
        };
        let r = f(stage, &mut ctx);
        let (records, notes, facts) = (ctx.records, ctx.notes, ctx.facts);
        if self.tracing {
            if !records.is_empty() || !notes.is_empty() || !facts.is_empty() {
                self.header(id);
            }
            for rec in &records {
                trace::syscall(id.name(), rec);
            }
            for n in &notes {
                trace::note(id.name(), n);
            }
            for c in &facts {
                trace::fact(id.name(), c);
            }
        }
        r.map_err(|e| match e {
            Error::Stage { .. } | Error::Usage(_) | Error::Plan(_) | Error::NotRoot { .. } => e,
            other => Error::Stage {
                stage: id.name().into(),
                message: other.to_string(),
            },
        })
    }
}

/// Runs the container; returns the workload's exit status (128+N when signal N killed it).
pub fn run(cfg: &RunConfig) -> Result<i32> {
    let id = new_id();
    let mut prepared = prepare(cfg, &id)?;
    let tracing_on = cfg.trace != TraceMode::Off;
    let mut host = HostState {
        cfg,
        id: &id,
        undo: Undo::default(),
        data: HashMap::new(),
        headed: HashSet::new(),
        tracing: tracing_on,
    };
    // From here on the host changes; every change is on the undo list, and what should
    // outlive the run is kept by flipping these flags once the workload has started.
    let started = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut container = create_container(cfg, &id, &prepared, &mut host.undo, &started)?;
    let (mounts, created) = crate::state::volume::materialize(&cfg.state_dir, &cfg.volumes, &id)?;
    for name in created {
        let anonymous = mounts
            .iter()
            .any(|m| m.kind == "anonymous" && m.name.as_deref() == Some(name.as_str()));
        let (state, started, remove) = (cfg.state_dir.clone(), started.clone(), cfg.remove);
        host.undo.push(format!("remove volume {name}"), move || {
            let keep = started.get() && !(anonymous && remove);
            if keep {
                return Ok(());
            }
            crate::state::volume::remove(&state, &name, true).map_err(|e| e.to_string())
        });
    }
    prepared.spec.volumes = mounts.clone();
    container.volumes = mounts;
    if prepared.spec.rootfs.is_some() {
        let ov = crate::stages::OverlaySpec {
            lower: container.lower.clone(),
            upper: container.upper(&cfg.state_dir),
            work: container.work(&cfg.state_dir),
            merged: container.merged(&cfg.state_dir),
        };
        for d in [&ov.upper, &ov.work, &ov.merged] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        }
        prepared.spec.overlay = Some(ov);
    }
    container.save(&cfg.state_dir)?;
    let enabled: Vec<StageId> = cfg
        .plan
        .stages
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.id)
        .collect();
    for sid in &enabled {
        host.hook(*sid, |s, ctx| s.prepare(ctx))?;
    }

    let (mut parent_ch, child_ch) = channel::pair().map_err(chan_err)?;
    // Orphans of the container (the intermediate process of the pid stage's fork, first of
    // all) are re-parented to us, so that we can wait for the workload itself.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::sys(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            nix::errno::Errno::last(),
        ));
    }
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .map_err(|e| Error::sys("sigprocmask", e))?;

    let mut prev = tracing_on.then(|| {
        Snapshot::of(
            std::process::id() as i32,
            InsideFacts::read(),
            std::path::Path::new("/"),
        )
    });
    // Where the workload's future root is, as seen from the container process right now.
    let mut view = PathBuf::from("/");
    let mut pending_notes: Vec<String> = Vec::new();
    let me = nix::unistd::getpid();
    // SAFETY: the runtime is single-threaded here (the trace layer writes synchronously).
    let first = match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(Error::sys("fork", e)),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(parent_ch);
            child::main(
                child_ch,
                &prepared.spec,
                &cfg.plan,
                &prepared.exec,
                tracing_on,
                &old_mask,
                me,
            )
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
    };
    drop(child_ch);
    let mut reaper = Reaper { pids: vec![first] };
    let mut current = first;

    loop {
        let msg = parent_ch.recv::<ToParent>().map_err(chan_err)?;
        match msg {
            None => break,
            Some(ToParent::Handover { pid }) => {
                let pid = Pid::from_raw(pid);
                reaper.pids.push(pid);
                parent_ch.send(&ToChild::Continue).map_err(chan_err)?;
                let _ = waitpid(current, None);
                reaper.pids.retain(|p| *p != current);
                pending_notes.push(format!(
                    "forked: host pid {pid} is PID 1 in the new namespace; the intermediate process {current} exited"
                ));
                current = pid;
            }
            Some(ToParent::Exec) => {
                if tracing_on {
                    trace::note(
                        "exec",
                        &format!(
                            "execve({:?}, {:?}) as host pid {current}",
                            prepared.exec.path, prepared.exec.argv
                        ),
                    );
                }
                parent_ch.send(&ToChild::Continue).map_err(chan_err)?;
            }
            Some(ToParent::Reached { stage }) => {
                host.header(stage);
                host.hook(stage, |s, ctx| s.parent_before(ctx, current))?;
                parent_ch.send(&ToChild::Continue).map_err(chan_err)?;
            }
            Some(ToParent::Done {
                stage,
                enabled,
                syscalls,
                notes,
                inside,
            }) => {
                if tracing_on {
                    let name = stage.name();
                    if enabled {
                        host.header(stage);
                    } else {
                        trace::off(name, &reason_off(&cfg.plan, stage));
                    }
                    for rec in &syscalls {
                        trace::syscall(name, rec);
                    }
                    for n in notes.into_iter().chain(pending_notes.drain(..)) {
                        trace::note(name, &n);
                    }
                }
                if enabled {
                    host.hook(stage, |s, ctx| s.parent_after(ctx, current))?;
                }
                if tracing_on {
                    let name = stage.name();
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
                        for c in diff(p, &snap) {
                            trace::fact(name, &c);
                        }
                    }
                    prev = Some(snap);
                }
                parent_ch.send(&ToChild::Continue).map_err(chan_err)?;
            }
            Some(ToParent::Error {
                stage,
                message,
                syscalls,
            }) => {
                if tracing_on {
                    for rec in &syscalls {
                        trace::syscall(&stage, rec);
                    }
                    trace::error(&stage, &message);
                }
                drop(reaper);
                return Err(Error::Stage { stage, message });
            }
        }
    }
    // End of file: the container process exec'd the workload (its end was close-on-exec).
    drop(parent_ch);
    let workload = current;
    started.set(true);
    container.status = "running".into();
    container.pid = Some(workload.as_raw());
    container.runtime_pid = Some(std::process::id() as i32);
    if let Err(e) = container.save(&cfg.state_dir) {
        trace::error("run", &e.to_string());
    }
    let status = wait_forwarding(workload, &mask)?;
    reaper.pids.clear();
    let stragglers = kill_stragglers();
    if tracing_on && stragglers > 0 {
        trace::note(
            "run",
            &format!("killed {stragglers} process(es) the workload left behind (no PID namespace to end them with it)"),
        );
    }
    container.status = "exited".into();
    container.exit_code = Some(status.code());
    container.pid = None;
    if !cfg.remove {
        if let Err(e) = container.save(&cfg.state_dir) {
            trace::error("run", &e.to_string());
        }
    }
    let mut description = status.describe();
    // Stages that report after the exit get their header again: their lines belong to them,
    // not to the last stage printed.
    host.headed.clear();
    for sid in &enabled {
        match host.hook(*sid, |s, ctx| s.finish(ctx, status)) {
            Ok(Some(d)) => description = d,
            Ok(None) => {}
            Err(e) => trace::error(sid.name(), &e.to_string()),
        }
    }
    if tracing_on {
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

/// Processes of the container still alive after the workload exited: without a PID
/// namespace, its orphans were re-parented to the runtime (a subreaper). Kill and reap them,
/// as Docker does when a container's main process ends. Returns how many there were.
fn kill_stragglers() -> usize {
    let me = std::process::id();
    let mut count = 0;
    for _ in 0..100 {
        let children =
            std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        let pids: Vec<i32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        for p in &pids {
            if waitpid(Pid::from_raw(*p), None).is_ok() {
                count += 1;
            }
        }
    }
    count
}

/// Waits for the workload, forwarding the signals the runtime receives. Signals a terminal
/// sends to the whole foreground process group (Ctrl-C) already reached the workload, which
/// shares that group, so those are not sent twice.
fn wait_forwarding(workload: Pid, mask: &SigSet) -> Result<stages::ExitKind> {
    let sfd =
        SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::sys("signalfd", e))?;
    loop {
        // Reap everything that has exited (orphans of the container come to us too).
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == workload => {
                    return Ok(stages::ExitKind::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == workload => {
                    return Ok(stages::ExitKind::Signaled(sig))
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECHILD) => {
                    return Err(Error::Stage {
                        stage: "run".into(),
                        message: "the workload disappeared without an exit status".into(),
                    })
                }
                Err(e) => return Err(Error::sys("waitpid", e)),
            }
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("read(signalfd)", e)),
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig == Signal::SIGCHLD {
            continue;
        }
        let from_terminal = info.ssi_code == libc::SI_KERNEL;
        if !from_terminal {
            let _ = nix::sys::signal::kill(workload, sig);
        }
    }
}
