//! The command line, as clap sees it. It lives in the library so that the book can render
//! the CLI reference from the same definition (`Cli::command()`); `main.rs` parses it and
//! calls into the library.
//!
//! `tables.rs` renders what people read in a terminal: the stage list, a plan, `ps`, `images`
//! and `history`. `oci.rs` is runc's command line (what engines call) and the rule that picks
//! it over this one.
//!
//! May import: everything from `inspect` down. Only `learn` (the book renders the CLI
//! reference) and `main.rs` import it.

pub mod oci;
pub mod tables;

use crate::rootfs::default::RootfsSource;
use crate::stages::plan::{Plan, Toggles};
use crate::stages::RootSwitch;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "stagebox",
    version,
    about = "Build a Linux container one stage at a time, and watch what the kernel sees change",
    long_about = None
)]
pub struct Cli {
    /// State directory (default rootfs, later images and containers).
    #[arg(long, global = true, env = "STAGEBOX_STATE", value_name = "DIR")]
    pub state: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Clone)]
pub struct StageToggles {
    /// Switch these stages off (comma-separated).
    #[arg(long, value_name = "STAGES", value_delimiter = ',')]
    pub without: Vec<String>,
    /// Run only these stages (comma-separated); the order is always the pipeline's.
    #[arg(long, value_name = "STAGES", value_delimiter = ',', num_args = 0..=1, default_missing_value = "")]
    pub only: Option<Vec<String>>,
    /// How the pivot stage switches the root: pivot (pivot_root) or chroot.
    #[arg(long, value_name = "MODE", default_value = "pivot")]
    pub root_switch: String,
    /// What the mount stage makes of mount propagation: private (nothing crosses), slave
    /// (host mounts come in, none go out) or shared (a workload's mounts reach the host).
    #[arg(long, value_name = "MODE", default_value = "private")]
    pub root_propagation: String,
}

impl StageToggles {
    pub fn plan(&self, volumes_given: bool) -> crate::Result<Plan> {
        self.plan_confined(volumes_given, Default::default())
    }

    /// The plan, with what `--privileged` and `--security-opt` say about confinement.
    pub fn plan_confined(
        &self,
        volumes_given: bool,
        confine: crate::stages::plan::ConfineToggles,
    ) -> crate::Result<Plan> {
        let rs: RootSwitch = self.root_switch.parse()?;
        let propagation: crate::stages::Propagation = self.root_propagation.parse()?;
        Plan::resolve(
            &Toggles {
                only: self.only.clone(),
                without: self.without.clone(),
                volumes_given,
                confine,
            },
            rs,
        )?
        .with_propagation(propagation)
    }
}

/// Resource limits, as `docker run` names them (the cgroup stage sets them).
#[derive(Args, Clone)]
pub struct LimitArgs {
    /// Memory limit, e.g. 64m (units b, k, m, g; at least 6m). The OOM killer acts above it.
    #[arg(short = 'm', long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap limit (needs --memory; -1: unlimited swap). Default: twice --memory.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// How many CPUs' worth of time, e.g. 0.5 (a CFS quota per 100 ms period).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Relative CPU weight, cgroup v1 style (2 to 262144; default 1024).
    #[arg(long, value_name = "SHARES", allow_hyphen_values = true)]
    pub cpu_shares: Option<String>,
    /// Relative CPU weight, cgroup v2 style (1 to 10000; default 100).
    #[arg(long, value_name = "WEIGHT", allow_hyphen_values = true)]
    pub cpu_weight: Option<String>,
    /// Most processes the container may have (-1: no limit). A fork bomb stops here.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// CPUs the container may run on, e.g. 0-1,3.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    pub cpuset_cpus: Option<String>,
}

impl LimitArgs {
    pub fn parse(self) -> crate::Result<crate::cgroup::Limits> {
        crate::cgroup::Limits::from_flags(&crate::cgroup::LimitFlags {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpu_weight: self.cpu_weight,
            pids_limit: self.pids_limit,
            cpuset_cpus: self.cpuset_cpus,
        })
    }
}

/// Confinement, as `docker run` names it (the devices, paths, nnp, caps and seccomp stages).
#[derive(Args, Clone, Default)]
pub struct SecurityArgs {
    /// Add a capability to Docker's default 14 (NET_ADMIN or CAP_NET_ADMIN; ALL for every one).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (ALL for every one).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Switch the devices, paths, caps and seccomp stages off, as Docker's flag does.
    #[arg(long)]
    pub privileged: bool,
    /// no-new-privileges[:true|false], seccomp=unconfined or seccomp=PROFILE.json (Docker's format).
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER][:PERMISSIONS], permissions from rwm.
    #[arg(long, value_name = "DEVICE")]
    pub device: Vec<String>,
    /// Pass this many descriptors above 2 (3 .. 3+N-1) to the workload; every other one is closed.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub preserve_fds: u32,
    /// The user stage: auto (a range of 65536 host ids of its own, from the `stagebox` entry
    /// of /etc/subuid) or host (no user namespace; Docker's default as root).
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// Map container uids to host uids: CONTAINER:HOST:SIZE (repeatable); switches the user
    /// stage on.
    #[arg(long, value_name = "CONTAINER:HOST:SIZE")]
    pub uidmap: Vec<String>,
    /// Map container gids to host gids: CONTAINER:HOST:SIZE (default: the same as --uidmap).
    #[arg(long, value_name = "CONTAINER:HOST:SIZE")]
    pub gidmap: Vec<String>,
}

impl SecurityArgs {
    /// Every flag checked: the plan's confinement toggles and what the stages enforce.
    pub fn parse(
        &self,
    ) -> crate::Result<(
        crate::stages::plan::ConfineToggles,
        crate::runtime::config::Security,
    )> {
        let caps = crate::confine::caps::tweak(&self.cap_add, &self.cap_drop)?;
        let mut toggles = crate::stages::plan::ConfineToggles {
            privileged: self.privileged,
            ..Default::default()
        };
        let mut seccomp_profile = None;
        for opt in &self.security_opt {
            let (key, value) = match opt.split_once(['=', ':']) {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("no-new-privileges", None | Some("true")) => toggles.no_new_privileges = true,
                ("no-new-privileges", Some("false")) => toggles.no_new_privileges = false,
                ("seccomp", Some("unconfined")) => toggles.seccomp_unconfined = true,
                ("seccomp", Some(path)) if !path.is_empty() => {
                    seccomp_profile = Some(PathBuf::from(path))
                }
                _ => {
                    return Err(crate::Error::usage(format!(
                        "unknown --security-opt {opt:?}; use no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"
                    )))
                }
            }
        }
        let devices = self
            .device
            .iter()
            .map(|d| crate::confine::devices::parse_flag(d))
            .collect::<crate::Result<Vec<_>>>()?;
        let userns = crate::runtime::config::UsernsRequest::parse(
            self.userns.as_deref(),
            &self.uidmap,
            &self.gidmap,
        )?;
        toggles.user = userns.toggle();
        toggles.rootless = !nix::unistd::geteuid().is_root();
        Ok((
            toggles,
            crate::runtime::config::Security {
                caps,
                seccomp_profile,
                devices,
                preserve_fds: self.preserve_fds,
                userns,
                masked_paths: None,
                readonly_paths: None,
            },
        ))
    }
}

/// Networking, as `docker run` names it (the net stage).
#[derive(Args, Clone, Default)]
pub struct NetworkArgs {
    /// bridge (the default as root: a veth into stagebox0), none (only lo), host (the net
    /// stage off), container:NAME (its namespace), or a network from `network create`.
    #[arg(long, visible_alias = "net", value_name = "NETWORK")]
    pub network: Option<String>,
    /// Publish a container port on the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp].
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs, each on a free host port.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
}

impl NetworkArgs {
    /// `--network` and `-p` parsed; a mistake is one sentence.
    pub fn parse(
        &self,
    ) -> crate::Result<(
        crate::runtime::config::NetworkRequest,
        Vec<crate::network::ports::PortSpec>,
    )> {
        let req = crate::runtime::config::NetworkRequest::parse(self.network.as_deref())?;
        let ports = crate::network::ports::parse_all(&self.publish).map_err(crate::Error::Usage)?;
        if !ports.is_empty() && matches!(req, crate::runtime::config::NetworkRequest::Host) {
            return Err(crate::Error::usage(
                "-p has nothing to publish with --network host: the container's ports are the host's already; drop -p",
            ));
        }
        Ok((req, ports))
    }
}

/// Docker's namespace flags (`--pid host` ...): each `host` switches its stage off.
#[derive(Args, Clone, Default)]
pub struct NamespaceArgs {
    /// host: share the host's PID namespace (the pid stage off); private (default): its own.
    #[arg(long, value_name = "MODE")]
    pub pid: Option<String>,
    /// host: share the host's IPC namespace (the ipc stage off); private (default): its own.
    #[arg(long, value_name = "MODE")]
    pub ipc: Option<String>,
    /// host: share the host's UTS namespace, its hostname included (the uts stage off).
    #[arg(long, value_name = "MODE")]
    pub uts: Option<String>,
    /// host: share the host's cgroup namespace (the cgroupns stage off); private (default).
    #[arg(long, value_name = "MODE")]
    pub cgroupns: Option<String>,
}

impl NamespaceArgs {
    /// The namespaces shared with the host; a value other than host or private is one sentence.
    pub fn parse(&self) -> crate::Result<crate::stages::plan::HostNamespaces> {
        let host = |flag: &str, v: &Option<String>| -> crate::Result<bool> {
            match v.as_deref() {
                None | Some("private") => Ok(false),
                Some("host") => Ok(true),
                Some(other) => Err(crate::Error::usage(format!(
                    "--{flag} {other:?} is not a mode; use host (share the host's namespace) or private (the default)"
                ))),
            }
        };
        Ok(crate::stages::plan::HostNamespaces {
            pid: host("pid", &self.pid)?,
            ipc: host("ipc", &self.ipc)?,
            uts: host("uts", &self.uts)?,
            net: false,
            cgroupns: host("cgroupns", &self.cgroupns)?,
        })
    }
}

/// Docker's `--env-file`, `--mount`, `--tmpfs`, `--ulimit` and `--init`.
#[derive(Args, Clone, Default)]
pub struct ExtraRunArgs {
    /// Read environment variables from a file: KEY=VALUE lines (KEY alone: the caller's
    /// value), # comments and blank lines skipped; --env wins over it.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// A mount, Docker's way: type=bind|volume|tmpfs,source=...,target=...[,readonly].
    #[arg(long, value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount a fresh tmpfs: /path[:options], e.g. /tmp:size=64m,mode=1777.
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// A resource limit for the container's processes: NAME=SOFT[:HARD] (nofile, nproc, core,
    /// stack, ...; -1: unlimited).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Run stagebox's own init as PID 1: it forwards signals to the command and reaps zombies.
    #[arg(long)]
    pub init: bool,
}

impl ExtraRunArgs {
    /// The environment from the --env-file files, in order (a missing file is one sentence).
    pub fn env_from_files(&self) -> crate::Result<Vec<String>> {
        let mut out = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| crate::Error::usage(format!("--env-file {}: {e}", f.display())))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim_start();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match line.split_once('=') {
                    Some(("", _)) => {
                        return Err(crate::Error::usage(format!(
                            "--env-file {} line {}: no variable name before '='",
                            f.display(),
                            n + 1
                        )))
                    }
                    Some(_) => out.push(line.to_string()),
                    // KEY alone: the caller's value, or nothing when the caller has none.
                    None => {
                        let key = line.trim_end();
                        if let Ok(v) = std::env::var(key) {
                            out.push(format!("{key}={v}"));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `stagebox run`'s flags.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub toggles: StageToggles,
    /// Root filesystem directory (default: the default rootfs, made on first use).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// What to make the default rootfs from: auto, busybox or host.
    #[arg(long, value_name = "SOURCE", default_value = "auto")]
    pub rootfs_source: String,
    /// The container's hostname (default: stagebox-<short id>); needs the uts stage.
    #[arg(short = 'h', long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Print help (`-h` is the hostname, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Trace format on stderr: pretty, verbose (pretty, with each host mount the root switch
    /// takes out of view on a line of its own), json or off.
    #[arg(
        long,
        env = "STAGEBOX_TRACE",
        default_value = "pretty",
        value_name = "FORMAT"
    )]
    pub trace: String,
    /// Trace only these stages (comma-separated), plus the exec and exit lines; every stage
    /// still runs.
    #[arg(
        long,
        env = "STAGEBOX_TRACE_STAGES",
        value_name = "STAGES",
        value_delimiter = ','
    )]
    pub trace_stages: Option<Vec<String>>,
    /// Run `stagebox probe` inside (exec'd from stagebox's own file, nothing copied into the
    /// rootfs); arguments after -- go to the probe (for example: --probe -- --escape).
    #[arg(long)]
    pub probe: bool,
    /// Set an environment variable in the container (KEY=VALUE).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Name the container (default box-<short id>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Remove the container and its anonymous volumes when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Mount the container's root filesystem read-only (volumes stay writable).
    #[arg(long)]
    pub read_only: bool,
    /// A volume: /host/path:/container/path[:ro], name:/container/path[:ro], or /container/path.
    #[arg(short = 'v', long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub namespaces: NamespaceArgs,
    #[command(flatten)]
    pub extra: ExtraRunArgs,
    #[command(flatten)]
    pub image: ImageRunArgs,
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// The command and its arguments.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// Every flag parsed and checked: what `runtime::run` takes.
    pub fn into_config(self, state: PathBuf) -> crate::Result<crate::runtime::config::RunConfig> {
        let (image, command) = self.image.split(self.command);
        // Parsed in the order the flags are documented, so the first mistake is the one named.
        let trace: crate::trace::TraceMode = self.trace.parse()?;
        let trace_focus = match &self.trace_stages {
            Some(names) => crate::trace::Focus::stages(
                crate::stages::plan::parse_names(names, "--trace-stages")?
                    .into_iter()
                    .map(|id| id.name()),
            ),
            None => crate::trace::Focus::all(),
        };
        let limits = self.limits.parse()?;
        let mut volumes = self
            .volume
            .iter()
            .map(|v| crate::state::volume::parse(v))
            .collect::<crate::Result<Vec<_>>>()?;
        let mut tmpfs = Vec::new();
        for m in &self.extra.mount {
            match crate::state::volume::parse_mount(m)? {
                crate::state::volume::MountArg::Volume(v) => volumes.push(v),
                crate::state::volume::MountArg::Tmpfs(t) => tmpfs.push(t),
            }
        }
        for t in &self.extra.tmpfs {
            tmpfs.push(crate::state::volume::parse_tmpfs(t)?);
        }
        let ulimits = self
            .extra
            .ulimit
            .iter()
            .map(|u| crate::runtime::config::Ulimit::parse(u))
            .collect::<crate::Result<Vec<_>>>()?;
        let mut env = self.extra.env_from_files()?;
        env.extend(self.env.iter().cloned());
        let (mut confine, security) = self.security.parse()?;
        let (network, publish) = self.network.parse()?;
        confine.host_ns = self.namespaces.parse()?;
        confine.host_ns.net = network == crate::runtime::config::NetworkRequest::Host;
        let plan = self
            .toggles
            .plan_confined(!volumes.is_empty() || !tmpfs.is_empty(), confine)?;
        if let (Some(h), false) = (&self.hostname, plan.is_on(crate::stages::StageId::Uts)) {
            let why = plan
                .stages
                .iter()
                .find(|s| s.id == crate::stages::StageId::Uts)
                .map(|s| s.why.clone())
                .unwrap_or_default();
            return Err(crate::Error::usage(format!(
                "--hostname {h} needs the uts stage, which is off here ({why}): without a UTS namespace of its own the container's hostname is the host's, and setting it would rename the host; drop --hostname or switch the uts stage on"
            )));
        }
        if !matches!(
            network,
            crate::runtime::config::NetworkRequest::Default
                | crate::runtime::config::NetworkRequest::Host
        ) && !plan.enabled().contains(&crate::stages::StageId::Net)
        {
            return Err(crate::Error::usage(format!(
                "--network {} needs the net stage, which this plan switches off; drop --without net (or --only without net)",
                self.network.network.as_deref().unwrap_or_default()
            )));
        }
        let lifecycle = self.lifecycle.parse(self.rm)?;
        let default_source = parse_source(&self.rootfs_source)?;
        let (probe, command) = if self.probe {
            (Some(command), Vec::new())
        } else {
            (None, command)
        };
        Ok(crate::runtime::config::RunConfig {
            command,
            rootfs: self.rootfs,
            default_source,
            hostname: self.hostname,
            plan,
            probe,
            state_dir: state,
            env,
            workdir: self.workdir,
            trace,
            trace_focus,
            name: self.name,
            remove: self.rm,
            read_only: self.read_only,
            volumes,
            limits,
            security,
            image,
            network,
            publish,
            publish_all: self.network.publish_all,
            extras: crate::runtime::config::RunExtras {
                init: self.extra.init,
                ulimits,
                tmpfs,
            },
            lifecycle,
            oci: None,
        })
    }
}

/// A container that lives on its own: `run -d`, `-i`, `-t`, and how it is stopped and restarted.
#[derive(Args, Clone, Default)]
pub struct LifecycleArgs {
    /// Run detached: a monitor process holds the container and keeps its output (`stagebox
    /// logs`); the id is printed once the workload runs.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the workload's stdin open (with -d: a pipe the monitor holds).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the workload a pseudo-terminal as stdin, stdout and stderr (with -d).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Restart policy, handled by the monitor of a detached container: no, on-failure[:N],
    /// always or unless-stopped.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// The signal `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL when it is not given -t (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
}

impl LifecycleArgs {
    pub fn parse(&self, rm: bool) -> crate::Result<crate::runtime::lifecycle::Lifecycle> {
        use crate::runtime::lifecycle::RestartPolicy;
        let restart = RestartPolicy::parse(&self.restart)?;
        if restart != RestartPolicy::No && !self.detach {
            return Err(crate::Error::usage(
                "--restart needs -d: the monitor of a detached container is what restarts it",
            ));
        }
        if restart != RestartPolicy::No && rm {
            return Err(crate::Error::usage(
                "--restart and --rm cannot be used together: one keeps the container running, the other removes it when it exits",
            ));
        }
        // Without -d, -i and -t change nothing: the workload inherits this terminal (and
        // stdin) already.
        if let Some(s) = &self.stop_signal {
            crate::runtime::lifecycle::parse_signal(s, "--stop-signal")?;
        }
        Ok(crate::runtime::lifecycle::Lifecycle {
            detach: self.detach,
            interactive: self.interactive,
            tty: self.tty,
            restart,
            restart_text: if restart == RestartPolicy::No {
                String::new()
            } else {
                self.restart.clone()
            },
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            ..Default::default()
        })
    }
}

// Parsed once per process: the size of `run`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Cmd {
    /// Run a command in a container built from the stages.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// List every stage: what it does, on or off by default, the lesson that teaches it.
    Stages,
    /// Print a detached container's output (stdout and stderr, as the workload wrote them).
    Logs {
        /// Follow: keep printing until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (or "all").
        #[arg(short = 'n', long, value_name = "N", default_value = "all")]
        tail: String,
        /// Prefix each line with its RFC 3339 time.
        #[arg(short, long)]
        timestamps: bool,
        /// Only lines since this time (RFC 3339, Unix seconds, or a duration such as 10m).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Stop containers: their stop signal (SIGTERM unless the image says otherwise), then
    /// SIGKILL after -t seconds.
    Stop {
        /// Seconds to wait before SIGKILL (default: --stop-timeout from run, else 10).
        #[arg(short = 't', long = "time", value_name = "SECONDS")]
        time: Option<u64>,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Send a signal to containers' main process (default SIGKILL).
    Kill {
        #[arg(short = 's', long, value_name = "SIGNAL", default_value = "KILL")]
        signal: String,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Wait until containers stop; print each one's exit code.
    Wait {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Run stopped containers again, on their own writable layer (detached unless -a).
    Start {
        /// Stay attached: the workload runs in the foreground with your terminal.
        #[arg(short, long)]
        attach: bool,
        /// With -a: keep stdin open (the workload reads your terminal).
        #[arg(short, long)]
        interactive: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Stop containers, then start them again.
    Restart {
        #[arg(short = 't', long = "time", value_name = "SECONDS")]
        time: Option<u64>,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Show a detached container's output as it comes (its pty with -t); Ctrl-C detaches.
    Attach {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// List containers (running ones; -a: all kept ones, dead ones included).
    Ps(PsArgs),
    /// Rename a container (refused with "Conflict" when the new name is taken).
    Rename {
        #[arg(value_name = "CONTAINER")]
        container: String,
        #[arg(value_name = "NEW_NAME")]
        new_name: String,
    },
    /// Manage containers: `container prune` removes every stopped or dead one.
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Remove containers (-f: also running ones, killing them).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// What a container added (A), changed (C) and deleted (D), from its writable layer.
    Diff {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Show a container's record (or else an image) as JSON: its command, status, layers and volumes.
    Inspect {
        /// Print only this field (for example upper_dir, state, exit_code).
        #[arg(short, long, value_name = "FIELD")]
        format: Option<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    #[command(flatten)]
    Image(ImageCmd),
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Manage networks (bridges with their own subnet).
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// List a container's published ports (-p, -P): CONTAINER_PORT/PROTO -> HOST_IP:HOST_PORT.
    Port {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Show the resolved pipeline for these toggles, without running anything.
    Plan {
        #[command(flatten)]
        toggles: StageToggles,
        #[command(flatten)]
        security: SecurityArgs,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say where the default rootfs is and what it was made from (making it if needed).
    Rootfs {
        /// auto, busybox or host.
        #[arg(long, value_name = "SOURCE", default_value = "auto")]
        source: String,
        #[arg(long)]
        json: bool,
    },
    /// PID 1 of `run --init` (exec'd inside the container): runs CMD, forwards signals to
    /// it, reaps zombies, exits with its status.
    #[command(hide = true)]
    Init {
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Report what this process sees: pid, hostname, namespaces, root, mounts, maps, network.
    Probe {
        #[arg(long)]
        json: bool,
        /// Also try the classic chroot escape (read-only) and say whether it reached the host.
        #[arg(long)]
        escape: bool,
        /// With --escape: a file on the host; seeing it after the climb proves the escape.
        #[arg(long, value_name = "PATH")]
        marker: Option<PathBuf>,
        /// Run the isolation checks, given the runner's host facts as JSON (used by compare).
        #[arg(long, value_name = "JSON", hide = true)]
        checks: Option<String>,
    },
    /// Compare isolation with stages on and off: a matrix of checks x configurations.
    Compare {
        /// Root filesystem for the runs (default: the default rootfs).
        #[arg(long, value_name = "DIR")]
        rootfs: Option<PathBuf>,
        /// Stages to switch off in turn (or add, with --build-up); default all. The user stage,
        /// off by default as root, is added last instead (`+user`, with --userns auto).
        #[arg(long, value_name = "STAGES", value_delimiter = ',')]
        stages: Option<Vec<String>>,
        /// Start from no stage and add them one at a time, in pipeline order.
        #[arg(long)]
        build_up: bool,
        /// Print the matrix as JSON (with all evidence).
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the matrix as a Markdown table.
        #[arg(long)]
        markdown: bool,
        /// Print each cell's evidence under the table.
        #[arg(long)]
        evidence: bool,
    },
    /// Check what this host supports, and what will not work here and why.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Run a lesson step by step with the trace (`--list` lists them; `--check` checks the exercise).
    Lesson {
        /// The lesson's number (1, 01 or 01-uts-hostname).
        #[arg(value_name = "N", required_unless_present = "list")]
        number: Option<String>,
        /// List the lessons.
        #[arg(long, conflicts_with_all = ["no_pause", "check"])]
        list: bool,
        /// Run the steps straight through, without waiting for Enter between them.
        #[arg(long)]
        no_pause: bool,
        /// Check your answer to the lesson's exercise instead of running its steps.
        #[arg(long)]
        check: bool,
        /// Read the lessons from this directory instead of the ones built into stagebox.
        #[arg(long, env = "STAGEBOX_LESSONS", value_name = "DIR")]
        lessons: Option<PathBuf>,
    },
    /// Write the mdBook tutorial: every lesson with the real output of its commands, and reference chapters.
    Book {
        /// The book's directory (book.toml is written only when missing; src/ is regenerated).
        #[arg(long, value_name = "DIR", default_value = "book")]
        out: PathBuf,
        /// Read the lessons from this directory instead of the ones built into stagebox.
        #[arg(long, env = "STAGEBOX_LESSONS", value_name = "DIR")]
        lessons: Option<PathBuf>,
    },
    /// Run a command in a running container: setns(2) into its namespaces, its cgroups and confinement.
    Exec(ExecArgs),
    /// The processes of a running container, as the host sees them (ps -ef columns).
    Top {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// CPU %, memory and processes of running containers, from their cgroup files.
    Stats {
        /// Print one table and stop (otherwise one a second until Ctrl-C).
        #[arg(long)]
        no_stream: bool,
        #[arg(value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Freeze every process of a container (the cgroup freezer).
    Pause {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Thaw a paused container.
    Unpause {
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// Copy files between a running container and the host: CONTAINER:SRC DEST or SRC CONTAINER:DEST.
    Cp {
        #[arg(value_name = "SRC")]
        src: String,
        #[arg(value_name = "DEST")]
        dest: String,
    },
    /// Write a running container's root filesystem as a tar (to stdout, or -o FILE).
    Export {
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
}

/// `stagebox exec [-i] [-t] [-d] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD [ARG...]`.
#[derive(Args, Clone)]
pub struct ExecArgs {
    /// Keep stdin open (without it the command's stdin is /dev/null).
    #[arg(short, long)]
    pub interactive: bool,
    /// The command gets the caller's terminal as it is (no new pty) and TERM=xterm.
    #[arg(short, long)]
    pub tty: bool,
    /// Start the command and return at once, printing nothing.
    #[arg(short, long)]
    pub detach: bool,
    /// Set a variable (K=V, or K for the caller's value), after the container's own.
    #[arg(short, long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the workload's).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as this user: uid[:gid] or name[:group] (from the container's /etc/passwd).
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// Trace format on stderr: pretty, verbose, json or off.
    #[arg(
        long,
        env = "STAGEBOX_TRACE",
        default_value = "pretty",
        value_name = "FORMAT"
    )]
    pub trace: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The command and its arguments (`--` before them is accepted).
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `stagebox run IMAGE [CMD...]`, `--image`, `--entrypoint`, `--user`.
#[derive(Args, Clone)]
pub struct ImageRunArgs {
    /// Run this image (NAME[:TAG] or ID); same as giving IMAGE before the command.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Replace the image's Entrypoint ("" clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Run as this user: uid[:gid] or name[:group] (names from the image's /etc/passwd).
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// The image (NAME[:TAG] or ID), after the options; everything after it is the command.
    #[arg(value_name = "IMAGE")]
    pub positional: Option<String>,
    /// The command that replaces the image's Cmd, and its arguments, taken as they are.
    #[arg(value_name = "CMD", allow_hyphen_values = true, num_args = 1..)]
    pub args: Vec<String>,
}

impl ImageRunArgs {
    /// The image part of the run config, and the command (after the image, or after --).
    pub fn split(self, after_dashes: Vec<String>) -> (crate::image::run::RunImage, Vec<String>) {
        // With --image, the first word after the options is the command, not an image.
        let (image, mut command) = match self.image {
            Some(i) => (
                Some(i),
                self.positional.into_iter().chain(self.args).collect(),
            ),
            None => (self.positional, self.args),
        };
        // `run IMAGE -- CMD`: clap hands the -- over as a value.
        if command.first().is_some_and(|a| a == "--") {
            command.remove(0);
        }
        command.extend(after_dashes);
        let run = crate::image::run::RunImage {
            source: image.map(crate::image::run::ImageSource::Ref),
            entrypoint: self.entrypoint,
            user: self.user,
            groups: Vec::new(),
        };
        (run, command)
    }
}

#[derive(Subcommand)]
pub enum ImageCmd {
    /// List images (default:latest, the default rootfs, is always there).
    Images,
    /// Remove images by NAME[:TAG] or ID (-f: even if a kept container uses one).
    Rmi {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// A root filesystem tarball (plain or gzip: docker export, a distribution's minimal rootfs) as a one-layer image.
    Import {
        #[arg(value_name = "ROOTFS.tar[.gz]")]
        file: PathBuf,
        #[arg(value_name = "NAME[:TAG]")]
        reference: String,
    },
    /// Load images from an OCI layout directory or a `docker save` tarball.
    Load {
        #[arg(value_name = "DIR|FILE.tar")]
        path: PathBuf,
        /// Name the loaded image NAME[:TAG].
        #[arg(short, long, value_name = "NAME[:TAG]")]
        tag: Option<String>,
    },
    /// Save an image into an OCI layout directory, named by its tag there (skopeo oci:DIR:TAG).
    Save {
        #[arg(value_name = "IMAGE")]
        image: String,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The history of an image: one line per step, newest first.
    History {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// Make a new image from a container's writable layer.
    Commit {
        /// A comment for the history entry.
        #[arg(short, long)]
        message: Option<String>,
        /// A Containerfile instruction applied to the config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE).
        #[arg(short, long = "change", value_name = "INSTRUCTION")]
        change: Vec<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
        #[arg(value_name = "NAME[:TAG]")]
        reference: String,
    },
    /// Build an image from a Containerfile, step by step.
    Build {
        /// The Containerfile (default CONTEXT/Containerfile, else CONTEXT/Dockerfile).
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Name the image NAME[:TAG].
        #[arg(short, long, value_name = "NAME[:TAG]")]
        tag: String,
        /// Set an ARG (NAME=VALUE).
        #[arg(long = "build-arg", value_name = "NAME=VALUE")]
        build_arg: Vec<String>,
        /// Run every step, even those whose layer is cached.
        #[arg(long)]
        no_cache: bool,
        /// The RUN steps' network: bridge (default, as root), host or none.
        #[arg(long, value_name = "NETWORK")]
        network: Option<String>,
        #[arg(value_name = "CONTEXT")]
        context: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// List networks: the default `bridge` and those made with `network create`.
    Ls,
    /// Make a network: a bridge of its own with a subnet (default: the first free one).
    Create {
        /// The subnet, e.g. 10.99.0.0/24 (IPv4).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        name: String,
    },
    /// Show a network as JSON, with the addresses in use.
    Inspect { name: String },
    /// Remove networks (refused while a container uses one); their bridge goes too.
    Rm {
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
}

/// `stagebox ps` flags, as Docker's.
#[derive(clap::Args, Debug, Clone)]
pub struct PsArgs {
    /// All kept containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only the ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// status=running|paused|created|exited|dead, name=NAME (part of it), id=ID (a prefix); repeatable.
    #[arg(short, long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
    /// A Go template of {{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.Status}} {{.State}} {{.Ports}} {{.CreatedAt}}.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// The last N containers made (all states).
    #[arg(short = 'n', long = "last", value_name = "N")]
    pub last: Option<usize>,
    /// The last container made (-n 1).
    #[arg(short = 'l', long)]
    pub latest: bool,
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    /// Remove every container whose run is over (exited, or dead: its stagebox was killed),
    /// with all it left: cgroups, leases, directories without a record.
    Prune {
        /// Accepted for Docker's habit; prune never asks.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// List volumes.
    Ls,
    /// Create a named volume.
    Create { name: String },
    /// Show a volume as JSON, with the containers that use it.
    Inspect { name: String },
    /// Remove volumes (refused while a kept container uses one, unless -f).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn parse_source(s: &str) -> crate::Result<RootfsSource> {
    match s {
        "auto" => Ok(RootfsSource::Auto),
        "busybox" => Ok(RootfsSource::Busybox),
        "host" => Ok(RootfsSource::Host),
        other => Err(crate::Error::usage(format!(
            "unknown rootfs source {other:?}; use auto, busybox or host"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run(argv: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut full = vec!["stagebox", "run"];
        full.extend(argv);
        match Cli::try_parse_from(full)?.cmd {
            Cmd::Run(a) => Ok(a),
            _ => unreachable!(),
        }
    }

    fn split(argv: &[&str]) -> (Option<String>, Vec<String>) {
        let a = run(argv).unwrap();
        let (img, cmd) = a.image.split(a.command);
        let img = img.source.map(|s| match s {
            crate::image::run::ImageSource::Ref(r) => r,
            #[allow(unreachable_patterns)]
            _ => String::new(),
        });
        (img, cmd)
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn image_and_command_forms() {
        assert_eq!(
            split(&["--", "sh", "-c", "x"]),
            (None, v(&["sh", "-c", "x"]))
        );
        assert_eq!(
            split(&["--rm", "img", "sh", "-c", "x"]),
            (Some("img".into()), v(&["sh", "-c", "x"]))
        );
        assert_eq!(
            split(&["img", "--", "sh", "-c"]),
            (Some("img".into()), v(&["sh", "-c"]))
        );
        assert_eq!(
            split(&["img", "ls", "--rm", "-h"]),
            (Some("img".into()), v(&["ls", "--rm", "-h"]))
        );
        assert_eq!(
            split(&["img", "sh", "--", "x"]),
            (Some("img".into()), v(&["sh", "--", "x"]))
        );
        assert_eq!(
            split(&["--image", "img", "sh", "-c", "x"]),
            (Some("img".into()), v(&["sh", "-c", "x"]))
        );
        assert_eq!(
            split(&["--image", "img", "--", "sh"]),
            (Some("img".into()), v(&["sh"]))
        );
        assert_eq!(split(&["img"]), (Some("img".into()), v(&[])));
        let a = run(&["--probe", "--", "--escape"]).unwrap();
        assert!(a.probe);
        assert_eq!(a.image.split(a.command).1, v(&["--escape"]));
    }

    #[test]
    fn unknown_flags_are_errors_with_a_suggestion() {
        let e = run(&["--hostnme", "x", "--", "true"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(
            e.render().to_string().contains("--hostname"),
            "{}",
            e.render()
        );
        assert!(run(&["-Z", "default", "true"]).is_err());
    }

    #[test]
    fn short_h_is_the_hostname_and_help_is_long() {
        let a = run(&["-h", "lab", "--", "hostname"]).unwrap();
        assert_eq!(a.hostname.as_deref(), Some("lab"));
        let e = run(&["--help"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
