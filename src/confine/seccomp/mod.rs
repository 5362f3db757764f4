//! Docker's seccomp profiles, compiled to the BPF filters the seccomp stage loads.
//!
//! - `profile.rs`: Docker's JSON format (`defaultAction`, `syscalls[]` with `names`, `action`,
//!   `errnoRet`, `args`, `includes`, `excludes`), read with serde; a mistake is reported with
//!   its JSON path.
//! - `default.json`: Docker's default profile, written in that format and compiled into the
//!   binary. It is an allow list: about 370 names pass (about 300 syscalls on x86_64, the
//!   rest are 32-bit or other architectures' names), every other syscall fails with EPERM.
//!   Conditions follow the container's capabilities (with CAP_SYS_ADMIN kept, `mount`,
//!   `unshare`, `setns` and `clone` with namespace flags pass) and arguments (`clone` only
//!   without namespace flags, `socket` never for AF_VSOCK, `personality` for five values,
//!   `clone3` fails with ENOSYS so that glibc falls back to `clone`, whose flags a filter can
//!   read).
//! - `compile.rs`: the entries that apply here, turned into one BPF filter.
//! - `names.rs`: syscall names to this architecture's numbers; unknown names are skipped, as
//!   libseccomp skips them.
//!
//! **The filter.** It checks the architecture, loads the syscall number, and finds it by a
//! binary search over ranges of numbers that get the same answer (Docker's default profile
//! on x86_64: 62 ranges, 178 instructions; one syscall is decided in about 6 comparisons).
//! A number whose entries have conditions on arguments gets a small chain: each condition
//! set, then its action, then the number's unconditional action or the default. Several
//! entries naming one syscall without conditions: the most restrictive action wins, as the
//! kernel ranks actions; entries with conditions are tried before it, in profile order.
//! An argument compared twice in one entry makes one rule per comparison, any of which may
//! hold (runc does the same, because libseccomp cannot AND two comparisons of one argument).
//!
//! **seccompiler** (rust-vmm, Firecracker's filter compiler) compiles the argument
//! conditions: every comparison of Docker's format (`SCMP_CMP_MASKED_EQ` included) on 64-bit
//! arguments, split into two 32-bit halves as classic BPF needs. Not libseccomp: it is a C
//! library, and the binary is static. stagebox writes the rest of the filter itself, for
//! three reasons:
//!
//! - speed: seccompiler tests the numbers one after the other. Docker's default profile
//!   then makes a filter of 1542 instructions, and loading it took 1.4 ms: when a filter is
//!   loaded, the kernel runs it for every syscall number to find those always allowed (its
//!   per-filter cache), so a linear filter costs numbers x length. The binary search loads
//!   in about 0.1 ms and also decides each of the workload's syscalls sooner;
//! - one filter per action: a seccompiler filter has one action on match and one on
//!   mismatch, where a profile mixes ALLOW, ERRNO(EPERM) and ERRNO(ENOSYS);
//! - its `apply_filter` sets no_new_privs first, which Docker leaves off; the stage loads
//!   the filter itself with seccomp(2).
//!
//! One filter filters one architecture, the native one. libseccomp also adds the `archMap`
//! sub-architectures (x86 and x32 on x86_64); here a 32-bit syscall (int 0x80) fails the
//! architecture check and kills the process, and an x32 number (bit 30 set) gets the
//! default action. 64-bit workloads see no difference. `SCMP_ACT_NOTIFY` (a supervisor
//! answers the call) is refused: stagebox has no supervisor.
//!
//! May import: `error`, `kernel` (and `confine::caps`, for capability names).

mod compile;
mod names;
mod profile;

pub use compile::{parse_version, Insn};

use std::path::Path;

/// Docker's default profile, in Docker's format.
pub const DEFAULT: &str = include_str!("default.json");

/// A compiled profile: the filters to load, in order, and what the trace says of them.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Each is loaded with its own seccomp(SECCOMP_SET_MODE_FILTER) call, first to last
    /// (one filter today; the kernel would run them all and keep the most restrictive answer).
    pub filters: Vec<Vec<Insn>>,
    /// Where the profile came from: "Docker's default profile" or the file's path.
    pub source: String,
    /// How many syscalls the filters name, after the profile's conditions were applied.
    pub rules: usize,
    /// The profile's default action: "SCMP_ACT_ERRNO(EPERM)".
    pub default_action: String,
    /// Names the profile allows or denies that this architecture has no syscall for.
    pub skipped: Vec<String>,
    /// One line per filter: what it matches and what it returns.
    pub describe: Vec<String>,
}

/// Reads and compiles a profile (None: Docker's default) for a container that keeps the
/// capabilities `caps_kept`. A bad profile is one sentence naming the file and the JSON path.
pub fn compile(profile: Option<&Path>, caps_kept: u64) -> crate::Result<Program> {
    let (text, source) = match profile {
        None => (
            std::borrow::Cow::Borrowed(DEFAULT),
            "Docker's default profile".to_string(),
        ),
        Some(p) => (
            std::borrow::Cow::Owned(std::fs::read_to_string(p).map_err(|e| {
                crate::Error::usage(format!(
                    "cannot read the seccomp profile {}: {e}; give a JSON file in Docker's format, or seccomp=unconfined",
                    p.display()
                ))
            })?),
            p.display().to_string(),
        ),
    };
    let bad = |e: String| {
        crate::Error::usage(format!(
            "the seccomp profile {source} cannot be used: {e}; fix it (Docker's format) or use --security-opt seccomp=unconfined"
        ))
    };
    let parsed = profile::parse(&text).map_err(bad)?;
    let env = compile::Env::native(caps_kept).map_err(crate::Error::usage)?;
    let c = compile::compile(&parsed, &env).map_err(bad)?;
    Ok(Program {
        filters: c.filters,
        source,
        rules: c.rules,
        default_action: c.default_action,
        skipped: c.skipped,
        describe: c.describe,
    })
}

#[cfg(test)]
mod tests;
