//! Namespaces as /proc shows them: each `/proc/PID/ns/NAME` is a symbolic link whose text is
//! `NAME:[INODE]`. Two processes are in the same namespace exactly when the inodes match, so
//! comparing these links before and after unshare(2) is how a stage proves it took effect.

/// Namespace links in /proc/PID/ns, in the order the trace prints them.
pub const NAMES: &[&str] = &[
    "user",
    "uts",
    "ipc",
    "pid",
    "pid_for_children",
    "net",
    "cgroup",
    "mnt",
    "time",
];

/// The link text of the calling process's namespace NAME, `uts:[4026531838]`.
pub fn own(name: &str) -> std::io::Result<String> {
    std::fs::read_link(format!("/proc/self/ns/{name}")).map(|p| p.to_string_lossy().into_owned())
}

/// The inode number in a namespace link, `uts:[4026531838]` -> 4026531838.
pub fn inode(link: &str) -> Option<u64> {
    link.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()
}

/// The type of the namespace a file names (`/proc/PID/ns/TYPE`, or a bind mount of one such
/// as `/run/netns/NAME`), as the /proc/PID/ns link calls it: `net`, `ipc`, `uts` ...
/// Asked of the kernel with `ioctl(NS_GET_NSTYPE)`. Ok(None): the file is not a namespace.
pub fn file_type(path: &std::path::Path) -> std::io::Result<Option<&'static str>> {
    use std::os::fd::AsRawFd as _;
    // NS_GET_NSTYPE = _IO(0xb7, 0x3), linux/nsfs.h.
    const NS_GET_NSTYPE: libc::c_ulong = (0xb7 << 8) | 0x3;
    let file = std::fs::File::open(path)?;
    // SAFETY: the ioctl takes no argument and only reads the descriptor we own.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(match r {
        libc::CLONE_NEWNET => Some("net"),
        libc::CLONE_NEWIPC => Some("ipc"),
        libc::CLONE_NEWUTS => Some("uts"),
        libc::CLONE_NEWPID => Some("pid"),
        libc::CLONE_NEWNS => Some("mnt"),
        libc::CLONE_NEWUSER => Some("user"),
        libc::CLONE_NEWCGROUP => Some("cgroup"),
        0x80 => Some("time"), // CLONE_NEWTIME
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn inode_of_a_link() {
        assert_eq!(super::inode("uts:[4026531838]"), Some(4026531838));
        assert_eq!(super::inode("uts"), None);
        assert!(super::own("uts").unwrap().starts_with("uts:["));
    }

    #[test]
    fn type_of_a_namespace_file() {
        let p = std::path::Path::new;
        assert_eq!(
            super::file_type(p("/proc/self/ns/net")).unwrap(),
            Some("net")
        );
        assert_eq!(
            super::file_type(p("/proc/self/ns/uts")).unwrap(),
            Some("uts")
        );
        assert_eq!(super::file_type(p("/proc/self/status")).unwrap(), None);
    }
}
