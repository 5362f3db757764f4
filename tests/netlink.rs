//! kernel::netlink against the real kernel, as root, and ONLY inside network namespaces the
//! test makes itself: each namespace is held by an `unshare --net sleep` child of the test,
//! and a scoped thread joins it with setns(CLONE_NEWNET) (a network namespace is per thread)
//! before it opens its netlink socket. What the client did is read back from outside with
//! `nsenter --net=/proc/PID/ns/net ip ...` and /proc/PID/net/dev, reachability is proved by
//! a TCP connection between the two namespaces' addresses (bounded by timeouts), and the
//! host's `ip -o link` and `ip route` are compared before and after. Skips loudly without
//! root; never skips with STAGEBOX_REQUIRE_ROOT=1.

mod common;
use common::*;
use nix::sched::CloneFlags;
use stagebox::kernel::netlink::{Netlink, NetlinkError, Netns, Route};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace of the test's own, held by a sleeping child; killed and reaped on drop.
struct Holder(Child);

impl Holder {
    fn new() -> Holder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net sleep 60");
        let h = Holder(child);
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let theirs = std::fs::read_link(h.ns_path()).ok();
            if theirs.is_some() && theirs.as_ref() != Some(&ours) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "unshare --net did not make a namespace in 5 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }
    /// `ip ARGS` run inside this namespace.
    fn ip(&self, args: &str) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path()))
            .arg("ip")
            .args(args.split_whitespace())
            .output()
            .expect("nsenter ip");
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Received bytes of an interface, from /proc/PID/net/dev (this namespace's view).
    fn rx_bytes(&self, ifname: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/net/dev", self.pid())).ok()?;
        text.lines().find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == ifname).then(|| rest.split_whitespace().next()?.parse().ok())?
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a fresh thread that joined `holder`'s network namespace first.
fn inside<T: Send>(holder: &Holder, f: impl FnOnce() -> T + Send) -> T {
    let path = holder.ns_path();
    std::thread::scope(|s| {
        s.spawn(move || {
            let fd = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns CLONE_NEWNET");
            f()
        })
        .join()
        .expect("the thread in the namespace panicked")
    })
}

fn calls(nl: &mut Netlink) -> Vec<String> {
    nl.take_log().into_iter().map(|r| r.to_string()).collect()
}

const BR_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);

#[test]
fn bridge_and_veth_connect_two_namespaces_made_by_the_test() {
    if !root_or_skip("bridge_and_veth_connect_two_namespaces_made_by_the_test") {
        return;
    }
    let host_before = host_network();
    let a = Holder::new();
    let b = Holder::new();

    // In A: a bridge with an address, a veth pair with one end on the bridge, the other end
    // moved into B by an fd of B's namespace.
    let b_ns = std::fs::File::open(b.ns_path()).expect("B's namespace");
    let log_a = inside(&a, || {
        let t0 = Instant::now();
        let mut nl = Netlink::open().expect("netlink in A");
        nl.create_bridge("stagebox-br").expect("bridge");
        nl.create_veth("stagebox-v1", "stagebox-p1", None)
            .expect("veth");
        nl.set_master("stagebox-v1", "stagebox-br").expect("master");
        nl.add_address("stagebox-br", BR_ADDR, 24)
            .expect("bridge address");
        nl.set_up("stagebox-br").expect("bridge up");
        nl.set_up("stagebox-v1").expect("veth up");
        nl.set_netns("stagebox-p1", Netns::Fd(b_ns.as_fd()))
            .expect("move peer to B");
        eprintln!(
            "host side (open, bridge, veth, master, address, 2 up, move): {:?}",
            t0.elapsed()
        );
        let links = nl.links().expect("links of A");
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert!(
            !names.contains(&"stagebox-p1"),
            "the peer left A: {links:?}"
        );
        let v1 = links
            .iter()
            .find(|l| l.name == "stagebox-v1")
            .expect("v1 in A");
        assert_eq!(v1.master.as_deref(), Some("stagebox-br"), "{links:?}");
        assert!(v1.up);
        assert!(
            links.iter().any(|l| l.name == "stagebox-br" && l.up),
            "{links:?}"
        );
        let addrs = nl.addresses().expect("addresses of A");
        assert!(
            addrs
                .iter()
                .any(|x| x.link == "stagebox-br" && x.address == BR_ADDR && x.prefix == 24),
            "{addrs:?}"
        );
        calls(&mut nl)
    });
    let joined = log_a.join("\n");
    for want in [
        "RTM_NEWLINK bridge stagebox-br = ok",
        "RTM_NEWLINK veth stagebox-v1 peer stagebox-p1 = ok",
        "RTM_SETLINK stagebox-v1 master stagebox-br = ok",
        "RTM_NEWADDR 10.213.0.1/24 dev stagebox-br = ok",
        "RTM_SETLINK stagebox-br up = ok",
        "RTM_SETLINK stagebox-p1 netns fd ",
    ] {
        assert!(joined.contains(want), "{want:?} not in the log:\n{joined}");
    }

    // The kernel, from outside: the bridge port in A.
    let a_links = a.ip("-o link show master stagebox-br");
    assert!(a_links.contains("stagebox-v1"), "{a_links}");

    // In B: rename the peer eth0, bring it up, address, default route via the bridge.
    inside(&b, || {
        assert!(Netlink::open()
            .unwrap()
            .links()
            .unwrap()
            .iter()
            .any(|l| l.name == "stagebox-p1"));
        let t0 = Instant::now();
        let mut nl = Netlink::open().expect("netlink in B");
        nl.rename("stagebox-p1", "eth0").expect("rename");
        nl.set_up("lo").expect("lo up");
        nl.set_up("eth0").expect("eth0 up");
        nl.add_address("eth0", PEER_ADDR, 24).expect("eth0 address");
        nl.add_default_route(BR_ADDR).expect("default route");
        eprintln!(
            "container side (open, rename, 2 up, address, default route): {:?}",
            t0.elapsed()
        );
        let routes = nl.routes().expect("routes of B");
        assert!(
            routes.contains(&Route {
                destination: None,
                gateway: Some(BR_ADDR),
                link: Some("eth0".into())
            }),
            "{routes:?}"
        );
        assert!(
            routes
                .iter()
                .any(|r| r.to_string() == "10.213.0.0/24 dev eth0"),
            "{routes:?}"
        );
        let log = calls(&mut nl);
        assert!(
            log.contains(&"RTM_SETLINK stagebox-p1 name eth0 = ok".to_string()),
            "{log:?}"
        );
        assert!(
            log.contains(&"RTM_NEWROUTE default via 10.213.0.1 = ok".to_string()),
            "{log:?}"
        );
    });
    let b_addr = b.ip("-o -4 addr show dev eth0");
    assert!(
        b_addr.contains("inet 10.213.0.2/24 brd 10.213.0.255"),
        "{b_addr}"
    );
    let b_route = b.ip("route");
    assert!(
        b_route.contains("default via 10.213.0.1 dev eth0 proto static"),
        "{b_route}"
    );
    let rx_before = b.rx_bytes("eth0").expect("eth0 in B's /proc/PID/net/dev");

    // Reachability: a TCP listener on B's address answers a connection from A.
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            inside(&b, move || {
                let l = TcpListener::bind((PEER_ADDR, 0)).expect("bind in B");
                tx.send(l.local_addr().unwrap().port()).unwrap();
                l.set_nonblocking(true).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match l.accept() {
                        Ok((mut c, from)) => {
                            c.set_nonblocking(false).unwrap();
                            c.write_all(b"pong").unwrap();
                            return from;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            assert!(Instant::now() < deadline, "no connection within 10 s");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        });
        let port = rx.recv_timeout(Duration::from_secs(10)).expect("B's port");
        let answer = inside(&a, move || {
            let to = SocketAddr::from((PEER_ADDR, port));
            let mut c =
                TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connect A -> B");
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = String::new();
            c.read_to_string(&mut buf).expect("read the answer");
            buf
        });
        assert_eq!(answer, "pong");
        let from = server.join().expect("server thread");
        assert_eq!(
            from.ip(),
            std::net::IpAddr::V4(BR_ADDR),
            "B saw A's bridge address"
        );
    });
    let rx_after = b.rx_bytes("eth0").expect("eth0 in B");
    assert!(
        rx_after > rx_before,
        "eth0 in B received nothing: {rx_before} -> {rx_after}"
    );

    // Deleting A's end takes B's end with it; then the bridge goes.
    inside(&a, || {
        let mut nl = Netlink::open().expect("netlink in A");
        nl.delete_link("stagebox-v1").expect("delete veth");
        nl.delete_link("stagebox-br").expect("delete bridge");
        let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, vec!["lo".to_string()]);
    });
    let b_links = b.ip("-o link");
    assert!(
        !b_links.contains("eth0"),
        "the veth went with its pair: {b_links}"
    );

    drop((a, b));
    assert_eq!(
        host_network(),
        host_before,
        "the host's links or routes changed"
    );
}

#[test]
fn veth_peer_is_born_in_a_namespace_given_by_pid() {
    if !root_or_skip("veth_peer_is_born_in_a_namespace_given_by_pid") {
        return;
    }
    let host_before = host_network();
    let a = Holder::new();
    let b = Holder::new();
    let b_pid = b.pid();
    inside(&a, || {
        let mut nl = Netlink::open().expect("netlink in A");
        nl.create_veth("stagebox-v2", "eth0", Some(Netns::Pid(b_pid)))
            .expect("veth");
        let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, vec!["lo".to_string(), "stagebox-v2".to_string()]);
        let log = calls(&mut nl);
        assert_eq!(
            log,
            vec![format!(
                "RTM_NEWLINK veth stagebox-v2 peer eth0 netns pid {b_pid} = ok"
            )]
        );
    });
    inside(&b, || {
        let mut nl = Netlink::open().expect("netlink in B");
        nl.set_up("eth0").expect("eth0 up");
        nl.add_address("eth0", Ipv4Addr::new(10, 214, 0, 2), 24)
            .expect("address");
        nl.add_route(Ipv4Addr::new(10, 215, 0, 0), 16, None, Some("eth0"))
            .expect("link route");
        nl.add_route(
            Ipv4Addr::new(10, 216, 0, 0),
            16,
            Some(Ipv4Addr::new(10, 214, 0, 1)),
            None,
        )
        .expect("gateway route");
        let routes: Vec<String> = nl.routes().unwrap().iter().map(|r| r.to_string()).collect();
        for want in [
            "10.214.0.0/24 dev eth0",
            "10.215.0.0/16 dev eth0",
            "10.216.0.0/16 via 10.214.0.1 dev eth0",
        ] {
            assert!(routes.iter().any(|r| r == want), "{want} not in {routes:?}");
        }
        nl.set_down("eth0").expect("eth0 down");
        let eth0 = nl
            .links()
            .unwrap()
            .into_iter()
            .find(|l| l.name == "eth0")
            .expect("eth0");
        assert!(!eth0.up);
    });
    let b_link = b.ip("-o link show eth0");
    assert!(
        b_link.contains("link-netnsid"),
        "eth0's peer is in another namespace: {b_link}"
    );
    assert!(!b_link.contains(",UP"), "eth0 is down again: {b_link}");
    // Down took the link's routes with it (the kernel flushes them); the address stays.
    assert_eq!(b.ip("-4 route").trim(), "", "routes of a down link");
    let b_addr = b.ip("-o -4 addr show dev eth0");
    assert!(b_addr.contains("10.214.0.2/24"), "{b_addr}");
    drop((a, b));
    assert_eq!(
        host_network(),
        host_before,
        "the host's links or routes changed"
    );
}

#[test]
fn bad_input_and_kernel_refusals_are_one_sentence_and_change_nothing() {
    if !root_or_skip("bad_input_and_kernel_refusals_are_one_sentence_and_change_nothing") {
        return;
    }
    let host_before = host_network();
    let a = Holder::new();
    let before = a.ip("-o link");
    inside(&a, || {
        let mut nl = Netlink::open().expect("netlink in A");
        let e = nl.create_bridge("a-name-longer-than-15").unwrap_err();
        assert!(matches!(e, NetlinkError::BadName { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "bad link name \"a-name-longer-than-15\": a link name is at most 15 bytes"
        );
        assert!(nl.take_log().is_empty(), "nothing was sent for a bad name");

        let e = nl.set_up("stagebox-none").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no link named \"stagebox-none\" in this network namespace"
        );
        let e = nl
            .add_address("lo", Ipv4Addr::new(10, 0, 0, 1), 33)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad prefix length /33: an IPv4 prefix is 0 to 32"
        );

        // A gateway that no link reaches: the kernel says ENETUNREACH.
        let e = nl
            .add_default_route(Ipv4Addr::new(10, 217, 0, 1))
            .unwrap_err();
        assert!(
            matches!(
                e,
                NetlinkError::Kernel {
                    errno: nix::errno::Errno::ENETUNREACH,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "RTM_NEWROUTE default via 10.217.0.1: the gateway is not reachable through any link with an address (ENETUNREACH: Network is unreachable)"
        );
        let log = calls(&mut nl);
        assert_eq!(
            log,
            vec!["RTM_NEWROUTE default via 10.217.0.1 = -1 ENETUNREACH: Network is unreachable"]
        );
    });
    assert_eq!(a.ip("-o link"), before, "nothing changed in the namespace");

    // EEXIST: the second bridge of the same name.
    inside(&a, || {
        let mut nl = Netlink::open().expect("netlink in A");
        nl.create_bridge("stagebox-dup").expect("first bridge");
        let e = nl.create_bridge("stagebox-dup").unwrap_err();
        assert!(
            matches!(
                e,
                NetlinkError::Kernel {
                    errno: nix::errno::Errno::EEXIST,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("RTM_NEWLINK bridge stagebox-dup: it already exists"),
            "{e}"
        );
        nl.delete_link("stagebox-dup").expect("delete");
    });
    assert_eq!(a.ip("-o link"), before, "the namespace is as it was");
    drop(a);
    assert_eq!(
        host_network(),
        host_before,
        "the host's links or routes changed"
    );
}
