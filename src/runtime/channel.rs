//! The typed sync channel between the runtime (on the host) and the container process.
//!
//! A SOCK_SEQPACKET socketpair: every send is one message, a recv never sees half of one,
//! and a recv that returns 0 bytes means the other end is closed. The container's end is
//! close-on-exec, so once the workload is exec'd the runtime reads end-of-file: that is how it
//! knows the exec succeeded without any extra message.

use crate::kernel::observe::InsideFacts;
use crate::kernel::sys::SyscallRecord;
use crate::stages::StageId;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
    /// (so the trace line comes before anything the workload prints). `path` is the command
    /// as looked up inside the container (after the volumes are mounted).
    Exec { path: String, argv: Vec<String> },
    /// The command cannot be exec'd: Docker's sentence and exit status (127 not found, 126
    /// not runnable). The runtime prints it and exits with that status.
    NotRunnable { message: String, code: i32 },
    /// The pid stage forked: this is the new container process, as a host pid.
    Handover { pid: i32 },
    /// The first half of a stage whose runtime side acts in the middle (user: the maps) is
    /// done; the container process waits for Continue, then does the second half.
    Midway {
        stage: StageId,
        syscalls: Vec<SyscallRecord>,
        notes: Vec<String>,
    },
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
    /// Descriptors that came with the last messages (SCM_RIGHTS), until taken.
    fds: Vec<OwnedFd>,
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
            fds: Vec::new(),
        }
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), ChannelError> {
        self.send_with_fds(msg, &[])
    }

    /// Sends one message with descriptors attached (SCM_RIGHTS): the receiver gets its own
    /// copies, which [`Channel::take_fds`] hands out.
    pub fn send_with_fds<T: Serialize>(&self, msg: &T, fds: &[RawFd]) -> Result<(), ChannelError> {
        let bytes = serde_json::to_vec(msg)?;
        let iov = [IoSlice::new(&bytes)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// The descriptors received so far, in order.
    /// Ends the conversation before the exec (an OCI container that waits for `start`): the
    /// other side reads end-of-file, as it would once the exec closed this descriptor.
    pub fn hang_up(&self) {
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            nix::sys::socket::Shutdown::Both,
        );
    }

    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds)
    }

    /// The next message, or None when the other end closed (for the runtime: the exec).
    pub fn recv<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, ChannelError> {
        let mut cmsg_space = nix::cmsg_space!([RawFd; 8]);
        let (n, received) = loop {
            let mut iov = [IoSliceMut::new(&mut self.buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(m) => {
                    let mut got = Vec::new();
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(fds) = c {
                                got.extend(fds);
                            }
                        }
                    }
                    break (m.bytes, got);
                }
            }
        };
        for fd in received {
            // SAFETY: SCM_RIGHTS gave this process a new descriptor that nothing else owns.
            self.fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&self.buf[..n])?))
    }
}
