//! Docker's seccomp profile format, read with serde (the JSON `docker run --security-opt
//! seccomp=FILE` takes, and the one moby's `profiles/seccomp/default.json` is written in):
//!
//! ```json
//! { "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
//!   "archMap": [{ "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"] }],
//!   "syscalls": [{ "names": ["clone"], "action": "SCMP_ACT_ALLOW", "errnoRet": null,
//!                  "args": [{ "index": 0, "value": 2114060288, "valueTwo": 0,
//!                             "op": "SCMP_CMP_MASKED_EQ" }],
//!                  "includes": { "caps": [], "arches": [], "minKernel": "4.8" },
//!                  "excludes": { "caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"] } }] }
//! ```
//!
//! Fields Docker's parser accepts but stagebox does not use (`comment`, `flags`,
//! `listenerPath` ...) are ignored; `null` stands for an empty list, as in Go. A mistake is
//! reported with its JSON path (`syscalls[3].args[0].op`), by `serde_path_to_error`.

use serde::Deserialize;

/// What a filter returns (`SCMP_ACT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    /// Hands the call to a supervisor over a listener fd; stagebox has none (refused).
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

/// How an argument is compared (`SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Op {
    #[serde(rename = "SCMP_CMP_NE")]
    Ne,
    #[serde(rename = "SCMP_CMP_LT")]
    Lt,
    #[serde(rename = "SCMP_CMP_LE")]
    Le,
    #[serde(rename = "SCMP_CMP_EQ")]
    Eq,
    #[serde(rename = "SCMP_CMP_GE")]
    Ge,
    #[serde(rename = "SCMP_CMP_GT")]
    Gt,
    /// `(arg & value) == valueTwo`.
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEq,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile<'a> {
    pub default_action: Action,
    /// The errno of an SCMP_ACT_ERRNO default (EPERM when absent, as runc does).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// The architectures libseccomp would add to the filter; read for its shape only, since
    /// stagebox filters the native architecture alone (see `mod.rs`).
    #[allow(dead_code)]
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    /// The older form of `archMap`.
    #[allow(dead_code)]
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    #[serde(default, borrow)]
    pub syscalls: Option<Vec<Syscall<'a>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One entry of `syscalls`: names, an action, and when it applies. The names are borrowed
/// from the profile's text, not copied: the default profile is compiled on every run, and
/// its ~370 names were most of the cost. (A syscall name has no JSON escapes; one that had
/// would be refused as "expected a borrowed string".)
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall<'a> {
    /// The older single-name form.
    #[serde(default, borrow)]
    pub name: Option<&'a str>,
    #[serde(default, borrow)]
    pub names: Option<Vec<&'a str>>,
    pub action: Action,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<Arg>>,
    #[serde(default)]
    pub includes: Option<Filter>,
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// A condition on one of the six arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: Op,
}

/// `includes` (all must hold) or `excludes` (any one skips the entry).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    /// Go's architecture names: amd64, arm64, x86, x32, s390x ...
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    /// "4.8": the entry needs at least this kernel (only in `includes`).
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// Parses a profile; the error is "at PATH: what serde said" (PATH empty for a syntax error
/// before the first field).
pub fn parse(text: &str) -> Result<Profile<'_>, String> {
    // The fast way first; only a profile that fails is read again, to find the path.
    if let Ok(p) = serde_json::from_str(text) {
        return Ok(p);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let profile: Profile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("at {path}: {}", e.inner())
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(profile)
}
