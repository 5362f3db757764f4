//! # net: a network stack of its own
//!
//! A network namespace has its own interfaces, addresses, routes, firewall rules and port
//! numbers. `unshare(CLONE_NEWNET)` gives the container a fresh one that holds a single
//! interface, the loopback `lo`, and even that one starts down: without
//! `ioctl(SIOCSIFFLAGS, IFF_UP)` on lo, even 127.0.0.1 is unreachable. From the outside,
//! /proc/PID/net/dev lists only `lo`; the host's eth0 is not there. That is `--network none`.
//!
//! `--network bridge` (Docker's default) connects the namespace to the host with a **veth
//! pair**: two interfaces joined like the ends of a cable, whatever enters one leaves the
//! other. The runtime asks the kernel over rtnetlink for the pair with one end already in the
//! container's namespace (`RTM_NEWLINK` with `IFLA_NET_NS_PID`; making it on the host and
//! moving it costs ten times more), named `eth0` there. The host end is plugged into a
//! **bridge** (`stagebox0`, a software switch with the gateway address), and the container
//! process gives its `eth0` a leased address and a default route via the bridge. Packets for
//! the world leave through the host's masquerade rule (nftables, `network::firewall`).
//! Published ports (`-p`) come in through a proxy in the runtime (`network::proxy`).
//!
//! `--network container:NAME` makes no namespace: `setns(2)` joins the other container's,
//! so both see the same interfaces and the same 127.0.0.1. `--network host` is this stage off.
//! An OCI config joins by path the same way (`linux.namespaces[i].path`): podman names
//! `/run/netns/netns-UUID`, a namespace file its network backend already wired (`ip netns
//! add` makes such files: a bind mount of /proc/PID/ns/net that keeps the namespace alive
//! with no process in it), and the containers of a pod name their infra container's. The
//! stage reads back that /proc/self/ns/net has the inode of the file it joined.
//!
//! Why here in the order: after pid (nothing depends on it either way), after user (so the
//! new namespace belongs to the container's user namespace, and its root may configure it),
//! and before the mount namespace, so that /sys, mounted by the proc stage, shows this
//! namespace's interfaces (sysfs shows the network namespace of the process that mounts it).

use super::{
    setns_checked, unshare_checked, ChildCtx, ChildSpec, HostCtx, NetHostData, NetSetup, Stage,
};
use super::{StageError, StageId, StageInfo};
use crate::kernel::netlink::{Netlink, NetlinkError, Netns};
use nix::sched::CloneFlags;

pub struct Net;

static INFO: StageInfo = StageInfo {
    id: StageId::Net,
    summary: "new network namespace: loopback up, and a veth into a bridge (--network)",
    shows: "ns/net inode, interface list",
    default_on: true,
    lesson: "13-how-a-packet-gets-in",
    requires: &[],
};

/// The container's end of the veth pair.
pub const CONTAINER_IF: &str = "eth0";

fn nl_err(e: NetlinkError) -> StageError {
    StageError::msg(e.to_string())
}

fn host_err(e: NetlinkError) -> crate::Error {
    crate::Error::Stage {
        stage: "net".into(),
        message: e.to_string(),
    }
}

impl Stage for Net {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        if let NetSetup::Join { name, pid } = &ctx.spec.net {
            return join(ctx, name, *pid);
        }
        if let Some(path) = ctx.spec.join_path(StageId::Net) {
            let path = path.to_path_buf();
            let ino = setns_checked(ctx, &path, CloneFlags::CLONE_NEWNET, "net", "join")?;
            let names: Vec<String> = crate::kernel::netif::own_interfaces()
                .into_iter()
                .map(|(n, up)| if up { n } else { format!("{n} (down)") })
                .collect();
            ctx.note(format!(
                "joined the network namespace net:[{ino}] of {}: interfaces {}",
                path.display(),
                names.join(", ")
            ));
            return Ok(());
        }
        unshare_checked(ctx, CloneFlags::CLONE_NEWNET, "net")?;
        ctx.sys
            .link_up("lo")
            .map_err(|e| StageError::sys("ioctl(SIOCSIFFLAGS, lo, IFF_UP)", e))?;
        if ctx.verify {
            let ifaces = crate::kernel::netif::own_interfaces();
            let names: Vec<&str> = ifaces.iter().map(|(n, _)| n.as_str()).collect();
            if names != ["lo"] {
                return Err(StageError::no_effect(format!(
                    "the new network namespace lists {names:?}, expected only lo"
                )));
            }
            if !ifaces[0].1 {
                return Err(StageError::no_effect("lo is still down after SIOCSIFFLAGS"));
            }
        }
        Ok(())
    }

    fn parent_acts_midway(&self, spec: &ChildSpec) -> bool {
        matches!(spec.net, NetSetup::Veth { .. })
    }

    /// From the host: the veth pair, its container end made directly in the container's
    /// namespace, its host end plugged into the bridge and brought up.
    fn parent_after(&self, ctx: &mut HostCtx<'_>, pid: nix::unistd::Pid) -> crate::Result<()> {
        // What the runtime did before the fork (the bridge, the lease), traced here.
        let mut listeners = None;
        if let Some(data) = ctx.data.get_mut(&StageId::Net) {
            if let Some(d) = data.downcast_mut::<NetHostData>() {
                ctx.records.append(&mut d.records);
                ctx.notes.append(&mut d.notes);
                listeners = d.listeners.take();
            }
        }
        if let NetSetup::Veth {
            bridge, host_end, ..
        } = ctx.net.clone()
        {
            veth(ctx, pid, &bridge, &host_end)?;
        }
        if let Some(l) = listeners {
            let proxy = publish(ctx, pid, l)?;
            if let Some(data) = ctx.data.get_mut(&StageId::Net) {
                if let Some(d) = data.downcast_mut::<NetHostData>() {
                    d.proxy = Some(proxy);
                }
            }
        }
        Ok(())
    }

    /// In the container's namespace: its end gets the leased address, comes up, and routes
    /// everything else via the bridge's address. Then each is read back over netlink.
    fn apply_after_parent(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let NetSetup::Veth {
            ip,
            prefix,
            gateway,
            ..
        } = ctx.spec.net.clone()
        else {
            return Ok(());
        };
        let mut nl = Netlink::open().map_err(nl_err)?;
        let r = nl
            .add_address(CONTAINER_IF, ip, prefix)
            .and_then(|()| nl.set_up(CONTAINER_IF))
            .and_then(|()| nl.add_default_route(gateway));
        ctx.records.extend(nl.take_log());
        r.map_err(nl_err)?;
        if ctx.verify {
            let addrs = nl.addresses().map_err(nl_err)?;
            if !addrs
                .iter()
                .any(|a| a.link == CONTAINER_IF && a.address == ip && a.prefix == prefix)
            {
                return Err(StageError::no_effect(format!(
                    "{CONTAINER_IF} does not hold {ip}/{prefix} after RTM_NEWADDR"
                )));
            }
            let routes = nl.routes().map_err(nl_err)?;
            if !routes
                .iter()
                .any(|r| r.destination.is_none() && r.gateway == Some(gateway))
            {
                return Err(StageError::no_effect(format!(
                    "no default route via {gateway} after RTM_NEWROUTE"
                )));
            }
            let up = crate::kernel::netif::own_interfaces()
                .into_iter()
                .any(|(n, up)| n == CONTAINER_IF && up);
            if !up {
                return Err(StageError::no_effect(format!(
                    "{CONTAINER_IF} is still down after RTM_NEWLINK IFF_UP"
                )));
            }
            nl.take_log();
        }
        ctx.note(format!(
            "{CONTAINER_IF} {ip}/{prefix}, default route via {gateway} (the bridge): read back over netlink"
        ));
        Ok(())
    }
}

/// The veth pair, its container end made directly in the container's namespace, its host
/// end plugged into the bridge and brought up.
fn veth(
    ctx: &mut HostCtx<'_>,
    pid: nix::unistd::Pid,
    bridge: &str,
    host_end: &str,
) -> crate::Result<()> {
    let mut nl = Netlink::open().map_err(host_err)?;
    let made = nl.create_veth(
        host_end,
        CONTAINER_IF,
        Some(Netns::Pid(pid.as_raw() as u32)),
    );
    let r = made
        .and_then(|()| nl.set_master(host_end, bridge))
        .and_then(|()| nl.set_up(host_end));
    ctx.records.extend(nl.take_log());
    // No undo: the pair goes with the namespace when the container's last process exits
    // (the kernel's cleanup_net, a moment later). Deleting the host end by hand would make
    // every run wait about 20 ms for RCU.
    r.map_err(host_err)?;
    ctx.note(format!(
        "veth pair: {host_end} on the host, in bridge {bridge}; {CONTAINER_IF} in the container's namespace (made there, never moved)"
    ));
    Ok(())
}

/// `-p`: the proxy's threads join the container's network namespace (as root), or a helper
/// process joins its user namespace and then its network namespace (rootless: setns into a
/// network namespace needs CAP_SYS_ADMIN in the caller's own user namespace too).
fn publish(
    ctx: &mut HostCtx<'_>,
    pid: nix::unistd::Pid,
    listeners: crate::network::proxy::Listeners,
) -> crate::Result<crate::network::proxy::Proxy> {
    let open = |what: &str| {
        let path = format!("/proc/{pid}/ns/{what}");
        std::fs::File::open(&path)
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| crate::Error::io(format!("open {path}"), e))
    };
    let netns = open("net")?;
    let root = nix::unistd::geteuid().is_root();
    let published = listeners.published();
    let proxy = if root {
        crate::network::proxy::start(listeners, netns)
    } else {
        crate::network::proxy::start_in_userns(listeners, open("user")?, netns)
    }
    .map_err(|e| crate::Error::Stage {
        stage: "net".into(),
        message: e.to_string(),
    })?;
    ctx.record(
        if root {
            format!("setns(open(\"/proc/{pid}/ns/net\"), CLONE_NEWNET) in each proxy thread")
        } else {
            format!("fork(); setns(/proc/{pid}/ns/user); setns(/proc/{pid}/ns/net) in the proxy's helper")
        },
        "0",
    );
    for p in &published {
        ctx.note(format!(
            "published {p}: the proxy listens on the host and connects to 127.0.0.1:{} from inside the container's namespace",
            p.container_port
        ));
    }
    Ok(proxy)
}

/// `--network container:NAME`: setns into the other container's network namespace, then
/// check that ns/net is now its inode.
fn join(ctx: &mut ChildCtx<'_>, name: &str, pid: i32) -> Result<(), StageError> {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    if let Err(e) = std::fs::metadata(&path) {
        return Err(StageError::msg(format!(
            "container {name} (host pid {pid}) is gone: {}: {e}",
            path.display()
        )));
    }
    setns_checked(
        ctx,
        &path,
        CloneFlags::CLONE_NEWNET,
        "net",
        &format!("container {name}"),
    )?;
    ctx.note(format!(
        "joined container {name}'s network namespace: the same interfaces, addresses and 127.0.0.1"
    ));
    Ok(())
}
