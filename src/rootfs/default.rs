//! The default rootfs, made on first use in the state dir without any network.
//! (Stub: being written.)

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the default rootfs comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// busybox-static when /bin/busybox is a static binary, else the host's tools.
    Auto,
    /// A static busybox and its applet links.
    Busybox,
    /// The host's /bin/sh and a few tools, with the shared libraries they need.
    Host,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DefaultRootfs {
    pub path: PathBuf,
    /// In words: "busybox-static (/bin/busybox, 1.36.1)" or "host tools: sh ls ... + 12 libraries".
    pub made_from: String,
    /// True when this call created it.
    pub created_now: bool,
}

/// Returns the default rootfs for `source`, creating it under STATE/rootfs/ if needed.
pub fn ensure(state_dir: &Path, source: Source) -> Result<DefaultRootfs> {
    let _ = (state_dir, source);
    Err(Error::usage("default rootfs not implemented yet"))
}
