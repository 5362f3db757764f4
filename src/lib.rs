//! stagebox: a Linux container runtime that builds a container one stage at a time and
//! shows, after each stage, what the kernel sees differently.
//!
//! The library holds everything; `main.rs` only parses the command line.

pub mod book;
pub mod cgroup;
pub mod checks;
pub mod cli;
pub mod compare;
pub mod config;
pub mod container;
pub mod diff;
pub mod doctor;
pub mod error;
pub mod escape;
pub mod image;
pub mod lessons;
pub mod netif;
pub mod observe;
pub mod plan;
pub mod probe;
pub mod report;
pub mod rootfs;
pub mod runtime;
pub mod stages;
pub mod sys;
pub mod trace;
pub mod volume;

pub use error::{Error, Result};
