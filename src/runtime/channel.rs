//! The typed sync channel between the runtime (on the host) and the container process.
//!
//! A SOCK_SEQPACKET socketpair: every send is one message, a recv never sees half of one,
//! and a recv that returns 0 bytes means the other end is closed. The container's end is
//! close-on-exec, so once the workload is exec'd the runtime reads end-of-file: that is how it
//! knows the exec succeeded without any extra message.

use crate::kernel::observe::InsideFacts;
use crate::kernel::sys::SyscallRecord;
use crate::stages::StageId;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// A stage finished (or was skipped, `enabled: false`) in the container process.
    Done {
        stage: StageId,
        enabled: bool,
        syscalls: Vec<SyscallRecord>,
        notes: Vec<String>,
        inside: Option<InsideFacts>,
    },
    /// The container process reached a stage whose runtime side acts first (cgroup), and
    /// waits for Continue before applying it.
    Reached { stage: StageId },
    /// Every stage is done; the container process execs the workload once told to go on
    /// (so the trace line comes before anything the workload prints).
    Exec,
    /// The pid stage forked: this is the new container process, as a host pid.
    Handover { pid: i32 },
    /// A stage (or the exec) failed.
    Error {
        stage: String,
        message: String,
        syscalls: Vec<SyscallRecord>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    Continue,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("sync channel: {0}")]
    Sys(#[from] nix::errno::Errno),
    #[error("sync channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("sync channel: the other side closed it")]
    Closed,
}

pub struct Channel {
    fd: OwnedFd,
    buf: Vec<u8>,
}

pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel::new(a), Channel::new(b)))
}

impl Channel {
    pub fn new(fd: OwnedFd) -> Self {
        Channel {
            fd,
            buf: vec![0u8; 1 << 16],
        }
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg)?;
        loop {
            match send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// The next message, or None when the other end closed (for the runtime: the exec).
    pub fn recv<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, ChannelError> {
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(n) => break n,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&self.buf[..n])?))
    }
}
