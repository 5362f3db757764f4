//! stagebox's firewall (issue #14) against the real nftables: the table `ip stagebox`, a
//! network's masquerade and a fake container's published ports go in, are read back with
//! `nft -j list table ip stagebox`, come out by id, and the host's ruleset (`nft list
//! ruleset`) is byte-identical afterwards. Another test makes Docker's rules (FORWARD policy
//! drop) in a network namespace of its own and checks stagebox reports them and leaves them
//! as they were. Needs root and Debian's nftables (skips loudly without root).

mod common;
use common::*;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use stagebox::network::firewall::{Firewall, FirewallError, PortRule, Proto};

/// The tests of this file take turns: the first compares the whole ruleset before and after.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("nft runs (Debian's nftables package)");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn nft_script(script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "nft -f - refused:\n{script}"
    );
}

/// The host's whole ruleset as `nft list ruleset` prints it, stateless (`-s`): without the
/// counters of other tables' rules, which the host's own traffic moves meanwhile.
fn ruleset() -> String {
    nft(&["-s", "list", "ruleset"])
}

fn table_exists() -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", "stagebox"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The rules of `nft -j list table ip stagebox` whose comment is `comment`: (chain, the
/// rule's JSON text).
fn rules_tagged(comment: &str) -> Vec<(String, String)> {
    let json: serde_json::Value =
        serde_json::from_str(&nft(&["-j", "list", "table", "ip", "stagebox"])).unwrap();
    json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r["comment"] == comment)
        .map(|r| (r["chain"].as_str().unwrap().to_string(), r.to_string()))
        .collect()
}

#[test]
fn rules_go_in_read_back_and_come_out_by_id_leaving_the_ruleset_as_it_was() {
    if !root_or_skip("firewall rules") {
        return;
    }
    let _g = serial();
    let mut before = ruleset();
    let had_table = table_exists();

    // Names and a subnet of this test only: a bridge that does not exist, TEST-NET-1 for a
    // host address, ids no container has.
    let n = 20 + std::process::id() % 200;
    let bridge = format!("stageboxt{n}");
    let subnet = Ipv4Addr::new(10, 250, n as u8, 0);
    let cip = Ipv4Addr::new(10, 250, n as u8, 2);
    let id = format!("fwtest{n}a");
    let other = format!("fwtest{n}b");
    let port = 40000 + (n as u16);

    let mut fw = Firewall::new().expect("nft is installed");
    let base = fw.ensure_base().unwrap();
    if !had_table {
        assert_eq!(base.len(), 1);
        assert!(
            base[0].call.starts_with("add table ip stagebox\n"),
            "{base:?}"
        );
    }
    assert!(fw.ensure_base().unwrap().is_empty(), "ensure_base twice");
    if had_table {
        // stagebox's table was there (a run of stagebox on this host): it stays, with its
        // base completed, and only this test's rules must go again.
        before = ruleset();
    }
    let chains = nft(&["list", "table", "ip", "stagebox"]);
    for want in [
        "type nat hook postrouting priority srcnat; policy accept;",
        "type nat hook prerouting priority dstnat; policy accept;",
        "type nat hook output priority -100; policy accept;",
        "type filter hook forward priority filter; policy accept;",
        "ct state established,related accept comment \"stagebox-base\"",
    ] {
        assert!(chains.contains(want), "missing {want:?} in\n{chains}");
    }

    let masq = fw.add_masquerade(subnet, 24, &bridge).unwrap();
    assert_eq!(masq.len(), 1);
    assert!(fw.add_masquerade(subnet, 24, &bridge).unwrap().is_empty());
    let tcp = fw.add_port(&id, None, port, Proto::Tcp, cip, 80).unwrap();
    let udp = fw
        .add_port(
            &id,
            Some(Ipv4Addr::new(192, 0, 2, 1)),
            port,
            Proto::Udp,
            cip,
            53,
        )
        .unwrap();
    assert!(tcp[0]
        .call
        .contains(&format!("tcp dport {port} dnat to {cip}:80")));
    assert!(udp[0].call.contains("ip daddr 192.0.2.1 udp"));

    // What the kernel holds, read back without stagebox's parser.
    let net_rules = rules_tagged(&format!("stagebox-net:{bridge}"));
    let chains_of = |rules: &[(String, String)]| {
        let mut c: Vec<String> = rules.iter().map(|(c, _)| c.clone()).collect();
        c.sort();
        c
    };
    assert_eq!(chains_of(&net_rules), ["forward", "forward", "postrouting"]);
    assert!(net_rules.iter().any(
        |(_, r)| r.contains("\"masquerade\"") && r.contains(&format!("\"addr\":\"{subnet}\""))
    ));
    let ours = rules_tagged(&format!("stagebox:{id}"));
    assert_eq!(
        chains_of(&ours),
        ["output", "output", "prerouting", "prerouting"]
    );
    assert!(ours
        .iter()
        .all(|(_, r)| r.contains("\"dnat\"") && r.contains(&format!("\"{cip}\""))));
    let text = nft(&["list", "table", "ip", "stagebox"]);
    assert!(
        text.contains(&format!(
            "ip saddr {subnet}/24 oifname != \"{bridge}\" masquerade comment \"stagebox-net:{bridge}\""
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "fib daddr type local ip daddr != 127.0.0.0/8 tcp dport {port} dnat to {cip}:80 comment \"stagebox:{id}\""
    )), "{text}");

    // Read back through stagebox.
    assert!(fw.list_container_ids().unwrap().contains(&id));
    let ports = fw.list_ports().unwrap();
    assert!(
        ports.contains(&PortRule {
            container_id: id.clone(),
            host_ip: None,
            host_port: port,
            proto: Proto::Tcp,
            container_ip: cip,
            container_port: 80,
        }),
        "{ports:?}"
    );

    // A port another container has: one sentence, nothing changed.
    let held = ruleset();
    let e = fw
        .add_port(
            &other,
            None,
            port,
            Proto::Tcp,
            Ipv4Addr::new(10, 250, n as u8, 3),
            80,
        )
        .unwrap_err();
    assert!(matches!(e, FirewallError::Invalid(_)), "{e}");
    assert_eq!(
        e.to_string(),
        format!("port {port}/tcp is already published by container {id}")
    );
    assert_eq!(ruleset(), held);

    // A second container, two ports in one transaction, comes out by id; the first, as a
    // stale one (its stagebox died).
    let second = PortRule {
        container_id: other.clone(),
        host_ip: None,
        host_port: port + 1,
        proto: Proto::Tcp,
        container_ip: Ipv4Addr::new(10, 250, n as u8, 3),
        container_port: 80,
    };
    let both = fw
        .add_ports(&[
            second.clone(),
            PortRule {
                proto: Proto::Udp,
                ..second.clone()
            },
        ])
        .unwrap();
    assert_eq!(both.len(), 1);
    assert_eq!(rules_tagged(&format!("stagebox:{other}")).len(), 4);
    let gone = fw.remove_container(&other).unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].call.lines().count(), 4, "{gone:?}");
    assert!(rules_tagged(&format!("stagebox:{other}")).is_empty());
    assert!(fw.remove_container(&other).unwrap().is_empty());
    assert_eq!(rules_tagged(&format!("stagebox:{id}")).len(), 4);
    let stale = fw.remove_stale(|c| c != id).unwrap();
    assert_eq!(stale[0].call.lines().count(), 4, "{stale:?}");
    assert!(rules_tagged(&format!("stagebox:{id}")).is_empty());
    assert!(!fw.list_container_ids().unwrap().contains(&id));

    // The table stays while the network has rules.
    if !had_table {
        assert!(fw.remove_table_if_unused().unwrap().is_empty());
        assert!(table_exists());
    }
    assert_eq!(fw.remove_network(&bridge).unwrap().len(), 1);
    assert!(rules_tagged(&format!("stagebox-net:{bridge}")).is_empty());
    if !had_table {
        let del = fw.remove_table_if_unused().unwrap();
        assert_eq!(del[0].call, "delete table ip stagebox\n");
        assert!(!table_exists());
        assert!(fw.remove_table_if_unused().unwrap().is_empty());
        assert!(fw.list_container_ids().unwrap().is_empty());
    }

    assert_eq!(ruleset(), before, "the host's ruleset changed");
}

/// Docker's rules (through iptables-nft) in a network namespace of this test: stagebox adds
/// its table beside them, says in one sentence that their FORWARD policy drop blocks it, and
/// leaves their table byte-identical.
#[test]
fn docker_s_forward_drop_is_reported_and_left_alone() {
    if !root_or_skip("firewall coexistence") {
        return;
    }
    let _g = serial();
    let host_before = ruleset();
    // unshare(CLONE_NEWNET) changes only the calling thread (and what it starts), so the
    // namespace is this thread's, and goes when it ends.
    let t = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        assert_eq!(
            nft(&["list", "ruleset"]),
            "",
            "a fresh namespace has no rules"
        );
        let mut fw = Firewall::new().unwrap();
        assert_eq!(fw.forward_blocked("stagebox0").unwrap(), None);
        nft_script(
            "table ip filter {\n\
               chain DOCKER-USER {\n  return\n }\n\
               chain FORWARD {\n  type filter hook forward priority filter; policy drop;\n  jump DOCKER-USER\n }\n\
             }\n",
        );
        let theirs = nft(&["list", "table", "ip", "filter"]);
        let said = fw
            .forward_blocked("stagebox0")
            .unwrap()
            .expect("the drop is found");
        assert!(said.contains("chain FORWARD of table ip filter"), "{said}");
        assert!(
            said.contains("iptables -I DOCKER-USER -i stagebox0 -j ACCEPT"),
            "{said}"
        );
        fw.add_masquerade(Ipv4Addr::new(10, 251, 0, 0), 24, "stagebox0")
            .unwrap();
        fw.add_port(
            "fwdocker",
            None,
            8080,
            Proto::Tcp,
            Ipv4Addr::new(10, 251, 0, 2),
            80,
        )
        .unwrap();
        assert_eq!(nft(&["list", "table", "ip", "filter"]), theirs);
        fw.remove_container("fwdocker").unwrap();
        fw.remove_network("stagebox0").unwrap();
        fw.remove_table_if_unused().unwrap();
        assert_eq!(nft(&["list", "table", "ip", "filter"]), theirs);
        assert!(!nft(&["list", "ruleset"]).contains("stagebox"));
    });
    if let Err(e) = t.join() {
        std::panic::resume_unwind(e);
    }
    assert_eq!(ruleset(), host_before, "the host's ruleset changed");
}
