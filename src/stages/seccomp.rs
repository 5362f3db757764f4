//! # seccomp: a filter on every syscall the workload makes
//!
//! Namespaces hide things and capabilities take powers away, but the workload can still call
//! all ~450 syscalls, and every one is kernel code an exploit can aim at (keyctl, bpf,
//! userfaultfd, new namespaces ...). seccomp-BPF puts a small program in front of the
//! syscall table. For each call the kernel hands it a `struct seccomp_data`: the syscall
//! number `nr`, the `arch` it was made in (AUDIT_ARCH_X86_64 ...), the instruction pointer
//! and the six arguments as raw 64-bit values (the filter cannot follow pointers, which is
//! why `clone3`, whose flags are in memory, cannot be judged and gets ENOSYS instead). The
//! program answers with an action:
//!
//! - `SECCOMP_RET_ALLOW`: run the syscall;
//! - `SECCOMP_RET_ERRNO | n`: skip it and return -n (Docker's EPERM, or ENOSYS for clone3);
//! - `SECCOMP_RET_TRAP` (SIGSYS), `TRACE` (ask a ptracer), `LOG`, `KILL_THREAD`,
//!   `KILL_PROCESS`.
//!
//! Filters stack: every loaded filter runs, and the kernel keeps the most restrictive answer
//! (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > TRACE > LOG > ALLOW); between answers of the
//! same kind, the most recently loaded filter's wins. A filter can never be removed, and it is
//! inherited across fork and execve, so the whole container lives under it.
//!
//! The first thing a filter checks is `arch`: syscall numbers differ between ABIs (on x86_64,
//! 59 is execve but in the 32-bit ABI, reached with `int 0x80`, 59 is oldolduname), so a
//! filter that read only `nr` could be walked around by switching ABI. A call from another
//! architecture kills the process.
//!
//! Docker's default profile is an allow list whose default is EPERM, not a kill: a program
//! that probes for a newer syscall gets a plain error and falls back, instead of dying.
//!
//! Loading a filter needs CAP_SYS_ADMIN or no_new_privs: otherwise a filter could make a
//! setuid program fail in a chosen place while it runs as root. Docker leaves no_new_privs
//! off, so the caps stage keeps CAP_SYS_ADMIN in the effective set until execve, for this
//! stage alone (it is already out of the bounding set, so execve takes it away).
//!
//! Why last, right before execve: everything stagebox's own container process does after
//! this runs under the filter too (tell the runtime on its socket, read /proc and uname,
//! setgroups/setgid/setuid, sigprocmask, close_range, execve), so the later it is loaded, the
//! fewer of stagebox's own syscalls the profile must allow. runc loads it before dropping
//! capabilities instead, and needs `capset` and more in the profile for that.
//!
//! The profile is compiled before the container exists (`confine::seccomp`), so a bad profile
//! is refused with nothing on the host changed. It becomes one filter: the architecture
//! check, then a binary search over ranges of syscall numbers that get the same answer, with
//! the argument comparisons (clone's flags, socket's family) at the leaves. This stage only
//! loads it and reads back `Seccomp: 2` and the number of filters in /proc/self/status.

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use crate::confine::seccomp::Insn;
use crate::kernel::status::Privileges;

pub struct Seccomp;

static INFO: StageInfo = StageInfo {
    id: StageId::Seccomp,
    summary: "Docker's default seccomp profile, compiled to BPF, loaded right before execve",
    shows: "Seccomp 0 -> 2 in /proc/PID/status, the number of rules",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[],
};

/// seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog): the filter is copied into the kernel. Also
/// `exec`'s, for a process joining a running container.
pub fn load(filter: &[Insn]) -> nix::Result<i64> {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        // Insn is #[repr(C)] with sock_filter's layout (u16, u8, u8, u32).
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `filter`, which outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    nix::errno::Errno::result(r)
}

fn status() -> Result<Privileges, StageError> {
    Privileges::read(None)
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/status: {e}")))
}

impl Stage for Seccomp {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let Some(program) = ctx.spec.confine.seccomp.clone() else {
            return Err(StageError::msg(
                "the seccomp stage is on but no profile was compiled for it",
            ));
        };
        if program.filters.is_empty() {
            return Err(StageError::msg(
                "the compiled seccomp profile has no filter",
            ));
        }
        let before = if ctx.verify { Some(status()?) } else { None };
        let n = program.filters.len();
        for (i, f) in program.filters.iter().enumerate() {
            let call = if n == 1 {
                format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER, 0, {{len={}, filter}})",
                    f.len()
                )
            } else {
                format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER, 0, {{len={}, filter {}/{n}}})",
                    f.len(),
                    i + 1
                )
            };
            ctx.sys
                .raw(call, &mut || load(f))
                .map_err(|e| StageError::sys("seccomp(SECCOMP_SET_MODE_FILTER)", e))?;
        }
        let mut uncounted = false;
        if let Some(before) = before {
            let after = status()?;
            let want = before.seccomp_filters + n as u32;
            // Older kernels have no Seccomp_filters line (read as 0): Seccomp 2 must do.
            uncounted = after.seccomp_filters == 0;
            if after.seccomp != 2 || (after.seccomp_filters != want && !uncounted) {
                return Err(StageError::no_effect(format!(
                    "/proc/self/status shows Seccomp {} with {} filters after loading {n}, expected Seccomp 2 with {want}",
                    after.seccomp, after.seccomp_filters
                )));
            }
        }
        match &program.describe[..] {
            [one] => ctx.note(format!(
                "{}, {} syscalls named: {one}",
                program.source, program.rules
            )),
            many => {
                ctx.note(format!(
                    "{}, {} syscalls named, any other -> {}",
                    program.source, program.rules, program.default_action
                ));
                for (i, d) in many.iter().enumerate() {
                    ctx.note(format!("filter {}/{n}: {d}", i + 1));
                }
            }
        }
        if uncounted {
            ctx.note("this kernel does not count filters in /proc/self/status (no Seccomp_filters line on older kernels): only Seccomp 2 was checked");
        }
        if !program.skipped.is_empty() {
            ctx.note(format!(
                "{} names skipped: no such syscall on {} ({} ...)",
                program.skipped.len(),
                std::env::consts::ARCH,
                program
                    .skipped
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::{ChildSpec, RootSwitch};

    #[test]
    fn loads_each_filter_with_its_own_seccomp_call_and_says_what_it_loaded() {
        let mut spec = ChildSpec::for_test(RootSwitch::Pivot);
        let program =
            crate::confine::seccomp::compile(None, crate::confine::caps::DOCKER_DEFAULT).unwrap();
        let n = program.filters.len();
        spec.confine.seccomp = Some(std::sync::Arc::new(program));
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        ctx.verify = false;
        Seccomp.apply(&mut ctx).unwrap();
        let notes = ctx.notes.clone();
        assert_eq!(sys.calls.len(), n, "{:?}", sys.calls);
        assert!(sys.calls[0].starts_with("seccomp(SECCOMP_SET_MODE_FILTER, 0, {len="));
        assert!(
            notes[0].starts_with("Docker's default profile, ")
                && notes[0].contains("any other -> SCMP_ACT_ERRNO(EPERM)"),
            "{notes:?}"
        );
        assert!(notes
            .iter()
            .any(|n| n.contains("clone3 -> SCMP_ACT_ERRNO(ENOSYS)")));
        assert!(notes.iter().any(|n| n.contains("names skipped")));
    }

    #[test]
    fn refuses_to_run_without_a_compiled_profile() {
        let spec = ChildSpec::for_test(RootSwitch::Pivot);
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        ctx.verify = false;
        assert!(Seccomp.apply(&mut ctx).is_err());
        assert!(sys.calls.is_empty());
    }
}
