//! Networking for containers (issue #14): what a bridge network needs on the host, decided
//! and applied outside the container.
//!
//! - `firewall`: stagebox's own nftables table `ip stagebox` (masquerade for traffic leaving
//!   the host, DNAT for published ports, forwarding for the bridges), through Debian's `nft`
//!   program; rules are tagged with the container id so they can be listed and removed.
//! - `ipam`: IPv4 subnets (`--subnet`), the network records in STATE/networks/NAME.json
//!   (`create`, `ls`, `inspect`, `rm`, the default network `bridge` made on first use) and
//!   the address leases: one file per address, held by an exclusive flock for as long as
//!   its container lives, so a SIGKILLed runtime loses nothing.
//! - `bridge`: the bridge device, its firewall rules and `ip_forward`, made on first use;
//!   where a network's record lives (the default one is shared by every state directory).
//! - `etc`: /etc/hostname, /etc/hosts and /etc/resolv.conf for each container.
//! - `ports`: Docker's `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]` and `-P` (the image's
//!   `ExposedPorts`) parsed into port specs; one sentence for a bad spec or a host port
//!   published twice. Binds nothing.
//! - `proxy`: the userland proxy of published ports (docker-proxy's role): listening sockets
//!   bound on the host, relay threads that setns into the container's network namespace and
//!   connect to 127.0.0.1:CONTAINER_PORT there (TCP with half-close, UDP per client).
//!
//! May import: `error`, `units`, `kernel`, `trace`, `state`. Nothing here knows about stages
//! or a run; the net stage and the runtime call in.

pub mod bridge;
pub mod etc;
pub mod firewall;
pub mod ipam;
pub mod ports;
pub mod proxy;
