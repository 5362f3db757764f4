//! The address allocator from many processes at once: 20 processes (this test binary,
//! started again in child mode) each take an address of one network at the same moment.
//! They must get 20 distinct addresses, the lowest 20 of the subnet, each lease file must
//! name its holder and be locked by that process; after half of them release and the other
//! half are SIGKILLed, nothing may be held, `prune` must remove what the killed ones left,
//! and the network must then be removable, leaving an empty directory.
//!
//! Nothing here touches the host's network: the library only writes files in a temporary
//! state directory.

use stagebox::network::ipam;
use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

const CHILDREN: usize = 20;
const CHILD_ENV: &str = "STAGEBOX_IPAM_TEST_CHILD";

/// Child mode (only with STAGEBOX_IPAM_TEST_CHILD=STATE:NETWORK:HOLDER): take an address,
/// print `LEASE <ip>`, and hold it until stdin says `release` (then release it) or closes
/// (then exit without releasing). In an ordinary run it does nothing.
#[test]
fn child_mode_holds_one_lease() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    // STATE:NETWORK:HOLDER, split from the right (a path may hold a colon).
    let mut parts = spec.rsplitn(3, ':');
    let (holder, net, state) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let lease = ipam::allocate(Path::new(state), net, holder).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "LEASE {}", lease.ip).unwrap();
    out.flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    if line.trim() == "release" {
        lease.release().unwrap();
        writeln!(out, "RELEASED").unwrap();
        out.flush().unwrap();
    }
}

fn spawn_child(state: &Path, net: &str, holder: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_mode_holds_one_lease",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}:{net}:{holder}", state.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout up to the line that holds `prefix` (libtest prints
/// `test NAME ... ` before the test's own output), and returns what follows it.
fn line_with(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the child ended before printing {prefix:?}");
        if let Some(i) = line.find(prefix) {
            return line[i + prefix.len()..].trim().to_string();
        }
    }
}

/// Ends the whole test binary if the children hang: their stdin then closes and they exit.
fn watchdog(secs: u64) {
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(secs));
        eprintln!("tests/ipam: the children did not finish within {secs} s");
        std::process::exit(101);
    });
}

#[test]
fn twenty_processes_get_distinct_addresses_and_leave_nothing_behind() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path();
    let net = ipam::create_with_host(state, "par", Some("10.123.0.0/24"), &[]).unwrap();

    watchdog(120);
    // All 20 start at once and race for the lock.
    let mut kids: Vec<Child> = (0..CHILDREN)
        .map(|i| spawn_child(state, "par", &format!("holder{i}")))
        .collect();
    let mut outs: Vec<BufReader<ChildStdout>> = kids
        .iter_mut()
        .map(|k| BufReader::new(k.stdout.take().unwrap()))
        .collect();
    let ips: Vec<Ipv4Addr> = outs
        .iter_mut()
        .map(|o| line_with(o, "LEASE ").parse().unwrap())
        .collect();
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        CHILDREN,
        "an address was handed out twice: {ips:?}"
    );
    let lowest: BTreeSet<Ipv4Addr> = net.subnet.container_addresses().take(CHILDREN).collect();
    assert_eq!(
        distinct, lowest,
        "not the lowest {CHILDREN} addresses after the gateway"
    );

    // Each lease names its holder and is locked by that very process.
    let held = ipam::in_use(state, "par");
    assert_eq!(held.len(), CHILDREN, "{held:?}");
    for (i, k) in kids.iter().enumerate() {
        let u = held
            .iter()
            .find(|u| u.ip == ips[i])
            .unwrap_or_else(|| panic!("{} is not held: {held:?}", ips[i]));
        assert_eq!(u.holder, format!("holder{i}"));
        // The pid written is the test binary started in child mode.
        assert_eq!(u.pid, Some(k.id()));
    }
    let e = ipam::remove(state, "par").unwrap_err().to_string();
    assert!(e.contains("is in use by container holder"), "{e}");
    // One more process gets the 21st address, never one of theirs.
    let extra = ipam::allocate(state, "par", "extra").unwrap();
    assert!(
        !distinct.contains(&extra.ip),
        "{} was handed out twice",
        extra.ip
    );
    extra.release().unwrap();

    // Half release, half die by SIGKILL while holding.
    for (i, k) in kids.iter_mut().enumerate() {
        if i % 2 == 0 {
            let mut stdin = k.stdin.take().unwrap();
            stdin.write_all(b"release\n").unwrap();
            drop(stdin);
            line_with(&mut outs[i], "RELEASED");
        } else {
            k.kill().unwrap(); // SIGKILL
        }
    }
    for k in kids.iter_mut() {
        k.wait().unwrap();
    }
    assert!(
        ipam::in_use(state, "par").is_empty(),
        "a dead or released holder still holds an address: {:?}",
        ipam::in_use(state, "par")
    );
    let files = |s: &Path| -> usize {
        std::fs::read_dir(ipam::leases_dir(s, "par"))
            .unwrap()
            .count()
    };
    assert_eq!(
        files(state),
        CHILDREN / 2,
        "the released leases' files are gone, the killed ones' stay until pruned"
    );
    // The killed holders' files are exactly their addresses.
    let killed: BTreeSet<Ipv4Addr> = ips.iter().skip(1).step_by(2).copied().collect();
    let on_disk: BTreeSet<Ipv4Addr> = std::fs::read_dir(ipam::leases_dir(state, "par"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(on_disk, killed);
    // The next allocation takes the lowest address again, whether a dead holder's file
    // is still there (reused) or a released one's is gone (made anew).
    let lowest_ip = net.subnet.container_addresses().next().unwrap();
    let again = ipam::allocate(state, "par", "again").unwrap();
    assert_eq!(again.ip, lowest_ip);
    again.release().unwrap();
    let stale = CHILDREN / 2 - usize::from(killed.contains(&lowest_ip));
    assert_eq!(files(state), stale);
    assert_eq!(ipam::prune(state).unwrap(), stale);
    assert_eq!(files(state), 0, "prune left lease files behind");
    ipam::remove(state, "par").unwrap();
    let left: Vec<String> = std::fs::read_dir(ipam::networks_dir(state))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [".lock"], "the network left files behind");
}

#[test]
fn threads_with_their_own_descriptors_never_share_an_address() {
    // flock belongs to the open file description, so threads of one process compete as
    // processes do when each opens the files itself (allocate always does).
    let d = tempfile::tempdir().unwrap();
    let state = d.path().to_path_buf();
    ipam::create_with_host(&state, "thr", Some("10.124.0.0/27"), &[]).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CHILDREN));
    let handles: Vec<_> = (0..CHILDREN)
        .map(|i| {
            let (state, barrier) = (state.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ipam::allocate(&state, "thr", &format!("t{i}")).unwrap()
            })
        })
        .collect();
    let leases: Vec<ipam::Lease> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let distinct: BTreeSet<Ipv4Addr> = leases.iter().map(|l| l.ip).collect();
    assert_eq!(distinct.len(), CHILDREN);
    assert_eq!(ipam::in_use(&state, "thr").len(), CHILDREN);
    // A /27 has 29 addresses for containers: 9 left, then one sentence.
    let more: Vec<ipam::Lease> = (0..9)
        .map(|i| ipam::allocate(&state, "thr", &format!("m{i}")).unwrap())
        .collect();
    let e = ipam::allocate(&state, "thr", "late")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("all 29 addresses of network \"thr\""), "{e}");
    for l in leases.into_iter().chain(more) {
        l.release().unwrap();
    }
    assert!(ipam::in_use(&state, "thr").is_empty());
    assert_eq!(
        std::fs::read_dir(ipam::leases_dir(&state, "thr"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_subnet_over_the_hosts_own_routes_is_refused() {
    // The real host view: lo's 127.0.0.1/8 is always there; every other route or address
    // of the host that a network could be given must be refused, naming it.
    let host = ipam::host_routes();
    assert!(host.iter().any(|r| r.device == "lo"), "{host:?}");
    let d = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for r in host.iter().filter(|r| r.device != "lo") {
        if ipam::Subnet::parse(&r.subnet.to_string()).is_err() {
            continue; // a /32 route or a reserved range: refused for that reason already
        }
        let e = ipam::create(d.path(), "clash", Some(&r.subnet.to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the host's") && e.contains(&r.device), "{e}");
        checked += 1;
    }
    assert!(!d.path().join("networks/clash.json").exists());
    eprintln!("checked {checked} host routes and addresses");
    // The default network, made with the real host view, overlaps none of them.
    let def = ipam::default_bridge(d.path()).unwrap();
    assert!(
        !host
            .iter()
            .any(|r| r.device != def.bridge && r.subnet.overlaps(&def.subnet)),
        "{} overlaps the host: {host:?}",
        def.subnet
    );
}
