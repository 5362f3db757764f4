//! Published ports as Docker spells them: `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`
//! (ranges `8000-8001:80-81` of the same length) and `-P`, which publishes every port the
//! image's config lists in `ExposedPorts` (`80/tcp`, `53/udp`) on a free host port.
//!
//! The forms, as `docker run -p` reads them:
//!
//! | spec                  | host address | host port        | container port |
//! |-----------------------|--------------|------------------|----------------|
//! | `80`                  | every one    | any free one     | 80             |
//! | `8080:80`             | every one    | 8080             | 80             |
//! | `127.0.0.1:8080:80`   | 127.0.0.1    | 8080             | 80             |
//! | `127.0.0.1::80`       | 127.0.0.1    | any free one     | 80             |
//! | `8000-8001:80-81/udp` | every one    | 8000, 8001       | 80, 81         |
//!
//! Nothing here binds or changes anything: a spec is checked and turned into [`PortSpec`]s,
//! and bad input is one sentence naming the spec and the form that works. `proxy` binds them.
//! Host addresses are IPv4 only for now (the bridge networks are IPv4 only).

use crate::network::firewall::Proto;
use std::net::Ipv4Addr;

/// The forms `-p` takes, for the end of every error sentence.
const USAGE: &str = "use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]";

/// One published port, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortSpec {
    /// `None`: every address of the host (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    /// `None`: any free port, picked by the kernel when the proxy binds.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortSpec {
    /// The host address the port is bound on: 0.0.0.0 when none was asked.
    pub fn bind_ip(&self) -> Ipv4Addr {
        self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}

/// Parses one `-p` value. A range gives one spec per port.
pub fn parse(spec: &str) -> Result<Vec<PortSpec>, String> {
    let fail = |why: String| format!("-p {spec:?}: {why}; {USAGE}");
    let (ports, proto) = split_proto(spec).map_err(fail)?;
    if ports.is_empty() {
        return Err(fail("there is no container port".into()));
    }
    if ports.starts_with('[') || ports.matches(':').count() > 2 {
        return Err(format!(
            "-p {spec:?}: IPv6 host addresses are not supported yet (stagebox publishes on IPv4 \
             only); give an IPv4 address such as 127.0.0.1 or none"
        ));
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), (!h.is_empty()).then_some(*h), *c),
        _ => return Err(fail("it has too many colons".into())),
    };
    let host_ip = match ip {
        None => None,
        Some("") => {
            return Err(fail(
                "the host address before the first colon is empty".into(),
            ))
        }
        Some(text) => Some(text.parse::<Ipv4Addr>().map_err(|_| {
            if text.contains(':') || text.parse::<std::net::Ipv6Addr>().is_ok() {
                format!(
                    "-p {spec:?}: IPv6 host addresses are not supported yet (stagebox publishes \
                     on IPv4 only); give an IPv4 address such as 127.0.0.1 or none"
                )
            } else {
                fail(format!("the host address {text:?} is not an IPv4 address"))
            }
        })?),
    };
    let container = range(container, "container port").map_err(fail)?;
    let host = match host {
        None => None,
        Some(text) => Some(range(text, "host port").map_err(|why| {
            if text == "0" {
                format!(
                    "-p {spec:?}: the host port 0 is not a port; leave it out for any free \
                     port (-p {}{})",
                    ip.map(|ip| format!("{ip}::")).unwrap_or_default(),
                    container_text(ports)
                )
            } else {
                fail(why)
            }
        })?),
    };
    let count = container.1 - container.0 + 1;
    if let Some((lo, hi)) = host {
        if hi - lo + 1 != count {
            return Err(format!(
                "-p {spec:?}: the host range has {} port{} and the container range {count}; give \
                 both ranges the same length, as in -p 8000-8001:80-81",
                hi - lo + 1,
                if hi == lo { "" } else { "s" },
            ));
        }
    }
    Ok((0..count)
        .map(|i| PortSpec {
            host_ip,
            host_port: host.map(|(lo, _)| lo + i),
            container_port: container.0 + i,
            proto,
        })
        .collect())
}

/// The text after the last colon, for the hint about host port 0.
fn container_text(ports: &str) -> &str {
    ports.rsplit(':').next().unwrap_or(ports)
}

/// Parses every `-p` value of a run and refuses a host port published twice.
pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<Vec<PortSpec>, String> {
    let mut all: Vec<(PortSpec, &str)> = Vec::new();
    for s in specs {
        let s = s.as_ref();
        for p in parse(s)? {
            if let Some((_, other)) = all.iter().find(|(q, _)| clash(q, &p)) {
                let (port, ip) = (p.host_port.unwrap_or(0), p.bind_ip());
                return Err(if *other == s {
                    format!(
                        "-p {s:?} is given twice; host port {port}/{} on {ip} can be published \
                         only once",
                        p.proto
                    )
                } else {
                    format!(
                        "-p {other:?} and -p {s:?} both publish host port {port}/{} on {ip}; \
                         give each a different host port",
                        p.proto
                    )
                });
            }
            all.push((p, s));
        }
    }
    Ok(all.into_iter().map(|(p, _)| p).collect())
}

/// Refuses a host port published twice in `specs` (for `-P` together with `-p`), in one
/// sentence.
pub fn check_duplicates(specs: &[PortSpec]) -> Result<(), String> {
    for (i, p) in specs.iter().enumerate() {
        if let Some(q) = specs[..i].iter().find(|q| clash(q, p)) {
            return Err(format!(
                "host port {}/{} on {} is published twice (for container ports {} and {}); \
                 give each -p a different host port",
                p.host_port.unwrap_or(0),
                p.proto,
                p.bind_ip(),
                q.container_port,
                p.container_port
            ));
        }
    }
    Ok(())
}

/// Two specs that could not both be bound: the same fixed host port and protocol on the same
/// address, or on any address when one of them is 0.0.0.0.
fn clash(a: &PortSpec, b: &PortSpec) -> bool {
    let (ia, ib) = (a.bind_ip(), b.bind_ip());
    a.host_port.is_some()
        && a.host_port == b.host_port
        && a.proto == b.proto
        && (ia == ib || ia.is_unspecified() || ib.is_unspecified())
}

/// The ports of an image config's `ExposedPorts` (`80/tcp`, `53/udp`, `80`), for `-P`: each
/// is published on every host address and on a free host port, as Docker does.
pub fn from_expose(exposed: &[String]) -> Result<Vec<PortSpec>, String> {
    let mut out = Vec::new();
    for key in exposed {
        let fail = |why: String| {
            format!(
                "-P: the image's ExposedPorts entry {key:?} cannot be published: {why}; fix the \
                 image's EXPOSE or publish with -p instead"
            )
        };
        let (ports, proto) = split_proto(key).map_err(fail)?;
        let (lo, hi) = range(ports, "port").map_err(fail)?;
        for container_port in lo..=hi {
            out.push(PortSpec {
                host_ip: None,
                host_port: None,
                container_port,
                proto,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `80/tcp` into `80` and the protocol (tcp when none is given).
fn split_proto(spec: &str) -> Result<(&str, Proto), String> {
    match spec.rsplit_once('/') {
        None => Ok((spec, Proto::Tcp)),
        Some((ports, proto)) => match proto.to_ascii_lowercase().as_str() {
            "tcp" => Ok((ports, Proto::Tcp)),
            "udp" => Ok((ports, Proto::Udp)),
            "" => Err("the protocol after \"/\" is empty".into()),
            _ => Err(format!(
                "the protocol {proto:?} is not supported (only tcp and udp)"
            )),
        },
    }
}

/// `80` or `80-81`, as the first and last port.
fn range(text: &str, what: &str) -> Result<(u16, u16), String> {
    let port = |t: &str| -> Result<u16, String> {
        match t.parse::<u16>() {
            Ok(p) if p > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
            _ if t.is_empty() => Err(format!("the {what} is empty")),
            _ => Err(format!("the {what} {t:?} is not a number from 1 to 65535")),
        }
    };
    match text.split_once('-') {
        None => port(text).map(|p| (p, p)),
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            if hi < lo {
                return Err(format!("the {what} range {text:?} ends before it starts"));
            }
            Ok((lo, hi))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Option<Ipv4Addr> = Some(Ipv4Addr::LOCALHOST);

    fn one(host_ip: Option<Ipv4Addr>, host_port: Option<u16>, c: u16, proto: Proto) -> PortSpec {
        PortSpec {
            host_ip,
            host_port,
            container_port: c,
            proto,
        }
    }

    #[test]
    fn every_docker_form() {
        use Proto::*;
        assert_eq!(parse("80").unwrap(), [one(None, None, 80, Tcp)]);
        assert_eq!(parse("8080:80").unwrap(), [one(None, Some(8080), 80, Tcp)]);
        assert_eq!(
            parse("127.0.0.1:8080:80").unwrap(),
            [one(LOCAL, Some(8080), 80, Tcp)]
        );
        assert_eq!(parse("127.0.0.1::80").unwrap(), [one(LOCAL, None, 80, Tcp)]);
        assert_eq!(parse("53/udp").unwrap(), [one(None, None, 53, Udp)]);
        assert_eq!(
            parse("5353:53/udp").unwrap(),
            [one(None, Some(5353), 53, Udp)]
        );
        assert_eq!(
            parse("8080:80/tcp").unwrap(),
            [one(None, Some(8080), 80, Tcp)]
        );
        assert_eq!(
            parse("8080:80/UDP").unwrap(),
            [one(None, Some(8080), 80, Udp)]
        );
        assert_eq!(
            parse("0.0.0.0:8080:80").unwrap(),
            [one(Some(Ipv4Addr::UNSPECIFIED), Some(8080), 80, Tcp)]
        );
        assert_eq!(
            parse("8000-8001:80-81").unwrap(),
            [
                one(None, Some(8000), 80, Tcp),
                one(None, Some(8001), 81, Tcp)
            ]
        );
        assert_eq!(
            parse("127.0.0.1:8000-8001:80-81/udp").unwrap(),
            [
                one(LOCAL, Some(8000), 80, Udp),
                one(LOCAL, Some(8001), 81, Udp)
            ]
        );
        assert_eq!(
            parse("80-82").unwrap(),
            [
                one(None, None, 80, Tcp),
                one(None, None, 81, Tcp),
                one(None, None, 82, Tcp)
            ]
        );
        assert_eq!(
            parse("127.0.0.1::80-81").unwrap(),
            [one(LOCAL, None, 80, Tcp), one(LOCAL, None, 81, Tcp)]
        );
        assert_eq!(parse("65535:1").unwrap(), [one(None, Some(65535), 1, Tcp)]);
        assert_eq!(
            parse("7000-7000:70-70").unwrap(),
            [one(None, Some(7000), 70, Tcp)]
        );
    }

    #[test]
    fn every_error_is_one_sentence_naming_the_spec() {
        let cases: &[(&str, &str)] = &[
            (
                "80:abc",
                r#"-p "80:abc": the container port "abc" is not a number from 1 to 65535; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "abc:80",
                r#"-p "abc:80": the host port "abc" is not a number from 1 to 65535; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "0",
                r#"-p "0": the container port "0" is not a number from 1 to 65535; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "65536",
                r#"-p "65536": the container port "65536" is not a number from 1 to 65535; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "+80",
                r#"-p "+80": the container port "+80" is not a number from 1 to 65535; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "",
                r#"-p "": there is no container port; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "/tcp",
                r#"-p "/tcp": there is no container port; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "8080:",
                r#"-p "8080:": the container port is empty; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                ":80",
                r#"-p ":80": the host port is empty; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "0:80",
                r#"-p "0:80": the host port 0 is not a port; leave it out for any free port (-p 80)"#,
            ),
            (
                "127.0.0.1:0:80",
                r#"-p "127.0.0.1:0:80": the host port 0 is not a port; leave it out for any free port (-p 127.0.0.1::80)"#,
            ),
            (
                "80/sctp",
                r#"-p "80/sctp": the protocol "sctp" is not supported (only tcp and udp); use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "80/",
                r#"-p "80/": the protocol after "/" is empty; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "300.1.1.1:8080:80",
                r#"-p "300.1.1.1:8080:80": the host address "300.1.1.1" is not an IPv4 address; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "localhost:8080:80",
                r#"-p "localhost:8080:80": the host address "localhost" is not an IPv4 address; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                ":8080:80",
                r#"-p ":8080:80": the host address before the first colon is empty; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "[::1]:8080:80",
                r#"-p "[::1]:8080:80": IPv6 host addresses are not supported yet (stagebox publishes on IPv4 only); give an IPv4 address such as 127.0.0.1 or none"#,
            ),
            (
                "::1:8080:80",
                r#"-p "::1:8080:80": IPv6 host addresses are not supported yet (stagebox publishes on IPv4 only); give an IPv4 address such as 127.0.0.1 or none"#,
            ),
            (
                "8000-8002:80-81",
                r#"-p "8000-8002:80-81": the host range has 3 ports and the container range 2; give both ranges the same length, as in -p 8000-8001:80-81"#,
            ),
            (
                "8000:80-81",
                r#"-p "8000:80-81": the host range has 1 port and the container range 2; give both ranges the same length, as in -p 8000-8001:80-81"#,
            ),
            (
                "8001-8000:80-81",
                r#"-p "8001-8000:80-81": the host port range "8001-8000" ends before it starts; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
            (
                "80-x",
                r#"-p "80-x": the container port "x" is not a number from 1 to 65535; use -p [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"#,
            ),
        ];
        for (spec, want) in cases {
            let got = parse(spec).expect_err(spec);
            assert_eq!(&got, want, "spec {spec:?}");
            assert_eq!(got.matches("; ").count(), 1, "one sentence: {got}");
            assert!(!got.contains('\n'), "one line: {got}");
        }
    }

    #[test]
    fn a_host_port_published_twice_is_refused() {
        assert_eq!(
            parse_all(&["8080:80", "127.0.0.1:8080:81"]).unwrap_err(),
            r#"-p "8080:80" and -p "127.0.0.1:8080:81" both publish host port 8080/tcp on 127.0.0.1; give each a different host port"#
        );
        assert_eq!(
            parse_all(&["8080:80", "8080:80"]).unwrap_err(),
            r#"-p "8080:80" is given twice; host port 8080/tcp on 0.0.0.0 can be published only once"#
        );
        assert_eq!(
            parse_all(&["8000-8002:80-82", "8002:90"]).unwrap_err(),
            r#"-p "8000-8002:80-82" and -p "8002:90" both publish host port 8002/tcp on 0.0.0.0; give each a different host port"#
        );
        // Not a clash: another protocol, another address, or any free port.
        let ok = parse_all(&[
            "8080:80",
            "8080:80/udp",
            "127.0.0.1:9090:90",
            "127.0.0.2:9090:90",
            "80",
            "80",
        ])
        .unwrap();
        assert_eq!(ok.len(), 6);
        // A bad spec among good ones is reported as itself.
        assert!(parse_all(&["80", "x"])
            .unwrap_err()
            .starts_with("-p \"x\": "));
    }

    #[test]
    fn check_duplicates_for_p_and_capital_p_together() {
        let mut specs = from_expose(&["80/tcp".to_string()]).unwrap();
        specs.extend(parse("8080:80").unwrap());
        specs.extend(parse("127.0.0.1:8080:81").unwrap());
        assert_eq!(
            check_duplicates(&specs).unwrap_err(),
            "host port 8080/tcp on 127.0.0.1 is published twice (for container ports 80 and 81); give each -p a different host port"
        );
        assert!(check_duplicates(&specs[..2]).is_ok());
    }

    #[test]
    fn exposed_ports_get_any_free_host_port() {
        use Proto::*;
        let keys: Vec<String> = ["80/tcp", "53/udp", "443", "8000-8001/tcp", "80/tcp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            from_expose(&keys).unwrap(),
            [
                one(None, None, 53, Udp),
                one(None, None, 80, Tcp),
                one(None, None, 443, Tcp),
                one(None, None, 8000, Tcp),
                one(None, None, 8001, Tcp),
            ]
        );
        assert_eq!(from_expose(&[]).unwrap(), []);
        assert_eq!(
            from_expose(&["http/tcp".to_string()]).unwrap_err(),
            r#"-P: the image's ExposedPorts entry "http/tcp" cannot be published: the port "http" is not a number from 1 to 65535; fix the image's EXPOSE or publish with -p instead"#
        );
        assert_eq!(
            from_expose(&["80/sctp".to_string()]).unwrap_err(),
            r#"-P: the image's ExposedPorts entry "80/sctp" cannot be published: the protocol "sctp" is not supported (only tcp and udp); fix the image's EXPOSE or publish with -p instead"#
        );
    }
}
