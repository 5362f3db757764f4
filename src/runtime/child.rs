//! The container process: applies the stages one by one, reporting each to the runtime and
//! waiting for its go-ahead, then execs the workload.
//!
//! It runs right after fork(2) in a single-threaded process, and never returns: it ends in
//! execve(2) or in _exit(2). Every failure is sent to the runtime as a message naming the
//! stage, and the process exits 125.

use super::channel::{Channel, ToChild, ToParent};
use crate::kernel::observe::InsideFacts;
use crate::kernel::sys::{RealSys, Sys, SyscallRecord};
use crate::stages::plan::Plan;
use crate::stages::{self, ChildCtx, ChildSpec, StageError};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// What the container execs at the end.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The program's path inside the container (ignored when `exe_fd` is set).
    pub path: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// An fd on stagebox's own executable: exec it with fexecve, nothing copied into the rootfs.
    pub exe_fd: Option<RawFd>,
    /// Switch to this user (image `User` or `--user`) just before exec.
    pub user: Option<crate::image::user::Ids>,
    /// Make the working directory if it is missing (an image's WorkingDir, as Docker does).
    pub make_workdir: bool,
    /// `--preserve-fds N`: descriptors 3 .. 3+N-1 stay open across exec; all others above 2
    /// are closed.
    pub preserve_fds: u32,
    /// `--init`: exec stagebox's own `init` (through `exe_fd`), which runs the command.
    pub init: bool,
    /// A detached run: what the container process puts on 0, 1 and 2 as its first step
    /// (pipes, or a pty's slave), instead of the monitor's own.
    pub stdio: Option<[RawFd; 3]>,
    /// `-t`: become a session leader with the pty (on 0) as controlling terminal before exec.
    pub tty: bool,
    /// An OCI `create`: the container's directory, where the process waits on `exec.fifo`
    /// for `start` before the exec (`runtime::oci`).
    pub start_fifo: Option<RawFd>,
    /// An OCI `process.terminal`: the connected console socket; the pty is opened inside
    /// the container at the exec step (`runtime::oci::console_inside`).
    pub console: Option<RawFd>,
}

struct Failure {
    stage: String,
    message: String,
    syscalls: Vec<SyscallRecord>,
    /// The command cannot be exec'd: Docker's exit status for it (127 or 126), not 125.
    exit: Option<i32>,
}

fn fail(stage: &str, e: impl std::fmt::Display) -> Failure {
    Failure {
        stage: stage.to_string(),
        message: e.to_string(),
        syscalls: Vec::new(),
        exit: None,
    }
}

fn not_runnable(e: crate::rootfs::NotRunnable) -> Failure {
    Failure {
        stage: "exec".into(),
        message: e.message,
        syscalls: Vec::new(),
        exit: Some(e.code),
    }
}

/// The path and argv to exec. The command is looked up here, inside the container after the
/// root switch and with the volumes mounted (so a command on a volume is found), with the
/// container's PATH, as execvp(3) would; with `--init`, stagebox's own file is exec'd as
/// `stagebox init -- PATH ARGS...`. Not found is 127, found but not runnable 126.
fn resolve_exec(exec: &ExecSpec) -> Result<(String, Vec<String>), Failure> {
    if exec.exe_fd.is_some() && !exec.init {
        return Ok((exec.path.clone(), exec.argv.clone()));
    }
    let Some(cmd) = exec.argv.first() else {
        return Err(fail("exec", "no command given"));
    };
    let path_var = exec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::rootfs::DEFAULT_PATH);
    let cwd = exec.workdir.as_deref().map(std::path::Path::new);
    let path = crate::rootfs::lookup_command(cmd, path_var, cwd).map_err(not_runnable)?;
    if exec.init {
        let mut argv: Vec<String> = vec!["stagebox".into(), "init".into(), "--".into(), path];
        argv.extend(exec.argv.iter().skip(1).cloned());
        return Ok(("/proc/self/exe".into(), argv));
    }
    Ok((path, exec.argv.clone()))
}

fn wait_continue(ch: &mut Channel, stage: &str) -> Result<(), Failure> {
    match ch.recv::<ToChild>() {
        Ok(Some(ToChild::Continue)) => Ok(()),
        Ok(None) => Err(fail(stage, "the runtime went away")),
        Err(e) => Err(fail(stage, e)),
    }
}

pub fn main(
    mut ch: Channel,
    spec: &ChildSpec,
    plan: &Plan,
    exec: &ExecSpec,
    trace: bool,
    old_mask: &SigSet,
    parent: nix::unistd::Pid,
) -> ! {
    let code = match run(&mut ch, spec, plan, exec, trace, old_mask, parent) {
        Ok(never) => match never {},
        Err(f) => match f.exit {
            Some(code) => {
                let _ = ch.send(&ToParent::NotRunnable {
                    message: f.message,
                    code,
                });
                code
            }
            None => {
                let _ = ch.send(&ToParent::Error {
                    stage: f.stage,
                    message: f.message,
                    syscalls: f.syscalls,
                });
                125
            }
        },
    };
    // SAFETY: _exit(2) ends this forked process without running the parent's atexit
    // handlers or flushing its copies of stdio buffers.
    unsafe { libc::_exit(code) }
}

fn set_pdeathsig() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no memory is passed.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

/// Forks for the pid stage. Returns in the new child (PID 1 of the new namespace); the
/// intermediate process hands the child over to the runtime and exits.
fn fork_for_pid(ch: &mut Channel, syscalls: &mut Vec<SyscallRecord>) -> Result<(), Failure> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pid", e))?;
    // SAFETY: this process is single-threaded (a forked child of the runtime).
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(fail("pid", StageError::sys("fork()", e))),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(r);
            let _ = ch.send(&ToParent::Handover {
                pid: child.as_raw(),
            });
            let _ = ch.recv::<ToChild>();
            drop(w);
            // SAFETY: see `main`.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(w);
            // Wait until the intermediate process has exited: the pipe's write end closes
            // with it. Until then the runtime's replies are for that process, not this one.
            let mut b = [0u8; 1];
            loop {
                match nix::unistd::read(&r, &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => break,
                }
            }
            drop(r);
            syscalls.push(SyscallRecord {
                call: "fork()".into(),
                result: "0 (this is the child: PID 1 in the new namespace)".into(),
            });
            stages::pid::verify_pid1().map_err(|e| fail("pid", e))
        }
    }
}

fn run(
    ch: &mut Channel,
    spec: &ChildSpec,
    plan: &Plan,
    exec: &ExecSpec,
    trace: bool,
    old_mask: &SigSet,
    parent: nix::unistd::Pid,
) -> Result<std::convert::Infallible, Failure> {
    set_pdeathsig();
    if nix::unistd::getppid() != parent {
        return Err(fail(
            "run",
            "the runtime exited before the container started",
        ));
    }
    if let Some(stdio) = exec.stdio {
        take_stdio(stdio)?;
    }
    let mut root: Option<PathBuf> = None;
    for planned in &plan.stages {
        let name = planned.id.name();
        let stage = stages::registry::get(planned.id)
            .ok_or_else(|| fail(name, "this stage is not available in this build"))?;
        let mut fds = Vec::new();
        if planned.enabled && stage.waits_for_parent(spec) {
            ch.send(&ToParent::Reached { stage: planned.id })
                .map_err(|e| fail(name, e))?;
            wait_continue(ch, name)?;
            fds = ch.take_fds();
        }
        let mut sys = RealSys::new();
        let (mut result, mut notes, fork_requested, new_root, mut extra) = {
            let mut ctx = ChildCtx::new(&mut sys, spec);
            ctx.root = root.clone();
            ctx.fds = fds;
            let r = if planned.enabled {
                stage.apply(&mut ctx)
            } else {
                stage.when_off(&mut ctx)
            };
            (
                r,
                std::mem::take(&mut ctx.notes),
                ctx.fork_requested,
                ctx.root.clone(),
                std::mem::take(&mut ctx.records),
            )
        };
        if result.is_ok() && planned.enabled && stage.parent_acts_midway(spec) {
            // The runtime acts now (the user stage: it writes the maps), then the second half.
            let mut syscalls = sys.take_log();
            syscalls.append(&mut extra);
            ch.send(&ToParent::Midway {
                stage: planned.id,
                syscalls,
                notes: std::mem::take(&mut notes),
            })
            .map_err(|e| fail(name, e))?;
            wait_continue(ch, name)?;
            let mut ctx = ChildCtx::new(&mut sys, spec);
            ctx.root = new_root.clone();
            result = stage.apply_after_parent(&mut ctx);
            notes = std::mem::take(&mut ctx.notes);
            extra = std::mem::take(&mut ctx.records);
        }
        let mut syscalls = sys.take_log();
        syscalls.append(&mut extra);
        if let Err(e) = result {
            return Err(Failure {
                stage: name.to_string(),
                message: e.0,
                syscalls,
                exit: None,
            });
        }
        root = new_root;
        if planned.id == stages::StageId::Proc && planned.enabled && !spec.sysctl.is_empty() {
            write_sysctls(&spec.sysctl, root.as_deref(), &mut syscalls)
                .map_err(|e| fail(name, e))?;
        }
        if fork_requested {
            fork_for_pid(ch, &mut syscalls)?;
        }
        ch.send(&ToParent::Done {
            stage: planned.id,
            enabled: planned.enabled,
            syscalls,
            notes,
            inside: trace.then(InsideFacts::read),
        })
        .map_err(|e| fail(name, e))?;
        wait_continue(ch, name)?;
        if fork_requested {
            // Reparented to the runtime by now (it reaped the intermediate process before
            // saying continue), so the death signal now follows the runtime itself.
            set_pdeathsig();
        }
    }
    let (path, argv) = resolve_exec(exec)?;
    if let Some(sock) = exec.console {
        super::oci::console_inside(sock).map_err(|e| fail("exec", e))?;
    }
    if exec.start_fifo.is_some() {
        // `create` exits once this process waits for `start`; it must not take it along.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    }
    ch.send(&ToParent::Exec {
        path: path.clone(),
        argv: argv.clone(),
    })
    .map_err(|e| fail("exec", e))?;
    wait_continue(ch, "exec")?;
    if let Some(dir) = exec.start_fifo {
        ch.hang_up();
        super::oci::wait_for_start(dir).map_err(|e| fail("exec", e))?;
    }
    // With the maps written by the user itself the kernel denies setgroups(2) for good
    // (/proc/PID/setgroups "deny"); the supplementary groups stay as they are.
    let may_setgroups = !matches!(
        spec.userns.as_ref().map(|u| &u.writer),
        Some(crate::stages::MapWriter::Unprivileged)
    );
    do_exec(
        exec,
        &path,
        &argv,
        old_mask,
        may_setgroups,
        spec.confine.oci_sets,
    )
}

/// An OCI config's `linux.sysctl`: each key written under the container's fresh /proc/sys
/// (its own namespaces: a net.* key is this network namespace's) and read back.
fn write_sysctls(
    sysctl: &[(String, String)],
    root: Option<&std::path::Path>,
    syscalls: &mut Vec<SyscallRecord>,
) -> Result<(), String> {
    let base = root
        .map(|r| r.join("proc/sys"))
        .unwrap_or_else(|| PathBuf::from("/proc/sys"));
    for (key, value) in sysctl {
        if key.contains("..") || key.starts_with('/') {
            return Err(format!("linux.sysctl {key:?} is not a sysctl name"));
        }
        let path = base.join(key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| format!("linux.sysctl {key}: write {}: {e}", path.display()))?;
        let back = std::fs::read_to_string(&path).unwrap_or_default();
        let same = back.split_whitespace().eq(value.split_whitespace());
        if !same {
            return Err(format!(
                "linux.sysctl {key}={value:?} did not take effect: {} says {:?}",
                path.display(),
                back.trim()
            ));
        }
        syscalls.push(SyscallRecord {
            call: format!("write(\"/proc/sys/{}\", {value:?})", key.replace('.', "/")),
            result: format!("0 (reads back {:?})", back.trim()),
        });
    }
    Ok(())
}

/// A detached run: the workload's pipes or pty become this process's 0, 1 and 2, first of
/// all, so the caller's terminal is let go of at once and nothing of the monitor's reaches
/// the workload (the originals are close-on-exec).
fn take_stdio(stdio: [RawFd; 3]) -> Result<(), Failure> {
    for (target, fd) in stdio.into_iter().enumerate() {
        // SAFETY: dup2 on descriptors this process inherited from the runtime, still open.
        if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
            return Err(fail(
                "run",
                StageError::sys(&format!("dup2({fd}, {target})"), nix::errno::Errno::last()),
            ));
        }
    }
    Ok(())
}

/// `-t`: a new session whose controlling terminal is the pty on 0, as a terminal's login
/// shell has (`test -t 0` is true, and job control works).
fn take_terminal() -> Result<(), Failure> {
    nix::unistd::setsid().map_err(|e| fail("exec", StageError::sys("setsid()", e)))?;
    // SAFETY: TIOCSCTTY on descriptor 0 with argument 0 (never steal another session's).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(fail(
            "exec",
            StageError::sys("ioctl(0, TIOCSCTTY)", nix::errno::Errno::last()),
        ));
    }
    Ok(())
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, Failure> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| fail("exec", format!("{s:?} contains a NUL byte")))
        })
        .collect()
}

/// Marks every descriptor from `first` up close-on-exec, as runc's `CloseExecFrom(3 +
/// preserveFds)` does: a descriptor the caller had open (`exec 9</some/host/dir; stagebox
/// run ...`) would otherwise reach the workload, which could walk the host's tree through
/// `/proc/self/fd/9` whatever the root switch did. Marking instead of closing keeps the
/// channel and the fd fexecve uses working until the exec itself (fexecve of an ELF file
/// through a close-on-exec fd is fine). The runtime's own descriptors are opened
/// close-on-exec already (Rust's std does it); this catches the inherited ones.
///
/// close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11) does it in one call; when that fails,
/// the descriptors listed in /proc/self/fd are marked one by one with fcntl(F_SETFD), and
/// without /proc every number up to the soft RLIMIT_NOFILE is tried.
fn close_on_exec_from(first: u32) -> Result<(), Failure> {
    // SAFETY: close_range takes three integers; with CLOSE_RANGE_CLOEXEC it closes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let first = first as RawFd;
    if r != 0 {
        // ENOSYS or EINVAL from an older kernel, or EPERM from a seccomp profile that does
        // not list close_range (the seccomp stage ran already): one by one instead.
        cloexec_one_by_one(first)?;
    }
    // Read back: every descriptor still open from `first` up is close-on-exec.
    if let Some(fds) = open_fds_from(first) {
        for fd in fds {
            if let Ok(false) = is_cloexec(fd) {
                return Err(fail(
                    "exec",
                    StageError::no_effect(format!(
                        "descriptor {fd} is not close-on-exec after close_range({first}, ~0U, CLOSE_RANGE_CLOEXEC)"
                    )),
                ));
            }
        }
    }
    Ok(())
}

/// The descriptors from `first` up that /proc/self/fd lists (None without /proc).
fn open_fds_from(first: RawFd) -> Option<Vec<RawFd>> {
    let rd = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd >= first)
            .collect(),
    )
}

fn is_cloexec(fd: RawFd) -> nix::Result<bool> {
    // SAFETY: F_GETFD only reads the descriptor's flags; a number not open gives EBADF.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)?;
    Ok(nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC))
}

/// close_range's fallback: fcntl(F_SETFD, FD_CLOEXEC) on each descriptor /proc/self/fd lists
/// from `first` up, or on every number up to the soft RLIMIT_NOFILE without /proc.
fn cloexec_one_by_one(first: RawFd) -> Result<(), Failure> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fds = open_fds_from(first).unwrap_or_else(|| {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft.min(1 << 20) as RawFd)
            .unwrap_or(1024);
        (first..limit).collect()
    });
    for raw in fds {
        // SAFETY: only the descriptor's flags change; a number that is not open gives EBADF.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let r = match fcntl(fd, FcntlArg::F_GETFD) {
            Ok(flags) => fcntl(
                fd,
                FcntlArg::F_SETFD(FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC),
            )
            .map(|_| ()),
            // Not open (any more: the directory /proc/self/fd was read through).
            Err(nix::errno::Errno::EBADF) => Ok(()),
            Err(e) => Err(e),
        };
        r.map_err(|e| {
            fail(
                "exec",
                StageError::sys(&format!("fcntl({raw}, F_SETFD, FD_CLOEXEC)"), e),
            )
        })?;
    }
    Ok(())
}

fn do_exec(
    exec: &ExecSpec,
    path: &str,
    argv: &[String],
    old_mask: &SigSet,
    may_setgroups: bool,
    oci_caps: Option<crate::confine::caps::CapSets>,
) -> Result<std::convert::Infallible, Failure> {
    if let Some(dir) = exec.workdir.as_ref().filter(|_| exec.make_workdir) {
        if !std::path::Path::new(dir).is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail("exec", format!("mkdir -p {dir}: {e}")))?;
        }
    }
    if let Some(dir) = &exec.workdir {
        nix::unistd::chdir(dir.as_str())
            .map_err(|e| fail("exec", StageError::sys(&format!("chdir({dir:?})"), e)))?;
    }
    let argv = cstrings(argv)?;
    let env = cstrings(&exec.env)?;
    if exec.tty && exec.console.is_none() {
        take_terminal()?;
    }
    // Before the user switch: the fallback reads /proc/self/fd, which a process that gave up
    // root may no longer read (it is no longer dumpable).
    close_on_exec_from(3 + exec.preserve_fds)?;
    if let Some(u) = &exec.user {
        let groups: Vec<nix::unistd::Gid> = u
            .groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        if may_setgroups {
            nix::unistd::setgroups(&groups)
                .map_err(|e| fail("exec", StageError::sys("setgroups()", e)))?;
        }
        nix::unistd::setgid(nix::unistd::Gid::from_raw(u.gid))
            .map_err(|e| fail("exec", StageError::sys(&format!("setgid({})", u.gid), e)))?;
        // An OCI config's capabilities stay with a user other than root (as runc does):
        // PR_SET_KEEPCAPS keeps the permitted set through setuid, which clears the effective
        // and ambient sets; capset and the ambient raise then put them back. A Docker-like
        // run gives such a user no capabilities, as Docker does.
        let keep = oci_caps.filter(|_| u.uid != 0);
        if keep.is_some() {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
            nix::errno::Errno::result(r)
                .map_err(|e| fail("exec", StageError::sys("prctl(PR_SET_KEEPCAPS, 1)", e)))?;
        }
        nix::unistd::setuid(nix::unistd::Uid::from_raw(u.uid))
            .map_err(|e| fail("exec", StageError::sys(&format!("setuid({})", u.uid), e)))?;
        if let Some(c) = keep {
            caps_after_switch(&c).map_err(|e| fail("exec", e))?;
        }
    }
    // The Rust runtime ignores SIGPIPE; an ignored signal stays ignored across exec, so put
    // it back, and give the workload the signal mask the runtime had before it blocked the
    // signals it forwards.
    // SAFETY: setting a signal's disposition to the default is always sound.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None);
    let err = match exec.exe_fd {
        Some(fd) => {
            // SAFETY: fd is the runtime's open descriptor on its own executable, inherited.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            match nix::unistd::fexecve(fd, &argv, &env) {
                Err(e) => StageError::sys("fexecve(<stagebox>)", e),
                Ok(never) => match never {},
            }
        }
        None => {
            let c_path = CString::new(path.as_bytes())
                .map_err(|_| fail("exec", "the command path contains a NUL byte"))?;
            match nix::unistd::execve(&c_path, &argv, &env) {
                // Looked up already; this is what the exec itself refused (after a user
                // switch, or a script's missing interpreter): Docker's 126/127 too.
                Err(e) => {
                    let _ = nix::sys::signal::sigprocmask(
                        SigmaskHow::SIG_BLOCK,
                        Some(&SigSet::all()),
                        None,
                    );
                    return Err(not_runnable(crate::rootfs::NotRunnable::from_errno(
                        path, e,
                    )));
                }
                Ok(never) => match never {},
            }
        }
    };
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
    Err(fail("exec", err))
}

/// After the switch to a user other than root: the OCI config's effective, permitted and
/// inheritable sets again (capset), its ambient set raised, all read back from
/// /proc/self/status.
fn caps_after_switch(c: &crate::confine::caps::CapSets) -> Result<(), StageError> {
    use crate::kernel::status::{capset, Privileges};
    // What the caps stage could give (the setuid kept permitted and inheritable).
    let (_, had, had_inh) =
        crate::kernel::status::capget().map_err(|e| StageError::sys("capget()", e))?;
    let permitted = c.permitted & had;
    let effective = c.effective & permitted;
    let inheritable = c.inheritable & had_inh;
    capset(effective, permitted, inheritable).map_err(|e| {
        StageError::sys(
            &format!(
                "capset({{effective={effective:016x}, permitted={permitted:016x}, inheritable={inheritable:016x}}})"
            ),
            e,
        )
    })?;
    let ambient = c.ambient & permitted & inheritable;
    let list: Vec<u32> = (0..64).filter(|n| ambient & (1u64 << n) != 0).collect();
    crate::stages::caps::raise_each(&list)
        .map_err(|e| StageError::sys("prctl(PR_CAP_AMBIENT_RAISE)", e))?;
    let p = Privileges::read(None)
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/status: {e}")))?;
    for (name, got, want) in [
        ("CapEff", p.cap_eff, effective),
        ("CapPrm", p.cap_prm, permitted),
        ("CapInh", p.cap_inh, inheritable),
        ("CapAmb", p.cap_amb, ambient),
    ] {
        if got != want {
            return Err(StageError::no_effect(format!(
                "{name} is {got:016x} in /proc/self/status after the user switch, expected {want:016x}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// A descriptor on /dev/null without close-on-exec, at a high number of its own.
    fn inheritable(at: RawFd) -> OwnedFd {
        let f = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: F_DUPFD makes a new descriptor (without FD_CLOEXEC) that we then own.
        let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD, at) };
        assert!(fd >= at);
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    #[test]
    fn the_fallback_marks_what_is_open_from_the_first_one_up() {
        let below = inheritable(700);
        let above = inheritable(below.as_raw_fd() + 1);
        assert_eq!(is_cloexec(above.as_raw_fd()), Ok(false));
        assert!(cloexec_one_by_one(above.as_raw_fd()).is_ok());
        assert_eq!(is_cloexec(above.as_raw_fd()), Ok(true));
        assert_eq!(
            is_cloexec(below.as_raw_fd()),
            Ok(false),
            "below the first one"
        );
    }
}
