//! Which cgroups a process is in, as host directories, and joining them: what `exec` needs to
//! put a new process where the workload is, and what `pause`, `top` and `stats` read.
//!
//! `/proc/PID/cgroup` has one line per hierarchy, `ID:CONTROLLERS:PATH` (`0::PATH` for the v2
//! tree), with PATH relative to the reader's cgroup namespace root: read from the host, that
//! is the host's tree. The directory is that path under the mount point of the hierarchy
//! whose super options name the same controllers (or `name=`), from /proc/self/mountinfo.
//! Joining a cgroup is writing a pid to its `cgroup.procs`.

use crate::error::{Error, Result};
use crate::kernel::mountinfo;
use std::path::{Path, PathBuf};

/// One cgroup of a process: the hierarchy's controllers (`""` for v2, `freezer`,
/// `cpu,cpuacct`, `name=systemd`) and the directory on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub controllers: String,
    pub dir: PathBuf,
}

impl Member {
    /// Is this the v2 (unified) tree?
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
    /// Does this v1 hierarchy hold `controller`?
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.split(',').any(|c| c == controller)
    }
}

/// The host directories of every cgroup `pid` is in, from its /proc/PID/cgroup and this
/// process's mountinfo. A hierarchy that is not mounted here is left out.
pub fn of_pid(pid: i32) -> Result<Vec<Member>> {
    let p = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(format!("read {p}"), e))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    Ok(resolve(&text, &info))
}

/// [`of_pid`] on texts: a /proc/PID/cgroup and a mountinfo.
pub fn resolve(proc_cgroup: &str, mountinfo_text: &str) -> Vec<Member> {
    let mounts = mountinfo::parse(mountinfo_text);
    let mut out = Vec::new();
    for (ctls, path) in super::proc_cgroup_lines(proc_cgroup) {
        let mount = mounts.iter().find(|m| {
            if ctls.is_empty() {
                m.fs_type == "cgroup2"
            } else {
                m.fs_type == "cgroup" && {
                    let want: Vec<&str> = ctls.split(',').collect();
                    want.iter()
                        .all(|c| m.super_opts.split(',').any(|o| o == *c))
                }
            }
        });
        let Some(m) = mount else { continue };
        // A mount of a subtree (root field not `/`) shows PATH below that subtree.
        let rel = path.strip_prefix(m.root.as_str()).unwrap_or(&path);
        let dir = Path::new(&m.mount_point).join(rel.trim_start_matches('/'));
        if out.iter().any(|x: &Member| x.dir == dir) {
            continue;
        }
        out.push(Member {
            controllers: ctls,
            dir,
        });
    }
    out
}

/// Moves `pid` into each cgroup (writes it to `cgroup.procs`); returns the files written.
pub fn join(members: &[Member], pid: i32) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for m in members {
        let f = m.dir.join("cgroup.procs");
        std::fs::write(&f, pid.to_string())
            .map_err(|e| Error::io(format!("write {pid} to {}", f.display()), e))?;
        written.push(f);
    }
    Ok(written)
}

/// The pids in a cgroup (its `cgroup.procs`), sorted.
pub fn procs(dir: &Path) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_directory_of_each_hierarchy() {
        let cg = "6:freezer:/stagebox/abc\n4:cpu,cpuacct:/stagebox/abc\n1:name=systemd:/x\n0::/stagebox/abc\n";
        let mi = "30 23 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  31 23 0:28 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
                  32 23 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let m = resolve(cg, mi);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            m[0].dir,
            PathBuf::from("/sys/fs/cgroup/freezer/stagebox/abc")
        );
        assert!(m[0].has("freezer"));
        assert_eq!(
            m[1].dir,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/stagebox/abc")
        );
        assert!(m[2].is_v2());
        assert_eq!(
            m[2].dir,
            PathBuf::from("/sys/fs/cgroup/unified/stagebox/abc")
        );
    }
}
