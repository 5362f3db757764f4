//! The host side of a bridge network: the bridge device with the gateway address, the
//! firewall rules that let its containers out (masquerade, forwarding), and the kernel's
//! `ip_forward` switch. Made on first use, as Docker makes docker0, and kept while the
//! network exists.
//!
//! Where a network lives: the default network `bridge` (device `stagebox0`) is one per host,
//! whatever state directory a run uses, so its record and address leases are kept in
//! [`SHARED_HOME`] (/run: the bridge, too, is gone after a reboot). A network made with
//! `stagebox network create` belongs to its state directory.

use super::firewall::{Firewall, NftRecord};
use super::ipam::{self, Network};
use crate::error::{Error, Result};
use crate::kernel::netlink::{Netlink, NetlinkError};
use crate::kernel::sys::SyscallRecord;
use std::path::{Path, PathBuf};

/// Where the default network's record and leases live (as root).
pub const SHARED_HOME: &str = "/run/stagebox";

/// The kernel's switch for routing between interfaces; off, nothing leaves a bridge.
pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The directory network `name` keeps its record and leases under: [`SHARED_HOME`] for the
/// default network when root runs it, else the state directory.
pub fn home(state: &Path, name: &str) -> PathBuf {
    if name == ipam::DEFAULT_NETWORK && nix::unistd::geteuid().is_root() {
        PathBuf::from(SHARED_HOME)
    } else {
        state.to_path_buf()
    }
}

/// Network `name`'s record; the default network is made on first use.
pub fn load_or_default(state: &Path, name: &str) -> Result<Network> {
    let home = home(state, name);
    if name == ipam::DEFAULT_NETWORK {
        ipam::default_bridge(&home)
    } else {
        ipam::load(&home, name)
    }
}

/// Every network this state directory sees: its own and the default one.
pub fn list(state: &Path) -> Vec<Network> {
    let mut v = ipam::list(state);
    let shared = home(state, ipam::DEFAULT_NETWORK);
    if shared != state {
        v.retain(|n| n.name != ipam::DEFAULT_NETWORK);
        v.extend(
            ipam::list(&shared)
                .into_iter()
                .filter(|n| n.name == ipam::DEFAULT_NETWORK),
        );
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn nl_err(e: NetlinkError) -> Error {
    Error::Stage {
        stage: "net".into(),
        message: e.to_string(),
    }
}

fn nft_records(v: Vec<NftRecord>) -> impl Iterator<Item = SyscallRecord> {
    v.into_iter().map(|r| SyscallRecord {
        call: format!("nft -f - <<< {}", r.call.trim_end().replace('\n', "; ")),
        result: r.result,
    })
}

/// What making sure of a network did: the requests made (empty when everything was there)
/// and sentences for the trace.
#[derive(Debug, Default)]
pub struct Ensured {
    pub records: Vec<SyscallRecord>,
    pub notes: Vec<String>,
    /// Why this kernel cannot make the bridge (no bridge support, and no module loaded for
    /// it): nothing was changed.
    pub unsupported: Option<String>,
}

/// Makes network `net`'s bridge (address, up) and its firewall rules when the bridge is
/// missing, and turns on `ip_forward` when it is off, as Docker does. Serialised by a lock
/// per bridge, so that concurrent first runs make it once.
pub fn ensure(net: &Network) -> Result<Ensured> {
    let mut out = Ensured::default();
    let mut nl = Netlink::open().map_err(nl_err)?;
    if nl.index(&net.bridge).is_err() {
        std::fs::create_dir_all(SHARED_HOME)
            .map_err(|e| Error::io(format!("create {SHARED_HOME}"), e))?;
        let _lock = crate::state::lease::lock_exclusive(
            &Path::new(SHARED_HOME).join(format!(".{}.lock", net.bridge)),
        )?;
        if nl.index(&net.bridge).is_err() {
            if let Err(NetlinkError::Kernel {
                errno: nix::errno::Errno::EOPNOTSUPP,
                ..
            }) = nl.create_bridge(&net.bridge)
            {
                out.unsupported = Some(format!(
                    "this kernel cannot make the bridge {} (no bridge support built in or loaded; stagebox never loads a module): use --network none, or load the bridge and veth modules",
                    net.bridge
                ));
                return Ok(out);
            }
            let r = nl
                .index(&net.bridge)
                .map(|_| ())
                .and_then(|()| nl.add_address(&net.bridge, net.gateway, net.subnet.prefix))
                .and_then(|()| nl.set_up(&net.bridge));
            out.records.extend(nl.take_log());
            r.map_err(nl_err)?;
            out.notes.push(format!(
                "bridge {} made with {}/{}: the containers' gateway (it stays while network {:?} exists, as docker0 does)",
                net.bridge, net.gateway, net.subnet.prefix, net.name
            ));
            let mut fw = Firewall::new().map_err(fw_err)?;
            let recs = fw
                .add_masquerade(net.subnet.addr, net.subnet.prefix, &net.bridge)
                .map_err(fw_err)?;
            out.records.extend(nft_records(recs));
            if let Ok(Some(why)) = fw.forward_blocked(&net.bridge) {
                out.notes.push(why);
            }
        }
    }
    match std::fs::read_to_string(IP_FORWARD) {
        Ok(v) if v.trim() == "1" => {}
        _ => {
            let r = std::fs::write(IP_FORWARD, "1");
            out.records.push(SyscallRecord {
                call: format!("write({IP_FORWARD:?}, \"1\")"),
                result: match &r {
                    Ok(()) => "0".into(),
                    Err(e) => e.to_string(),
                },
            });
            r.map_err(|e| Error::io(format!("write {IP_FORWARD}"), e))?;
            out.notes.push(
                "ip_forward was off: turned on, as Docker does, so packets may pass from the bridge to the host's other interfaces"
                    .into(),
            );
        }
    }
    Ok(out)
}

fn fw_err(e: super::firewall::FirewallError) -> Error {
    Error::Stage {
        stage: "net".into(),
        message: e.to_string(),
    }
}

/// `network rm`: deletes the bridge device and the network's firewall rules (the record is
/// removed by `ipam::remove` first, which refuses a network in use).
pub fn remove(net: &Network) -> Result<Vec<SyscallRecord>> {
    let mut out = Vec::new();
    let mut nl = Netlink::open().map_err(nl_err)?;
    match nl.delete_link(&net.bridge) {
        Ok(()) | Err(NetlinkError::NoSuchLink(_)) => {}
        Err(NetlinkError::Kernel {
            errno: nix::errno::Errno::ENODEV,
            ..
        }) => {}
        Err(e) => return Err(nl_err(e)),
    }
    out.extend(nl.take_log());
    if let Ok(mut fw) = Firewall::new() {
        out.extend(nft_records(fw.remove_network(&net.bridge).map_err(fw_err)?));
        out.extend(nft_records(fw.remove_table_if_unused().map_err(fw_err)?));
    }
    Ok(out)
}
