//! A parsed profile, its conditions applied, compiled to one BPF filter (seccompiler
//! compiles the comparisons of arguments).
//!
//! Steps: keep the `syscalls` entries whose `includes`/`excludes` hold for the capabilities
//! the container keeps, this architecture and the running kernel; turn each name into this
//! architecture's number (skip names it lacks); cut the number line into ranges with the same
//! answer; emit the architecture check and a binary search over the ranges, with
//! seccompiler's code for the argument conditions at the leaves (see `mod.rs` for why).

use super::names;
use super::profile::{Action, Arg, Filter, Op, Profile, Syscall};
use crate::confine::caps;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule,
    TargetArch,
};
use std::collections::BTreeMap;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

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
                    "stagebox compiles seccomp filters for x86_64 and aarch64 only, not {other}; use --security-opt seccomp=unconfined"
                ))
            }
        };
        let kernel = parse_version(&kernel_release()).unwrap_or((0, 0));
        Ok(Env {
            caps,
            arch,
            target,
            kernel,
        })
    }
}

/// The running kernel's release ("6.1.0-18-amd64"), from uname(2): cheaper than opening
/// /proc/sys/kernel/osrelease, on a path that runs for every container.
pub(super) fn kernel_release() -> String {
    // SAFETY: utsname is plain bytes; uname fills it and returns 0, or fails and we read zeros.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The compiled filters and what the trace says of them.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub filters: Vec<Vec<Insn>>,
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

/// The seccompiler action for a profile action and its errnoRet; `at` is the JSON path of
/// the entry ("" at the top, else "syscalls[3]."), `fields` the names of the two fields.
fn action(
    a: Action,
    errno: Option<u32>,
    at: &str,
    fields: (&str, &str),
) -> Result<SeccompAction, String> {
    let data = |what: &str| match errno {
        Some(n) if n > 4095 => Err(format!(
            "at {at}{}: {n} is not an errno (1 to 4095) for {what}",
            fields.1
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
                "at {at}{}: SCMP_ACT_NOTIFY hands calls to a supervisor process, which stagebox does not run",
                fields.0
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
fn applies(sc: &Syscall<'_>, env: &Env, at: &str) -> Result<bool, String> {
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

/// How restrictive an action is, as the kernel ranks them (lower wins).
fn rank(a: &SeccompAction) -> u8 {
    match a {
        SeccompAction::KillProcess => 0,
        SeccompAction::KillThread => 1,
        SeccompAction::Trap => 2,
        SeccompAction::Errno(_) => 3,
        SeccompAction::Trace(_) => 4,
        SeccompAction::Log => 5,
        SeccompAction::Allow => 6,
    }
}

/// What one syscall gets: its rules with conditions, tried in profile order, then its
/// unconditional action (the most restrictive, if several entries name it), else the
/// profile's default.
struct Leaf {
    name: &'static str,
    conds: Vec<(Vec<SeccompRule>, SeccompAction)>,
    always: Option<SeccompAction>,
}

/// A range of syscall numbers and what they get: one return value, or (for a single number)
/// the conditions of a leaf.
#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Ret(u32),
    Leaf(usize),
}

// Classic BPF opcodes (linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
/// The kernel's limit on one filter's length.
const BPF_MAXINSNS: usize = 4096;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

fn audit_arch(t: TargetArch) -> u32 {
    const AUDIT_ARCH_64BIT_LE: u32 = 0x8000_0000 | 0x4000_0000;
    match t {
        TargetArch::x86_64 => 62 | AUDIT_ARCH_64BIT_LE,
        TargetArch::aarch64 => 183 | AUDIT_ARCH_64BIT_LE,
        TargetArch::riscv64 => 243 | AUDIT_ARCH_64BIT_LE,
    }
}

/// A leaf's code: each rule (seccompiler's BPF for its conditions: falls through when they
/// all hold, jumps past the next instruction when one fails) followed by its action, then
/// the fallback.
fn leaf_code(leaf: &Leaf, default: &SeccompAction) -> Vec<Insn> {
    let mut out = Vec::new();
    for (rules, act) in &leaf.conds {
        for r in rules {
            let bpf: BpfProgram = r.clone().into();
            out.extend(bpf.into_iter().map(|f| insn(f.code, f.jt, f.jf, f.k)));
            out.push(insn(RET_K, 0, 0, u32::from(act.clone())));
        }
    }
    let last = leaf.always.as_ref().unwrap_or(default).clone();
    out.push(insn(RET_K, 0, 0, u32::from(last)));
    out
}

/// A binary search over the ranges (each starts at its number and ends where the next
/// starts), so a syscall is decided in about log2(ranges) comparisons.
fn tree(ranges: &[(u32, Verdict)], leaves: &[Vec<Insn>]) -> Vec<Insn> {
    if ranges.len() == 1 {
        return match ranges[0].1 {
            Verdict::Ret(v) => vec![insn(RET_K, 0, 0, v)],
            Verdict::Leaf(i) => leaves[i].clone(),
        };
    }
    let mid = ranges.len() / 2;
    let (left, right) = (tree(&ranges[..mid], leaves), tree(&ranges[mid..], leaves));
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        // nr >= k: jump over the left half.
        Ok(n) => out.push(insn(JMP_JGE_K, n, 0, ranges[mid].0)),
        // Too far for a conditional jump (255 at most): through an unconditional one.
        Err(_) => {
            out.push(insn(JMP_JGE_K, 0, 1, ranges[mid].0));
            out.push(insn(JMP_JA, 0, 0, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// Compiles a parsed profile for `env`. The error is one phrase with its JSON path.
pub fn compile(p: &Profile<'_>, env: &Env) -> Result<Compiled, String> {
    let default = action(
        p.default_action,
        p.default_errno_ret,
        "",
        ("defaultAction", "defaultErrnoRet"),
    )?;
    let mut leaves: BTreeMap<u32, Leaf> = BTreeMap::new();
    let mut skipped: Vec<String> = Vec::new();
    for (i, sc) in p.syscalls.iter().flatten().enumerate() {
        let at = format!("syscalls[{i}]");
        let act = action(
            sc.action,
            sc.errno_ret,
            &format!("{at}."),
            ("action", "errnoRet"),
        )?;
        let rules = rules(sc.args.as_deref().unwrap_or(&[]), &at)?;
        if sc.names.is_none() && sc.name.is_none() {
            return Err(format!("at {at}: the entry has no \"names\" list"));
        }
        if !applies(sc, env, &at)? || act == default {
            // An entry with the default action changes nothing (libseccomp refuses it).
            continue;
        }
        for name in sc.names.iter().flatten().chain(sc.name.iter()) {
            let Some((name, nr)) = names::lookup(name) else {
                skipped.push(name.to_string());
                continue;
            };
            let leaf = leaves.entry(nr as u32).or_insert(Leaf {
                name,
                conds: vec![],
                always: None,
            });
            match &rules {
                Some(r) => leaf.conds.push((r.clone(), act.clone())),
                None => match &leaf.always {
                    Some(a) if rank(a) <= rank(&act) => {}
                    _ => leaf.always = Some(act.clone()),
                },
            }
        }
    }

    skipped.sort_unstable();
    skipped.dedup();

    // The number line cut into ranges that get the same answer.
    let default_ret = u32::from(default.clone());
    let (nrs, leaves): (Vec<u32>, Vec<Leaf>) = leaves.into_iter().unzip();
    let mut ranges: Vec<(u32, Verdict)> = vec![(0, Verdict::Ret(default_ret))];
    let mut push = |lo: u32, v: Verdict| match ranges.last_mut() {
        Some(last) if last.0 == lo => last.1 = v,
        Some(last) if last.1 == v && matches!(v, Verdict::Ret(_)) => {}
        _ => ranges.push((lo, v)),
    };
    for (i, leaf) in leaves.iter().enumerate() {
        let v = match (&leaf.conds[..], &leaf.always) {
            ([], Some(a)) => Verdict::Ret(u32::from(a.clone())),
            _ => Verdict::Leaf(i),
        };
        push(nrs[i], v);
        push(nrs[i] + 1, Verdict::Ret(default_ret));
    }
    // Two merged neighbours may now be equal: merge again.
    ranges.dedup_by(|b, a| a.1 == b.1 && matches!(a.1, Verdict::Ret(_)));
    let code: Vec<Vec<Insn>> = leaves
        .iter()
        .map(|l| {
            if l.conds.is_empty() {
                vec![]
            } else {
                leaf_code(l, &default)
            }
        })
        .collect();

    let mut filter = vec![
        insn(LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        insn(JMP_JEQ_K, 1, 0, audit_arch(env.target)),
        insn(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
    ];
    filter.extend(tree(&ranges, &code));
    if filter.len() > BPF_MAXINSNS {
        return Err(format!(
            "the profile compiles to {} BPF instructions, more than the kernel's limit of {BPF_MAXINSNS}",
            filter.len()
        ));
    }

    // What the trace says: the syscalls by what they get.
    let mut by_action: Vec<(SeccompAction, Vec<&str>)> = Vec::new();
    let mut conditional: Vec<&str> = Vec::new();
    for leaf in &leaves {
        match (&leaf.conds[..], &leaf.always) {
            ([], Some(a)) => match by_action.iter_mut().find(|(x, _)| x == a) {
                Some((_, v)) => v.push(leaf.name),
                None => by_action.push((a.clone(), vec![leaf.name])),
            },
            _ => conditional.push(leaf.name),
        }
    }
    by_action.sort_by_key(|(a, _)| std::cmp::Reverse(rank(a)));
    let said = |v: &[&str]| {
        if v.len() <= 4 {
            v.join(" ")
        } else {
            format!("{} syscalls", v.len())
        }
    };
    let mut parts: Vec<String> = by_action
        .iter()
        .map(|(a, v)| format!("{} -> {}", said(v), action_name(a)))
        .collect();
    if !conditional.is_empty() {
        parts.push(format!("{} -> by their arguments", said(&conditional)));
    }
    parts.push(format!("any other -> {}", action_name(&default)));
    let describe = format!(
        "{}; {} instructions, a binary search over {} ranges of syscall numbers",
        parts.join(", "),
        filter.len(),
        ranges.len()
    );

    Ok(Compiled {
        filters: vec![filter],
        describe: vec![describe],
        rules: leaves.len(),
        default_action: action_name(&default),
        skipped,
    })
}
