//! Integration tests of container networking: outbound TCP and UDP through the user-mode
//! networking helper (pasta, and slirp4netns when asked for) to servers on a host loopback
//! address, `--add-host`, `--dns`, published ports (`-p` TCP and UDP, ranges, `-P`), `strata
//! port`, the `PORTS` column, a taken or privileged port refused in one line with nothing left
//! behind, and no listener after the container ends (stop, or its monitor killed). As root and
//! rootless. All traffic stays on this machine.
//!
//! The busybox fixture image has no UDP tool: `tests/net/udp.c`, built with `gcc -static`, is
//! bind-mounted into the container for that.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::container::*;

/// The UDP helper, built once per test run.
fn udp_tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/net/udp.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("udp-static");
        let st = Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&out).arg(&src).status().expect("gcc");
        assert!(st.success(), "building {}", src.display());
        out
    })
}

/// A directory in the test's store dir holding the UDP helper (reachable by a rootless user).
fn tool_dir(env: &Env) -> String {
    let dir = env.dir.path().join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(udp_tool(), dir.join("udp")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("udp"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:/tools:ro", dir.display())
}

/// A web root with `index.html` saying `body`, for busybox httpd.
fn web_root(env: &Env, body: &str) -> String {
    let dir = env.dir.path().join("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), body).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("index.html"), std::fs::Permissions::from_mode(0o644)).unwrap();
    format!("{}:/www:ro", dir.display())
}

/// A TCP server on host loopback answering every connection with an HTTP response saying `body`.
fn host_http(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let reply = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

/// A UDP echo server on host loopback that prefixes its answers with `host:`.
fn host_udp_echo() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let mut reply = b"host:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, peer);
        }
    });
    port
}

/// `GET /` on `127.0.0.1:port`; the body, once it answers (the server may still be starting).
fn http_get(port: u16) -> String {
    let mut body = String::new();
    wait_until(&format!("nothing answered on 127.0.0.1:{port}"), || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        match resp.split_once("\r\n\r\n") {
            Some((head, b)) if head.contains(" 200 ") => {
                body = b.to_string();
                true
            }
            _ => false,
        }
    });
    body
}

/// The host's first global IPv4 address.
fn host_address() -> String {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let addr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).expect("a global IPv4 address");
    addr.split('/').next().unwrap().to_string()
}

/// Sends `msg` to `ip:port` over UDP until an answer comes.
fn udp_ask(ip: &str, port: u16, msg: &str) -> String {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut answer = String::new();
    wait_until(&format!("no UDP answer from {ip}:{port}"), || {
        s.send_to(msg.as_bytes(), (ip, port)).unwrap();
        let mut buf = [0u8; 2048];
        match s.recv(&mut buf) {
            Ok(n) => {
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                true
            }
            Err(_) => false,
        }
    });
    answer
}

/// Whether something listens on TCP `port` or holds UDP `port` on the host.
fn port_taken(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_err() || UdpSocket::bind(("0.0.0.0", port)).is_err()
}

/// A host port free now.
fn free_port() -> u16 {
    let t = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = t.local_addr().unwrap().port();
    match UdpSocket::bind(("0.0.0.0", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

/// The helper processes (pasta, slirp4netns) running on the host for containers of `env`.
fn helpers_of(env: &Env) -> usize {
    let ids = env.container_ids();
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    procs
        .filter(|e| {
            let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
            let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (name.starts_with("passt") || name.starts_with("pasta") || name == "slirp4netns")
                && ids.iter().any(|id| {
                    // The helper's log is in the container's directory.
                    std::fs::read_dir(e.path().join("fd")).into_iter().flatten().flatten().any(|fd| {
                        std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains(id.as_str()))
                    })
                })
        })
        .count()
}

fn prepare(test: &str, as_user: Option<u32>) -> Option<Env> {
    if !common::require_root(test) {
        return None;
    }
    if as_user.is_some() {
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    Some(Env::with_user(as_user))
}

// ---------------------------------------------------------------------------------------------
// Outbound

/// A container reaches a TCP and a UDP server on the host's loopback through the helper (the
/// gateway address stands for the host), by a name given with `--add-host NAME:host-gateway`.
fn outbound(env: &Env, network: &str) {
    let tcp = host_http("hello from the host");
    let udp = host_udp_echo();
    let tools = tool_dir(env);
    let script = format!(
        "set -e; wget -q -O - http://hostbox:{tcp}/; echo; \
         gw=$(awk '/hostbox/ {{print $1}}' /etc/hosts); /tools/udp ask $gw {udp} ping; \
         grep hostbox /etc/hosts; ip route | grep -c default; cat /etc/resolv.conf"
    );
    let out = env.sh(
        &["--network", network, "--add-host", "hostbox:host-gateway", "--add-host", "db.local:10.9.8.7", "-v", &tools],
        &script,
    );
    let l = lines(&out);
    assert_eq!(l[0], "hello from the host", "{out}");
    assert_eq!(l[1], "host:ping", "{out}");
    assert!(l[2].ends_with("\thostbox"), "{out}");
    assert_eq!(l[3], "1", "one default route: {out}");
    let ns = if network == "slirp4netns" { "10.0.2.3" } else { "169.254.1.1" };
    assert_eq!(l[4], format!("nameserver {ns}"), "{out}");
    let out = env.sh(
        &["--network", network, "--add-host", "db.local:10.9.8.7", "--dns", "10.1.1.1"],
        "cat /etc/hosts /etc/resolv.conf",
    );
    assert!(out.contains("10.9.8.7\tdb.local\n") && out.contains("nameserver 10.1.1.1\n"), "{out}");
}

#[test]
fn root_outbound_tcp_udp_and_add_host_through_pasta() {
    let Some(env) = prepare("root_outbound_tcp_udp_and_add_host_through_pasta", None) else { return };
    outbound(&env, "bridge");
}

#[test]
fn root_outbound_through_slirp4netns() {
    let Some(env) = prepare("root_outbound_through_slirp4netns", None) else { return };
    outbound(&env, "slirp4netns");
}

#[test]
fn root_rootless_outbound_tcp_udp_and_add_host() {
    let Some(env) = prepare("root_rootless_outbound_tcp_udp_and_add_host", Some(65534)) else { return };
    outbound(&env, "pasta");
}

#[test]
fn root_network_none_and_host_and_unknown_modes() {
    let Some(env) = prepare("root_network_none_and_host_and_unknown_modes", None) else { return };
    let out = env.sh(&["--network", "none"], "ip -o link | wc -l; cat /etc/resolv.conf | wc -c");
    assert_eq!(lines(&out), ["1", "0"], "only loopback, no resolver: {out}");
    let host_links = Command::new("ip").args(["-o", "link"]).output().unwrap().stdout;
    let out = env.sh(&["--network", "host"], "ip -o link | wc -l");
    assert_eq!(out.trim(), String::from_utf8_lossy(&host_links).lines().count().to_string());
    let e = env.fails(125, &["run", "--rm", "--network", "overlay", IMAGE, "true"]);
    assert!(e.contains("unknown network \"overlay\""), "{e}");
    let e = env.fails(125, &["run", "--rm", "--network", "none", "-p", "8080:80", IMAGE, "true"]);
    assert!(e.contains("ports cannot be published with --network none"), "{e}");
    assert!(env.container_ids().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Published ports

/// busybox httpd and the UDP echo published on the host; `strata port`, `ps`; after `stop`
/// nothing listens and no helper is left.
fn published(env: &Env, network: &str) {
    let (web, udp) = (free_port(), free_port());
    let (www, tools) = (web_root(env, "served by busybox httpd\n"), tool_dir(env));
    let (p_web, p_udp) = (format!("127.0.0.1:{web}:80"), format!("{udp}:5300/udp"));
    let script = "httpd -p 80 -h /www && exec /tools/udp serve 5300";
    env.ok(&["run", "-d", "--name", "pub", "--network", network, "-p", &p_web, "-p", &p_udp, "-v", &www, "-v", &tools]
        .into_iter()
        .chain([IMAGE, "sh", "-c", script])
        .collect::<Vec<_>>());
    env.wait_status("pub", "running");
    assert_eq!(http_get(web), "served by busybox httpd\n");
    // Debian bookworm's pasta (passt 2023-03) loses UDP replies to clients on the host's
    // loopback (its spliced UDP path); clients on the host's other addresses get them.
    let client = if network == "slirp4netns" { "127.0.0.1".to_string() } else { host_address() };
    assert_eq!(udp_ask(&client, udp, "echo me"), "echo me");
    let ports = env.ok(&["port", "pub"]);
    assert!(ports.contains(&format!("80/tcp -> 127.0.0.1:{web}\n")), "{ports}");
    assert!(ports.contains(&format!("5300/udp -> 0.0.0.0:{udp}\n")), "{ports}");
    assert_eq!(env.ok(&["port", "pub", "80"]), format!("80/tcp -> 127.0.0.1:{web}\n"));
    let ps = env.ok(&["ps"]);
    assert!(ps.lines().next().unwrap().contains("PORTS"), "{ps}");
    assert!(
        ps.contains(&format!("127.0.0.1:{web}->80/tcp")) && ps.contains(&format!("0.0.0.0:{udp}->5300/udp")),
        "{ps}"
    );
    assert_eq!(helpers_of(env), 1);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "pub"])).unwrap();
    let net = &inspect[0]["NetworkSettings"];
    let helper = if network == "slirp4netns" { "slirp4netns" } else { "pasta" };
    assert!(net["Helper"].as_str().unwrap().ends_with(helper), "the helper is named: {net}");
    assert_eq!(inspect[0]["HostConfig"]["NetworkMode"], helper);
    assert_eq!(net["Ports"]["80/tcp"][0], serde_json::json!({"HostIp": "127.0.0.1", "HostPort": web.to_string()}));
    assert_eq!(net["Ports"]["5300/udp"][0], serde_json::json!({"HostIp": "0.0.0.0", "HostPort": udp.to_string()}));
    env.ok(&["stop", "-t", "1", "pub"]);
    assert!(!port_taken(web) && !port_taken(udp), "a port still listens after stop");
    assert_eq!(helpers_of(env), 0, "the helper ended with the container");
    // Started again, it publishes again.
    env.ok(&["start", "pub"]);
    assert_eq!(http_get(web), "served by busybox httpd\n");
    env.ok(&["rm", "-f", "pub"]);
    wait_until("the port was not let go", || !port_taken(web));
}

#[test]
fn root_published_tcp_and_udp_ports() {
    let Some(env) = prepare("root_published_tcp_and_udp_ports", None) else { return };
    published(&env, "bridge");
}

#[test]
fn root_published_ports_through_slirp4netns() {
    let Some(env) = prepare("root_published_ports_through_slirp4netns", None) else { return };
    published(&env, "slirp4netns");
}

#[test]
fn root_rootless_published_tcp_and_udp_ports() {
    let Some(env) = prepare("root_rootless_published_tcp_and_udp_ports", Some(65534)) else { return };
    published(&env, "bridge");
}

#[test]
fn root_port_ranges_and_publish_all_of_exposed_ports() {
    let Some(env) = prepare("root_port_ranges_and_publish_all_of_exposed_ports", None) else { return };
    let www = web_root(&env, "exposed\n");
    env.ok(&["run", "--name", "base", IMAGE, "true"]);
    env.ok(&["commit", "-c", "EXPOSE 80 8081/tcp 5353/udp", "base", "exposing:1"]);
    env.ok(&["run", "-d", "--name", "all", "-P", "-v", &www, "exposing:1", "httpd", "-f", "-p", "80", "-h", "/www"]);
    env.wait_status("all", "running");
    let line = env.ok(&["port", "all", "80/tcp"]);
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(line.starts_with("80/tcp -> 0.0.0.0:"), "{line}");
    assert_eq!(http_get(port), "exposed\n");
    let all = env.ok(&["port", "all"]);
    assert_eq!(all.lines().filter(|l| l.contains("0.0.0.0:")).count(), 3, "every exposed port: {all}");
    assert!(all.contains("5353/udp -> 0.0.0.0:"), "{all}");
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "all"])).unwrap();
    let exposed = &inspect[0]["Config"]["ExposedPorts"];
    assert_eq!(*exposed, serde_json::json!({"80/tcp": {}, "8081/tcp": {}, "5353/udp": {}}));
    assert_eq!(inspect[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"], port.to_string());
    env.ok(&["rm", "-f", "all"]);
    // A range: three ports, three servers.
    let base = loop {
        let p = free_port();
        if p < 65000 && !port_taken(p + 1) && !port_taken(p + 2) {
            break p;
        }
    };
    let range = format!("127.0.0.1:{base}-{}:80-82", base + 2);
    let script = "for p in 80 81 82; do httpd -p $p -h /www; done; sleep 1000";
    env.ok(&["run", "-d", "--name", "range", "-p", &range, "-v", &www, IMAGE, "sh", "-c", script]);
    env.wait_status("range", "running");
    for p in base..=base + 2 {
        assert_eq!(http_get(p), "exposed\n");
    }
    let ps = env.ok(&["ps"]);
    assert!(ps.contains(&format!("127.0.0.1:{base}-{}->80-82/tcp", base + 2)), "{ps}");
    env.ok(&["rm", "-f", "range"]);
}

#[test]
fn root_a_taken_port_is_one_line_and_leaves_nothing() {
    let Some(env) = prepare("root_a_taken_port_is_one_line_and_leaves_nothing", None) else { return };
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let publish = format!("{port}:80");
    let e = env.fails(125, &["run", "-d", "--name", "clash", "-p", &publish, "-v", "/data", IMAGE, "sleep", "100"]);
    assert_eq!(e.trim(), format!("strata: publishing port 80/tcp: 0.0.0.0:{port} is already in use"));
    assert!(env.container_ids().is_empty(), "no container is left behind");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "", "nor its anonymous volume");
    assert_eq!(env.ok(&["ps", "-a"]).lines().count(), 1);
    assert_eq!(helpers_of(&env), 0);
    // A port taken after the container was made: `start` names it too. The free port is only
    // free when looked at: another test running beside this one may take it before it is taken
    // again here, so a port lost that way is given up for another.
    drop(taken);
    for attempt in 0.. {
        let free = free_port();
        env.ok(&["run", "--name", "later", "-p", &format!("{free}:80"), IMAGE, "true"]);
        assert_eq!(helpers_of(&env), 0, "the port helper of an ended container still runs");
        match TcpListener::bind(("0.0.0.0", free)) {
            Ok(_again) => {
                let e = env.fails(1, &["start", "later"]);
                assert!(e.contains(&format!("0.0.0.0:{free} is already in use")), "{e}");
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 5 => {
                env.ok(&["rm", "later"]);
            }
            Err(e) => panic!("binding {free} after the container ended: {e}"),
        }
    }
}

#[test]
fn root_rootless_privileged_port_names_the_sysctl() {
    let Some(env) = prepare("root_rootless_privileged_port_names_the_sysctl", Some(65534)) else { return };
    let limit: u16 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap().trim().parse().unwrap();
    assert!(limit > 80, "this test needs the default unprivileged port limit");
    let e = env.fails(125, &["run", "--rm", "-p", "80:80", IMAGE, "true"]);
    assert!(e.contains("ports below") && e.contains("net.ipv4.ip_unprivileged_port_start=80"), "{e}");
    assert!(env.container_ids().is_empty());
}

#[test]
fn root_the_helper_ends_when_the_monitor_is_killed() {
    let Some(env) = prepare("root_the_helper_ends_when_the_monitor_is_killed", None) else { return };
    let port = free_port();
    let www = web_root(&env, "up\n");
    let p = format!("{port}:80");
    env.ok(&["run", "-d", "--name", "km", "-p", &p, "-v", &www, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]);
    let r = env.wait_status("km", "running");
    assert_eq!(http_get(port), "up\n");
    let monitor = r["state"]["monitor_pid"].as_i64().unwrap();
    Command::new("kill").args(["-9", &monitor.to_string()]).status().unwrap();
    wait_until("the helper outlived its monitor", || helpers_of(&env) == 0 && !port_taken(port));
    wait_until("the container never showed as exited", || env.ok(&["ps", "-a"]).contains("Exited"));
}
