//! The one redactor for every snapshot: what changes from run to run or from host to host
//! becomes a placeholder, and nothing else does.
//!
//! A trace is redacted by what it is, not by how its lines start: each trace line is read back
//! into the JSON trace's fields (`stage`, `event`, `syscall`, `fact`, `before`, `after`,
//! `message`), and a fact's `before` and `after` are redacted by the rule for that fact name
//! in [`FACT_RULES`] (a test checks that every fact the program can print has one). `--trace
//! json` lines are redacted the same way. Every other line (a workload's output, a lesson's
//! command, a table) is free text: the substitutions below, then every run of two or more
//! digits becomes `[N]`.
//!
//! Everywhere (trace or not):
//! - the state directory, whichever it is: the tests' own, STAGEBOX_STATE (exported or not),
//!   and the default one (the committed book was made there) -> `[STATE]`;
//! - the calls that make a cgroup parent (mkdir, controllers, a v1 parent's cpuset) are left
//!   out: whichever run finds it missing makes it;
//! - the cgroup parent of a state directory other than the default one (`stagebox-<8 hex>`)
//!   -> `stagebox`, the default's, so that a snapshot reads as a default install does;
//! - the default rootfs, busybox or host tools: `STATE/rootfs/busybox` or `.../host` ->
//!   `[STATE]/rootfs/[DEFAULT]`, what it was made from -> `[MADE FROM]`, its size in the
//!   image tables -> `[SIZE]`;
//! - digests (64 hex digits) -> `[DIGEST]`, container and image ids (12 hex digits standing
//!   alone) -> `[ID]`, the default hostname `stagebox-<6 hex>` -> `stagebox-[ID]`;
//! - temp names (`stagebox-lesson.XXXXXX`, `stagebox-check.XXXXXX`) -> `[TMP]`;
//! - a veth's host end, `veth<7 hex>` -> `veth[ID]`, and IPv4 addresses other than
//!   127.0.0.1 and 0.0.0.0 -> `[IP]` (which address a container leases depends on what else
//!   runs);
//! - "N seconds ago" -> `[AGO]`;
//! - this host's name -> `[HOST]`;
//! - numbers that name host things at any length: a host pid in a trace note, the host's
//!   shared memory segment id, a device:inode pair.

use serde_json::Value;
use std::path::PathBuf;

/// How a fact's `before` or `after` value is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redact {
    /// The same on every host: kept as it is (after the substitutions above).
    Keep,
    /// Every number in it varies (inode numbers, a host pid, a count of host mounts): `[N]`.
    Numbers,
    /// A count of processes: `1` (the container's PID 1 alone) is kept, any other number is
    /// the host's and becomes `[N]`.
    Processes,
    /// This host's name: `[HOST]`.
    Host,
    /// This host's interfaces: `[HOST INTERFACES]`.
    HostInterfaces,
    /// This host's IPv4 addresses: `[HOST ADDRESSES]`.
    HostAddresses,
    /// This host's routes: `[HOST ROUTES]`.
    HostRoutes,
    /// The cgroup the runtime sits in: `[HOST CGROUP]`.
    HostCgroup,
    /// The runtime's own capability set, which depends on the kernel and on what the host
    /// itself was given: `[HOST CAPS]`.
    HostCaps,
    /// A measurement of the kernel's accounting: `[MEASURED]`, keeping a trailing `(file)`.
    Measured,
    /// A mount line: the host's own mounts (not under the state directory) going away when
    /// the root is switched are left out (the line with them); the container's are kept.
    Mount,
    /// The whole line is left out: whether it appears at all depends on the host.
    Line,
}

/// One rule: the fact name as the program lists it (`<...>` stands for any text), the stages
/// it applies to (empty: every stage), and how `before` and `after` are redacted.
pub struct FactRule {
    pub fact: &'static str,
    pub stages: &'static [&'static str],
    pub before: Redact,
    pub after: Redact,
}

const fn rule(fact: &'static str, before: Redact, after: Redact) -> FactRule {
    FactRule {
        fact,
        stages: &[],
        before,
        after,
    }
}

/// The stages before the mount stage (and the cgroup stage's report after the exit): the
/// container still shares the host's mount table there, so a mount that comes or goes in it
/// is another process's doing (a test running beside this one), not the stage's.
pub const IN_THE_HOSTS_MOUNT_TABLE: &[&str] = &[
    "user", "cgroup", "devices", "uts", "ipc", "pid", "net", "cgroupns",
];

use Redact::*;

/// Fact name -> how its values are redacted. The first rule that matches the fact (and the
/// stage, where stages are named) wins.
pub const FACT_RULES: &[FactRule] = &[
    // kernel::observe::fact_names(): what the runtime reads from /proc after each stage.
    rule("ns/<namespace>", Numbers, Numbers),
    rule("pid inside", Numbers, Keep),
    // The user stage: the host's identity map before; after, host ids that depend on where
    // the `stagebox` entry of /etc/subuid sits and which slice was free (or the user's uid).
    rule("uid_map", Keep, Numbers),
    rule("uid on the host", Keep, Numbers),
    rule("uid inside", Numbers, Keep),
    rule("hostname", Host, Keep),
    rule("interfaces", HostInterfaces, Keep),
    rule("addresses", HostAddresses, Keep),
    rule("routes", HostRoutes, Keep),
    // The host's own System V objects come and go: whether the line is there at all does.
    rule("sysv ipc objects", Line, Line),
    // Read from /proc/PID/status: before, the host's own sets; after, Docker's.
    rule("CapBnd", HostCaps, Keep),
    rule("CapEff", HostCaps, Keep),
    rule("NoNewPrivs", Keep, Keep),
    rule("Seccomp", Keep, Keep),
    rule("visible pids", Processes, Processes),
    rule("root", Keep, Keep),
    rule("propagation of /", Numbers, Numbers),
    FactRule {
        fact: "mount count",
        stages: IN_THE_HOSTS_MOUNT_TABLE,
        before: Line,
        after: Line,
    },
    FactRule {
        fact: "mount",
        stages: IN_THE_HOSTS_MOUNT_TABLE,
        before: Line,
        after: Line,
    },
    // Even after the root switch: with the proc stage off, the host's /proc, /sys and /dev
    // come in with all their submounts.
    rule("mount count", Numbers, Numbers),
    rule("mount", Mount, Mount),
    // stages::cgroup::fact_names(): the cgroup stage's host side.
    rule("cgroup <hierarchy>", HostCgroup, Keep),
    rule("memory peak", Measured, Measured),
    rule("oom kills", Keep, Keep),
    rule("forks refused", Keep, Keep),
    rule("cpu time", Measured, Measured),
    rule("cpu throttled", Measured, Measured),
    // The limit files: the kernel's defaults before, the values written after.
    rule("memory.max", Keep, Keep),
    rule("memory.swap.max", Keep, Keep),
    rule("cpu.max", Keep, Keep),
    rule("cpu.weight", Keep, Keep),
    rule("pids.max", Keep, Keep),
    rule("cpuset.cpus", Keep, Keep),
    rule("cpuset.mems", Keep, Keep),
    rule("memory.limit_in_bytes", Keep, Keep),
    rule("memory.memsw.limit_in_bytes", Keep, Keep),
    rule("cpu.cfs_period_us", Keep, Keep),
    rule("cpu.cfs_quota_us", Keep, Keep),
    rule("cpu.shares", Keep, Keep),
    // Controllers switched on for children: only when missing, that is on the host's first
    // run or when the parent was just made (which depends on other runs).
    rule("<cgroup>/cgroup.subtree_control", Line, Line),
];

/// Every fact name the program can print: the observer's and the cgroup stage's.
pub fn program_fact_names() -> Vec<String> {
    let mut v = stagebox::kernel::observe::fact_names();
    v.extend(stagebox::stages::cgroup::fact_names());
    v
}

/// Whether a rule's fact name (with `<...>` standing for any text) matches a fact.
fn name_matches(pattern: &str, fact: &str) -> bool {
    match (pattern.find('<'), pattern.find('>')) {
        (Some(a), Some(b)) if a < b => {
            let (prefix, suffix) = (&pattern[..a], &pattern[b + 1..]);
            fact.len() > prefix.len() + suffix.len()
                && fact.starts_with(prefix)
                && fact.ends_with(suffix)
        }
        _ => pattern == fact,
    }
}

/// The rule for a fact printed by a stage; None for a fact no rule knows.
pub fn rule_for(stage: &str, fact: &str) -> Option<&'static FactRule> {
    FACT_RULES.iter().find(|r| {
        (r.fact == fact || name_matches(r.fact, fact))
            && (r.stages.is_empty() || r.stages.contains(&stage))
    })
}

/// What the redactor replaces, found once per test binary.
struct Context {
    /// State directory spellings, longest first.
    states: Vec<String>,
    host: String,
}

fn context() -> &'static Context {
    static CTX: std::sync::OnceLock<Context> = std::sync::OnceLock::new();
    CTX.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = vec![
            super::state_path(),
            PathBuf::from(stagebox::state::dir::ROOT_DEFAULT),
        ];
        if let Some(s) = std::env::var_os("STAGEBOX_STATE").filter(|s| !s.is_empty()) {
            dirs.push(PathBuf::from(s));
        }
        let mut states: Vec<String> = Vec::new();
        for d in dirs {
            let canonical = std::fs::canonicalize(&d).unwrap_or_else(|_| d.clone());
            for p in [d, canonical] {
                let s = p.display().to_string().trim_end_matches('/').to_string();
                if s.len() > 1 && !states.contains(&s) {
                    states.push(s);
                }
            }
        }
        states.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let host = nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        Context { states, host }
    })
}

/// Redacts a text: a whole transcript, a trace (pretty or JSON), a table.
pub fn redact(text: &str) -> String {
    let mut out = String::new();
    let mut stage: Option<String> = None;
    for line in text.lines() {
        if let Some(l) = redact_line(line, &mut stage) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// One line; None when the line is left out.
/// Marks a stage name in `redact_line`'s state as a stage that is off.
const OFF: &str = "off:";

fn redact_line(line: &str, stage: &mut Option<String>) -> Option<String> {
    if line.starts_with('{') {
        if let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) {
            if obj.contains_key("event") {
                return redact_json(&mut obj).then(|| Value::Object(obj).to_string());
            }
        }
    }
    let l = everywhere(line);
    for (mark, keeps_stage) in [("▶ ", true), ("▷ ", true), ("■ ", false), ("✗ ", false)] {
        if let Some(rest) = l.strip_prefix(mark) {
            let name = rest.split(' ').next().unwrap_or("");
            // An off stage (▷) did nothing: remember it, see below.
            let name = if mark == "▷ " {
                format!("{OFF}{name}")
            } else {
                name.to_string()
            };
            *stage = keeps_stage.then_some(name);
            return Some(numbers_in_text(&l));
        }
    }
    // A lesson transcript's step header and command end a trace.
    if l.starts_with("## ") || l.starts_with("$ ") {
        *stage = None;
    }
    let Some(current) = stage.clone() else {
        return Some(text_line(&l));
    };
    let current = match current.strip_prefix(OFF) {
        Some(name) => {
            // A stage that is off changed nothing, so a mount that comes or goes while it is
            // traced is another process's, in the host's mount table the container shares.
            if parse_fact(&l).is_some_and(|(f, ..)| f == "mount" || f == "mount count") {
                return None;
            }
            name.to_string()
        }
        None => current,
    };
    if let Some(call) = l.strip_prefix("    $ ") {
        let (call, result) = call.rsplit_once(" = ").unwrap_or((call, ""));
        let call = syscall(call)?;
        return Some(format!("    $ {call} = {result}"));
    }
    if let Some(note) = l.strip_prefix("    · ") {
        // Made once per host, by whichever run first finds the entry missing.
        if current == "user" && note.starts_with("added the entry") {
            return None;
        }
        if current == "net" && once_per_host_net_note(note) {
            return None;
        }
        return Some(format!("    · {}", self::note(&current, note)));
    }
    // The pretty trace's one line for the host mounts the root switch takes out of view
    // (trace::facts): how many there are is the host's, at any number of digits.
    if let Some(rest) = l.strip_prefix("    mount ") {
        let rest = rest.trim_start();
        if let Some((n, what)) = rest.split_once(' ') {
            if n.chars().all(|c| c.is_ascii_digit()) && what.contains("gone from view") {
                let what = what.replacen("host mount gone", "host mounts gone", 1);
                return Some(format!("    {:<18} [N] {what}", "mount"));
            }
        }
    }
    if let Some((fact, before, after)) = parse_fact(&l) {
        let (before, after) = fact_values(&current, &fact, before, after)?;
        return Some(render_fact(&fact, before.as_deref(), after.as_deref()));
    }
    Some(text_line(&l))
}

/// A `--trace json` event, redacted in place; false when it is left out.
fn redact_json(obj: &mut serde_json::Map<String, Value>) -> bool {
    let get = |o: &serde_json::Map<String, Value>, k: &str| {
        o.get(k).and_then(Value::as_str).map(str::to_string)
    };
    let stage = get(obj, "stage").unwrap_or_default();
    match get(obj, "event").as_deref() {
        Some("fact") => {
            let fact = get(obj, "fact").unwrap_or_default();
            let before = get(obj, "before").map(|v| everywhere(&v));
            let after = get(obj, "after").map(|v| everywhere(&v));
            let Some((before, after)) = fact_values(&stage, &fact, before, after) else {
                return false;
            };
            for (k, v) in [("before", before), ("after", after)] {
                obj.insert(k.into(), v.map(Value::String).unwrap_or(Value::Null));
            }
        }
        Some("syscall") => {
            let call = everywhere(&get(obj, "syscall").unwrap_or_default());
            let Some(call) = syscall(&call) else {
                return false;
            };
            obj.insert("syscall".into(), Value::String(call));
        }
        _ => {
            if let Some(m) = get(obj, "message") {
                if stage == "user" && m.starts_with("added the entry") {
                    return false;
                }
                if stage == "net" && once_per_host_net_note(&m) {
                    return false;
                }
                let m = note(&stage, &everywhere(&m));
                obj.insert("message".into(), Value::String(m));
            }
        }
    }
    true
}

/// A fact line of the pretty trace: `    NAME<padding> BEFORE -> AFTER`, `+ AFTER` or
/// `- BEFORE`, NAME being one the program can print.
fn parse_fact(line: &str) -> Option<(String, Option<String>, Option<String>)> {
    let body = line.strip_prefix("    ")?;
    let mut names: Vec<String> = program_fact_names()
        .into_iter()
        .filter(|n| !n.contains('<'))
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let name = names
        .into_iter()
        .find(|n| body.starts_with(n.as_str()) && body[n.len()..].starts_with(' '))
        .or_else(|| {
            // The names with a part that varies: `cgroup <hierarchy>`, `<cgroup>/...`.
            let word = |s: &str| s.split(' ').next().unwrap_or("").to_string();
            if let Some(rest) = body.strip_prefix("cgroup ") {
                let h = word(rest);
                (!h.is_empty() && rest[h.len()..].starts_with(' ')).then(|| format!("cgroup {h}"))
            } else {
                let w = word(body);
                w.ends_with("/cgroup.subtree_control").then_some(w)
            }
        })?;
    let values = body[name.len()..].trim_start();
    let (before, after) = if let Some(a) = values.strip_prefix("+ ") {
        (None, Some(a.to_string()))
    } else if let Some(a) = values.strip_prefix("-> ") {
        (Some(String::new()), Some(a.to_string()))
    } else if let Some((b, a)) = values.split_once(" -> ") {
        (Some(b.to_string()), Some(a.to_string()))
    } else if let Some(b) = values.strip_prefix("- ") {
        (Some(b.to_string()), None)
    } else {
        return None;
    };
    Some((name, before, after))
}

/// The pretty trace's fact line, as `trace::pretty_line` prints it without colors.
fn render_fact(fact: &str, before: Option<&str>, after: Option<&str>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("    {fact:<18} {b} -> {a}"),
        (None, Some(a)) => format!("    {fact:<18} + {a}"),
        (Some(b), None) => format!("    {fact:<18} - {b}"),
        (None, None) => format!("    {fact}"),
    }
}

/// A fact's values by its rule; None when the line is left out. A fact without a rule is
/// a new fact nobody decided about: it fails here, so it cannot slip into a snapshot.
type Values = (Option<String>, Option<String>);
fn fact_values(
    stage: &str,
    fact: &str,
    before: Option<String>,
    after: Option<String>,
) -> Option<Values> {
    let rule = rule_for(stage, fact).unwrap_or_else(|| {
        panic!("the fact {fact:?} (stage {stage}) has no rule in tests/common/redact.rs FACT_RULES")
    });
    if rule.before == Line || rule.after == Line {
        return None;
    }
    if rule.before == Mount && after.is_none() {
        if let Some(b) = &before {
            if !b.contains("[STATE]") {
                return None;
            }
        }
    }
    let apply = |how: Redact, v: Option<String>| v.map(|v| value(how, &v));
    Some((apply(rule.before, before), apply(rule.after, after)))
}

fn value(how: Redact, v: &str) -> String {
    match how {
        Keep | Mount | Line => v.to_string(),
        Numbers => digits(v),
        Processes if v == "1" => v.to_string(),
        Processes => digits(v),
        Host => "[HOST]".into(),
        HostInterfaces => "[HOST INTERFACES]".into(),
        HostAddresses => "[HOST ADDRESSES]".into(),
        HostRoutes => "[HOST ROUTES]".into(),
        HostCgroup => "[HOST CGROUP]".into(),
        HostCaps => "[HOST CAPS]".into(),
        Measured => {
            let source = v.rfind(" (").map(|i| &v[i..]).unwrap_or("");
            format!("[MEASURED]{source}")
        }
    }
}

/// A syscall of the trace; None when the line is left out.
fn syscall(call: &str) -> Option<String> {
    // The default bridge, its firewall rules and ip_forward are made by whichever run first
    // finds them missing on this host.
    if call.starts_with("RTM_NEWLINK bridge ")
        || (call.starts_with("RTM_NEWADDR ") && call.contains(" dev stagebox"))
        || call.starts_with("RTM_SETLINK stagebox")
        || call.starts_with("nft -f")
        || call.contains("/proc/sys/net/ipv4/ip_forward")
    {
        return None;
    }
    // The net stage: the pid whose namespace gets the veth's peer or the proxy.
    if call.starts_with("RTM_") || call.starts_with("setns(") || call.starts_with("fork();") {
        return Some(numbers_in_text(call));
    }
    let first_arg = call
        .split_once("(\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or("");
    // The parent cgroup is made by whichever run finds it missing, and controllers are
    // switched on for it then: both depend on other runs.
    if call.starts_with("mkdir(") && is_cgroup_parent(first_arg) {
        return None;
    }
    if call.starts_with("write(") && first_arg.ends_with("/cgroup.subtree_control") {
        return None;
    }
    // ... and on v1 the new parent gets the host's CPUs and memory nodes.
    if call.starts_with("write(") {
        if let Some((dir, file)) = first_arg.rsplit_once('/') {
            if file.starts_with("cpuset.") && is_cgroup_parent(dir) {
                return None;
            }
        }
    }
    // The user stage: the pid whose maps are written from outside (or handed to newuidmap),
    // and host ids that depend on where the `stagebox` entry of /etc/subuid sits and on
    // which slice of it was free.
    let proc_pid = call
        .strip_prefix("write(\"/proc/")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    // exec's chroot into the workload's root: `fchdir(</proc/PID/root>)`.
    if proc_pid
        || call.starts_with("flock(")
        || call.starts_with("exec(")
        || call.starts_with("fchdir(</proc/")
    {
        return Some(numbers_in_text(call));
    }
    // The pid moved into a cgroup.
    if call.starts_with("write(") && first_arg.ends_with("/cgroup.procs") {
        if let Some((head, _)) = call.rsplit_once(", \"") {
            return Some(format!("{head}, \"[N]\")"));
        }
    }
    Some(call.to_string())
}

/// The net stage's notes about what the first run on a host makes (the bridge, ip_forward)
/// or what another firewall on this host does.
fn once_per_host_net_note(n: &str) -> bool {
    (n.starts_with("bridge ") && n.contains(" made with "))
        || n.starts_with("ip_forward was off")
        || n.contains("FORWARD")
}

/// `/sys/fs/cgroup/.../stagebox` (the substitutions made `stagebox-<hash>` that already).
fn is_cgroup_parent(path: &str) -> bool {
    path.starts_with("/sys/fs/cgroup/") && path.ends_with("/stagebox")
}

/// A note of the trace (or another message): host pids at any length, the cgroupns view of
/// the runtime's own cgroups, and the free-text rule.
fn note(stage: &str, n: &str) -> String {
    if stage == "cgroupns" {
        if let Some(list) = n.strip_prefix("/proc/self/cgroup inside: ") {
            // With the cgroup stage on, the container's own cgroups (the same on every host
            // of a layout); else the runtime's, which differ from session to session.
            let own = list.split(", ").all(|e| {
                e.split(" -> ")
                    .next()
                    .is_some_and(|b| b.contains(":/stagebox/"))
            });
            if !own {
                return "/proc/self/cgroup [HOST CGROUP PATHS]".into();
            }
        }
    }
    let mut n = n.to_string();
    for label in ["host pid ", "the intermediate process "] {
        n = number_after(&n, label);
    }
    numbers_in_text(&n)
}

/// A line that is not a trace event: the free-text rule.
fn text_line(l: &str) -> String {
    let t = l.trim_start();
    if t.starts_with("top of the tree:") {
        return "  top of the tree:   [THE HOST'S / ENTRIES]".into();
    }
    let mut l = l.to_string();
    // What the default rootfs was made from, and its size in `images` and `history`.
    if let Some(i) = l.find("made from: ") {
        l = format!("{}made from: [MADE FROM]", &l[..i]);
    }
    if let Some(i) = l.find("the default rootfs (") {
        let start = i + "the default rootfs (".len();
        let end = l[start..].find('…').map(|e| start + e).unwrap_or(l.len());
        l.replace_range(start..end, "[MADE FROM]");
        l = size_column(&l);
    }
    if l.starts_with("default ") && l.split_whitespace().nth(1) == Some("latest") {
        l = size_column(&l);
    }
    numbers_in_text(&l)
}

/// The first size (`2.1MB`, `512kB`, `3B`) after the middle of a table row -> `[SIZE]`.
fn size_column(l: &str) -> String {
    let words: Vec<&str> = l.split(' ').collect();
    let is_size = |w: &str| {
        let n = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        n.len() < w.len()
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            && ["B", "kB", "MB", "GB"].contains(&&w[n.len()..])
    };
    match words.iter().rposition(|w| is_size(w)) {
        Some(i) => {
            let mut w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
            w[i] = "[SIZE]".into();
            w.join(" ")
        }
        None => l.to_string(),
    }
}

/// The free-text rule for numbers: the host's shared memory segment and a device:inode pair
/// at any length, then every other run of two or more digits, except file modes (0o555,
/// mode=755) and a lesson's number in its title (`07 · ...`).
fn numbers_in_text(l: &str) -> String {
    let mut l = number_after(l, "the host's shared memory segment ");
    if let Some(i) = l.find("device:inode ") {
        let start = i + "device:inode ".len();
        let len = l[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ':')
            .count();
        if len > 0 {
            l.replace_range(start..start + len, "[N]:[N]");
        }
    }
    let title = l
        .split_once(" · ")
        .is_some_and(|(a, _)| !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()));
    let mut res = String::new();
    let mut run = String::new();
    for c in l.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        let kept = res.ends_with("0o") || res.ends_with("mode=") || (res.is_empty() && title);
        if run.len() >= 2 && !kept {
            res.push_str("[N]");
        } else {
            res.push_str(&run);
        }
        run.clear();
        if c != '\0' {
            res.push(c);
        }
    }
    res
}

/// The number right after `label`, at any length -> `[N]`.
fn number_after(l: &str, label: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(label) {
        let start = i + label.len();
        out.push_str(&rest[..start]);
        let len = rest[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        if len > 0 {
            out.push_str("[N]");
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// The substitutions made on every line, trace or not.
fn everywhere(line: &str) -> String {
    let ctx = context();
    let mut l = line.to_string();
    for s in &ctx.states {
        l = replace_path(&l, s, "[STATE]");
    }
    l = l
        .replace("[STATE]/rootfs/busybox", "[STATE]/rootfs/[DEFAULT]")
        .replace("[STATE]/rootfs/host", "[STATE]/rootfs/[DEFAULT]");
    l = hex_runs(&l);
    l = after_prefix(&l, "stagebox-lesson.", 6, |_| true, "[TMP]");
    l = after_prefix(&l, "stagebox-check.", 6, |_| true, "[TMP]");
    // The cgroup parent of another state directory, then the default hostname.
    l = cgroup_parents(&l);
    l = after_prefix(&l, "stagebox-", 6, is_lower_hex, "[ID]");
    l = after_prefix(&l, "veth", 7, is_lower_hex, "[ID]");
    l = ipv4s(&l);
    l = ages(&l);
    if !ctx.host.is_empty() {
        l = replace_word(&l, &ctx.host, "[HOST]");
    }
    l
}

/// Dotted IPv4 addresses standing alone -> `[IP]`, except the loopback and "any" ones.
fn ipv4s(l: &str) -> String {
    let chars: Vec<char> = l.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '.');
        if boundary && chars[i].is_ascii_digit() {
            let len = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == '.')
                .count();
            let cand: String = chars[i..i + len].iter().collect();
            let cand = cand.trim_end_matches('.');
            let alone = !chars
                .get(i + cand.len())
                .is_some_and(|c| c.is_ascii_alphanumeric());
            if alone
                && cand.parse::<std::net::Ipv4Addr>().is_ok()
                && cand != "127.0.0.1"
                && cand != "0.0.0.0"
            {
                out.push_str("[IP]");
                i += cand.len();
                continue;
            }
            let skip = cand.len().max(1);
            out.extend(&chars[i..i + skip]);
            i += skip;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn is_lower_hex(c: char) -> bool {
    c.is_ascii_digit() || ('a'..='f').contains(&c)
}

/// `path` where it stands as a whole path (not the start of a longer name) -> `with`.
fn replace_path(l: &str, path: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(path) {
        let after = &rest[i + path.len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || "-_.".contains(c));
        out.push_str(&rest[..i]);
        out.push_str(if whole { with } else { path });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `word` standing alone (no letter, digit, `-`, `_` or `.` next to it) -> `with`.
fn replace_word(l: &str, word: &str, with: &str) -> String {
    let part = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(word) {
        let alone_before = !rest[..i].ends_with(part) && (i > 0 || !out.ends_with(part));
        let after = &rest[i + word.len()..];
        out.push_str(&rest[..i]);
        out.push_str(if alone_before && !after.starts_with(part) {
            with
        } else {
            word
        });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `stagebox-<8 hex>`, the cgroup parent of a state directory other than the default one
/// -> `stagebox`, the default's.
fn cgroup_parents(l: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find("stagebox-") {
        let tail = &rest[i + "stagebox-".len()..];
        let hex = tail.chars().take_while(|c| is_lower_hex(*c)).count();
        let alone = !tail[hex..].starts_with(|c: char| c.is_ascii_alphanumeric());
        out.push_str(&rest[..i]);
        if hex == 8 && alone {
            out.push_str("stagebox");
            rest = &tail[hex..];
        } else {
            out.push_str("stagebox-");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Every run of digits -> `[N]`.
fn digits(v: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !in_run {
                out.push_str("[N]");
            }
            in_run = true;
        } else {
            in_run = false;
            out.push(c);
        }
    }
    out
}

/// `prefix` + exactly `n` characters that pass `ok` (and no more) -> `prefix` + `with`.
fn after_prefix(l: &str, prefix: &str, n: usize, ok: fn(char) -> bool, with: &str) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i + prefix.len()..];
        let id: String = tail.chars().take(n).collect();
        let fits = id.chars().count() == n
            && id.chars().all(|c| c.is_ascii_alphanumeric() && ok(c))
            && !tail[id.len()..].starts_with(|c: char| c.is_ascii_alphanumeric());
        out.push_str(&rest[..i + prefix.len()]);
        if fits {
            out.push_str(with);
            rest = &tail[id.len()..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Runs of lowercase hex digits standing alone: 64 of them (a digest) -> `[DIGEST]`, 12 (a
/// container or image id) -> `[ID]`.
fn hex_runs(l: &str) -> String {
    let chars: Vec<char> = l.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if boundary {
            let len = chars[i..].iter().take_while(|c| is_lower_hex(**c)).count();
            let alone = !chars
                .get(i + len)
                .is_some_and(|c| c.is_ascii_alphanumeric());
            if alone && (len == 64 || len == 12) {
                out.push_str(if len == 64 { "[DIGEST]" } else { "[ID]" });
                i += len;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// "N seconds ago" (any unit) -> "[AGO]".
fn ages(l: &str) -> String {
    const UNITS: &[&str] = &[
        "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks",
        "month", "months", "year", "years",
    ];
    let words: Vec<&str> = l.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut k = 0;
    while k < words.len() {
        let w = words[k];
        if k + 2 < words.len()
            && !w.is_empty()
            && w.chars().all(|c| c.is_ascii_digit())
            && UNITS.contains(&words[k + 1])
            && words[k + 2] == "ago"
        {
            // The column's padding after it depended on the age's length.
            out.push("[AGO]".into());
            k += 3;
            while k + 1 < words.len() && words[k].is_empty() {
                k += 1;
            }
            continue;
        }
        out.push(w.to_string());
        k += 1;
    }
    out.join(" ")
}

/// Fails unless every fact the program can print has a rule, and every rule names such a
/// fact (tests/redact.rs calls it).
pub fn assert_every_fact_has_a_rule() {
    let names = program_fact_names();
    let known = |n: &str| {
        FACT_RULES
            .iter()
            .any(|r| r.fact == n || name_matches(r.fact, n))
    };
    let missing: Vec<&String> = names.iter().filter(|n| !known(n)).collect();
    assert!(
        missing.is_empty(),
        "facts without a redaction rule: {missing:?}"
    );
    let stale: Vec<&str> = FACT_RULES
        .iter()
        .map(|r| r.fact)
        .filter(|f| !names.iter().any(|n| n == f || name_matches(f, n)))
        .collect();
    assert!(
        stale.is_empty(),
        "rules for facts the program does not print: {stale:?}"
    );
}
