//! The kernel, as this program talks to it: the `Sys` seam every stage's syscalls go
//! through (so each call is traced), and the readers of /proc that prove what took effect.
//!
//! - `sys`: the `Sys` trait, the real implementation, and how a call is described.
//! - `recorder` (tests only): a `Sys` that records calls instead of making them.
//! - `bpf`: bpf(2) by hand: load a program, attach it to a cgroup, query what is attached.
//! - `idmap`: uid_map/gid_map lines, `--uidmap` flags, /etc/subuid ranges, and idmapped mounts
//!   (open_tree, mount_setattr, move_mount).
//! - `mountinfo`: the one /proc/PID/mountinfo parser.
//! - `ns`: /proc/PID/ns links and their inodes.
//! - `netif`: network interfaces (/proc/net/dev, SIOCGIFFLAGS, bringing lo up).
//! - `netlink`: a small synchronous rtnetlink client (veth pairs, bridges, moving a link to
//!   another network namespace, addresses, routes, and the dumps of links, addresses and
//!   routes), each request recorded like a syscall.
//! - `proc`: a process's start time from /proc/PID/stat (a pid with its start time is never
//!   reused, so a kept record can tell its process from a stranger with the same pid).
//! - `status`: the capability sets, no_new_privs and seccomp mode from /proc/PID/status.
//! - `sysv`: System V IPC objects the reader can see.
//! - `unixsock`: bind and connect unix sockets whose path is longer than `sun_path`.
//! - `observe`: a snapshot of what a process sees, read from outside, and the difference
//!   between two snapshots (what the trace prints after each stage).
//!
//! May import: `error`, `units`. Nothing here knows about stages, containers or images.

pub mod bpf;
pub mod idmap;
pub mod mountinfo;
pub mod netif;
pub mod netlink;
pub mod ns;
pub mod observe;
pub mod proc;
#[cfg(test)]
pub mod recorder;
pub mod status;
pub mod sys;
pub mod sysv;
pub mod unixsock;
