//! network::proxy against the real kernel: the published-port proxy relays host connections
//! on 127.0.0.1 into a network namespace the test makes itself, and only there.
//!
//! The "container" is a network namespace held by an `unshare --net sleep` child, with `lo`
//! up, and echo servers on its 127.0.0.1 (threads of this test that joined it with setns).
//! Its echo ports are not open on the host's loopback, so an echo that comes back through
//! 127.0.0.1:HOST_PORT crossed namespaces, and the servers count what reached them. After
//! `stop()` the host ports bind again and no thread named `sbproxy*` is left in
//! /proc/self/task. The rootless path is played by a thread that dropped CAP_SYS_ADMIN
//! (capabilities are per thread): plain `start` is refused in one sentence, and
//! `start_in_userns`, with a user namespace that owns the network namespace, relays through
//! its helper process, which is reaped at stop. Every socket has a timeout; traffic goes to
//! 127.0.0.1 only. As root (the namespaces); skips loudly without it, never with
//! STAGEBOX_REQUIRE_ROOT=1.

mod common;
use common::*;
use nix::sched::CloneFlags;
use stagebox::network::firewall::Proto;
use stagebox::network::ports::{self, PortSpec};
use stagebox::network::proxy::{self, Listeners, ProxyError, Published, THREAD_PREFIX};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd as _, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The tests of this file count the proxy's threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const T: Duration = Duration::from_secs(5);

/// A network namespace of the test's own, held by a sleeping child; killed on drop.
struct Holder(Child);

impl Holder {
    fn new() -> Holder {
        Holder::with(&["--net"])
    }
    /// A user namespace (root's own uid as 0, as a rootless runtime maps) that owns a
    /// network namespace.
    fn with_userns() -> Holder {
        Holder::with(&["--user", "--map-root-user", "--net"])
    }
    fn with(flags: &[&str]) -> Holder {
        let child = Command::new("unshare")
            .args(flags)
            .args(["sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net sleep 60");
        let h = Holder(child);
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let deadline = Instant::now() + T;
        loop {
            let theirs = std::fs::read_link(h.ns_path()).ok();
            if theirs.is_some() && theirs.as_ref() != Some(&ours) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unshare --net made no namespace in 5 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = Command::new("nsenter")
            .arg(format!("--net={}", h.ns_path()))
            .args(["ip", "link", "set", "lo", "up"])
            .output()
            .expect("nsenter ip link set lo up");
        assert!(
            out.status.success(),
            "lo up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        h
    }
    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
    fn netns(&self) -> OwnedFd {
        std::fs::File::open(self.ns_path())
            .expect("open the namespace")
            .into()
    }
    fn userns(&self) -> OwnedFd {
        std::fs::File::open(format!("/proc/{}/ns/user", self.0.id()))
            .expect("open the user namespace")
            .into()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Echo servers on 127.0.0.1 inside the namespace: TCP echoes everything after the client's
/// end-of-file (so a half-close must travel through), UDP echoes each datagram.
struct Echo {
    tcp_port: u16,
    udp_port: u16,
    tcp_conns: Arc<AtomicUsize>,
    udp_datagrams: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Echo {
    fn start(holder: &Holder) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_conns = Arc::new(AtomicUsize::new(0));
        let udp_datagrams = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for udp in [false, true] {
            let (path, stop, tx) = (holder.ns_path(), stop.clone(), tx.clone());
            let count = if udp {
                udp_datagrams.clone()
            } else {
                tcp_conns.clone()
            };
            threads.push(std::thread::spawn(move || {
                let ns = std::fs::File::open(&path).expect("open the namespace");
                nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
                if udp {
                    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp bind inside");
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    tx.send((true, s.local_addr().unwrap().port())).unwrap();
                    let mut buf = [0u8; 2048];
                    // Bounded: 60 s at most, whatever happens.
                    for _ in 0..1200 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        if let Ok((n, from)) = s.recv_from(&mut buf) {
                            count.fetch_add(1, Ordering::SeqCst);
                            let _ = s.send_to(&buf[..n], from);
                        }
                    }
                } else {
                    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("tcp bind inside");
                    l.set_nonblocking(true).unwrap();
                    tx.send((false, l.local_addr().unwrap().port())).unwrap();
                    for _ in 0..1200 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        match l.accept() {
                            Ok((mut c, _)) => {
                                count.fetch_add(1, Ordering::SeqCst);
                                let _ = c.set_nonblocking(false);
                                c.set_read_timeout(Some(T)).unwrap();
                                c.set_write_timeout(Some(T)).unwrap();
                                let mut all = Vec::new();
                                if c.read_to_end(&mut all).is_ok() {
                                    let _ = c.write_all(&all);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                }
            }));
        }
        let (mut tcp_port, mut udp_port) = (0, 0);
        for _ in 0..2 {
            let (udp, port) = rx.recv_timeout(T).expect("echo servers ready");
            *(if udp { &mut udp_port } else { &mut tcp_port }) = port;
        }
        Echo {
            tcp_port,
            udp_port,
            tcp_conns,
            udp_datagrams,
            stop,
            threads,
        }
    }
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("echo thread");
        }
    }
}

fn spec(container_port: u16, proto: Proto) -> PortSpec {
    PortSpec {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        host_port: None,
        container_port,
        proto,
    }
}

fn proxy_threads() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return vec![];
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with(THREAD_PREFIX))
        .collect()
}

fn tcp_echo(port: u16, data: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), T)
        .expect("connect to the published port");
    c.set_read_timeout(Some(T)).unwrap();
    c.set_write_timeout(Some(T)).unwrap();
    let writer = {
        let mut w = c.try_clone().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            w.write_all(&data).expect("send");
            w.shutdown(Shutdown::Write).expect("half-close");
        })
    };
    let mut back = Vec::new();
    c.read_to_end(&mut back)
        .expect("the echo, before the timeout");
    writer.join().unwrap();
    back
}

fn udp_echo(client: &UdpSocket, port: u16, data: &[u8]) -> Vec<u8> {
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut buf = [0u8; 2048];
    // Loopback does not lose datagrams; retry a few times anyway, bounded.
    for _ in 0..3 {
        client.send_to(data, to).expect("udp send");
        match client.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, to, "the reply comes from the published port");
                return buf[..n].to_vec();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("udp recv: {e}"),
        }
    }
    panic!("no UDP echo through port {port} in 3 tries");
}

/// A port that is free on the host's 127.0.0.1 now (for TCP and UDP).
fn free_port() -> u16 {
    for _ in 0..20 {
        let t = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 0");
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 20 tries");
}

#[test]
fn tcp_and_udp_reach_the_namespace_through_the_host_port_and_stop_leaves_nothing() {
    if !root_or_skip(
        "tcp_and_udp_reach_the_namespace_through_the_host_port_and_stop_leaves_nothing",
    ) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let host_before = host_network();
    let holder = Holder::new();
    let echo = Echo::start(&holder);
    // Port 9 has no server in the fresh namespace.
    let specs = [
        spec(echo.tcp_port, Proto::Tcp),
        spec(echo.udp_port, Proto::Udp),
        spec(9, Proto::Tcp),
    ];
    let listeners = Listeners::bind(&specs).expect("bind on 127.0.0.1");
    let published = listeners.published();
    assert_eq!(published.len(), 3);
    for (p, s) in published.iter().zip(&specs) {
        assert_eq!(p.host_ip, Ipv4Addr::LOCALHOST);
        assert_ne!(p.host_port, 0, "the kernel's port is read back");
        assert_eq!((p.container_port, p.proto), (s.container_port, s.proto));
    }
    let (tcp, udp, nothing) = (published[0], published[1], published[2]);
    assert_eq!(
        tcp.to_string(),
        format!("{}/tcp -> 127.0.0.1:{}", echo.tcp_port, tcp.host_port)
    );
    let json = serde_json::to_string(&udp).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"host_ip":"127.0.0.1","host_port":{},"container_port":{},"proto":"udp"}}"#,
            udp.host_port, echo.udp_port
        )
    );
    assert_eq!(serde_json::from_str::<Published>(&json).unwrap(), udp);
    // The container record keeps the same fields and shows the same line.
    let record = stagebox::state::container::PublishedPort::from(udp);
    assert_eq!(
        serde_json::to_value(&record).unwrap(),
        serde_json::to_value(udp).unwrap()
    );
    assert_eq!(record.to_string(), udp.to_string());

    // The echo ports live in the namespace only: not on the host's loopback.
    assert!(
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, echo.tcp_port)), T)
            .is_err()
            || echo.tcp_port == tcp.host_port,
        "the test's echo port {} answers on the host too: the test proves nothing",
        echo.tcp_port
    );

    let proxy = proxy::start(listeners, holder.netns()).expect("start the proxy");
    assert_eq!(proxy.published(), &published[..]);
    assert!(
        !proxy_threads().is_empty(),
        "the proxy runs threads named {THREAD_PREFIX}*"
    );

    // TCP: small, large (1 MiB), and 8 at once; each ends with a half-close.
    assert_eq!(
        tcp_echo(tcp.host_port, b"hello through the proxy"),
        b"hello through the proxy"
    );
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let t0 = Instant::now();
    assert!(
        tcp_echo(tcp.host_port, &big) == big,
        "1 MiB came back unchanged"
    );
    eprintln!(
        "measured: 1 MiB each way through the proxy in {:?}",
        t0.elapsed()
    );
    let many: Vec<_> = (0..8)
        .map(|i| {
            let port = tcp.host_port;
            std::thread::spawn(move || tcp_echo(port, format!("client {i}").as_bytes()))
        })
        .collect();
    for (i, h) in many.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), format!("client {i}").as_bytes());
    }
    assert_eq!(
        echo.tcp_conns.load(Ordering::SeqCst),
        10,
        "every connection reached the namespace"
    );

    // UDP: two clients, each gets its own replies.
    let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    assert_eq!(udp_echo(&a, udp.host_port, b"ping a"), b"ping a");
    assert_eq!(udp_echo(&b, udp.host_port, b"ping b"), b"ping b");
    assert_eq!(udp_echo(&a, udp.host_port, b"again a"), b"again a");
    assert!(echo.udp_datagrams.load(Ordering::SeqCst) >= 3);

    // Nothing listens on the container port: the client is closed, not left hanging.
    let started = Instant::now();
    let mut c = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, nothing.host_port)),
        T,
    )
    .expect("the host side accepts");
    c.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 16];
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    assert!(started.elapsed() < T, "closed at once, not after a timeout");

    // The host port is taken: a second bind is one sentence and binds nothing else.
    let err = Listeners::bind(&[PortSpec {
        host_port: Some(tcp.host_port),
        container_port: 80,
        ..spec(80, Proto::Tcp)
    }])
    .err()
    .expect("the port is in use");
    assert_eq!(
        err.to_string(),
        format!(
            "port {}/tcp on 127.0.0.1 is already in use on the host (EADDRINUSE); choose another host port with -p OTHER:80",
            tcp.host_port
        )
    );
    let err = Listeners::bind(&[PortSpec {
        host_port: Some(udp.host_port),
        ..spec(53, Proto::Udp)
    }])
    .err()
    .expect("the udp port is in use");
    assert!(
        matches!(
            err,
            ProxyError::InUse {
                proto: Proto::Udp,
                ..
            }
        ),
        "{err}"
    );
    let free = free_port();
    let err = Listeners::bind(&[
        PortSpec {
            host_port: Some(free),
            ..spec(81, Proto::Tcp)
        },
        PortSpec {
            host_port: Some(tcp.host_port),
            ..spec(80, Proto::Tcp)
        },
    ])
    .err()
    .expect("all or nothing");
    assert!(matches!(err, ProxyError::InUse { .. }), "{err}");
    TcpListener::bind((Ipv4Addr::LOCALHOST, free))
        .expect("the port bound before the failure was closed again");

    // A connection in flight when the proxy stops is dropped, not left hanging.
    let mut inflight =
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, tcp.host_port)), T)
            .unwrap();
    inflight.set_read_timeout(Some(T)).unwrap();
    inflight.write_all(b"no end-of-file yet").unwrap();
    let deadline = Instant::now() + T;
    while echo.tcp_conns.load(Ordering::SeqCst) < 11 {
        assert!(
            Instant::now() < deadline,
            "the in-flight connection never reached the namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let stopping = Instant::now();
    proxy.stop();
    assert!(stopping.elapsed() < T, "stop took {:?}", stopping.elapsed());
    match inflight.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the in-flight connection should be closed by stop, got {other:?}"),
    }
    let left = within_2s(|| proxy_threads().is_empty().then_some(()));
    assert!(
        left.is_some(),
        "threads left after stop: {:?}",
        proxy_threads()
    );
    TcpListener::bind((Ipv4Addr::LOCALHOST, tcp.host_port)).expect("the tcp host port is free");
    TcpListener::bind((Ipv4Addr::LOCALHOST, nothing.host_port)).expect("the tcp host port is free");
    UdpSocket::bind((Ipv4Addr::LOCALHOST, udp.host_port)).expect("the udp host port is free");
    assert!(
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, tcp.host_port)), T)
            .is_err(),
        "nothing listens on the host port after stop"
    );

    echo.stop();
    drop(holder);
    assert_eq!(
        host_network(),
        host_before,
        "the host's links and routes are unchanged"
    );
}

#[test]
fn a_descriptor_that_is_no_network_namespace_is_one_sentence_and_frees_the_ports() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let listeners = Listeners::bind(&[spec(80, Proto::Tcp), spec(53, Proto::Udp)]).expect("bind");
    let published = listeners.published();
    let not_netns: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let err = proxy::start(listeners, not_netns)
        .err()
        .expect("setns refuses /dev/null");
    assert_eq!(
        err.to_string(),
        "the port proxy cannot enter the container's network namespace (setns CLONE_NEWNET: EINVAL: Invalid argument); the descriptor it was given is not a network namespace"
    );
    let left = within_2s(|| proxy_threads().is_empty().then_some(()));
    assert!(left.is_some(), "threads left: {:?}", proxy_threads());
    TcpListener::bind((Ipv4Addr::LOCALHOST, published[0].host_port)).expect("tcp port freed");
    UdpSocket::bind((Ipv4Addr::LOCALHOST, published[1].host_port)).expect("udp port freed");
}

#[test]
fn parsed_specs_bind_as_asked() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let free = free_port();
    let specs = ports::parse(&format!("127.0.0.1:{free}:80/udp")).unwrap();
    let l = Listeners::bind(&specs).expect("bind the free port");
    assert_eq!(
        l.published()[0].to_string(),
        format!("80/udp -> 127.0.0.1:{free}")
    );
    drop(l);
    UdpSocket::bind((Ipv4Addr::LOCALHOST, free)).expect("dropping the listeners frees the port");
}

/// capability(7): CAP_SYS_ADMIN is bit 21.
const CAP_SYS_ADMIN: u32 = 21;

/// Takes CAP_SYS_ADMIN out of the calling thread's effective set (capabilities are per
/// thread; threads it spawns inherit its set). True when it is gone.
fn drop_sys_admin_on_this_thread() -> bool {
    drop_cap_on_this_thread(CAP_SYS_ADMIN)
}

/// Takes capability `cap` out of the calling thread's effective set. True when it is gone.
fn drop_cap_on_this_thread(cap: u32) -> bool {
    use stagebox::kernel::status::{capget, capset};
    let (eff, prm, inh) = capget().expect("capget");
    capset(eff & !(1u64 << cap), prm, inh).expect("capset");
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("CapEff in /proc/thread-self/status");
    eff & (1u64 << cap) == 0
}

#[test]
fn without_cap_sys_admin_setns_is_refused_in_one_sentence_as_rootless_would_be() {
    if !root_or_skip("without_cap_sys_admin_setns_is_refused_in_one_sentence_as_rootless_would_be")
    {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let holder = Holder::new();
    let netns = holder.netns();
    // On a thread of its own, so the test's other threads keep their capabilities.
    let (err, port) = std::thread::spawn(move || {
        assert!(
            drop_sys_admin_on_this_thread(),
            "CAP_SYS_ADMIN still effective"
        );
        let l = Listeners::bind(&[spec(80, Proto::Tcp)]).expect("bind needs no CAP_SYS_ADMIN");
        let port = l.published()[0].host_port;
        (proxy::start(l, netns).err(), port)
    })
    .join()
    .expect("the thread without CAP_SYS_ADMIN");
    let err = err.expect("setns without CAP_SYS_ADMIN must fail");
    assert!(matches!(err, ProxyError::SetnsPermission(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the port proxy cannot enter the container's network namespace (setns CLONE_NEWNET: EPERM: Operation not permitted); it needs CAP_SYS_ADMIN in its own user namespace and in the one that owns the container's, which a rootless run does not have"
    );
    let left = within_2s(|| proxy_threads().is_empty().then_some(()));
    assert!(left.is_some(), "threads left: {:?}", proxy_threads());
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the host port was closed again");
}

/// This process's children, from /proc/self/task/*/children.
fn children() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return vec![];
    };
    let mut all: Vec<u32> = dir
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("children")).ok())
        .flat_map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    all.sort_unstable();
    all
}

#[test]
fn in_a_user_namespace_a_helper_process_makes_the_sockets_without_cap_sys_admin() {
    if !root_or_skip("in_a_user_namespace_a_helper_process_makes_the_sockets_without_cap_sys_admin")
    {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let holder = Holder::with_userns();
    assert_ne!(
        std::fs::read_link(format!("/proc/{}/ns/user", holder.0.id())).unwrap(),
        std::fs::read_link("/proc/self/ns/user").unwrap(),
        "the holder has a user namespace of its own"
    );
    let before = children();
    let echo = Echo::start(&holder);
    let (userns, netns) = (holder.userns(), holder.netns());
    let specs = [
        spec(echo.tcp_port, Proto::Tcp),
        spec(echo.udp_port, Proto::Udp),
        spec(9, Proto::Tcp),
    ];
    // Without CAP_SYS_ADMIN in the host's user namespace, as a rootless runtime: plain
    // `start` is refused (the test above), the helper gets in through the user namespace.
    let (proxy, during) = std::thread::spawn(move || {
        assert!(
            drop_sys_admin_on_this_thread(),
            "CAP_SYS_ADMIN still effective"
        );
        let l = Listeners::bind(&specs).expect("bind");
        let p = proxy::start_in_userns(l, userns, netns).expect("start with the helper");
        (p, children())
    })
    .join()
    .expect("the thread without CAP_SYS_ADMIN");
    assert_eq!(
        during.len(),
        before.len() + 1,
        "one helper process: {during:?}"
    );
    let helper = *during.iter().find(|p| !before.contains(p)).unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{helper}/ns/net")).unwrap(),
        std::fs::read_link(holder.ns_path()).unwrap(),
        "the helper is in the container's network namespace"
    );
    let (tcp, udp, nothing) = (
        proxy.published()[0],
        proxy.published()[1],
        proxy.published()[2],
    );
    assert_eq!(
        tcp_echo(tcp.host_port, b"through the helper"),
        b"through the helper"
    );
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    assert!(
        tcp_echo(tcp.host_port, &big) == big,
        "1 MiB came back unchanged"
    );
    let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(
        udp_echo(&a, udp.host_port, b"udp via helper"),
        b"udp via helper"
    );
    assert_eq!(echo.tcp_conns.load(Ordering::SeqCst), 2);
    let mut c = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, nothing.host_port)),
        T,
    )
    .expect("the host side accepts");
    c.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 8];
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }

    proxy.stop();
    assert_eq!(children(), before, "the helper is killed and reaped");
    let left = within_2s(|| proxy_threads().is_empty().then_some(()));
    assert!(left.is_some(), "threads left: {:?}", proxy_threads());
    TcpListener::bind((Ipv4Addr::LOCALHOST, tcp.host_port)).expect("tcp port free");
    UdpSocket::bind((Ipv4Addr::LOCALHOST, udp.host_port)).expect("udp port free");
    echo.stop();
}

#[test]
fn a_privileged_host_port_without_cap_net_bind_service_is_one_sentence() {
    if !root_or_skip("a_privileged_host_port_without_cap_net_bind_service_is_one_sentence") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("ip_unprivileged_port_start")
        .trim()
        .parse()
        .expect("a number");
    if start <= 1 {
        eprintln!(
            "SKIP: every port is unprivileged on this host (ip_unprivileged_port_start={start})"
        );
        return;
    }
    let port = start - 1;
    let err = std::thread::spawn(move || {
        // capability(7): CAP_NET_BIND_SERVICE is bit 10. The kernel checks it before it
        // looks whether the port is in use, so the answer is the same either way.
        assert!(
            drop_cap_on_this_thread(10),
            "CAP_NET_BIND_SERVICE still effective"
        );
        Listeners::bind(&[PortSpec {
            host_port: Some(port),
            ..spec(80, Proto::Tcp)
        }])
        .err()
    })
    .join()
    .expect("the thread without CAP_NET_BIND_SERVICE")
    .expect("binding a privileged port must fail");
    assert_eq!(
        err.to_string(),
        format!(
            "port {port}/tcp on 127.0.0.1 needs privilege to bind (EACCES): ports below {start} are root's on this host (net.ipv4.ip_unprivileged_port_start); choose a host port of {start} or more, as in -p {start}:80"
        )
    );
}
