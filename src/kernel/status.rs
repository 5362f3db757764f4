//! The security fields of /proc/PID/status: the five capability sets, no_new_privs and the
//! seccomp mode. The one reader of them; the confinement stages read back through it, and the
//! trace compares them before and after each stage. Also capget(2) and capset(2) by hand
//! (64-bit sets as the kernel's version 3 halves), the one place that lays out their structs.

/// What /proc/PID/status says about a process's privileges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Privileges {
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    /// NoNewPrivs: 1 once prctl(PR_SET_NO_NEW_PRIVS) was called.
    pub no_new_privs: u8,
    /// Seccomp: 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
    /// Seccomp_filters: how many filters are loaded (absent on old kernels: 0).
    pub seccomp_filters: u32,
}

impl Privileges {
    /// Parses the text of a status file; None when a capability line is missing.
    pub fn parse(text: &str) -> Option<Privileges> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
        };
        let hex = |name: &str| field(name).and_then(|v| u64::from_str_radix(v, 16).ok());
        let dec = |name: &str| field(name).and_then(|v| v.parse::<u32>().ok());
        Some(Privileges {
            cap_inh: hex("CapInh")?,
            cap_prm: hex("CapPrm")?,
            cap_eff: hex("CapEff")?,
            cap_bnd: hex("CapBnd")?,
            cap_amb: hex("CapAmb").unwrap_or(0),
            no_new_privs: dec("NoNewPrivs").unwrap_or(0) as u8,
            seccomp: dec("Seccomp").unwrap_or(0) as u8,
            seccomp_filters: dec("Seccomp_filters").unwrap_or(0),
        })
    }

    /// Reads /proc/self/status (None: "self") or /proc/PID/status.
    pub fn read(pid: Option<i32>) -> std::io::Result<Privileges> {
        let path = match pid {
            Some(p) => format!("/proc/{p}/status"),
            None => "/proc/self/status".to_string(),
        };
        let text = std::fs::read_to_string(&path)?;
        Privileges::parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{path} has no capability lines"),
            )
        })
    }
}

/// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap).
pub fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) for the calling thread with 64-bit sets (version 3: two 32-bit halves).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<i64> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: the header and the two data structs are laid out as the kernel's
    // __user_cap_header_struct and __user_cap_data_struct[2]; both outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    nix::errno::Errno::result(r)
}

/// capget(2) for the calling thread: (effective, permitted, inheritable).
pub fn capget() -> nix::Result<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a header and a two-element data array, as capget(2) wants for version 3.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    nix::errno::Errno::result(r)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_security_lines_of_a_status_file() {
        let text = "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n";
        let p = Privileges::parse(text).unwrap();
        assert_eq!(p.cap_eff, 0xa80425fb);
        assert_eq!(p.cap_bnd, 0xa80425fb);
        assert_eq!((p.no_new_privs, p.seccomp, p.seccomp_filters), (1, 2, 2));
        assert!(Privileges::parse("Name:\tsh\n").is_none());
    }

    #[test]
    fn this_process_has_a_readable_status() {
        let p = Privileges::read(None).unwrap();
        assert_eq!(
            p.cap_eff & !p.cap_prm,
            0,
            "effective is a subset of permitted"
        );
        assert!(cap_last_cap() >= 36);
    }
}
