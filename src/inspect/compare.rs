//! `stagebox compare`: what does each stage actually protect? Runs stagebox's own probe
//! (`probe --checks`) in containers with every stage on, then with each stage off in turn
//! (or, with `--build-up`, from no stage at all adding one at a time), and prints a matrix:
//! one row per check, one column per configuration, each cell isolated or LEAKS.
//!
//! The runner prepares on the host what the checks look for (a marker file, a SysV shared
//! memory segment) and removes it again, with any mount that leaked, even when a probe fails
//! or the user presses Ctrl-C.

use crate::error::{Error, Result};
use crate::inspect::checks::{HostFacts, IsolationCheck, Verdict};
use crate::stages::plan::{Plan, Toggles};
use crate::stages::RootSwitch;
use crate::stages::{self, StageId};
use colored::Colorize;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Clone)]
pub struct CompareOpts {
    pub rootfs: Option<PathBuf>,
    /// Extra arguments for every `stagebox run` (an image, for example).
    pub run_args: Vec<String>,
    /// Stages to switch off in turn (default: every available stage).
    pub stages: Option<Vec<String>>,
    pub build_up: bool,
    pub format: Format,
    pub evidence: bool,
    pub state: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    pub label: String,
    /// The stages on in this configuration, in pipeline order.
    pub stages: Vec<String>,
    pub root_switch: String,
    /// Why the plan refused this configuration, if it did.
    pub refused: Option<String>,
    /// Why the probe could not run, if it could not.
    pub error: Option<String>,
    pub checks: Vec<IsolationCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    pub columns: Vec<Column>,
}

struct Config {
    label: String,
    toggles: Toggles,
    root_switch: RootSwitch,
}

fn available() -> Vec<StageId> {
    stages::registry::all()
        .iter()
        .map(|s| s.info().id)
        .filter(|id| *id != StageId::Volumes)
        .collect()
}

fn configs(opts: &CompareOpts) -> Result<Vec<Config>> {
    let all = available();
    let chosen: Vec<StageId> = match &opts.stages {
        None => all.clone(),
        Some(names) => {
            let mut v = Vec::new();
            for n in names
                .iter()
                .flat_map(|s| s.split(','))
                .filter(|s| !s.is_empty())
            {
                let id: StageId = n.parse().map_err(|_| {
                    Error::usage(format!(
                        "unknown stage {n:?} in --stages; `stagebox stages` lists them"
                    ))
                })?;
                if !all.contains(&id) {
                    return Err(Error::usage(format!(
                        "stage {n:?} in --stages is not available in this version"
                    )));
                }
                v.push(id);
            }
            v.sort();
            v
        }
    };
    let t = |only: Option<Vec<String>>, without: Vec<String>| Toggles {
        only,
        without,
        volumes_given: false,
        confine: Default::default(),
    };
    let mut out = Vec::new();
    if opts.build_up {
        let mut on: Vec<String> = Vec::new();
        out.push(Config {
            label: "none".into(),
            toggles: t(Some(vec![]), vec![]),
            root_switch: RootSwitch::Pivot,
        });
        for id in &chosen {
            on.push(id.name().to_string());
            out.push(Config {
                label: format!("+{}", id.name()),
                toggles: t(Some(on.clone()), vec![]),
                root_switch: RootSwitch::Pivot,
            });
        }
    } else {
        out.push(Config {
            label: "all".into(),
            toggles: t(None, vec![]),
            root_switch: RootSwitch::Pivot,
        });
        for id in &chosen {
            out.push(Config {
                label: format!("-{}", id.name()),
                toggles: t(None, vec![id.name().to_string()]),
                root_switch: RootSwitch::Pivot,
            });
        }
        if chosen.contains(&StageId::Pivot) {
            out.push(Config {
                label: "chroot".into(),
                toggles: t(None, vec![]),
                root_switch: RootSwitch::Chroot,
            });
        }
    }
    Ok(out)
}

/// The descriptor the runner leaves open on the marker's directory across `stagebox run`,
/// as a careless caller would (`exec 9</tmp; stagebox run ...`).
const INHERITED_FD: i32 = 9;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// What the runner put on the host; removed on drop.
struct HostSetup {
    facts: HostFacts,
}

impl HostSetup {
    fn new(state: &Path) -> Result<HostSetup> {
        let token = crate::state::ids::new_id();
        let marker = std::env::temp_dir().join(format!(".stagebox-marker-{token}"));
        std::fs::write(&marker, b"a file only the host has\n")
            .map_err(|e| Error::io(format!("write {}", marker.display()), e))?;
        // SAFETY: plain shmget; the segment is removed in drop.
        let shm_id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
        let host_hostname = nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = state;
        Ok(HostSetup {
            facts: HostFacts {
                marker,
                host_pid: std::process::id() as i32,
                host_hostname,
                host_interfaces: crate::kernel::netif::own_interfaces()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect(),
                shm_id,
                leak_token: String::new(),
                leak_dir: PathBuf::new(),
                limits_expected: false,
                host_cgroup_ns: std::fs::read_link("/proc/self/ns/cgroup")
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                root_dev: host_block_device(),
                inherited_fd: Some(INHERITED_FD),
            },
        })
    }
}

impl Drop for HostSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.facts.marker);
        if self.facts.shm_id >= 0 {
            // SAFETY: removing the segment created in new().
            unsafe { libc::shmctl(self.facts.shm_id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
}

/// A block device of the host the runner itself can open (and so a container could, if
/// nothing stopped it): the one holding / when it can, else the first one in /sys/dev/block
/// that opens (on hosts that are themselves confined, a loop device). Opened, never read.
pub fn host_block_device() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let opens = |major: u64, minor: u64| -> bool {
        let dir = std::env::temp_dir().join(format!(".stagebox-dev-{}", std::process::id()));
        if std::fs::create_dir(&dir).is_err() {
            return false;
        }
        let node = dir.join("d");
        let ok = nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major, minor),
        )
        .is_ok()
            && std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&node)
                .is_ok();
        let _ = std::fs::remove_file(&node);
        let _ = std::fs::remove_dir(&dir);
        ok
    };
    use std::os::unix::fs::OpenOptionsExt;
    let root = std::fs::metadata("/").ok().map(|m| {
        let d = m.dev();
        (nix::sys::stat::major(d), nix::sys::stat::minor(d))
    });
    if let Some((ma, mi)) = root {
        if opens(ma, mi) {
            return Some((ma, mi));
        }
    }
    let mut devs: Vec<(u64, u64)> = std::fs::read_dir("/sys/dev/block")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let (a, b) = n.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    devs.sort();
    devs.into_iter().find(|(a, b)| opens(*a, *b))
}

/// Host mounts whose source is the leak check's tmpfs.
fn leaked_mounts(token: &str) -> Vec<PathBuf> {
    let want = format!("stagebox-leak-{token}");
    crate::kernel::mountinfo::read_self()
        .map(|infos| {
            infos
                .into_iter()
                .filter(|m| m.source == want)
                .map(|m| PathBuf::from(m.mount_point))
                .collect()
        })
        .unwrap_or_default()
}

fn run_column(cfg: &Config, opts: &CompareOpts, setup: &mut HostSetup) -> Column {
    let mut col = Column {
        label: cfg.label.clone(),
        stages: Vec::new(),
        root_switch: match cfg.root_switch {
            RootSwitch::Pivot => "pivot".into(),
            RootSwitch::Chroot => "chroot".into(),
        },
        refused: None,
        error: None,
        checks: Vec::new(),
    };
    let plan = match Plan::resolve(&cfg.toggles, cfg.root_switch) {
        Ok(p) => p,
        Err(e) => {
            col.refused = Some(e.to_string());
            return col;
        }
    };
    col.stages = plan
        .stages
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.id.name().to_string())
        .collect();
    let token = crate::state::ids::new_id();
    setup.facts.leak_token = token.clone();
    setup.facts.leak_dir = PathBuf::from(format!("/tmp/.stagebox-leak-{token}"));
    let cgroup_on = plan.is_on(StageId::Cgroup);
    setup.facts.limits_expected = cgroup_on;
    let facts = match serde_json::to_string(&setup.facts) {
        Ok(f) => f,
        Err(e) => {
            col.error = Some(e.to_string());
            return col;
        }
    };
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--trace".into(), "off".into()];
    match &cfg.toggles.only {
        Some(only) => args.push(format!("--only={}", only.join(","))),
        None => {
            if !cfg.toggles.without.is_empty() {
                args.push(format!("--without={}", cfg.toggles.without.join(",")));
            }
        }
    }
    args.push("--root-switch".into());
    args.push(col.root_switch.clone());
    if let Some(r) = &opts.rootfs {
        if plan.is_on(StageId::Rootfs) {
            args.push("--rootfs".into());
            args.push(r.display().to_string());
        }
    }
    if cgroup_on {
        args.extend(["--memory", "64m", "--pids-limit", "32"].map(String::from));
    }
    args.extend(opts.run_args.iter().cloned());
    args.extend(["--probe", "--", "--json", "--checks"].map(String::from));
    args.push(facts);
    let marker_dir = setup
        .facts
        .marker
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let held = std::fs::File::open(&marker_dir);
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(&args)
        .env("STAGEBOX_STATE", &opts.state)
        .stdin(std::process::Stdio::null());
    if let Ok(dir) = &held {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let raw = dir.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; the new descriptor has no close-on-exec flag,
        // so it reaches stagebox run as descriptor 9.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, INHERITED_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output();
    drop(held);
    // Whatever happened, a leaked mount is removed from the host again.
    let leaked = leaked_mounts(&token);
    for m in &leaked {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(&setup.facts.leak_dir);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            col.error = Some(format!("could not start stagebox: {e}"));
            return col;
        }
    };
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            col.error = Some(
                err.lines()
                    .last()
                    .unwrap_or("the probe printed nothing")
                    .to_string(),
            );
            return col;
        }
    };
    let mut checks: Vec<IsolationCheck> =
        serde_json::from_value(v["checks"].clone()).unwrap_or_default();
    for c in checks.iter_mut().filter(|c| c.name == "mount_leak") {
        if leaked.is_empty() {
            c.verdict = Verdict::Isolated;
            c.evidence = format!("{}; not seen in the host's mount table", c.evidence);
        } else {
            c.verdict = Verdict::Leaks;
            c.evidence = format!(
                "{}; the host's mount table showed it at {} (removed again)",
                c.evidence,
                leaked
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    col.checks = checks;
    col
}

/// Runs every configuration and returns the matrix.
pub fn compare(opts: &CompareOpts) -> Result<Matrix> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot {
            what: "compare runs containers".into(),
        });
    }
    let configs = configs(opts)?;
    let mut setup = HostSetup::new(&opts.state)?;
    // Ctrl-C stops between configurations, so the host setup is always removed.
    let handler = nix::sys::signal::SigHandler::Handler(on_signal);
    let action = nix::sys::signal::SigAction::new(
        handler,
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &action);
        let _ = nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &action);
    }
    let mut columns = Vec::new();
    for cfg in &configs {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(Error::usage("interrupted; the host was cleaned up"));
        }
        columns.push(run_column(cfg, opts, &mut setup));
    }
    drop(setup);
    Ok(Matrix { columns })
}

fn cell(col: &Column, check: &str) -> (&'static str, Option<String>) {
    if col.refused.is_some() {
        return ("refused", None);
    }
    if col.error.is_some() {
        return ("error", None);
    }
    match col.checks.iter().find(|c| c.name == check) {
        Some(c) => (
            match c.verdict {
                Verdict::Isolated => "isolated",
                Verdict::Leaks => "LEAKS",
                Verdict::NotYet => "not yet",
            },
            Some(c.evidence.clone()),
        ),
        None => ("?", None),
    }
}

fn paint(s: &str, width: usize) -> String {
    let padded = format!("{s:<width$}");
    match s {
        "isolated" => padded.green().to_string(),
        "LEAKS" => padded.red().bold().to_string(),
        "refused" => padded.yellow().to_string(),
        "error" => padded.magenta().to_string(),
        _ => padded.dimmed().to_string(),
    }
}

fn notes(m: &Matrix) -> String {
    let mut out = String::new();
    for c in &m.columns {
        if let Some(r) = &c.refused {
            out.push_str(&format!("{}: refused: {r}\n", c.label));
        }
        if let Some(e) = &c.error {
            out.push_str(&format!("{}: error: {e}\n", c.label));
        }
    }
    out
}

pub fn render_table(m: &Matrix, evidence: bool) -> String {
    let qw = crate::inspect::checks::all_checks()
        .iter()
        .map(|c| c.1.len())
        .max()
        .unwrap_or(10);
    let widths: Vec<usize> = m.columns.iter().map(|c| c.label.len().max(9)).collect();
    let mut out = format!("{:<qw$}", "check");
    for (c, w) in m.columns.iter().zip(&widths) {
        out.push_str(&format!("  {:<w$}", c.label, w = *w));
    }
    out.push('\n');
    for (name, question, _) in crate::inspect::checks::all_checks() {
        out.push_str(&format!("{question:<qw$}"));
        for (c, w) in m.columns.iter().zip(&widths) {
            out.push_str("  ");
            out.push_str(&paint(cell(c, name).0, *w));
        }
        out.push('\n');
    }
    let n = notes(m);
    if !n.is_empty() {
        out.push('\n');
        out.push_str(&n);
    }
    if evidence {
        out.push_str("\nevidence:\n");
        for c in &m.columns {
            for ch in &c.checks {
                out.push_str(&format!("  [{}] {}: {}\n", c.label, ch.name, ch.evidence));
            }
        }
    }
    out
}

pub fn render_markdown(m: &Matrix) -> String {
    let mut out = String::from("| check |");
    for c in &m.columns {
        out.push_str(&format!(" `{}` |", c.label));
    }
    out.push_str("\n|---|");
    for _ in &m.columns {
        out.push_str("---|");
    }
    out.push('\n');
    for (name, question, stage) in crate::inspect::checks::all_checks() {
        out.push_str(&format!("| {question} ({stage}) |"));
        for c in &m.columns {
            let (v, _) = cell(c, name);
            let v = match v {
                "isolated" => "isolated".to_string(),
                "LEAKS" => "**LEAKS**".to_string(),
                other => format!("_{other}_"),
            };
            out.push_str(&format!(" {v} |"));
        }
        out.push('\n');
    }
    let n = notes(m);
    if !n.is_empty() {
        out.push('\n');
        for l in n.lines() {
            out.push_str(&format!("- {l}\n"));
        }
    }
    out
}
