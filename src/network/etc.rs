//! The three files every container gets in /etc, as Docker's "init layer" gives them:
//! `/etc/hostname`, `/etc/hosts` (localhost, the container itself, its network peers) and
//! `/etc/resolv.conf` (the host's, without loopback resolvers a container cannot reach).
//! They are written into the container's state directory and bind-mounted over the image's
//! files by the volumes stage, so what the container writes to them never reaches its
//! layer, and `commit` never sees them.

use crate::error::{Error, Result};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Docker's resolvers when the host has none a container can reach.
pub const FALLBACK_RESOLVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The paths inside the container, with the file name used in the container's directory.
pub const FILES: &[(&str, &str)] = &[
    ("/etc/hostname", "hostname"),
    ("/etc/hosts", "hosts"),
    ("/etc/resolv.conf", "resolv.conf"),
];

/// `/etc/hosts`: Docker's lines for localhost, then the container (its address with its
/// hostname and, when different, its name), then each peer on its network.
pub fn hosts(
    hostname: &str,
    name: &str,
    ip: Option<Ipv4Addr>,
    peers: &[(Ipv4Addr, String)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        s.push_str(&own_line(ip, hostname, name));
    }
    for (ip, peer) in peers {
        s.push_str(&format!("{ip}\t{peer}\n"));
    }
    s
}

fn own_line(ip: Ipv4Addr, hostname: &str, name: &str) -> String {
    if hostname == name {
        format!("{ip}\t{hostname}\n")
    } else {
        format!("{ip}\t{hostname} {name}\n")
    }
}

/// `/etc/resolv.conf` from the host's: nameserver lines with a loopback address (systemd-
/// resolved's 127.0.0.53) are dropped, since inside the container 127.0.0.1 is the
/// container; with none left, Docker's fallback resolvers. `keep_loopback` (the host's
/// network) keeps the file as it is.
pub fn resolv_conf(host: &str, keep_loopback: bool) -> String {
    if keep_loopback {
        return host.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            let loopback = addr
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
            if loopback {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for r in FALLBACK_RESOLVERS {
            out.push_str(&format!("nameserver {r}\n"));
        }
    }
    out
}

/// Writes the three files into `dir` (the container's state directory), readable inside.
/// Returns (path inside, file on the host) for each.
pub fn write_all(
    dir: &Path,
    hostname: &str,
    hosts: &str,
    resolv: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for (inside, file) in FILES {
        let text = match *file {
            "hostname" => format!("{hostname}\n"),
            "hosts" => hosts.to_string(),
            _ => resolv.to_string(),
        };
        let path = dir.join(file);
        crate::state::atomic::write_atomic(&path, text.as_bytes())?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        out.push((inside.to_string(), path));
    }
    Ok(out)
}

/// Adds a line for a container that joined later to a peer's hosts file, in place: the file
/// is bind-mounted in the peer, so it must stay the same inode.
pub fn add_peer(hosts_file: &Path, ip: Ipv4Addr, name: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(hosts_file)
        .map_err(|e| Error::io(format!("open {}", hosts_file.display()), e))?;
    f.write_all(format!("{ip}\t{name}\n").as_bytes())
        .map_err(|e| Error::io(format!("append to {}", hosts_file.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_drops_loopback_and_falls_back() {
        let host = "# generated\nnameserver 127.0.0.53\noptions edns0\nsearch lan\n";
        let r = resolv_conf(host, false);
        assert!(!r.contains("127.0.0.53"), "{r}");
        assert!(r.contains("search lan"));
        assert!(
            r.contains("nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
            "{r}"
        );
        let r = resolv_conf("nameserver 10.0.0.1\nnameserver ::1\n", false);
        assert_eq!(r, "nameserver 10.0.0.1\n");
        assert_eq!(resolv_conf(host, true), host);
    }

    #[test]
    fn hosts_lists_self_and_peers() {
        let h = hosts(
            "web",
            "web",
            Some(Ipv4Addr::new(10, 88, 0, 2)),
            &[(Ipv4Addr::new(10, 88, 0, 3), "db".into())],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.88.0.2\tweb\n"));
        assert!(h.contains("10.88.0.3\tdb\n"));
        let h = hosts("abc", "web", Some(Ipv4Addr::new(10, 88, 0, 2)), &[]);
        assert!(h.contains("10.88.0.2\tabc web\n"), "{h}");
        assert!(!hosts("abc", "web", None, &[]).contains("abc"));
    }
}
