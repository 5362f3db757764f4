//! Stage toggles -> an ordered, validated list of stages.
//!
//! The order is fixed (see `StageId::ORDER` and ARCHITECTURE.md); the user only says which stages
//! are on. Some combinations cannot work, and the plan refuses them before anything happens on
//! the host, with one sentence saying why.

use crate::error::{Error, Result};
use crate::stages::registry;
use crate::stages::{Propagation, RootSwitch, StageId};
use std::collections::BTreeSet;

/// Which stages are on, as the user asked.
#[derive(Debug, Clone, Default)]
pub struct Toggles {
    pub only: Option<Vec<String>>,
    pub without: Vec<String>,
    /// Whether any -v was given: the volumes stage has nothing to do without one, and is then
    /// off (so that its needs do not refuse plans that mount nothing).
    pub volumes_given: bool,
    /// What `--privileged` and `--security-opt` say about the confinement stages.
    pub confine: ConfineToggles,
}

/// The flags that switch confinement stages on or off the way Docker's do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfineToggles {
    /// `--privileged`: devices, paths, caps and seccomp off.
    pub privileged: bool,
    /// `--security-opt no-new-privileges`: the nnp stage on.
    pub no_new_privileges: bool,
    /// `--security-opt seccomp=unconfined`: the seccomp stage off.
    pub seccomp_unconfined: bool,
    /// `--userns`/`--uidmap`: the user stage on (`Some(true)`) or off (`--userns=host`).
    pub user: Option<bool>,
    /// The runtime is not root: every namespace needs the user namespace first, so the user
    /// stage is on (and refusing it is an error).
    pub rootless: bool,
    /// `--pid host`, `--ipc host`, `--uts host`, `--network host`, `--cgroupns host`: the
    /// namespace stages these switch off, the plan naming the flag as the reason.
    pub host_ns: HostNamespaces,
}

/// Which namespaces Docker's `--pid`/`--ipc`/`--uts`/`--network`/`--cgroupns host` share with
/// the host: each switches its stage off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostNamespaces {
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub net: bool,
    pub cgroupns: bool,
}

impl HostNamespaces {
    /// The flag that switches stage `id` off, if one does.
    pub fn flag(&self, id: StageId) -> Option<&'static str> {
        match id {
            StageId::Pid if self.pid => Some("--pid host"),
            StageId::Ipc if self.ipc => Some("--ipc host"),
            StageId::Uts if self.uts => Some("--uts host"),
            StageId::Net if self.net => Some("--network host"),
            StageId::Cgroupns if self.cgroupns => Some("--cgroupns host"),
            _ => None,
        }
    }
}

/// The stages `--privileged` switches off, as Docker's flag does.
pub const PRIVILEGED_OFF: [StageId; 4] = [
    StageId::Devices,
    StageId::Paths,
    StageId::Caps,
    StageId::Seccomp,
];

const ROOTLESS_NEEDS_USER: &str = "without root, the kernel lets a process make namespaces only inside a user namespace of its own; keep the user stage on (drop --userns=host or --without user), or run as root";

/// Why the cgroup stage is off in a rootless run without a delegated subtree
/// (`stagebox doctor` says why there is none).
pub const ROOTLESS_NO_CGROUP: &str = "rootless: no delegated cgroup v2 subtree";

/// Why the devices stage is off in a rootless run.
pub const ROOTLESS_NO_DEVICES: &str = "rootless: its BPF program needs CAP_SYS_ADMIN on the host";

/// One stage of the resolved pipeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedStage {
    pub id: StageId,
    pub enabled: bool,
    /// Why it is on or off: "default", "--without", "not in --only".
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    pub root_switch: RootSwitch,
    /// The mount stage's propagation mode (`--root-propagation`).
    #[serde(skip_serializing_if = "is_private")]
    pub root_propagation: Propagation,
}

fn is_private(p: &Propagation) -> bool {
    *p == Propagation::Private
}

/// Stage names as a flag takes them (comma-separated, any order, repeatable), each checked:
/// an unknown or unavailable one is refused with one sentence naming `flag` and the stages.
pub fn parse_names(names: &[String], flag: &str) -> Result<BTreeSet<StageId>> {
    let mut out = BTreeSet::new();
    for raw in names {
        for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id: StageId = name.parse().map_err(|_| {
                let known: Vec<&str> = registry::all().iter().map(|s| s.info().id.name()).collect();
                Error::usage(format!(
                    "unknown stage {name:?} in {flag}; the stages are: {}",
                    known.join(", ")
                ))
            })?;
            if registry::get(id).is_none() {
                return Err(Error::usage(format!(
                    "stage {name:?} in {flag} is not available yet in this version of stagebox; `stagebox stages` lists the ones that are"
                )));
            }
            out.insert(id);
        }
    }
    Ok(out)
}

impl Plan {
    pub fn resolve(toggles: &Toggles, root_switch: RootSwitch) -> Result<Plan> {
        if toggles.only.is_some() && !toggles.without.is_empty() {
            return Err(Error::usage(
                "--only and --without cannot be used together; pick the stages with one of them",
            ));
        }
        let only = match &toggles.only {
            Some(o) => Some(parse_names(o, "--only")?),
            None => None,
        };
        let without = parse_names(&toggles.without, "--without")?;
        let mut planned = Vec::new();
        for stage in registry::all() {
            let info = stage.info();
            let (enabled, why) = match &only {
                _ if info.id == StageId::Volumes && !toggles.volumes_given => {
                    (false, "no -v given".to_string())
                }
                _ if toggles.confine.host_ns.flag(info.id).is_some() => (
                    false,
                    toggles
                        .confine
                        .host_ns
                        .flag(info.id)
                        .unwrap_or_default()
                        .to_string(),
                ),
                _ if toggles.confine.privileged && PRIVILEGED_OFF.contains(&info.id) => {
                    (false, "--privileged".to_string())
                }
                _ if toggles.confine.seccomp_unconfined && info.id == StageId::Seccomp => {
                    (false, "seccomp=unconfined".to_string())
                }
                _ if info.id == StageId::User && toggles.confine.user == Some(false) => {
                    if toggles.confine.rootless {
                        return Err(Error::Plan(ROOTLESS_NEEDS_USER.into()));
                    }
                    (false, "--userns=host".to_string())
                }
                _ if info.id == StageId::User && toggles.confine.user == Some(true) => {
                    (true, "--userns".to_string())
                }
                Some(set) if set.contains(&info.id) => (true, "--only".to_string()),
                _ if info.id == StageId::User && toggles.confine.rootless => {
                    if without.contains(&StageId::User) {
                        return Err(Error::Plan(ROOTLESS_NEEDS_USER.into()));
                    }
                    (true, "not root: every namespace needs one".to_string())
                }
                Some(_) => (false, "not in --only".to_string()),
                None if without.contains(&info.id) => (false, "--without".to_string()),
                None if info.id == StageId::Nnp && toggles.confine.no_new_privileges => {
                    (true, "no-new-privileges".to_string())
                }
                None if info.default_on => (true, "default".to_string()),
                None => (false, "off by default".to_string()),
            };
            planned.push(PlannedStage {
                id: info.id,
                enabled,
                why,
            });
        }
        // The device allow list lives in the container's cgroup: with the cgroup stage off
        // (`--without cgroup`), the devices stage goes off with it and the plan says why,
        // unless it was asked for by name.
        let cgroup_on = planned.iter().any(|s| s.id == StageId::Cgroup && s.enabled);
        for s in planned.iter_mut() {
            if s.id == StageId::Devices && s.enabled && s.why == "default" && !cgroup_on {
                s.enabled = false;
                s.why = "the cgroup stage is off".into();
            }
        }
        let plan = Plan {
            stages: planned,
            root_switch,
            root_propagation: Propagation::Private,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// The same plan with the mount stage's propagation mode, checked.
    pub fn with_propagation(mut self, p: Propagation) -> Result<Plan> {
        self.root_propagation = p;
        self.validate()?;
        Ok(self)
    }

    /// The plan for a run by a user other than root, as far as cgroups go; as root the plan
    /// is returned as it is. The one call the runtime makes for that, before the host
    /// changes (`runtime::run`, before `prepare`):
    ///
    /// - a cgroup v2 subtree delegated to the user ([`crate::cgroup::delegation`]): the
    ///   cgroup stage stays on and makes the container's cgroup there; the limits are checked
    ///   against it now (a controller it lacks is refused in one sentence). The devices stage
    ///   goes off: its BPF program needs CAP_SYS_ADMIN on the host;
    /// - none (a v1 or hybrid host, no delegation): with a limit flag, the run is refused in
    ///   one sentence that says how to get delegation (exit 125); without one, the cgroup
    ///   stage goes off ([`Plan::without_cgroup_for_rootless`]) and the trace says why, as
    ///   podman does.
    pub fn fit_rootless_cgroup(self, limits: &crate::cgroup::Limits) -> Result<Plan> {
        let euid = nix::unistd::geteuid();
        if euid.is_root() || !self.is_on(StageId::Cgroup) {
            return Ok(self);
        }
        use crate::cgroup::delegation::{self, Rootless};
        match delegation::decide(delegation::detect(), limits, euid.as_raw())? {
            Rootless::Delegated(_) => self.without_devices_for_rootless(),
            Rootless::NoCgroup(_) => self.without_cgroup_for_rootless(ROOTLESS_NO_CGROUP),
        }
    }

    /// The cgroup stage off for a rootless run, with `reason` as its why, and the devices
    /// stage with it (the device rules live in the container's cgroup), unless it was asked
    /// for by name: then the plan refuses, as it does for `--only devices`.
    pub fn without_cgroup_for_rootless(mut self, reason: &str) -> Result<Plan> {
        for s in self.stages.iter_mut() {
            if s.id == StageId::Cgroup && s.enabled {
                s.enabled = false;
                s.why = reason.to_string();
            }
            if s.id == StageId::Devices && s.enabled {
                if s.why != "default" {
                    return Err(Error::Plan(format!(
                        "the devices stage needs the cgroup stage, which a rootless run has off here ({reason}; `stagebox doctor` says why); leave devices out of --only"
                    )));
                }
                s.enabled = false;
                s.why = "the cgroup stage is off".into();
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// The devices stage off for a rootless run that has a cgroup: loading and attaching its
    /// BPF program needs CAP_SYS_ADMIN on the host (in a user namespace the kernel refuses
    /// mknod of devices anyway). Asked for by name (`--only`), it is refused.
    pub fn without_devices_for_rootless(mut self) -> Result<Plan> {
        for s in self.stages.iter_mut() {
            if s.id == StageId::Devices && s.enabled {
                if s.why != "default" {
                    return Err(Error::Plan(
                        "the devices stage loads a BPF program into the container's cgroup, which needs CAP_SYS_ADMIN on the host and so cannot work in a rootless run; leave devices out of --only".into(),
                    ));
                }
                s.enabled = false;
                s.why = ROOTLESS_NO_DEVICES.into();
            }
        }
        Ok(self)
    }

    /// The stages that are on, in pipeline order.
    pub fn enabled(&self) -> Vec<StageId> {
        self.stages
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.id)
            .collect()
    }

    pub fn is_on(&self, id: StageId) -> bool {
        self.stages.iter().any(|s| s.id == id && s.enabled)
    }

    /// Refuses combinations that cannot work, naming the first problem in one sentence.
    fn validate(&self) -> Result<()> {
        for s in self.stages.iter().filter(|s| s.enabled) {
            let Some(stage) = registry::get(s.id) else {
                continue;
            };
            for (needed, reason) in stage.info().requires {
                if !self.is_on(*needed) {
                    return Err(Error::Plan(format!(
                        "the {} stage needs the {} stage: {}",
                        s.id.name(),
                        needed.name(),
                        reason
                    )));
                }
            }
        }
        if self.is_on(StageId::User) {
            // Inside a user namespace the kernel mounts proc only for a PID namespace that
            // namespace owns, and sysfs only for a network namespace it owns.
            for (needed, why) in [
                (StageId::Pid, "inside a user namespace the kernel mounts /proc only for a PID namespace the user namespace owns (Docker refuses --pid=host with user namespaces for the same reason)"),
                (StageId::Net, "inside a user namespace the kernel mounts /sys only for a network namespace the user namespace owns (Docker refuses --network=host with user namespaces for the same reason)"),
            ] {
                if self.is_on(StageId::Proc) && !self.is_on(needed) {
                    return Err(Error::Plan(format!(
                        "the proc stage needs the {} stage when the user stage is on: {why}",
                        needed.name()
                    )));
                }
            }
            // The same holds for the cgroup filesystems the paths stage mounts read-only on
            // /sys/fs/cgroup: only for a cgroup namespace the user namespace owns.
            if self.is_on(StageId::Paths) && !self.is_on(StageId::Cgroupns) {
                return Err(Error::Plan(
                    "the paths stage needs the cgroupns stage when the user stage is on: inside a user namespace the kernel mounts a cgroup filesystem (the read-only /sys/fs/cgroup the paths stage makes) only for a cgroup namespace the user namespace owns".into(),
                ));
            }
        }
        if self.root_propagation != Propagation::Private && !self.is_on(StageId::Mount) {
            return Err(Error::Plan(
                "--root-propagation is a mode of the mount stage, which is off; switch mount on or drop --root-propagation".into(),
            ));
        }
        if self.root_propagation == Propagation::Shared {
            let mounting: Vec<&str> = [
                StageId::Rootfs,
                StageId::Volumes,
                StageId::Proc,
                StageId::Pivot,
                StageId::Paths,
            ]
            .into_iter()
            .filter(|id| self.is_on(*id))
            .map(|id| id.name())
            .collect();
            if !mounting.is_empty() {
                return Err(Error::Plan(format!(
                    "--root-propagation shared would carry the mounts of the {} stage(s) onto the host (and pivot_root refuses shared mounts); use it only with those stages off, to watch a workload's own mount leak",
                    mounting.join(", ")
                )));
            }
        }
        if self.root_switch == RootSwitch::Chroot && !self.is_on(StageId::Pivot) {
            return Err(Error::Plan(
                "--root-switch chroot is a mode of the pivot stage, which is off; switch pivot on or drop --root-switch".into(),
            ));
        }
        Ok(())
    }

    /// The root the workload will see, relative to the host: the rootfs when the root is
    /// switched, the host's / otherwise.
    pub fn switches_root(&self) -> bool {
        self.is_on(StageId::Pivot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(only: Option<&str>, without: &str) -> Toggles {
        Toggles {
            only: only.map(|o| vec![o.to_string()]),
            without: if without.is_empty() {
                vec![]
            } else {
                vec![without.to_string()]
            },
            volumes_given: false,
            confine: ConfineToggles::default(),
        }
    }

    fn on(p: &Plan) -> Vec<&'static str> {
        p.stages
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.id.name())
            .collect()
    }

    #[test]
    fn default_plan_is_every_stage_in_order() {
        let p = Plan::resolve(&t(None, ""), RootSwitch::Pivot).unwrap();
        assert_eq!(
            on(&p),
            vec![
                "cgroup", "devices", "uts", "ipc", "pid", "net", "cgroupns", "mount", "rootfs",
                "proc", "pivot", "paths", "caps", "seccomp"
            ]
        );
    }

    #[test]
    fn privileged_switches_off_what_dockers_flag_does_and_says_so() {
        let mut tg = t(None, "");
        tg.confine.privileged = true;
        let p = Plan::resolve(&tg, RootSwitch::Pivot).unwrap();
        for id in PRIVILEGED_OFF {
            let s = p.stages.iter().find(|s| s.id == id).unwrap();
            assert!(!s.enabled && s.why == "--privileged", "{s:?}");
        }
        assert!(p.is_on(StageId::Pid) && !p.is_on(StageId::Nnp));
        tg.confine = ConfineToggles {
            no_new_privileges: true,
            seccomp_unconfined: true,
            privileged: false,
            ..Default::default()
        };
        let p = Plan::resolve(&tg, RootSwitch::Pivot).unwrap();
        assert!(p.is_on(StageId::Nnp) && !p.is_on(StageId::Seccomp) && p.is_on(StageId::Caps));
    }

    #[test]
    fn host_namespace_flags_switch_their_stage_off_and_say_so() {
        let mut tg = t(Some("uts,pid,mount"), "");
        tg.confine.host_ns.pid = true;
        let p = Plan::resolve(&tg, RootSwitch::Pivot).unwrap();
        let s = p.stages.iter().find(|s| s.id == StageId::Pid).unwrap();
        assert!(!s.enabled && s.why == "--pid host", "{s:?}");
        assert!(p.is_on(StageId::Uts));
    }

    #[test]
    fn the_user_stage_follows_userns_and_refuses_what_cannot_work() {
        let mut tg = t(None, "");
        assert!(!Plan::resolve(&tg, RootSwitch::Pivot)
            .unwrap()
            .is_on(StageId::User));
        tg.confine.user = Some(true);
        let p = Plan::resolve(&tg, RootSwitch::Pivot).unwrap();
        assert!(p.is_on(StageId::User) && p.is_on(StageId::Pid));
        let mut no_net = t(None, "net");
        no_net.confine.user = Some(true);
        let e = Plan::resolve(&no_net, RootSwitch::Pivot)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs the net stage") && e.contains("/sys"),
            "{e}"
        );
        let mut no_pid = t(None, "pid");
        no_pid.confine.user = Some(true);
        let e = Plan::resolve(&no_pid, RootSwitch::Pivot)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the pid stage"), "{e}");
        let mut no_cgroupns = t(None, "cgroupns");
        no_cgroupns.confine.user = Some(true);
        let e = Plan::resolve(&no_cgroupns, RootSwitch::Pivot)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the cgroupns stage"), "{e}");
        no_cgroupns.without.push("paths".into());
        assert!(Plan::resolve(&no_cgroupns, RootSwitch::Pivot).is_ok());
        // Rootless: on without asking, even with --only; refusing it is an error.
        let mut rl = t(Some("uts"), "");
        rl.confine.rootless = true;
        let p = Plan::resolve(&rl, RootSwitch::Pivot).unwrap();
        assert!(p.is_on(StageId::User) && p.is_on(StageId::Uts));
        rl.confine.user = Some(false);
        let e = Plan::resolve(&rl, RootSwitch::Pivot)
            .unwrap_err()
            .to_string();
        assert!(e.contains("without root"), "{e}");
        let mut rl = t(None, "user");
        rl.confine.rootless = true;
        assert!(Plan::resolve(&rl, RootSwitch::Pivot).is_err());
    }

    #[test]
    fn only_keeps_pipeline_order_whatever_the_order_given() {
        let p = Plan::resolve(&t(Some("mount,uts"), ""), RootSwitch::Pivot).unwrap();
        assert_eq!(on(&p), vec!["uts", "mount"]);
    }

    #[test]
    fn without_cgroup_takes_the_devices_stage_with_it_unless_asked_for() {
        let p = Plan::resolve(&t(None, "cgroup"), RootSwitch::Pivot).unwrap();
        let d = p.stages.iter().find(|s| s.id == StageId::Devices).unwrap();
        assert!(!d.enabled && d.why == "the cgroup stage is off", "{d:?}");
        assert!(Plan::resolve(&t(Some("devices"), ""), RootSwitch::Pivot)
            .unwrap_err()
            .to_string()
            .contains("the devices stage needs the cgroup stage"));
    }

    #[test]
    fn without_pid_leaves_the_rest() {
        let p = Plan::resolve(&t(None, "pid"), RootSwitch::Pivot).unwrap();
        assert!(!p.is_on(StageId::Pid));
        assert!(p.is_on(StageId::Proc));
    }

    #[test]
    fn pivot_without_mount_is_refused_with_a_reason() {
        let e = Plan::resolve(&t(None, "mount"), RootSwitch::Pivot).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("needs the mount stage"), "{msg}");
    }

    #[test]
    fn pivot_without_rootfs_is_refused() {
        let e = Plan::resolve(&t(None, "rootfs"), RootSwitch::Pivot).unwrap_err();
        assert!(
            e.to_string()
                .contains("the pivot stage needs the rootfs stage"),
            "{e}"
        );
    }

    #[test]
    fn unknown_stage_is_named() {
        let e = Plan::resolve(&t(None, "pdi"), RootSwitch::Pivot).unwrap_err();
        assert!(e.to_string().contains("unknown stage \"pdi\""), "{e}");
    }

    #[test]
    fn only_and_without_together_are_refused() {
        let toggles = Toggles {
            only: Some(vec!["uts".into()]),
            without: vec!["pid".into()],
            volumes_given: false,
            confine: ConfineToggles::default(),
        };
        assert!(Plan::resolve(&toggles, RootSwitch::Pivot).is_err());
    }

    #[test]
    fn chroot_mode_needs_pivot_stage() {
        assert!(Plan::resolve(&t(Some("uts"), ""), RootSwitch::Chroot).is_err());
        assert!(Plan::resolve(&t(None, ""), RootSwitch::Chroot).is_ok());
    }

    #[test]
    fn proc_without_rootfs_is_allowed_and_mounts_over_the_hosts_proc_in_the_namespace() {
        let p = Plan::resolve(&t(Some("pid,mount,proc"), ""), RootSwitch::Pivot).unwrap();
        assert_eq!(on(&p), vec!["pid", "mount", "proc"]);
    }

    #[test]
    fn volumes_are_on_only_when_given() {
        let p = Plan::resolve(&t(None, ""), RootSwitch::Pivot).unwrap();
        assert!(!p.is_on(StageId::Volumes));
        let mut tg = t(None, "");
        tg.volumes_given = true;
        let p = Plan::resolve(&tg, RootSwitch::Pivot).unwrap();
        assert!(p.is_on(StageId::Volumes));
        tg.without = vec!["mount,rootfs,pivot,proc".into()];
        assert!(Plan::resolve(&tg, RootSwitch::Pivot)
            .unwrap_err()
            .to_string()
            .contains("volumes stage needs the mount"));
    }

    #[test]
    fn rootless_without_a_cgroup_takes_devices_along_and_says_why() {
        let p = Plan::resolve(&t(None, ""), RootSwitch::Pivot)
            .unwrap()
            .without_cgroup_for_rootless(ROOTLESS_NO_CGROUP)
            .unwrap();
        let c = p.stages.iter().find(|s| s.id == StageId::Cgroup).unwrap();
        assert!(!c.enabled && c.why == ROOTLESS_NO_CGROUP, "{c:?}");
        let d = p.stages.iter().find(|s| s.id == StageId::Devices).unwrap();
        assert!(!d.enabled && d.why == "the cgroup stage is off", "{d:?}");
        assert!(p.is_on(StageId::Pid) && p.is_on(StageId::Cgroupns));
        // Asked for by name, devices cannot go without its cgroup.
        let only = Plan::resolve(&t(Some("cgroup,devices"), ""), RootSwitch::Pivot).unwrap();
        let e = only
            .clone()
            .without_cgroup_for_rootless(ROOTLESS_NO_CGROUP)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("the devices stage needs the cgroup stage, which a rootless run has off"),
            "{e}"
        );
        let e = only.without_devices_for_rootless().unwrap_err();
        assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
        let p = Plan::resolve(&t(None, ""), RootSwitch::Pivot)
            .unwrap()
            .without_devices_for_rootless()
            .unwrap();
        assert!(p.is_on(StageId::Cgroup) && !p.is_on(StageId::Devices));
    }

    #[test]
    fn nothing_at_all_is_a_plain_process() {
        let p = Plan::resolve(&t(Some(""), ""), RootSwitch::Pivot).unwrap();
        assert!(on(&p).is_empty());
    }
}
