//! The host side of one run: the container's record and directories, its volumes, and the
//! stages' host-side hooks (a cgroup is made, written and removed here), each traced, each
//! change to the host on the undo list.

use super::config::RunConfig;
use super::prepare::Prepared;
use crate::error::{Error, Result};
use crate::stages::{self, registry, HostCtx, StageId, Undo};
use crate::state::container::Container;
use crate::trace::{self, TraceMode};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// The container's record and directory, registered for removal unless the workload starts
/// (and `--rm` was not given).
pub fn create_container(
    cfg: &RunConfig,
    id: &str,
    prepared: &Prepared,
    undo: &mut Undo,
    started: &Rc<Cell<bool>>,
) -> Result<Container> {
    let image = match (&cfg.rootfs, &prepared.spec.rootfs) {
        _ if prepared.image.is_some() => {
            prepared.image.iter().map(|i| i.reference.clone()).collect()
        }
        (Some(dir), _) => dir.display().to_string(),
        (None, Some(r)) => format!(
            "default ({})",
            r.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        (None, None) => "(host filesystem)".into(),
    };
    let command = match &cfg.probe {
        Some(args) => std::iter::once("stagebox probe".to_string())
            .chain(args.iter().cloned())
            .collect(),
        None => prepared.exec.argv.clone(),
    };
    let lc = &cfg.lifecycle;
    let lifecycle = crate::state::lifecycle::LifecycleRecord {
        detached: lc.detach,
        tty: lc.tty,
        interactive: lc.interactive,
        run_args: lc.run_args.clone(),
        stop_signal: lc
            .stop_signal
            .clone()
            .or_else(|| prepared.image.as_ref().and_then(|i| i.stop_signal.clone())),
        stop_timeout: lc.stop_timeout,
        restart: lc.restart_text.clone(),
        restart_count: 0,
    };
    if lc.reuse {
        return reuse_container(cfg, id, lifecycle);
    }
    let mut c = Container {
        id: id.to_string(),
        name: cfg
            .name
            .clone()
            .unwrap_or_else(|| format!("box-{}", &id[..6])),
        image,
        command,
        created: crate::units::now_secs(),
        status: "created".into(),
        exit_code: None,
        runtime_pid: None,
        pid: None,
        volumes: Vec::new(),
        lower: match &prepared.image {
            Some(i) => i.lower.clone(),
            None => prepared.spec.rootfs.iter().cloned().collect(),
        },
        remove_on_exit: cfg.remove,
        image_id: prepared.image.as_ref().and_then(|i| i.image_id.clone()),
        network: None,
        ip: None,
        ports: Vec::new(),
        exec: exec_record(cfg, prepared),
        paused: false,
        runtime_start: None,
        pid_start: None,
        lifecycle,
        oci: cfg
            .oci
            .as_ref()
            .map(|o| crate::state::container::OciRecord {
                bundle: o.bundle.clone(),
                annotations: o.annotations.clone(),
                cgroup: o.cgroups_path.clone(),
                hooks: o.hooks.clone(),
                created: crate::units::rfc3339(crate::units::now_secs()),
            }),
    };
    // This process owns the record from its first save: if it is killed, the record says
    // "dead" rather than "created".
    c.set_runtime(std::process::id() as i32);
    let dir = c.dir(&cfg.state_dir);
    // The directory and a first record, the name reserved under the names lock.
    crate::state::container::create(&cfg.state_dir, &c)?;
    let (started, remove) = (started.clone(), cfg.remove);
    undo.push(format!("remove container {}", dir.display()), move || {
        if started.get() && !remove {
            return Ok(());
        }
        crate::state::dir::remove_tree(&dir).map_err(|e| e.to_string())
    });
    Ok(c)
}

/// What `stagebox exec` repeats: the workload's environment, directory, user and profile.
fn exec_record(cfg: &RunConfig, prepared: &Prepared) -> crate::state::container::ExecRecord {
    let e = &prepared.exec;
    let seccomp = cfg
        .plan
        .is_on(StageId::Seccomp)
        .then(|| match &cfg.security.seccomp_profile {
            Some(p) => std::path::absolute(p)
                .unwrap_or(p.clone())
                .display()
                .to_string(),
            None => "default".to_string(),
        });
    crate::state::container::ExecRecord {
        env: e.env.clone(),
        workdir: e.workdir.clone(),
        uid: e.user.as_ref().map(|u| u.uid),
        gid: e.user.as_ref().map(|u| u.gid),
        groups: e
            .user
            .as_ref()
            .map(|u| u.groups.clone())
            .unwrap_or_default(),
        seccomp,
    }
}

/// `start` or a restart: the kept record and directory (its writable layer with them) run
/// again; nothing is removed if this run fails. The restart count carries over.
fn reuse_container(
    cfg: &RunConfig,
    id: &str,
    mut lifecycle: crate::state::lifecycle::LifecycleRecord,
) -> Result<Container> {
    let dir = crate::state::container::containers_dir(&cfg.state_dir).join(id);
    let mut c = Container::load(&dir)?;
    c.status = "created".into();
    c.exit_code = None;
    c.pid = None;
    c.volumes.clear();
    c.ports.clear();
    c.network = None;
    c.ip = None;
    lifecycle.restart_count = c.lifecycle.restart_count;
    c.lifecycle = lifecycle;
    c.set_runtime(std::process::id() as i32);
    c.set_workload(None);
    Ok(c)
}

/// Makes the named and anonymous volumes `-v` asks for; those made now are removed again
/// unless the workload starts (anonymous ones also then, with `--rm`).
pub fn attach_volumes(
    cfg: &RunConfig,
    id: &str,
    prepared: &mut Prepared,
    container: &mut Container,
    undo: &mut Undo,
    started: &Rc<Cell<bool>>,
) -> Result<()> {
    let (mounts, created) = crate::state::volume::materialize(&cfg.state_dir, &cfg.volumes, id)?;
    for name in created {
        let anonymous = mounts
            .iter()
            .any(|m| m.kind == "anonymous" && m.name.as_deref() == Some(name.as_str()));
        let (state, started, remove) = (cfg.state_dir.clone(), started.clone(), cfg.remove);
        undo.push(format!("remove volume {name}"), move || {
            let keep = started.get() && !(anonymous && remove);
            if keep {
                return Ok(());
            }
            crate::state::volume::remove(&state, &name, true).map_err(|e| e.to_string())
        });
    }
    prepared.spec.volumes = mounts.clone();
    container.volumes = mounts;
    Ok(())
}

/// The overlay's upper, work and merged directories under the container's state directory
/// (removed with it); the rootfs stage mounts them.
pub fn make_overlay_dirs(
    cfg: &RunConfig,
    prepared: &mut Prepared,
    container: &Container,
) -> Result<()> {
    if prepared.spec.rootfs.is_none() {
        return Ok(());
    }
    let ov = crate::stages::OverlaySpec {
        lower: container.lower.clone(),
        upper: container.upper(&cfg.state_dir),
        work: container.work(&cfg.state_dir),
        merged: container.merged(&cfg.state_dir),
    };
    for d in [&ov.upper, &ov.work, &ov.merged] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
    }
    prepared.spec.overlay = Some(ov);
    Ok(())
}

/// Host-side state of one run: the undo list and what stages keep between their hooks.
pub struct HostState<'a> {
    cfg: &'a RunConfig,
    id: &'a str,
    /// The cgroup parent of the state directory (`stagebox`, or `stagebox-<hash>`).
    cgroup_parent: String,
    /// The container's own cgroup directory's name (its id, or `linux.cgroupsPath`'s last
    /// part).
    cgroup_leaf: String,
    pub undo: Undo,
    data: HashMap<StageId, Box<dyn std::any::Any>>,
    /// Stages whose header line is printed already.
    pub headed: HashSet<StageId>,
    pub tracing: bool,
    /// The user namespace the run asks for (from `Prepared`).
    userns: Option<crate::stages::UserNs>,
    /// What the net stage connects the container to (set once the network is attached).
    pub net: crate::stages::NetSetup,
    /// Descriptors a hook handed over for the container process (sent with the go-ahead).
    pub pending_fds: Vec<std::os::fd::OwnedFd>,
}

impl<'a> HostState<'a> {
    pub fn new(cfg: &'a RunConfig, id: &'a str, userns: Option<crate::stages::UserNs>) -> Self {
        HostState {
            cfg,
            id,
            cgroup_parent: match cfg.oci.as_ref().and_then(|o| o.cgroups_path.as_ref()) {
                Some((parent, _)) => parent.clone(),
                None => crate::state::dir::cgroup_parent(&cfg.state_dir),
            },
            cgroup_leaf: match cfg.oci.as_ref().and_then(|o| o.cgroups_path.as_ref()) {
                Some((_, leaf)) => leaf.clone(),
                None => id.to_string(),
            },
            undo: Undo::default(),
            data: HashMap::new(),
            headed: HashSet::new(),
            tracing: cfg.trace != TraceMode::Off,
            userns,
            net: crate::stages::NetSetup::Loopback,
            pending_fds: Vec::new(),
        }
    }

    /// Stops the published ports' proxy (the net stage started it), freeing the host ports.
    pub fn stop_proxy(&mut self) {
        if let Some(d) = self
            .data
            .get_mut(&StageId::Net)
            .and_then(|d| d.downcast_mut::<crate::stages::NetHostData>())
        {
            if let Some(p) = d.proxy.take() {
                p.stop();
            }
        }
    }

    pub fn header(&mut self, id: StageId) {
        if self.tracing && self.headed.insert(id) {
            if let Some(s) = registry::get(id) {
                trace::stage(id.name(), s.info().summary);
            }
        }
    }

    /// Runs one host-side hook of a stage and traces what it did.
    pub fn hook<T>(
        &mut self,
        id: StageId,
        f: impl FnOnce(&dyn stages::Stage, &mut HostCtx<'_>) -> Result<T>,
    ) -> Result<T> {
        let Some(stage) = registry::get(id) else {
            return Err(Error::Stage {
                stage: id.name().into(),
                message: "this stage is not available in this build".into(),
            });
        };
        let mut ctx = HostCtx {
            limits: &self.cfg.limits,
            cgroup_parent: &self.cgroup_parent,
            cgroup_leaf: &self.cgroup_leaf,
            id: self.id,
            devices: &self.cfg.security.devices,
            undo: &mut self.undo,
            data: &mut self.data,
            records: Vec::new(),
            notes: Vec::new(),
            facts: Vec::new(),
            userns: self.userns.as_ref(),
            net: &self.net,
            fds: Vec::new(),
        };
        let r = f(stage, &mut ctx);
        let (records, notes, facts) = (ctx.records, ctx.notes, ctx.facts);
        self.pending_fds.extend(ctx.fds);
        if self.tracing {
            if !records.is_empty() || !notes.is_empty() || !facts.is_empty() {
                self.header(id);
            }
            for rec in &records {
                trace::syscall(id.name(), rec);
            }
            for n in &notes {
                trace::note(id.name(), n);
            }
            trace::facts(id.name(), &facts);
        }
        r.map_err(|e| match e {
            Error::Stage { .. } | Error::Usage(_) | Error::Plan(_) | Error::NotRoot { .. } => e,
            other => Error::Stage {
                stage: id.name().into(),
                message: other.to_string(),
            },
        })
    }
}

/// `--network`: the network's bridge (made on first use, with its firewall rules), an address
/// leased for as long as the run lives, or the other container whose namespace is joined;
/// then the /etc files (hostname, hosts, resolv.conf) the rootfs stage mounts. Traced under
/// the net stage. Peers already running on the network get a line for this container in
/// their /etc/hosts.
pub fn attach_network(
    cfg: &RunConfig,
    prepared: &mut Prepared,
    container: &mut Container,
    host: &mut HostState<'_>,
) -> Result<()> {
    use crate::network::{bridge, ipam};
    use crate::stages::NetSetup;
    let net_on = cfg.plan.enabled().contains(&StageId::Net);
    let root = nix::unistd::geteuid().is_root();
    let state = &cfg.state_dir;
    let id = host.id.to_string();
    let mut peers: Vec<(std::net::Ipv4Addr, String, std::path::PathBuf)> = Vec::new();
    let setup = match &cfg.network {
        crate::runtime::config::NetworkRequest::Container(other) => {
            let c = crate::state::container::find(state, other)?;
            match (c.is_running(), c.pid) {
                (true, Some(pid)) => NetSetup::Join {
                    name: c.name.clone(),
                    pid,
                },
                _ => {
                    return Err(Error::usage(format!(
                        "container {} is not running; --network container:{other} joins a running container's network",
                        c.name
                    )))
                }
            }
        }
        crate::runtime::config::NetworkRequest::Network(n) if !root => {
            return Err(Error::usage(format!(
                "--network {n} needs root: its veth and bridge are made on the host; an ordinary user gets --network none, and -p still publishes ports through the proxy"
            )))
        }
        req => match req.network_name(root) {
            Some(name) if net_on => {
                let name = name.to_string();
                let home = bridge::home(state, &name);
                let net = bridge::load_or_default(state, &name)?;
                // Traced when the net stage reaches the runtime (its `parent_after`), so the
                // lines stand under the stage, after the namespace is made.
                let ensured = bridge::ensure(&net)?;
                if let Some(why) = ensured.unsupported {
                    if *req != crate::runtime::config::NetworkRequest::Default {
                        return Err(Error::usage(why));
                    }
                    // Docker's default, where the kernel cannot do it: the namespace alone.
                    host_note(host, format!("{why}; this run falls back to --network none"));
                    return finish_network(cfg, prepared, container, host, NetSetup::Loopback, Vec::new());
                }
                let lease = ipam::allocate(&home, &name, &id)?;
                let mut notes = ensured.notes;
                notes.push(format!(
                    "address {} of network {name:?} ({}) leased: a flock on {}, held while the container lives",
                    lease.cidr(),
                    net.subnet,
                    ipam::leases_dir(&home, &name).join(lease.ip.to_string()).display()
                ));
                let data = host
                    .data
                    .entry(StageId::Net)
                    .or_insert_with(|| Box::new(crate::stages::NetHostData::default()));
                if let Some(d) = data.downcast_mut::<crate::stages::NetHostData>() {
                    d.records.extend(ensured.records);
                    d.notes.extend(notes);
                }
                for u in ipam::in_use(&home, &name) {
                    if u.holder == id {
                        continue;
                    }
                    if let Ok(p) = crate::state::container::find(state, &u.holder) {
                        let file = p.dir(state).join("hosts");
                        peers.push((u.ip, p.name, file));
                    }
                }
                let setup = NetSetup::Veth {
                    network: name.clone(),
                    bridge: lease.bridge.clone(),
                    host_end: format!("veth{}", &id[..7]),
                    ip: lease.ip,
                    prefix: lease.prefix,
                    gateway: lease.gateway,
                };
                host.undo.push(format!("give back address {}", lease.cidr()), move || {
                    lease.release().map_err(|e| e.to_string())
                });
                setup
            }
            _ => NetSetup::Loopback,
        },
    };
    finish_network(cfg, prepared, container, host, setup, peers)
}

/// A note for the net stage's trace, printed when the stage reaches the runtime.
fn host_note(host: &mut HostState<'_>, note: String) {
    let data = host
        .data
        .entry(StageId::Net)
        .or_insert_with(|| Box::new(crate::stages::NetHostData::default()));
    if let Some(d) = data.downcast_mut::<crate::stages::NetHostData>() {
        d.notes.push(note);
    }
}

/// The /etc files and the record, once the network is decided.
fn finish_network(
    cfg: &RunConfig,
    prepared: &mut Prepared,
    container: &mut Container,
    host: &mut HostState<'_>,
    setup: crate::stages::NetSetup,
    peers: Vec<(std::net::Ipv4Addr, String, std::path::PathBuf)>,
) -> Result<()> {
    use crate::network::etc;
    use crate::stages::NetSetup;
    let state = &cfg.state_dir;
    let net_on = cfg.plan.enabled().contains(&StageId::Net);
    if prepared.spec.overlay.is_some() {
        let ip = match &setup {
            NetSetup::Veth { ip, .. } => Some(*ip),
            _ => None,
        };
        let host_net = !net_on && !matches!(setup, NetSetup::Join { .. });
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            let list: Vec<_> = peers.iter().map(|(ip, n, _)| (*ip, n.clone())).collect();
            etc::hosts(&prepared.spec.hostname, &container.name, ip, &list)
        };
        let resolv = etc::resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            host_net,
        );
        let files = etc::write_all(
            &container.dir(state),
            &prepared.spec.hostname,
            &hosts,
            &resolv,
        )?;
        prepared.spec.etc_files = files
            .into_iter()
            .map(|(inside, file)| crate::state::container::VolumeMount {
                kind: "init".into(),
                source: file,
                name: None,
                target: inside,
                read_only: false,
            })
            .collect();
        if let Some(ip) = ip {
            for (_, _, file) in &peers {
                let _ = etc::add_peer(file, ip, &container.name);
            }
        }
    }
    if let NetSetup::Veth { network, ip, .. } = &setup {
        container.network = Some(network.clone());
        container.ip = Some(*ip);
    }
    host.net = setup.clone();
    prepared.spec.net = setup;
    Ok(())
}

/// `-p` and `-P`: every host port bound now, before the container exists, so a port in use
/// is one sentence and nothing else changed. The listeners wait in the net stage's data for
/// its `parent_after`, which starts the proxy once the namespace is there.
pub fn bind_ports(
    cfg: &RunConfig,
    prepared: &Prepared,
    container: &mut Container,
    host: &mut HostState<'_>,
) -> Result<()> {
    use crate::network::{ports, proxy};
    let mut specs = cfg.publish.clone();
    if cfg.publish_all {
        let exposed = prepared
            .image
            .as_ref()
            .map(|i| i.exposed.clone())
            .unwrap_or_default();
        specs.extend(ports::from_expose(&exposed).map_err(Error::Usage)?);
        ports::check_duplicates(&specs).map_err(Error::Usage)?;
    }
    if specs.is_empty() {
        return Ok(());
    }
    if !cfg.plan.enabled().contains(&StageId::Net) {
        return Err(Error::usage(
            "-p and -P need the net stage (a network namespace to publish from); drop --without net",
        ));
    }
    let listeners = proxy::Listeners::bind(&specs).map_err(|e| Error::Usage(e.to_string()))?;
    container.ports = listeners.published().into_iter().map(Into::into).collect();
    host.data.insert(
        StageId::Net,
        Box::new(crate::stages::NetHostData {
            listeners: Some(listeners),
            ..Default::default()
        }),
    );
    Ok(())
}
