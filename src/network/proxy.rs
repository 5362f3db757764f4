//! The userland proxy of published ports (`-p`, `-P`), in the role of Docker's
//! `docker-proxy`: a host socket listens on HOST_IP:HOST_PORT, and every connection (or UDP
//! client) that arrives is relayed to CONTAINER_PORT inside the container.
//!
//! How it reaches the container. A socket belongs to the network namespace of the thread
//! that created it, for its whole life, wherever the descriptor goes afterwards. So:
//!
//! 1. [`Listeners::bind`] binds every listening socket first, on the calling thread, in the
//!    runtime's own network namespace: the host's. A port in use is one sentence, and what
//!    was bound is closed again: nothing changed.
//! 2. [`start`] spawns the proxy's threads. Each one first calls
//!    `setns(container_netns_fd, CLONE_NEWNET)`: a network namespace is a property of a
//!    thread, not of the process, so only that thread moves (never the caller's). The
//!    listening socket it already holds stays on the host.
//! 3. Every socket the thread (or a thread it spawns) creates from then on lives in the
//!    container's namespace, and it connects to `127.0.0.1:CONTAINER_PORT` there: the
//!    container's own loopback.
//!
//! Connecting over the container's loopback needs no address, no route and no firewall rule,
//! so the same proxy serves `--network none` (the container has only `lo`), a bridge network,
//! and a container whose port listens on 127.0.0.1 only. Docker's docker-proxy is a separate
//! process in the host's namespace and connects to the container's bridge address instead,
//! so it needs the bridge, the route and the FORWARD rules; and Docker also installs DNAT
//! rules in PREROUTING, because the proxy alone would hide the client's address. The DNAT
//! rules do not catch a client on the host that connects to 127.0.0.1:HOST_PORT: loopback
//! traffic that the host sends itself goes through OUTPUT, never PREROUTING, and a DNAT to
//! another interface would need `route_localnet`. The proxy is what makes `curl
//! 127.0.0.1:8080` on the host work, in Docker and here. The price of any userland proxy:
//! the program inside sees the connection come from 127.0.0.1, not from the client.
//!
//! Privilege. setns(CLONE_NEWNET) needs CAP_SYS_ADMIN in the user namespace that owns the
//! container's network namespace AND in the caller's own user namespace (the kernel's
//! `netns_install`). Root has both, and [`start`] is all it needs. A rootless runtime has
//! neither in its own (the initial) user namespace, even though it owns the container's:
//! there [`start`] fails with EPERM, in one sentence. The threads cannot join the
//! container's user namespace first either: setns(CLONE_NEWUSER) is refused to a process
//! with more than one thread. So [`start_in_userns`] forks a helper process (one thread)
//! that joins the user namespace, where it holds every capability, then the network
//! namespace; it makes each socket the relays need there, connects it to
//! `127.0.0.1:CONTAINER_PORT`, and hands it back over a unix socket (SCM_RIGHTS), in the
//! spirit of rootlesskit's port driver. The relays then run on the host as before: a
//! socket stays in its namespace wherever its descriptor goes.
//!
//! TCP: one thread per listener accepts (polling the listener and a stop pipe); each
//! connection gets a thread that connects inside the container (refused: the client is
//! closed) and copies container to client, and a second thread that copies client to
//! container. End-of-file on one side becomes `shutdown(SHUT_WR)` on the other, so a
//! half-close travels through. At most [`MAX_TCP_CONNECTIONS`] at once; more are closed.
//!
//! UDP: one thread per listener. Each client address gets its own socket in the container,
//! connected to `127.0.0.1:CONTAINER_PORT`, so the replies can be told apart and sent back
//! with `sendto` from the host socket. A client idle for [`UDP_IDLE`] loses its socket; at
//! most [`MAX_UDP_CLIENTS`] at once, the least recently active one dropped for a new one.
//!
//! Stopping: [`Proxy::stop`] (or drop) closes the write end of the stop pipe, which wakes
//! every poll; the accept threads return, connections in flight are shut down, and every
//! thread is joined. No thread panics: a failed connection is dropped, anything else goes
//! to the trace as an error.

use crate::network::firewall::Proto;
use crate::network::ports::PortSpec;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The listen backlog of a TCP listener, as Docker's proxy.
pub const TCP_BACKLOG: i32 = 128;
/// At most this many TCP connections are relayed at once, per proxy.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// At most this many UDP clients have a socket in the container at once, per port.
pub const MAX_UDP_CLIENTS: usize = 256;
/// A UDP client silent this long loses its socket in the container.
pub const UDP_IDLE: Duration = Duration::from_secs(30);
/// How long a connection to the container's port may take before the client is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Every thread of the proxy has a name that starts with this (`/proc/PID/task/TID/comm`).
pub const THREAD_PREFIX: &str = "sbproxy";

const TRACE: &str = "net";
const COPY_STACK: usize = 256 * 1024;

/// What went wrong, in one sentence.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "port {port}/{proto} on {ip} is already in use on the host (EADDRINUSE); choose \
         another host port with -p OTHER:{container_port}"
    )]
    InUse {
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
        container_port: u16,
    },
    #[error(
        "port {port}/{proto} cannot be published on {ip}: that is not an address of this \
         host (EADDRNOTAVAIL); give one of the host's addresses, or none for all of them"
    )]
    NotAnAddress {
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
    },
    #[error(
        "port {port}/{proto} on {ip} needs privilege to bind (EACCES): ports below {start} \
         are root's on this host (net.ipv4.ip_unprivileged_port_start); choose a host port \
         of {start} or more, as in -p {start}:{container_port}"
    )]
    Privileged {
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
        container_port: u16,
        start: u16,
    },
    #[error("cannot publish port {port}/{proto} on {ip}: {call}: {errno}")]
    Socket {
        call: &'static str,
        ip: Ipv4Addr,
        port: u16,
        proto: Proto,
        errno: Errno,
    },
    #[error(
        "the port proxy cannot enter the container's network namespace (setns CLONE_NEWNET: \
         {0}); it needs CAP_SYS_ADMIN in its own user namespace and in the one that owns the \
         container's, which a rootless run does not have"
    )]
    SetnsPermission(Errno),
    #[error(
        "the port proxy cannot enter the container's network namespace (setns CLONE_NEWNET: \
         {0}); the descriptor it was given is not a network namespace"
    )]
    SetnsNotNetns(Errno),
    #[error(
        "the port proxy cannot enter the container's network namespace (setns CLONE_NEWNET: {0})"
    )]
    Setns(Errno),
    #[error("cannot start the port proxy: {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A published port as bound: the host port is the real one, also when the kernel picked it.
/// Saved in the container record; shown by `stagebox port` as Docker's `docker port` does:
/// `80/tcp -> 0.0.0.0:8080`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Published {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    #[serde(with = "proto_text")]
    pub proto: Proto,
}

/// The container record's line (`80/tcp -> 0.0.0.0:8080`), one format for both.
impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::state::container::PublishedPort::from(*self).fmt(f)
    }
}

/// What the container record keeps (the same JSON fields).
impl From<Published> for crate::state::container::PublishedPort {
    fn from(p: Published) -> Self {
        crate::state::container::PublishedPort {
            container_port: p.container_port,
            proto: p.proto.as_str().to_string(),
            host_ip: p.host_ip,
            host_port: p.host_port,
        }
    }
}

/// `Proto` as `"tcp"` / `"udp"` in JSON, as Docker writes it.
mod proto_text {
    use crate::network::firewall::Proto;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Proto, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(serde::de::Error::custom(format!(
                "the protocol {other:?} is neither tcp nor udp"
            ))),
        }
    }
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

struct Bound {
    published: Published,
    socket: Socket,
}

/// The host's listening sockets, bound and not yet served.
pub struct Listeners {
    bound: Vec<Bound>,
}

impl Listeners {
    /// Binds every spec on the host (the calling thread's network namespace): 0.0.0.0 when no
    /// address is given, a port the kernel picks when no host port is. All or nothing: on an
    /// error the sockets bound so far are closed.
    pub fn bind(specs: &[PortSpec]) -> Result<Listeners, ProxyError> {
        let mut bound = Vec::with_capacity(specs.len());
        for spec in specs {
            // On an error, `bound` is dropped here and its sockets closed.
            bound.push(bind_one(spec)?);
        }
        Ok(Listeners { bound })
    }

    /// What was bound, with the real host ports.
    pub fn published(&self) -> Vec<Published> {
        self.bound.iter().map(|b| b.published).collect()
    }
}

fn bind_one(spec: &PortSpec) -> Result<Bound, ProxyError> {
    let ip = spec.bind_ip();
    let port = spec.host_port.unwrap_or(0);
    let proto = spec.proto;
    let fail = |call: &'static str, errno: Errno| match errno {
        Errno::EADDRINUSE => ProxyError::InUse {
            ip,
            port,
            proto,
            container_port: spec.container_port,
        },
        Errno::EADDRNOTAVAIL => ProxyError::NotAnAddress { ip, port, proto },
        Errno::EACCES if call == "bind" => ProxyError::Privileged {
            ip,
            port,
            proto,
            container_port: spec.container_port,
            start: unprivileged_port_start(),
        },
        errno => ProxyError::Socket {
            call,
            ip,
            port,
            proto,
            errno,
        },
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket::socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail("socket", e))?;
    if proto == Proto::Tcp {
        // As Docker: a port whose last connections are in TIME_WAIT can be bound again.
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)
            .map_err(|e| fail("setsockopt SO_REUSEADDR", e))?;
    }
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(ip, port)),
    )
    .map_err(|e| fail("bind", e))?;
    let socket = match proto {
        Proto::Tcp => {
            let backlog = Backlog::new(TCP_BACKLOG).map_err(|e| fail("listen", e))?;
            socket::listen(&fd, backlog).map_err(|e| fail("listen", e))?;
            Socket::Tcp(TcpListener::from(fd))
        }
        Proto::Udp => Socket::Udp(UdpSocket::from(fd)),
    };
    let local = match &socket {
        Socket::Tcp(l) => l.local_addr(),
        Socket::Udp(u) => u.local_addr(),
    }
    .map_err(|e| fail("getsockname", io_errno(&e)))?;
    Ok(Bound {
        published: Published {
            host_ip: ip,
            host_port: local.port(),
            container_port: spec.container_port,
            proto,
        },
        socket,
    })
}

/// The lowest port an unprivileged process may bind (1024 unless the host says otherwise).
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1024)
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The running proxy. Stops on [`Proxy::stop`] or when dropped.
pub struct Proxy {
    published: Vec<Published>,
    /// Closing it wakes every poll of the proxy: the stop signal.
    stop_w: Option<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
    conns: Arc<Conns>,
}

/// Starts serving `listeners`: one thread per listener, each in the network namespace of
/// `netns` (an open `/proc/PID/ns/net` of the container). Returns once every thread has
/// entered the namespace, or the error of the first that could not (then nothing runs).
pub fn start(listeners: Listeners, netns: OwnedFd) -> Result<Proxy, ProxyError> {
    start_with(listeners, Maker::Here, Some(netns))
}

/// Starts serving `listeners` for a container in a user namespace of its own, as a rootless
/// runtime must: a helper process (forked here) joins `userns` and then `netns`, and makes
/// every socket the relays need there, handing each back over a unix socket. The proxy's
/// threads stay in the host's namespaces. Works as root too. The helper is a child process
/// of the caller until the proxy stops (then it is killed and reaped).
pub fn start_in_userns(
    listeners: Listeners,
    userns: OwnedFd,
    netns: OwnedFd,
) -> Result<Proxy, ProxyError> {
    let helper = Helper::spawn(&userns, &netns)?;
    drop((userns, netns));
    start_with(listeners, Maker::Helper(helper), None)
}

fn start_with(
    listeners: Listeners,
    maker: Maker,
    netns: Option<OwnedFd>,
) -> Result<Proxy, ProxyError> {
    let published = listeners.published();
    let (stop_r, stop_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ProxyError::Start {
            what: "pipe2",
            source: e.into(),
        })?;
    let stop_r = Arc::new(stop_r);
    let netns = Arc::new(netns);
    let conns = Arc::new(Conns {
        inner: Mutex::default(),
        maker,
    });
    let mut proxy = Proxy {
        published,
        stop_w: Some(stop_w),
        threads: Vec::new(),
        conns: conns.clone(),
    };
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Errno>>();
    for b in listeners.bound {
        let (stop_r, netns, conns, ready) = (
            stop_r.clone(),
            netns.clone(),
            conns.clone(),
            ready_tx.clone(),
        );
        let port = b.published.container_port;
        let (name, body): (&str, Box<dyn FnOnce() + Send>) = match b.socket {
            Socket::Tcp(l) => (
                "tcp",
                Box::new(move || tcp_accept(l, port, &stop_r, &conns)),
            ),
            Socket::Udp(u) => ("udp", Box::new(move || udp_relay(u, port, &stop_r, &conns))),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}-{name}"))
            .spawn(move || {
                let entered = match netns.as_ref() {
                    Some(ns) => nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET),
                    None => Ok(()),
                };
                drop(netns);
                let ok = entered.is_ok();
                let _ = ready.send(entered);
                drop(ready);
                if ok {
                    body();
                }
            });
        match spawned {
            Ok(h) => proxy.threads.push(h),
            Err(source) => {
                // `proxy` drops here: the threads already started are stopped and joined.
                return Err(ProxyError::Start {
                    what: "spawn a thread",
                    source,
                });
            }
        }
    }
    drop(ready_tx);
    for _ in 0..proxy.threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(errno)) => {
                return Err(match errno {
                    Errno::EPERM => ProxyError::SetnsPermission(errno),
                    Errno::EINVAL | Errno::EBADF => ProxyError::SetnsNotNetns(errno),
                    errno => ProxyError::Setns(errno),
                })
            }
            Err(_) => {
                return Err(ProxyError::Start {
                    what: "a proxy thread ended before it started",
                    source: std::io::Error::from(ErrorKind::Other),
                })
            }
        }
    }
    Ok(proxy)
}

impl Proxy {
    /// The ports it serves, with the real host ports.
    pub fn published(&self) -> &[Published] {
        &self.published
    }

    /// Stops listening (the host ports are free once this returns), drops the connections in
    /// flight and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The listening sockets close when their threads return.
        drop(self.stop_w.take());
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        let copiers = {
            let mut c = self.conns.lock();
            c.stopped = true;
            for [a, b] in c.open.values() {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut c.threads)
        };
        for h in copiers {
            let _ = h.join();
        }
        self.conns.lock().open.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The TCP connections in flight: a copy of each end (to shut them down on stop) and the
/// threads relaying them; and how a socket in the container is made.
struct Conns {
    inner: Mutex<ConnsInner>,
    maker: Maker,
}

#[derive(Default)]
struct ConnsInner {
    next: u64,
    open: HashMap<u64, [TcpStream; 2]>,
    threads: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl Conns {
    fn lock(&self) -> MutexGuard<'_, ConnsInner> {
        // A relay thread does not panic while holding the lock; if one did, the list is
        // still sound.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Waits until `fd` is readable or the stop pipe is closed. True: stop.
fn wait(stop: &OwnedFd, fds: &[BorrowedFd<'_>], timeout_ms: i32) -> (bool, Vec<bool>) {
    let mut p: Vec<libc::pollfd> = std::iter::once(stop.as_raw_fd())
        .chain(fds.iter().map(|f| f.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `p` is a live, correctly sized array of pollfd for the whole call.
        let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
        match Errno::result(n) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                crate::trace::error(TRACE, &format!("port proxy: poll: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
        }
    }
    let ready = |r: libc::c_short| r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    let stop = ready(p[0].revents);
    (stop, p[1..].iter().map(|x| ready(x.revents)).collect())
}

fn tcp_accept(listener: TcpListener, port: u16, stop: &OwnedFd, conns: &Arc<Conns>) {
    if let Err(e) = listener.set_nonblocking(true) {
        crate::trace::error(TRACE, &format!("port proxy: tcp port {port}: {e}"));
        return;
    }
    let mut reported = false;
    loop {
        let (stopping, _) = wait(stop, &[listener.as_fd()], -1);
        if stopping {
            return;
        }
        loop {
            match listener.accept() {
                Ok((client, _)) => {
                    reported = false;
                    relay(client, port, conns);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: say it once, and do not spin.
                    if !reported {
                        crate::trace::error(
                            TRACE,
                            &format!("port proxy: accept on tcp port {port}: {e}"),
                        );
                        reported = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
}

/// Hands one accepted client to a thread of its own, which connects in the container.
fn relay(client: TcpStream, port: u16, conns: &Arc<Conns>) {
    let mut c = conns.lock();
    c.threads.retain(|h| !h.is_finished());
    if c.stopped || c.open.len() >= MAX_TCP_CONNECTIONS {
        return; // the client is closed
    }
    let conns2 = conns.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("{THREAD_PREFIX}-conn"))
        .stack_size(COPY_STACK)
        .spawn(move || connect_and_copy(client, port, &conns2));
    if let Ok(h) = spawned {
        c.threads.push(h);
    }
}

/// Runs in the container's network namespace (inherited from the accept thread).
fn connect_and_copy(client: TcpStream, port: u16, conns: &Arc<Conns>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = conns.maker.tcp(port) else {
        return; // nothing listens inside (or it took too long): the client is closed
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let clones = (|| {
        Some((
            [client.try_clone().ok()?, server.try_clone().ok()?],
            client.try_clone().ok()?,
            server.try_clone().ok()?,
        ))
    })();
    let Some((kept, client2, server2)) = clones else {
        return;
    };
    let id = {
        let mut c = conns.lock();
        if c.stopped {
            return;
        }
        c.next += 1;
        let id = c.next;
        c.open.insert(id, kept);
        id
    };
    let left = Arc::new(AtomicU8::new(2));
    let (left2, conns2) = (left.clone(), conns.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("{THREAD_PREFIX}-copy"))
        .stack_size(COPY_STACK)
        .spawn(move || {
            copy(&client2, &server2);
            done(&left2, &conns2, id);
        });
    match spawned {
        Ok(h) => conns.lock().threads.push(h),
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            conns.lock().open.remove(&id);
            return;
        }
    }
    copy(&server, &client);
    done(&left, conns, id);
}

/// Copies `from` to `to` until end-of-file, then half-closes `to`; on an error it shuts both
/// down, so the other direction ends too.
fn copy(from: &TcpStream, to: &TcpStream) {
    let mut reader = from;
    let mut writer = to;
    match std::io::copy(&mut reader, &mut writer) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

/// The last of a connection's two copiers forgets it (closing the kept ends).
fn done(left: &AtomicU8, conns: &Conns, id: u64) {
    if left.fetch_sub(1, Ordering::AcqRel) == 1 {
        conns.lock().open.remove(&id);
    }
}

struct UdpClient {
    socket: UdpSocket,
    last: Instant,
}

fn udp_relay(host: UdpSocket, port: u16, stop: &OwnedFd, conns: &Conns) {
    if let Err(e) = host.set_nonblocking(true) {
        crate::trace::error(TRACE, &format!("port proxy: udp port {port}: {e}"));
        return;
    }
    let mut clients: HashMap<SocketAddr, UdpClient> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let addrs: Vec<SocketAddr> = clients.keys().copied().collect();
        let (stopping, ready) = {
            let mut fds = vec![host.as_fd()];
            fds.extend(
                addrs
                    .iter()
                    .filter_map(|a| clients.get(a).map(|c| c.socket.as_fd())),
            );
            wait(stop, &fds, 1000)
        };
        if stopping {
            return;
        }
        let now = Instant::now();
        if ready.first() == Some(&true) {
            // At most 64 datagrams per turn, so the replies get their turn too.
            for _ in 0..64 {
                let (n, from) = match host.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break, // WouldBlock, or an ICMP error of an earlier send_to
                };
                if !clients.contains_key(&from) {
                    if clients.len() >= MAX_UDP_CLIENTS {
                        let oldest = clients.iter().min_by_key(|(_, c)| c.last).map(|(a, _)| *a);
                        if let Some(a) = oldest {
                            clients.remove(&a);
                        }
                    }
                    // In the container's network namespace (made here or by the helper).
                    let made = conns.maker.udp(port).and_then(|s| {
                        s.set_nonblocking(true)?;
                        Ok(s)
                    });
                    match made {
                        Ok(socket) => {
                            clients.insert(from, UdpClient { socket, last: now });
                        }
                        Err(_) => continue, // this datagram is lost, as UDP may lose it
                    }
                }
                if let Some(c) = clients.get_mut(&from) {
                    c.last = now;
                    let _ = c.socket.send(&buf[..n]);
                }
            }
        }
        for (addr, _) in addrs.iter().zip(ready.iter().skip(1)).filter(|(_, r)| **r) {
            let Some(c) = clients.get_mut(addr) else {
                continue;
            };
            for _ in 0..64 {
                match c.socket.recv(&mut buf) {
                    Ok(n) => {
                        c.last = now;
                        let _ = host.send_to(&buf[..n], addr);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // WouldBlock, or ECONNREFUSED: nothing listens inside (an ICMP error).
                    Err(_) => break,
                }
            }
        }
        clients.retain(|_, c| now.duration_since(c.last) < UDP_IDLE);
    }
}

/// How the relays get a socket in the container's network namespace, connected to
/// `127.0.0.1:PORT` there.
enum Maker {
    /// The proxy's threads joined the namespace: a socket they make is in it.
    Here,
    /// A helper process in the container's user and network namespaces makes it.
    Helper(Helper),
}

impl Maker {
    fn tcp(&self, port: u16) -> std::io::Result<TcpStream> {
        match self {
            Maker::Here => TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                CONNECT_TIMEOUT,
            ),
            Maker::Helper(h) => h.make(Proto::Tcp, port).map(TcpStream::from),
        }
    }

    fn udp(&self, port: u16) -> std::io::Result<UdpSocket> {
        match self {
            Maker::Here => {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
                s.connect((Ipv4Addr::LOCALHOST, port))?;
                Ok(s)
            }
            Maker::Helper(h) => h.make(Proto::Udp, port).map(UdpSocket::from),
        }
    }
}

/// The helper process of [`start_in_userns`]. It is forked from a process that may have
/// threads, so after the fork it makes only raw system calls (no allocation, no locks):
/// setns(CLONE_NEWUSER) (allowed: it is one thread), setns(CLONE_NEWNET) (allowed: it now
/// holds CAP_SYS_ADMIN in the user namespace that owns the network namespace, and is in
/// it), then one request at a time over a SOCK_SEQPACKET pair: 3 bytes (protocol, port)
/// in; a 4-byte errno out, with the connected socket as SCM_RIGHTS when it is 0.
struct Helper {
    sock: Mutex<OwnedFd>,
    pid: nix::unistd::Pid,
}

impl Helper {
    fn spawn(userns: &OwnedFd, netns: &OwnedFd) -> Result<Helper, ProxyError> {
        use nix::sys::socket::{socketpair, SockFlag, SockType};
        let start = |what: &'static str| {
            move |e: Errno| ProxyError::Start {
                what,
                source: e.into(),
            }
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(start("socketpair"))?;
        let keep = [theirs.as_raw_fd(), userns.as_raw_fd(), netns.as_raw_fd()];
        // SAFETY: the child runs only `helper_main`, which makes raw system calls and never
        // returns.
        match unsafe { nix::unistd::fork() }.map_err(start("fork the port helper"))? {
            nix::unistd::ForkResult::Child => unsafe { helper_main(keep) },
            nix::unistd::ForkResult::Parent { child } => {
                drop(theirs);
                let helper = Helper {
                    sock: Mutex::new(ours),
                    pid: child,
                };
                // The helper's first word: whether it entered the namespaces.
                let mut status = [0u8; 4];
                let n = recv_timeout(&helper.sock_fd(), &mut status);
                match n {
                    Ok(4) => match i32::from_ne_bytes(status) {
                        0 => Ok(helper),
                        errno => Err(match Errno::from_raw(errno) {
                            Errno::EPERM => ProxyError::SetnsPermission(Errno::EPERM),
                            Errno::EINVAL | Errno::EBADF => {
                                ProxyError::SetnsNotNetns(Errno::from_raw(errno))
                            }
                            e => ProxyError::Setns(e),
                        }),
                    },
                    Ok(_) => Err(start("the port helper")(Errno::EPIPE)),
                    Err(e) => Err(start("the port helper")(e)),
                }
            }
        }
    }

    fn sock_fd(&self) -> MutexGuard<'_, OwnedFd> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn make(&self, proto: Proto, port: u16) -> std::io::Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
        let sock = self.sock_fd();
        let [hi, lo] = port.to_be_bytes();
        let req = [u8::from(proto == Proto::Tcp), hi, lo];
        send(sock.as_raw_fd(), &req, MsgFlags::MSG_NOSIGNAL)?;
        let mut word = [0u8; 4];
        let mut iov = [std::io::IoSliceMut::new(&mut word)];
        let mut cmsg = nix::cmsg_space!(std::os::fd::RawFd);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fd = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: a descriptor the kernel just installed for us, owned by no one.
                    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        let bytes = msg.bytes;
        drop(sock);
        if bytes != 4 {
            return Err(std::io::Error::from(ErrorKind::UnexpectedEof));
        }
        match (i32::from_ne_bytes(word), fd) {
            (0, Some(fd)) => Ok(fd),
            (0, None) => Err(std::io::Error::from(ErrorKind::InvalidData)),
            (errno, _) => Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        // ECHILD when a subreaper's wait loop took it first: nothing left to do.
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// recv with a 5 s timeout (the helper's first word).
fn recv_timeout(sock: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, CONNECT_TIMEOUT.as_millis() as i32) };
    if Errno::result(n)? == 0 {
        return Err(Errno::ETIMEDOUT);
    }
    nix::sys::socket::recv(sock.as_raw_fd(), buf, nix::sys::socket::MsgFlags::empty())
}

/// The helper process, after fork: raw system calls only, never returns.
///
/// SAFETY: call only in the child of a fork; `keep` is [socket, user ns, net ns].
unsafe fn helper_main(keep: [libc::c_int; 3]) -> ! {
    let [sock, userns, netns] = keep;
    // Close every other descriptor: above all the host's listening sockets, so they are
    // free again as soon as the proxy closes its own.
    let mut sorted = keep;
    sorted.sort_unstable();
    let mut from: libc::c_uint = 3;
    for fd in sorted {
        let fd = fd as libc::c_uint;
        if fd > from {
            libc::syscall(libc::SYS_close_range, from, fd - 1, 0);
        }
        from = fd + 1;
    }
    libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
    let errno = || *libc::__errno_location();
    let mut status: i32 = 0;
    if libc::setns(userns, libc::CLONE_NEWUSER) != 0 || libc::setns(netns, libc::CLONE_NEWNET) != 0
    {
        status = errno();
    }
    libc::close(userns);
    libc::close(netns);
    let word = status.to_ne_bytes();
    libc::send(sock, word.as_ptr().cast(), 4, libc::MSG_NOSIGNAL);
    if status != 0 {
        libc::_exit(1);
    }
    loop {
        let mut req = [0u8; 3];
        let n = libc::recv(sock, req.as_mut_ptr().cast(), 3, 0);
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n != 3 {
            libc::_exit(0); // the proxy closed its end, or died
        }
        let ty = if req[0] == 1 {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        let port = u16::from_be_bytes([req[1], req[2]]);
        let mut fd = libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0);
        let mut err: i32 = 0;
        if fd < 0 {
            err = errno();
        } else {
            // connect(2) honours SO_SNDTIMEO; put it back to none afterwards.
            let mut tv = libc::timeval {
                tv_sec: CONNECT_TIMEOUT.as_secs() as libc::time_t,
                tv_usec: 0,
            };
            let tv_len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&tv as *const libc::timeval).cast(),
                tv_len,
            );
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
                },
                sin_zero: [0; 8],
            };
            let r = libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            if r != 0 {
                err = errno();
                libc::close(fd);
                fd = -1;
            } else {
                tv.tv_sec = 0;
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_SNDTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    tv_len,
                );
            }
        }
        let mut word = err.to_ne_bytes();
        let mut iov = libc::iovec {
            iov_base: word.as_mut_ptr().cast(),
            iov_len: 4,
        };
        // Room for one cmsghdr with one int, 8-byte aligned.
        let mut space = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if fd >= 0 {
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::copy_nonoverlapping(
                (&fd as *const libc::c_int).cast::<u8>(),
                libc::CMSG_DATA(c),
                4,
            );
        }
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}
