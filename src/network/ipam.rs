//! Networks and their addresses (IPAM: IP address management), IPv4 only for now.
//!
//! A network is a record, `STATE/networks/NAME.json` (written atomically): its name, its
//! subnet, its gateway (the subnet's first host address, which the bridge gets), the name
//! of its bridge device (`stagebox0` for the default network `bridge`, `stagebox-` and 6 hex
//! digits for the others: at most 15 bytes, IFNAMSIZ) and when it was made. A new network's
//! subnet may overlap neither another network of this state directory nor a route or an
//! address the host already has (read from /proc/net/route and getifaddrs(3)).
//!
//! An address is taken by holding an exclusive flock(2) on its lease file,
//! `STATE/networks/NAME/leases/<address>`, for as long as the container lives; the file
//! says who holds it (`<holder> <pid>`), for `ps` and `network inspect`. The kernel drops
//! the lock when the holder dies, however it dies (SIGKILL included), so an address is
//! never lost and never handed out twice: the next allocation finds the stale file, locks
//! it and reuses it, and [`prune`] removes stale files. This is the pattern of
//! `state::subids`.
//!
//! Creating and removing networks, allocating and releasing addresses all run under one
//! more lock, `STATE/networks/.lock`, so that a lease file is never removed while another
//! run is opening it, and a network is never removed while an address in it is handed out.
//!
//! Bad input is one sentence naming the flag or the name, and changes nothing.

use crate::error::{Error, Result};
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The default network's name, as Docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge device (the state directory's default one).
pub const DEFAULT_BRIDGE: &str = "stagebox0";
/// The subnets the default network may get, first free one wins: podman's first, then
/// the /16s after it, then Docker's range.
pub const DEFAULT_CANDIDATES: &[&str] = &[
    "10.88.0.0/16",
    "10.89.0.0/16",
    "10.90.0.0/16",
    "10.91.0.0/16",
    "10.92.0.0/16",
    "10.93.0.0/16",
    "10.94.0.0/16",
    "10.95.0.0/16",
    "172.17.0.0/16",
    "172.18.0.0/16",
    "172.19.0.0/16",
    "172.20.0.0/16",
    "172.21.0.0/16",
    "172.22.0.0/16",
    "172.23.0.0/16",
];
/// The shortest prefix a network may have: a /8 is already 16 million addresses.
pub const MIN_PREFIX: u8 = 8;
/// The longest: a /30 holds the gateway and one container.
pub const MAX_PREFIX: u8 = 30;
/// IFNAMSIZ less the final NUL.
pub const IFNAME_MAX: usize = 15;

// ---------------------------------------------------------------------------------------
// Subnets

/// An IPv4 subnet: its network address (no host bits) and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;
    fn try_from(s: String) -> Result<Subnet> {
        Subnet::parse(&s)
    }
}

fn mask_of(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl Subnet {
    /// Parses and checks `--subnet` (`10.88.0.0/16`): IPv4, a prefix from /8 to /30, no host
    /// bits, not loopback, link-local, multicast or reserved. Each refusal is one sentence.
    pub fn parse(text: &str) -> Result<Subnet> {
        let t = text.trim();
        let bad = |why: &str| Error::usage(format!("--subnet {t:?} {why}"));
        let Some((addr, prefix)) = t.split_once('/') else {
            if t.parse::<Ipv4Addr>().is_ok() {
                return Err(bad(&format!(
                    "has no prefix length; give one, as in {t}/24"
                )));
            }
            return Err(bad(
                "is not a subnet; give an IPv4 address and a prefix length, as in 10.88.0.0/16",
            ));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(bad(
                "is IPv6; stagebox networks are IPv4 only for now, as in 10.88.0.0/16",
            ));
        }
        let Ok(addr) = addr.parse::<Ipv4Addr>() else {
            return Err(bad(
                "does not start with an IPv4 address; give four numbers 0-255, as in 10.88.0.0/16",
            ));
        };
        let prefix: u8 = match prefix.parse::<u8>() {
            Ok(p) if p <= 32 && !prefix.starts_with('+') => p,
            _ => return Err(bad("has a prefix length that is not a number from 0 to 32; give one, as in 10.88.0.0/16")),
        };
        if prefix > MAX_PREFIX {
            return Err(bad(&format!(
                "leaves no address for a container besides the gateway; use a prefix of /{MAX_PREFIX} or shorter (a /24 gives 253 addresses)"
            )));
        }
        if prefix < MIN_PREFIX {
            return Err(bad(&format!(
                "is larger than any network needs; use a prefix of /{MIN_PREFIX} or longer (a /16 gives 65533 addresses)"
            )));
        }
        let bits = u32::from(addr);
        let net = bits & mask_of(prefix);
        if net != bits {
            return Err(bad(&format!(
                "has host bits set; the subnet that holds this address is {}/{prefix}",
                Ipv4Addr::from(net)
            )));
        }
        let s = Subnet { addr, prefix };
        for (reserved, what) in [
            ("0.0.0.0/8", "the \"this network\" range 0.0.0.0/8"),
            ("127.0.0.0/8", "the loopback range 127.0.0.0/8"),
            ("169.254.0.0/16", "the link-local range 169.254.0.0/16"),
            ("224.0.0.0/4", "the multicast range 224.0.0.0/4"),
            ("240.0.0.0/4", "the reserved range 240.0.0.0/4"),
        ] {
            let (a, p) = reserved.split_once('/').unwrap_or(("0.0.0.0", "0"));
            let r = Subnet {
                addr: a.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                prefix: p.parse().unwrap_or(0),
            };
            if s.overlaps(&r) {
                return Err(bad(&format!(
                    "overlaps {what}; pick a private range such as 10.88.0.0/16 or 192.168.100.0/24"
                )));
            }
        }
        Ok(s)
    }

    pub fn mask(&self) -> u32 {
        mask_of(self.prefix)
    }

    /// The network address as a number.
    fn base(&self) -> u32 {
        u32::from(self.addr) & self.mask()
    }

    /// The last address (the broadcast address).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() | !self.mask())
    }

    /// The gateway: the first host address (the bridge's own).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    /// The addresses containers may get: every host address after the gateway, before the
    /// broadcast address.
    pub fn container_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = self.base() as u64 + 2;
        let last = (self.base() | !self.mask()) as u64; // the broadcast, excluded
        (first..last).map(|n| Ipv4Addr::from(n as u32))
    }

    /// How many addresses containers may get.
    pub fn capacity(&self) -> u64 {
        (1u64 << (32 - self.prefix as u32)).saturating_sub(3)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.base()
    }

    /// Whether the two subnets share an address (one holds the other, or they are equal).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = mask_of(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// A subnet without the checks of [`Subnet::parse`] (host routes, reserved ranges):
    /// the host bits are cleared.
    pub fn raw(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask_of(prefix)),
            prefix,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The host's routes and addresses

/// A destination the host already reaches: a route from /proc/net/route or the subnet of
/// one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub subnet: Subnet,
    /// The device it goes through (`eth0`, `lo`).
    pub device: String,
    /// "route" or "address".
    pub kind: &'static str,
}

impl std::fmt::Display for HostRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the host's {} {} on {}",
            self.kind, self.subnet, self.device
        )
    }
}

/// The host's routes of /proc/net/route (`kernel::netif`'s parser). The default route
/// (mask 0) is left out: every subnet lies under it.
pub fn parse_proc_net_route(text: &str) -> Vec<HostRoute> {
    crate::kernel::netif::parse_routes(text)
        .into_iter()
        .filter(|r| r.prefix > 0)
        .map(|r| HostRoute {
            subnet: Subnet::raw(r.destination, r.prefix),
            device: r.device,
            kind: "route",
        })
        .collect()
}

/// The host's routes (main table, /proc/net/route) and the subnets of its IPv4 addresses
/// (getifaddrs(3)), as this process's network namespace sees them.
pub fn host_routes() -> Vec<HostRoute> {
    let mut out =
        parse_proc_net_route(&std::fs::read_to_string("/proc/net/route").unwrap_or_default());
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let (Some(addr), Some(mask)) = (
                a.address
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in())
                    .map(|s| s.ip()),
                a.netmask
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in())
                    .map(|s| s.ip()),
            ) else {
                continue;
            };
            out.push(HostRoute {
                subnet: Subnet::raw(addr, u32::from(mask).leading_ones() as u8),
                device: a.interface_name.clone(),
                kind: "address",
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Network records

/// A network: what `network inspect` shows and the net stage needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub subnet: Subnet,
    /// The bridge's own address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// The bridge device's name (at most 15 bytes).
    pub bridge: String,
    /// Unix time, seconds.
    pub created: u64,
}

/// STATE/networks.
pub fn networks_dir(state: &Path) -> PathBuf {
    state.join("networks")
}

fn record_path(state: &Path, name: &str) -> PathBuf {
    networks_dir(state).join(format!("{name}.json"))
}

/// STATE/networks/NAME/leases.
pub fn leases_dir(state: &Path, name: &str) -> PathBuf {
    networks_dir(state).join(name).join("leases")
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// Takes STATE/networks/.lock, making the directory when it is missing.
fn global_lock(state: &Path) -> Result<Flock<File>> {
    let dir = networks_dir(state);
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    crate::state::lease::lock_exclusive(&dir.join(".lock"))
}

/// Docker's rule for names, [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64 bytes; `none` and `host`
/// are modes of `--network`, not networks.
pub fn check_name(name: &str) -> Result<()> {
    crate::state::container::check_object_name(name, "network", "network name", 64)?;
    if name == "none" || name == "host" {
        return Err(Error::usage(format!(
            "{name:?} is a mode of --network, not a network name; pick another name"
        )));
    }
    Ok(())
}

/// The bridge device of network `name`: `stagebox0` for the default network, otherwise
/// `stagebox-` and the first 6 hex digits of the SHA-256 of the state directory and the name, so
/// that two state directories never pick the same device for their own networks.
pub fn bridge_name(state: &Path, name: &str) -> String {
    if name == DEFAULT_NETWORK {
        return DEFAULT_BRIDGE.into();
    }
    use sha2::{Digest as _, Sha256};
    let dir = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    let mut h = Sha256::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update([0u8]);
    h.update(name.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..3].iter().map(|b| format!("{b:02x}")).collect();
    let out = format!("stagebox-{hex}");
    debug_assert!(out.len() <= IFNAME_MAX);
    out
}

/// Why `subnet` cannot be network `name`'s: one sentence naming the other network or the
/// host's route, or None when it is free. Routes on the network's own bridge device are
/// its own (left from an earlier record) and do not count.
pub fn overlap(state: &Path, name: &str, subnet: &Subnet, host: &[HostRoute]) -> Option<String> {
    for other in list(state) {
        if other.name != name && other.subnet.overlaps(subnet) {
            return Some(format!(
                "--subnet {subnet} overlaps network {:?} ({}); pick a subnet outside it",
                other.name, other.subnet
            ));
        }
    }
    let own = bridge_name(state, name);
    for r in host {
        if r.device != own && r.subnet.overlaps(subnet) {
            return Some(format!(
                "--subnet {subnet} overlaps {r}; pick a subnet the host does not use"
            ));
        }
    }
    None
}

/// Loads network `name`. An unknown one is one sentence.
pub fn load(state: &Path, name: &str) -> Result<Network> {
    check_name(name)?;
    let p = record_path(state, name);
    let text = match std::fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::usage(format!(
                "no network named {name:?}; `stagebox network ls` lists them"
            )))
        }
        Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
    };
    serde_json::from_slice(&text)
        .map_err(|e| Error::usage(format!("{} is not a network record: {e}", p.display())))
}

/// `network create [--subnet CIDR] NAME`, checked against the host's real routes and
/// addresses. Without a subnet the first free candidate of [`DEFAULT_CANDIDATES`] is taken.
pub fn create(state: &Path, name: &str, subnet: Option<&str>) -> Result<Network> {
    create_with_host(state, name, subnet, &host_routes())
}

/// [`create`] with the host's routes given (tests give their own).
pub fn create_with_host(
    state: &Path,
    name: &str,
    subnet: Option<&str>,
    host: &[HostRoute],
) -> Result<Network> {
    check_name(name)?;
    let subnet = subnet.map(Subnet::parse).transpose()?;
    let _global = global_lock(state)?;
    if record_path(state, name).exists() {
        return Err(Error::usage(format!(
            "a network named {name:?} exists already; `stagebox network rm {name}` removes it, or pick another name"
        )));
    }
    make(state, name, subnet, host)
}

/// Writes the record of a new network; the caller holds the global lock.
fn make(state: &Path, name: &str, subnet: Option<Subnet>, host: &[HostRoute]) -> Result<Network> {
    let subnet = match subnet {
        Some(s) => {
            if let Some(why) = overlap(state, name, &s, host) {
                return Err(Error::usage(why));
            }
            s
        }
        None => DEFAULT_CANDIDATES
            .iter()
            .filter_map(|c| Subnet::parse(c).ok())
            .find(|c| overlap(state, name, c, host).is_none())
            .ok_or_else(|| {
                Error::usage(format!(
                    "every subnet stagebox picks by itself ({} to {}) overlaps a network or a route of the host; give one with `stagebox network create --subnet CIDR {name}`",
                    DEFAULT_CANDIDATES[0],
                    DEFAULT_CANDIDATES[DEFAULT_CANDIDATES.len() - 1]
                ))
            })?,
    };
    let net = Network {
        name: name.to_string(),
        subnet,
        gateway: subnet.gateway(),
        bridge: bridge_name(state, name),
        created: crate::units::now_secs(),
    };
    let leases = leases_dir(state, name);
    std::fs::create_dir_all(&leases).map_err(io(format!("create {}", leases.display())))?;
    if let Err(e) = crate::state::atomic::write_json_atomic(&record_path(state, name), &net) {
        let _ = std::fs::remove_dir_all(networks_dir(state).join(name));
        return Err(e);
    }
    Ok(net)
}

/// The default network `bridge`, made on first use with the first free candidate subnet.
pub fn default_bridge(state: &Path) -> Result<Network> {
    // The host's routes are read (two netlink dumps) only when the record must be made.
    if let Ok(n) = load(state, DEFAULT_NETWORK) {
        return Ok(n);
    }
    default_bridge_with_host(state, &host_routes())
}

/// [`default_bridge`] with the host's routes given.
pub fn default_bridge_with_host(state: &Path, host: &[HostRoute]) -> Result<Network> {
    if let Ok(n) = load(state, DEFAULT_NETWORK) {
        return Ok(n);
    }
    let _global = global_lock(state)?;
    if record_path(state, DEFAULT_NETWORK).exists() {
        // Made while we waited, or a record that does not read: say so, never overwrite.
        return load(state, DEFAULT_NETWORK);
    }
    make(state, DEFAULT_NETWORK, None, host)
}

/// `network ls`: every network, by name.
pub fn list(state: &Path) -> Vec<Network> {
    let mut v: Vec<Network> = std::fs::read_dir(networks_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name();
                    let name = n.to_str()?.strip_suffix(".json")?;
                    if name.contains(".tmp-") {
                        return None;
                    }
                    load(state, name).ok()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `network inspect NAME`: the record and the addresses in use, as JSON.
pub fn inspect_json(state: &Path, name: &str) -> Result<serde_json::Value> {
    let net = load(state, name)?;
    let mut v = serde_json::to_value(&net)
        .map_err(|e| Error::usage(format!("encoding network {name:?}: {e}")))?;
    if let Some(obj) = v.as_object_mut() {
        let leases: Vec<serde_json::Value> = in_use(state, name)
            .into_iter()
            .map(|u| serde_json::json!({"address": u.ip, "holder": u.holder, "pid": u.pid}))
            .collect();
        obj.insert("leases".into(), serde_json::json!(leases));
    }
    Ok(v)
}

/// `network rm NAME`: refused while an address in it is held. Returns the record removed
/// (the caller removes its bridge device).
pub fn remove(state: &Path, name: &str) -> Result<Network> {
    let net = load(state, name)?;
    let _global = global_lock(state)?;
    if let Some(u) = in_use(state, name).first() {
        return Err(Error::usage(format!(
            "network {name:?} is in use by container {}; stop it first",
            if u.holder.is_empty() {
                "(starting)"
            } else {
                &u.holder
            }
        )));
    }
    let p = record_path(state, name);
    std::fs::remove_file(&p).map_err(io(format!("remove {}", p.display())))?;
    let dir = networks_dir(state).join(name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(format!("remove {}", dir.display()), e))
        }
        _ => {}
    }
    Ok(net)
}

// ---------------------------------------------------------------------------------------
// Leases

/// An address held by this process, and the lock that holds it. Dropping it without
/// [`Lease::release`] (or dying) gives the address back too; only the file stays, for the
/// next allocation to reuse or [`prune`] to remove. The lock belongs to the open file
/// description: a forked child shares it until it execs (the descriptor is close-on-exec)
/// or exits, so the holder should be the process that lives as long as the container.
#[derive(Debug)]
pub struct Lease {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub holder: String,
    path: PathBuf,
    lock: Option<Flock<File>>,
    state: PathBuf,
}

/// An address in use: who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub ip: Ipv4Addr,
    /// What the holder wrote (a container id or name); empty while it is being written.
    pub holder: String,
    pub pid: Option<u32>,
}

fn lease_addresses(dir: &Path) -> std::collections::BTreeSet<Ipv4Addr> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Takes the lowest free address of network `name` for `holder` (a container id): not the
/// network address, the gateway or the broadcast address.
pub fn allocate(state: &Path, name: &str, holder: &str) -> Result<Lease> {
    let net = load(state, name)?;
    let _global = global_lock(state)?;
    // Removed while we waited for the lock?
    let net = match load(state, name) {
        Ok(n) => n,
        Err(_) => {
            return Err(Error::usage(format!(
                "network {:?} was removed while an address was being taken from it; make it again",
                net.name
            )))
        }
    };
    let dir = leases_dir(state, name);
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    for ip in net.subnet.container_addresses() {
        let path = dir.join(ip.to_string());
        // A file nobody made is free for sure; one that exists is free when its holder
        // died (the lock went with it).
        if let Some(lock) = crate::state::lease::try_take(&path, holder)? {
            return Ok(Lease {
                network: net.name.clone(),
                ip,
                prefix: net.subnet.prefix,
                gateway: net.gateway,
                bridge: net.bridge.clone(),
                holder: holder.to_string(),
                path,
                lock: Some(lock),
                state: state.to_path_buf(),
            });
        }
    }
    Err(Error::usage(format!(
        "all {} addresses of network {:?} ({}) are in use by running containers; stop one, or make a network with a larger --subnet",
        net.subnet.capacity(),
        net.name,
        net.subnet
    )))
}

impl Lease {
    /// The address with its prefix, as `ip addr add` takes it: `10.88.0.2/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }

    /// Gives the address back: removes the lease file (under the global lock) and unlocks.
    pub fn release(mut self) -> Result<()> {
        let _global = global_lock(&self.state)?;
        match self.lock.take() {
            Some(lock) => crate::state::lease::give_back(lock, &self.path),
            None => Ok(()),
        }
    }
}

/// The addresses of network `name` held now by a live process, lowest first. Each file is
/// probed with a shared flock for an instant; an allocation racing with that probe skips the
/// address (it takes the next one), it never takes a held one.
pub fn in_use(state: &Path, name: &str) -> Vec<InUse> {
    let dir = leases_dir(state, name);
    let mut out: Vec<InUse> = lease_addresses(&dir)
        .into_iter()
        .filter_map(|ip| {
            let path = dir.join(ip.to_string());
            if !crate::state::lease::is_held(&path) {
                return None;
            }
            let (holder, pid) = crate::state::lease::holder_of(&path);
            Some(InUse { ip, holder, pid })
        })
        .collect();
    out.sort_by_key(|u| u.ip);
    out
}

/// Removes the lease files whose holder died (SIGKILL of a runtime), in every network.
/// Returns how many went. The next command after a kill runs this.
pub fn prune(state: &Path) -> Result<usize> {
    let nets = list(state);
    if nets.is_empty() {
        return Ok(0);
    }
    let _global = global_lock(state)?;
    let mut gone = 0;
    for net in nets {
        let dir = leases_dir(state, &net.name);
        for ip in lease_addresses(&dir) {
            let path = dir.join(ip.to_string());
            // No one else opens lease files without the global lock we hold.
            if crate::state::lease::remove_if_free(&path)? {
                gone += 1;
            }
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sn(s: &str) -> Subnet {
        Subnet::parse(s).unwrap()
    }

    fn refused(s: &str) -> String {
        let e = Subnet::parse(s).unwrap_err();
        let t = e.to_string();
        assert!(matches!(e, Error::Usage(_)), "{t}");
        assert!(t.starts_with("--subnet "), "{t}");
        assert!(!t.contains('\n'), "one sentence: {t}");
        t
    }

    #[test]
    fn subnets_parse_and_bad_ones_are_one_sentence_naming_the_flag() {
        let s = sn("10.88.0.0/16");
        assert_eq!(s.to_string(), "10.88.0.0/16");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert_eq!(s.capacity(), 65533);
        assert_eq!(sn("192.168.100.0/30").capacity(), 1);
        assert!(refused("10.88.0.0").contains("no prefix length"));
        assert!(refused("banana").contains("not a subnet"));
        assert!(refused("10.88.0/16").contains("IPv4 address"));
        assert!(refused("10.288.0.0/16").contains("IPv4 address"));
        assert!(refused("fd00::/64").contains("IPv6"));
        assert!(refused("10.88.0.0/x").contains("prefix length"));
        assert!(refused("10.88.0.0/33").contains("prefix length"));
        assert!(refused("10.88.0.0/31").contains("no address for a container"));
        assert!(refused("10.88.0.0/32").contains("no address for a container"));
        assert!(refused("10.0.0.0/7").contains("larger than any network needs"));
        let t = refused("10.88.0.1/16");
        assert!(t.contains("host bits") && t.contains("10.88.0.0/16"), "{t}");
        assert!(refused("127.0.0.0/16").contains("loopback"));
        assert!(refused("169.254.0.0/24").contains("link-local"));
        assert!(refused("224.0.0.0/8").contains("multicast"));
        // The record stores the subnet as text and checks it when read back.
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "\"10.88.0.0/16\"");
        assert!(serde_json::from_str::<Subnet>("\"10.88.0.1/16\"").is_err());
    }

    #[test]
    fn overlap_rules() {
        assert!(sn("10.88.0.0/16").overlaps(&sn("10.88.0.0/16")));
        assert!(sn("10.88.0.0/16").overlaps(&sn("10.88.5.0/24")));
        assert!(sn("10.88.5.0/24").overlaps(&sn("10.88.0.0/16")));
        assert!(sn("10.0.0.0/8").overlaps(&sn("10.200.0.0/30")));
        assert!(!sn("10.88.0.0/16").overlaps(&sn("10.89.0.0/16")));
        assert!(!sn("192.168.1.0/25").overlaps(&sn("192.168.1.128/25")));
        assert!(sn("10.88.0.0/16").contains(Ipv4Addr::new(10, 88, 3, 4)));
        assert!(!sn("10.88.0.0/16").contains(Ipv4Addr::new(10, 87, 3, 4)));
    }

    #[test]
    fn proc_net_route_is_read_in_the_kernels_byte_order() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse_proc_net_route(text);
        assert_eq!(r.len(), 2, "the default route is left out: {r:?}");
        assert_eq!(r[0].subnet, sn("10.0.2.0/24"));
        assert_eq!(r[0].device, "eth0");
        assert_eq!(r[1].subnet, sn("172.17.0.0/16"));
        assert_eq!(
            r[1].to_string(),
            "the host's route 172.17.0.0/16 on docker0"
        );
    }

    #[test]
    fn the_hosts_own_addresses_are_seen() {
        // Every network namespace has lo with 127.0.0.1/8.
        let host = host_routes();
        assert!(
            host.iter().any(|r| r.device == "lo"
                && r.kind == "address"
                && r.subnet == Subnet::raw(Ipv4Addr::LOCALHOST, 8)),
            "{host:?}"
        );
    }

    fn host() -> Vec<HostRoute> {
        vec![
            HostRoute {
                subnet: sn("10.88.0.0/16"),
                device: "cni-podman0".into(),
                kind: "route",
            },
            HostRoute {
                subnet: sn("192.168.1.0/24"),
                device: "eth0".into(),
                kind: "address",
            },
        ]
    }

    #[test]
    fn networks_are_made_listed_and_removed_and_overlaps_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path();
        let h = host();
        let def = default_bridge_with_host(state, &h).unwrap();
        assert_eq!(def.name, "bridge");
        assert_eq!(def.bridge, "stagebox0");
        assert_eq!(
            def.subnet,
            sn("10.89.0.0/16"),
            "10.88/16 is the host's route, so the next candidate"
        );
        assert_eq!(def.gateway, Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(
            default_bridge_with_host(state, &h).unwrap(),
            def,
            "made once"
        );
        // Made once per state dir, even when 8 threads ask at once.
        let d8 = tempfile::tempdir().unwrap();
        let made: Vec<Network> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| default_bridge_with_host(d8.path(), &[]).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(made.iter().all(|n| *n == made[0]), "{made:?}");
        assert_eq!(made[0].subnet, sn("10.88.0.0/16"));
        // A record that does not read is reported, never overwritten.
        std::fs::write(d8.path().join("networks/bridge.json"), "{").unwrap();
        let t = default_bridge_with_host(d8.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(t.contains("is not a network record"), "{t}");
        assert_eq!(
            std::fs::read_to_string(d8.path().join("networks/bridge.json")).unwrap(),
            "{"
        );
        let n = create_with_host(state, "web", Some("10.200.1.0/24"), &h).unwrap();
        assert!(
            n.bridge.starts_with("stagebox-") && n.bridge.len() <= IFNAME_MAX,
            "{}",
            n.bridge
        );
        assert_ne!(n.bridge, bridge_name(Path::new("/elsewhere"), "web"));
        let text = std::fs::read_to_string(state.join("networks/web.json")).unwrap();
        assert!(text.contains("\"subnet\": \"10.200.1.0/24\""), "{text}");

        let before = std::fs::read_dir(state.join("networks")).unwrap().count();
        let one = |r: Result<Network>| {
            let e = r.unwrap_err();
            let t = e.to_string();
            assert!(matches!(e, Error::Usage(_)) && !t.contains('\n'), "{t}");
            t
        };
        let t = one(create_with_host(state, "web", Some("10.201.0.0/24"), &h));
        assert!(t.contains("exists already"), "{t}");
        let t = one(create_with_host(state, "db", Some("10.200.0.0/16"), &h));
        assert!(
            t.contains("overlaps network \"web\" (10.200.1.0/24)"),
            "{t}"
        );
        let t = one(create_with_host(state, "db", Some("10.89.7.0/24"), &h));
        assert!(t.contains("overlaps network \"bridge\""), "{t}");
        let t = one(create_with_host(state, "db", Some("192.168.0.0/16"), &h));
        assert!(
            t.contains("the host's address 192.168.1.0/24 on eth0"),
            "{t}"
        );
        let t = one(create_with_host(state, "db", Some("10.88.128.0/17"), &h));
        assert!(
            t.contains("the host's route 10.88.0.0/16 on cni-podman0"),
            "{t}"
        );
        let t = one(create_with_host(
            state,
            "bad/name",
            Some("10.50.0.0/24"),
            &h,
        ));
        assert!(t.contains("not a valid network name"), "{t}");
        let t = one(create_with_host(state, "none", None, &h));
        assert!(t.contains("mode of --network"), "{t}");
        let t = one(create_with_host(state, "db", Some("10.50.0.1/24"), &h));
        assert!(t.starts_with("--subnet"), "{t}");
        assert_eq!(
            std::fs::read_dir(state.join("networks")).unwrap().count(),
            before,
            "a refused create changed the state dir"
        );
        // A route on the network's own bridge (left by an earlier record) is its own.
        let mut h2 = h.clone();
        h2.push(HostRoute {
            subnet: sn("10.60.0.0/16"),
            device: bridge_name(state, "db"),
            kind: "route",
        });
        create_with_host(state, "db", Some("10.60.0.0/16"), &h2).unwrap();

        let names: Vec<String> = list(state).into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "db", "web"]);
        let v = inspect_json(state, "web").unwrap();
        assert_eq!(v["gateway"], "10.200.1.1");
        assert_eq!(v["leases"], serde_json::json!([]));
        let l = allocate(state, "web", "c1").unwrap();
        let t = remove(state, "web").unwrap_err().to_string();
        assert_eq!(
            t,
            "network \"web\" is in use by container c1; stop it first"
        );
        assert_eq!(
            inspect_json(state, "web").unwrap()["leases"][0]["holder"],
            "c1"
        );
        l.release().unwrap();
        remove(state, "web").unwrap();
        assert!(!state.join("networks/web").exists());
        assert!(!state.join("networks/web.json").exists());
        let t = remove(state, "web").unwrap_err().to_string();
        assert!(t.contains("no network named \"web\""), "{t}");
        let t = allocate(state, "web", "c").unwrap_err().to_string();
        assert!(t.contains("no network named \"web\""), "{t}");
    }

    #[test]
    fn addresses_are_taken_lowest_first_and_reused_after_release_or_death() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path();
        let net = create_with_host(state, "n", Some("10.70.0.0/24"), &[]).unwrap();
        let a = allocate(state, "n", "a").unwrap();
        let b = allocate(state, "n", "b").unwrap();
        let c = allocate(state, "n", "c").unwrap();
        assert_eq!(
            a.ip,
            Ipv4Addr::new(10, 70, 0, 2),
            "not the network address or the gateway"
        );
        assert_eq!(b.ip, Ipv4Addr::new(10, 70, 0, 3));
        assert_eq!(c.ip, Ipv4Addr::new(10, 70, 0, 4));
        assert_eq!(
            (a.prefix, a.gateway, a.bridge.as_str()),
            (24, net.gateway, net.bridge.as_str())
        );
        assert_eq!(a.cidr(), "10.70.0.2/24");
        let held = |s: &Path| -> Vec<String> {
            in_use(s, "n")
                .into_iter()
                .map(|u| format!("{} {}", u.ip, u.holder))
                .collect()
        };
        assert_eq!(held(state), ["10.70.0.2 a", "10.70.0.3 b", "10.70.0.4 c"]);
        assert_eq!(in_use(state, "n")[0].pid, Some(std::process::id()));
        b.release().unwrap();
        assert!(
            !leases_dir(state, "n").join("10.70.0.3").exists(),
            "release removes the file"
        );
        let d2 = allocate(state, "n", "d").unwrap();
        assert_eq!(
            d2.ip,
            Ipv4Addr::new(10, 70, 0, 3),
            "a released address is reused"
        );
        drop(a); // a holder that dies without releasing: the lock goes with it
        assert!(
            leases_dir(state, "n").join("10.70.0.2").exists(),
            "the stale file stays"
        );
        assert_eq!(held(state), ["10.70.0.3 d", "10.70.0.4 c"]);
        let e = allocate(state, "n", "e").unwrap();
        assert_eq!(
            e.ip,
            Ipv4Addr::new(10, 70, 0, 2),
            "a dead holder's address is reused"
        );
        assert_eq!(
            held(state)[0],
            "10.70.0.2 e",
            "the new holder's name is written"
        );
        drop(e);
        assert_eq!(prune(state).unwrap(), 1, "the stale file is pruned");
        assert!(!leases_dir(state, "n").join("10.70.0.2").exists());
        assert_eq!(
            held(state),
            ["10.70.0.3 d", "10.70.0.4 c"],
            "prune leaves held leases"
        );
        d2.release().unwrap();
        c.release().unwrap();
        assert!(in_use(state, "n").is_empty());
        let left: Vec<_> = std::fs::read_dir(leases_dir(state, "n")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_full_slash_29_is_one_sentence() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path();
        create_with_host(state, "small", Some("192.168.50.8/29"), &[]).unwrap();
        let held: Vec<Lease> = (0..5)
            .map(|i| allocate(state, "small", &format!("c{i}")).unwrap())
            .collect();
        let ips: Vec<String> = held.iter().map(|l| l.ip.to_string()).collect();
        assert_eq!(
            ips,
            [
                "192.168.50.10",
                "192.168.50.11",
                "192.168.50.12",
                "192.168.50.13",
                "192.168.50.14"
            ],
            "not .8 (network), .9 (gateway) or .15 (broadcast)"
        );
        let e = allocate(state, "small", "c5").unwrap_err();
        let t = e.to_string();
        assert!(matches!(e, Error::Usage(_)), "{t}");
        assert_eq!(
            t,
            "all 5 addresses of network \"small\" (192.168.50.8/29) are in use by running containers; stop one, or make a network with a larger --subnet"
        );
        assert_eq!(
            in_use(state, "small").len(),
            5,
            "the failed allocation took nothing"
        );
        for l in held {
            l.release().unwrap();
        }
        assert!(in_use(state, "small").is_empty());
    }
}
