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

#[cfg(test)]
mod tests {
    #[test]
    fn inode_of_a_link() {
        assert_eq!(super::inode("uts:[4026531838]"), Some(4026531838));
        assert_eq!(super::inode("uts"), None);
        assert!(super::own("uts").unwrap().starts_with("uts:["));
    }
}
