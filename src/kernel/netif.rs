//! Network interfaces as the kernel reports them: SIOCGIFFLAGS / SIOCSIFFLAGS on a socket,
//! /proc/PID/net/dev for the list of interfaces in a process's network namespace, and the
//! one parser of /proc/PID/net/route (IPv4 routes) and /proc/PID/net/fib_trie (its local
//! IPv4 addresses).

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn ifreq(name: &str) -> Result<libc::ifreq, Errno> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for (i, b) in bytes.iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    Ok(req)
}

fn socket() -> Result<OwnedFd, Errno> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface's flags (IFF_*), read with ioctl(SIOCGIFFLAGS).
pub fn flags(name: &str) -> Result<i32, Errno> {
    let sock = socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: req is a valid ifreq and lives across the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: SIOCGIFFLAGS fills the ifru_flags member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as i32)
}

/// Sets IFF_UP on the interface.
pub fn set_up(name: &str) -> Result<(), Errno> {
    let sock = socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: writing the flags member we just read.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Interface names listed in a /proc/.../net/dev file.
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Interfaces of the calling process's network namespace, each with whether it is up.
pub fn own_interfaces() -> Vec<(String, bool)> {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    parse_net_dev(&text)
        .into_iter()
        .map(|n| {
            let up = flags(&n).map(|f| f & libc::IFF_UP != 0).unwrap_or(false);
            (n, up)
        })
        .collect()
}

/// One line of /proc/net/route: the main table's IPv4 routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    pub device: String,
    pub destination: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<std::net::Ipv4Addr>,
}

impl std::fmt::Display for RouteLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}/{}", self.destination, self.prefix)?;
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        write!(f, " dev {}", self.device)
    }
}

/// Parses /proc/net/route: hex destination, gateway and mask, each the native-endian u32 of
/// the address's network-order bytes.
pub fn parse_routes(text: &str) -> Vec<RouteLine> {
    let ip = |h: &str| {
        u32::from_str_radix(h, 16)
            .ok()
            .map(|v| std::net::Ipv4Addr::from(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let (dest, gw, mask) = (ip(f[1])?, ip(f[2])?, ip(f[7])?);
            Some(RouteLine {
                device: f[0].to_string(),
                destination: dest,
                prefix: u32::from(mask).leading_ones() as u8,
                gateway: (!gw.is_unspecified()).then_some(gw),
            })
        })
        .collect()
}

/// The local IPv4 addresses in /proc/net/fib_trie: each `|-- ADDR` followed by a
/// `/32 host LOCAL` line, once each, in order.
pub fn parse_local_addresses(text: &str) -> Vec<std::net::Ipv4Addr> {
    let mut out: Vec<std::net::Ipv4Addr> = Vec::new();
    let mut last: Option<std::net::Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if let Ok(a) = t.parse::<std::net::Ipv4Addr>() {
            last = Some(a);
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.take() {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The routes of the calling process's network namespace, as `ip route` would print them.
pub fn own_routes() -> Vec<String> {
    parse_routes(&std::fs::read_to_string("/proc/self/net/route").unwrap_or_default())
        .iter()
        .map(|r| r.to_string())
        .collect()
}

/// The local IPv4 addresses of the calling process's network namespace.
pub fn own_addresses() -> Vec<String> {
    parse_local_addresses(&std::fs::read_to_string("/proc/self/net/fib_trie").unwrap_or_default())
        .iter()
        .map(|a| a.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_net_dev() {
        let t = "Inter-|   Receive\n face |bytes\n    lo: 0 0 0\n  eth0: 1 2 3\n";
        assert_eq!(parse_net_dev(t), vec!["lo", "eth0"]);
    }

    #[test]
    fn parses_routes_and_local_addresses() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0100580A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r: Vec<String> = parse_routes(route).iter().map(|r| r.to_string()).collect();
        assert_eq!(
            r,
            vec!["default via 10.88.0.1 dev eth0", "10.88.0.0/16 dev eth0"]
        );
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.88.0.2\n        /32 host LOCAL\nLocal:\n     |-- 10.88.0.2\n        /32 host LOCAL\n     |-- 10.88.0.255\n        /32 link BROADCAST\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        let a: Vec<String> = parse_local_addresses(trie)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(a, vec!["10.88.0.2", "127.0.0.1"]);
    }
}
