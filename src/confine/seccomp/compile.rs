//! A parsed profile, its conditions applied, compiled to BPF filters with seccompiler.
//!
//! Steps: keep the `syscalls` entries whose `includes`/`excludes` hold for the capabilities
//! the container keeps, this architecture and the running kernel; turn each name into this
//! architecture's number (skip names it lacks); group the rules by action; build one
//! seccompiler filter per group (see `mod.rs` for why several, and in which order).

use super::names;
use super::profile::{Action, Arg, Filter, Op, Profile, Syscall};
use crate::confine::caps;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// What the profile's conditions are evaluated against.
#[derive(Debug, Clone)]
pub struct Env {
    /// The capabilities the container keeps (bit N: capability N).
    pub caps: u64,
    /// This architecture as Go (and so Docker's `arches`) names it: amd64, arm64.
    pub arch: &'static str,
    pub target: TargetArch,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Env {
    /// The native architecture and the running kernel.
    pub fn native(caps: u64) -> Result<Env, String> {
        let (arch, target) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", TargetArch::x86_64),
            "aarch64" => ("arm64", TargetArch::aarch64),
            other => {
                return Err(format!(
                    "stagebox compiles seccomp filters for x86_64 and aarch64 only, not {other}"
                ))
            }
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let kernel = parse_version(release.trim()).unwrap_or((0, 0));
        Ok(Env {
            caps,
            arch,
            target,
            kernel,
        })
    }
}

/// The compiled filters and what the trace says of them.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub filters: Vec<Vec<super::Insn>>,
    /// One line per filter: what it matches and returns.
    pub describe: Vec<String>,
    /// Distinct syscalls the filters name.
    pub rules: usize,
    pub default_action: String,
    /// Names in applicable entries that this architecture has no number for.
    pub skipped: Vec<String>,
}

/// "4.8", "5.10.0-18-amd64" -> (major, minor).
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// The seccompiler action for a profile action and its errnoRet; `at` is the JSON path.
fn action(
    a: Action,
    errno: Option<u32>,
    at: &str,
    errno_at: &str,
) -> Result<SeccompAction, String> {
    let data = |what: &str| match errno {
        Some(n) if n > 4095 => Err(format!(
            "at {errno_at}: {n} is not an errno (1 to 4095) for {what}"
        )),
        Some(n) => Ok(n),
        None => Ok(libc::EPERM as u32),
    };
    Ok(match a {
        // libseccomp's SCMP_ACT_KILL kills the thread.
        Action::Kill | Action::KillThread => SeccompAction::KillThread,
        Action::KillProcess => SeccompAction::KillProcess,
        Action::Trap => SeccompAction::Trap,
        Action::Errno => SeccompAction::Errno(data("SCMP_ACT_ERRNO")?),
        Action::Trace => SeccompAction::Trace(data("SCMP_ACT_TRACE")?),
        Action::Allow => SeccompAction::Allow,
        Action::Log => SeccompAction::Log,
        Action::Notify => {
            return Err(format!(
                "at {at}: SCMP_ACT_NOTIFY hands calls to a supervisor process, which stagebox does not run"
            ))
        }
    })
}

/// How the trace names an action: SCMP_ACT_ERRNO(EPERM).
pub fn action_name(a: &SeccompAction) -> String {
    match a {
        SeccompAction::Allow => "SCMP_ACT_ALLOW".into(),
        SeccompAction::Errno(n) => format!(
            "SCMP_ACT_ERRNO({:?})",
            nix::errno::Errno::from_raw(*n as i32)
        ),
        SeccompAction::KillThread => "SCMP_ACT_KILL_THREAD".into(),
        SeccompAction::KillProcess => "SCMP_ACT_KILL_PROCESS".into(),
        SeccompAction::Log => "SCMP_ACT_LOG".into(),
        SeccompAction::Trace(n) => format!("SCMP_ACT_TRACE({n})"),
        SeccompAction::Trap => "SCMP_ACT_TRAP".into(),
    }
}

/// Whether an entry applies here. Errors name an unknown capability or a bad minKernel.
fn applies(sc: &Syscall, env: &Env, at: &str) -> Result<bool, String> {
    let list = |f: &Option<Filter>, which: &str| -> Result<(Vec<u32>, Vec<String>), String> {
        let Some(f) = f else {
            return Ok((vec![], vec![]));
        };
        let mut caps_n = vec![];
        for (j, c) in f.caps.iter().flatten().enumerate() {
            caps_n.push(caps::number(c).ok_or_else(|| {
                format!("at {at}.{which}.caps[{j}]: {c:?} is not a capability name (CAP_SYS_ADMIN, CAP_NET_RAW ...)")
            })?);
        }
        Ok((caps_n, f.arches.clone().unwrap_or_default()))
    };
    let (inc_caps, inc_arches) = list(&sc.includes, "includes")?;
    let (exc_caps, exc_arches) = list(&sc.excludes, "excludes")?;
    let kept = |c: &u32| env.caps & (1u64 << c) != 0;
    if !inc_caps.iter().all(kept) || exc_caps.iter().any(kept) {
        return Ok(false);
    }
    if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == env.arch) {
        return Ok(false);
    }
    if exc_arches.iter().any(|a| a == env.arch) {
        return Ok(false);
    }
    if let Some(min) = sc.includes.as_ref().and_then(|f| f.min_kernel.as_deref()) {
        let want = parse_version(min).ok_or_else(|| {
            format!("at {at}.includes.minKernel: {min:?} is not a kernel version such as \"4.8\"")
        })?;
        if env.kernel < want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The entry's conditions as seccompiler rules: none (always), one rule (all must hold), or,
/// when an argument is compared twice, one rule per condition (any may hold), which is what
/// runc does because libseccomp cannot AND two conditions on one argument.
fn rules(args: &[Arg], at: &str) -> Result<Option<Vec<SeccompRule>>, String> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut conds = Vec::with_capacity(args.len());
    for (j, a) in args.iter().enumerate() {
        if a.index > 5 {
            return Err(format!(
                "at {at}.args[{j}].index: {} is not an argument index (0 to 5)",
                a.index
            ));
        }
        let (op, value) = match a.op {
            Op::Ne => (SeccompCmpOp::Ne, a.value),
            Op::Lt => (SeccompCmpOp::Lt, a.value),
            Op::Le => (SeccompCmpOp::Le, a.value),
            Op::Eq => (SeccompCmpOp::Eq, a.value),
            Op::Ge => (SeccompCmpOp::Ge, a.value),
            Op::Gt => (SeccompCmpOp::Gt, a.value),
            Op::MaskedEq => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        };
        let c = SeccompCondition::new(a.index as u8, SeccompCmpArgLen::Qword, op, value)
            .map_err(|e| format!("at {at}.args[{j}]: {e}"))?;
        conds.push((a.index, c));
    }
    let repeated = conds
        .iter()
        .enumerate()
        .any(|(i, (x, _))| conds[..i].iter().any(|(y, _)| y == x));
    let make = |v: Vec<SeccompCondition>| SeccompRule::new(v).map_err(|e| format!("at {at}: {e}"));
    let out = if repeated {
        conds
            .into_iter()
            .map(|(_, c)| make(vec![c]))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![make(conds.into_iter().map(|(_, c)| c).collect())?]
    };
    Ok(Some(out))
}

/// A syscall's rules in one group: always, or when any of these rules holds.
#[derive(Clone)]
enum Match {
    Always,
    Any(Vec<SeccompRule>),
}

impl Match {
    fn merge(&mut self, more: Option<Vec<SeccompRule>>) {
        match (self, more) {
            (Match::Always, _) => {}
            (m, None) => *m = Match::Always,
            (Match::Any(v), Some(r)) => v.extend(r),
        }
    }
    fn rules(self) -> Vec<SeccompRule> {
        match self {
            Match::Always => vec![],
            Match::Any(v) => v,
        }
    }
}

type Group = BTreeMap<i64, (&'static str, Match)>;

/// Compiles a parsed profile for `env`. The error is one phrase with its JSON path.
pub fn compile(p: &Profile, env: &Env) -> Result<Compiled, String> {
    let default = action(
        p.default_action,
        p.default_errno_ret,
        "defaultAction",
        "defaultErrnoRet",
    )?;
    // Rules grouped by action, in the order the actions first appear.
    let mut groups: Vec<(SeccompAction, Group)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for (i, sc) in p.syscalls.iter().flatten().enumerate() {
        let at = format!("syscalls[{i}]");
        let act = action(
            sc.action,
            sc.errno_ret,
            &format!("{at}.action"),
            &format!("{at}.errnoRet"),
        )?;
        let rules = rules(sc.args.as_deref().unwrap_or(&[]), &at)?;
        if sc.names.is_none() && sc.name.is_none() {
            return Err(format!("at {at}: the entry has no \"names\" list"));
        }
        if !applies(sc, env, &at)? || act == default {
            // An entry with the default action changes nothing (libseccomp refuses it).
            continue;
        }
        let gi = match groups.iter().position(|(a, _)| *a == act) {
            Some(gi) => gi,
            None => {
                groups.push((act, Group::new()));
                groups.len() - 1
            }
        };
        for name in sc.names.iter().flatten().chain(sc.name.iter()) {
            match names::lookup(name) {
                Some((static_name, nr)) => groups[gi]
                    .1
                    .entry(nr)
                    .or_insert((static_name, Match::Any(vec![])))
                    .1
                    .merge(rules.clone()),
                None => {
                    if !skipped.contains(name) {
                        skipped.push(name.clone());
                    }
                }
            }
        }
    }

    let build = |map: &Group, mismatch: SeccompAction, on_match: SeccompAction| {
        let rules = map
            .iter()
            .map(|(nr, (_, m))| (*nr, m.clone().rules()))
            .collect();
        let filter = SeccompFilter::new(rules, mismatch, on_match, env.target)
            .map_err(|e| format!("cannot build a filter: {e}"))?;
        let bpf: BpfProgram = filter.try_into().map_err(|e| match e {
            seccompiler::BackendError::FilterTooLarge(n) => format!(
                "the profile compiles to {n} BPF instructions, more than the kernel's limit of 4096"
            ),
            e => format!("cannot compile: {e}"),
        })?;
        Ok::<_, String>(
            bpf.into_iter()
                .map(|f| super::Insn {
                    code: f.code,
                    jt: f.jt,
                    jf: f.jf,
                    k: f.k,
                })
                .collect::<Vec<_>>(),
        )
    };
    let said = |map: &Group| {
        if map.len() <= 4 {
            map.values().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
        } else {
            format!("{} syscalls", map.len())
        }
    };

    let mut out = Compiled {
        default_action: action_name(&default),
        ..Default::default()
    };
    let mut all = Group::new();
    for (_, g) in &groups {
        for (nr, (name, m)) in g {
            let e = all.entry(*nr).or_insert((name, Match::Any(vec![])));
            match m {
                Match::Always => e.1 = Match::Always,
                Match::Any(r) => e.1.merge(Some(r.clone())),
            }
        }
    }
    out.rules = all.len();
    if default != SeccompAction::Allow {
        // The first filter: every syscall some rule names (with its conditions) passes on to
        // the others, any other gets the default action.
        out.filters
            .push(build(&all, default.clone(), SeccompAction::Allow)?);
        out.describe.push(format!(
            "{} -> SCMP_ACT_ALLOW (or the action of a later filter), any other -> {}",
            said(&all),
            out.default_action
        ));
    }
    for (act, g) in &groups {
        if *act == SeccompAction::Allow {
            continue;
        }
        out.filters
            .push(build(g, SeccompAction::Allow, act.clone())?);
        out.describe.push(format!(
            "{} -> {}, any other -> SCMP_ACT_ALLOW",
            said(g),
            action_name(act)
        ));
    }
    if out.filters.is_empty() {
        // An allow-everything profile still loads one filter, so the kernel shows it.
        out.filters.push(build(
            &Group::new(),
            SeccompAction::Allow,
            SeccompAction::KillProcess,
        )?);
        out.describe.push("every syscall -> SCMP_ACT_ALLOW".into());
    }
    out.skipped = skipped;
    Ok(out)
}
