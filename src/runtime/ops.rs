//! Operating a running container from the host: `pause`/`unpause` (the cgroup freezer),
//! `top` (its processes, as `ps -ef` shows them) and `stats` (what its cgroup uses now).
//! Each finds the workload's cgroups from its `/proc/PID/cgroup` (`cgroup::member`).

use crate::cgroup::member::{self, Member};
use crate::error::{Error, Result};
use crate::state::container::{self, Container};
use std::path::Path;

/// `stagebox pause` (`frozen`) or `unpause`: the freezer is written, then read back; the
/// record says "paused" while frozen. Returns what the kernel now says, for the caller.
pub fn pause(state: &Path, key: &str, frozen: bool) -> Result<String> {
    let (mut c, pid) = super::exec::running(state, key)?;
    if c.paused == frozen && crate::cgroup::freezer::state(&member::of_pid(pid)?) == Some(frozen) {
        return Err(Error::usage(format!(
            "container {key} is {}",
            if frozen {
                "already paused"
            } else {
                "not paused"
            }
        )));
    }
    let out = crate::cgroup::freezer::set(&member::of_pid(pid)?, frozen)?;
    c.paused = frozen;
    // Under the record's lock, on the record as it is now (the runtime may have written it).
    crate::state::container::update(state, &c.id, |r| r.paused = frozen)?;
    Ok(format!(
        "wrote {} to {}; {} says {}",
        out.wrote.1,
        out.wrote.0.display(),
        out.read.0.display(),
        out.read.1
    ))
}

/// Before `rm -f` (or stop/kill) SIGKILLs a paused container: a process frozen by the v1
/// freezer takes a signal only once thawed, so thaw it first, as Docker does.
pub fn thaw_if_paused(state: &Path, key: &str) {
    if let Ok((c, pid)) = super::exec::running(state, key) {
        if let Ok(m) = member::of_pid(pid) {
            if c.paused || crate::cgroup::freezer::state(&m) == Some(true) {
                let _ = crate::cgroup::freezer::set(&m, false);
            }
        }
    }
}

/// The cgroup that lists the container's processes: v2, else the v1 pids, freezer or first.
fn procs_dir(members: &[Member]) -> Option<&Member> {
    members
        .iter()
        .find(|m| m.is_v2())
        .or_else(|| members.iter().find(|m| m.has("pids")))
        .or_else(|| members.iter().find(|m| m.has("freezer")))
        .or_else(|| members.iter().find(|m| !m.controllers.starts_with("name=")))
}

/// The host pids of the container's processes: its cgroup's `cgroup.procs`, or (without a
/// cgroup of its own) every process in the workload's pid namespace.
pub fn pids(c: &Container, pid: i32) -> Vec<i32> {
    let ns = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let members = member::of_pid(pid).unwrap_or_default();
    if let Some(m) = procs_dir(&members) {
        let is_root = m.dir.join("cgroup.procs").exists()
            && m.dir
                .parent()
                .map(|p| !p.join("cgroup.procs").exists())
                .unwrap_or(true);
        if !is_root && m.dir.to_string_lossy().contains(&c.id) {
            return member::procs(&m.dir);
        }
    }
    let mine = ns(pid);
    if mine.is_none() || mine == ns(std::process::id() as i32) {
        return vec![pid];
    }
    let mut v: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|p| ns(*p) == mine)
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| uid.to_string())
}

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// One `ps -ef` line of a host process.
fn ps_line(pid: i32, ticks: u64, uptime: f64, boot: u64) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ppid(1) ... tty_nr(4) ... utime(11) stime(12) ... starttime(19)
    let ppid = f.get(1)?;
    let tty: u64 = f.get(4)?.parse().ok()?;
    let cpu = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let start: u64 = f.get(19)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let age = (uptime - start as f64 / ticks as f64).max(0.001);
    let c = (cpu as f64 / ticks as f64 / age * 100.0) as u64;
    let started = boot + start / ticks;
    let stime = {
        let s = started % 86400;
        format!("{:02}:{:02}", s / 3600, s / 60 % 60)
    };
    let tty = match (tty >> 8) & 0xfff {
        0 => "?".to_string(),
        136..=143 => format!("pts/{}", (tty & 0xff) | ((tty >> 12) & 0xfff00)),
        4 => format!("tty{}", tty & 0xff),
        _ => "?".to_string(),
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(format!(
        "{:<10} {:<8} {:<8} {:<3} {:<5} {:<8} {:<8} {cmd}",
        user_name(uid),
        pid,
        ppid,
        c,
        stime,
        tty,
        hms(cpu / ticks)
    ))
}

/// `stagebox top`: the container's processes as seen from the host, `ps -ef`'s columns.
pub fn top(state: &Path, key: &str) -> Result<String> {
    let (c, pid) = super::exec::running(state, key)?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let boot = crate::units::now_secs().saturating_sub(uptime as u64);
    let mut out = format!(
        "{:<10} {:<8} {:<8} {:<3} {:<5} {:<8} {:<8} CMD\n",
        "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME"
    );
    for p in pids(&c, pid) {
        if let Some(l) = ps_line(p, ticks, uptime, boot) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    Ok(out)
}

fn size(b: Option<u64>) -> String {
    match b {
        None => "--".into(),
        Some(b) if b >= 1 << 30 => format!("{:.2}GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.2}MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{:.2}KiB", b as f64 / 1024.0),
    }
}

/// `stagebox stats`: one table of the running containers (all, or those named), CPU % over
/// one second. `each` gets every table (once with `--no-stream`).
pub fn stats(
    state: &Path,
    keys: &[String],
    stream: bool,
    each: &mut dyn FnMut(&str),
) -> Result<()> {
    let mut chosen: Vec<(Container, i32)> = Vec::new();
    if keys.is_empty() {
        for c in container::list(state) {
            if let (true, Some(pid)) = (c.is_running(), c.pid) {
                chosen.push((c, pid));
            }
        }
    } else {
        for k in keys {
            chosen.push(super::exec::running(state, k)?);
        }
    }
    let members: Vec<Vec<Member>> = chosen
        .iter()
        .map(|(_, pid)| member::of_pid(*pid).unwrap_or_default())
        .collect();
    let mut before: Vec<_> = members
        .iter()
        .map(|m| crate::cgroup::stats::read(m))
        .collect();
    let mut t0 = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let after: Vec<_> = members
            .iter()
            .map(|m| crate::cgroup::stats::read(m))
            .collect();
        let wall = t0.elapsed().as_micros() as u64;
        t0 = std::time::Instant::now();
        let mut table = format!(
            "{:<12}  {:<16}  {:>7}  {:<22}  {:>6}  {:>4}\n",
            "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"
        );
        for (i, (c, _)) in chosen.iter().enumerate() {
            let u = &after[i];
            let cpu = crate::cgroup::stats::cpu_percent(&before[i], u, wall)
                .map(|p| format!("{p:.2}%"))
                .unwrap_or_else(|| "--".into());
            let mem_pct = match (u.memory, u.memory_limit) {
                (Some(m), Some(l)) if l > 0 => format!("{:.2}%", m as f64 * 100.0 / l as f64),
                _ => "--".into(),
            };
            let limit = if u.memory_limit.is_some() {
                size(u.memory_limit)
            } else {
                "unlimited".into()
            };
            table.push_str(&format!(
                "{:<12}  {:<16}  {:>7}  {:<22}  {:>6}  {:>4}\n",
                c.id,
                c.name,
                cpu,
                format!("{} / {}", size(u.memory), limit),
                mem_pct,
                u.pids.map(|p| p.to_string()).unwrap_or_else(|| "--".into())
            ));
        }
        each(&table);
        if !stream {
            return Ok(());
        }
        before = after;
    }
}
