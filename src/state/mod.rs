//! The state directory and what lives in it between runs: container records, volumes, ids,
//! and the one way this program writes a file that must never be seen half-written.
//!
//! Layout under the state root (`STAGEBOX_STATE`, else /var/lib/stagebox as root):
//! `containers/ID/` (config.json, upper/, work/, merged/; for a detached container
//! `ID-json.log`, `monitor.log`: `lifecycle`, `logs`), `volumes/NAME/`, `images/`
//! (owned by `image/`), `rootfs/` (owned by `rootfs/`).
//! Outside it: `subids` owns the `stagebox` entry of /etc/subuid and /etc/subgid and the leases
//! of its slices in /run/stagebox/userns (the ids belong to the host, not to one state dir).
//! `lease` is the one flock lease helper that those slices and `network::ipam`'s addresses use.
//!
//! May import: `error`, `units`, `kernel`. Must not import anything that runs a container.

pub mod atomic;
pub mod container;
pub mod dir;
pub mod ids;
pub mod lease;
pub mod lifecycle;
pub mod logs;
pub mod subids;
pub mod volume;
