//! The one reader of /proc/PID/mountinfo (proc(5)).
//!
//! Each line is one mount as the reading process sees it:
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)  (4)   (5)     (6)       (7)   (8) (9)    (10)        (11)
//! ```
//!
//! mount id, parent id, st_dev, root of the mount within its filesystem, mount point
//! (relative to the reader's root), per-mount options, optional fields (propagation:
//! `shared:N`, `master:N`, `propagate_from:N`, `unbindable`), a `-` separator, filesystem
//! type, source, per-superblock options. Paths escape space, tab, newline and backslash as
//! octal (`\040`); they are decoded here.
//!
//! mountinfo lists only the mounts under the reader's root directory: after a chroot the
//! count drops although nothing was unmounted.

use std::path::Path;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_id: i32,
    pub parent_id: i32,
    /// major:minor of the filesystem.
    pub dev: String,
    /// The directory of the filesystem that this mount shows (a bind mount of a subdirectory
    /// shows that subdirectory here).
    pub root: String,
    pub mount_point: String,
    /// Per-mount options: `rw,nosuid,relatime`.
    pub mount_opts: String,
    /// The optional fields: `shared:1`, `master:3` ... (empty: private).
    pub propagation: Vec<String>,
    pub fs_type: String,
    /// The source as the filesystem names it (`/dev/vda`, `overlay`, `none`).
    pub source: String,
    /// Per-superblock options (for cgroup v1: the controllers, e.g. `rw,cpu,cpuacct`).
    pub super_opts: String,
}

impl Mount {
    /// Does a mount or unmount below this mount propagate to (and from) a peer group?
    pub fn is_shared(&self) -> bool {
        self.propagation.iter().any(|t| t.starts_with("shared:"))
    }
    /// `shared:1 master:3`, or `private` when there is no optional field.
    pub fn propagation_str(&self) -> String {
        if self.propagation.is_empty() {
            "private".into()
        } else {
            self.propagation.join(" ")
        }
    }
    pub fn is_at(&self, path: &Path) -> bool {
        Path::new(&self.mount_point) == path
    }
}

/// Parses one line; None for a line that is not a mountinfo line.
pub fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split_whitespace().collect();
    let r: Vec<&str> = right.split_whitespace().collect();
    if l.len() < 6 || r.is_empty() {
        return None;
    }
    Some(Mount {
        mount_id: l[0].parse().ok()?,
        parent_id: l[1].parse().ok()?,
        dev: l[2].to_string(),
        root: unescape_octal(l[3]),
        mount_point: unescape_octal(l[4]),
        mount_opts: l[5].to_string(),
        propagation: l[6..].iter().map(|s| s.to_string()).collect(),
        fs_type: r[0].to_string(),
        source: r.get(1).map(|s| unescape_octal(s)).unwrap_or_default(),
        super_opts: r.get(2).map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// Every parsable line of a mountinfo text.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// The mounts the calling process sees (/proc/self/mountinfo).
pub fn read_self() -> std::io::Result<Vec<Mount>> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse(&t))
}

/// The mounts process `pid` sees (/proc/PID/mountinfo), read from outside.
pub fn read_pid(pid: i32) -> std::io::Result<Vec<Mount>> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map(|t| parse(&t))
}

/// The topmost mount at `path` (the last line for it: later mounts cover earlier ones).
pub fn top_at<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.is_at(path))
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed() {
        let l = parse_line(
            "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 shared:4 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(l.mount_point, "/mnt two");
        assert_eq!(l.root, "/mnt1");
        assert_eq!(l.fs_type, "ext3");
        assert_eq!(l.source, "/dev/root");
        assert_eq!(l.super_opts, "rw,errors=continue");
        assert!(l.is_shared());
        assert_eq!(l.propagation_str(), "master:1 shared:4");
        let m = parse("1 0 0:1 / / rw - rootfs rootfs rw\n27 1 254:0 / / rw - ext4 /dev/vda rw\n");
        assert_eq!(
            top_at(&m, Path::new("/")).map(|m| m.fs_type.as_str()),
            Some("ext4")
        );
        assert_eq!(m[1].propagation_str(), "private");
        assert!(parse_line("not a mountinfo line").is_none());
    }

    #[test]
    fn own_mountinfo_has_a_root() {
        let m = read_self().unwrap();
        assert!(m.iter().any(|m| m.mount_point == "/"));
    }
}
