//! cgroup v1: one tree per controller (or per group of co-mounted controllers), and a
//! process is in one cgroup in each tree. A container's cgroup is therefore several
//! directories, `<mount>/stagebox/<id>` in *every* mounted hierarchy (named ones such as
//! `name=systemd` included), and joining means writing the pid into the `cgroup.procs` of
//! every one of them. Every one, not only those with a limit: in a hierarchy it was left out
//! of, the container would stay in the host's cgroup, usually the root, whose
//! `release_agent` a root process can write (CVE-2022-0492) and whose freezer can stop the
//! host's other cgroups.
//!
//! - memory: memory.limit_in_bytes, memory.memsw.limit_in_bytes (memory + swap, written
//!   after the memory limit, which it may not be below); counters memory.max_usage_in_bytes,
//!   memory.oom_control (`oom_kill N`, Linux 4.13).
//! - cpu: cpu.cfs_period_us and cpu.cfs_quota_us (quota per period: `--cpus`), cpu.shares;
//!   counters in cpu.stat (nr_periods, nr_throttled, throttled_time in ns). The CPU time
//!   used is in the cpuacct hierarchy: cpuacct.usage (ns).
//! - pids: pids.max, and pids.events (`max N`: forks refused).
//! - cpuset: a new cpuset cgroup starts with *no* CPUs and memory nodes, and a process
//!   cannot join it (ENOSPC) until cpuset.cpus and cpuset.mems are written: copy the parent's.
//!
//! On a hybrid host the same container also gets a cgroup in the controller-less cgroup2
//! tree: there `cgroup.kill` ends every process at once, and `0::/stagebox/<id>` in
//! /proc/PID/cgroup names the container in the unified view too.

use super::v2::V2;
use super::{
    check_common, keyed, kill_all_by_pid, number, rmdir_parent_if_empty, rmdir_retry, stage_err,
    CgroupRoot, Layout, LayoutKind, Limits, Log, Manager, Stats,
};
use crate::error::{Error, Result};
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// memory.limit_in_bytes reads this (or more) when there is no limit.
const NO_LIMIT: u64 = 1 << 62;

struct Hierarchy {
    controllers: Vec<String>,
    mount: PathBuf,
    parent: PathBuf,
    dir: PathBuf,
}

impl Hierarchy {
    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

pub struct V1 {
    root: CgroupRoot,
    kind: LayoutKind,
    hierarchies: Vec<Hierarchy>,
    /// What the layout offers, to name a missing controller.
    mounted: Vec<String>,
    /// Hybrid hosts: a cgroup in the cgroup2 tree too (None on a pure v1 host).
    unified: Option<V2>,
    /// False once making the unified cgroup failed (then it is left out, with a note).
    unified_ok: Cell<bool>,
}

impl V1 {
    pub fn new(root: CgroupRoot, layout: &Layout, parent: &str, id: &str, limits: &Limits) -> V1 {
        // Every hierarchy, not only those with a limit: in one the container was left out of,
        // it would stay in the host's cgroup there (often the root, where release_agent is
        // writable and other cgroups can be frozen).
        let named = layout.v1_named.iter().map(|m| (Vec::new(), m.clone()));
        let hierarchies = layout
            .v1_hierarchies()
            .into_iter()
            .chain(named)
            .map(|(controllers, mount)| {
                let parent = mount.join(parent);
                let dir = parent.join(id);
                Hierarchy {
                    controllers,
                    mount,
                    parent,
                    dir,
                }
            })
            .collect();
        let unified = layout
            .v2
            .as_ref()
            .map(|m| V2::new(root.clone(), m, parent, id, limits, false));
        V1 {
            root,
            kind: layout.kind(),
            hierarchies,
            mounted: layout.v1.keys().cloned().collect(),
            unified,
            unified_ok: Cell::new(true),
        }
    }

    fn hierarchy(&self, c: &str) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.has(c))
    }

    /// mkdir of parent and cgroup in one hierarchy; cpuset needs CPUs and memory nodes in
    /// each level before anything can join. The parent may vanish in between when another run
    /// removes it as empty: then both are made again.
    fn make_dirs(&self, h: &Hierarchy, cpus: Option<&str>, log: &mut Log) -> Result<()> {
        for _ in 0..5 {
            log.mkdir(&self.root, &h.parent, true)?;
            if h.has("cpuset") {
                if let Err(e) = self.copy_cpuset(&h.mount, &h.parent, None, false, log) {
                    // Another run's cleanup removed the shared parent, empty, meanwhile.
                    if !self.root.exists(&h.parent) {
                        continue;
                    }
                    return Err(e);
                }
            }
            let r = self.root.mkdir(&h.dir);
            log.call(format!("mkdir({:?})", h.dir), &r);
            match r {
                Ok(()) => {
                    if h.has("cpuset") {
                        self.copy_cpuset(&h.parent, &h.dir, cpus, true, log)?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("mkdir {}", h.dir.display()), e)),
            }
        }
        Err(stage_err(format!(
            "{} keeps disappearing while the container's cgroup is made in it",
            h.parent.display()
        )))
    }

    /// cpuset.cpus (the given list, or the parent's) and cpuset.mems (the parent's), where
    /// still empty. For the container's own cgroup (`facts`) the values become trace facts;
    /// the shared parent's are only recorded as calls (whichever run makes it writes them).
    fn copy_cpuset(
        &self,
        from: &Path,
        to: &Path,
        cpus: Option<&str>,
        facts: bool,
        log: &mut Log,
    ) -> Result<()> {
        for (file, given) in [("cpuset.cpus", cpus), ("cpuset.mems", None)] {
            let current = self.root.read_trim(&to.join(file)).unwrap_or_default();
            let value = match given {
                Some(v) => v.to_string(),
                None if current.is_empty() => {
                    self.root.read_trim(&from.join(file)).unwrap_or_default()
                }
                None => continue,
            };
            if facts {
                log.write_limit(&self.root, &to.join(file), &value)?;
            } else {
                log.write(&self.root, &to.join(file), &value)?;
            }
        }
        Ok(())
    }
}

impl Manager for V1 {
    fn layout(&self) -> LayoutKind {
        self.kind
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.hierarchies.iter().map(|h| h.dir.clone()).collect();
        if let (Some(u), true) = (&self.unified, self.unified_ok.get()) {
            v.push(u.dir().to_path_buf());
        }
        v
    }

    fn check(&self, limits: &Limits) -> Result<()> {
        check_common(&self.root, limits)?;
        for (c, flag) in limits.needed_controllers() {
            if self.hierarchy(c).is_none() {
                let list = if self.mounted.is_empty() {
                    "none".to_string()
                } else {
                    self.mounted.join(" ")
                };
                return Err(Error::usage(format!(
                    "{flag} needs the {c} controller, but this host mounts no cgroup v1 hierarchy for it (mounted: {list})"
                )));
            }
        }
        if let Some(h) = self.hierarchy("memory") {
            if limits.memory_swap.is_some()
                && !self
                    .root
                    .exists(&h.mount.join("memory.memsw.limit_in_bytes"))
            {
                return Err(Error::usage(
                    "--memory-swap needs swap accounting (memory.memsw.limit_in_bytes), which this kernel does not have; boot it with swapaccount=1, or drop --memory-swap",
                ));
            }
        }
        if let Some(h) = self.hierarchy("cpu") {
            if limits.cpus.is_some() && !self.root.exists(&h.mount.join("cpu.cfs_quota_us")) {
                return Err(Error::usage(
                    "--cpus needs CFS bandwidth control (cpu.cfs_quota_us), which this kernel was built without; use --cpu-shares for a relative weight instead",
                ));
            }
        }
        Ok(())
    }

    fn create(&self, limits: &Limits, log: &mut Log) -> Result<()> {
        let root = &self.root;
        for h in &self.hierarchies {
            self.make_dirs(h, limits.cpuset_cpus.as_deref(), log)?;
        }
        if let Some(h) = self.hierarchy("memory") {
            if let Some(m) = limits.memory {
                log.write_limit(root, &h.dir.join("memory.limit_in_bytes"), &m.to_string())?;
                let memsw = h.dir.join("memory.memsw.limit_in_bytes");
                let total = match limits.memory_swap {
                    Some(super::limits::Swap::Unlimited) => Some("-1".to_string()),
                    Some(super::limits::Swap::Total(t)) => Some(t.to_string()),
                    // Docker's default: memory + swap = twice the memory limit.
                    // Only where the kernel accounts swap (the file exists at the top).
                    None => root
                        .exists(&h.mount.join("memory.memsw.limit_in_bytes"))
                        .then(|| (2 * m).to_string()),
                };
                if let Some(t) = total {
                    log.write_limit(root, &memsw, &t)?;
                }
            }
        }
        if let Some(h) = self.hierarchy("cpu") {
            if let Some(q) = limits.cpus {
                log.write_limit(
                    root,
                    &h.dir.join("cpu.cfs_period_us"),
                    &q.period_us.to_string(),
                )?;
                log.write_limit(
                    root,
                    &h.dir.join("cpu.cfs_quota_us"),
                    &q.quota_us.to_string(),
                )?;
            }
            if let Some(s) = limits.shares() {
                log.write_limit(root, &h.dir.join("cpu.shares"), &s.to_string())?;
            }
        }
        if let Some(h) = self.hierarchy("pids") {
            if let Some(p) = limits.pids {
                let v = p.map(|n| n.to_string()).unwrap_or_else(|| "max".into());
                log.write_limit(root, &h.dir.join("pids.max"), &v)?;
            }
        }
        if let Some(u) = &self.unified {
            let mut ulog = Log::default();
            match u.create(limits, &mut ulog) {
                Ok(()) => log.events.extend(ulog.events),
                Err(e) => {
                    self.unified_ok.set(false);
                    let _ = u.destroy();
                    log.note(format!(
                        "no cgroup in the cgroup2 tree ({e}): limits still apply through v1; cleanup kills by pid"
                    ));
                }
            }
        }
        Ok(())
    }

    fn join(&self, pid: i32, log: &mut Log) -> Result<()> {
        for h in &self.hierarchies {
            log.write(&self.root, &h.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        if let (Some(u), true) = (&self.unified, self.unified_ok.get()) {
            u.join(pid, log)?;
        }
        Ok(())
    }

    fn parents(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.hierarchies.iter().map(|h| h.parent.clone()).collect();
        if let Some(u) = &self.unified {
            v.extend(u.parents());
        }
        v
    }

    fn device_cgroup(&self) -> Option<super::DeviceCgroup> {
        if let Some(h) = self.hierarchy("devices") {
            return Some(super::DeviceCgroup::V1(h.dir.clone()));
        }
        match (&self.unified, self.unified_ok.get()) {
            (Some(u), true) => Some(super::DeviceCgroup::V2(u.dir().to_path_buf())),
            _ => None,
        }
    }

    fn stats(&self) -> Stats {
        let r = &self.root;
        let mut s = Stats::default();
        if let Some(h) = self.hierarchy("memory") {
            s.memory_limit =
                number(r, &h.dir.join("memory.limit_in_bytes")).filter(|v| *v < NO_LIMIT);
            s.memory_peak = number(r, &h.dir.join("memory.max_usage_in_bytes"));
            if let Ok(t) = r.read(&h.dir.join("memory.oom_control")) {
                s.oom_kills = keyed(&t, "oom_kill");
            }
            if s.memory_peak.is_some() {
                s.sources.push("memory.max_usage_in_bytes".into());
            }
            if s.oom_kills.is_some() {
                s.sources.push("memory.oom_control".into());
            }
        }
        if let Some(h) = self.hierarchy("pids") {
            s.pids_limit = number(r, &h.dir.join("pids.max"));
            if let Ok(t) = r.read(&h.dir.join("pids.events")) {
                s.pids_max_hits = keyed(&t, "max");
                s.sources.push("pids.events".into());
            }
        }
        if let Some(h) = self.hierarchy("cpuacct") {
            s.cpu_usage_us = number(r, &h.dir.join("cpuacct.usage")).map(|ns| ns / 1000);
            if s.cpu_usage_us.is_some() {
                s.sources.push("cpuacct.usage".into());
            }
        }
        if let Some(h) = self.hierarchy("cpu") {
            if let Ok(t) = r.read(&h.dir.join("cpu.stat")) {
                s.cpu_periods = keyed(&t, "nr_periods");
                s.cpu_throttled_periods = keyed(&t, "nr_throttled");
                s.cpu_throttled_us = keyed(&t, "throttled_time").map(|ns| ns / 1000);
                s.sources.push("cpu.stat".into());
            }
        }
        s
    }

    fn destroy(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        // The unified cgroup's cgroup.kill first (hybrid): one write ends every process.
        if let (Some(u), true) = (&self.unified, self.unified_ok.get()) {
            let kill = u.dir().join("cgroup.kill");
            if self.root.exists(&kill) && !self.root.procs(u.dir()).is_empty() {
                let _ = self.root.write(&kill, "1");
            }
        }
        for h in &self.hierarchies {
            if self.root.exists(&h.dir) {
                if let Err(e) = kill_all_by_pid(&self.root, &h.dir)
                    .and_then(|_| rmdir_retry(&self.root, &h.dir))
                {
                    errors.push(e);
                }
            }
            rmdir_parent_if_empty(&self.root, &h.parent);
        }
        if let Some(u) = &self.unified {
            if let Err(e) = u.destroy() {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{calls, content, facts_are_limit_files, touch};
    use super::super::LimitFlags;
    use super::*;

    const MOUNTINFO: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    fn fake_hybrid() -> (tempfile::TempDir, CgroupRoot, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let root = CgroupRoot::fake(dir.path());
        touch(&root, "/sys/devices/system/cpu/online", "0-1\n");
        touch(
            &root,
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
            "9223372036854771712\n",
        );
        touch(&root, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
        touch(&root, "/sys/fs/cgroup/cpuset/cpuset.cpus", "0-1\n");
        touch(&root, "/sys/fs/cgroup/cpuset/cpuset.mems", "0\n");
        touch(&root, "/sys/fs/cgroup/pids/cgroup.procs", "");
        touch(&root, "/sys/fs/cgroup/cpuacct/cpuacct.usage", "0\n");
        touch(&root, "/sys/fs/cgroup/unified/cgroup.controllers", "");
        touch(&root, "/sys/fs/cgroup/systemd/cgroup.procs", "");
        (dir, root, Layout::from_mountinfo(MOUNTINFO))
    }

    #[test]
    fn writes_every_limit_to_the_v1_files() {
        let (_d, root, layout) = fake_hybrid();
        let mut f = LimitFlags::default();
        f.memory = Some("32M".into());
        f.cpus = Some("0.2".into());
        f.cpu_weight = Some("100".into());
        f.pids_limit = Some("10".into());
        f.cpuset_cpus = Some("1".into());
        let l = Limits::from_flags(&f).unwrap();
        let m = V1::new(root.clone(), &layout, "stagebox", "abc", &l);
        assert_eq!(m.layout(), LayoutKind::Hybrid);
        m.check(&l).unwrap();
        let mut log = Log::default();
        m.create(&l, &mut log).unwrap();
        facts_are_limit_files(&log);
        let at = |p: &str| content(&root, &format!("/sys/fs/cgroup/{p}"));
        assert_eq!(at("memory/stagebox/abc/memory.limit_in_bytes"), "33554432");
        assert_eq!(
            at("memory/stagebox/abc/memory.memsw.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(at("cpu/stagebox/abc/cpu.cfs_period_us"), "100000");
        assert_eq!(at("cpu/stagebox/abc/cpu.cfs_quota_us"), "20000");
        assert_eq!(at("cpu/stagebox/abc/cpu.shares"), "2597");
        assert_eq!(at("pids/stagebox/abc/pids.max"), "10");
        // cpuset: the parent gets the host's CPUs and nodes, the container the ones asked for.
        assert_eq!(at("cpuset/stagebox/cpuset.cpus"), "0-1");
        assert_eq!(at("cpuset/stagebox/cpuset.mems"), "0");
        assert_eq!(at("cpuset/stagebox/abc/cpuset.cpus"), "1");
        assert_eq!(at("cpuset/stagebox/abc/cpuset.mems"), "0");
        let c = calls(&log);
        assert!(
            c.contains(&"mkdir(\"/sys/fs/cgroup/unified/stagebox/abc\") = 0".to_string()),
            "{c:?}"
        );
        assert!(
            c.contains(&"mkdir(\"/sys/fs/cgroup/systemd/stagebox/abc\") = 0".to_string()),
            "named hierarchies are joined too: {c:?}"
        );
        // Memory limit before memsw: the kernel refuses memsw below the memory limit.
        let pos = |s: &str| c.iter().position(|x| x.contains(s)).unwrap();
        assert!(pos("memory.limit_in_bytes") < pos("memory.memsw.limit_in_bytes"));
        m.join(77, &mut log).unwrap();
        for h in [
            "cpu", "cpuacct", "cpuset", "memory", "pids", "systemd", "unified",
        ] {
            assert_eq!(at(&format!("{h}/stagebox/abc/cgroup.procs")), "77", "{h}");
        }
        assert_eq!(m.dirs().len(), 7);
        m.destroy().unwrap();
        for h in [
            "cpu", "cpuacct", "cpuset", "memory", "pids", "systemd", "unified",
        ] {
            assert!(
                !root.exists(Path::new(&format!("/sys/fs/cgroup/{h}/stagebox"))),
                "{h}"
            );
        }
    }

    #[test]
    fn every_hierarchy_without_limits_and_stats_from_v1_files() {
        let (_d, root, layout) = fake_hybrid();
        let l = Limits::default();
        let m = V1::new(root.clone(), &layout, "stagebox", "abc", &l);
        let mut log = Log::default();
        m.create(&l, &mut log).unwrap();
        // No limit asked for, yet a cgroup in every hierarchy; cpuset gets the parent's CPUs
        // and memory nodes so that a process can join it.
        for h in ["cpu", "cpuacct", "cpuset", "memory", "pids", "systemd"] {
            assert!(
                root.exists(Path::new(&format!("/sys/fs/cgroup/{h}/stagebox/abc"))),
                "{h}"
            );
        }
        assert_eq!(
            content(&root, "/sys/fs/cgroup/cpuset/stagebox/abc/cpuset.cpus"),
            "0-1"
        );
        // No devices hierarchy in this layout: the device rules go to the unified cgroup.
        assert_eq!(
            m.device_cgroup(),
            Some(super::super::DeviceCgroup::V2(PathBuf::from(
                "/sys/fs/cgroup/unified/stagebox/abc"
            )))
        );
        touch(
            &root,
            "/sys/fs/cgroup/memory/stagebox/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        touch(
            &root,
            "/sys/fs/cgroup/memory/stagebox/abc/memory.max_usage_in_bytes",
            "1048576\n",
        );
        touch(
            &root,
            "/sys/fs/cgroup/memory/stagebox/abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        touch(
            &root,
            "/sys/fs/cgroup/cpuacct/stagebox/abc/cpuacct.usage",
            "210000000\n",
        );
        touch(
            &root,
            "/sys/fs/cgroup/cpu/stagebox/abc/cpu.stat",
            "nr_periods 10\nnr_throttled 9\nthrottled_time 780000000\n",
        );
        touch(
            &root,
            "/sys/fs/cgroup/pids/stagebox/abc/pids.events",
            "max 5\n",
        );
        let s = m.stats();
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.memory_peak, Some(1 << 20));
        assert_eq!(s.oom_kills, Some(2));
        assert_eq!(s.cpu_usage_us, Some(210_000));
        assert_eq!(s.cpu_throttled_us, Some(780_000));
        assert_eq!(s.pids_max_hits, Some(5));
        m.destroy().unwrap();
    }

    #[test]
    fn missing_v1_controller_is_named() {
        let (_d, root, _) = fake_hybrid();
        let layout = Layout::from_mountinfo(
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        let mut f = LimitFlags::default();
        f.pids_limit = Some("10".into());
        let l = Limits::from_flags(&f).unwrap();
        let e = V1::new(root, &layout, "stagebox", "abc", &l)
            .check(&l)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--pids-limit needs the pids controller") && e.contains("mounted: memory"),
            "{e}"
        );
    }
}
