//! runc's commands on the containers of one `--root` (a stagebox state directory).
//!
//! The OCI lifecycle: `create` (the container process waits before its exec) → `start` (it
//! execs the workload) → the workload exits (stopped) → `delete` (everything removed).
//! `state` prints the state document an engine reads (`status`, `pid`); `kill` signals the
//! container process (`--all`: every process in its cgroup).

use super::map::Invocation;
use crate::error::{Error, Result};
use crate::runtime::oci;
use crate::state::container::{self, Container};
use std::path::Path;

/// runc's rule for an id: letters, digits, `_`, `+`, `-` and `.`, not `.` or `..`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if !ok {
        return Err(Error::usage(format!(
            "invalid container id {id:?}: use letters, digits, _ + - and . only"
        )));
    }
    Ok(())
}

/// An OCI container of this root by its id (exact, as runc looks it up).
fn find(state: &Path, id: &str) -> Result<Container> {
    let dir = container::containers_dir(state).join(id);
    match Container::load(&dir) {
        Ok(c) if c.oci.is_some() => Ok(c),
        _ => Err(Error::usage(format!("container {id} does not exist"))),
    }
}

/// `create` or `run`: the bundle's container, built stage by stage.
pub fn create(bundle: &Path, inv: &Invocation) -> Result<i32> {
    check_id(&inv.id)?;
    if container::containers_dir(&inv.state_dir)
        .join(&inv.id)
        .exists()
    {
        return Err(Error::usage(format!(
            "container with id exists: {}; `stagebox delete {}` removes it",
            inv.id, inv.id
        )));
    }
    let b = super::bundle::load(bundle)?;
    let mapped = super::map::to_run_config(&b, inv)?;
    if inv.trace != crate::trace::TraceMode::Off {
        for n in &mapped.notes {
            crate::trace::note("oci", n);
        }
    }
    let pid_file_was_there = inv.pid_file.as_deref().is_some_and(Path::exists);
    let r = crate::runtime::run(&mapped.cfg);
    if r.is_err() && !pid_file_was_there {
        // A failed create leaves no pid file an engine could take for a container.
        if let Some(p) = &inv.pid_file {
            let _ = std::fs::remove_file(p);
        }
    }
    if r.is_err() || !inv.create {
        // Failed (runtime::run undid what it made), or `run` ended: nothing stays.
        if let Some(p) = &mapped.cfg.security.seccomp_profile {
            let _ = std::fs::remove_file(p);
        }
    }
    let code = r?;
    if let (true, Some(p)) = (inv.create, &mapped.cfg.security.seccomp_profile) {
        // The profile lives with the container from now on (`exec` compiles it again), and
        // goes with its directory.
        let kept = container::containers_dir(&inv.state_dir)
            .join(&inv.id)
            .join("seccomp.json");
        if std::fs::rename(p, &kept).is_ok() {
            let _ = container::update(&inv.state_dir, &inv.id, |rec| {
                rec.exec.seccomp = Some(kept.display().to_string());
            });
        }
    }
    if !inv.create {
        // runc run: the container is deleted once its process exits (this process was its
        // runtime: the record must not send `delete` after it).
        let _ = container::update(&inv.state_dir, &inv.id, |rec| {
            rec.runtime_pid = None;
            rec.runtime_start = None;
        });
        let _ = delete(&inv.state_dir, &inv.id, true);
    }
    Ok(code)
}

/// `start`: the waiting container process execs its workload.
pub fn start(state: &Path, id: &str) -> Result<()> {
    let c = find(state, id)?;
    match c.oci_status() {
        "created" => {}
        other => {
            return Err(Error::usage(format!(
                "cannot start a container that is {other}; only a created container starts (`stagebox create` first)"
            )))
        }
    }
    let o = c.oci.clone().unwrap_or_default();
    let who = oci::Identity {
        id: &c.id,
        bundle: &o.bundle,
        annotations: &o.annotations,
        hooks: o.hooks.as_ref(),
    };
    oci::start(&c.dir(state), &who, c.pid)?;
    container::update(state, &c.id, |rec| rec.status = "running".into())?;
    Ok(())
}

/// `state`: the OCI state document.
pub fn state(state: &Path, id: &str) -> Result<String> {
    let c = find(state, id)?;
    let o = c.oci.clone().unwrap_or_default();
    let mut v = oci::state_json(
        &c.id,
        c.oci_status(),
        c.live_workload(),
        &o.bundle,
        &o.annotations,
    );
    // runc's extra fields, which engines print in their errors.
    v["rootfs"] = c
        .lower
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
        .into();
    v["created"] = o.created.clone().into();
    v["owner"] = "".into();
    serde_json::to_string_pretty(&v).map_err(|e| Error::usage(e.to_string()))
}

/// `kill ID [SIGNAL]` (default SIGTERM, as runc); `--all`: every process of the container.
pub fn kill(state: &Path, id: &str, signal: &str, all: bool) -> Result<()> {
    let c = find(state, id)?;
    let sig = parse_signal(signal)?;
    let Some(pid) = c.live_workload() else {
        return Err(Error::usage(format!("container {id} is not running")));
    };
    if all {
        for p in pids_of(pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .map_err(|e| Error::sys(format!("kill({pid}, {sig})"), e))
}

/// Every process in the container's cgroup (the first hierarchy it is in), or its own pid.
fn pids_of(pid: i32) -> Vec<i32> {
    crate::cgroup::member::of_pid(pid)
        .ok()
        .and_then(|m| m.first().map(|m| crate::cgroup::member::procs(&m.dir)))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![pid])
}

/// runc takes `KILL`, `SIGKILL` or `9`.
fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map_err(|_| Error::usage(format!("unknown signal {s:?}")));
    }
    crate::runtime::lifecycle::parse_signal(s, "kill")
}

/// `delete [--force]`: a stopped container (or, with force, a running one, killed first)
/// and everything it left on the host; then the poststop hooks.
pub fn delete(state: &Path, id: &str, force: bool) -> Result<()> {
    let c = match find(state, id) {
        Ok(c) => c,
        // Engines delete --force after a failed create, whatever was made: nothing is fine.
        Err(_) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = c.oci_status();
    // runc deletes a created container (its waiting process killed) without --force.
    if matches!(status, "running" | "paused") && !force {
        return Err(Error::usage(format!(
            "cannot delete container {id} that is not stopped: {status}; stop it first or use delete --force"
        )));
    }
    let o = c.oci.clone().unwrap_or_default();
    crate::runtime::cleanup::remove(state, &c.id, true)?;
    let _ = std::fs::remove_file(state.join(format!("seccomp-{}.json", c.id)));
    // As runc leaves its --root: nothing once the last container is deleted.
    let _ = std::fs::remove_dir(container::containers_dir(state));
    if let Some(h) = &o.hooks {
        let st = oci::state_json(&c.id, "stopped", None, &o.bundle, &o.annotations);
        if let Err(e) = oci::run_hooks("poststop", h.poststop().as_deref().unwrap_or_default(), &st)
        {
            // runc: poststop failures are logged; the container is gone anyway.
            eprintln!("stagebox: {e}");
        }
    }
    Ok(())
}

/// runc's `exec` flags.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub id: String,
    pub process: Option<std::path::PathBuf>,
    pub detach: bool,
    pub pid_file: Option<std::path::PathBuf>,
    pub console_socket: Option<std::path::PathBuf>,
    pub tty: bool,
    pub cwd: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub command: Vec<String>,
}

/// `exec`: a new process in the container, from `--process FILE` (a process.json) or the
/// arguments; by setns, as `stagebox exec`.
pub fn exec(state: &Path, a: &ExecRequest) -> Result<i32> {
    let c = find(state, &a.id)?;
    if c.oci_status() != "running" {
        return Err(Error::usage(format!(
            "cannot exec in container {} that is {}",
            a.id,
            c.oci_status()
        )));
    }
    let mut argv = a.command.clone();
    let mut env = a.env.clone();
    let mut cwd = a.cwd.clone();
    let mut user = a.user.clone();
    let mut terminal = a.tty;
    if let Some(file) = &a.process {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::usage(format!("{} cannot be read: {e}", file.display())))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let p: oci_spec::runtime::Process = serde_path_to_error::deserialize(de).map_err(|e| {
            Error::usage(format!(
                "{}: field {}: {}",
                file.display(),
                e.path(),
                e.inner()
            ))
        })?;
        argv = p.args().clone().unwrap_or_default();
        env.extend(p.env().clone().unwrap_or_default());
        cwd = Some(p.cwd().to_string_lossy().into_owned());
        user = Some(format!("{}:{}", p.user().uid(), p.user().gid()));
        terminal = terminal || p.terminal().unwrap_or(false);
    }
    if argv.is_empty() {
        return Err(Error::usage(
            "exec needs a command: give it after the id, or in --process FILE's args",
        ));
    }
    let console = match (terminal, &a.console_socket) {
        (true, Some(s)) => Some(oci::console_connect(s)?),
        (true, None) => {
            return Err(Error::usage(
                "a terminal needs --console-socket: the terminal's master must go to someone",
            ))
        }
        (false, _) => None,
    };
    use std::os::fd::AsRawFd as _;
    let opts = crate::runtime::exec::ExecOptions {
        container: c.id.clone(),
        argv,
        env,
        workdir: cwd,
        user,
        interactive: false,
        tty: false,
        detach: a.detach,
        tracing: false,
        pid_file: a.pid_file.clone(),
        console: console.as_ref().map(|f| f.as_raw_fd()),
        stdio_as_given: true,
    };
    crate::runtime::exec::exec(state, &opts)
}

/// `pause` and `resume`: the cgroup freezer.
pub fn pause(state: &Path, id: &str, frozen: bool) -> Result<()> {
    let c = find(state, id)?;
    crate::runtime::ops::pause(state, &c.id, frozen).map(|_| ())
}

/// `ps [--format table|json] ID`: the container's processes (host pids).
pub fn ps(state: &Path, id: &str, format: &str) -> Result<String> {
    let c = find(state, id)?;
    let Some(pid) = c.live_workload() else {
        return Err(Error::usage(format!("container {id} is not running")));
    };
    let pids = pids_of(pid);
    match format {
        "json" => serde_json::to_string(&pids).map_err(|e| Error::usage(e.to_string())),
        "table" => crate::runtime::ops::top(state, &c.id),
        other => Err(Error::usage(format!(
            "unknown --format {other:?}; use table or json"
        ))),
    }
}

/// `features`: what this runtime implements, as the OCI features document.
pub fn features() -> String {
    let caps: Vec<String> = crate::confine::caps::NAMES
        .iter()
        .map(|n| format!("CAP_{n}"))
        .collect();
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "private", "rprivate", "slave", "rslave", "shared", "rshared"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runc.version": "stagebox", "io.github.stagebox.version": env!("CARGO_PKG_VERSION")}
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// `spec`: a config.json to start from (runc's default: `sh` on `rootfs`, with a terminal).
pub fn spec(bundle: &Path, rootless: bool) -> Result<()> {
    let file = bundle.join("config.json");
    if file.exists() {
        return Err(Error::usage(format!(
            "{} exists already; remove it or choose another --bundle",
            file.display()
        )));
    }
    let mut s = if rootless {
        oci_spec::runtime::Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        oci_spec::runtime::Spec::default()
    };
    s.set_version("1.2.0".into());
    s.set_hostname(Some("stagebox".into()));
    let text = serde_json::to_string_pretty(&s).map_err(|e| Error::usage(e.to_string()))?;
    crate::state::atomic::write_atomic(&file, format!("{text}\n").as_bytes())
}
