//! stagebox's firewall: one nftables table, `ip stagebox`, and nothing else of the host's.
//!
//! The table has four base chains:
//!
//! - `postrouting` (nat): masquerade for a bridge's subnet leaving through anything but its
//!   bridge, so containers reach beyond the host with the host's address;
//! - `prerouting` and `output` (nat): DNAT for published ports, for packets arriving from
//!   outside and for the host's own packets to its non-loopback addresses (loopback goes
//!   through a userland proxy, as Docker's docker-proxy does);
//! - `forward` (filter): accept established/related packets, and packets from and to the
//!   bridges.
//!
//! Every rule carries a comment that says whose it is: `stagebox-base` (the table's own),
//! `stagebox-net:<bridge>` (a network's masquerade and forwarding) and `stagebox:<container
//! id>` (a container's published ports). Rules are read back with `nft -j` and deleted by
//! handle, so stagebox removes exactly what it added, and the stale rules of a container
//! whose stagebox was killed are found by id (`remove_stale`).
//!
//! **Why the `nft` program and not netlink from a crate.** The crates that speak nftables'
//! netlink (rustables, nftnl) bind libnftnl and libmnl, C libraries that would break the
//! static binary, as libseccomp would have. `nft -f -` applies a whole script in one
//! transaction: a run's rules go in all together or not at all. And the trace, and the lesson,
//! can show the very rule text a person would type. The price is one process per change
//! (a few milliseconds) and a dependency on Debian's `nftables` package.
//!
//! **Coexistence.** Docker and podman (through iptables-nft) leave a `FORWARD` chain with
//! policy drop in `ip filter`. In nftables every base chain on a hook sees the packet and a
//! drop in any of them wins, so an accept in stagebox's table cannot let forwarded packets
//! through theirs. `forward_blocked` finds such a chain and says in one sentence what it
//! blocks and what to do; stagebox never changes another table.
//!
//! Callers serialize changes (the network lock): each change reads the table, then applies
//! one script.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The table's family and name: `ip stagebox`.
pub const FAMILY: &str = "ip";
pub const TABLE: &str = "stagebox";

/// The comment of a container's rules is this, then the container's id.
pub const CONTAINER_TAG: &str = "stagebox:";
/// The comment of a network's rules is this, then its bridge's name.
pub const NETWORK_TAG: &str = "stagebox-net:";
/// The comment of the table's own rules.
pub const BASE_TAG: &str = "stagebox-base";

/// The base chains: name, type, hook, priority.
const CHAINS: &[(&str, &str, &str, &str)] = &[
    ("postrouting", "nat", "postrouting", "srcnat"),
    ("prerouting", "nat", "prerouting", "dstnat"),
    ("output", "nat", "output", "-100"),
    ("forward", "filter", "forward", "filter"),
];

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(
        "the nft program was not found (in PATH, /usr/sbin or /sbin); install Debian's nftables package (apt-get install nftables)"
    )]
    NftMissing,
    #[error("could not start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft refused {what}: {stderr}")]
    Nft { what: String, stderr: String },
    #[error("nft printed JSON stagebox cannot read ({what}): {message}")]
    Json { what: String, message: String },
    /// Bad input: one sentence, and nothing was changed.
    #[error("{0}")]
    Invalid(String),
}

impl From<FirewallError> for crate::Error {
    fn from(e: FirewallError) -> Self {
        match e {
            FirewallError::Invalid(m) => crate::Error::Usage(m),
            other => crate::Error::Stage {
                stage: "net".into(),
                message: other.to_string(),
            },
        }
    }
}

pub type Result<T, E = FirewallError> = std::result::Result<T, E>;

/// One change to the firewall, for the trace: the script given to `nft -f -` and what came
/// of it (in the style of `kernel::sys::SyscallRecord`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NftRecord {
    /// The nft script, one command a line.
    pub call: String,
    /// `ok`, or nft's complaint.
    pub result: String,
}

impl std::fmt::Display for NftRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nft -f - = {}", self.result)?;
        for line in self.call.lines() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A published port, as asked (`-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`) or as read
/// back from a prerouting rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortRule {
    pub container_id: String,
    /// `None`: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// A rule of stagebox's table, as `nft -j` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
    /// The published port, for a DNAT rule of the `prerouting` chain.
    pub port: Option<PortRule>,
}

impl Rule {
    /// The container id in the comment, for a container's rule.
    pub fn container_id(&self) -> Option<&str> {
        self.comment.as_deref()?.strip_prefix(CONTAINER_TAG)
    }

    /// The bridge in the comment, for a network's rule.
    pub fn bridge(&self) -> Option<&str> {
        self.comment.as_deref()?.strip_prefix(NETWORK_TAG)
    }
}

/// stagebox's table as `nft -j list table ip stagebox` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    pub chains: Vec<String>,
    pub rules: Vec<Rule>,
}

/// A base chain of another table that drops forwarded IPv4 packets by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignDrop {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The table also has Docker's `DOCKER-USER` chain, the place Docker leaves for a
    /// user's own accepts.
    pub docker_user: bool,
}

/// How stagebox talks to nftables: the real `nft` program, or a test double.
pub trait Nft {
    /// Applies a script atomically (`nft -f -`).
    fn apply(&mut self, script: &str) -> Result<()>;
    /// `nft -j ARGS`: the JSON, or `None` when the object listed does not exist.
    fn list_json(&mut self, args: &[&str]) -> Result<Option<String>>;
}

/// Debian's `nft` program.
#[derive(Debug, Clone)]
pub struct NftProgram {
    path: PathBuf,
}

impl NftProgram {
    /// Finds `nft` in PATH, then in /usr/sbin and /sbin (root's PATH has them; sudo's may
    /// not).
    pub fn find() -> Result<Self> {
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        from_path
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join("nft"))
            .find(|p| is_executable(p))
            .map(|path| NftProgram { path })
            .ok_or(FirewallError::NftMissing)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn spawn_error(&self, source: std::io::Error) -> FirewallError {
        FirewallError::Spawn {
            program: self.path.display().to_string(),
            source,
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Nft for NftProgram {
    fn apply(&mut self, script: &str) -> Result<()> {
        let mut child = Command::new(&self.path)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error shows up as nft's own failure below.
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| self.spawn_error(e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(FirewallError::Nft {
                what: "the script".into(),
                stderr: one_line(&String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    fn list_json(&mut self, args: &[&str]) -> Result<Option<String>> {
        let out = Command::new(&self.path)
            .arg("-j")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
        } else if stderr.contains("No such file or directory") {
            Ok(None)
        } else {
            Err(FirewallError::Nft {
                what: format!("`nft -j {}`", args.join(" ")),
                stderr: one_line(&stderr),
            })
        }
    }
}

/// nft's multi-line complaint (the message, the command, a caret line) as one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// stagebox's firewall over an `Nft` (the real program by default).
pub struct Firewall<N: Nft = NftProgram> {
    nft: N,
}

impl Firewall<NftProgram> {
    /// The firewall through Debian's `nft`; one sentence if it is not installed.
    pub fn new() -> Result<Self> {
        Ok(Firewall {
            nft: NftProgram::find()?,
        })
    }
}

impl<N: Nft> Firewall<N> {
    pub fn with(nft: N) -> Self {
        Firewall { nft }
    }

    /// stagebox's table as it is now, or `None` if there is none.
    pub fn table(&mut self) -> Result<Option<TableView>> {
        match self.nft.list_json(&["list", "table", FAMILY, TABLE])? {
            Some(json) => parse_table(&json).map(Some),
            None => Ok(None),
        }
    }

    fn apply(&mut self, script: String) -> Result<Vec<NftRecord>> {
        match self.nft.apply(&script) {
            Ok(()) => Ok(vec![NftRecord {
                call: script,
                result: "ok".into(),
            }]),
            Err(e) => Err(e),
        }
    }

    /// Makes the table, its four base chains and its own rule, or whatever of them is
    /// missing. Idempotent: with everything there it applies nothing and returns no record.
    pub fn ensure_base(&mut self) -> Result<Vec<NftRecord>> {
        let view = self.table()?;
        let script = base_script(view.as_ref());
        if script.is_empty() {
            return Ok(Vec::new());
        }
        self.apply(script)
    }

    /// Masquerade for `subnet/prefix` leaving through anything but `bridge`, and forwarding
    /// from and to `bridge` (with the base, if missing, in the same transaction). Nothing is
    /// applied if the network's rules are there already.
    pub fn add_masquerade(
        &mut self,
        subnet: Ipv4Addr,
        prefix: u8,
        bridge: &str,
    ) -> Result<Vec<NftRecord>> {
        let rules = masquerade_rules(subnet, prefix, bridge)?;
        let view = self.table()?;
        if view
            .as_ref()
            .is_some_and(|v| v.rules.iter().any(|r| r.bridge() == Some(bridge)))
        {
            return Ok(Vec::new());
        }
        self.apply(base_script(view.as_ref()) + &rules)
    }

    /// Publishes `host_port/proto` (on `host_ip`, or every non-loopback address of the host)
    /// to `container_ip:container_port`, tagged with the container's id. Refuses a port
    /// another container already publishes (one sentence, nothing applied).
    pub fn add_port(
        &mut self,
        container_id: &str,
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
        container_ip: Ipv4Addr,
        container_port: u16,
    ) -> Result<Vec<NftRecord>> {
        self.add_ports(&[PortRule {
            container_id: container_id.to_string(),
            host_ip,
            host_port,
            proto,
            container_ip,
            container_port,
        }])
    }

    /// Publishes several ports (a run's `-p` flags) in one transaction: one read of the
    /// table, one script. A port published twice, here or by another container already, is
    /// refused in one sentence and nothing is applied. A host address `0.0.0.0` means every
    /// address, as in Docker.
    pub fn add_ports(&mut self, ports: &[PortRule]) -> Result<Vec<NftRecord>> {
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<PortRule> = ports
            .iter()
            .map(|p| PortRule {
                host_ip: p.host_ip.filter(|ip| !ip.is_unspecified()),
                ..p.clone()
            })
            .collect();
        let mut rules = String::new();
        for p in &wanted {
            rules.push_str(&port_rules(p)?);
        }
        let view = self.table()?;
        let published = view
            .iter()
            .flat_map(|v| v.rules.iter().filter_map(|r| r.port.as_ref()));
        let mut seen: Vec<&PortRule> = Vec::new();
        for p in published.chain(&wanted) {
            if let Some(taken) = seen.iter().find(|q| clash(q, p)) {
                return Err(FirewallError::Invalid(format!(
                    "port {}/{} is already published by container {}",
                    p.host_port, p.proto, taken.container_id
                )));
            }
            seen.push(p);
        }
        self.apply(base_script(view.as_ref()) + &rules)
    }

    /// The published ports, read back from the `prerouting` chain.
    pub fn list_ports(&mut self) -> Result<Vec<PortRule>> {
        Ok(self
            .table()?
            .map(|v| v.rules.into_iter().filter_map(|r| r.port).collect())
            .unwrap_or_default())
    }

    /// Deletes every rule tagged with this container's id; no record if it had none.
    pub fn remove_container(&mut self, id: &str) -> Result<Vec<NftRecord>> {
        check_id(id)?;
        self.remove_where(|r| r.container_id() == Some(id))
    }

    /// Deletes a network's masquerade and forwarding rules.
    pub fn remove_network(&mut self, bridge: &str) -> Result<Vec<NftRecord>> {
        check_bridge(bridge)?;
        self.remove_where(|r| r.bridge() == Some(bridge))
    }

    /// The ids of the containers that have rules, sorted, each once.
    pub fn list_container_ids(&mut self) -> Result<Vec<String>> {
        Ok(self.table()?.map(|v| container_ids(&v)).unwrap_or_default())
    }

    /// Deletes, in one transaction, the rules of every container that `alive` says is gone
    /// (its stagebox was killed before it could clean up).
    pub fn remove_stale(&mut self, alive: impl Fn(&str) -> bool) -> Result<Vec<NftRecord>> {
        self.remove_where(|r| r.container_id().is_some_and(|id| !alive(id)))
    }

    fn remove_where(&mut self, doomed: impl Fn(&Rule) -> bool) -> Result<Vec<NftRecord>> {
        let Some(view) = self.table()? else {
            return Ok(Vec::new());
        };
        let script = delete_script(view.rules.iter().filter(|r| doomed(r)));
        if script.is_empty() {
            return Ok(Vec::new());
        }
        self.apply(script)
    }

    /// Deletes the table when no container or network has a rule in it any more. Returns no
    /// record if the table is absent or still in use.
    pub fn remove_table_if_unused(&mut self) -> Result<Vec<NftRecord>> {
        let Some(view) = self.table()? else {
            return Ok(Vec::new());
        };
        if view
            .rules
            .iter()
            .any(|r| r.container_id().is_some() || r.bridge().is_some())
        {
            return Ok(Vec::new());
        }
        self.apply(format!("delete table {FAMILY} {TABLE}\n"))
    }

    /// Another table's base chain that drops forwarded IPv4 packets by default (Docker's and
    /// podman's `FORWARD`), as one sentence saying what it blocks for `bridge` and what to
    /// do; `None` if there is none. Changes nothing.
    pub fn forward_blocked(&mut self, bridge: &str) -> Result<Option<String>> {
        let Some(json) = self.nft.list_json(&["list", "ruleset"])? else {
            return Ok(None);
        };
        Ok(blocked_sentence(&foreign_forward_drops(&json)?, bridge))
    }
}

/// Two published ports that would catch the same packets: same protocol and port, and the
/// same host address or every address on either side.
fn clash(a: &PortRule, b: &PortRule) -> bool {
    a.proto == b.proto
        && a.host_port == b.host_port
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

/// What is missing of the base, as a script (empty when nothing is).
pub fn base_script(view: Option<&TableView>) -> String {
    let mut s = String::new();
    if view.is_none() {
        s.push_str(&format!("add table {FAMILY} {TABLE}\n"));
    }
    for (name, kind, hook, prio) in CHAINS {
        if view.is_some_and(|v| v.chains.iter().any(|c| c == name)) {
            continue;
        }
        s.push_str(&format!(
            "add chain {FAMILY} {TABLE} {name} {{ type {kind} hook {hook} priority {prio}; policy accept; }}\n"
        ));
    }
    if !view.is_some_and(|v| {
        v.rules
            .iter()
            .any(|r| r.comment.as_deref() == Some(BASE_TAG))
    }) {
        s.push_str(&format!(
            "add rule {FAMILY} {TABLE} forward ct state established,related accept comment \"{BASE_TAG}\"\n"
        ));
    }
    s
}

/// A network's rules: masquerade for its subnet leaving through another interface, and
/// forwarding from and to its bridge.
pub fn masquerade_rules(subnet: Ipv4Addr, prefix: u8, bridge: &str) -> Result<String> {
    check_bridge(bridge)?;
    if prefix == 0 || prefix > 32 {
        return Err(FirewallError::Invalid(format!(
            "{subnet}/{prefix}: the prefix length must be 1 to 32"
        )));
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    if u32::from(subnet) & !mask != 0 {
        return Err(FirewallError::Invalid(format!(
            "{subnet}/{prefix} is not a network address (the network is {}/{prefix})",
            Ipv4Addr::from(u32::from(subnet) & mask)
        )));
    }
    let tag = format!("{NETWORK_TAG}{bridge}");
    Ok(format!(
        "add rule {FAMILY} {TABLE} postrouting ip saddr {subnet}/{prefix} oifname != \"{bridge}\" masquerade comment \"{tag}\"\n\
         add rule {FAMILY} {TABLE} forward iifname \"{bridge}\" accept comment \"{tag}\"\n\
         add rule {FAMILY} {TABLE} forward oifname \"{bridge}\" accept comment \"{tag}\"\n"
    ))
}

/// A published port's two DNAT rules: `prerouting` for packets from outside, `output` for
/// the host's own packets to its non-loopback addresses.
pub fn port_rules(p: &PortRule) -> Result<String> {
    check_id(&p.container_id)?;
    if p.host_port == 0 || p.container_port == 0 {
        return Err(FirewallError::Invalid(format!(
            "{}:{}: a published port must be 1 to 65535",
            p.host_port, p.container_port
        )));
    }
    if let Some(ip) = p.host_ip {
        if ip.is_loopback() {
            return Err(FirewallError::Invalid(format!(
                "{ip}: a loopback address is published by the userland proxy, not by a DNAT rule"
            )));
        }
    }
    let tag = format!("{CONTAINER_TAG}{}", p.container_id);
    let to = format!(
        "{} dport {} dnat to {}:{} comment \"{tag}\"",
        p.proto, p.host_port, p.container_ip, p.container_port
    );
    Ok(match p.host_ip {
        Some(ip) => format!(
            "add rule {FAMILY} {TABLE} prerouting ip daddr {ip} {to}\n\
             add rule {FAMILY} {TABLE} output ip daddr {ip} {to}\n"
        ),
        None => format!(
            "add rule {FAMILY} {TABLE} prerouting fib daddr type local {to}\n\
             add rule {FAMILY} {TABLE} output fib daddr type local ip daddr != 127.0.0.0/8 {to}\n"
        ),
    })
}

/// Deletes rules by handle (empty when there are none).
pub fn delete_script<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> String {
    rules
        .into_iter()
        .map(|r| {
            format!(
                "delete rule {FAMILY} {TABLE} {} handle {}\n",
                r.chain, r.handle
            )
        })
        .collect()
}

/// The ids of the containers with rules in the table, sorted, each once.
pub fn container_ids(view: &TableView) -> Vec<String> {
    view.rules
        .iter()
        .filter_map(Rule::container_id)
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A container id as it goes into a comment: letters, digits, `_`, `.` and `-`.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(FirewallError::Invalid(format!(
            "{id:?} is not a container id (1 to 64 letters, digits, '_', '.' or '-')"
        )));
    }
    Ok(())
}

/// An interface name: 1 to 15 letters, digits, `_`, `.` or `-` (IFNAMSIZ less the NUL).
fn check_bridge(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(FirewallError::Invalid(format!(
            "{name:?} is not an interface name (1 to 15 letters, digits, '_', '.' or '-')"
        )));
    }
    Ok(())
}

fn json_error(what: &str, message: impl Into<String>) -> FirewallError {
    FirewallError::Json {
        what: what.into(),
        message: message.into(),
    }
}

/// The objects of `nft -j` output (`{"nftables": [{"table": ...}, {"chain": ...}, ...]}`).
fn objects(json: &str, what: &str) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(json).map_err(|e| json_error(what, e.to_string()))?;
    match v.get("nftables") {
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err(json_error(what, "no \"nftables\" array")),
    }
}

/// Reads `nft -j list table ip stagebox`: its chains and rules (other tables are skipped).
pub fn parse_table(json: &str) -> Result<TableView> {
    const WHAT: &str = "list table ip stagebox";
    let mut view = TableView::default();
    for obj in objects(json, WHAT)? {
        let ours = |o: &Value| {
            o.get("family").and_then(Value::as_str) == Some(FAMILY)
                && o.get("table").and_then(Value::as_str) == Some(TABLE)
        };
        if let Some(c) = obj.get("chain").filter(|c| ours(c)) {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| json_error(WHAT, "a chain without a name"))?;
            view.chains.push(name.to_string());
        } else if let Some(r) = obj.get("rule").filter(|r| ours(r)) {
            let chain = r
                .get("chain")
                .and_then(Value::as_str)
                .ok_or_else(|| json_error(WHAT, "a rule without a chain"))?
                .to_string();
            let handle = r
                .get("handle")
                .and_then(Value::as_u64)
                .ok_or_else(|| json_error(WHAT, "a rule without a handle"))?;
            let comment = r.get("comment").and_then(Value::as_str).map(str::to_string);
            let mut rule = Rule {
                chain,
                handle,
                comment,
                port: None,
            };
            if rule.chain == "prerouting" {
                if let Some(id) = rule.container_id() {
                    rule.port = parse_port(id, r.get("expr"));
                }
            }
            view.rules.push(rule);
        }
    }
    Ok(view)
}

/// A published port from a DNAT rule's expressions: `ip daddr` (if any), `tcp|udp dport`,
/// `dnat to ADDR:PORT`.
fn parse_port(id: &str, expr: Option<&Value>) -> Option<PortRule> {
    let mut host_ip = None;
    let mut host = None;
    let mut to = None;
    for e in expr?.as_array()? {
        if let Some(m) = e.get("match") {
            let payload = m.get("left").and_then(|l| l.get("payload"));
            let proto = payload
                .and_then(|p| p.get("protocol"))
                .and_then(Value::as_str);
            let field = payload.and_then(|p| p.get("field")).and_then(Value::as_str);
            let eq = m.get("op").and_then(Value::as_str) == Some("==");
            match (proto, field) {
                (Some("ip"), Some("daddr")) if eq => {
                    host_ip = m.get("right")?.as_str()?.parse().ok();
                }
                (Some(p @ ("tcp" | "udp")), Some("dport")) if eq => {
                    let port = u16::try_from(m.get("right")?.as_u64()?).ok()?;
                    let proto = if p == "tcp" { Proto::Tcp } else { Proto::Udp };
                    host = Some((proto, port));
                }
                _ => {}
            }
        } else if let Some(d) = e.get("dnat") {
            let addr: Ipv4Addr = d.get("addr")?.as_str()?.parse().ok()?;
            let port = u16::try_from(d.get("port")?.as_u64()?).ok()?;
            to = Some((addr, port));
        }
    }
    let (proto, host_port) = host?;
    let (container_ip, container_port) = to?;
    Some(PortRule {
        container_id: id.to_string(),
        host_ip,
        host_port,
        proto,
        container_ip,
        container_port,
    })
}

/// The base chains of other tables on the `forward` hook with policy drop that see IPv4
/// packets (families `ip` and `inet`), from `nft -j list ruleset`.
pub fn foreign_forward_drops(json: &str) -> Result<Vec<ForeignDrop>> {
    let objs = objects(json, "list ruleset")?;
    let field = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let chains: Vec<&Value> = objs.iter().filter_map(|o| o.get("chain")).collect();
    let mut out = Vec::new();
    for c in &chains {
        let (Some(family), Some(table), Some(name)) =
            (field(c, "family"), field(c, "table"), field(c, "name"))
        else {
            continue;
        };
        if (family == FAMILY && table == TABLE) || !matches!(family.as_str(), "ip" | "inet") {
            continue;
        }
        if field(c, "hook").as_deref() != Some("forward")
            || field(c, "policy").as_deref() != Some("drop")
        {
            continue;
        }
        let docker_user = chains.iter().any(|d| {
            field(d, "family").as_deref() == Some(family.as_str())
                && field(d, "table").as_deref() == Some(table.as_str())
                && field(d, "name").as_deref() == Some("DOCKER-USER")
        });
        out.push(ForeignDrop {
            family,
            table,
            chain: name,
            docker_user,
        });
    }
    Ok(out)
}

/// One sentence about the chains that drop `bridge`'s forwarded packets, or `None`.
pub fn blocked_sentence(drops: &[ForeignDrop], bridge: &str) -> Option<String> {
    let first = drops.first()?;
    let names = drops
        .iter()
        .map(|d| format!("chain {} of table {} {}", d.chain, d.family, d.table))
        .collect::<Vec<_>>()
        .join(" and ");
    let fix = if first.docker_user {
        format!(
            "allow it in Docker's DOCKER-USER chain (`iptables -I DOCKER-USER -i {bridge} -j ACCEPT` and `iptables -I DOCKER-USER -o {bridge} -j ACCEPT`)"
        )
    } else {
        format!(
            "allow it there (`nft insert rule {} {} {} iifname \"{bridge}\" accept` and the same with oifname)",
            first.family, first.table, first.chain
        )
    };
    Some(format!(
        "the host's firewall drops forwarded packets by default ({names}, as Docker and podman set it), so containers on {bridge} cannot reach beyond this host and published ports do not answer from other hosts; stagebox leaves those rules alone: {fix}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list table ip stagebox` (nft 1.0.6) after `base_script(None)`, one network
    /// (10.250.7.0/24 on stageboxt7) and two published ports of container abc123.
    const TABLE_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "stagebox", "handle": 1}}, {"chain": {"family": "ip", "table": "stagebox", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "stagebox", "name": "prerouting", "handle": 2, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "stagebox", "name": "output", "handle": 3, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}}, {"chain": {"family": "ip", "table": "stagebox", "name": "forward", "handle": 4, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "postrouting", "handle": 6, "comment": "stagebox-net:stageboxt7", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.250.7.0", "len": 24}}}}, {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "stageboxt7"}}, {"masquerade": null}]}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "prerouting", "handle": 9, "comment": "stagebox:abc123", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 18080}}, {"dnat": {"addr": "10.250.7.2", "port": 80}}]}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "prerouting", "handle": 11, "comment": "stagebox:abc123", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.0.2.5"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5353}}, {"dnat": {"addr": "10.250.7.2", "port": 53}}]}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "output", "handle": 10, "comment": "stagebox:abc123", "expr": [{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 18080}}, {"dnat": {"addr": "10.250.7.2", "port": 80}}]}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "forward", "handle": 5, "comment": "stagebox-base", "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "forward", "handle": 7, "comment": "stagebox-net:stageboxt7", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "stageboxt7"}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "forward", "handle": 8, "comment": "stagebox-net:stageboxt7", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "stageboxt7"}}, {"accept": null}]}}]}"#;

    /// `nft -j list ruleset` in a network namespace holding what Docker's iptables-nft makes
    /// (ip filter FORWARD policy drop, DOCKER-USER), a firewalld-like inet chain with policy
    /// accept, and an ip6 FORWARD with policy drop.
    const FOREIGN_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 3, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 4, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "DOCKER-USER"}}]}}, {"table": {"family": "inet", "name": "firewalld", "handle": 2}}, {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 10, "policy": "accept"}}, {"table": {"family": "ip6", "name": "filter", "handle": 3}}, {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]}"#;

    /// An `Nft` that answers from a fixed table and keeps the scripts it was given.
    #[derive(Default)]
    struct Fake {
        table: Option<String>,
        ruleset: Option<String>,
        applied: Vec<String>,
    }

    impl Nft for Fake {
        fn apply(&mut self, script: &str) -> Result<()> {
            self.applied.push(script.to_string());
            Ok(())
        }
        fn list_json(&mut self, args: &[&str]) -> Result<Option<String>> {
            Ok(match args {
                ["list", "table", ..] => self.table.clone(),
                _ => self.ruleset.clone(),
            })
        }
    }

    fn sample() -> Firewall<Fake> {
        Firewall::with(Fake {
            table: Some(TABLE_JSON.into()),
            ..Fake::default()
        })
    }

    #[test]
    fn base_script_makes_the_table_the_four_chains_and_the_established_rule() {
        assert_eq!(
            base_script(None),
            "add table ip stagebox\n\
             add chain ip stagebox postrouting { type nat hook postrouting priority srcnat; policy accept; }\n\
             add chain ip stagebox prerouting { type nat hook prerouting priority dstnat; policy accept; }\n\
             add chain ip stagebox output { type nat hook output priority -100; policy accept; }\n\
             add chain ip stagebox forward { type filter hook forward priority filter; policy accept; }\n\
             add rule ip stagebox forward ct state established,related accept comment \"stagebox-base\"\n"
        );
    }

    #[test]
    fn base_script_is_empty_when_everything_is_there_and_adds_only_what_is_missing() {
        let full = parse_table(TABLE_JSON).unwrap();
        assert_eq!(base_script(Some(&full)), "");
        let mut partial = full.clone();
        partial.chains.retain(|c| c != "output");
        partial
            .rules
            .retain(|r| r.comment.as_deref() != Some(BASE_TAG));
        assert_eq!(
            base_script(Some(&partial)),
            "add chain ip stagebox output { type nat hook output priority -100; policy accept; }\n\
             add rule ip stagebox forward ct state established,related accept comment \"stagebox-base\"\n"
        );
    }

    #[test]
    fn masquerade_rules_name_the_subnet_and_the_bridge() {
        assert_eq!(
            masquerade_rules(Ipv4Addr::new(10, 250, 7, 0), 24, "stageboxt7").unwrap(),
            "add rule ip stagebox postrouting ip saddr 10.250.7.0/24 oifname != \"stageboxt7\" masquerade comment \"stagebox-net:stageboxt7\"\n\
             add rule ip stagebox forward iifname \"stageboxt7\" accept comment \"stagebox-net:stageboxt7\"\n\
             add rule ip stagebox forward oifname \"stageboxt7\" accept comment \"stagebox-net:stageboxt7\"\n"
        );
    }

    #[test]
    fn masquerade_refuses_host_bits_bad_prefixes_and_bad_bridge_names() {
        let e = masquerade_rules(Ipv4Addr::new(10, 250, 7, 1), 24, "stagebox0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.250.7.1/24 is not a network address (the network is 10.250.7.0/24)"
        );
        assert!(masquerade_rules(Ipv4Addr::new(0, 0, 0, 0), 0, "stagebox0").is_err());
        assert!(masquerade_rules(Ipv4Addr::new(10, 0, 0, 0), 33, "stagebox0").is_err());
        for bad in ["", "a\"; flush ruleset", "sixteen-chars-xx", "br 0"] {
            let e = masquerade_rules(Ipv4Addr::new(10, 0, 0, 0), 8, bad).unwrap_err();
            assert!(matches!(e, FirewallError::Invalid(_)), "{bad:?}: {e}");
        }
    }

    fn port(host_ip: Option<Ipv4Addr>, proto: Proto) -> PortRule {
        PortRule {
            container_id: "abc123".into(),
            host_ip,
            host_port: 8080,
            proto,
            container_ip: Ipv4Addr::new(10, 250, 7, 2),
            container_port: 80,
        }
    }

    #[test]
    fn port_rules_dnat_every_local_address_but_loopback() {
        assert_eq!(
            port_rules(&port(None, Proto::Tcp)).unwrap(),
            "add rule ip stagebox prerouting fib daddr type local tcp dport 8080 dnat to 10.250.7.2:80 comment \"stagebox:abc123\"\n\
             add rule ip stagebox output fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat to 10.250.7.2:80 comment \"stagebox:abc123\"\n"
        );
    }

    #[test]
    fn port_rules_with_a_host_address_match_only_it() {
        assert_eq!(
            port_rules(&port(Some(Ipv4Addr::new(192, 0, 2, 5)), Proto::Udp)).unwrap(),
            "add rule ip stagebox prerouting ip daddr 192.0.2.5 udp dport 8080 dnat to 10.250.7.2:80 comment \"stagebox:abc123\"\n\
             add rule ip stagebox output ip daddr 192.0.2.5 udp dport 8080 dnat to 10.250.7.2:80 comment \"stagebox:abc123\"\n"
        );
    }

    #[test]
    fn port_rules_refuse_loopback_port_zero_and_odd_ids() {
        let e = port_rules(&port(Some(Ipv4Addr::LOCALHOST), Proto::Tcp)).unwrap_err();
        assert!(e.to_string().contains("userland proxy"), "{e}");
        let mut p = port(None, Proto::Tcp);
        p.host_port = 0;
        assert!(port_rules(&p).is_err());
        let mut p = port(None, Proto::Tcp);
        p.container_id = "x\" accept; #".into();
        assert!(matches!(port_rules(&p), Err(FirewallError::Invalid(_))));
    }

    #[test]
    fn parse_table_reads_chains_rules_comments_and_ports() {
        let v = parse_table(TABLE_JSON).unwrap();
        assert_eq!(v.chains, ["postrouting", "prerouting", "output", "forward"]);
        assert_eq!(v.rules.len(), 7);
        let handles: Vec<u64> = v
            .rules
            .iter()
            .filter(|r| r.container_id() == Some("abc123"))
            .map(|r| r.handle)
            .collect();
        assert_eq!(handles, [9, 11, 10]);
        let bridges: Vec<&str> = v.rules.iter().filter_map(Rule::bridge).collect();
        assert_eq!(bridges, ["stageboxt7"; 3]);
        let ports: Vec<&PortRule> = v.rules.iter().filter_map(|r| r.port.as_ref()).collect();
        assert_eq!(
            ports,
            [
                &PortRule {
                    container_id: "abc123".into(),
                    host_ip: None,
                    host_port: 18080,
                    proto: Proto::Tcp,
                    container_ip: Ipv4Addr::new(10, 250, 7, 2),
                    container_port: 80,
                },
                &PortRule {
                    container_id: "abc123".into(),
                    host_ip: Some(Ipv4Addr::new(192, 0, 2, 5)),
                    host_port: 5353,
                    proto: Proto::Udp,
                    container_ip: Ipv4Addr::new(10, 250, 7, 2),
                    container_port: 53,
                },
            ]
        );
        assert_eq!(container_ids(&v), ["abc123"]);
    }

    #[test]
    fn parse_table_refuses_what_is_not_nft_json() {
        assert!(matches!(parse_table("{}"), Err(FirewallError::Json { .. })));
        assert!(matches!(
            parse_table("nope"),
            Err(FirewallError::Json { .. })
        ));
    }

    #[test]
    fn removing_a_container_deletes_its_rules_by_handle_in_one_script() {
        let mut fw = sample();
        let recs = fw.remove_container("abc123").unwrap();
        assert_eq!(
            fw.nft.applied,
            ["delete rule ip stagebox prerouting handle 9\n\
              delete rule ip stagebox prerouting handle 11\n\
              delete rule ip stagebox output handle 10\n"]
        );
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].result, "ok");
        assert_eq!(recs[0].call, fw.nft.applied[0]);
        // Unknown ids and a missing table change nothing.
        assert!(fw.remove_container("def456").unwrap().is_empty());
        let mut none = Firewall::with(Fake::default());
        assert!(none.remove_container("abc123").unwrap().is_empty());
        assert!(none.nft.applied.is_empty());
    }

    #[test]
    fn remove_stale_keeps_the_living_and_the_network() {
        let mut fw = sample();
        assert!(fw.remove_stale(|_| true).unwrap().is_empty());
        assert_eq!(fw.remove_stale(|id| id != "abc123").unwrap().len(), 1);
        assert!(!fw.nft.applied[0].contains("forward"));
    }

    #[test]
    fn the_table_stays_while_a_network_or_container_has_rules() {
        let mut fw = sample();
        assert!(fw.remove_table_if_unused().unwrap().is_empty());
        let bare = r#"{"nftables": [{"table": {"family": "ip", "name": "stagebox", "handle": 1}}, {"chain": {"family": "ip", "table": "stagebox", "name": "forward", "handle": 4, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "ip", "table": "stagebox", "chain": "forward", "handle": 5, "comment": "stagebox-base", "expr": []}}]}"#;
        let mut fw = Firewall::with(Fake {
            table: Some(bare.into()),
            ..Fake::default()
        });
        let recs = fw.remove_table_if_unused().unwrap();
        assert_eq!(recs[0].call, "delete table ip stagebox\n");
    }

    #[test]
    fn adding_is_idempotent_and_a_taken_port_is_refused() {
        let mut fw = sample();
        assert!(fw.ensure_base().unwrap().is_empty());
        assert!(fw
            .add_masquerade(Ipv4Addr::new(10, 250, 7, 0), 24, "stageboxt7")
            .unwrap()
            .is_empty());
        let e = fw
            .add_port(
                "def456",
                None,
                18080,
                Proto::Tcp,
                Ipv4Addr::new(10, 250, 7, 3),
                80,
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "port 18080/tcp is already published by container abc123"
        );
        // Same number, other protocol: fine, and the base is not added again.
        fw.add_port(
            "def456",
            None,
            18080,
            Proto::Udp,
            Ipv4Addr::new(10, 250, 7, 3),
            80,
        )
        .unwrap();
        assert!(fw.nft.applied[0].starts_with("add rule ip stagebox prerouting"));
        assert!(fw.nft.applied.len() == 1);
    }

    #[test]
    fn several_ports_go_in_one_script_and_a_port_twice_is_refused() {
        let mut fw = Firewall::with(Fake::default());
        let a = port(None, Proto::Tcp);
        let b = PortRule {
            host_port: 8443,
            container_port: 443,
            host_ip: Some(Ipv4Addr::UNSPECIFIED),
            ..a.clone()
        };
        let recs = fw.add_ports(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(fw.nft.applied.len(), 1);
        assert_eq!(recs[0].call.matches("dnat to").count(), 4);
        // 0.0.0.0 is every address: no `ip daddr 0.0.0.0` match.
        assert!(!recs[0].call.contains("0.0.0.0"), "{}", recs[0].call);
        let twice = PortRule {
            host_ip: Some(Ipv4Addr::new(192, 0, 2, 5)),
            ..a.clone()
        };
        let e = fw.add_ports(&[a, twice]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port 8080/tcp is already published by container abc123"
        );
        assert_eq!(fw.nft.applied.len(), 1, "nothing applied");
        assert!(fw.add_ports(&[]).unwrap().is_empty());
    }

    #[test]
    fn the_first_change_brings_the_base_in_the_same_transaction() {
        let mut fw = Firewall::with(Fake::default());
        let recs = fw
            .add_masquerade(Ipv4Addr::new(10, 250, 7, 0), 24, "stageboxt7")
            .unwrap();
        assert_eq!(recs.len(), 1);
        assert!(recs[0].call.starts_with("add table ip stagebox\n"));
        assert!(recs[0]
            .call
            .ends_with("oifname \"stageboxt7\" accept comment \"stagebox-net:stageboxt7\"\n"));
        assert!(recs[0]
            .to_string()
            .starts_with("nft -f - = ok\n  add table ip stagebox\n"));
    }

    #[test]
    fn docker_s_forward_drop_is_found_and_said_in_one_sentence() {
        let drops = foreign_forward_drops(FOREIGN_JSON).unwrap();
        assert_eq!(
            drops,
            [ForeignDrop {
                family: "ip".into(),
                table: "filter".into(),
                chain: "FORWARD".into(),
                docker_user: true,
            }]
        );
        let s = blocked_sentence(&drops, "stagebox0").unwrap();
        assert!(s.starts_with("the host's firewall drops forwarded packets by default (chain FORWARD of table ip filter"), "{s}");
        assert!(
            s.contains("iptables -I DOCKER-USER -i stagebox0 -j ACCEPT"),
            "{s}"
        );
        assert!(!s.contains(". "), "one sentence: {s}");
        // Our own table, accepting chains and IPv6-only chains do not count.
        assert!(foreign_forward_drops(TABLE_JSON).unwrap().is_empty());
        assert_eq!(blocked_sentence(&[], "stagebox0"), None);
        let mut fw = Firewall::with(Fake {
            ruleset: Some(FOREIGN_JSON.into()),
            ..Fake::default()
        });
        assert!(fw.forward_blocked("stagebox0").unwrap().is_some());
    }

    #[test]
    fn a_forward_drop_without_docker_gets_an_nft_fix() {
        let drops = [ForeignDrop {
            family: "inet".into(),
            table: "filter".into(),
            chain: "forward".into(),
            docker_user: false,
        }];
        let s = blocked_sentence(&drops, "stagebox0").unwrap();
        assert!(
            s.contains("nft insert rule inet filter forward iifname \"stagebox0\" accept"),
            "{s}"
        );
    }

    #[test]
    fn a_missing_nft_is_one_sentence_naming_the_package() {
        let e = FirewallError::NftMissing.to_string();
        assert!(e.contains("Debian's nftables package"), "{e}");
        let err: crate::Error = FirewallError::Invalid("bad".into()).into();
        assert!(matches!(err, crate::Error::Usage(_)));
    }
}
