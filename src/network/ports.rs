//! Placeholder until the proxy branch lands.
use super::firewall::Proto;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

pub fn parse(spec: &str) -> Result<Vec<PortSpec>, String> {
    Err(format!("-p {spec:?}: not yet"))
}
pub fn from_expose(_e: &[String]) -> Result<Vec<PortSpec>, String> {
    Ok(vec![])
}
