//! `stagebox run --network ...` and `stagebox network ...` end to end, as root, read back from
//! what the kernel shows: /proc/net/dev, `ip` (busybox's, in the default rootfs) and
//! /proc/self/ns/net inside; /sys/class/net/VETH/master, /proc/PID/ns/net, `ip -o link`,
//! `nft list ruleset` and the mount table outside.
//!
//! Every test that makes a network makes its own, with a subnet of its own (10.201.N.0/24, N
//! per test), and removes it at the end, so the tests may run in parallel; the default
//! network `bridge` (stagebox0) is never removed. The tests that compare the host before and
//! after (links, firewall, mounts) hold a lock alone; the others share it. Traffic goes only
//! between containers a test made, on its own network. Every wait is bounded; a watchdog ends
//! the binary if something hangs. Skips loudly without root; never with
//! STAGEBOX_REQUIRE_ROOT=1.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Once, RwLock};
use std::time::{Duration, Instant};

/// Shared by the tests that only make things of their own; held alone by those that compare
/// the whole host before and after.
static HOST: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    watchdog();
    HOST.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    watchdog();
    HOST.write().unwrap_or_else(|e| e.into_inner())
}

/// Ends the whole binary if a test hangs (a container that never prints `ready`, a read
/// that never returns): the guards cannot run then, but nothing is left waiting forever.
fn watchdog() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(480));
            eprintln!("tests/network: still running after 480 s; giving up");
            std::process::exit(101);
        });
    });
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A network of the test's own, removed on drop (after its containers are gone, which may
/// take a moment: the retries are bounded).
struct Net {
    name: String,
    subnet: String,
    bridge: String,
    removed: bool,
}

impl Net {
    fn create(name: &str, subnet: &str) -> Net {
        // A network of this name left by an earlier, interrupted run of these tests.
        let _ = stagebox(&["network", "rm", name]);
        let out = stagebox(&["network", "create", "--subnet", subnet, name]);
        assert!(
            out.status.success(),
            "network create --subnet {subnet} {name}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), name);
        let j = inspect_network(name);
        assert_eq!(j["subnet"], subnet, "{j}");
        let bridge = j["bridge"].as_str().expect("bridge in inspect").to_string();
        assert!(bridge.starts_with("stagebox-"), "{bridge}");
        assert!(
            std::path::Path::new(&format!("/sys/class/net/{bridge}/bridge")).is_dir(),
            "{bridge} is not a bridge device in /sys/class/net"
        );
        Net {
            name: name.to_string(),
            subnet: subnet.to_string(),
            bridge,
            removed: false,
        }
    }

    /// The network's first three octets ("10.201.1.").
    fn prefix(&self) -> String {
        let base = self.subnet.split('/').next().unwrap_or_default();
        base.rsplit_once('.').map_or("", |x| x.0).to_string() + "."
    }

    fn gateway(&self) -> String {
        format!("{}1", self.prefix())
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.to_string().starts_with(&self.prefix()) && ip.octets()[3] > 1 && ip.octets()[3] < 255
    }

    /// `network rm`, which must succeed; the bridge and its firewall rules must be gone.
    fn remove(mut self) {
        let out = stagebox(&["network", "rm", &self.name]);
        assert!(
            out.status.success(),
            "network rm {}: exit {:?}: {}",
            self.name,
            out.status.code(),
            text(&out.stderr)
        );
        self.removed = true;
        assert!(
            !std::path::Path::new(&format!("/sys/class/net/{}", self.bridge)).exists(),
            "bridge {} is still there after network rm",
            self.bridge
        );
        let rules = ruleset().join("\n");
        assert!(
            !rules.contains(&format!("stagebox-net:{}\"", self.bridge)),
            "rules of {} left after network rm:\n{rules}",
            self.bridge
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        for _ in 0..30 {
            if stagebox(&["network", "rm", &self.name]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("tests/network: could not remove network {}", self.name);
    }
}

fn inspect_network(name: &str) -> serde_json::Value {
    let out = stagebox(&["network", "inspect", name]);
    assert!(
        out.status.success(),
        "network inspect {name}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("network inspect prints JSON")
}

fn inspect_container(name: &str) -> serde_json::Value {
    let out = stagebox(&["inspect", name]);
    assert!(
        out.status.success(),
        "inspect {name}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

/// The last component of a symlink's target (e.g. /sys/class/net/X/master -> the bridge).
fn read_link_name(path: &str) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// A name unique to this test process.
fn unique(tag: &str) -> String {
    format!("nt{tag}-{}", std::process::id())
}

/// The host's interfaces as `ip -o link show` names them (without the `@peer` part).
fn links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip -o link show");
    assert!(out.status.success());
    let mut v: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    v.sort();
    v
}

/// The host's firewall, stateless (no counters), line by line.
fn ruleset() -> Vec<String> {
    let out = Command::new("nft")
        .args(["-s", "list", "ruleset"])
        .output()
        .expect("nft list ruleset (Debian's nftables)");
    assert!(out.status.success(), "nft: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// `stagebox network ls`, line by line.
fn network_ls() -> Vec<String> {
    let out = stagebox(&["network", "ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// Interface names in the /proc/net/dev table within a text (the lines after its header
/// that name an interface).
fn dev_names(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with(" face |"))
        .skip(1)
        .map_while(|l| {
            let (n, _) = l.split_once(':')?;
            let n = n.trim();
            (!n.is_empty() && !n.contains(char::is_whitespace)).then(|| n.to_string())
        })
        .collect()
}

/// The IPv4 addresses in `ip -o -4 addr` output ("inet A.B.C.D/N").
fn inet(out: &str) -> Vec<Ipv4Addr> {
    out.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "inet")
        .filter_map(|w| w[1].split('/').next()?.parse().ok())
        .collect()
}

/// The value after `KEY ` on the line that starts with it.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
}

/// Polls `ok` every 50 ms for up to `secs`; true once it holds.
fn within(secs: u64, ok: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a child for up to `secs`; kills it and panics past that.
fn wait_bounded(child: &mut Child, secs: u64, what: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A container the test keeps running: `stagebox run --rm --trace off ARGS -- /bin/sh -c
/// SCRIPT MARKER`, with stdin a pipe. The script prints what it wants the test to see, then
/// `ready`, then usually waits with `read x`: closing stdin ends it.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    err: Option<ChildStderr>,
    /// What the script printed before `ready`.
    before: String,
    marker: String,
    done: bool,
}

impl Running {
    fn start(args: &[&str], script: &str) -> Running {
        let marker = marker();
        let mut all: Vec<&str> = vec!["run", "--rm", "--trace", "off"];
        all.extend_from_slice(args);
        let m = marker.clone();
        all.extend_from_slice(&["--", "/bin/sh", "-c", script, &m]);
        let mut child = cmd(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stagebox");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let err = child.stderr.take();
        let mut r = Running {
            child,
            stdin,
            out,
            err,
            before: String::new(),
            marker,
            done: false,
        };
        loop {
            let mut line = String::new();
            let n = r
                .out
                .read_line(&mut line)
                .expect("read the workload's stdout");
            if n == 0 {
                let mut err = String::new();
                if let Some(mut e) = r.err.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "stagebox {all:?} ended before `ready`\nstdout: {}\nstderr: {err}",
                    r.before
                );
            }
            if line.trim() == "ready" {
                return r;
            }
            r.before.push_str(&line);
        }
    }

    /// Closes stdin (the script's `read x` returns) and waits (bounded): the exit code, the
    /// rest of stdout, stderr.
    fn finish(mut self) -> (i32, String, String) {
        drop(self.stdin.take());
        let code = wait_bounded(&mut self.child, 30, "a container after its stdin closed");
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let mut err = String::new();
        if let Some(mut e) = self.err.take() {
            let _ = e.read_to_string(&mut err);
        }
        self.done = true;
        assert_none_left(&self.marker, "a finished container");
        (code, rest, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(KillMarked(self.marker.clone()));
    }
}

/// `stagebox run --rm --trace off ARGS -- /bin/sh -c SCRIPT`, bounded by busybox `timeout`
/// inside; returns (code, stdout, stderr) after checking no process of it is left.
fn run_sh(args: &[&str], script: &str) -> (i32, String, String) {
    let bounded = format!(
        "timeout 20 /bin/sh -c '{}' \"$0\"",
        script.replace('\'', r"'\''")
    );
    sh(args, &bounded)
}

/// The container's host-end veth, from its id (`veth` + 7 hex digits).
fn veth_of(id: &str) -> String {
    format!("veth{}", &id[..7])
}

// ---------------------------------------------------------------------------------------

/// (1) A bridge run: inside, only lo and eth0, an address of the network with the default
/// route via its gateway, and a network namespace that is not the host's; outside, while it
/// runs, its host-end veth is a port of the network's bridge, and that veth goes with it.
#[test]
fn a_bridge_run_has_lo_and_eth0_in_a_namespace_of_its_own_and_its_veth_in_the_bridge() {
    if !root_or_skip("bridge run") {
        return;
    }
    let _g = shared();
    let net = Net::create(&unique("br"), "10.201.1.0/24");
    let name = unique("br-c");
    let a = Running::start(
        &["--name", &name, "--network", &net.name],
        "echo NS $(readlink /proc/self/ns/net); echo DEV; cat /proc/net/dev; echo ADDR $(ip -o -4 addr show dev eth0); echo ROUTE $(ip route show default); echo FIB; cat /proc/net/fib_trie; echo ready; read x || :",
    );
    let info = a.before.clone();
    assert_eq!(
        dev_names(&info),
        ["lo", "eth0"],
        "/proc/net/dev inside:\n{info}"
    );
    let ips = inet(field(&info, "ADDR").unwrap_or_default());
    assert_eq!(ips.len(), 1, "{info}");
    let ip = ips[0];
    assert!(net.contains(ip), "eth0 has {ip}, not in {}", net.subnet);
    assert!(
        info.contains(&format!("|-- {ip}")),
        "{ip} is not in /proc/net/fib_trie:\n{info}"
    );
    let route = field(&info, "ROUTE").unwrap_or_default();
    assert!(
        route.starts_with(&format!("default via {} dev eth0", net.gateway())),
        "default route inside: {route:?}"
    );
    let ns_inside = field(&info, "NS").unwrap_or_default().to_string();
    assert!(ns_inside.starts_with("net:["), "{info}");
    assert_ne!(
        ns_inside,
        host_ns("net"),
        "the container has the host's netns"
    );

    // From outside: the record, the process's namespace, the veth in the bridge.
    let rec = inspect_container(&name);
    assert_eq!(rec["network"], net.name.as_str(), "{rec}");
    assert_eq!(rec["ip"], ip.to_string(), "{rec}");
    let pid = rec["pid"].as_i64().expect("a running container's pid");
    let ns_outside = std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .expect("the container's ns/net")
        .to_string_lossy()
        .into_owned();
    assert_eq!(ns_outside, ns_inside);
    let veth = veth_of(rec["id"].as_str().expect("id"));
    assert_eq!(
        read_link_name(&format!("/sys/class/net/{veth}/master")).as_deref(),
        Some(net.bridge.as_str()),
        "{veth} is not a port of {}",
        net.bridge
    );
    let brif: Vec<String> = std::fs::read_dir(format!("/sys/class/net/{}/brif", net.bridge))
        .expect("the bridge's ports")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(brif, std::slice::from_ref(&veth), "ports of {}", net.bridge);
    let oper =
        std::fs::read_to_string(format!("/sys/class/net/{veth}/operstate")).unwrap_or_default();
    assert_eq!(oper.trim(), "up", "{veth} operstate");

    let (code, _, err) = a.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        within(3, || !std::path::Path::new(&format!(
            "/sys/class/net/{veth}"
        ))
        .exists()),
        "{veth} is still on the host after the run"
    );
    assert_eq!(inspect_network(&net.name)["leases"], serde_json::json!([]));
    net.remove();
}

/// (2) Two containers on one network: B finds A by name (/etc/hosts), pings it and fetches a
/// page from A's web server on port 8080; A's /etc/hosts, written before B existed, has
/// gained B's line.
#[test]
fn two_containers_on_one_network_reach_each_other_by_name() {
    if !root_or_skip("two containers") {
        return;
    }
    let _g = shared();
    let net = Net::create(&unique("two"), "10.201.2.0/24");
    let a_name = unique("two-a");
    let b_name = unique("two-b");
    let a = Running::start(
        &["--name", &a_name, "--network", &net.name],
        "mkdir -p /tmp/www && echo page-of-$0 > /tmp/www/index.html && httpd -p 8080 -h /tmp/www || exit 9; echo ADDR $(ip -o -4 addr show dev eth0); echo ready; read x || :; echo HOSTS; cat /etc/hosts",
    );
    let a_ip = inet(field(&a.before, "ADDR").unwrap_or_default());
    assert_eq!(a_ip.len(), 1, "{}", a.before);
    let a_ip = a_ip[0];
    let script = format!(
        "echo ADDR $(ip -o -4 addr show dev eth0); echo RESOLVED $(grep -w {a_name} /etc/hosts); ping -c1 -W2 {a_name} && echo PING-OK; for i in 1 2 3 4 5 6 7 8 9 10; do printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 2 {a_name} 8080 | grep page-of && break; sleep 0.2; done"
    );
    let (code, out, err) = run_sh(&["--name", &b_name, "--network", &net.name], &script);
    let b_ip = inet(field(&out, "ADDR").unwrap_or_default());
    assert_eq!(b_ip.len(), 1, "{out}");
    let b_ip = b_ip[0];
    assert!(net.contains(b_ip) && b_ip != a_ip, "A {a_ip}, B {b_ip}");
    assert!(
        field(&out, "RESOLVED").is_some_and(
            |l| l.starts_with(&format!("{a_ip}\t")) || l.starts_with(&format!("{a_ip} "))
        ),
        "B's /etc/hosts has no line for {a_name} at {a_ip}:\n{out}"
    );
    assert!(
        out.contains(&format!("({a_ip})")) && out.contains("PING-OK"),
        "B could not ping {a_name} ({a_ip}):\n{out}\n{err}"
    );
    assert!(
        out.contains(&format!("page-of-{}", a.marker)),
        "B did not get A's page over TCP port 8080:\n{out}\n{err}"
    );
    assert_eq!(code, 0, "{out}\n{err}");

    let (code, rest, err) = a.finish();
    assert_eq!(code, 0, "{err}");
    let hosts = rest.split("HOSTS").nth(1).unwrap_or_default();
    assert!(
        hosts.contains(&format!("{a_ip}\t")) && hosts.contains(&format!("{b_ip}\t{b_name}")),
        "A's /etc/hosts lacks itself or B (added when B started):\n{hosts}"
    );
    net.remove();
}

/// (3) `--network container:A`: B's process is in A's network namespace (the inode the host
/// shows for A's pid), sees A's eth0 and address, and reaches A's server on 127.0.0.1.
#[test]
fn network_container_joins_the_other_container_s_namespace() {
    if !root_or_skip("container:") {
        return;
    }
    let _g = shared();
    let net = Net::create(&unique("join"), "10.201.3.0/24");
    let a_name = unique("join-a");
    let a = Running::start(
        &["--name", &a_name, "--network", &net.name],
        "mkdir -p /tmp/www && echo local-of-$0 > /tmp/www/index.html && httpd -p 127.0.0.1:8081 -h /tmp/www || exit 9; echo ADDR $(ip -o -4 addr show dev eth0); echo ready; read x || :",
    );
    let a_ip = inet(field(&a.before, "ADDR").unwrap_or_default());
    assert_eq!(a_ip.len(), 1, "{}", a.before);
    let rec = inspect_container(&a_name);
    let a_pid = rec["pid"].as_i64().expect("A's pid");
    let a_ns = std::fs::read_link(format!("/proc/{a_pid}/ns/net"))
        .expect("A's ns/net")
        .to_string_lossy()
        .into_owned();
    assert_ne!(a_ns, host_ns("net"));
    let join = format!("container:{a_name}");
    let (code, out, err) = run_sh(
        &["--network", &join],
        "echo NS $(readlink /proc/self/ns/net); cat /proc/net/dev; echo ADDR $(ip -o -4 addr show dev eth0); for i in 1 2 3 4 5 6 7 8 9 10; do printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 2 127.0.0.1 8081 | grep local-of && break; sleep 0.2; done",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(field(&out, "NS"), Some(a_ns.as_str()), "{out}");
    assert_eq!(dev_names(&out), ["lo", "eth0"], "{out}");
    assert_eq!(inet(field(&out, "ADDR").unwrap_or_default()), a_ip, "{out}");
    assert!(
        out.contains(&format!("local-of-{}", a.marker)),
        "B did not reach A's 127.0.0.1:8081:\n{out}\n{err}"
    );
    // Joining made no veth: the bridge still has exactly A's.
    let ports = std::fs::read_dir(format!("/sys/class/net/{}/brif", net.bridge))
        .expect("brif")
        .count();
    assert_eq!(ports, 1);
    let (code, _, err) = a.finish();
    assert_eq!(code, 0, "{err}");
    net.remove();
}

/// (4) `--network none`: a namespace of its own with only lo (up, 127.0.0.1); `--network
/// host`: the stage is off, the process is in the test's own network namespace and sees the
/// host's interfaces.
#[test]
fn network_none_has_only_lo_and_network_host_is_the_host_s_namespace() {
    if !root_or_skip("none and host") {
        return;
    }
    let _g = shared();
    let (code, out, err) = run_sh(
        &["--network", "none"],
        "echo NS $(readlink /proc/self/ns/net); cat /proc/net/dev; echo ADDR $(ip -o -4 addr); ping -c1 -W2 127.0.0.1 >/dev/null && echo LO-OK",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(dev_names(&out), ["lo"], "{out}");
    assert_eq!(
        inet(field(&out, "ADDR").unwrap_or_default()),
        [Ipv4Addr::LOCALHOST],
        "{out}"
    );
    assert!(
        out.contains("LO-OK"),
        "127.0.0.1 unreachable with --network none:\n{out}"
    );
    let ns = field(&out, "NS").unwrap_or_default();
    assert!(ns.starts_with("net:[") && ns != host_ns("net"), "{out}");

    let host_dev = || dev_names(&std::fs::read_to_string("/proc/self/net/dev").expect("net/dev"));
    let host_before = host_dev();
    let (code, out, err) = run_sh(
        &["--network", "host"],
        "echo NS $(readlink /proc/self/ns/net); cat /proc/net/dev",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(field(&out, "NS"), Some(host_ns("net").as_str()), "{out}");
    let inside = dev_names(&out);
    // The host's interfaces that were there before and after (others' veths come and go).
    let host_after = host_dev();
    for i in host_before.iter().filter(|i| host_after.contains(i)) {
        assert!(
            inside.contains(i),
            "--network host does not see {i}: {inside:?}"
        );
    }
    assert!(inside.len() > 1, "{inside:?}");
}

/// (5) Leases: A gets the lowest address, B (while A runs) the next; when A ends its address
/// is free at once and the next run takes it, while B still holds its own.
#[test]
fn addresses_are_leased_while_a_container_lives_and_free_when_it_ends() {
    if !root_or_skip("leases") {
        return;
    }
    let _g = shared();
    let net = Net::create(&unique("lease"), "10.201.5.0/24");
    let script = "echo ADDR $(ip -o -4 addr show dev eth0); echo ready; read x || :";
    let a = Running::start(&["--network", &net.name], script);
    let b = Running::start(&["--network", &net.name], script);
    let a_ip = inet(field(&a.before, "ADDR").unwrap_or_default());
    let b_ip = inet(field(&b.before, "ADDR").unwrap_or_default());
    let lowest: Ipv4Addr = format!("{}2", net.prefix()).parse().unwrap();
    let next: Ipv4Addr = format!("{}3", net.prefix()).parse().unwrap();
    assert_eq!(a_ip, [lowest], "A: {}", a.before);
    assert_eq!(b_ip, [next], "B: {}", b.before);
    let leases = inspect_network(&net.name)["leases"].to_string();
    assert!(
        leases.contains(&lowest.to_string()) && leases.contains(&next.to_string()),
        "network inspect while A and B run: {leases}"
    );
    let (code, _, err) = a.finish();
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_sh(
        &["--network", &net.name],
        "echo ADDR $(ip -o -4 addr show dev eth0)",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        inet(field(&out, "ADDR").unwrap_or_default()),
        [lowest],
        "the run after A ended did not get A's address back: {out}"
    );
    let leases = inspect_network(&net.name)["leases"].to_string();
    assert!(
        !leases.contains(&format!("\"{lowest}\"")) && leases.contains(&next.to_string()),
        "network inspect with only B running: {leases}"
    );
    let (code, _, err) = b.finish();
    assert_eq!(code, 0, "{err}");
    assert_eq!(inspect_network(&net.name)["leases"], serde_json::json!([]));
    net.remove();
}

/// (6) 20 bridge runs at once on one network: 20 distinct addresses of it, all exit 0; then
/// no lease is held, and the host's links and firewall are as before (with the network, and
/// again after it is removed).
#[test]
fn twenty_concurrent_bridge_runs_get_distinct_addresses_and_leave_nothing() {
    if !root_or_skip("20 concurrent runs") {
        return;
    }
    let _g = exclusive();
    let links0 = links();
    let rules0 = ruleset();
    let mounts0 = host_mounts_but_compare_leaks();
    let net = Net::create(&unique("many"), "10.201.6.0/24");
    let links1 = links();
    let rules1 = ruleset();
    assert!(links1.contains(&net.bridge));
    let t = Instant::now();
    let markers: Vec<String> = (0..20).map(|_| marker()).collect();
    let _kill: Vec<KillMarked> = markers.iter().map(|m| KillMarked(m.clone())).collect();
    // Each prints its address, then holds it until its stdin closes: all 20 hold theirs at
    // the same moment, so an address handed out twice would show.
    let mut kids: Vec<Child> = markers
        .iter()
        .map(|m| {
            cmd(&[
                "run",
                "--rm",
                "--trace",
                "off",
                "--network",
                &net.name,
                "--",
                "/bin/sh",
                "-c",
                "echo ADDR $(ip -o -4 addr show dev eth0); read x || :",
                m,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stagebox")
        })
        .collect();
    let mut outs: Vec<BufReader<ChildStdout>> = kids
        .iter_mut()
        .map(|k| BufReader::new(k.stdout.take().expect("stdout")))
        .collect();
    let mut ips = Vec::new();
    for (i, o) in outs.iter_mut().enumerate() {
        let mut line = String::new();
        let _ = o.read_line(&mut line);
        let ip = inet(field(&line, "ADDR").unwrap_or_default());
        if ip.len() != 1 {
            let mut err = String::new();
            let _ = kids[i]
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            panic!("run {i} printed {line:?}\n{err}");
        }
        assert!(
            net.contains(ip[0]),
            "run {i}: {} not in {}",
            ip[0],
            net.subnet
        );
        ips.push(ip[0]);
    }
    let held = inspect_network(&net.name)["leases"]
        .as_array()
        .map_or(0, |v| v.len());
    assert_eq!(held, 20, "network inspect while all 20 run");
    for k in kids.iter_mut() {
        drop(k.stdin.take());
    }
    for (i, k) in kids.iter_mut().enumerate() {
        let code = wait_bounded(k, 120, "one of 20 concurrent runs");
        let mut err = String::new();
        let _ = k.stderr.take().expect("stderr").read_to_string(&mut err);
        assert_eq!(code, 0, "run {i}: {err}");
    }
    eprintln!(
        "tests/network: 20 concurrent bridge runs took {:?}",
        t.elapsed()
    );
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        20,
        "an address was handed out twice: {ips:?}"
    );
    for m in &markers {
        assert_none_left(m, "20 concurrent runs");
    }
    assert_eq!(
        inspect_network(&net.name)["leases"],
        serde_json::json!([]),
        "leases held after every run ended"
    );
    let d = lasting_differences(&links1, links);
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "links after the runs: {d:?}"
    );
    let d = lasting_differences(&rules1, ruleset);
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "firewall after the runs: {d:?}"
    );
    net.remove();
    let d = lasting_differences(&links0, links);
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "links after network rm: {d:?}"
    );
    let d = lasting_differences(&rules0, ruleset);
    assert!(
        d.0.is_empty() && d.1.is_empty(),
        "firewall after network rm: {d:?}"
    );
    let d = lasting_differences(&mounts0, host_mounts_but_compare_leaks);
    assert!(d.0.is_empty() && d.1.is_empty(), "mounts: {d:?}");
}

/// (7) SIGKILL of the runtime mid-run: the workload dies with it, the kernel takes the veth
/// with the namespace, the lease's flock goes with the process, so `network rm` succeeds.
#[test]
fn sigkill_of_the_runtime_leaves_no_veth_and_no_lease() {
    if !root_or_skip("SIGKILL mid-run") {
        return;
    }
    let _g = exclusive();
    let links0 = links();
    let rules0 = ruleset();
    let mounts0 = host_mounts_but_compare_leaks();
    let net = Net::create(&unique("kill"), "10.201.7.0/24");
    let name = unique("kill-c");
    // Not --rm: the record is what tells the test the container's id while it runs.
    let m = marker();
    let _kill = KillMarked(m.clone());
    let mut child = cmd(&[
        "run",
        "--trace",
        "off",
        "--name",
        &name,
        "--network",
        &net.name,
        // The cgroups a killed runtime leaves are swept by a later run (tests/cgroup.rs);
        // here they would show in that run's trace, in another test's snapshot.
        "--without",
        "cgroup",
        "--",
        "/bin/sh",
        "-c",
        "echo ready; while :; do sleep 1; done",
        &m,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("start stagebox");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read ready");
    assert_eq!(line.trim(), "ready");
    let rec = inspect_container(&name);
    let veth = veth_of(rec["id"].as_str().expect("id"));
    let ip = rec["ip"].as_str().expect("ip").to_string();
    assert!(
        std::path::Path::new(&format!("/sys/class/net/{veth}")).exists(),
        "no {veth} while the container runs"
    );
    assert!(inspect_network(&net.name)["leases"]
        .to_string()
        .contains(&ip));
    assert!(!marked_pids(&m).is_empty());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 stagebox");
    let t = Instant::now();
    let _ = child.wait();
    assert_none_left(&m, "the workload of a SIGKILLed stagebox");
    assert!(
        within(3, || !std::path::Path::new(&format!(
            "/sys/class/net/{veth}"
        ))
        .exists()),
        "{veth} is still on the host 3 s after the runtime was SIGKILLed"
    );
    eprintln!(
        "tests/network: workload and {veth} gone {:?} after SIGKILL",
        t.elapsed()
    );
    assert_eq!(
        inspect_network(&net.name)["leases"],
        serde_json::json!([]),
        "the killed run's lease is still held"
    );
    net.remove();
    let rm = stagebox(&["rm", "-f", &name]);
    assert!(rm.status.success(), "rm -f {name}: {}", text(&rm.stderr));
    let d = lasting_differences(&links0, links);
    assert!(d.0.is_empty() && d.1.is_empty(), "links: {d:?}");
    let d = lasting_differences(&rules0, ruleset);
    assert!(d.0.is_empty() && d.1.is_empty(), "firewall: {d:?}");
    let d = lasting_differences(&mounts0, host_mounts_but_compare_leaks);
    assert!(d.0.is_empty() && d.1.is_empty(), "mounts: {d:?}");
}

/// Removes a kept container and an image on drop.
struct Kept(String, String);

impl Drop for Kept {
    fn drop(&mut self) {
        let _ = stagebox(&["rm", "-f", &self.0]);
        let _ = stagebox(&["rmi", "-f", &self.1]);
    }
}

/// (8) /etc/hostname, /etc/hosts, /etc/resolv.conf: the container's name and address in hosts,
/// its hostname in hostname, no loopback resolver; what the container writes to them stays
/// out of its layer: `diff` does not list them and `commit` does not put them in the image.
#[test]
fn etc_files_name_the_container_and_stay_out_of_diff_and_commit() {
    if !root_or_skip("/etc files") {
        return;
    }
    let _g = shared();
    let net = Net::create(&unique("etc"), "10.201.8.0/24");
    let name = unique("etc-c");
    let image = format!("{}:1", unique("etc-img"));
    let _kept = Kept(name.clone(), image.clone());
    let m = marker();
    let out = stagebox(&[
        "run",
        "--trace",
        "off",
        "--name",
        &name,
        "--network",
        &net.name,
        "--",
        "/bin/sh",
        "-c",
        "echo HOSTNAME $(hostname); echo FILE $(cat /etc/hostname); echo ADDR $(ip -o -4 addr show dev eth0); echo HOSTS; cat /etc/hosts; echo RESOLV; cat /etc/resolv.conf; echo END; echo 10.9.9.9 intruder >> /etc/hosts && echo other > /etc/hostname && echo canary > /canary",
        &m,
    ]);
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{o}\n{e}");
    assert_none_left(&m, "the /etc files run");
    let hostname = field(&o, "HOSTNAME").unwrap_or_default();
    assert!(!hostname.is_empty(), "{o}");
    assert_eq!(
        field(&o, "FILE"),
        Some(hostname),
        "/etc/hostname vs hostname(1):\n{o}"
    );
    let ip = inet(field(&o, "ADDR").unwrap_or_default());
    assert_eq!(ip.len(), 1, "{o}");
    let hosts = o
        .split("HOSTS\n")
        .nth(1)
        .and_then(|s| s.split("RESOLV\n").next())
        .unwrap_or_default();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    let own = format!("{}\t{hostname} {name}\n", ip[0]);
    assert!(hosts.contains(&own), "/etc/hosts has no {own:?}:\n{hosts}");
    let resolv = o
        .split("RESOLV\n")
        .nth(1)
        .and_then(|s| s.split("END\n").next())
        .unwrap_or_default();
    assert!(resolv.contains("nameserver "), "{resolv}");
    for l in resolv.lines().filter(|l| l.starts_with("nameserver")) {
        let addr: std::net::IpAddr = l
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .parse()
            .expect("a nameserver address");
        assert!(
            !addr.is_loopback(),
            "a loopback resolver in the container: {l}"
        );
    }

    // The writes went to the runtime's files, not to the container's layer.
    let rec = inspect_container(&name);
    let upper = std::path::PathBuf::from(rec["upper_dir"].as_str().expect("upper_dir"));
    let dir = upper.parent().expect("container dir").to_path_buf();
    let hosts_file =
        std::fs::read_to_string(dir.join("hosts")).expect("the container's hosts file");
    assert!(hosts_file.contains("10.9.9.9 intruder"), "{hosts_file}");
    assert_eq!(
        std::fs::read_to_string(dir.join("hostname")).unwrap_or_default(),
        "other\n"
    );

    let diff = stagebox(&["diff", &name]);
    let d = text(&diff.stdout);
    assert!(diff.status.success(), "{}", text(&diff.stderr));
    assert!(
        d.lines().any(|l| l == "A /canary"),
        "diff misses the canary:\n{d}"
    );
    for f in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
        assert!(
            !d.lines().any(|l| l.ends_with(&format!(" {f}"))),
            "diff lists {f}, a file the runtime mounts:\n{d}"
        );
    }

    let commit = stagebox(&["commit", &name, &image]);
    assert!(commit.status.success(), "commit: {}", text(&commit.stderr));
    let store = stagebox::image::store::Store::open(state_dir()).expect("image store");
    let img = store.find(&image).expect("the committed image");
    let top = img.layers().expect("layers").pop().expect("a top layer");
    let blob = store.blob_path(&top.digest).expect("blob path");
    let tar = Command::new("tar")
        .arg("-tf")
        .arg(&blob)
        .output()
        .expect("tar -tf");
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    let entries: Vec<String> = text(&tar.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect();
    assert!(entries.iter().any(|e| e == "canary"), "{entries:?}");
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        assert!(
            !entries.iter().any(|e| e == f),
            "the committed layer holds {f}: {entries:?}"
        );
    }
    net.remove();
}

/// (9) Bad input: one sentence on stderr, exit 125, and nothing changed: links, firewall,
/// `network ls`, the containers in the state dir.
#[test]
fn bad_network_input_is_one_sentence_and_changes_nothing() {
    if !root_or_skip("bad input") {
        return;
    }
    let _g = exclusive();
    let net = Net::create(&unique("bad"), "10.201.9.0/24");
    let a = Running::start(&["--network", &net.name], "echo ready; read x || :");
    let links0 = links();
    let rules0 = ruleset();
    let ls0 = network_ls();
    let containers = state_dir().join("containers");
    let tree0 = tree(&containers);
    let overlap = "10.201.9.128/25".to_string();
    // A host port in use: this test's own listener, on 127.0.0.1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener of the test's");
    let in_use = format!("127.0.0.1:{}:80", taken.local_addr().unwrap().port());
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--rm", "-p", &in_use, "--", "true"],
        vec!["run", "--rm", "-p", "80:abc", "--", "true"],
        vec![
            "run", "--rm", "-p", "18080:80", "-p", "18080:81", "--", "true",
        ],
        vec![
            "run",
            "--rm",
            "--network",
            "host",
            "-p",
            "18080:80",
            "--",
            "true",
        ],
        vec!["network", "create", "--subnet", "10.0.0.0/33", "ntbad-x"],
        vec!["network", "create", "--subnet", &overlap, "ntbad-y"],
        vec!["run", "--rm", "--network", "nope", "--", "true"],
        vec!["network", "rm", &net.name],
        vec!["run", "--rm", "--network", "container:", "--", "true"],
        vec!["run", "--rm", "--network", "container:nosuch", "--", "true"],
    ];
    for args in &cases {
        let out = stagebox(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            text(&out.stdout)
        );
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one sentence:\n{err}");
        assert!(
            lines[0].starts_with("stagebox: ") && lines[0].len() > 20,
            "{args:?}: {err}"
        );
        assert!(!lines[0].contains("panicked"), "{err}");
        // Lasting differences: another program's container may come and go meanwhile.
        let d = lasting_differences(&links0, links);
        assert!(
            d.0.is_empty() && d.1.is_empty(),
            "{args:?} changed the links: {d:?}"
        );
        let d = lasting_differences(&rules0, ruleset);
        assert!(
            d.0.is_empty() && d.1.is_empty(),
            "{args:?} changed the firewall: {d:?}"
        );
        assert_eq!(network_ls(), ls0, "{args:?} changed the networks");
        assert_eq!(tree(&containers), tree0, "{args:?} left a container");
    }
    // Those that name what is wrong say so.
    let why = |args: &[&str]| text(&stagebox(args).stderr);
    assert!(
        why(&cases[5]).contains(&net.name),
        "the overlap names the network"
    );
    assert!(
        why(&cases[0]).contains("already in use"),
        "{}",
        why(&cases[0])
    );
    assert!(why(&cases[1]).contains("abc"));
    assert!(why(&cases[6]).contains("nope"));
    assert!(why(&cases[9]).contains("nosuch"));
    drop(taken);
    let (code, _, err) = a.finish();
    assert_eq!(code, 0, "{err}");
    net.remove();
}
