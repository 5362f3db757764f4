//! User and group id mappings: the lines of /proc/PID/uid_map and gid_map, the
//! `CONTAINER:HOST:SIZE` flags that ask for them, the subordinate ranges of /etc/subuid and
//! /etc/subgid, and the mount API calls that give a mount an idmapping
//! (open_tree, mount_setattr with MOUNT_ATTR_IDMAP, move_mount).
//!
//! A map line `0 100000 65536` says: ids 0..65535 inside the user namespace are ids
//! 100000..165535 outside it (in the namespace that made it). An id with no line is not
//! mapped: the kernel shows it inside as the overflow id 65534 ("nobody"), and a process whose
//! own id is unmapped cannot create files.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One line of a uid_map or gid_map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// The first id inside the namespace.
    pub inside: u32,
    /// The id it is outside (in the parent namespace).
    pub outside: u32,
    pub count: u32,
}

/// The most lines a map may have (the kernel's limit since 4.15).
pub const MAX_LINES: usize = 340;

impl IdMap {
    /// The id outside for `id` inside, if this line maps it.
    pub fn to_outside(&self, id: u32) -> Option<u32> {
        (id >= self.inside && (id - self.inside) < self.count)
            .then(|| self.outside + (id - self.inside))
    }
}

impl std::fmt::Display for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.count)
    }
}

/// The id outside for `id` inside, through a whole map.
pub fn to_outside(map: &[IdMap], id: u32) -> Option<u32> {
    map.iter().find_map(|m| m.to_outside(id))
}

/// Parses one `--uidmap`/`--gidmap` value, `CONTAINER:HOST:SIZE` (podman's and Docker's
/// order). The error is a sentence naming `flag`.
pub fn parse_flag(value: &str, flag: &str) -> Result<IdMap, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let nums: Option<Vec<u32>> = (parts.len() == 3)
        .then(|| parts.iter().map(|p| p.trim().parse::<u32>().ok()).collect())
        .flatten();
    match nums.as_deref() {
        Some([inside, outside, count]) => Ok(IdMap {
            inside: *inside,
            outside: *outside,
            count: *count,
        }),
        _ => Err(format!(
            "{flag} {value:?} is not CONTAINER:HOST:SIZE; write it as three numbers, for example {flag} 0:100000:65536"
        )),
    }
}

fn end(start: u32, count: u32) -> u64 {
    start as u64 + count as u64
}

/// Checks a whole map the way the kernel will: at least one line, no empty line, no range
/// past 2^32-1, no two lines overlapping inside or outside, and container id 0 mapped
/// (stagebox becomes root in the namespace). `what` is "uid" or "gid".
pub fn check(map: &[IdMap], what: &str) -> Result<(), String> {
    if map.is_empty() {
        return Err(format!("the {what} map is empty"));
    }
    if map.len() > MAX_LINES {
        return Err(format!(
            "the {what} map has {} lines; the kernel takes at most {MAX_LINES}",
            map.len()
        ));
    }
    for m in map {
        if m.count == 0 {
            return Err(format!("the {what} map line {m} maps no ids (SIZE is 0)"));
        }
        if end(m.inside, m.count) > u32::MAX as u64 || end(m.outside, m.count) > u32::MAX as u64 {
            return Err(format!(
                "the {what} map line {m} runs past the largest id, 4294967294"
            ));
        }
    }
    for (i, a) in map.iter().enumerate() {
        for b in &map[i + 1..] {
            let over = |s1: u32, s2: u32| {
                (s1 as u64) < end(s2, b.count.max(1)) && (s2 as u64) < end(s1, a.count)
            };
            if over(a.inside, b.inside) {
                return Err(format!(
                    "the {what} map lines {a} and {b} overlap inside the container; each container id may be mapped once"
                ));
            }
            if over(a.outside, b.outside) {
                return Err(format!(
                    "the {what} map lines {a} and {b} overlap on the host; each host id may be mapped once"
                ));
            }
        }
    }
    if to_outside(map, 0).is_none() {
        return Err(format!(
            "the {what} map does not map container {what} 0; stagebox becomes root inside the namespace, so map 0 (for example 0:100000:65536)"
        ));
    }
    Ok(())
}

/// The text written to /proc/PID/uid_map: one `inside outside count` line per entry.
pub fn format(map: &[IdMap]) -> String {
    map.iter().map(|m| format!("{m}\n")).collect()
}

/// Parses the text of /proc/PID/uid_map (columns separated by any spaces).
pub fn parse_proc(text: &str) -> Vec<IdMap> {
    text.lines()
        .filter_map(|l| {
            let n: Vec<u32> = l
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            match n[..] {
                [inside, outside, count] => Some(IdMap {
                    inside,
                    outside,
                    count,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Reads /proc/PID/uid_map or gid_map (`file`), or /proc/self/... when `pid` is None.
pub fn read(pid: Option<i32>, file: &str) -> std::io::Result<Vec<IdMap>> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    };
    Ok(parse_proc(&std::fs::read_to_string(path)?))
}

/// The map of the initial namespace: every id is itself.
pub fn is_identity(map: &[IdMap]) -> bool {
    map == [IdMap {
        inside: 0,
        outside: 0,
        count: u32::MAX,
    }]
}

/// One line of /etc/subuid or /etc/subgid: `owner:start:count`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubIdRange {
    /// A user name or a numeric uid.
    pub owner: String,
    pub start: u32,
    pub count: u32,
}

/// Parses /etc/subuid or /etc/subgid; comments, blank and malformed lines are skipped.
pub fn parse_subid(text: &str) -> Vec<SubIdRange> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let owner = f.next()?.to_string();
            let start = f.next()?.parse().ok()?;
            let count = f.next()?.parse().ok()?;
            (!owner.is_empty() && f.next().is_none()).then_some(SubIdRange {
                owner,
                start,
                count,
            })
        })
        .collect()
}

/// The ranges `owner` (a name, or a uid as digits) has in a subid file's text; both the
/// name and the uid are accepted, as shadow's newuidmap does.
pub fn ranges_of(text: &str, name: Option<&str>, uid: u32) -> Vec<SubIdRange> {
    let uid = uid.to_string();
    parse_subid(text)
        .into_iter()
        .filter(|r| Some(r.owner.as_str()) == name || r.owner == uid)
        .collect()
}

/// Is `map`'s host side inside the user's own id (`own`) and the given subordinate ranges?
pub fn within(map: &[IdMap], own: u32, ranges: &[SubIdRange]) -> bool {
    map.iter().all(|m| {
        let (s, e) = (m.outside as u64, end(m.outside, m.count));
        (m.count == 1 && m.outside == own)
            || ranges
                .iter()
                .any(|r| s >= r.start as u64 && e <= end(r.start, r.count))
    })
}

// --- The mount API: an idmapped copy of a mount ---------------------------------------

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `open_tree(path, OPEN_TREE_CLONE)`: a detached copy of the mount at `path` (a bind mount
/// of that directory, in no mount namespace yet).
pub fn clone_tree(path: &Path) -> nix::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: open_tree takes a dirfd, a NUL-terminated path and flags; it returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {MOUNT_ATTR_IDMAP, userns})`: the detached mount
/// shows files through the user namespace's maps (a file owned by host uid 100000 shows as
/// uid 0 to a process in a namespace that maps 0 to 100000, and what it creates is stored as
/// host uid 100000 ... relative to the namespace `userns` names).
pub fn set_idmap(mount: &OwnedFd, userns: &OwnedFd) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `size` bytes of `attr`, which lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches a detached
/// mount at `target` in the caller's mount namespace.
pub fn attach(mount: &OwnedFd, target: &Path) -> nix::Result<()> {
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: move_mount takes two (dirfd, path) pairs and flags; the strings outlive it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(inside: u32, outside: u32, count: u32) -> IdMap {
        IdMap {
            inside,
            outside,
            count,
        }
    }

    #[test]
    fn flags_parse_as_container_host_size() {
        assert_eq!(
            parse_flag("0:100000:65536", "--uidmap"),
            Ok(m(0, 100000, 65536))
        );
        for bad in ["0:100000", "a:b:c", "0:1:2:3", "", "-1:0:1"] {
            let e = parse_flag(bad, "--uidmap").unwrap_err();
            assert!(e.contains("CONTAINER:HOST:SIZE"), "{bad}: {e}");
        }
    }

    #[test]
    fn overlapping_empty_and_rootless_maps_are_refused() {
        assert!(check(&[m(0, 100000, 65536)], "uid").is_ok());
        assert!(check(&[m(0, 1000, 1), m(1, 100000, 65536)], "uid").is_ok());
        let e = check(&[m(0, 100000, 10), m(5, 200000, 10)], "uid").unwrap_err();
        assert!(e.contains("overlap inside"), "{e}");
        let e = check(&[m(0, 100000, 10), m(10, 100005, 10)], "uid").unwrap_err();
        assert!(e.contains("overlap on the host"), "{e}");
        assert!(check(&[m(0, 1, 0)], "uid")
            .unwrap_err()
            .contains("SIZE is 0"));
        assert!(check(&[m(1, 100000, 10)], "gid")
            .unwrap_err()
            .contains("container gid 0"));
        assert!(check(&[], "uid").unwrap_err().contains("empty"));
        assert!(check(&[m(0, u32::MAX - 1, 5)], "uid")
            .unwrap_err()
            .contains("past"));
    }

    #[test]
    fn proc_maps_and_subid_files_are_read() {
        let t = "         0     100000      65536\n        1  2 3\n";
        assert_eq!(parse_proc(t), vec![m(0, 100000, 65536), m(1, 2, 3)]);
        assert_eq!(format(&[m(0, 100000, 65536)]), "0 100000 65536\n");
        assert!(is_identity(&parse_proc("0 0 4294967295\n")));
        let sub =
            "# comment\nalice:100000:65536\n1001:200000:65536\nbad line\nstagebox:300000:2097152\n";
        let r = parse_subid(sub);
        assert_eq!(r.len(), 3);
        assert_eq!(ranges_of(sub, Some("alice"), 1000).len(), 1);
        assert_eq!(ranges_of(sub, Some("bob"), 1001)[0].start, 200000);
        let alice = ranges_of(sub, Some("alice"), 1000);
        assert!(within(&[m(0, 1000, 1), m(1, 100000, 65536)], 1000, &alice));
        assert!(!within(&[m(0, 100000, 65537)], 1000, &alice));
        assert!(!within(&[m(0, 0, 1)], 1000, &alice));
        assert_eq!(
            to_outside(&[m(0, 1000, 1), m(1, 100000, 65536)], 5),
            Some(100004)
        );
    }
}
