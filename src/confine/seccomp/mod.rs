//! Docker's seccomp profiles, compiled to the BPF filters the seccomp stage loads.
//!
//! - `profile.rs`: Docker's JSON format (`defaultAction`, `syscalls[]` with `names`, `action`,
//!   `errnoRet`, `args`, `includes`, `excludes`), read with serde; a mistake is reported with
//!   its JSON path.
//! - `default.json`: Docker's default profile, written in that format and compiled into the
//!   binary. It is an allow list: about 370 syscalls pass, every other one fails with EPERM.
//!   Conditions follow the container's capabilities (with CAP_SYS_ADMIN kept, `mount`,
//!   `unshare`, `setns` and `clone` with namespace flags pass) and arguments (`clone` only
//!   without namespace flags, `socket` never for AF_VSOCK, `personality` for five values,
//!   `clone3` fails with ENOSYS so that glibc falls back to `clone`, whose flags a filter can
//!   read).
//! - `compile.rs`: the entries that apply here, grouped by action, compiled with seccompiler.
//! - `names.rs`: syscall names to this architecture's numbers; unknown names are skipped, as
//!   libseccomp skips them.
//!
//! **Why seccompiler** (rust-vmm, Firecracker's filter compiler) and not libseccomp: it is pure
//! Rust, so the binary stays static; libseccomp is a C library. It can express every
//! comparison Docker's format has (`SCMP_CMP_MASKED_EQ` included) on 64-bit arguments. Three
//! things it cannot do, and what stagebox does instead:
//!
//! - A seccompiler filter has one action on match and one on mismatch, where libseccomp mixes
//!   actions in one filter. So the rules are grouped by action and each group becomes a
//!   filter: first one that sends every syscall some rule names on (ALLOW, with the rule's
//!   conditions) and gives every other the profile's default action; then one per other
//!   action (`clone3` -> ERRNO(ENOSYS)), ALLOW on mismatch. The kernel runs every loaded
//!   filter and keeps the most restrictive answer (KILL > TRAP > ERRNO > TRACE > LOG >
//!   ALLOW); between two ERRNOs the later-loaded filter's wins, so the action filters load
//!   after the first one and clone3 gets ENOSYS, not the default EPERM.
//! - It filters one architecture, the native one. libseccomp also adds the `archMap`
//!   sub-architectures (x86 and x32 on x86_64); here a 32-bit syscall (int 0x80) fails the
//!   filter's architecture check and kills the process. 64-bit workloads see no difference.
//! - Its `apply_filter` sets no_new_privs first, which Docker leaves off; the stage loads the
//!   filters itself with seccomp(2).
//!
//! `SCMP_ACT_NOTIFY` (a supervisor answers the call) is refused: stagebox has no supervisor.
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
    /// Each is loaded with its own seccomp(SECCOMP_SET_MODE_FILTER) call, first to last.
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
