//! # exec: a process that was never cloned into the container joins it with setns(2)
//!
//! `stagebox run` builds a container by making new namespaces (unshare, clone). `stagebox
//! exec` makes none: the namespaces already exist, held alive by the workload, and each is
//! a file, `/proc/PID/ns/NAME`. Opening that file and calling `setns(fd, CLONE_NEWXXX)` moves
//! the calling process into that namespace. Doing it for every namespace, joining the
//! cgroups, and applying the same confinement, gives a process that the kernel cannot tell
//! from one the workload forked. That is all `docker exec` (runc exec, nsenter) is.
//!
//! The order matters, and every step of it is the kernel's rule:
//!
//! 1. **Everything from the host first.** The namespace files, `/proc/PID/root`, and the
//!    host's `/proc` are opened while the host's filesystem is still in view; after
//!    `setns(mnt)` the host's paths are gone. The cgroups are joined now too: writing our pid
//!    to each hierarchy's `cgroup.procs` (the paths from the workload's `/proc/PID/cgroup`)
//!    needs the host's `/sys/fs/cgroup`. The child forked later is born in them.
//! 2. **user** first, where the container has its own: it owns the others, and only after
//!    joining it does this process hold the capabilities in it that the other setns calls
//!    need. (A container without one shares the host's: same inode, nothing to join; setns
//!    into one's own user namespace is even an error.)
//! 3. **ipc, uts, net**: plain switches.
//! 4. **pid**: `setns(pid)` does not move the caller, whose pid cannot change. It only
//!    decides where its CHILDREN are born (`pid_for_children`). So exec forks after it, and
//!    the child is the process that runs the command, with a pid inside the container.
//! 5. **cgroup**: the cgroup namespace, so `/proc/self/cgroup` reads `/` as the workload's does.
//! 6. **mnt** last: it replaces the whole view of the filesystem (root and cwd go to the
//!    namespace's root). Then `fchdir(/proc/PID/root); chroot(".")` puts the root exactly where
//!    the workload's is, whether the run used pivot_root or chroot.
//!
//! Then the confinement, in the child, read from the workload itself where the kernel shows
//! it (`/proc/PID/status`): the capability bounding set (PR_CAPBSET_DROP of every capability
//! the workload's CapBnd lacks; execve then makes the permitted and effective sets what the
//! workload's are), no_new_privs if the workload has it, the same seccomp filter (recompiled
//! from the profile recorded at create time: a filter cannot be read back from the kernel
//! without CAP_SYS_ADMIN and ptrace), and last the user (setgroups, setgid, setuid). Every
//! descriptor above 2 is marked close-on-exec first: a leaked host descriptor, a cwd on the
//! host, is how runc's CVE-2024-21626 let a container out.
//!
//! `-t` gives the command the caller's terminal as it is (no new pty); `-i` keeps stdin
//! (without it stdin is /dev/null, as Docker's); `-d` does not wait and prints nothing. A
//! time namespace is not joined (the run makes none).

use crate::error::{Error, Result};
use crate::kernel::observe::Change;
use crate::kernel::status::Privileges;
use crate::state::container::Container;
use crate::trace;
use nix::sched::CloneFlags;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// What `stagebox exec` was asked.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub container: String,
    pub argv: Vec<String>,
    /// `-e K=V` (or `-e K`: the caller's value).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
    pub tracing: bool,
    /// runc's `exec --pid-file`: the new process's host pid, written once it is forked.
    pub pid_file: Option<std::path::PathBuf>,
    /// runc's `exec --console-socket` with a terminal: the connected socket; the process
    /// opens its pty inside the container and sends the master (`oci::console_inside`).
    pub console: Option<std::os::fd::RawFd>,
    /// runc's `exec`: the process keeps the caller's 0, 1 and 2 (an engine's pipes) even
    /// when detached.
    pub stdio_as_given: bool,
}

/// The namespaces joined, in the order the kernel needs (see the top of this file).
const ORDER: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The running container `key` names, and its workload's pid; a stopped or unknown one is
/// one sentence (exit status 125).
pub fn running(state: &Path, key: &str) -> Result<(Container, i32)> {
    let c = crate::state::container::find(state, key)?;
    match c.pid {
        Some(pid) if c.is_running() && Path::new(&format!("/proc/{pid}")).exists() => Ok((c, pid)),
        _ => Err(Error::usage(format!("container {key} is not running"))),
    }
}

fn ns_link(proc_dir: &str, name: &str) -> String {
    std::fs::read_link(format!("{proc_dir}/ns/{name}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The environment: the workload's, then `-e` (a later K replaces an earlier one).
fn environment(record: &[String], extra: &[String], tty: bool) -> Vec<String> {
    let mut env: Vec<String> = record.to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    if tty && !extra.iter().any(|e| e.starts_with("TERM=")) {
        set("TERM=xterm".into());
    }
    for e in extra {
        match e.split_once('=') {
            Some(_) => set(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(format!("{e}={v}"));
                }
            }
        }
    }
    env
}

/// The command found with the container's PATH (rootfs::lookup_command, as `run` does), or
/// Docker's sentence and exit status for one that is not there or cannot run.
fn lookup(cmd: &str, env: &[String]) -> std::result::Result<String, (i32, String)> {
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/sbin:/usr/bin:/sbin:/bin");
    crate::rootfs::lookup_command(cmd, path, None).map_err(|e| (e.code, e.message))
}

fn open_dir(path: &str) -> Result<OwnedFd> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {path}"), e))
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> nix::Result<i64> {
    // SAFETY: the prctl options used here take integer arguments only.
    let r = unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    nix::errno::Errno::result(r).map(i64::from)
}

/// Everything read and opened on the host before the first change.
struct Plan {
    pid: i32,
    name: String,
    ns: Vec<(&'static str, CloneFlags, OwnedFd, String, String)>,
    root: OwnedFd,
    host_proc: OwnedFd,
    devnull: OwnedFd,
    cgroups: Vec<crate::cgroup::member::Member>,
    privs: Privileges,
    may_setgroups: bool,
    seccomp: Option<crate::confine::seccomp::Program>,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    workdir: String,
    env: Vec<String>,
}

fn plan(state: &Path, o: &ExecOptions) -> Result<Plan> {
    let (c, pid) = running(state, &o.container)?;
    // A process that joins a frozen cgroup freezes with it: Docker refuses too.
    if c.paused {
        return Err(Error::usage(format!(
            "container {} is paused; `stagebox unpause {}` first",
            o.container, o.container
        )));
    }
    if o.argv.is_empty() {
        return Err(Error::usage(
            "exec needs a command to run: stagebox exec CONTAINER CMD [ARG...]",
        ));
    }
    let proc_dir = format!("/proc/{pid}");
    let privs =
        Privileges::read(Some(pid)).map_err(|e| Error::io(format!("read {proc_dir}/status"), e))?;
    let (uid, gid, groups) = match &o.user {
        Some(spec) => {
            let ids = crate::image::user::resolve(&[format!("{proc_dir}/root").into()], spec)?;
            (ids.uid, ids.gid, ids.groups)
        }
        None => (
            c.exec.uid.unwrap_or(0),
            c.exec.gid.unwrap_or(0),
            c.exec.groups.clone(),
        ),
    };
    // The same filter: recompiled from the recorded profile for the capabilities the
    // workload holds (its bounding set), before anything changes, so a profile that is gone
    // is one sentence.
    let seccomp = if privs.seccomp == 2 {
        let path = c.exec.seccomp.clone().unwrap_or_else(|| "default".into());
        let profile = (path != "default").then(|| std::path::PathBuf::from(&path));
        Some(crate::confine::seccomp::compile(
            profile.as_deref(),
            privs.cap_bnd,
        )?)
    } else {
        None
    };
    let mut ns = Vec::new();
    for (name, flag) in ORDER {
        let theirs = ns_link(&proc_dir, name);
        let ours = ns_link("/proc/self", name);
        if theirs.is_empty() || theirs == ours {
            continue;
        }
        let fd = open_dir(&format!("{proc_dir}/ns/{name}"))?;
        ns.push((*name, *flag, fd, ours, theirs));
    }
    let setgroups = std::fs::read_to_string(format!("{proc_dir}/setgroups")).unwrap_or_default();
    Ok(Plan {
        pid,
        name: c.name.clone(),
        ns,
        root: open_dir(&format!("{proc_dir}/root"))?,
        host_proc: open_dir("/proc")?,
        devnull: std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| Error::io("open /dev/null", e))?,
        cgroups: crate::cgroup::member::of_pid(pid)?,
        privs,
        may_setgroups: setgroups.trim() != "deny",
        seccomp,
        uid,
        gid,
        groups,
        workdir: o
            .workdir
            .clone()
            .or(c.exec.workdir.clone())
            .unwrap_or_else(|| "/".into()),
        env: environment(&c.exec.env, &o.env, o.tty),
    })
}

/// Reads a link or file of this thread through the host's /proc (still open after setns(mnt)).
fn own_via(host_proc: &OwnedFd, rel: &str) -> String {
    nix::fcntl::readlinkat(host_proc.as_fd(), format!("thread-self/{rel}").as_str())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn own_status(host_proc: &OwnedFd) -> Option<Privileges> {
    let fd = nix::fcntl::openat(
        host_proc.as_fd(),
        "thread-self/status",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let text = std::io::read_to_string(std::fs::File::from(fd)).ok()?;
    Privileges::parse(&text)
}

fn syscall(tracing: bool, call: String, r: &nix::Result<impl Sized>) {
    if tracing {
        let result = match r {
            Ok(_) => "0".to_string(),
            Err(e) => format!("-1 {}", e.desc()),
        };
        trace::syscall("exec", &crate::kernel::sys::SyscallRecord { call, result });
    }
}

/// `stagebox exec`: runs a command in a running container; returns its exit status.
pub fn exec(state: &Path, o: &ExecOptions) -> Result<i32> {
    let p = plan(state, o)?;
    let t = o.tracing;
    if t {
        trace::stage(
            "exec",
            &format!(
                "join container {} (workload pid {}) with setns(2)",
                p.name, p.pid
            ),
        );
    }
    // runc's --pid-file, opened while the caller's directory and root are still in view.
    let pid_out = match &o.pid_file {
        Some(f) => Some(
            std::fs::File::create(f)
                .map_err(|e| Error::io(format!("create {}", f.display()), e))?,
        ),
        None => None,
    };
    // 1. The cgroups, while the host's /sys/fs/cgroup is in view.
    let me = std::process::id() as i32;
    let before_cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let written = crate::cgroup::member::join(&p.cgroups, me)?;
    if t && !written.is_empty() {
        let after_cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let first = |s: &str| {
            crate::cgroup::proc_cgroup_lines(s)
                .into_iter()
                .find(|(c, _)| !c.starts_with("name="))
                .map(|(c, path)| {
                    format!(
                        "{}{path}",
                        if c.is_empty() {
                            String::new()
                        } else {
                            format!("{c}:")
                        }
                    )
                })
        };
        trace::note(
            "exec",
            &format!(
                "wrote {me} to cgroup.procs in {} hierarch{} ({})",
                written.len(),
                if written.len() == 1 { "y" } else { "ies" },
                written[0].display()
            ),
        );
        trace::fact(
            "exec",
            &Change {
                fact: "cgroup".into(),
                before: first(&before_cg),
                after: first(&after_cg),
            },
        );
    }
    // 2-6. The namespaces, in the kernel's order.
    for (name, flag, fd, ours, theirs) in &p.ns {
        let r = nix::sched::setns(fd, *flag);
        syscall(
            t,
            format!(
                "setns(<{theirs}>, {})",
                crate::kernel::sys::clone_flags_str(*flag)
            ),
            &r,
        );
        r.map_err(|e| Error::sys(format!("setns into the container's {name} namespace"), e))?;
        let link = if *name == "pid" {
            "pid_for_children"
        } else {
            name
        };
        let now = own_via(&p.host_proc, &format!("ns/{link}"));
        if now != *theirs {
            return Err(Error::usage(format!(
                "after setns this process's {link} namespace is {now}, not the container's {theirs}"
            )));
        }
        if t {
            trace::fact(
                "exec",
                &Change {
                    fact: format!("setns {name}"),
                    before: Some(ours.clone()),
                    after: Some(now),
                },
            );
        }
    }
    let r = nix::unistd::fchdir(&p.root).and_then(|_| nix::unistd::chroot("."));
    syscall(
        t,
        format!("fchdir(</proc/{}/root>); chroot(\".\")", p.pid),
        &r,
    );
    r.map_err(|e| Error::sys("chroot into the container's root", e))?;
    let _ = nix::unistd::chdir("/");

    let (mask, old_mask) = super::wait::block_signals()?;
    // SAFETY: single-threaded; the child only makes syscalls and execs or exits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::sys("fork", e)),
        Ok(nix::unistd::ForkResult::Child) => {
            let (code, msg) = child(&p, o, &old_mask);
            eprintln!("stagebox: {msg}");
            // SAFETY: _exit ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            if let Some(mut f) = pid_out {
                use std::io::Write as _;
                f.write_all(child.as_raw().to_string().as_bytes())
                    .map_err(|e| Error::io("write the pid file", e))?;
            }
            if o.detach {
                return Ok(0);
            }
            Ok(super::wait::wait_forwarding(child, &mask)?.code())
        }
    }
}

/// The child, born in the container's pid namespace: directory, confinement, user, execve.
/// Returns only on failure: the exit status and the sentence.
fn child(p: &Plan, o: &ExecOptions, old_mask: &nix::sys::signal::SigSet) -> (i32, String) {
    let t = o.tracing;
    if let Some(sock) = o.console {
        if let Err(e) = super::oci::console_inside(sock) {
            return (125, format!("the terminal: {e}"));
        }
    }
    if let Err(e) = nix::unistd::chdir(p.workdir.as_str()) {
        return (
            126,
            format!(
                "chdir to {:?} in the container failed: {}",
                p.workdir,
                e.desc()
            ),
        );
    }
    let path = match lookup(&o.argv[0], &p.env) {
        Ok(path) => path,
        Err((code, msg)) => return (code, msg),
    };
    // A descriptor the caller had open (a cwd, a host directory) must not reach the command.
    // SAFETY: close_range only sets flags on this process's descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
            for fd in rd
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            {
                if fd > 2 {
                    // SAFETY: sets FD_CLOEXEC on a descriptor of this process.
                    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                }
            }
        }
    }
    let before = own_status(&p.host_proc);
    // Capabilities: ambient cleared, the bounding set cut to the workload's.
    let _ = prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    );
    let last = crate::kernel::status::cap_last_cap();
    let mut dropped = 0;
    for cap in 0..=last {
        if p.privs.cap_bnd & (1u64 << cap) == 0 {
            if let Err(e) = prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
                return (
                    125,
                    format!("prctl(PR_CAPBSET_DROP, {cap}) failed: {}", e.desc()),
                );
            }
            dropped += 1;
        }
    }
    syscall(
        t,
        format!("prctl(PR_CAPBSET_DROP, ...) x {dropped}"),
        &Ok(()),
    );
    if p.privs.no_new_privs == 1 {
        let r = prctl(libc::PR_SET_NO_NEW_PRIVS, 1);
        syscall(t, "prctl(PR_SET_NO_NEW_PRIVS, 1)".into(), &r);
        if let Err(e) = r {
            return (
                125,
                format!("prctl(PR_SET_NO_NEW_PRIVS) failed: {}", e.desc()),
            );
        }
    }
    if let Some(prog) = &p.seccomp {
        for f in &prog.filters {
            let r = crate::stages::seccomp::load(f);
            syscall(
                t,
                format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER, 0, {{len={}, {}}})",
                    f.len(),
                    prog.source
                ),
                &r,
            );
            if let Err(e) = r {
                return (
                    125,
                    format!("loading the seccomp filter failed: {}", e.desc()),
                );
            }
        }
    }
    if t {
        if let (Some(b), Some(a)) = (before, own_status(&p.host_proc)) {
            for (fact, x, y) in [
                (
                    "CapBnd",
                    format!("{:016x}", b.cap_bnd),
                    format!("{:016x}", a.cap_bnd),
                ),
                (
                    "NoNewPrivs",
                    b.no_new_privs.to_string(),
                    a.no_new_privs.to_string(),
                ),
                ("Seccomp", b.seccomp.to_string(), a.seccomp.to_string()),
            ] {
                if x != y {
                    trace::fact(
                        "exec",
                        &Change {
                            fact: fact.into(),
                            before: Some(x),
                            after: Some(y),
                        },
                    );
                }
            }
        }
    }
    // The user, last: setuid gives up what is left.
    if p.may_setgroups {
        let groups: Vec<nix::unistd::Gid> = p
            .groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        if let Err(e) = nix::unistd::setgroups(&groups) {
            return (125, format!("setgroups failed: {}", e.desc()));
        }
    }
    if let Err(e) = nix::unistd::setgid(nix::unistd::Gid::from_raw(p.gid)) {
        return (125, format!("setgid({}) failed: {}", p.gid, e.desc()));
    }
    if let Err(e) = nix::unistd::setuid(nix::unistd::Uid::from_raw(p.uid)) {
        return (125, format!("setuid({}) failed: {}", p.uid, e.desc()));
    }
    if t {
        trace::exec(&format!(
            "execve({path:?}, {:?}) as {}:{} in {}",
            o.argv, p.uid, p.gid, p.workdir
        ));
    }
    if o.stdio_as_given || o.console.is_some() {
        // runc's exec: 0, 1 and 2 are the engine's (pipes it reads, or the pty), detached or not.
    } else if !o.interactive || o.detach {
        // SAFETY: dup2 onto a standard descriptor of this process.
        unsafe { libc::dup2(p.devnull.as_raw_fd(), 0) };
    }
    if o.detach && !o.stdio_as_given && o.console.is_none() {
        // SAFETY: dup2 onto a standard descriptor of this process.
        unsafe { libc::dup2(p.devnull.as_raw_fd(), 1) };
        // SAFETY: dup2 onto a standard descriptor of this process.
        unsafe { libc::dup2(p.devnull.as_raw_fd(), 2) };
        let _ = nix::unistd::setsid();
    }
    let cs = |v: &[String]| -> Option<Vec<CString>> {
        v.iter().map(|s| CString::new(s.as_bytes()).ok()).collect()
    };
    let (Some(argv), Some(env), Ok(cpath)) =
        (cs(&o.argv), cs(&p.env), CString::new(path.as_bytes()))
    else {
        return (125, "an argument or variable contains a NUL byte".into());
    };
    // SAFETY: back to the default disposition; an ignored SIGPIPE would survive execve.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(old_mask),
        None,
    );
    let e = match nix::unistd::execve(&cpath, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if e == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    (
        code,
        format!("exec: \"{}\": {}", o.argv[0], e.desc().to_lowercase()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_is_the_workloads_then_e() {
        let env = environment(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
            false,
        );
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
        assert!(environment(&[], &[], true)
            .iter()
            .any(|e| e == "TERM=xterm"));
        assert!(environment(&[], &[], false)[0].starts_with("PATH="));
    }

    #[test]
    fn a_missing_command_is_dockers_sentence() {
        let (code, msg) = lookup("no-such-cmd-xyz", &["PATH=/nonexistent".into()]).unwrap_err();
        assert_eq!(code, 127);
        assert_eq!(
            msg,
            "exec: \"no-such-cmd-xyz\": executable file not found in $PATH"
        );
        assert!(lookup("sh", &["PATH=/bin:/usr/bin".into()]).is_ok());
    }
}
