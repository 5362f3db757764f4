//! cgroup v2, the unified hierarchy: one tree for every controller.
//!
//! - A controller works in a cgroup only if its parent switched it on for its children, by
//!   writing `+memory` into the parent's `cgroup.subtree_control`; the parent can only pass on
//!   what is in its own `cgroup.controllers`. A controller missing there was not delegated
//!   (or the kernel lacks it).
//! - "No internal processes": a cgroup (other than the root) that has processes of its own
//!   cannot switch controllers on for children (the write fails with EBUSY). That is why the
//!   container's cgroup hangs off a `stagebox` directory that holds no process.
//! - Limits: memory.max, memory.swap.max, cpu.max ("quota period"), cpu.weight, pids.max,
//!   cpuset.cpus. Counters: memory.peak, memory.events (oom_kill), pids.events (max),
//!   cpu.stat (usage_usec, nr_throttled, throttled_usec).
//! - `cgroup.kill` (Linux 5.14) kills every process in the cgroup at once.

use super::{
    check_common, controller_list, keyed, kill_all_by_pid, number, rmdir_parent_if_empty,
    rmdir_retry, stage_err, CgroupRoot, LayoutKind, Limits, Log, Manager, Stats,
};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Controllers used even without a limit, when the host offers them: the kernel then counts
/// memory, CPU and pids for the report at the end, as Docker's cgroups do.
const DEFAULT_CONTROLLERS: &[&str] = &["memory", "cpu", "pids"];

pub struct V2 {
    root: CgroupRoot,
    mount: PathBuf,
    parent: PathBuf,
    dir: PathBuf,
    /// Controllers to switch on (empty for the unified tree of a hybrid host).
    wanted: Vec<String>,
    /// False for the unified tree of a hybrid host: membership and cgroup.kill only.
    controllers: bool,
}

impl V2 {
    /// `with_controllers`: false for the controller-less cgroup2 tree of a hybrid host (used
    /// for membership and cgroup.kill only).
    pub fn new(
        root: CgroupRoot,
        mount: &Path,
        parent: &str,
        id: &str,
        limits: &Limits,
        with_controllers: bool,
    ) -> V2 {
        let parent = mount.join(parent);
        let dir = parent.join(id);
        let mut wanted: Vec<String> = Vec::new();
        if with_controllers {
            let available =
                controller_list(&root, &mount.join("cgroup.controllers")).unwrap_or_default();
            // A top that is not the real root (a delegated subtree, a cgroup namespace) and
            // holds processes can pass on only what is switched on already ("no internal
            // processes"): the counting controllers are then taken only where they are on.
            let enabled =
                controller_list(&root, &mount.join("cgroup.subtree_control")).unwrap_or_default();
            let stuck = root.exists(&mount.join("cgroup.type")) && !root.procs(mount).is_empty();
            for c in DEFAULT_CONTROLLERS {
                if available.iter().any(|a| a == c) && (!stuck || enabled.iter().any(|e| e == c)) {
                    wanted.push(c.to_string());
                }
            }
            for (c, _) in limits.needed_controllers() {
                if !wanted.iter().any(|w| w == c) {
                    wanted.push(c.to_string());
                }
            }
        }
        V2 {
            root,
            mount: mount.to_path_buf(),
            parent,
            dir,
            wanted,
            controllers: with_controllers,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Switches the wanted controllers on in `cg`'s cgroup.subtree_control, one write each
    /// (so a failure names its controller), and shows the file before and after.
    fn enable(&self, cg: &Path, log: &mut Log) -> Result<()> {
        let file = cg.join("cgroup.subtree_control");
        let before = controller_list(&self.root, &file).unwrap_or_default();
        let missing: Vec<&String> = self.wanted.iter().filter(|w| !before.contains(w)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        for c in missing {
            let value = format!("+{c}");
            let r = self.root.write(&file, &value);
            log.call(format!("write({file:?}, {value:?})"), &r);
            if let Err(e) = r {
                let why = if e.raw_os_error() == Some(libc::EBUSY) {
                    format!(
                        "{} has processes of its own, and cgroup v2 lets only a cgroup without processes hand controllers to its children (the \"no internal processes\" rule); run stagebox from a cgroup that delegates controllers (for example `systemd-run --scope -p Delegate=yes`)",
                        cg.display()
                    )
                } else if e.raw_os_error() == Some(libc::ENOENT)
                    || e.raw_os_error() == Some(libc::EINVAL)
                {
                    format!(
                        "the {c} controller is not available in {} (not delegated to it, or the kernel lacks it)",
                        cg.display()
                    )
                } else {
                    e.to_string()
                };
                return Err(stage_err(format!(
                    "cannot switch on the {c} controller for the container: {why}"
                )));
            }
        }
        let after = controller_list(&self.root, &file).unwrap_or_default();
        log.fact(
            format!("{}", file.display()),
            Some(if before.is_empty() {
                "(none)".into()
            } else {
                before.join(" ")
            }),
            Some(after.join(" ")),
        );
        Ok(())
    }

    /// mkdir of `stagebox/` and `stagebox/<id>`; the parent may vanish in between when
    /// another run removes it as empty, then both are made again.
    fn make_dirs(&self, log: &mut Log) -> Result<()> {
        for _ in 0..5 {
            log.mkdir(&self.root, &self.parent, true)?;
            self.enable(&self.parent, log)?;
            let r = self.root.mkdir(&self.dir);
            log.call(format!("mkdir({:?})", self.dir), &r);
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("mkdir {}", self.dir.display()), e)),
            }
        }
        Err(stage_err(format!(
            "{} keeps disappearing while the container's cgroup is made in it",
            self.parent.display()
        )))
    }
}

impl Manager for V2 {
    fn layout(&self) -> LayoutKind {
        LayoutKind::V2
    }

    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn parents(&self) -> Vec<PathBuf> {
        vec![self.parent.clone()]
    }

    fn device_cgroup(&self) -> Option<super::DeviceCgroup> {
        Some(super::DeviceCgroup::V2(self.dir.clone()))
    }

    fn check(&self, limits: &Limits) -> Result<()> {
        check_common(&self.root, limits)?;
        let needed = limits.needed_controllers();
        if needed.is_empty() || !self.controllers {
            return Ok(());
        }
        let file = self.mount.join("cgroup.controllers");
        let available = controller_list(&self.root, &file).ok_or_else(|| {
            stage_err(format!(
                "cannot read {}: is cgroup2 really mounted at {}?",
                file.display(),
                self.mount.display()
            ))
        })?;
        for (c, flag) in &needed {
            if !available.iter().any(|a| a == c) {
                let list = if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(" ")
                };
                return Err(Error::usage(format!(
                    "{flag} needs the {c} controller, but the cgroup2 tree at {} does not offer it (cgroup.controllers: {list}): it is not delegated to this part of the tree, or the kernel lacks it",
                    self.mount.display()
                )));
            }
        }
        // The top of the tree we use is not the real root (a cgroup namespace, a delegated
        // subtree: only non-root cgroups have cgroup.type) and has processes: it can only
        // pass on the controllers that are switched on already.
        let enabled = controller_list(&self.root, &self.mount.join("cgroup.subtree_control"))
            .unwrap_or_default();
        if self.root.exists(&self.mount.join("cgroup.type"))
            && !self.root.procs(&self.mount).is_empty()
        {
            if let Some((c, flag)) = needed.iter().find(|(c, _)| !enabled.iter().any(|e| e == c)) {
                return Err(Error::usage(format!(
                    "{flag} needs the {c} controller, but {} has processes of its own and cgroup v2 lets only a cgroup without processes hand controllers to its children (the \"no internal processes\" rule); run stagebox from a cgroup that delegates controllers",
                    self.mount.display()
                )));
            }
        }
        Ok(())
    }

    fn create(&self, limits: &Limits, log: &mut Log) -> Result<()> {
        // Switch the controllers on at the top (the root cgroup is exempt from the "no internal
        // processes" rule). Left on afterwards: other cgroups may rely on them by then.
        self.enable(&self.mount, log)?;
        self.make_dirs(log)?;
        if !self.controllers {
            return Ok(());
        }
        let root = &self.root;
        let d = &self.dir;
        if let Some(m) = limits.memory {
            log.write_limit(root, &d.join("memory.max"), &m.to_string())?;
            let swap = match limits.memory_swap {
                Some(super::limits::Swap::Unlimited) => Some("max".to_string()),
                Some(super::limits::Swap::Total(t)) => Some((t - m).to_string()),
                // Docker's default: as much swap as memory (memory-swap = 2 x memory).
                None => root
                    .exists(&d.join("memory.swap.max"))
                    .then(|| m.to_string()),
            };
            if let Some(s) = swap {
                log.write_limit(root, &d.join("memory.swap.max"), &s)?;
            }
        }
        if let Some(q) = limits.cpus {
            log.write_limit(
                root,
                &d.join("cpu.max"),
                &format!("{} {}", q.quota_us, q.period_us),
            )?;
        }
        if let Some(w) = limits.weight() {
            log.write_limit(root, &d.join("cpu.weight"), &w.to_string())?;
        }
        if let Some(p) = limits.pids {
            let v = p.map(|n| n.to_string()).unwrap_or_else(|| "max".into());
            log.write_limit(root, &d.join("pids.max"), &v)?;
        }
        if let Some(c) = &limits.cpuset_cpus {
            log.write_limit(root, &d.join("cpuset.cpus"), c)?;
        }
        Ok(())
    }

    fn join(&self, pid: i32, log: &mut Log) -> Result<()> {
        log.write(&self.root, &self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn stats(&self) -> Stats {
        let r = &self.root;
        let d = &self.dir;
        let mut s = Stats {
            memory_limit: number(r, &d.join("memory.max")),
            memory_peak: number(r, &d.join("memory.peak")),
            pids_limit: number(r, &d.join("pids.max")),
            ..Stats::default()
        };
        if let Ok(t) = r.read(&d.join("memory.events")) {
            s.oom_kills = keyed(&t, "oom_kill");
        }
        if let Ok(t) = r.read(&d.join("pids.events")) {
            s.pids_max_hits = keyed(&t, "max");
        }
        if let Ok(t) = r.read(&d.join("cpu.stat")) {
            s.cpu_usage_us = keyed(&t, "usage_usec");
            s.cpu_periods = keyed(&t, "nr_periods");
            s.cpu_throttled_periods = keyed(&t, "nr_throttled");
            s.cpu_throttled_us = keyed(&t, "throttled_usec");
        }
        for (f, present) in [
            ("memory.peak", s.memory_peak.is_some()),
            ("memory.events", s.oom_kills.is_some()),
            ("pids.events", s.pids_max_hits.is_some()),
            ("cpu.stat", s.cpu_usage_us.is_some()),
        ] {
            if present {
                s.sources.push(f.to_string());
            }
        }
        s
    }

    fn destroy(&self) -> Result<(), String> {
        if self.root.exists(&self.dir) {
            let kill = self.dir.join("cgroup.kill");
            if self.root.exists(&kill) && !self.root.procs(&self.dir).is_empty() {
                // One write kills everything inside, even processes forking right now.
                let _ = self.root.write(&kill, "1");
            }
            kill_all_by_pid(&self.root, &self.dir)?;
            rmdir_retry(&self.root, &self.dir)?;
        }
        rmdir_parent_if_empty(&self.root, &self.parent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{calls, content, facts_are_limit_files, touch};
    use super::super::{Event, LimitFlags};
    use super::*;

    fn fake_v2() -> (tempfile::TempDir, CgroupRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = CgroupRoot::fake(dir.path());
        touch(
            &root,
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        touch(&root, "/sys/fs/cgroup/cgroup.subtree_control", "cpu\n");
        touch(&root, "/sys/fs/cgroup/cgroup.procs", "1\n");
        touch(&root, "/sys/devices/system/cpu/online", "0-3\n");
        (dir, root)
    }

    fn limits(f: impl FnOnce(&mut LimitFlags)) -> Limits {
        let mut l = LimitFlags::default();
        f(&mut l);
        Limits::from_flags(&l).unwrap()
    }

    #[test]
    fn writes_every_limit_to_the_v2_files() {
        let (_d, root) = fake_v2();
        let l = limits(|f| {
            f.memory = Some("32m".into());
            f.memory_swap = Some("48m".into());
            f.cpus = Some("0.5".into());
            f.cpu_shares = Some("512".into());
            f.pids_limit = Some("10".into());
            f.cpuset_cpus = Some("0-1".into());
        });
        let m = V2::new(
            root.clone(),
            Path::new("/sys/fs/cgroup"),
            "stagebox",
            "abc",
            &l,
            true,
        );
        m.check(&l).unwrap();
        let mut log = Log::default();
        m.create(&l, &mut log).unwrap();
        facts_are_limit_files(&log);
        let cg = "/sys/fs/cgroup/stagebox/abc";
        assert_eq!(content(&root, &format!("{cg}/memory.max")), "33554432");
        assert_eq!(
            content(&root, &format!("{cg}/memory.swap.max")),
            (16u64 << 20).to_string()
        );
        assert_eq!(content(&root, &format!("{cg}/cpu.max")), "50000 100000");
        assert_eq!(content(&root, &format!("{cg}/cpu.weight")), "20");
        assert_eq!(content(&root, &format!("{cg}/pids.max")), "10");
        assert_eq!(content(&root, &format!("{cg}/cpuset.cpus")), "0-1");
        // Controllers switched on, one write each, top first, then the parent.
        let c = calls(&log);
        assert_eq!(
            c[0],
            "write(\"/sys/fs/cgroup/cgroup.subtree_control\", \"+memory\") = 0"
        );
        assert_eq!(
            c[1],
            "write(\"/sys/fs/cgroup/cgroup.subtree_control\", \"+pids\") = 0"
        );
        assert_eq!(
            c[2],
            "write(\"/sys/fs/cgroup/cgroup.subtree_control\", \"+cpuset\") = 0"
        );
        assert_eq!(c[3], "mkdir(\"/sys/fs/cgroup/stagebox\") = 0");
        assert_eq!(
            c[4],
            "write(\"/sys/fs/cgroup/stagebox/cgroup.subtree_control\", \"+memory\") = 0"
        );
        assert!(c.contains(&format!("mkdir(\"{cg}\") = 0")), "{c:?}");
        assert!(
            c.contains(&format!("write(\"{cg}/memory.max\", \"33554432\") = 0")),
            "{c:?}"
        );
        // Each limit is read back as a fact.
        assert!(log.events.contains(&Event::Fact {
            fact: "pids.max".into(),
            before: None,
            after: Some("10".into())
        }));
        m.join(4242, &mut log).unwrap();
        assert_eq!(content(&root, &format!("{cg}/cgroup.procs")), "4242");
    }

    #[test]
    fn missing_controller_is_named_before_anything_is_made() {
        let (_d, root) = fake_v2();
        touch(&root, "/sys/fs/cgroup/cgroup.controllers", "cpu io\n");
        let l = limits(|f| f.memory = Some("64m".into()));
        let m = V2::new(
            root.clone(),
            Path::new("/sys/fs/cgroup"),
            "stagebox",
            "abc",
            &l,
            true,
        );
        let e = m.check(&l).unwrap_err().to_string();
        assert!(
            e.contains("--memory needs the memory controller") && e.contains("not delegated"),
            "{e}"
        );
        assert!(!root.exists(Path::new("/sys/fs/cgroup/stagebox")));
    }

    #[test]
    fn no_internal_processes_rule_is_explained() {
        let (_d, root) = fake_v2();
        // A delegated subtree (cgroup.type exists: not the real root) with a process in it.
        touch(&root, "/sys/fs/cgroup/cgroup.type", "domain\n");
        let l = limits(|f| f.pids_limit = Some("10".into()));
        let m = V2::new(
            root.clone(),
            Path::new("/sys/fs/cgroup"),
            "stagebox",
            "abc",
            &l,
            true,
        );
        let e = m.check(&l).unwrap_err().to_string();
        assert!(e.contains("no internal processes"), "{e}");
    }

    #[test]
    fn stats_and_destroy() {
        let (_d, root) = fake_v2();
        let l = Limits::default();
        let m = V2::new(
            root.clone(),
            Path::new("/sys/fs/cgroup"),
            "stagebox",
            "abc",
            &l,
            true,
        );
        let mut log = Log::default();
        m.create(&l, &mut log).unwrap();
        let cg = "/sys/fs/cgroup/stagebox/abc";
        touch(&root, &format!("{cg}/memory.max"), "33554432\n");
        touch(&root, &format!("{cg}/memory.peak"), "33000000\n");
        touch(
            &root,
            &format!("{cg}/memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n",
        );
        touch(&root, &format!("{cg}/pids.max"), "max\n");
        touch(&root, &format!("{cg}/pids.events"), "max 0\n");
        touch(
            &root,
            &format!("{cg}/cpu.stat"),
            "usage_usec 210000\nnr_periods 10\nnr_throttled 9\nthrottled_usec 780000\n",
        );
        let s = m.stats();
        assert_eq!(s.memory_limit, Some(32 << 20));
        assert_eq!(s.oom_kills, Some(1));
        assert_eq!(s.pids_limit, None);
        assert_eq!(s.cpu_throttled_us, Some(780000));
        assert_eq!(s.cpu_throttled_periods, Some(9));
        m.destroy().unwrap();
        assert!(!root.exists(Path::new(cg)));
        assert!(
            !root.exists(Path::new("/sys/fs/cgroup/stagebox")),
            "empty parent removed"
        );
    }
}
