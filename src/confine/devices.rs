//! The devices a container may use. (Skeleton: the devices helper fills this in.)

use std::path::PathBuf;

/// One device node `--device HOST[:CONTAINER][:rwm]` adds to the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    /// The device node on the host.
    pub host: PathBuf,
    /// Where it appears in the container's /dev.
    pub container: String,
    /// 'c' (character) or 'b' (block).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Any of r, w, m.
    pub access: String,
}

/// The allow list's additions: the devices `--device` gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceConfig {
    pub extra: Vec<Device>,
}

/// Parses `--device HOST[:CONTAINER][:rwm]`. (Skeleton.)
pub fn parse_flag(flag: &str) -> crate::Result<Device> {
    Err(crate::Error::usage(format!(
        "--device {flag:?}: not done yet"
    )))
}
