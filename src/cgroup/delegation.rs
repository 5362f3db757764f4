//! A cgroup v2 subtree delegated to a user other than root: where a rootless run may make
//! its cgroup.
//!
//! Only root may mkdir in the host's cgroup trees. A user may make cgroups only where root
//! (or systemd, for it) *delegated* a subtree: a cgroup2 directory chowned to the user,
//! together with its `cgroup.procs` and `cgroup.subtree_control` (and `cgroup.threads`).
//! systemd does so for `user@UID.service` (where `systemd-run --user` starts a scope); an
//! administrator can `chown` a directory by hand. v1 hierarchies are never delegated here:
//! their controllers belong to root, so a rootless run on a v1 or hybrid host has no cgroup.
//!
//! [`find`] walks up from the process's own cgroup (the `0::/path` line of /proc/self/cgroup,
//! under the cgroup2 mount) and takes the *highest* directory owned by the user whose
//! `cgroup.procs` and `cgroup.subtree_control` the user may write: the delegation root.
//! Highest, because moving a process between two cgroups needs write access to the
//! `cgroup.procs` of their nearest common ancestor: the runtime's cgroup and the container's
//! `<root>/<parent>/<id>` meet at the root at the latest.
//!
//! Decision, for the "no internal processes" rule of v2 (a cgroup other than the real root
//! that holds processes cannot switch controllers on for its children): the container's
//! cgroup goes in `<root>/<parent>/<id>`, as a root run's goes in `<mount>/<parent>/<id>`. When
//! the delegation root itself holds processes (stagebox was started right in it), its
//! children get only what is already switched on (nothing, for a domain cgroup), so the
//! container's cgroup is still made, for the cleanup, but a limit is refused in one sentence
//! ([`Delegation::check`]) that says to start stagebox from a child cgroup instead.
//!
//! May import: what `cgroup/mod.rs` may (`kernel`'s mountinfo reader, `error`).

use super::{controller_list, limits::Limits, proc_cgroup_lines, CgroupRoot, Layout, LayoutKind};
use crate::error::{Error, Result};
use crate::kernel::mountinfo;
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How to get a delegated subtree on a host that mounts cgroup v2 alone.
pub const HOW_TO_DELEGATE: &str = "start stagebox in one with `systemd-run --user --scope -p Delegate=yes stagebox run ...`, or from a child of a cgroup v2 directory that root has chowned to you (the directory, its cgroup.procs, cgroup.subtree_control and cgroup.threads)";

/// What a v1 or hybrid host would need: no subtree of it can be delegated.
pub const HOW_TO_GET_V2: &str = "only a host that mounts cgroup v2 alone can delegate controllers to a user (systemd: boot with systemd.unified_cgroup_hierarchy=1)";

/// Why no subtree is delegated, and what would give one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoDelegation {
    pub reason: String,
    /// [`HOW_TO_DELEGATE`], or [`HOW_TO_GET_V2`] on a v1 or hybrid host.
    pub remedy: &'static str,
}

impl NoDelegation {
    fn new(reason: impl Into<String>) -> NoDelegation {
        NoDelegation {
            reason: reason.into(),
            remedy: HOW_TO_DELEGATE,
        }
    }
    fn not_v2(reason: impl Into<String>) -> NoDelegation {
        NoDelegation {
            reason: reason.into(),
            remedy: HOW_TO_GET_V2,
        }
    }
}

impl std::fmt::Display for NoDelegation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A cgroup v2 subtree the user may make cgroups in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    /// The delegation root, as a path on the host (under the cgroup2 mount).
    pub root: PathBuf,
    /// The same cgroup as /proc/PID/cgroup names it (`/user.slice/.../user@1000.service`).
    pub cgroup: String,
    /// Its `cgroup.controllers`: what its children can be given.
    pub controllers: Vec<String>,
    /// Its `cgroup.subtree_control`: what its children have now.
    pub enabled: Vec<String>,
    /// Whether processes sit in the root itself (then nothing more can be switched on).
    pub has_processes: bool,
}

/// Who asks: the effective uid and every group the process has (for the write checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Who {
    /// This process: euid, egid and the supplementary groups.
    pub fn me() -> Who {
        let mut gids = vec![nix::unistd::getegid().as_raw()];
        if let Ok(g) = nix::unistd::getgroups() {
            gids.extend(g.iter().map(|g| g.as_raw()));
        }
        Who {
            uid: nix::unistd::geteuid().as_raw(),
            gids,
        }
    }

    /// May this user write a file with this owner, group and mode? Permission bits only, as
    /// the kernel checks cgroup files (no ACLs on cgroupfs); root is never asked.
    pub fn may_write(&self, uid: u32, gid: u32, mode: u32) -> bool {
        if uid == self.uid {
            mode & 0o200 != 0
        } else if self.gids.contains(&gid) {
            mode & 0o020 != 0
        } else {
            mode & 0o002 != 0
        }
    }
}

/// One directory on the way up from the process's cgroup, as [`pick`] judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub dir: PathBuf,
    /// The cgroup as /proc/PID/cgroup names it.
    pub cgroup: String,
    pub owner: u32,
    pub procs_writable: bool,
    pub subtree_writable: bool,
}

/// The delegation root among the steps (ordered from the process's cgroup up): the highest
/// one owned by `uid` whose cgroup.procs and cgroup.subtree_control it may write.
pub fn pick(steps: &[Step], uid: u32) -> Option<&Step> {
    steps
        .iter()
        .rev()
        .find(|s| s.owner == uid && s.procs_writable && s.subtree_writable)
}

/// Finds the subtree delegated to `who`, or says in words why there is none. `mountinfo` and
/// `proc_cgroup` are /proc/self/mountinfo and /proc/self/cgroup; the directories are read
/// through `root` (a fake tree in tests).
pub fn find(
    root: &CgroupRoot,
    mountinfo_text: &str,
    proc_cgroup: &str,
    who: &Who,
) -> Result<Delegation, NoDelegation> {
    let layout = Layout::from_mountinfo(mountinfo_text);
    match layout.kind() {
        LayoutKind::V2 => {}
        LayoutKind::None => return Err(NoDelegation::not_v2("no cgroup filesystem is mounted")),
        LayoutKind::V1 => {
            return Err(NoDelegation::not_v2(
                "this host mounts only cgroup v1, whose hierarchies only root can make cgroups in",
            ))
        }
        LayoutKind::Hybrid => {
            return Err(NoDelegation::not_v2(format!(
                "this host mounts cgroups hybrid: the controllers are in cgroup v1 hierarchies, where only root can make cgroups, and the cgroup2 tree at {} only tracks processes",
                layout.v2.as_deref().unwrap_or(Path::new("?")).display()
            )))
        }
    }
    let Some(mount) = mountinfo::parse(mountinfo_text)
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
    else {
        return Err(NoDelegation::not_v2("no cgroup2 filesystem is mounted"));
    };
    let Some((_, own)) = proc_cgroup_lines(proc_cgroup)
        .into_iter()
        .find(|(ctls, _)| ctls.is_empty())
    else {
        return Err(NoDelegation::new(
            "/proc/self/cgroup has no cgroup v2 line (0::/...)",
        ));
    };
    if own == "/.." || own.starts_with("/../") {
        return Err(NoDelegation::new(format!(
            "this process's cgroup {own} lies outside its cgroup namespace"
        )));
    }
    let mount_root = Path::new(&mount.root);
    let Ok(rel) = Path::new(&own).strip_prefix(mount_root) else {
        return Err(NoDelegation::new(format!(
            "this process's cgroup {own} is not in the part of the tree that the cgroup2 mount at {} shows ({})",
            mount.mount_point, mount.root
        )));
    };
    let mount_point = PathBuf::from(&mount.mount_point);
    let own_dir = under(&mount_point, rel);
    let mut steps = Vec::new();
    let mut rel = Some(rel.to_path_buf());
    while let Some(r) = rel {
        let dir = under(&mount_point, &r);
        let cgroup = under(mount_root, &r).to_string_lossy().into_owned();
        let stat = |f: &str| std::fs::metadata(root.real(&dir.join(f)));
        if let Ok(d) = std::fs::metadata(root.real(&dir)) {
            let writable = |f: &str| {
                stat(f)
                    .map(|m| who.may_write(m.uid(), m.gid(), m.mode()))
                    .unwrap_or(false)
            };
            steps.push(Step {
                dir: dir.clone(),
                cgroup,
                owner: d.uid(),
                procs_writable: writable("cgroup.procs"),
                subtree_writable: writable("cgroup.subtree_control"),
            });
        }
        rel = r.parent().map(Path::to_path_buf);
    }
    let Some(top) = pick(&steps, who.uid) else {
        return Err(NoDelegation::new(format!(
            "no cgroup from {} up to {} is owned by uid {} with a cgroup.procs and cgroup.subtree_control it may write",
            own_dir.display(),
            mount_point.display(),
            who.uid
        )));
    };
    Ok(Delegation {
        root: top.dir.clone(),
        cgroup: top.cgroup.clone(),
        controllers: controller_list(root, &top.dir.join("cgroup.controllers")).unwrap_or_default(),
        enabled: controller_list(root, &top.dir.join("cgroup.subtree_control")).unwrap_or_default(),
        has_processes: !root.procs(&top.dir).is_empty(),
    })
}

/// `base/rel`, without the trailing slash `join` leaves for an empty `rel`.
fn under(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// [`find`] on this host, for this process.
pub fn detect() -> Result<Delegation, NoDelegation> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| NoDelegation::new(format!("cannot read /proc/self/mountinfo: {e}")))?;
    let cg = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| NoDelegation::new(format!("cannot read /proc/self/cgroup: {e}")))?;
    find(&CgroupRoot::host(), &mi, &cg, &Who::me())
}

impl Delegation {
    /// The container's cgroup as /proc/PID/cgroup will name it: `<cgroup>/<parent>/<id>`.
    pub fn container_cgroup(&self, parent: &str, id: &str) -> String {
        format!("{}/{parent}/{id}", self.cgroup.trim_end_matches('/'))
    }

    /// Reads only: can these limits be set in this subtree? Names the flag, the controller
    /// and what to do, in one sentence.
    pub fn check(&self, limits: &Limits) -> Result<()> {
        for (c, flag) in limits.needed_controllers() {
            if !self.controllers.iter().any(|a| a == c) {
                let list = if self.controllers.is_empty() {
                    "none".to_string()
                } else {
                    self.controllers.join(" ")
                };
                return Err(Error::usage(format!(
                    "{flag} needs the {c} controller, but the cgroup delegated to you, {}, does not have it (cgroup.controllers: {list}): its parent does not pass it on; ask whoever delegated it for the {c} controller too (systemd: Delegate=yes delegates memory, pids and cpu), or drop {flag}",
                    self.root.display()
                )));
            }
            if self.has_processes && !self.enabled.iter().any(|e| e == c) {
                return Err(Error::usage(format!(
                    "{flag} needs the {c} controller, but the cgroup delegated to you, {root}, has processes of its own, and cgroup v2 lets only a cgroup without processes hand controllers to its children (the \"no internal processes\" rule); move your shell into a child of it (mkdir {root}/shell; echo $$ > {root}/shell/cgroup.procs) and start stagebox from there",
                    root = self.root.display()
                )));
            }
        }
        Ok(())
    }
}

/// The sentence that refuses limits when there is no delegated subtree.
pub fn refusal(none: &NoDelegation, limits: &Limits, uid: u32) -> Error {
    let mut flags: Vec<&str> = limits
        .needed_controllers()
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    flags.dedup();
    let (flags, verb) = match flags.len() {
        0 => ("the limits".to_string(), "need"),
        1 => (flags[0].to_string(), "needs"),
        _ => (flags.join(", "), "need"),
    };
    Error::usage(format!(
        "{flags} {verb} a cgroup of the container's own, and as uid {uid} stagebox can make one only in a cgroup v2 subtree delegated to you, which it did not find ({}); {}, or drop the limits",
        none.reason, none.remedy
    ))
}

/// What a run by a user other than root gets for its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootless {
    /// The container's cgroup goes in this subtree; the limits fit it.
    Delegated(Delegation),
    /// No cgroup of its own, for this reason (no limits were asked for).
    NoCgroup(String),
}

/// Decides from what [`find`] said: a delegation (checked against the limits), no cgroup
/// (when no limit was asked for), or the refusal of the limits in one sentence.
pub fn decide(
    found: Result<Delegation, NoDelegation>,
    limits: &Limits,
    uid: u32,
) -> Result<Rootless> {
    match found {
        Ok(d) => {
            d.check(limits)?;
            Ok(Rootless::Delegated(d))
        }
        Err(none) if limits.is_empty() => Ok(Rootless::NoCgroup(none.reason)),
        Err(none) => Err(refusal(&none, limits, uid)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::touch;
    use super::super::LimitFlags;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const V2: &str =
        "30 26 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
    const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V1: &str = "32 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
    const USER: &str = "/user.slice/user-1000.slice/user@1000.service";

    fn me() -> Who {
        Who::me()
    }

    fn chmod(root: &CgroupRoot, p: &str, mode: u32) {
        std::fs::set_permissions(
            root.real(Path::new(p)),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }

    fn cgroup_dir(root: &CgroupRoot, dir: &str, controllers: &str, procs: &str) {
        touch(root, &format!("{dir}/cgroup.controllers"), controllers);
        touch(root, &format!("{dir}/cgroup.subtree_control"), "");
        touch(root, &format!("{dir}/cgroup.procs"), procs);
    }

    /// A systemd host as the user sees it: the root cgroup and the slices are root's
    /// (here: read-only files), user@1000.service and below are the user's.
    fn systemd_tree() -> (tempfile::TempDir, CgroupRoot) {
        let d = tempfile::tempdir().unwrap();
        let root = CgroupRoot::fake(d.path());
        let m = "/sys/fs/cgroup";
        cgroup_dir(&root, m, "cpuset cpu io memory pids", "1\n");
        cgroup_dir(&root, &format!("{m}/user.slice"), "cpu memory pids", "");
        cgroup_dir(
            &root,
            &format!("{m}/user.slice/user-1000.slice"),
            "cpu memory pids",
            "",
        );
        for ro in [
            m.to_string(),
            format!("{m}/user.slice"),
            format!("{m}/user.slice/user-1000.slice"),
        ] {
            chmod(&root, &format!("{ro}/cgroup.procs"), 0o444);
            chmod(&root, &format!("{ro}/cgroup.subtree_control"), 0o444);
        }
        let svc = format!("{m}{USER}");
        cgroup_dir(&root, &svc, "cpu memory pids", "");
        touch(
            &root,
            &format!("{svc}/cgroup.subtree_control"),
            "cpu memory pids\n",
        );
        cgroup_dir(&root, &format!("{svc}/init.scope"), "", "900\n");
        cgroup_dir(&root, &format!("{svc}/app.slice"), "cpu memory pids", "");
        cgroup_dir(
            &root,
            &format!("{svc}/app.slice/run-r1.scope"),
            "cpu memory pids",
            "4242\n",
        );
        (d, root)
    }

    fn limits(f: impl FnOnce(&mut LimitFlags)) -> Limits {
        let mut l = LimitFlags::default();
        f(&mut l);
        Limits::from_flags(&l).unwrap()
    }

    #[test]
    fn the_highest_directory_the_user_may_write_is_the_delegation_root() {
        let (_d, root) = systemd_tree();
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let d = find(&root, V2, &own, &me()).unwrap();
        assert_eq!(d.root, PathBuf::from(format!("/sys/fs/cgroup{USER}")));
        assert_eq!(d.cgroup, USER);
        assert_eq!(d.controllers, ["cpu", "memory", "pids"]);
        assert_eq!(d.enabled, ["cpu", "memory", "pids"]);
        assert!(!d.has_processes);
        assert_eq!(
            d.container_cgroup("stagebox-1234", "abc"),
            format!("{USER}/stagebox-1234/abc")
        );
        d.check(&limits(|f| f.memory = Some("32m".into()))).unwrap();
    }

    #[test]
    fn a_directory_with_a_file_the_user_may_not_write_is_not_delegated() {
        let (_d, root) = systemd_tree();
        // user@1000.service's subtree_control stays root's: app.slice is the root then.
        chmod(
            &root,
            &format!("/sys/fs/cgroup{USER}/cgroup.subtree_control"),
            0o444,
        );
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let d = find(&root, V2, &own, &me()).unwrap();
        assert_eq!(d.cgroup, format!("{USER}/app.slice"));
        // Nothing writable at all: no delegation, and the reason names the way up.
        for dir in ["", "/app.slice", "/app.slice/run-r1.scope"] {
            chmod(
                &root,
                &format!("/sys/fs/cgroup{USER}{dir}/cgroup.procs"),
                0o444,
            );
        }
        let e = find(&root, V2, &own, &me()).unwrap_err().reason;
        assert!(
            e.contains(&format!("no cgroup from /sys/fs/cgroup{USER}/app.slice/run-r1.scope up to /sys/fs/cgroup is owned by uid {}", me().uid)),
            "{e}"
        );
    }

    #[test]
    fn ownership_decides_and_the_highest_owned_one_wins() {
        let step = |dir: &str, owner: u32, w: bool| Step {
            dir: PathBuf::from(dir),
            cgroup: dir.into(),
            owner,
            procs_writable: w,
            subtree_writable: w,
        };
        // From the process's cgroup up. World-writable but root's is not delegated.
        let steps = [
            step("/a/b/c", 1000, true),
            step("/a/b", 0, true),
            step("/a", 1000, true),
            step("/", 0, false),
        ];
        assert_eq!(pick(&steps, 1000).unwrap().dir, PathBuf::from("/a"));
        assert_eq!(pick(&steps, 1001), None);
        let steps = [step("/a/b", 1000, true), step("/a", 1000, false)];
        assert_eq!(pick(&steps, 1000).unwrap().dir, PathBuf::from("/a/b"));
        let who = Who {
            uid: 1000,
            gids: vec![100],
        };
        assert!(who.may_write(1000, 0, 0o644));
        assert!(!who.may_write(1000, 0, 0o444));
        assert!(!who.may_write(0, 0, 0o644));
        assert!(who.may_write(0, 100, 0o664));
        assert!(who.may_write(0, 0, 0o666));
    }

    #[test]
    fn v1_hybrid_and_odd_cgroups_have_no_delegation_and_say_why() {
        let (_d, root) = systemd_tree();
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let e = find(&root, HYBRID, &own, &me()).unwrap_err().reason;
        assert!(
            e.contains("hybrid") && e.contains("/sys/fs/cgroup/unified"),
            "{e}"
        );
        let e = find(&root, V1, "4:memory:/\n", &me()).unwrap_err().reason;
        assert!(e.contains("only cgroup v1"), "{e}");
        assert!(find(&root, "", &own, &me())
            .unwrap_err()
            .reason
            .contains("no cgroup filesystem"));
        let e = find(&root, V2, "1:name=systemd:/\n", &me())
            .unwrap_err()
            .reason;
        assert!(e.contains("no cgroup v2 line"), "{e}");
        let e = find(&root, V2, "0::/../other\n", &me()).unwrap_err().reason;
        assert!(e.contains("outside its cgroup namespace"), "{e}");
        // A cgroup2 mount that shows only a subtree the process is not in.
        let sub = "30 26 0:27 /system.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let e = find(&root, sub, &own, &me()).unwrap_err().reason;
        assert!(e.contains("not in the part of the tree"), "{e}");
    }

    #[test]
    fn a_mount_of_a_subtree_maps_the_cgroup_path() {
        // cgroup2 mounted showing user@1000.service (as in a container that was handed it).
        let d = tempfile::tempdir().unwrap();
        let root = CgroupRoot::fake(d.path());
        cgroup_dir(&root, "/sys/fs/cgroup", "memory pids", "");
        cgroup_dir(&root, "/sys/fs/cgroup/leaf", "memory pids", "7\n");
        let mi = format!("30 26 0:27 {USER} /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let found = find(&root, &mi, &format!("0::{USER}/leaf\n"), &me()).unwrap();
        assert_eq!(found.root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(found.cgroup, USER);
    }

    #[test]
    fn a_root_with_processes_in_it_refuses_limits_and_says_what_to_do() {
        let (_d, root) = systemd_tree();
        // Started right in a delegated directory that nothing above is delegated with.
        let svc = format!("/sys/fs/cgroup{USER}");
        for dir in ["", "/app.slice"] {
            chmod(&root, &format!("{svc}{dir}/cgroup.procs"), 0o444);
        }
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let d = find(&root, V2, &own, &me()).unwrap();
        assert!(d.has_processes && d.enabled.is_empty());
        let e = d
            .check(&limits(|f| f.pids_limit = Some("10".into())))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--pids-limit needs the pids controller")
                && e.contains("no internal processes")
                && e.contains("start stagebox from there"),
            "{e}"
        );
        // Without limits it is still a place for the container's cgroup.
        assert!(matches!(
            decide(Ok(d), &Limits::default(), 1000),
            Ok(Rootless::Delegated(_))
        ));
    }

    #[test]
    fn the_containers_cgroup_is_made_limited_and_removed_under_the_delegation_root() {
        let (_d, root) = systemd_tree();
        touch(&root, "/sys/devices/system/cpu/online", "0-3\n");
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let d = find(&root, V2, &own, &me()).unwrap();
        let l = limits(|f| f.memory = Some("32m".into()));
        let m = super::super::manager::delegated(&root, &d, "stagebox-1234", "abc", &l).unwrap();
        m.check(&l).unwrap();
        let mut log = super::super::Log::default();
        m.create(&l, &mut log).unwrap();
        let svc = format!("/sys/fs/cgroup{USER}");
        let cg = format!("{svc}/stagebox-1234/abc");
        assert_eq!(m.dirs(), [PathBuf::from(&cg)]);
        assert_eq!(
            super::super::testing::content(&root, &format!("{cg}/memory.max")),
            "33554432"
        );
        // Nothing above the delegation root was touched: its controllers were on already.
        let calls = super::super::testing::calls(&log);
        assert!(calls.iter().all(|c| c.contains(&svc)), "{calls:?}");
        m.destroy().unwrap();
        assert!(!root.exists(Path::new(&format!("{svc}/stagebox-1234"))));
        assert!(root.exists(Path::new(&svc)));
    }

    #[test]
    fn a_root_with_processes_still_holds_a_cgroup_without_controllers() {
        let (_d, root) = systemd_tree();
        let svc = format!("/sys/fs/cgroup{USER}");
        for dir in ["", "/app.slice"] {
            chmod(&root, &format!("{svc}{dir}/cgroup.procs"), 0o444);
        }
        let scope = format!("{svc}/app.slice/run-r1.scope");
        touch(&root, &format!("{scope}/cgroup.type"), "domain\n");
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let d = find(&root, V2, &own, &me()).unwrap();
        assert_eq!(d.root, PathBuf::from(&scope));
        let l = Limits::default();
        let m = super::super::manager::delegated(&root, &d, "stagebox-1234", "abc", &l).unwrap();
        m.check(&l).unwrap();
        let mut log = super::super::Log::default();
        m.create(&l, &mut log).unwrap();
        let calls = super::super::testing::calls(&log);
        assert!(
            !calls.iter().any(|c| c.contains("subtree_control")),
            "no controller can be switched on below a cgroup with processes: {calls:?}"
        );
        assert!(root.exists(Path::new(&format!("{scope}/stagebox-1234/abc"))));
    }

    #[test]
    fn a_controller_the_subtree_lacks_is_named() {
        let (_d, root) = systemd_tree();
        let own = format!("0::{USER}/app.slice/run-r1.scope\n");
        let d = find(&root, V2, &own, &me()).unwrap();
        let e = d
            .check(&limits(|f| f.cpuset_cpus = Some("0".into())))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cpuset-cpus needs the cpuset controller")
                && e.contains("cgroup.controllers: cpu memory pids"),
            "{e}"
        );
    }

    #[test]
    fn without_a_delegation_limits_are_refused_and_no_limits_run_without_a_cgroup() {
        let l = limits(|f| {
            f.memory = Some("32m".into());
            f.pids_limit = Some("10".into());
        });
        let e = decide(Err(NoDelegation::new("no reason")), &l, 65534).unwrap_err();
        assert!(matches!(e, Error::Usage(_)));
        let e = e.to_string();
        assert!(
            e.starts_with("--memory, --pids-limit need a cgroup")
                && e.contains("as uid 65534")
                && e.contains("(no reason)")
                && e.contains("systemd-run --user --scope -p Delegate=yes")
                && e.contains("chowned to you")
                && !e.contains(". "),
            "{e}"
        );
        // On a hybrid host no delegation would help: the sentence says what would.
        let hybrid = find(&CgroupRoot::host(), HYBRID, "0::/\n", &me()).unwrap_err();
        let e = decide(Err(hybrid), &l, 65534).unwrap_err().to_string();
        assert!(
            e.contains("hybrid")
                && e.contains("systemd.unified_cgroup_hierarchy=1")
                && !e.contains("systemd-run"),
            "{e}"
        );
        assert_eq!(
            decide(
                Err(NoDelegation::new("no reason")),
                &Limits::default(),
                65534
            )
            .unwrap(),
            Rootless::NoCgroup("no reason".into())
        );
    }
}
