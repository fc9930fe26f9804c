//! The network benchmark (`cargo bench --bench network -- [--quick] [--markdown benches/RESULTS.md]`).
//!
//! TCP throughput (Debian's `iperf3`, server in the container, client on the host) and the
//! connection rate (sequential connect + `GET /` + close against busybox `httpd` in the
//! container, for a fixed time) through a port published on host loopback, for:
//!
//! - `strata`: `strata run -p` with its default network (pasta);
//! - `strata-slirp`: `strata run --network slirp4netns -p` (slirp4netns forwards the port);
//! - `podman-slirp`: `podman run --network slirp4netns -p` (podman 4.3 has no pasta; its port
//!   forwarder is `rootlessport`, its default);
//! - `podman-slirp-builtin`: the same with `port_handler=slirp4netns` (the program Strata's
//!   `strata-slirp` uses);
//! - `host`: the server in the host's network (`--network host`), the limit.
//!
//! Each measurement is repeated in a rotating order; medians. Everything stays on loopback.
//! The iperf3 image is a debootstrap'd Debian with `iperf3` installed through Strata's own
//! network, saved and loaded into podman. Run as root. Under `cargo test` (no `--bench`) it
//! checks its report code and measures nothing.

#[path = "../common/cmd.rs"]
mod cmd;
#[path = "../common/stats.rs"]
mod stats;

use cmd::checked_output as sh;

#[path = "../../tests/common/debian.rs"]
#[allow(dead_code)]
mod debian;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use stats::median;

/// Strata's published ports against podman's, with the host's network as the limit.
#[derive(Parser, Debug)]
struct Args {
    /// Given by `cargo bench`: a real run (without it, only the report code is checked).
    #[arg(long)]
    bench: bool,
    /// 2 repetitions of 2 s each instead of 5 of 5 s.
    #[arg(long)]
    quick: bool,
    /// Where the stores go.
    #[arg(long, default_value = "/var/tmp/strata-bench-network")]
    dir: PathBuf,
    /// Write the results into this bench's section of this file (benches/RESULTS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
}

const SYSTEMS: [&str; 5] = ["strata", "strata-slirp", "podman-slirp", "podman-slirp-builtin", "host"];
const FIXTURE: &str = "fixtures/images/oci-multi";

/// One measured row: samples per system; higher is better.
struct Row {
    label: &'static str,
    unit: &'static str,
    samples: BTreeMap<&'static str, Vec<f64>>,
}

impl Row {
    fn median(&self, sys: &str) -> Option<f64> {
        self.samples.get(sys).and_then(|v| median(v))
    }

    /// The best podman column.
    fn podman_best(&self) -> Option<f64> {
        ["podman-slirp", "podman-slirp-builtin"].iter().filter_map(|s| self.median(s)).reduce(f64::max)
    }

    /// Whether Strata (its default network) gives at least podman's best.
    fn verdict(&self) -> String {
        match (self.median("strata"), self.podman_best()) {
            (Some(s), Some(p)) if s >= p => "yes".into(),
            (Some(s), Some(p)) => format!("**no**: {:.2}× podman", s / p),
            _ => "–".into(),
        }
    }
}

/// The rows as a markdown table: a column per system, Strata ÷ podman's best, ÷ host, met.
fn table(rows: &[Row]) -> String {
    let mut out = String::from("| | ");
    out.push_str(&SYSTEMS.join(" | "));
    out.push_str(" | strata ÷ best podman | strata ÷ host | target ≥ podman met |\n|---|");
    out.push_str(&"---:|".repeat(SYSTEMS.len() + 2));
    out.push_str("---|\n");
    for r in rows {
        out.push_str(&format!("| {} ({}) |", r.label, r.unit));
        for s in SYSTEMS {
            out.push_str(&r.median(s).map(|v| format!(" {v:.2} |")).unwrap_or(" – |".into()));
        }
        let ratio = |d: Option<f64>| match (r.median("strata"), d) {
            (Some(a), Some(b)) if b > 0.0 => format!(" {:.2}× |", a / b),
            _ => " – |".into(),
        };
        out.push_str(&ratio(r.podman_best()));
        out.push_str(&ratio(r.median("host")));
        out.push_str(&format!(" {} |\n", r.verdict()));
    }
    out
}

/// The two engines, each with its own store under `dir`.
struct Engines {
    dir: PathBuf,
}

impl Engines {
    fn strata(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.arg("--root").arg(self.dir.join("strata"));
        c
    }

    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("podman/root"))
            .arg("--runroot")
            .arg(self.dir.join("podman/run"))
            .args(["--storage-driver", "vfs"]);
        c
    }

    /// Images in both: busybox (httpd) and Debian with iperf3.
    fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let conf = "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                    [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";
        std::fs::write(self.dir.join("containers.conf"), conf)?;
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
        sh(self.strata().args(["load", "-q", "-i"]).arg(&fixture))?;
        if sh(self.strata().args(["inspect", "iperf3:bench"])).is_err() {
            let base = debian::debian_base();
            sh(self.strata().arg("import").arg(&base).arg("debian:bookworm"))?;
            let install = "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
                           apt-get install -y -qq --no-install-recommends iperf3 >/dev/null";
            let _ = sh(self.strata().args(["rm", "-f", "iperf3-install"]));
            sh(self.strata().args(["run", "--name", "iperf3-install", "debian:bookworm", "sh", "-c", install]))?;
            sh(self.strata().args(["commit", "iperf3-install", "iperf3:bench"]))?;
            sh(self.strata().args(["rm", "iperf3-install"]))?;
        }
        let archive = self.dir.join("iperf3.tar");
        sh(self.strata().arg("save").arg("-o").arg(&archive).arg("iperf3:bench"))?;
        sh(self.podman().args(["load", "-q", "-i"]).arg(&archive))?;
        sh(self.podman().args(["pull", "-q"]).arg(format!("oci:{}:latest", fixture.display())))?;
        sh(self.podman().args(["tag", "oci-multi:latest", "localhost/oci-multi:latest"]))?;
        Ok(())
    }

    /// Starts `server` from `image` detached on `system` with `flags` before the image; the
    /// server listens on `PORT` in its arguments: `ctr_port`, published on host loopback's
    /// `host_port` (in the host's network it listens on `host_port` itself).
    fn start(
        &self,
        system: &str,
        image: &str,
        flags: &[&str],
        server: &[&str],
        ctr_port: u16,
        host_port: u16,
    ) -> Result<()> {
        let (mut cmd, net) = match system {
            "strata" => (self.strata(), "bridge"),
            "strata-slirp" => (self.strata(), "slirp4netns"),
            "host" => (self.strata(), "host"),
            "podman-slirp" => (self.podman(), "slirp4netns"),
            _ => (self.podman(), "slirp4netns:port_handler=slirp4netns"),
        };
        cmd.args(["run", "-d", "--name", "bench", "--network", net]).args(flags);
        let inside = if system == "host" { host_port } else { ctr_port };
        if system != "host" {
            cmd.args(["-p", &format!("127.0.0.1:{host_port}:{ctr_port}")]);
        }
        cmd.arg(if system.starts_with("podman") { format!("localhost/{image}") } else { image.to_string() });
        cmd.args(server.iter().map(|a| if *a == "PORT" { inside.to_string() } else { a.to_string() }));
        sh(&mut cmd)?;
        wait_listening(host_port)
    }

    fn stop(&self, system: &str) {
        let mut cmd = if system.starts_with("podman") { self.podman() } else { self.strata() };
        let _ = cmd.args(["rm", "-f", "bench"]).stdin(Stdio::null()).output();
    }
}

fn wait_listening(port: u16) -> Result<()> {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The forwarder may accept before the server does; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(18080)
}

/// iperf3 client against 127.0.0.1:port for `secs`: Gbit/s received.
fn throughput(port: u16, secs: u64) -> Result<f64> {
    let out =
        sh(Command::new("iperf3").args(["-c", "127.0.0.1", "-p", &port.to_string(), "-t", &secs.to_string(), "-J"]))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 gave no result")?;
    Ok(bps / 1e9)
}

/// Sequential connect + `GET /` + read to the end against 127.0.0.1:port for `secs`: per second.
fn connection_rate(port: u16, secs: u64) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        if !buf.starts_with(b"HTTP/1.") {
            bail!("no HTTP answer on {port}");
        }
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn measure(args: &Args) -> Result<Vec<Row>> {
    let e = Engines { dir: args.dir.clone() };
    e.prepare()?;
    let (reps, secs) = if args.quick { (2, 2) } else { (5, 5) };
    let www = args.dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "ok\n")?;
    let mut rows = vec![
        Row { label: "TCP throughput, iperf3", unit: "Gbit/s", samples: BTreeMap::new() },
        Row { label: "connection rate, connect + GET + close", unit: "conn/s", samples: BTreeMap::new() },
    ];
    for rep in 0..reps {
        for i in 0..SYSTEMS.len() {
            let system = SYSTEMS[(i + rep) % SYSTEMS.len()];
            let port = free_port();
            e.stop(system);
            e.start(system, "iperf3:bench", &[], &["iperf3", "-s", "-p", "PORT"], 5201, port)?;
            let t = throughput(port, secs);
            e.stop(system);
            rows[0].samples.entry(system).or_default().push(t?);
            let port = free_port();
            let vol = format!("{}:/www", www.display());
            e.start(system, "oci-multi", &["-v", &vol], &["httpd", "-f", "-h", "/www", "-p", "PORT"], 80, port)?;
            let r = connection_rate(port, secs);
            e.stop(system);
            rows[1].samples.entry(system).or_default().push(r?);
            eprintln!(
                "rep {rep} {system}: {:.2} Gbit/s, {:.0} conn/s",
                rows[0].samples[system].last().unwrap_or(&0.0),
                rows[1].samples[system].last().unwrap_or(&0.0)
            );
        }
    }
    Ok(rows)
}

fn section(args: &Args, rows: &[Row], secs: u64) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Made by `cargo bench --bench network --{} --markdown benches/RESULTS.md` ({} run, medians, {secs} s). \
         Higher is better. pasta is Debian bookworm's passt 2023-03; podman 4.3.1 has no pasta, so it is \
         compared with slirp4netns, with its default forwarder (rootlessport) and with slirp4netns' own \
         (the program `strata-slirp` uses).\n\n",
        if args.quick { " --quick" } else { "" },
        if args.quick { "quick" } else { "full" }
    ));
    s.push_str(&table(rows));
    s.push_str("\nEvery sample: ");
    let all: Vec<String> = rows
        .iter()
        .map(|r| {
            let cols: Vec<String> = SYSTEMS
                .iter()
                .filter_map(|c| {
                    r.samples
                        .get(c)
                        .map(|v| format!("{c} {}", v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")))
                })
                .collect();
            format!("{}: {}", r.label, cols.join("; "))
        })
        .collect();
    s.push_str(&all.join(". "));
    s.push('\n');
    s
}

const BEGIN: &str = "<!-- network bench: begin -->";
const END: &str = "<!-- network bench: end -->";

/// Puts `text` between this bench's markers in `path` (appended with a heading the first time).
fn write_markdown(path: &Path, text: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{text}{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
        _ => format!("{}\n## Network: published ports\n\n{block}\n", old.trim_end()),
    };
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn self_check() {
    let mut r = Row { label: "x", unit: "u", samples: BTreeMap::new() };
    r.samples.insert("strata", vec![3.0, 1.0, 2.0]);
    r.samples.insert("podman-slirp", vec![1.0, 1.5]);
    r.samples.insert("podman-slirp-builtin", vec![2.5]);
    assert_eq!(r.median("strata"), Some(2.0));
    assert_eq!(r.podman_best(), Some(2.5));
    assert_eq!(r.verdict(), "**no**: 0.80× podman");
    let t = table(&[r]);
    assert!(t.contains("| x (u) | 2.00 | – | 1.25 | 2.50 | – | 0.80× | – |"), "{t}");
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bench {
        self_check();
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    match measure(&args) {
        Ok(rows) => {
            let text = section(&args, &rows, started.elapsed().as_secs());
            println!("{text}");
            if let Some(p) = &args.markdown
                && let Err(e) = write_markdown(p, &text)
            {
                eprintln!("network bench: {}: {e:#}", p.display());
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("network bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
