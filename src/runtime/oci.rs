//! The runtime side of an OCI bundle's container (`stagebox create`, runc's command line).
//!
//! An engine (podman's conmon, containerd's shim) splits a run in two. `create` builds the
//! container, every stage done, and stops the container process right before it would exec
//! the workload; the runtime then *exits*, leaving that process to the engine, which has
//! made itself a subreaper (PR_SET_CHILD_SUBREAPER) so the process becomes its child and it
//! collects the exit status itself. `start` later lets the process go on.
//!
//! The wait is runc's `exec.fifo`: a named pipe in the container's state directory. Opening
//! a FIFO for writing blocks until someone opens it for reading. The container process opens
//! its directory before the root switch (a descriptor still reaches it after pivot_root) and,
//! as its very last step, `openat(dir, "exec.fifo", O_WRONLY)`: it sleeps there, in the
//! kernel, until `start` opens the FIFO for reading; then it writes one byte and execs.
//! The container process must not die with the runtime that made it (PR_SET_PDEATHSIG):
//! it drops that before it reports the exec step, so `create` may exit.
//!
//! Nothing host-side is undone when `create` exits: the cgroup, the container's directory
//! and what the stages made stay until `delete` (`runtime::cleanup`), as with runc.
//!
//! A terminal (`process.terminal`): the runtime opens a pseudo-terminal, the slave becomes
//! the container's 0, 1 and 2, and the master goes to the engine over `--console-socket`
//! with SCM_RIGHTS, as runc sends it.
//!
//! Hooks (`hooks` in config.json) run as host processes with the container's state JSON on
//! their stdin: `prestart`, `createRuntime` and `createContainer` by `create` once the
//! container process waits (runc runs the last one inside the container's mount namespace,
//! before pivot_root: stagebox runs it from the host, after), `startContainer` and
//! `poststart` by `start`, `poststop` by `delete`. A failing hook before the start fails the
//! command, and `create` then removes what it made.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The FIFO `start` opens, in the container's state directory.
pub const EXEC_FIFO: &str = "exec.fifo";

/// What the OCI command line adds to a run.
#[derive(Debug, Clone, Default)]
pub struct OciRun {
    /// The bundle directory (its `config.json` and rootfs).
    pub bundle: PathBuf,
    /// `create` (or `run --detach`): stop before the exec until `start`, and exit at once.
    pub create: bool,
    /// `--pid-file`: the container process's host pid, written once it waits.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`: where the pty's master goes (with `process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// `process.terminal`.
    pub terminal: bool,
    /// `linux.cgroupsPath`: `/PARENT/LEAF`, the container's cgroup in every hierarchy.
    pub cgroups_path: Option<(String, String)>,
    /// `annotations`, kept for `state`.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Hooks of the config, kept in the record (`poststart`, `poststop`) or run here.
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// `process.oomScoreAdj`, written to /proc/PID/oom_score_adj of the container process.
    pub oom_score_adj: Option<i32>,
    /// `linux.sysctl`: written inside the container after the proc stage.
    pub sysctl: Vec<(String, String)>,
    /// A `/sys/fs/cgroup` mount of type cgroup: the container's own cgroup directories.
    pub cgroup_mount: bool,
    /// `linux.namespaces[i].path`: namespaces the uts, ipc, net and cgroupns stages join.
    pub joins: Vec<crate::stages::NsJoin>,
    /// A `/dev/mqueue` mount of type mqueue: the proc stage makes it.
    pub mqueue: bool,
    /// `process.capabilities`: the five sets (the caps stage, and the exec step after a
    /// switch to a user other than root).
    pub caps: Option<crate::confine::caps::CapSets>,
}

/// The directory that holds the FIFO, in the container's directory.
const FIFO_DIR: &str = "exec";

fn fifo_path(container_dir: &Path) -> PathBuf {
    container_dir.join(FIFO_DIR).join(EXEC_FIFO)
}

/// Makes the FIFO and opens its directory for the container process (close-on-exec: the
/// workload never sees it). The container process opens the FIFO through that descriptor,
/// so no directory above it is searched: `exec/` is 0711 and the FIFO 0622, which a
/// container root mapped to another host uid (the user stage) may still open for writing,
/// while the state directory (0700) keeps every other host user away from both.
pub fn make_fifo(container_dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = container_dir.join(FIFO_DIR);
    std::fs::create_dir(&dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))?;
    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo({})", fifo.display()), e))?;
    // mkfifo's mode passes through the umask: set it as meant.
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))
        .map_err(|e| Error::io(format!("chmod {}", fifo.display()), e))?;
    let fd = nix::fcntl::open(
        &dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open({})", dir.display()), e))?;
    Ok(fd)
}

/// In the container process, last thing before the exec: block until `start`.
pub fn wait_for_start(dir: RawFd) -> std::result::Result<(), String> {
    let name = c"exec.fifo";
    let fd = loop {
        // SAFETY: openat on a descriptor this process holds, with a NUL-terminated name.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        let e = nix::errno::Errno::last();
        if e != nix::errno::Errno::EINTR {
            return Err(format!("open(exec.fifo, O_WRONLY): {e}"));
        }
    };
    // SAFETY: a descriptor just opened and owned here.
    let f = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::unistd::write(&f, b"0");
    Ok(())
}

/// `start`: opens the FIFO for reading (the waiting container process goes on) and reads its
/// byte; gives up after `timeout` if the process never comes (it died meanwhile).
pub fn release(container_dir: &Path, timeout: std::time::Duration) -> Result<()> {
    let fifo = fifo_path(container_dir);
    let f = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open({})", fifo.display()), e))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(&f, &mut b) {
            Ok(1) => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("read(exec.fifo)", e)),
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::usage(
                "the container process did not take the start signal (it is gone); `delete` it and create it again",
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_dir(container_dir.join(FIFO_DIR));
    Ok(())
}

/// Whether the container still waits for `start`.
pub fn waits_for_start(container_dir: &Path) -> bool {
    fifo_path(container_dir).exists()
}

/// `--pid-file`: the pid, written atomically (engines read it as soon as `create` returns).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::state::atomic::write_atomic(path, pid.to_string().as_bytes())
}

/// `process.terminal`: connects to the engine's console socket, from the host, before the
/// container exists; the container process keeps the connection (`console_inside`).
pub fn console_connect(socket: &Path) -> Result<OwnedFd> {
    let stream = crate::kernel::unixsock::connect(socket).map_err(|e| {
        Error::io(
            format!("connect to the console socket {}", socket.display()),
            e,
        )
    })?;
    Ok(OwnedFd::from(stream))
}

/// In the container process (or an exec'd one), its root switched: a pty from the
/// container's own devpts (`/dev/ptmx`, so `tty` names a /dev/pts device the container can
/// see), the master sent to the engine over `sock` with SCM_RIGHTS as runc sends it, the
/// slave made 0, 1 and 2 and the controlling terminal of a new session.
pub fn console_inside(sock: RawFd) -> std::result::Result<(), String> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("open(/dev/ptmx): {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open({name}): {e}"))?;
    let fds = [master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    nix::sys::socket::sendmsg::<()>(sock, &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| format!("sendmsg(console socket, SCM_RIGHTS): {e}"))?;
    drop(master);
    // SAFETY: close of the inherited socket, which this process owns and no longer needs.
    unsafe { libc::close(sock) };
    let _ = nix::unistd::setsid();
    for target in 0..3 {
        // SAFETY: dup2 of a descriptor this process holds onto 0, 1, 2.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(format!(
                "dup2(pty, {target}): {}",
                nix::errno::Errno::last()
            ));
        }
    }
    // SAFETY: TIOCSCTTY on descriptor 0 with argument 0 (never steal another session's).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!(
            "ioctl(0, TIOCSCTTY): {}",
            nix::errno::Errno::last()
        ));
    }
    Ok(())
}

/// `process.oomScoreAdj`, written for the container process from the host and read back.
pub fn set_oom_score_adj(pid: i32, value: i32) -> Result<()> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, value.to_string()).map_err(|e| Error::io(format!("write {path}"), e))?;
    let back = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("read {path}"), e))?;
    if back.trim() != value.to_string() {
        return Err(Error::usage(format!(
            "process.oomScoreAdj {value} did not take effect: {path} says {}",
            back.trim()
        )));
    }
    Ok(())
}

/// The OCI state document (what `state` prints and a hook reads on its stdin).
pub fn state_json(
    id: &str,
    status: &str,
    pid: Option<i32>,
    bundle: &Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": "1.2.0",
        "id": id,
        "status": status,
        "bundle": bundle,
    });
    if let Some(p) = pid.filter(|_| status != "stopped") {
        v["pid"] = p.into();
    } else {
        v["pid"] = 0.into();
    }
    if !annotations.is_empty() {
        v["annotations"] = serde_json::to_value(annotations).unwrap_or_default();
    }
    v
}

/// Runs hooks in order, each with `state` on its stdin; the first that fails (or outlives its
/// `timeout`) ends the list with one sentence naming it.
pub fn run_hooks(
    kind: &str,
    hooks: &[oci_spec::runtime::Hook],
    state: &serde_json::Value,
) -> Result<()> {
    use std::io::Write as _;
    for (i, h) in hooks.iter().enumerate() {
        let path = h.path();
        let args = h.args().clone().unwrap_or_default();
        let mut cmd = std::process::Command::new(path);
        if let Some(first) = args.first() {
            use std::os::unix::process::CommandExt as _;
            cmd.arg0(first);
        }
        cmd.args(args.iter().skip(1));
        cmd.env_clear();
        for e in h.env().iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(std::process::Stdio::piped());
        cmd.stdout(std::process::Stdio::null());
        cmd.stderr(std::process::Stdio::piped());
        let what = format!("hooks.{kind}[{i}] ({})", path.display());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::usage(format!("{what} could not start: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(state.to_string().as_bytes());
        }
        let limit =
            std::time::Duration::from_secs(h.timeout().filter(|t| *t > 0).unwrap_or(60) as u64);
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if std::time::Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::usage(format!(
                        "{what} did not finish within its timeout of {} s",
                        limit.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(e) => return Err(Error::io(format!("wait for {what}"), e)),
            }
        };
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read as _;
                let _ = e.read_to_string(&mut err);
            }
            let err = err.trim();
            return Err(Error::usage(format!(
                "{what} failed ({status}){}",
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            )));
        }
    }
    Ok(())
}

/// Who an OCI container is, for its state document and its hooks.
pub struct Identity<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub annotations: &'a std::collections::BTreeMap<String, String>,
    pub hooks: Option<&'a oci_spec::runtime::Hooks>,
}

impl Identity<'_> {
    fn state(&self, status: &str, pid: Option<i32>) -> serde_json::Value {
        state_json(self.id, status, pid, self.bundle, self.annotations)
    }
}

/// After `create` made the container: prestart, createRuntime, createContainer.
pub fn created_hooks(who: &Identity<'_>, pid: i32) -> Result<()> {
    let Some(h) = who.hooks else {
        return Ok(());
    };
    // runc gives these three the status "creating": `create` has not returned yet.
    let state = who.state("creating", Some(pid));
    for (kind, list) in [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
    ] {
        run_hooks(kind, list.as_deref().unwrap_or_default(), &state)?;
    }
    Ok(())
}

/// `start`: startContainer hooks, the FIFO released (the process execs), poststart hooks (a
/// failing one is reported; the container keeps running, as with runc).
pub fn start(container_dir: &Path, who: &Identity<'_>, pid: Option<i32>) -> Result<()> {
    let none = oci_spec::runtime::Hooks::default();
    let hooks = who.hooks.unwrap_or(&none);
    run_hooks(
        "startContainer",
        hooks.start_container().as_deref().unwrap_or_default(),
        &who.state("created", pid),
    )?;
    release(container_dir, std::time::Duration::from_secs(10))?;
    if let Err(e) = run_hooks(
        "poststart",
        hooks.poststart().as_deref().unwrap_or_default(),
        &who.state("running", pid),
    ) {
        eprintln!("stagebox: {e}");
    }
    Ok(())
}
