//! Network interfaces as the kernel reports them: SIOCGIFFLAGS / SIOCSIFFLAGS on a socket,
//! and /proc/PID/net/dev for the list of interfaces in a process's network namespace.

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

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_net_dev() {
        let t = "Inter-|   Receive\n face |bytes\n    lo: 0 0 0\n  eth0: 1 2 3\n";
        assert_eq!(parse_net_dev(t), vec!["lo", "eth0"]);
    }
}
