//! What to run: the command, its root filesystem, the stage toggles and the trace format.

use crate::error::{Error, Result};
use crate::rootfs::default::RootfsSource;
use crate::stages::plan::Plan;
use crate::trace::{Focus, TraceMode};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// argv of the workload (empty with `probe`).
    pub command: Vec<String>,
    /// `--rootfs DIR`; None means the default rootfs.
    pub rootfs: Option<PathBuf>,
    pub default_source: RootfsSource,
    pub hostname: Option<String>,
    pub plan: Plan,
    /// Run stagebox's own `probe` inside instead of a command, with these extra arguments.
    pub probe: Option<Vec<String>>,
    pub state_dir: PathBuf,
    /// Extra environment, KEY=VALUE.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub trace: TraceMode,
    /// `--trace-stages`: whose lines the trace shows (every stage still runs).
    pub trace_focus: Focus,
    /// `--name`; default `box-<short id>`.
    pub name: Option<String>,
    /// `--rm`: remove the container (and its anonymous volumes) when it exits.
    pub remove: bool,
    /// `--read-only`: the root filesystem is mounted read-only.
    pub read_only: bool,
    /// `-v` arguments, parsed and checked.
    pub volumes: Vec<crate::state::volume::VolumeSpec>,
    /// Resource limits for the cgroup stage (`-m`, `--cpus`, `--pids-limit` ...), parsed and
    /// checked already.
    pub limits: crate::cgroup::Limits,
    /// What the confinement stages enforce (`--cap-add`, `--security-opt`, `--device` ...).
    pub security: Security,
    /// The image to run (its layers, command, env, workdir, user), `--entrypoint`, `--user`.
    pub image: crate::image::run::RunImage,
    /// `--network`.
    pub network: NetworkRequest,
    /// `-p` (parsed), and `-P`: publish the image's EXPOSEd ports too.
    pub publish: Vec<crate::network::ports::PortSpec>,
    pub publish_all: bool,
    /// `--init`, `--ulimit`, `--tmpfs`/`--mount type=tmpfs`.
    pub extras: RunExtras,
    /// `-d`, `-i`, `-t`, `--restart`, stop settings; `start` and restarts reuse a container.
    pub lifecycle: super::lifecycle::Lifecycle,
    /// An OCI bundle's run (`stagebox create`/`run` with runc's command line).
    pub oci: Option<super::oci::OciRun>,
}

/// Docker's `--init`, `--ulimit` and tmpfs mounts.
#[derive(Debug, Clone, Default)]
pub struct RunExtras {
    /// `--init`: stagebox's own `init` runs as PID 1 and runs the command as its child.
    pub init: bool,
    /// `--ulimit NAME=SOFT[:HARD]`, set on the container process before it execs.
    pub ulimits: Vec<Ulimit>,
    /// `--tmpfs` and `--mount type=tmpfs`: mounted by the volumes stage.
    pub tmpfs: Vec<crate::state::volume::TmpfsMount>,
}

/// One `--ulimit`: a resource limit (rlimit) for the container's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name (`nofile`).
    pub name: String,
    /// `RLIMIT_*`.
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// Docker's `--ulimit` names and the RLIMIT_* each sets.
pub const ULIMIT_NAMES: [(&str, i32, &str); 15] = [
    ("core", libc::RLIMIT_CORE as i32, "Max core file size"),
    ("cpu", libc::RLIMIT_CPU as i32, "Max cpu time"),
    ("data", libc::RLIMIT_DATA as i32, "Max data size"),
    ("fsize", libc::RLIMIT_FSIZE as i32, "Max file size"),
    ("locks", libc::RLIMIT_LOCKS as i32, "Max file locks"),
    ("memlock", libc::RLIMIT_MEMLOCK as i32, "Max locked memory"),
    (
        "msgqueue",
        libc::RLIMIT_MSGQUEUE as i32,
        "Max msgqueue size",
    ),
    ("nice", libc::RLIMIT_NICE as i32, "Max nice priority"),
    ("nofile", libc::RLIMIT_NOFILE as i32, "Max open files"),
    ("nproc", libc::RLIMIT_NPROC as i32, "Max processes"),
    ("rss", libc::RLIMIT_RSS as i32, "Max resident set"),
    (
        "rtprio",
        libc::RLIMIT_RTPRIO as i32,
        "Max realtime priority",
    ),
    ("rttime", libc::RLIMIT_RTTIME as i32, "Max realtime timeout"),
    (
        "sigpending",
        libc::RLIMIT_SIGPENDING as i32,
        "Max pending signals",
    ),
    ("stack", libc::RLIMIT_STACK as i32, "Max stack size"),
];

impl Ulimit {
    /// Parses `NAME=SOFT[:HARD]` (Docker's syntax; -1 or unlimited: no limit).
    pub fn parse(arg: &str) -> Result<Ulimit> {
        let bad = |why: String| Error::usage(format!("--ulimit {arg}: {why}"));
        let Some((name, values)) = arg.split_once('=') else {
            return Err(bad(
                "write NAME=SOFT[:HARD], for example nofile=1024:2048".into()
            ));
        };
        let Some((_, resource, _)) = ULIMIT_NAMES.iter().find(|(n, _, _)| *n == name) else {
            let names: Vec<&str> = ULIMIT_NAMES.iter().map(|(n, _, _)| *n).collect();
            return Err(bad(format!(
                "unknown limit {name:?}; the names are {}",
                names.join(", ")
            )));
        };
        let num = |v: &str| -> Result<u64> {
            match v {
                "-1" | "unlimited" => Ok(libc::RLIM_INFINITY),
                v => v
                    .parse::<u64>()
                    .map_err(|_| bad(format!("{v:?} is not a number (or -1 for unlimited)"))),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (num(s)?, num(h)?),
            None => (num(values)?, num(values)?),
        };
        if soft > hard {
            return Err(bad(format!(
                "the soft limit {soft} is above the hard limit {hard}; the kernel refuses that"
            )));
        }
        Ok(Ulimit {
            name: name.to_string(),
            resource: *resource,
            soft,
            hard,
        })
    }
}

/// What `--network` asks of the net stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkRequest {
    /// No flag: the default network `bridge` as root (Docker's default); `none` for an
    /// ordinary user (a bridge on the host needs root).
    #[default]
    Default,
    /// `none`: only `lo`.
    None,
    /// `host`: the net stage off, the host's interfaces.
    Host,
    /// `bridge` or the name of a network made with `network create`.
    Network(String),
    /// `container:NAME`: that container's namespace.
    Container(String),
}

impl NetworkRequest {
    /// Parses `--network`; a mistake is one sentence.
    pub fn parse(s: Option<&str>) -> crate::Result<NetworkRequest> {
        Ok(match s {
            None => NetworkRequest::Default,
            Some("none") => NetworkRequest::None,
            Some("host") => NetworkRequest::Host,
            Some(other) => match other.strip_prefix("container:") {
                Some("") => {
                    return Err(crate::Error::usage(
                        "--network container: needs a container's name or id, as in --network container:web",
                    ))
                }
                Some(c) => NetworkRequest::Container(c.to_string()),
                None => {
                    crate::network::ipam::check_name(other).map_err(|_| {
                        crate::Error::usage(format!(
                            "--network {other:?} is not a network; use bridge, none, host, container:NAME or the name of a network from `stagebox network ls`"
                        ))
                    })?;
                    NetworkRequest::Network(other.to_string())
                }
            },
        })
    }

    /// The network this request means for a runtime that is root or not; None: no veth.
    pub fn network_name(&self, root: bool) -> Option<&str> {
        match self {
            NetworkRequest::Default if root => Some(crate::network::ipam::DEFAULT_NETWORK),
            NetworkRequest::Network(n) => Some(n),
            _ => None,
        }
    }
}

/// The confinement flags, parsed and checked.
#[derive(Debug, Clone)]
pub struct Security {
    /// The capabilities kept (Docker's default 14, with --cap-add and --cap-drop applied).
    pub caps: u64,
    /// `--security-opt seccomp=PROFILE.json`; None: Docker's default profile.
    pub seccomp_profile: Option<PathBuf>,
    /// `--device` nodes.
    pub devices: Vec<crate::confine::devices::Device>,
    /// `--preserve-fds N`: descriptors 3 .. 3+N-1 reach the workload.
    pub preserve_fds: u32,
    /// `--userns`, `--uidmap`, `--gidmap`.
    pub userns: UsernsRequest,
    /// The paths the paths stage masks and makes read-only; None: Docker's lists (an OCI
    /// config's `linux.maskedPaths` and `linux.readonlyPaths` replace them).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
}

/// What the user asked of the user stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UsernsRequest {
    /// No flag: off as root (Docker's default), on as an ordinary user.
    #[default]
    Default,
    /// `--userns=host`: no user namespace.
    Host,
    /// `--userns=auto`: a free range of the `stagebox` entry (as root), the user's own ids
    /// and subordinate range (rootless).
    Auto,
    /// `--uidmap`/`--gidmap`.
    Maps {
        uid: Vec<crate::kernel::idmap::IdMap>,
        gid: Vec<crate::kernel::idmap::IdMap>,
    },
}

impl UsernsRequest {
    /// Parses the three flags; a mistake is one sentence.
    pub fn parse(
        userns: Option<&str>,
        uidmap: &[String],
        gidmap: &[String],
    ) -> crate::Result<UsernsRequest> {
        use crate::kernel::idmap;
        let parse_all = |v: &[String], flag: &str| {
            v.iter()
                .map(|m| idmap::parse_flag(m, flag))
                .collect::<Result<Vec<_>, String>>()
                .map_err(crate::Error::Usage)
        };
        let uid = parse_all(uidmap, "--uidmap")?;
        let gid = parse_all(gidmap, "--gidmap")?;
        let mode = match userns {
            None | Some("") => None,
            Some("host") => Some(UsernsRequest::Host),
            Some("auto") => Some(UsernsRequest::Auto),
            Some(other) => {
                return Err(crate::Error::usage(format!(
                    "unknown --userns {other:?}; use auto (a range of host ids of the container's own) or host (no user namespace)"
                )))
            }
        };
        if uid.is_empty() && gid.is_empty() {
            return Ok(mode.unwrap_or_default());
        }
        if mode.is_some() {
            return Err(crate::Error::usage(
                "--userns cannot be combined with --uidmap/--gidmap; the maps already say what the user namespace is, so drop --userns",
            ));
        }
        // podman's rule: one of the two maps given means the same map for both; a mistake
        // names the flag that was given.
        let (uid, gid, uid_flag, gid_flag) = match (uid.is_empty(), gid.is_empty()) {
            (false, true) => (
                uid.clone(),
                uid,
                "--uidmap",
                "--uidmap, used for the gids too",
            ),
            (true, false) => (
                gid.clone(),
                gid,
                "--gidmap, used for the uids too",
                "--gidmap",
            ),
            _ => (uid, gid, "--uidmap", "--gidmap"),
        };
        idmap::check(&uid, "uid").map_err(|e| crate::Error::usage(format!("{e} ({uid_flag})")))?;
        idmap::check(&gid, "gid").map_err(|e| crate::Error::usage(format!("{e} ({gid_flag})")))?;
        Ok(UsernsRequest::Maps { uid, gid })
    }

    /// What the request says of the user stage: on, off, or nothing (the default).
    pub fn toggle(&self) -> Option<bool> {
        match self {
            UsernsRequest::Default => None,
            UsernsRequest::Host => Some(false),
            UsernsRequest::Auto | UsernsRequest::Maps { .. } => Some(true),
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Security {
            caps: crate::confine::caps::DOCKER_DEFAULT,
            seccomp_profile: None,
            devices: Vec::new(),
            preserve_fds: 0,
            userns: UsernsRequest::Default,
            masked_paths: None,
            readonly_paths: None,
        }
    }
}

/// A hostname the kernel accepts: 1 to 64 bytes, no '/', no NUL, no whitespace.
pub fn check_hostname(name: &str) -> Result<(), crate::Error> {
    if name.is_empty()
        || name.len() > 64
        || name.contains(['/', '\0'])
        || name.contains(char::is_whitespace)
    {
        return Err(crate::Error::usage(format!(
            "--hostname {name:?} is not a valid hostname; use 1 to 64 letters, digits, dots or dashes"
        )));
    }
    Ok(())
}
