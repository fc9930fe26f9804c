//! Published ports: `-p [IP:][HOSTPORT:]CTRPORT[/tcp|/udp]` (ranges `8000-8010:80-90`, an empty
//! or missing host port for a free one), `-P` (every `EXPOSE`d port on a free host port), the
//! check that a host port can be had before a container starts, and docker's ways of showing
//! them: the `PORTS` column of `ps`, the lines of `strata port`, `NetworkSettings.Ports`.
//!
//! Bindings are kept one port each (as docker keeps `PortBindings`); ranges are only syntax.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    /// The host address it is bound to; `None`: every address (IPv4 and IPv6).
    pub host_ip: Option<IpAddr>,
    /// The host port.
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// TCP or UDP.
    pub proto: Proto,
}

impl PortBinding {
    /// `80/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto.name())
    }
}

/// Why a port cannot be published; each names the `-p` value or the port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The `-p` value does not parse.
    #[error("invalid port specification {spec:?}: {why} (expected [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp])")]
    Bad {
        /// The `-p` value.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// The host port is taken.
    #[error("publishing port {key}: {addr} is already in use")]
    InUse {
        /// `80/tcp`.
        key: String,
        /// `0.0.0.0:8080`.
        addr: String,
    },
    /// The host port is below the unprivileged limit.
    #[error(
        "publishing port {key}: binding {addr} is not permitted: ports below {limit} need privileges \
         (use a host port of {limit} or more, or lower the limit: sysctl net.ipv4.ip_unprivileged_port_start={port})"
    )]
    Privileged {
        /// `80/tcp`.
        key: String,
        /// `0.0.0.0:80`.
        addr: String,
        /// The lowest unprivileged port now.
        limit: u16,
        /// The port asked for.
        port: u16,
    },
    /// Anything else binding failed with.
    #[error("publishing port {key}: binding {addr}: {source}")]
    Bind {
        /// `80/tcp`.
        key: String,
        /// `0.0.0.0:8080`.
        addr: String,
        /// The cause.
        source: io::Error,
    },
}

/// An inclusive range of ports.
type Range = (u16, u16);

fn range(s: &str, allow_zero: bool) -> Result<Range, String> {
    let port = |p: &str| -> Result<u16, String> {
        let n: u16 = p.parse().map_err(|_| format!("{p:?} is not a port number"))?;
        if n == 0 && !allow_zero {
            return Err("port 0 is not a port a container can listen on".into());
        }
        Ok(n)
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("the range {s} runs backwards"));
            }
            Ok((a, b))
        }
        None => port(s).map(|p| (p, p)),
    }
}

/// Parses one `-p` value into its bindings; a host port of 0 means "a free one".
pub fn parse(spec: &str) -> Result<Vec<PortBinding>, PortError> {
    let bad = |why: String| PortError::Bad { spec: spec.to_string(), why };
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((_, p)) => return Err(bad(format!("unknown protocol {p:?}"))),
        None => (spec, Proto::Tcp),
    };
    // `[v6]:host:ctr`, `ip:host:ctr`, `host:ctr`, `ctr`.
    let (ip, ports) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, ports) = after.split_once("]:").ok_or_else(|| bad("an IPv6 address needs ]:".into()))?;
        (Some(ip), ports)
    } else {
        match rest.matches(':').count() {
            0 | 1 => (None, rest),
            2 => {
                let (ip, ports) = rest.split_once(':').unwrap_or_default();
                (Some(ip), ports)
            }
            _ => return Err(bad("too many colons (put an IPv6 address in brackets)".into())),
        }
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| bad(format!("{ip:?} is not an IP address")))?),
    };
    let (host, ctr) = match ports.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", ports),
    };
    let ctr = range(ctr, false).map_err(&bad)?;
    let count = ctr.1 - ctr.0;
    let host = if host.is_empty() { None } else { Some(range(host, true).map_err(&bad)?) };
    let host_at = |i: u16| match host {
        None => Ok(0),
        Some((a, b)) if b - a == count => Ok(a + i),
        Some((a, b)) if a == b && a == 0 => Ok(0),
        Some(_) => Err(bad("the host and container port ranges are not the same length".into())),
    };
    (0..=count).map(|i| Ok(PortBinding { host_ip, host_port: host_at(i)?, container_port: ctr.0 + i, proto })).collect()
}

/// The bindings of every `-p`, and with `-P` every exposed port (`80/tcp`, `53/udp`, `8080`)
/// not published already, on a free host port.
pub fn bindings(specs: &[String], publish_all: bool, exposed: &[String]) -> Result<Vec<PortBinding>, PortError> {
    let mut out = Vec::new();
    for s in specs {
        out.extend(parse(s)?);
    }
    if publish_all {
        for e in exposed {
            for b in parse(e)? {
                if !out.iter().any(|o| o.container_port == b.container_port && o.proto == b.proto) {
                    out.push(b);
                }
            }
        }
    }
    for b in out.iter_mut().filter(|b| b.host_port == 0) {
        b.host_port = free_port(b)?;
    }
    Ok(out)
}

fn addr_of(b: &PortBinding) -> SocketAddr {
    SocketAddr::new(b.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), b.host_port)
}

/// Binds `b`'s host address and port (port 0: any) as the helper will; the local port bound.
fn try_bind(b: &PortBinding) -> io::Result<u16> {
    let addr = addr_of(b);
    let port = match b.proto {
        Proto::Tcp => TcpListener::bind(addr)?.local_addr()?.port(),
        Proto::Udp => UdpSocket::bind(addr)?.local_addr()?.port(),
    };
    Ok(port)
}

/// A host port free now for `b` (the kernel's pick from its ephemeral range).
fn free_port(b: &PortBinding) -> Result<u16, PortError> {
    try_bind(b).map_err(|e| bind_error(b, e))
}

/// The lowest port an unprivileged process may bind (`net.ipv4.ip_unprivileged_port_start`).
pub fn unprivileged_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

fn bind_error(b: &PortBinding, e: io::Error) -> PortError {
    let (key, addr) = (b.key(), addr_of(b).to_string());
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => PortError::InUse { key, addr },
        Some(libc::EACCES) => PortError::Privileged { key, addr, limit: unprivileged_start(), port: b.host_port },
        _ => PortError::Bind { key, addr, source: e },
    }
}

/// Checks that every host port can be bound now (else the one clear line why).
pub fn check_free(bindings: &[PortBinding]) -> Result<(), PortError> {
    for b in bindings {
        try_bind(b).map_err(|e| bind_error(b, e))?;
    }
    Ok(())
}

/// The host addresses a binding is shown with: its own, or `0.0.0.0` and, when the helper
/// binds IPv6 too, `::`.
fn shown_ips(b: &PortBinding, ipv6: bool) -> Vec<String> {
    match b.host_ip {
        Some(ip) => vec![ip.to_string()],
        None if ipv6 => vec!["0.0.0.0".into(), "::".into()],
        None => vec!["0.0.0.0".into()],
    }
}

fn host_text(ip: &str, port: &str) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

/// The `PORTS` column: `0.0.0.0:8080->80/tcp, [::]:8080->80/tcp`; runs of consecutive ports
/// are shown as ranges (`0.0.0.0:8000-8002->80-82/tcp`), exposed ports that are not published
/// as `443/tcp`.
pub fn column(bindings: &[PortBinding], exposed: &[String], ipv6: bool) -> String {
    // (ip, proto) → runs of (host, ctr) ports.
    let mut runs: Vec<(String, Proto, Range, Range)> = Vec::new();
    let mut sorted = bindings.to_vec();
    sorted.sort_by_key(|b| (b.proto, b.container_port, b.host_port));
    for b in &sorted {
        for ip in shown_ips(b, ipv6) {
            let extends = runs.iter_mut().find(|(i, p, h, c)| {
                *i == ip && *p == b.proto && h.1.checked_add(1) == Some(b.host_port) && c.1 + 1 == b.container_port
            });
            match extends {
                Some(run) => {
                    run.2.1 = b.host_port;
                    run.3.1 = b.container_port;
                }
                None => runs.push((ip, b.proto, (b.host_port, b.host_port), (b.container_port, b.container_port))),
            }
        }
    }
    let span = |r: Range| if r.0 == r.1 { r.0.to_string() } else { format!("{}-{}", r.0, r.1) };
    let mut out: Vec<String> =
        runs.iter().map(|(ip, p, h, c)| format!("{}->{}/{}", host_text(ip, &span(*h)), span(*c), p.name())).collect();
    for e in exposed {
        let Ok(ports) = parse(e) else { continue };
        for b in ports {
            if !bindings.iter().any(|x| x.container_port == b.container_port && x.proto == b.proto) {
                out.push(b.key());
            }
        }
    }
    out.join(", ")
}

/// The lines of `strata port`: `80/tcp -> 0.0.0.0:8080`, for one container port or all.
pub fn lines(bindings: &[PortBinding], only: Option<&str>, ipv6: bool) -> Vec<String> {
    let mut sorted = bindings.to_vec();
    sorted.sort_by_key(|b| (b.container_port, b.proto, b.host_port));
    let wanted = |b: &PortBinding| match only {
        None => true,
        Some(k) if k.contains('/') => b.key() == k,
        Some(k) => b.key() == format!("{k}/tcp"),
    };
    sorted
        .iter()
        .filter(|b| wanted(b))
        .flat_map(|b| {
            shown_ips(b, ipv6)
                .into_iter()
                .map(move |ip| format!("{} -> {}", b.key(), host_text(&ip, &b.host_port.to_string())))
        })
        .collect()
}

/// `HostConfig.PortBindings`: what was asked for, `HostIp` empty for every address.
pub fn host_config(bindings: &[PortBinding]) -> serde_json::Value {
    let mut map: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for b in bindings {
        let ip = b.host_ip.map(|i| i.to_string()).unwrap_or_default();
        map.entry(b.key()).or_default().push(serde_json::json!({"HostIp": ip, "HostPort": b.host_port.to_string()}));
    }
    serde_json::to_value(map).unwrap_or_default()
}

/// `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": null}`.
pub fn settings(bindings: &[PortBinding], exposed: &[String], ipv6: bool) -> serde_json::Value {
    let mut map: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for e in exposed {
        for b in parse(e).unwrap_or_default() {
            map.insert(b.key(), serde_json::Value::Null);
        }
    }
    for b in bindings {
        let entry = map.entry(b.key()).or_insert(serde_json::Value::Array(Vec::new()));
        if entry.is_null() {
            *entry = serde_json::Value::Array(Vec::new());
        }
        if let serde_json::Value::Array(list) = entry {
            for ip in shown_ips(b, ipv6) {
                list.push(serde_json::json!({"HostIp": ip, "HostPort": b.host_port.to_string()}));
            }
        }
    }
    serde_json::to_value(map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortBinding {
        let mut v = parse(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.remove(0)
    }

    #[test]
    fn parses_docker_forms() {
        let b = one("8080:80");
        assert_eq!((b.host_ip, b.host_port, b.container_port, b.proto), (None, 8080, 80, Proto::Tcp));
        let b = one("127.0.0.1:5353:53/udp");
        assert_eq!((b.host_ip.unwrap().to_string(), b.host_port, b.proto), ("127.0.0.1".into(), 5353, Proto::Udp));
        assert_eq!(one("80").host_port, 0);
        assert_eq!(one("127.0.0.1::80").host_port, 0);
        assert_eq!(one("[::1]:8080:80").host_ip.unwrap().to_string(), "::1");
        let r = parse("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter().map(|b| (b.host_port, b.container_port)).collect::<Vec<_>>(),
            [(8000, 80), (8001, 81), (8002, 82)]
        );
        for bad in ["80/sctp", "x:80", "8000-8002:80-81", "1.2.3:80:80", "80-70", "0", "a:b:c:d"] {
            assert!(matches!(parse(bad), Err(PortError::Bad { .. })), "{bad}");
        }
    }

    #[test]
    fn shows_ports_as_docker_does() {
        let mut b = parse("8000-8002:80-82").unwrap();
        b.extend(parse("127.0.0.1:5353:53/udp").unwrap());
        let exposed = vec!["443/tcp".to_string(), "80/tcp".to_string()];
        assert_eq!(
            column(&b, &exposed, true),
            "0.0.0.0:8000-8002->80-82/tcp, [::]:8000-8002->80-82/tcp, 127.0.0.1:5353->53/udp, 443/tcp"
        );
        assert_eq!(lines(&b, Some("81"), false), ["81/tcp -> 0.0.0.0:8001"]);
        let s = settings(&b, &exposed, false);
        assert_eq!(s["443/tcp"], serde_json::Value::Null);
        assert_eq!(s["53/udp"][0]["HostIp"], "127.0.0.1");
        assert_eq!(s["80/tcp"][0]["HostPort"], "8000");
        assert_eq!(host_config(&b)["80/tcp"][0], serde_json::json!({"HostIp": "", "HostPort": "8000"}));
    }

    #[test]
    fn a_taken_port_is_named_and_a_free_one_is_found() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let taken = one(&format!("127.0.0.1:{port}:80"));
        let e = check_free(std::slice::from_ref(&taken)).unwrap_err().to_string();
        assert_eq!(e, format!("publishing port 80/tcp: 127.0.0.1:{port} is already in use"));
        let b = bindings(&["127.0.0.1::80".into()], true, &["53/udp".into()]).unwrap();
        assert!(b.iter().all(|b| b.host_port != 0) && b.len() == 2);
    }
}
