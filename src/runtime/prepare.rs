//! Everything a run checks and resolves before its first change to the host: flags that
//! cannot work together, the rootfs (a directory, the default one, or an image's layers),
//! the user, the environment, the working directory and the command's path inside the
//! rootfs. A mistake found here is one sentence and exit status 125, with nothing made.

use super::child::ExecSpec;
use super::config::{check_hostname, RunConfig};
use crate::error::{Error, Result};
use crate::rootfs::{self, DEFAULT_PATH};
use crate::stages::{ChildSpec, StageId};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Everything checked and resolved before the first change to the host.
pub struct Prepared {
    pub spec: ChildSpec,
    pub exec: ExecSpec,
    _exe: Option<OwnedFd>,
    /// The image run, if any (its layers are the overlay's lower dirs).
    pub image: Option<crate::image::run::Resolved>,
    /// `--ulimit`: set on the container process at the exec step (`rlimits`).
    pub ulimits: Vec<super::config::Ulimit>,
}

pub fn prepare(cfg: &RunConfig, id: &str) -> Result<Prepared> {
    check_flags(cfg)?;
    let plan = &cfg.plan;
    let image = crate::image::run::resolve(&cfg.state_dir, &cfg.image, &cfg.command)?;
    if image.is_some() && (cfg.rootfs.is_some() || !plan.is_on(StageId::Rootfs)) {
        return Err(Error::usage(
            "an image was given together with --rootfs or without the rootfs stage; an image is the rootfs, so drop one of them",
        ));
    }
    let rootfs = choose_rootfs(cfg, &image)?;
    let lookup: Vec<PathBuf> = match (&image, &rootfs, plan.switches_root()) {
        (Some(i), _, _) => i.lower.clone(),
        (None, Some(r), true) => vec![r.clone()],
        _ => vec![PathBuf::from("/")],
    };
    let mut user = match image
        .as_ref()
        .and_then(|i| i.user.clone())
        .or_else(|| cfg.image.user.clone())
    {
        Some(u) => Some(crate::image::user::resolve(&lookup, &u)?),
        None => None,
    };
    // Extra supplementary groups (OCI additionalGids), after /etc/group's, as runc adds them.
    if let Some(u) = user.as_mut() {
        for g in &cfg.image.groups {
            if !u.groups.contains(g) {
                u.groups.push(*g);
            }
        }
    }
    let (env, hostname) = environment(cfg, id, &image, &user)?;
    let workdir = working_dir(cfg, &image, &lookup)?;
    let (exec, exe) = match &cfg.probe {
        Some(args) => {
            let exe = std::fs::File::open("/proc/self/exe")
                .map_err(|e| Error::io("open /proc/self/exe", e))?;
            let exe: OwnedFd = exe.into();
            let mut argv = vec!["stagebox".to_string(), "probe".to_string()];
            argv.extend(args.iter().cloned());
            (
                ExecSpec {
                    path: "/proc/self/exe".into(),
                    argv,
                    env,
                    workdir: workdir.clone(),
                    exe_fd: Some(exe.as_raw_fd()),
                    user: user.clone(),
                    make_workdir: image.is_some(),
                    preserve_fds: cfg.security.preserve_fds,
                    init: false,
                    stdio: None,
                    tty: false,
                    start_fifo: None,
                    console: None,
                },
                Some(exe),
            )
        }
        None => {
            let argv = image
                .as_ref()
                .map(|i| i.argv.clone())
                .unwrap_or_else(|| cfg.command.clone());
            let Some(cmd) = argv.first() else {
                return Err(Error::usage(
                    "no command given; write it after --, for example: stagebox run -- /bin/sh",
                ));
            };
            if cmd.is_empty() {
                return Err(Error::usage(
                    "the command to run is empty; give one after --",
                ));
            }
            // Looked up inside the container, once the volumes are mounted (child.rs):
            // `run -v DIR:/v -- /v/hello.sh` finds it there, as Docker does.
            let exe = if cfg.extras.init {
                let f = std::fs::File::open("/proc/self/exe")
                    .map_err(|e| Error::io("open /proc/self/exe", e))?;
                Some(OwnedFd::from(f))
            } else {
                None
            };
            (
                ExecSpec {
                    path: cmd.clone(),
                    argv,
                    env,
                    workdir,
                    exe_fd: exe.as_ref().map(|f| f.as_raw_fd()),
                    user,
                    make_workdir: image.is_some(),
                    preserve_fds: cfg.security.preserve_fds,
                    init: cfg.extras.init,
                    stdio: None,
                    tty: false,
                    start_fifo: None,
                    console: None,
                },
                exe,
            )
        }
    };
    if rootfs.is_some() {
        crate::stages::rootfs::check_overlay_path(&cfg.state_dir).map_err(Error::Usage)?;
        if let Some(r) = &rootfs {
            crate::stages::rootfs::check_overlay_path(r).map_err(Error::Usage)?;
        }
    }
    let userns = userns(cfg, rootfs.as_deref())?;
    if let (Some(u), Some(ids)) = (&userns, &exec.user) {
        check_user_mapped(u, ids)?;
    }
    Ok(Prepared {
        spec: ChildSpec {
            hostname,
            rootfs,
            root_switch: plan.root_switch,
            root_propagation: plan.root_propagation,
            overlay: None,
            volumes: Vec::new(),
            read_only: cfg.read_only,
            confine: crate::confine::Confinement {
                user_switch: exec.user.is_some(),
                oci_sets: cfg.oci.as_ref().and_then(|o| o.caps),
                ..confinement(cfg)?
            },
            userns,
            net: crate::stages::NetSetup::Loopback,
            etc_files: Vec::new(),
            tmpfs: cfg.extras.tmpfs.clone(),
            sysctl: cfg
                .oci
                .as_ref()
                .map(|o| o.sysctl.clone())
                .unwrap_or_default(),
            cgroup_mount: match &cfg.oci {
                Some(o) if o.cgroup_mount && plan.is_on(StageId::Cgroup) => {
                    Some(o.cgroups_path.clone().unwrap_or_else(|| {
                        (
                            crate::state::dir::cgroup_parent(&cfg.state_dir),
                            id.to_string(),
                        )
                    }))
                }
                _ => None,
            },
            join: cfg
                .oci
                .as_ref()
                .map(|o| o.joins.clone())
                .unwrap_or_default(),
            mqueue: cfg.oci.as_ref().is_some_and(|o| o.mqueue),
        },
        exec,
        _exe: exe,
        image,
        ulimits: cfg.extras.ulimits.clone(),
    })
}

/// What the confinement stages enforce, decided (and the seccomp profile compiled) before
/// anything on the host changes, so that a bad profile changes nothing.
fn confinement(cfg: &RunConfig) -> Result<crate::confine::Confinement> {
    let plan = &cfg.plan;
    let mut c = crate::confine::Confinement::docker_default();
    c.caps = cfg.security.caps;
    if let Some(m) = &cfg.security.masked_paths {
        c.masked_paths = m.clone();
    }
    if let Some(r) = &cfg.security.readonly_paths {
        c.readonly_paths = r.clone();
    }
    c.no_new_privs = plan.is_on(StageId::Nnp);
    c.devices.extra = cfg.security.devices.clone();
    // An OCI config's /sys/fs/cgroup is the proc stage's (binds of the container's own
    // directories, right with or without a cgroup namespace); the paths stage leaves it.
    let oci_cgroup = cfg.oci.as_ref().is_some_and(|o| o.cgroup_mount);
    if plan.is_on(StageId::Paths) && !oci_cgroup {
        let host = crate::kernel::mountinfo::read_self().map_err(|e| {
            Error::io(
                "read /proc/self/mountinfo to find the cgroup filesystems",
                e,
            )
        })?;
        c.cgroup_mounts = crate::confine::paths::cgroup_mounts(&host);
    }
    if plan.is_on(StageId::Seccomp) {
        // The profile's capability conditions follow the capabilities the workload really
        // has: every one when the caps stage is off.
        let held = if plan.is_on(StageId::Caps) {
            c.caps
        } else {
            crate::confine::caps::ALL
        };
        c.seccomp = Some(std::sync::Arc::new(crate::confine::seccomp::compile(
            cfg.security.seccomp_profile.as_deref(),
            held,
        )?));
    }
    Ok(c)
}

/// An executable named `name` in PATH (newuidmap, newgidmap).
fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The user stage's maps and how they get written, decided before the host changes: a bad
/// or forbidden map is one sentence here.
fn userns(
    cfg: &RunConfig,
    rootfs: Option<&std::path::Path>,
) -> Result<Option<crate::stages::UserNs>> {
    use super::config::UsernsRequest;
    use crate::kernel::idmap::{self, IdMap};
    use crate::stages::{MapWriter, UserNs};
    if !cfg.plan.is_on(StageId::User) {
        return Ok(None);
    }
    if rootfs.is_some() {
        // overlayfs may be mounted inside a user namespace from Linux 5.11 on.
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut v = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        if (major, minor) < (5, 11) {
            return Err(Error::usage(format!(
                "this kernel ({release}) cannot mount overlayfs inside a user namespace (Linux 5.11 can); run without the user stage (as root: drop --userns), or without the rootfs stage"
            )));
        }
    }
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        // Root may map anything, and may idmap mounts: the state directory (layers, the
        // writable layer, volumes) and a --rootfs outside it.
        // An OCI bundle's rootfs is bound as it is, not idmapped: as with runc, the engine
        // makes its files owned by the ids the config maps.
        let mut idmapped = Vec::new();
        if let Some(r) = rootfs.filter(|_| cfg.oci.is_none()) {
            if !(cfg.plan.is_on(StageId::Pivot)
                && cfg.plan.root_switch == crate::stages::RootSwitch::Pivot)
            {
                return Err(Error::usage(
                    "with the user stage, the rootfs stage shows stagebox's state directory to the container's root through an idmapped mount, and only pivot_root takes that view away again; switch the pivot stage on with --root-switch pivot, or drop the user stage",
                ));
            }
            idmapped.push(cfg.state_dir.clone());
            if !r.starts_with(&cfg.state_dir) {
                idmapped.push(r.to_path_buf());
            }
        }
        let (auto, uid_map, gid_map) = match &cfg.security.userns {
            UsernsRequest::Maps { uid, gid } => (false, uid.clone(), gid.clone()),
            _ => (true, Vec::new(), Vec::new()),
        };
        return Ok(Some(UserNs {
            auto,
            uid_map,
            gid_map,
            writer: MapWriter::Root,
            idmapped,
        }));
    }
    let uid = euid.as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let name = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (subuid, subgid) = (read("/etc/subuid"), read("/etc/subgid"));
    let sub_u = idmap::ranges_of(&subuid, name.as_deref(), uid);
    let sub_g = idmap::ranges_of(&subgid, name.as_deref(), uid);
    let helpers = match (in_path("newuidmap"), in_path("newgidmap")) {
        (Some(u), Some(g)) => Some(MapWriter::Helpers {
            newuidmap: u,
            newgidmap: g,
        }),
        _ => None,
    };
    let own = |id: u32| {
        vec![IdMap {
            inside: 0,
            outside: id,
            count: 1,
        }]
    };
    let (uid_map, gid_map, writer) = match &cfg.security.userns {
        UsernsRequest::Maps { uid: um, gid: gm } => {
            for (map, own_id, ranges, file, flag) in [
                (um, uid, &sub_u, "/etc/subuid", "--uidmap"),
                (gm, gid, &sub_g, "/etc/subgid", "--gidmap"),
            ] {
                if !idmap::within(map, own_id, ranges) {
                    return Err(Error::usage(format!(
                        "{flag} maps host ids outside your own id {own_id} and your ranges in {file}{}; as an ordinary user you may map only those (root may map any)",
                        if ranges.is_empty() { " (you have none)".to_string() } else {
                            format!(" ({})", ranges.iter().map(|r| format!("{}..{}", r.start, r.start as u64 + r.count as u64 - 1)).collect::<Vec<_>>().join(", "))
                        }
                    )));
                }
            }
            let single = *um == own(uid) && *gm == own(gid);
            let writer = if single {
                MapWriter::Unprivileged
            } else {
                helpers.clone().ok_or_else(|| {
                    Error::usage(
                        "these maps need newuidmap and newgidmap (Debian's uidmap package), which are not installed; install them, or map only your own id with --uidmap 0:UID:1",
                    )
                })?
            };
            (um.clone(), gm.clone(), writer)
        }
        _ => match (&helpers, sub_u.first(), sub_g.first()) {
            // podman's rootless map: your own id is root, your subordinate range follows.
            (Some(h), Some(ru), Some(rg)) => {
                let wide = |id: u32, r: &idmap::SubIdRange| {
                    vec![
                        IdMap {
                            inside: 0,
                            outside: id,
                            count: 1,
                        },
                        IdMap {
                            inside: 1,
                            outside: r.start,
                            count: r.count.min(65536),
                        },
                    ]
                };
                (wide(uid, ru), wide(gid, rg), h.clone())
            }
            _ => (own(uid), own(gid), MapWriter::Unprivileged),
        },
    };
    Ok(Some(UserNs {
        auto: false,
        uid_map,
        gid_map,
        writer,
        idmapped: Vec::new(),
    }))
}

/// The workload's user (`--user` or the image's `User`) must have ids the user namespace
/// maps: an unmapped id makes setgid/setuid fail with EINVAL only at exec, after the host
/// was set up.
fn check_user_mapped(u: &crate::stages::UserNs, ids: &crate::image::user::Ids) -> Result<()> {
    use crate::kernel::idmap::{self, IdMap};
    // `--userns=auto` maps 0..65535, whichever slice it gets.
    let auto = [IdMap {
        inside: 0,
        outside: 0,
        count: crate::state::subids::SLICE,
    }];
    let (uid_map, gid_map) = if u.auto {
        (&auto[..], &auto[..])
    } else {
        (&u.uid_map[..], &u.gid_map[..])
    };
    let inside = |map: &[IdMap]| {
        map.iter()
            .map(|m| format!("{}..{}", m.inside, m.inside as u64 + m.count as u64 - 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unmapped_gid = std::iter::once(ids.gid)
        .chain(ids.groups.iter().copied())
        .find(|g| idmap::to_outside(gid_map, *g).is_none());
    if idmap::to_outside(uid_map, ids.uid).is_none() || unmapped_gid.is_some() {
        return Err(Error::usage(format!(
            "the workload's user {}:{}{} is not mapped in the container's user namespace, which has uids {} and gids {}; pick a user within them (--user), or map its ids with --uidmap/--gidmap",
            ids.uid,
            ids.gid,
            match unmapped_gid {
                Some(g) if g != ids.gid => format!(" (group {g})"),
                _ => String::new(),
            },
            inside(uid_map),
            inside(gid_map)
        )));
    }
    Ok(())
}

/// Flags that cannot work with the plan, or with each other.
fn check_flags(cfg: &RunConfig) -> Result<()> {
    let plan = &cfg.plan;
    if !plan.is_on(StageId::Cgroup) && !cfg.limits.is_empty() {
        return Err(Error::usage(
            "resource limits were given but the cgroup stage is off, and only a cgroup can enforce them; switch the cgroup stage on or drop the limits",
        ));
    }
    if let Some(h) = &cfg.hostname {
        check_hostname(h)?;
    }
    if let Some(n) = &cfg.name {
        crate::state::container::check_name(n)?;
        if !cfg.lifecycle.reuse {
            // A quick look before anything is made; `state::container::create` decides
            // under the names lock (`start` and restarts keep their own name).
            crate::state::container::check_name_free(&cfg.state_dir, n)?;
        }
    }
    if !cfg.extras.tmpfs.is_empty() && !plan.is_on(StageId::Volumes) {
        return Err(Error::usage(
            "--tmpfs (or --mount type=tmpfs) was given but the volumes stage, which mounts it, is off; switch it on or drop the tmpfs",
        ));
    }
    if !cfg.volumes.is_empty() && !plan.is_on(StageId::Volumes) {
        return Err(Error::usage(
            "-v was given but the volumes stage is off; switch it on or drop -v",
        ));
    }
    if cfg.read_only && !plan.is_on(StageId::Pivot) {
        return Err(Error::usage(
            "--read-only remounts the container's root, which needs the pivot stage; switch it on or drop --read-only",
        ));
    }
    Ok(())
}

/// The lowest layer of the container's root: the image's, `--rootfs DIR`, or the default
/// rootfs (made on first use); None without the rootfs stage.
fn choose_rootfs(
    cfg: &RunConfig,
    image: &Option<crate::image::run::Resolved>,
) -> Result<Option<PathBuf>> {
    let plan = &cfg.plan;
    Ok(if plan.is_on(StageId::Rootfs) {
        Some(match &cfg.rootfs {
            _ if image.is_some() => image
                .iter()
                .flat_map(|i| i.lower.first())
                .cloned()
                .next()
                .unwrap_or_default(),
            Some(dir) => {
                let canon = std::fs::canonicalize(dir).map_err(|_| {
                    Error::usage(format!(
                        "--rootfs {} does not exist; give a directory that holds a root filesystem (bin/, etc/ ...)",
                        dir.display()
                    ))
                })?;
                if !canon.is_dir() {
                    return Err(Error::usage(format!(
                        "--rootfs {} is not a directory; give a directory that holds a root filesystem",
                        dir.display()
                    )));
                }
                if canon == std::path::Path::new("/") {
                    return Err(Error::usage(
                        "--rootfs / is the host's own root; give a separate directory",
                    ));
                }
                canon
            }
            None => rootfs::default::ensure(&cfg.state_dir, cfg.default_source)?.path,
        })
    } else {
        if cfg.rootfs.is_some() {
            return Err(Error::usage(
                "--rootfs was given but the rootfs stage is off; switch the rootfs stage on or drop --rootfs",
            ));
        }
        None
    })
}

/// The workload's environment, as Docker sets it: PATH, HOSTNAME, HOME (the user's),
/// `container`, TERM, then the image's ENV, then `--env`. Returns it with the hostname.
fn environment(
    cfg: &RunConfig,
    id: &str,
    image: &Option<crate::image::run::Resolved>,
    user: &Option<crate::image::user::Ids>,
) -> Result<(Vec<String>, String)> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    let hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(|| format!("stagebox-{}", &id[..6]));
    env.push(format!("HOSTNAME={hostname}"));
    env.push("HOME=/root".into());
    env.push("container=stagebox".into());
    if let Ok(term) = std::env::var("TERM") {
        env.push(format!("TERM={term}"));
    }
    if let Some(home) = user.as_ref().and_then(|u| u.home.clone()) {
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={home}"));
    }
    for kv in image.iter().flat_map(|i| i.env.iter()).chain(&cfg.env) {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(Error::usage(format!(
                "--env {kv:?} is not KEY=VALUE; write it as NAME=value"
            )));
        }
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    Ok((env, hostname))
}

/// `--workdir`, else the image's WORKDIR; checked to be a directory in the rootfs (with an
/// image, a missing one is made, as Docker does).
fn working_dir(
    cfg: &RunConfig,
    image: &Option<crate::image::run::Resolved>,
    lookup: &[PathBuf],
) -> Result<Option<String>> {
    let workdir = cfg
        .workdir
        .clone()
        .or_else(|| image.as_ref().and_then(|i| i.workdir.clone()));
    if let Some(w) = &workdir {
        if !w.starts_with('/') {
            return Err(Error::usage(format!(
                "--workdir {w:?} must be an absolute path inside the container"
            )));
        }
        let host = rootfs::resolve_in_layers(&lookup, std::path::Path::new(w));
        // With an image, a missing working directory is made, as Docker does.
        let ok = match &host {
            Ok(h) => h.is_dir() || (image.is_some() && !h.exists()),
            Err(_) => image.is_some(),
        };
        if !ok {
            return Err(Error::usage(format!(
                "--workdir {w} is not a directory in the container's root filesystem"
            )));
        }
    }
    Ok(workdir)
}
