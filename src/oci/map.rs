//! `config.json` onto stagebox's stages: each field of the runtime spec becomes the stage
//! toggle or the setting a `stagebox run` flag would give, so an engine's container runs
//! through the very same stages (and the same trace) as a learner's.
//!
//! | config.json | stagebox |
//! |---|---|
//! | `linux.namespaces` (types) | the user, pid, net, ipc, uts, cgroupns, mount stages on or off |
//! | `linux.namespaces[i].path` (uts, ipc, network, cgroup) | that stage joins the file with `setns(2)` instead of `unshare(2)` |
//! | `root.path`, `root.readonly` | `--rootfs DIR` (bind-mounted as it is: the engine made it), `--read-only` |
//! | `mounts`: proc, sysfs, /dev, devpts, /dev/shm | the proc stage (it makes these) |
//! | `mounts`: bind | `-v SRC:DST[:ro]` (the volumes stage) |
//! | `mounts`: tmpfs elsewhere | `--tmpfs DST:OPTIONS` |
//! | `process.args`, `env`, `cwd`, `user` | the command, `-e`, `-w`, `--user UID:GID` |
//! | `process.user.additionalGids` | the workload's supplementary groups (setgroups before the exec) |
//! | `process.capabilities` (all five sets) | the caps stage: bounding dropped, capset, ambient raised (kept through a switch to another user) |
//! | `linux.devices` | nodes the proc stage makes in /dev (as `--device`), allowed by the devices stage |
//! | `mounts`: /dev/mqueue (mqueue) | the proc stage mounts it |
//! | `process.rlimits` | `--ulimit` |
//! | `process.noNewPrivileges` | the nnp stage |
//! | `process.oomScoreAdj` | /proc/PID/oom_score_adj, read back |
//! | `hostname` | `--hostname` |
//! | `linux.resources` memory, cpu, pids | `-m`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit` |
//! | `linux.cgroupsPath` `/PARENT/LEAF` | the cgroup stage's directory |
//! | `linux.seccomp` | `--security-opt seccomp=PROFILE` (the same JSON shape as Docker's) |
//! | `linux.uidMappings`, `gidMappings` | `--uidmap`, `--gidmap` |
//! | `linux.maskedPaths`, `linux.readonlyPaths` | the paths stage's lists (in place of Docker's) |
//! | `linux.sysctl` | written in the container after the proc stage, read back |
//! | `linux.rootfsPropagation` | `--root-propagation` |
//!
//! What cannot be done is refused in one sentence that names the field.

use super::bundle::Bundle;
use crate::error::{Error, Result};
use crate::runtime::config::{NetworkRequest, RunConfig, RunExtras, Security, Ulimit};
use crate::runtime::oci::OciRun;
use crate::stages::plan::{ConfineToggles, Plan, Toggles};
use crate::stages::RootSwitch;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

/// How `create` or `run` was called (runc's flags).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub id: String,
    pub state_dir: PathBuf,
    pub create: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub trace: crate::trace::TraceMode,
}

fn refuse(field: &str, why: impl std::fmt::Display) -> Error {
    Error::usage(format!("config.json {field}: {why}"))
}

/// The stage a namespace type switches.
fn stage_of(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroupns",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A `linux.namespaces[i].path`: the uts, ipc, net and cgroupns stages join it; the file must
/// be a namespace of the entry's type (asked of the kernel now, before anything changes).
fn check_join(field: &str, typ: LinuxNamespaceType, path: &Path) -> Result<crate::stages::NsJoin> {
    use crate::stages::StageId;
    let (stage, kind) = match typ {
        LinuxNamespaceType::Uts => (StageId::Uts, "uts"),
        LinuxNamespaceType::Ipc => (StageId::Ipc, "ipc"),
        LinuxNamespaceType::Network => (StageId::Net, "net"),
        LinuxNamespaceType::Cgroup => (StageId::Cgroupns, "cgroup"),
        LinuxNamespaceType::Pid => return Err(refuse(field, "joining an existing pid namespace is not supported: setns(2) into a pid namespace only moves the process's future children, so the runtime would need one more fork; leave out the path to make a new one")),
        LinuxNamespaceType::Mount => return Err(refuse(field, "joining an existing mount namespace is not supported: the mount, rootfs and pivot stages build the container's root in a fresh copy of the mount table; leave out the path to make a new one")),
        LinuxNamespaceType::User => return Err(refuse(field, "joining an existing user namespace is not supported: it must come before every other namespace and its maps are already written; leave out the path to make a new one")),
        LinuxNamespaceType::Time => return Err(refuse(field, "the time namespace has no stage in stagebox; remove that entry")),
    };
    if !path.is_absolute() {
        return Err(refuse(field, format!("{:?} must be an absolute path to a namespace file such as /proc/PID/ns/{kind} or /run/netns/NAME", path.display().to_string())));
    }
    match crate::kernel::ns::file_type(path) {
        Err(e) => Err(refuse(field, format!("cannot open {}: {e}; name a namespace file such as /proc/PID/ns/{kind} or /run/netns/NAME", path.display()))),
        Ok(None) => Err(refuse(field, format!("{} is not a namespace file; name one such as /proc/PID/ns/{kind} or /run/netns/NAME", path.display()))),
        Ok(Some(t)) if t != kind => Err(refuse(field, format!("{} is a namespace of type {t}, not {kind}; name a {kind} namespace such as /proc/PID/ns/{kind}", path.display()))),
        Ok(Some(_)) => Ok(crate::stages::NsJoin { stage, path: path.to_path_buf() }),
    }
}

/// Mounts the proc stage makes itself, the way runc's default config lists them.
fn made_by_proc_stage(dest: &str, typ: &str) -> bool {
    matches!(
        (dest, typ),
        ("/proc", "proc")
            | ("/dev", "tmpfs")
            | ("/dev/pts", "devpts")
            | ("/dev/shm", _)
            | ("/sys", "sysfs")
            | ("/sys", "bind")
    )
}

/// What the trace should say about fields taken as stagebox does them.
pub struct Mapped {
    pub cfg: RunConfig,
    pub notes: Vec<String>,
}

/// The run a bundle's config asks for.
pub fn to_run_config(b: &Bundle, inv: &Invocation) -> Result<Mapped> {
    let spec: &Spec = &b.spec;
    let mut notes = Vec::new();
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec.process().clone().ok_or_else(|| {
        refuse(
            "process",
            "is missing; a container needs a process to run (process.args)",
        )
    })?;

    // Namespaces: a stage for each type listed, off for each type not listed.
    let mut listed: Vec<&'static str> = Vec::new();
    let mut joins: Vec<(usize, &'static str, crate::stages::NsJoin)> = Vec::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let stage = stage_of(ns.typ());
        if stage == "time" {
            return Err(refuse(
                &format!("linux.namespaces[{i}]"),
                "the time namespace has no stage in stagebox; remove that entry",
            ));
        }
        if let Some(p) = ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
            let field = format!("linux.namespaces[{i}].path");
            joins.push((i, stage, check_join(&field, ns.typ(), p)?));
        }
        listed.push(stage);
    }
    if let Some((i, _, j)) = joins.first().filter(|_| listed.contains(&"user")) {
        return Err(refuse(
            &format!("linux.namespaces[{i}].path"),
            format!(
                "joining {} from a new user namespace is not supported: stagebox makes the user namespace first, and a process in it has no privilege over a namespace its parent owns; leave out the user namespace or the path",
                j.path.display()
            ),
        ));
    }
    for (_, stage, j) in &joins {
        notes.push(format!(
            "linux.namespaces: the {stage} stage joins {} (setns) instead of making a namespace",
            j.path.display()
        ));
    }
    if let Some(h) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
        if joins.iter().any(|(_, s, _)| *s == "uts") {
            notes.push(format!(
                "hostname {h:?}: not set: the uts namespace is joined, and its hostname is shared by everything in it"
            ));
        }
    }
    let joins: Vec<crate::stages::NsJoin> = joins.into_iter().map(|(_, _, j)| j).collect();
    let mut without: Vec<String> = ["mount", "cgroupns", "uts", "ipc", "user", "pid", "net"]
        .iter()
        .filter(|s| !listed.contains(s))
        .map(|s| s.to_string())
        .collect();

    // Mounts.
    let mut volumes = Vec::new();
    let mut tmpfs = Vec::new();
    let mut proc_wanted = false;
    let mut cgroup_mount = false;
    let mut mqueue = false;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination().to_string_lossy().into_owned();
        let typ = m.typ().clone().unwrap_or_default();
        let options = m.options().clone().unwrap_or_default();
        let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let field = format!("mounts[{i}] ({dest})");
        if made_by_proc_stage(&dest, &typ) {
            proc_wanted = true;
            continue;
        }
        if matches!((dest.as_str(), typ.as_str()), ("/dev/mqueue", "mqueue")) {
            mqueue = true;
            continue;
        }
        if matches!(
            (dest.as_str(), typ.as_str()),
            ("/sys/fs/cgroup", "cgroup" | "cgroup2")
        ) {
            cgroup_mount = true;
            continue;
        }
        if is_bind {
            let Some(src) = m.source() else {
                return Err(refuse(&field, "a bind mount needs a source"));
            };
            let source = if src.is_absolute() {
                src.clone()
            } else {
                b.dir.join(src)
            };
            if !source.exists() {
                return Err(refuse(
                    &format!("{field}.source"),
                    format!(
                        "{} does not exist; create it or fix the path",
                        source.display()
                    ),
                ));
            }
            volumes.push(crate::state::volume::VolumeSpec::Bind {
                source,
                target: dest,
                read_only: options.iter().any(|o| o == "ro"),
            });
            continue;
        }
        if typ == "tmpfs" {
            // Flags as the config says them (not Docker's noexec/nodev default); the
            // propagation words are the mount stage's business (private).
            let mut opts = vec!["exec".to_string(), "dev".into(), "suid".into()];
            for o in &options {
                match o.as_str() {
                    "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
                    "tmpcopyup" => notes.push(format!(
                        "{field}: tmpcopyup is not done: the tmpfs starts empty, without the image's files"
                    )),
                    other => opts.push(other.to_string()),
                }
            }
            tmpfs.push(crate::state::volume::TmpfsMount {
                target: dest,
                options: opts.join(","),
            });
            continue;
        }
        return Err(refuse(
            &field,
            format!("a {typ:?} mount is not supported; stagebox mounts bind and tmpfs mounts, and makes /proc, /sys and /dev itself"),
        ));
    }
    if !proc_wanted {
        without.push("proc".into());
    }

    // The process.
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(refuse("process.args", "is empty; name the program to run"));
    }
    let env = process.env().clone().unwrap_or_default();
    let cwd = process.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(refuse(
            "process.cwd",
            format!("{cwd:?} must be an absolute path inside the container"),
        ));
    }
    let user = process.user();
    let user_arg = format!("{}:{}", user.uid(), user.gid());
    let groups = user.additional_gids().clone().unwrap_or_default();
    // process.capabilities: all five sets (a set not given is empty, as in runc).
    let cap_sets = match process.capabilities().as_ref() {
        Some(c) => {
            let mask =
                |field: &str, set: &Option<oci_spec::runtime::Capabilities>| -> Result<u64> {
                    let mut mask = 0u64;
                    for c in set.iter().flatten() {
                        let name = c.to_string();
                        match crate::confine::caps::number(&name) {
                            Some(n) => mask |= 1u64 << n,
                            None => {
                                return Err(refuse(
                                    &format!("process.capabilities.{field}"),
                                    format!(
                                    "{name} is not a capability this kernel build of stagebox knows"
                                ),
                                ))
                            }
                        }
                    }
                    Ok(mask)
                };
            Some(crate::confine::caps::CapSets {
                bounding: mask("bounding", c.bounding())?,
                effective: mask("effective", c.effective())?,
                permitted: mask("permitted", c.permitted())?,
                inheritable: mask("inheritable", c.inheritable())?,
                ambient: mask("ambient", c.ambient())?,
            })
        }
        None => None,
    };
    let caps = cap_sets.map(|c| c.bounding).unwrap_or(0);
    let mut ulimits = Vec::new();
    for (i, r) in process.rlimits().iter().flatten().enumerate() {
        let name = r.typ().to_string();
        let short = name
            .strip_prefix("RLIMIT_")
            .unwrap_or(&name)
            .to_ascii_lowercase();
        // Docker's `--ulimit` names, and RLIMIT_AS, which the runtime spec has and Docker not.
        let found = crate::runtime::config::ULIMIT_NAMES
            .iter()
            .map(|(n, r, _)| (*n, *r))
            .chain(std::iter::once(("as", libc::RLIMIT_AS as i32)))
            .find(|(n, _)| *n == short);
        let Some((n, resource)) = found else {
            return Err(refuse(
                &format!("process.rlimits[{i}]"),
                format!("{name} is not a resource limit stagebox sets"),
            ));
        };
        if r.soft() > r.hard() {
            return Err(refuse(
                &format!("process.rlimits[{i}]"),
                format!(
                    "soft {} is above hard {}; the kernel refuses that",
                    r.soft(),
                    r.hard()
                ),
            ));
        }
        ulimits.push(Ulimit {
            name: n.to_string(),
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    if let Some(p) = process
        .apparmor_profile()
        .as_ref()
        .filter(|p| !p.is_empty())
    {
        // runc applies an AppArmor profile only where AppArmor is enabled, and so does this.
        if std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y")
        {
            return Err(refuse(
                "process.apparmorProfile",
                format!("{p:?}: stagebox does not load AppArmor profiles; remove the field"),
            ));
        }
        notes.push(format!(
            "process.apparmorProfile {p:?}: AppArmor is not enabled on this host, so no profile applies (as runc does)"
        ));
    }
    if let Some(l) = process.selinux_label().as_ref().filter(|l| !l.is_empty()) {
        notes.push(format!(
            "process.selinuxLabel {l:?}: SELinux is not used by stagebox; the label is not applied (as runc does where SELinux is disabled)"
        ));
    }

    // Confinement toggles.
    let mut confine = ConfineToggles {
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        seccomp_unconfined: linux.seccomp().is_none(),
        user: Some(listed.contains(&"user")),
        rootless: !nix::unistd::geteuid().is_root(),
        ..Default::default()
    };
    if !confine.no_new_privileges {
        without.push("nnp".into());
    }
    let masked = linux.masked_paths().clone().unwrap_or_default();
    let readonly = linux.readonly_paths().clone().unwrap_or_default();
    if masked.is_empty() && readonly.is_empty() {
        without.push("paths".into());
    }
    for (field, list) in [
        ("linux.maskedPaths", &masked),
        ("linux.readonlyPaths", &readonly),
    ] {
        if let Some((i, p)) = list.iter().enumerate().find(|(_, p)| !p.starts_with('/')) {
            return Err(refuse(
                &format!("{field}[{i}]"),
                format!("{p:?} must be an absolute path inside the container"),
            ));
        }
    }
    if linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().as_ref())
        .is_some_and(|d| !d.is_empty())
    {
        notes.push(
            "linux.resources.devices: the devices stage allows Docker's default device list and linux.devices".into(),
        );
    }
    // linux.devices: made in the container's /dev by the proc stage (as `--device` nodes),
    // and allowed by the devices stage.
    let mut devices = Vec::new();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let field = format!("linux.devices[{i}]");
        let path = d.path().to_string_lossy().into_owned();
        if !path.starts_with("/dev/") || path.split('/').any(|c| c == "..") {
            return Err(refuse(
                &format!("{field}.path"),
                format!("{path:?}: stagebox makes device nodes under /dev only"),
            ));
        }
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => 'c',
            oci_spec::runtime::LinuxDeviceType::B => 'b',
            oci_spec::runtime::LinuxDeviceType::P => 'p',
            oci_spec::runtime::LinuxDeviceType::A => {
                return Err(refuse(
                    &format!("{field}.type"),
                    "\"a\" is no node type; use c, b, u or p",
                ))
            }
        };
        devices.push(crate::confine::devices::Device {
            host: PathBuf::from(&path),
            container: path,
            kind,
            major: if kind == 'p' { 0 } else { d.major() as u64 },
            minor: if kind == 'p' { 0 } else { d.minor() as u64 },
            access: "rwm".into(),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    confine.privileged = false;
    let seccomp_profile = match linux.seccomp() {
        Some(s) => {
            let path = inv.state_dir.join(format!("seccomp-{}.json", inv.id));
            let text = serde_json::to_vec(s).map_err(|e| refuse("linux.seccomp", e))?;
            crate::state::atomic::write_atomic(&path, &text)?;
            Some(path)
        }
        None => None,
    };
    let userns = match (linux.uid_mappings(), linux.gid_mappings()) {
        (Some(u), Some(g)) if !u.is_empty() => {
            let conv = |v: &Vec<oci_spec::runtime::LinuxIdMapping>| {
                v.iter()
                    .map(|m| format!("{}:{}:{}", m.container_id(), m.host_id(), m.size()))
                    .collect::<Vec<_>>()
            };
            crate::runtime::config::UsernsRequest::parse(None, &conv(u), &conv(g))?
        }
        _ if listed.contains(&"user") => crate::runtime::config::UsernsRequest::Auto,
        _ => crate::runtime::config::UsernsRequest::Host,
    };

    // Resources.
    let mut flags = crate::cgroup::limits::LimitFlags::default();
    if let Some(r) = linux.resources() {
        if let Some(m) = r.memory() {
            if let Some(l) = m.limit().filter(|l| *l > 0) {
                flags.memory = Some(format!("{l}b"));
            }
            if let Some(s) = m.swap() {
                flags.memory_swap = Some(if s < 0 { "-1".into() } else { format!("{s}b") });
            }
        }
        if let Some(c) = r.cpu() {
            if let (Some(q), Some(p)) = (c.quota(), c.period()) {
                if q > 0 && p > 0 {
                    flags.cpus = Some(format!("{}", q as f64 / p as f64));
                }
            }
            if let Some(s) = c.shares().filter(|s| *s > 0) {
                flags.cpu_shares = Some(s.to_string());
            }
            if let Some(cpus) = c.cpus().as_ref().filter(|c| !c.is_empty()) {
                flags.cpuset_cpus = Some(cpus.clone());
            }
        }
        if let Some(p) = r.pids() {
            flags.pids_limit = Some(if p.limit() <= 0 {
                "-1".into()
            } else {
                p.limit().to_string()
            });
        }
    }
    let limits =
        crate::cgroup::Limits::from_flags(&flags).map_err(|e| refuse("linux.resources", e))?;
    let cgroups_path = match linux.cgroups_path() {
        None => None,
        Some(p) => {
            let s = p.to_string_lossy().into_owned();
            let parts: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
            match parts.as_slice() {
                [parent, leaf] if !s.contains(':') => Some((parent.to_string(), leaf.to_string())),
                [leaf] if !s.contains(':') => Some((crate::state::dir::cgroup_parent(&inv.state_dir), leaf.to_string())),
                _ => {
                    return Err(refuse(
                        "linux.cgroupsPath",
                        format!("{s:?}: stagebox takes /PARENT/NAME (two levels, cgroupfs style); systemd's slice:prefix:name needs --systemd-cgroup, which stagebox does not support"),
                    ))
                }
            }
        }
    };
    let propagation: crate::stages::Propagation = match linux.rootfs_propagation() {
        Some(p) if !p.is_empty() => p.parse().map_err(|_| {
            refuse(
                "linux.rootfsPropagation",
                format!("{p:?}: use private, slave or shared (r-prefixed too)"),
            )
        })?,
        _ => Default::default(),
    };
    let sysctl: Vec<(String, String)> = linux
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !sysctl.is_empty() {
        notes.push(format!(
            "linux.sysctl: {} (written under /proc/sys inside the container after the proc stage)",
            sysctl
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if let Some(h) = &hostname {
        crate::runtime::config::check_hostname(h).map_err(|e| refuse("hostname", e))?;
        if !listed.contains(&"uts") {
            return Err(refuse(
                "hostname",
                "needs a uts namespace (add {\"type\": \"uts\"} to linux.namespaces); without one it would rename the host",
            ));
        }
    }
    let network = if listed.contains(&"net") {
        NetworkRequest::None
    } else {
        NetworkRequest::Host
    };
    confine.host_ns.net = network == NetworkRequest::Host;
    let root_switch = if inv.no_pivot {
        RootSwitch::Chroot
    } else {
        RootSwitch::Pivot
    };
    let plan = Plan::resolve(
        &Toggles {
            only: None,
            without,
            volumes_given: !volumes.is_empty() || !tmpfs.is_empty(),
            confine,
        },
        root_switch,
    )?
    .with_propagation(propagation)?;
    let terminal = process.terminal().unwrap_or(false);
    let root = spec.root().clone().unwrap_or_default();
    let oci = OciRun {
        bundle: b.dir.clone(),
        create: inv.create,
        pid_file: inv.pid_file.as_ref().map(|p| absolute(p)),
        console_socket: inv.console_socket.clone(),
        terminal,
        cgroups_path,
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        hooks: spec.hooks().clone(),
        oom_score_adj: process.oom_score_adj(),
        sysctl,
        cgroup_mount: cgroup_mount && proc_wanted,
        joins,
        mqueue: mqueue && proc_wanted,
        caps: cap_sets,
    };
    let cfg = RunConfig {
        command: args,
        rootfs: Some(b.rootfs.clone()),
        default_source: crate::rootfs::default::RootfsSource::Auto,
        hostname,
        plan,
        probe: None,
        state_dir: inv.state_dir.clone(),
        env,
        workdir: Some(cwd),
        trace: inv.trace,
        trace_focus: crate::trace::Focus::all(),
        name: Some(inv.id.clone()),
        remove: false,
        read_only: root.readonly().unwrap_or(false),
        volumes,
        limits,
        security: Security {
            caps,
            seccomp_profile,
            devices,
            preserve_fds: inv.preserve_fds,
            userns,
            masked_paths: Some(masked),
            readonly_paths: Some(readonly),
        },
        image: crate::image::run::RunImage {
            source: None,
            entrypoint: None,
            user: Some(user_arg),
            groups,
        },
        network,
        publish: Vec::new(),
        publish_all: false,
        extras: RunExtras {
            init: false,
            ulimits,
            tmpfs,
        },
        lifecycle: crate::runtime::lifecycle::Lifecycle {
            id: Some(inv.id.clone()),
            ..Default::default()
        },
        oci: Some(oci),
    };
    Ok(Mapped { cfg, notes })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}
