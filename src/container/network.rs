//! A container's network: which mode it gets, the files that make names resolve inside
//! (`/etc/resolv.conf`, `/etc/hosts`), and the user-mode networking program that connects its
//! own network namespace to the host's — `pasta` (Debian `passt`) or `slirp4netns`, whichever
//! is installed (pasta first). Strata has no TCP/IP stack of its own: the helper owns the
//! container's `eth0`/`tap0`, turns its packets into ordinary sockets on the host (so outbound
//! TCP, UDP and DNS work without privileges) and listens on the published host ports.
//!
//! The helper is started by the monitor once PID 1 (and so the network namespace) exists and
//! before the command runs; the namespace reaches it as descriptor 3 (`/proc/self/fd/3`), so
//! nothing has to be bind-mounted anywhere. It is tied to the monitor's life
//! ([`crate::sys::spawn::spawn_tied`]): it ends when the container stops, is killed, or its
//! monitor dies, and nothing listens on its ports afterwards.
//!
//! From inside, the gateway address reaches the host's loopback (pasta's gateway mapping,
//! slirp4netns' `10.0.2.2`); `--add-host NAME:host-gateway` names it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::{Network, RunConfig};
use super::ports::{PortBinding, Proto};
use crate::sys::spawn;

/// The address pasta answers DNS queries on (forwarded to the host's resolver).
pub const PASTA_DNS: &str = "169.254.1.1";
/// slirp4netns' built-in DNS forwarder.
pub const SLIRP_DNS: &str = "10.0.2.3";
/// slirp4netns' address of the host (its loopback).
pub const SLIRP_HOST: &str = "10.0.2.2";
/// How long a helper may take to configure the namespace.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// The helper's messages, beside the container's record.
pub const LOG: &str = "network.log";

/// What went wrong with the network; each names the mode, program or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// `--network` names no mode Strata has.
    #[error("unknown network {0:?}: use none, host, bridge (the default: pasta or slirp4netns), pasta or slirp4netns")]
    Unknown(String),
    /// No helper program is installed.
    #[error(
        "no user-mode networking program found for --network {0}: install passt (pasta) or slirp4netns, or use --network none or host"
    )]
    NoHelper(String),
    /// `-p`/`-P` with a mode that has no ports of its own.
    #[error("ports cannot be published with --network {0}: the container {1}")]
    NoPorts(String, &'static str),
    /// A bad `--add-host`.
    #[error("invalid --add-host {0:?}: expected NAME:IP or NAME:host-gateway")]
    BadHost(String),
    /// A bad `--dns`.
    #[error("invalid --dns {0:?}: not an IP address")]
    BadDns(String),
    /// The helper could not be started or failed.
    #[error("network ({helper}): {message}")]
    Helper {
        /// `pasta` or `slirp4netns`.
        helper: &'static str,
        /// Why (the helper's own last line when it gave one).
        message: String,
    },
}

/// Whether a start failure's message is the network's (see [`NetworkError::Helper`]).
pub fn is_failure(message: &str) -> bool {
    message.starts_with("network (")
}

impl Network {
    /// The mode's name (as `--network` takes it and `inspect` shows it).
    pub fn name(self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Host => "host",
            Network::Pasta => "pasta",
            Network::Slirp4netns => "slirp4netns",
        }
    }

    /// Whether the container gets a network namespace of its own.
    pub fn own_namespace(self) -> bool {
        self != Network::Host
    }

    /// Whether a helper program connects it.
    pub fn helper(self) -> Option<&'static str> {
        match self {
            Network::Pasta => Some("pasta"),
            Network::Slirp4netns => Some("slirp4netns"),
            _ => None,
        }
    }

    /// Whether published ports are bound on IPv6 too.
    pub fn publishes_ipv6(self) -> bool {
        self == Network::Pasta
    }
}

/// The program `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The mode `--network VALUE` asks for; `bridge`/`default` (and nothing) pick the helper that
/// is installed: pasta, else slirp4netns.
pub fn choose(value: &str) -> Result<Network, NetworkError> {
    let want = |n: Network| match n.helper() {
        Some(h) if find_program(h).is_none() => Err(NetworkError::NoHelper(value.to_string())),
        _ => Ok(n),
    };
    match value {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "pasta" => want(Network::Pasta),
        "slirp4netns" => want(Network::Slirp4netns),
        "" | "bridge" | "default" | "private" => [Network::Pasta, Network::Slirp4netns]
            .into_iter()
            .find(|n| n.helper().and_then(find_program).is_some())
            .ok_or_else(|| NetworkError::NoHelper(if value.is_empty() { "bridge" } else { value }.to_string())),
        other => Err(NetworkError::Unknown(other.to_string())),
    }
}

/// The host's IPv4 default gateway (from `/proc/net/route` of the caller's namespace).
fn default_gateway() -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"00000000") {
            return None;
        }
        let raw = u32::from_str_radix(f.get(2)?, 16).ok()?;
        Some(Ipv4Addr::from(u32::from_be(raw)))
    })
}

/// The address that reaches the host from inside (`host-gateway`).
pub fn host_gateway(net: Network) -> IpAddr {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match net {
        Network::Pasta => default_gateway().map(IpAddr::V4).unwrap_or(loopback),
        Network::Slirp4netns => SLIRP_HOST.parse().unwrap_or(loopback),
        Network::Host | Network::None => loopback,
    }
}

/// Checks `--add-host NAME:IP|host-gateway` values; gives `NAME IP` pairs.
pub fn extra_hosts(values: &[String], net: Network) -> Result<Vec<(String, IpAddr)>, NetworkError> {
    values
        .iter()
        .map(|v| {
            let bad = || NetworkError::BadHost(v.clone());
            // NAME:IP, where an IPv6 address has colons of its own (and may be bracketed).
            let (name, ip) = v.split_once(':').or_else(|| v.split_once('=')).ok_or_else(bad)?;
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            if !valid {
                return Err(bad());
            }
            let ip = match ip {
                "host-gateway" => host_gateway(net),
                ip => ip.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?,
            };
            Ok((name.to_string(), ip))
        })
        .collect()
}

/// Checks `--dns` values.
pub fn dns_servers(values: &[String]) -> Result<Vec<IpAddr>, NetworkError> {
    values.iter().map(|v| v.parse().map_err(|_| NetworkError::BadDns(v.clone()))).collect()
}

/// The container's `/etc/hosts`.
pub fn hosts_file(hostname: &str, extra: &[(String, IpAddr)]) -> String {
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    for (name, ip) in extra {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    hosts
}

/// The container's `/etc/resolv.conf`: `--dns` servers, else the helper's forwarder (the
/// host's own file with `--network host`); the host's `search` and `options` lines are kept.
pub fn resolv_conf(net: Network, dns: &[IpAddr], host: &str) -> String {
    let kept = host.lines().filter(|l| l.starts_with("search") || l.starts_with("options"));
    let servers: Vec<String> = match (dns.is_empty(), net) {
        (false, _) => dns.iter().map(|d| d.to_string()).collect(),
        (true, Network::Host) => return host.to_string(),
        (true, Network::Pasta) => vec![PASTA_DNS.into()],
        (true, Network::Slirp4netns) => vec![SLIRP_DNS.into()],
        (true, Network::None) => return String::new(),
    };
    let mut out: String = servers.iter().map(|s| format!("nameserver {s}\n")).collect();
    for l in kept {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A running helper, ended when dropped or stopped.
pub struct Helper {
    name: &'static str,
    child: Child,
}

impl Helper {
    /// Ends the helper and waits for it: its ports are closed when this returns.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.end();
    }
}

fn helper_err(helper: &'static str, message: impl Into<String>) -> NetworkError {
    NetworkError::Helper { helper, message: message.into() }
}

/// Connects the network namespace of `pid` (the container's PID 1) to the host with the
/// configuration's helper, publishes its ports, and returns once the namespace has its route.
/// `dir` is the container's directory (the helper's log goes there). Call it from the thread
/// that lives as long as the monitor.
pub fn connect(cfg: &RunConfig, pid: i32, dir: &Path) -> Result<Option<Helper>, NetworkError> {
    let Some(name) = cfg.network.helper() else { return Ok(None) };
    let program = find_program(name).ok_or_else(|| NetworkError::NoHelper(name.into()))?;
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| helper_err(name, format!("opening the container's network namespace: {e}")))?;
    let log_path = dir.join(LOG);
    let log = std::fs::File::create(&log_path).map_err(|e| helper_err(name, format!("{}: {e}", log_path.display())))?;
    let mut cmd = Command::new(&program);
    let dir_fd = std::fs::File::open(dir).map_err(|e| helper_err(name, format!("{}: {e}", dir.display())))?;
    let mut fds = vec![netns.as_fd()];
    match cfg.network {
        Network::Pasta => {
            cmd.args(pasta_args(&cfg.ports));
        }
        _ => {
            fds.push(dir_fd.as_fd());
            cmd.args(["--configure", "--mtu=65520", "--api-socket=/proc/self/fd/4/slirp.sock"]);
            cmd.args(["--netns-type=path", "/proc/self/fd/3", "tap0"]);
        }
    }
    let log2 = log.try_clone().map_err(|e| helper_err(name, e.to_string()))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let child = spawn::spawn_tied(&mut cmd, &fds)
        .map_err(|e| helper_err(name, format!("starting {}: {e}", program.display())))?;
    let mut helper = Helper { name, child };
    wait_ready(&mut helper, pid, &log_path)?;
    if cfg.network == Network::Slirp4netns {
        for b in &cfg.ports {
            slirp_forward(&dir_fd, b)?;
        }
    }
    Ok(Some(helper))
}

/// pasta's arguments: stay in the foreground, configure the namespace, forward exactly the
/// published ports (nothing automatic either way), answer DNS on [`PASTA_DNS`].
fn pasta_args(ports: &[PortBinding]) -> Vec<String> {
    let mut a: Vec<String> = ["--runas", "0", "--foreground", "--quiet", "--config-net", "--dns-forward", PASTA_DNS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for proto in [Proto::Tcp, Proto::Udp] {
        let flag = if proto == Proto::Tcp { "-t" } else { "-u" };
        let specs: Vec<String> = ports
            .iter()
            .filter(|b| b.proto == proto)
            .map(|b| match b.host_ip {
                Some(ip) => format!("{ip}/{}:{}", b.host_port, b.container_port),
                None => format!("{}:{}", b.host_port, b.container_port),
            })
            .collect();
        if specs.is_empty() {
            a.extend([flag.to_string(), "none".into()]);
        }
        for s in specs {
            a.extend([flag.to_string(), s]);
        }
    }
    a.extend(["-T", "none", "-U", "none", "--netns", "/proc/self/fd/3"].iter().map(|s| s.to_string()));
    a
}

/// The last thing the helper said that is not noise about the system logger.
fn last_words(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("Failed to send"));
    line.unwrap_or("no message").to_string()
}

/// Whether the namespace of `pid` has a default route (the helper configured it).
fn has_default_route(pid: i32) -> bool {
    let routes = std::fs::read_to_string(format!("/proc/{pid}/net/route")).unwrap_or_default();
    routes.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some("00000000"))
}

fn wait_ready(h: &mut Helper, pid: i32, log: &Path) -> Result<(), NetworkError> {
    let start = Instant::now();
    loop {
        if has_default_route(pid) {
            return Ok(());
        }
        if let Ok(Some(status)) = h.child.try_wait() {
            return Err(helper_err(h.name, format!("{} ({status})", last_words(log))));
        }
        if start.elapsed() > READY_LIMIT {
            return Err(helper_err(h.name, format!("no route after {READY_LIMIT:?}: {}", last_words(log))));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asks slirp4netns (through its API socket in the container's directory) to forward `b`.
fn slirp_forward(dir: &std::fs::File, b: &PortBinding) -> Result<(), NetworkError> {
    use std::os::fd::AsRawFd;
    const NAME: &str = "slirp4netns";
    let host_addr = match b.host_ip {
        None => "0.0.0.0".to_string(),
        Some(IpAddr::V4(ip)) => ip.to_string(),
        Some(IpAddr::V6(ip)) => {
            return Err(helper_err(
                NAME,
                format!("port {}: slirp4netns publishes IPv4 addresses only, not {ip}", b.key()),
            ));
        }
    };
    let request = serde_json::json!({"execute": "add_hostfwd", "arguments": {
        "proto": b.proto.name(), "host_addr": host_addr, "host_port": b.host_port, "guest_port": b.container_port,
    }});
    let socket = format!("/proc/self/fd/{}/slirp.sock", dir.as_raw_fd());
    let start = Instant::now();
    let mut s = loop {
        match UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < READY_LIMIT => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(helper_err(NAME, format!("its API socket: {e}"))),
        }
    };
    let talk = |s: &mut UnixStream| -> io::Result<String> {
        s.write_all(request.to_string().as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    };
    let reply = talk(&mut s).map_err(|e| helper_err(NAME, format!("its API socket: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
    if let Some(desc) = v.get("error").map(|e| e.get("desc").and_then(|d| d.as_str()).unwrap_or("error").to_string()) {
        return Err(helper_err(NAME, format!("publishing port {} on {host_addr}:{}: {desc}", b.key(), b.host_port)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_points_at_the_helper_or_the_given_servers() {
        let host = "nameserver 10.1.1.1\nsearch example.org\noptions ndots:2\n";
        assert_eq!(
            resolv_conf(Network::Pasta, &[], host),
            "nameserver 169.254.1.1\nsearch example.org\noptions ndots:2\n"
        );
        assert_eq!(resolv_conf(Network::Slirp4netns, &[], host).lines().next(), Some("nameserver 10.0.2.3"));
        let dns = dns_servers(&["9.9.9.9".into()]).unwrap();
        assert!(resolv_conf(Network::Pasta, &dns, host).starts_with("nameserver 9.9.9.9\n"));
        assert_eq!(resolv_conf(Network::Host, &[], host), host);
        assert!(dns_servers(&["nine".into()]).is_err());
    }

    #[test]
    fn extra_hosts_take_addresses_and_the_host_gateway() {
        let h = extra_hosts(&["db:10.0.0.5".into(), "gw:host-gateway".into(), "v6:[::1]".into()], Network::Slirp4netns)
            .unwrap();
        assert_eq!(h[0], ("db".into(), "10.0.0.5".parse().unwrap()));
        assert_eq!(h[1].1.to_string(), SLIRP_HOST);
        assert_eq!(h[2].1.to_string(), "::1");
        let f = hosts_file("box", &h);
        assert!(f.contains("127.0.1.1\tbox\n") && f.contains("10.0.0.5\tdb\n"), "{f}");
        for bad in ["nocolon", ":1.2.3.4", "x:notanip", "a b:1.2.3.4"] {
            assert!(extra_hosts(&[bad.into()], Network::Pasta).is_err(), "{bad}");
        }
    }

    #[test]
    fn pasta_forwards_exactly_the_published_ports() {
        let p = super::super::ports::parse("127.0.0.1:8080:80").unwrap();
        let a = pasta_args(&p).join(" ");
        assert!(a.contains("-t 127.0.0.1/8080:80") && a.contains("-u none") && a.contains("-T none -U none"), "{a}");
        assert!(!a.contains("-t none"), "{a}");
        assert!(a.ends_with("--netns /proc/self/fd/3"));
    }

    #[test]
    fn unknown_modes_are_named() {
        assert!(matches!(choose("overlay"), Err(NetworkError::Unknown(_))));
        assert_eq!(choose("none").unwrap(), Network::None);
    }
}
