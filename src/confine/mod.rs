//! What the confinement stages enforce, as data: which capabilities a container keeps, which
//! paths are masked or read-only, which devices it may use, and the seccomp profile compiled
//! to BPF. The stages (`stages/devices.rs`, `paths.rs`, `nnp.rs`, `caps.rs`, `seccomp.rs`)
//! make the syscalls; this folder only decides and compiles, so that every bad flag or profile
//! is refused before anything on the host changes.
//!
//! - `caps`: capability names and numbers, Docker's default set, `--cap-add`/`--cap-drop`.
//! - `paths`: Docker's masked and read-only paths.
//! - `devices`: the device allow list (Docker's defaults and `--device`), as cgroup v1 rules
//!   and as a cgroup v2 BPF program.
//! - `seccomp`: Docker's JSON profile format, the default profile, and its compilation.
//!
//! May import: `error`, `kernel`. Nothing here makes a container or knows about stages.

pub mod caps;
pub mod devices;
pub mod paths;
pub mod seccomp;

/// Everything the confinement stages are told, decided before the container exists.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Confinement {
    /// The capabilities the workload keeps (bit N is capability N): Docker's default 14,
    /// with `--cap-add` and `--cap-drop` applied.
    pub caps: u64,
    /// Paths hidden from the container (`/dev/null` over files, an empty read-only tmpfs
    /// over directories).
    pub masked_paths: Vec<String>,
    /// Paths remounted read-only inside the container.
    pub readonly_paths: Vec<String>,
    /// The host's cgroup filesystems, read from its mountinfo before the root switch: the
    /// paths stage mounts them read-only at /sys/fs/cgroup inside.
    #[serde(default)]
    pub cgroup_mounts: Vec<paths::CgroupMount>,
    /// Devices the container may use, and the nodes `--device` adds.
    pub devices: devices::DeviceConfig,
    /// Whether the nnp stage sets no_new_privs (the caps stage then need not keep
    /// CAP_SYS_ADMIN for the seccomp stage).
    pub no_new_privs: bool,
    /// Whether the exec step switches to another user (an image's `User`, `--user`): the caps
    /// stage then keeps CAP_SETUID and CAP_SETGID effective for it, even when dropped.
    #[serde(default)]
    pub user_switch: bool,
    /// An OCI config's five capability sets (None: Docker-like, only `caps` is kept, the
    /// others follow it, inheritable and ambient empty).
    #[serde(default)]
    pub oci_sets: Option<caps::CapSets>,
    /// The compiled seccomp profile (None when the seccomp stage is off).
    #[serde(skip)]
    pub seccomp: Option<std::sync::Arc<seccomp::Program>>,
}

impl Confinement {
    /// Docker's defaults: 14 capabilities, its masked and read-only paths, its device list.
    pub fn docker_default() -> Confinement {
        Confinement {
            caps: caps::DOCKER_DEFAULT,
            masked_paths: paths::MASKED.iter().map(|s| s.to_string()).collect(),
            readonly_paths: paths::READONLY.iter().map(|s| s.to_string()).collect(),
            cgroup_mounts: Vec::new(),
            devices: devices::DeviceConfig::default(),
            no_new_privs: false,
            user_switch: false,
            oci_sets: None,
            seccomp: None,
        }
    }
}
