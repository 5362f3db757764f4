//! # net: a network stack of its own
//!
//! A network namespace has its own interfaces, addresses, routes, firewall rules and port
//! numbers. `unshare(CLONE_NEWNET)` gives the container a fresh one that holds a single
//! interface, the loopback `lo`, and even that one starts down: without
//! `ioctl(SIOCSIFFLAGS, IFF_UP)` on lo, even 127.0.0.1 is unreachable. From the outside,
//! /proc/PID/net/dev lists only `lo`; the host's eth0 is not there. Reaching the outside world
//! needs a veth pair, which a later stage adds.
//!
//! Why here in the order: after pid (nothing depends on it either way) and before the mount
//! namespace, so that /sys, mounted by the proc stage, shows this namespace's interfaces
//! (sysfs shows the network namespace of the process that mounts it).

use super::{unshare_checked, ChildCtx, Stage, StageError, StageId, StageInfo};
use nix::sched::CloneFlags;

pub struct Net;

static INFO: StageInfo = StageInfo {
    id: StageId::Net,
    summary: "new network namespace: only the loopback interface, brought up",
    shows: "ns/net inode, interface list",
    default_on: true,
    lesson: "06-ipc-and-net",
    requires: &[],
};

impl Stage for Net {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
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
}
