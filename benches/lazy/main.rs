//! Lazy start-up: the time from command to the first line of output of
//! `strata run --lazy=only IMAGE CMD` against `strata pull` + `strata run`, for a generated
//! image of 500 MiB of which CMD reads 2%, from a loopback registry behind a proxy that holds
//! downloads to 100 Mbit/s; and the bytes each fetched before that line.
//!
//! `cargo bench --bench lazy [-- --reps N --rate-mbit R --write-results]`

#[path = "../registry/servers.rs"]
#[allow(dead_code)]
mod servers;

/// What `servers.rs` expects beside it (the registry bench's image module).
#[path = "../common/cmd.rs"]
mod cmd;
#[path = "../common/results.rs"]
mod results;

use cmd::checked_output as ok;

mod image {
    pub const REF: &str = "unused";
}

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Where the stores, registry and generated files go.
    #[arg(long, default_value = "/var/tmp/strata-bench-lazy")]
    dir: PathBuf,
    /// Runs of each way.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The download limit in Mbit/s.
    #[arg(long, default_value_t = 100)]
    rate_mbit: u64,
    /// MiB of data in the image's big layer (files of 10 MiB).
    #[arg(long, default_value_t = 500)]
    mib: u64,
    /// Write the section into benches/RESULTS.md.
    #[arg(long)]
    write_results: bool,
    #[arg(long, hide = true)]
    bench: bool,
}

/// Makes `dir` empty.
pub fn reset_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let _ = Command::new("umount").arg("-R").arg("-l").arg(dir).status();
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

fn strata(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.arg("--root").arg(root);
    c
}

/// A TCP proxy to `upstream` that sends at most `rate` bytes/s to clients (all connections
/// together, no burst credit from idle time) and counts them.
fn throttle(upstream: String, rate: u64, sent: Arc<AtomicU64>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let next_free = Arc::new(Mutex::new(Instant::now()));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pump(c2, s2, None));
            let limit = Limit { rate, sent: sent.clone(), next_free: next_free.clone() };
            std::thread::spawn(move || pump(server, client, Some(limit)));
        }
    });
    Ok(port)
}

/// The shared download budget: the link is free again at `next_free`.
struct Limit {
    rate: u64,
    sent: Arc<AtomicU64>,
    next_free: Arc<Mutex<Instant>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<Limit>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = &limit {
            l.sent.fetch_add(n as u64, Ordering::SeqCst);
            let done = {
                let mut free = l.next_free.lock().unwrap();
                let start = (*free).max(Instant::now());
                *free = start + Duration::from_secs_f64(n as f64 / l.rate as f64);
                *free
            };
            let now = Instant::now();
            if done > now {
                std::thread::sleep(done - now);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Writes the image's files: `mib` MiB of incompressible data in 10 MiB files, and a
/// Dockerfile over the bundled busybox fixture.
fn generate(dir: &Path, mib: u64) -> Result<()> {
    let data = dir.join("ctx/data");
    std::fs::create_dir_all(&data)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..mib / 10 {
        let mut f = std::io::BufWriter::new(std::fs::File::create(data.join(format!("f{i}")))?);
        for _ in 0..(10 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.write_all(&x.to_le_bytes())?;
        }
    }
    std::fs::write(dir.join("ctx/Dockerfile"), "FROM oci-multi\nCOPY data /data\n")?;
    Ok(())
}

/// Runs `cmd` and returns the time to its first line of output.
fn first_line(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let at = start.elapsed();
    let status = child.wait()?;
    if !status.success() || line.is_empty() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(at)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn real_main(a: Args) -> Result<()> {
    reset_dir(&a.dir)?;
    let src = a.dir.join("src");
    eprintln!("generating a {} MiB image...", a.mib);
    generate(&a.dir, a.mib)?;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images/oci-multi");
    ok(strata(&src).arg("load").arg(&fixture))?;
    ok(strata(&src).args(["build", "-q", "-t", "big"]).arg(a.dir.join("ctx")))?;
    let reg = servers::Registry::start(&a.dir.join("registry"))?;
    let sent = Arc::new(AtomicU64::new(0));
    let port = throttle(reg.host(), a.rate_mbit * 1_000_000 / 8, sent.clone())?;
    let name = format!("127.0.0.1:{port}/bench/big:estargz");
    // Push straight to the registry (the limit is on downloads).
    let direct = format!("{}/bench/big:estargz", reg.host());
    ok(strata(&src).args(["convert", "--estargz", "big", &direct]))?;
    ok(strata(&src).args(["push", "-q", &direct]))?;
    let image_bytes: u64 = {
        let v: serde_json::Value = serde_json::from_str(&ok(strata(&src).args(["inspect", &direct]))?)?;
        v[0]["Size"].as_u64().unwrap_or(0)
    };
    let cmd = ["wc", "-c", "/data/f0"];
    let (mut full, mut lazy, mut full_bytes, mut lazy_bytes) = (Vec::new(), Vec::new(), 0, 0);
    for rep in 0..a.reps {
        for way in ["full", "lazy"] {
            let root = a.dir.join(format!("{way}-{rep}"));
            reset_dir(&root)?;
            let before = sent.load(Ordering::SeqCst);
            let t = if way == "full" {
                let start = Instant::now();
                ok(strata(&root).args(["pull", "-q", &name]))?;
                let pulled = start.elapsed();
                pulled + first_line(strata(&root).args(["run", "--rm", "--network", "none", &name]).args(cmd))?
            } else {
                first_line(strata(&root).args(["run", "--rm", "--lazy=only", "--network", "none", &name]).args(cmd))?
            };
            let bytes = sent.load(Ordering::SeqCst) - before;
            eprintln!("{way} #{rep}: {:.2} s, {:.1} MB fetched", t.as_secs_f64(), bytes as f64 / 1e6);
            if way == "full" {
                full.push(t.as_secs_f64());
                full_bytes = bytes;
            } else {
                lazy.push(t.as_secs_f64());
                lazy_bytes = bytes;
            }
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    if lazy_bytes >= full_bytes {
        bail!("the lazy start fetched {lazy_bytes} bytes, no fewer than the full pull ({full_bytes})");
    }
    let (f, l) = (median(full), median(lazy));
    let section = format!(
        "## Lazy start-up (eStargz)\n\n`cargo bench --bench lazy` — a {} MiB image (the busybox fixture + {} files of 10 MiB \
         of incompressible data, converted with `strata convert --estargz`), pushed to a loopback `docker-registry` behind a \
         proxy holding downloads to {} Mbit/s; CMD is `wc -c /data/f0` (reads 10 MiB); time from the command to its first \
         line of output, median of {} runs, and the bytes that crossed the proxy.\n\n\
         | way | first output | bytes fetched | share of the image |\n|---|---|---|---|\n\
         | `strata pull` + `strata run` | {f:.2} s | {:.1} MB | {:.0}% |\n\
         | `strata run --lazy=only` | {l:.2} s | {:.1} MB | {:.1}% |\n\n\
         Lazy starts **{:.1}×** sooner (target ≥ 10×) with {:.1}% of the image's bytes fetched (target < 10%).\n",
        a.mib,
        a.mib / 10,
        a.rate_mbit,
        a.reps,
        full_bytes as f64 / 1e6,
        100.0 * full_bytes as f64 / image_bytes.max(1) as f64,
        lazy_bytes as f64 / 1e6,
        100.0 * lazy_bytes as f64 / image_bytes.max(1) as f64,
        f / l,
        100.0 * lazy_bytes as f64 / image_bytes.max(1) as f64,
    );
    println!("{section}");
    if a.write_results {
        results::replace_section("## Lazy start-up (eStargz)", &section)?;
    }
    drop(reg);
    Ok(())
}

fn main() -> ExitCode {
    let mut a = Args::parse();
    if !a.bench {
        // Under `cargo test`: once, at a toy size, so the bench cannot rot.
        let dir = a.dir.with_file_name("strata-bench-lazy-smoke");
        a = Args { dir, mib: 30, reps: 1, write_results: false, ..a };
    }
    let smoke = (!a.bench).then(|| a.dir.clone());
    let r = real_main(a);
    if let Some(dir) = smoke {
        let _ = reset_dir(&dir).and_then(|()| Ok(std::fs::remove_dir(&dir)?));
    }
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench lazy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
