//! stagebox: a Linux container runtime that builds a container one stage at a time and
//! shows, after each stage, what the kernel sees differently.
//!
//! The library holds everything; `main.rs` only parses the command line and dispatches.
//! The folders are floors: a module may import from its own folder and from floors below
//! it, never from a floor above (ARCHITECTURE.md has the map; `tests/architecture.rs`
//! enforces it). From the ground up:
//!
//! | floor | module    | owns |
//! |-------|-----------|------|
//! | 0     | `error`, `units` | the error type; sizes and ages for people |
//! | 1     | `kernel`  | the `Sys` seam, /proc readers, interfaces, process observation |
//! | 2     | `trace`   | printing what happened: pretty, JSON or off |
//! | 3     | `state`   | ids, the state directory, container records, volumes, atomic writes |
//! | 4     | `cgroup`  | a small cgroup v1/v2 library |
//! | 5     | `confine` | what confinement enforces: capability sets, masked paths, device rules, seccomp profiles compiled to BPF |
//! | 5     | `rootfs`  | paths inside a rootfs, the default rootfs, overlay whiteouts |
//! | 5     | `network` | networks and their address leases (IPAM), the firewall (nftables table `ip stagebox`) for bridge networks |
//! | 6     | `image`   | the OCI image store (storage only) |
//! | 7     | `stages`  | one file per stage, the registry, the plan |
//! | 8     | `runtime` | one `run`: prepare, fork, follow the stages, wait |
//! | 9     | `build`   | Containerfile builds and commit (they run containers) |
//! | 10    | `inspect` | probe, isolation checks, compare, doctor, diff |
//! | 11    | `cli`     | the clap definition and the tables people read |
//! | 12    | `learn`   | lessons and the book |

pub mod error;
pub mod units;

pub mod kernel;

pub mod trace;

pub mod state;

pub mod cgroup;

pub mod confine;

pub mod rootfs;

pub mod network;

pub mod image;

pub mod stages;

pub mod runtime;

pub mod build;
pub mod oci;

pub mod inspect;

pub mod cli;

pub mod learn;

pub use error::{Error, Result};
