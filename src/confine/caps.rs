//! Capabilities by name: the 41 the kernel knows today, Docker's default 14, and how
//! `--cap-add` and `--cap-drop` change a set (Docker's rules: drops first, then adds, `ALL`
//! on either side).
//!
//! A set is a u64 with bit N for capability N, the way /proc/PID/status prints CapEff.

/// Capability names, by number (include/uapi/linux/capability.h), without the CAP_ prefix.
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SYS_ADMIN: u32 = 21;

/// Every capability this table names.
pub const ALL: u64 = (1u64 << NAMES.len()) - 1;

/// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP (CapEff 00000000a80425fb).
pub const DOCKER_DEFAULT: u64 = 0xa80425fb;

/// The five sets an OCI config's `process.capabilities` gives (bit N is capability N). The
/// caps stage applies them all (Docker-like runs give only the kept set, `Confinement::caps`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// The capabilities that make a container's root the host's root, for the checks: mount
/// anything, load modules, set the clock, reboot, read any file by handle, trace any process.
pub const DANGEROUS: &[&str] = &[
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_TIME",
    "SYS_BOOT",
    "DAC_READ_SEARCH",
    "SYS_PTRACE",
];

/// A capability's number from its name (`NET_ADMIN`, `cap_net_admin`, `CAP_NET_ADMIN`).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// The names in a set, lowest number first (`CHOWN DAC_OVERRIDE ...`).
pub fn names(set: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Docker's rule for `--cap-add` and `--cap-drop`: start from the default set; `--cap-drop
/// ALL` empties it, other drops remove; then `--cap-add ALL` fills it, other adds add. An
/// unknown name is refused with one sentence.
pub fn tweak(add: &[String], drop: &[String]) -> crate::Result<u64> {
    fn parse(list: &[String], flag: &str) -> crate::Result<(bool, u64)> {
        let mut all = false;
        let mut set = 0u64;
        for item in list.iter().flat_map(|s| s.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if item.eq_ignore_ascii_case("ALL") {
                all = true;
                continue;
            }
            match number(item) {
                Some(n) => set |= 1u64 << n,
                None => {
                    return Err(crate::Error::usage(format!(
                        "unknown capability {item:?} in {flag}; use a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL"
                    )))
                }
            }
        }
        Ok((all, set))
    }
    let (add_all, adds) = parse(add, "--cap-add")?;
    let (drop_all, drops) = parse(drop, "--cap-drop")?;
    let mut set = if drop_all { 0 } else { DOCKER_DEFAULT & !drops };
    set |= if add_all { ALL } else { adds };
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn docker_default_is_the_fourteen_it_names() {
        assert_eq!(
            names(DOCKER_DEFAULT),
            vec![
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "NET_BIND_SERVICE",
                "NET_RAW",
                "SYS_CHROOT",
                "MKNOD",
                "AUDIT_WRITE",
                "SETFCAP"
            ]
        );
        assert_eq!(number("cap_sys_admin"), Some(CAP_SYS_ADMIN));
        assert_eq!(number("CHECKPOINT_RESTORE"), Some(40));
    }

    #[test]
    fn add_and_drop_follow_dockers_rules() {
        assert_eq!(tweak(&[], &[]).unwrap(), DOCKER_DEFAULT);
        let with_admin = tweak(&s(&["SYS_ADMIN"]), &[]).unwrap();
        assert_eq!(with_admin, DOCKER_DEFAULT | 1 << 21);
        assert_eq!(tweak(&[], &s(&["ALL"])).unwrap(), 0);
        assert_eq!(tweak(&s(&["NET_RAW"]), &s(&["ALL"])).unwrap(), 1 << 13);
        assert_eq!(tweak(&s(&["ALL"]), &[]).unwrap(), ALL);
        assert_eq!(
            tweak(&[], &s(&["CAP_CHOWN,kill"])).unwrap(),
            DOCKER_DEFAULT & !(1 | 1 << 5)
        );
        let e = tweak(&s(&["NET_ADMIM"]), &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown capability \"NET_ADMIM\" in --cap-add"),
            "{e}"
        );
    }
}
