//! The few bpf(2) commands the devices stage needs, by hand: load a program, attach it to a
//! cgroup, ask a cgroup which programs are attached, and a program's id.
//!
//! bpf(2) takes a command and a pointer to `union bpf_attr`, whose layout differs per
//! command; each struct below is the prefix of that union the command reads (the kernel
//! accepts a shorter attr, and zeroes the rest). The instructions are passed as 8-byte
//! `struct bpf_insn` records, built by the caller.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
pub const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE`, the attach type.
pub const CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: other programs on the same cgroup (systemd's) stay, and all must allow.
pub const F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct Query {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> nix::Result<i64> {
    // SAFETY: attr is a live, initialised repr(C) struct of the size passed; every pointer in
    // it points to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    nix::errno::Errno::result(r)
}

/// A failed load: the errno, and the verifier's log (its last lines) saying why.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub errno: nix::errno::Errno,
    pub log: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.errno)?;
        if !self.log.is_empty() {
            write!(f, "; the verifier says: {}", self.log)?;
        }
        Ok(())
    }
}

/// bpf(BPF_PROG_LOAD) of `insns` (8-byte `struct bpf_insn` records, as bytes). On failure
/// the load is made again with a log buffer, so that the error says what the verifier
/// refused.
pub fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[u8],
    name: &str,
) -> Result<OwnedFd, LoadError> {
    let license = c"MIT";
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let mut attr = ProgLoad {
        prog_type,
        insn_cnt: (insns.len() / 8) as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(errno) => {
            let mut log = vec![0u8; 1 << 16];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                // Loaded the second time after all: close it, report the first error.
                // SAFETY: as above.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
            Err(LoadError { errno, log: tail })
        }
    }
}

/// bpf(BPF_PROG_ATTACH): attach the program to the cgroup directory open as `cgroup`.
pub fn prog_attach(
    cgroup: &impl AsRawFd,
    prog: &impl AsRawFd,
    attach_type: u32,
    flags: u32,
) -> nix::Result<()> {
    let mut attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// bpf(BPF_PROG_QUERY): the ids of the programs attached to the cgroup directory open as
/// `cgroup` for this attach type (its own, not those it inherits from its parents).
pub fn prog_query(cgroup: &impl AsRawFd, attach_type: u32) -> nix::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = Query {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// The kernel's id of a loaded program (`struct bpf_prog_info`'s second field).
pub fn prog_id(prog: &impl AsRawFd) -> nix::Result<u32> {
    // struct bpf_prog_info is larger on newer kernels; the tail we leave zero and unread.
    let mut info = [0u32; 64];
    let mut attr = InfoByFd {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[1])
}
