//! The build benchmark (`cargo bench --bench build -- [--quick] [--markdown benches/RESULTS.md]`).
//!
//! One Dockerfile on the busybox fixture — a COPY of 20,000 small files, an ADD of a 100 MB
//! `.tar.gz`, five RUN steps that change a few files each — built cold (an empty cache, the
//! base image already there) and again fully cached, by Strata, by buildah (`podman build
//! --layers`, overlay) and by docker's classic builder (a private dockerd, overlay2), the
//! tools in a rotating order, medians of the repetitions, Strata's ratio to each and whether
//! its targets are met (cold ≤ 0.5× buildah; cached rebuild < 0.5 s).
//!
//! Run as root. Under `cargo test` (no `--bench` argument) it checks its report code and
//! measures nothing.

#[path = "../common/dockerd.rs"]
mod dockerd;
#[path = "../common/stats.rs"]
mod stats;

#[allow(dead_code)]
#[path = "../registry/report.rs"]
mod report;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;

use dockerd::Dockerd;
use report::{Row, Target, Unit};

/// Strata's build against buildah and docker's classic builder.
#[derive(Parser, Debug)]
struct Args {
    /// Given by `cargo bench`: a real run (without it, only the report code is checked).
    #[arg(long)]
    bench: bool,
    /// 2,000 files, a 10 MB archive, one repetition.
    #[arg(long)]
    quick: bool,
    /// Repetitions per tool [default: 3, 1 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Tools to compare with Strata (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "buildah,docker")]
    tools: Vec<String>,
    /// Where the context is generated (kept between runs) and the stores go.
    #[arg(long, default_value = "/var/tmp/strata-bench-build")]
    dir: PathBuf,
    /// Write the results into this bench's section of this file (benches/RESULTS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// Where this bench's section of `benches/RESULTS.md` starts and ends.
const BEGIN: &str = "<!-- build: written by `cargo bench --bench build` -->";
const END: &str = "<!-- build: end; notes below this line are kept -->";

/// The Dockerfile measured.
const DOCKERFILE: &str = "FROM oci-multi\nCOPY files /data/files\nADD big.tar.gz /data/big/\n\
    RUN echo one > /data/run1 && touch /data/files/d0/f0\n\
    RUN rm /data/files/d1/f1 && mkdir /data/run2 && echo two > /data/run2/x\n\
    RUN chmod 600 /data/files/d2/f2 && echo three >> /etc/fx-release\n\
    RUN mv /data/files/d3/f3 /data/moved && ln -s moved /data/link\n\
    RUN echo five > /data/big/five && rm -r /data/files/d4\n";

/// Sizes of the context.
struct Shape {
    files: usize,
    archive: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = if args.bench { real_main(&args) } else { self_check() };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench build: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Checks of the report code, run by `cargo test`.
fn self_check() -> Result<()> {
    let first = splice("# Benchmark results\n\nother\n", "A\n");
    ensure!(first == format!("# Benchmark results\n\nother\n\n{BEGIN}\nA\n{END}\n"), "splice: {first}");
    let second = splice(&format!("{first}\nnotes\n"), "B\n");
    ensure!(second == format!("# Benchmark results\n\nother\n\n{BEGIN}\nB\n{END}\n\nnotes\n"), "{second}");
    ensure!(parse_dockerfile_steps() == 8);
    Ok(())
}

fn parse_dockerfile_steps() -> usize {
    DOCKERFILE.lines().count()
}

/// `old` with this bench's section replaced by `section` (appended when there is none).
fn splice(old: &str, section: &str) -> String {
    let block = format!("{BEGIN}\n{section}{END}\n");
    match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            let rest = &old[e + END.len()..];
            format!("{}{block}{}", &old[..b], rest.strip_prefix('\n').unwrap_or(rest))
        }
        _ => format!("{}\n{block}", old.trim_end_matches('\n').to_string() + "\n"),
    }
}

/// The context: `files/d0..d99` holding `shape.files` small files, `big.tar.gz` of about
/// `shape.archive` bytes (random data, so gzip keeps its size), the Dockerfile. Made once.
fn context(dir: &Path, shape: &Shape) -> Result<PathBuf> {
    let ctx = dir.join(format!("ctx-{}-{}", shape.files, shape.archive));
    if ctx.join("Dockerfile").exists() {
        return Ok(ctx);
    }
    let tmp = dir.join("ctx-tmp");
    let _ = fs::remove_dir_all(&tmp);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
    };
    for i in 0..shape.files {
        let d = tmp.join(format!("files/d{}", i % 100));
        fs::create_dir_all(&d)?;
        let text = format!("file {i}\n").repeat(i % 200);
        fs::write(d.join(format!("f{}", i / 100)), text)?;
    }
    let gz = flate2::write::GzEncoder::new(fs::File::create(tmp.join("big.tar.gz"))?, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut left = shape.archive;
    let mut n = 0;
    while left > 0 {
        let size = left.min(16 << 20);
        let mut data = vec![0u8; size];
        noise(&mut data);
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        tar.append_data(&mut h, format!("big/part{n}"), &data[..])?;
        left -= size;
        n += 1;
    }
    tar.into_inner()?.finish()?;
    fs::write(tmp.join("Dockerfile"), DOCKERFILE)?;
    fs::rename(&tmp, &ctx)?;
    Ok(ctx)
}

/// Runs `argv` to its end; its stdout, or an error with its output.
fn run(argv: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", argv[0]))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("`{}` failed ({}): {}", argv.join(" "), out.status, tail.join("\n"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The seconds `argv` takes.
fn timed(argv: &[&str], env: &[(&str, &str)]) -> Result<f64> {
    let started = Instant::now();
    run(argv, env)?;
    Ok(started.elapsed().as_secs_f64())
}

/// docker's classic builder on the private dockerd.
fn docker(d: &Dockerd, args: &[&str]) -> Result<String> {
    run(&as_strs(&d.cli(args)), &[("DOCKER_BUILDKIT", "0")])
}

/// The tools and where each keeps its store.
struct Cx {
    strata: PathBuf,
    dir: PathBuf,
    ctx: PathBuf,
    archive: PathBuf,
    docker: Option<Dockerd>,
}

impl Cx {
    fn strata(&self, args: &[&str]) -> Vec<String> {
        let root = self.dir.join("strata");
        [self.strata.display().to_string(), "--root".into(), root.display().to_string()]
            .into_iter()
            .chain(args.iter().map(|s| s.to_string()))
            .collect()
    }

    fn podman(&self, args: &[&str]) -> Vec<String> {
        let d = self.dir.join("podman");
        let mut v: Vec<String> = vec!["podman".into(), "--root".into(), d.join("root").display().to_string()];
        v.extend(["--runroot".into(), d.join("run").display().to_string()]);
        v.extend(
            ["--storage-driver", "overlay", "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
                .map(String::from),
        );
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// An empty store with the base image in it (untimed).
    fn fresh(&self, tool: &str) -> Result<()> {
        let a = self.archive.to_str().context("archive path")?;
        match tool {
            "strata" => {
                reset(&self.dir.join("strata"))?;
                run(&as_strs(&self.strata(&["load", "-q", "-i", a])), &[])?;
            }
            "buildah" => {
                if self.dir.join("podman/root").exists() {
                    let _ = run(&as_strs(&self.podman(&["rmi", "-a", "-f"])), &[]);
                }
                reset(&self.dir.join("podman"))?;
                run(&as_strs(&self.podman(&["load", "-q", "-i", a])), &[])?;
            }
            _ => {
                let d = self.docker.as_ref().context("no dockerd")?;
                let _ = docker(d, &["rmi", "-f", "bench:1"]);
                docker(d, &["image", "prune", "-f"])?;
                docker(d, &["load", "-q", "-i", a])?;
            }
        }
        Ok(())
    }

    /// One build by `tool`.
    fn build(&self, tool: &str) -> Result<f64> {
        let ctx = self.ctx.to_str().context("context path")?;
        match tool {
            "strata" => timed(&as_strs(&self.strata(&["build", "-q", "--network", "none", "-t", "bench:1", ctx])), &[]),
            "buildah" => timed(
                &as_strs(&self.podman(&["build", "-q", "--layers", "--network", "none", "-t", "bench:1", ctx])),
                &[],
            ),
            _ => {
                let d = self.docker.as_ref().context("no dockerd")?;
                let argv = d.cli(&["build", "-q", "--network", "none", "-t", "bench:1", ctx]);
                timed(&as_strs(&argv), &[("DOCKER_BUILDKIT", "0")])
            }
        }
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn reset(dir: &Path) -> Result<()> {
    if dir.exists() {
        // Mounts a failed run left (podman's overlay) go first.
        let mounts = fs::read_to_string("/proc/self/mounts")?;
        let prefix = format!("{}/", dir.display());
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&prefix)) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir)?;
    Ok(())
}

fn version(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

fn real_main(args: &Args) -> Result<()> {
    ensure!(rustix::process::geteuid().is_root(), "the build benchmark mounts and runs containers: run it as root");
    let shape =
        if args.quick { Shape { files: 2000, archive: 10 << 20 } } else { Shape { files: 20_000, archive: 100 << 20 } };
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    fs::create_dir_all(&args.dir)?;
    let started = Instant::now();
    let ctx = context(&args.dir, &shape)?;
    let strata = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images/oci-multi");
    let base = args.dir.join("base-store");
    reset(&base)?;
    let archive = args.dir.join("base.tar");
    let st = |a: &[&str]| -> Result<String> {
        let root = base.to_str().context("path")?;
        run(&[&[strata.to_str().unwrap_or("strata"), "--root", root], a].concat(), &[])
    };
    st(&["load", "-q", "-i", fixture.to_str().context("path")?])?;
    let _ = fs::remove_file(&archive);
    st(&["save", "-o", archive.to_str().context("path")?, "oci-multi"])?;
    let with = |t: &str| args.tools.iter().any(|x| x == t);
    let docker = if with("docker") {
        let dir = args.dir.join("dockerd");
        let _ = fs::remove_dir_all(&dir);
        Some(Dockerd::start(&dir, None)?)
    } else {
        None
    };
    let cx = Cx { strata, dir: args.dir.clone(), ctx, archive, docker };
    let mut cols: Vec<&'static str> = Vec::new();
    for t in ["buildah", "docker"] {
        if with(t) {
            cols.push(t);
        }
    }
    cols.push("strata");
    let mut cold: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut cached: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for rep in 0..reps {
        for i in 0..cols.len() {
            let tool = cols[(i + rep) % cols.len()];
            cx.fresh(tool)?;
            let c = cx.build(tool).with_context(|| format!("cold build with {tool}"))?;
            let w = cx.build(tool).with_context(|| format!("cached build with {tool}"))?;
            let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
            eprintln!("bench: {tool:<8} rep {}: cold {c:6.2} s, cached {w:6.3} s (load {})", rep + 1, load.trim());
            cold.entry(tool).or_default().push(c);
            cached.entry(tool).or_default().push(w);
        }
    }
    let has_buildah = cols.contains(&"buildah");
    let rows = vec![
        Row {
            label: format!("cold build ({} files, {} MB tar.gz, 5 RUN)", shape.files, shape.archive >> 20),
            unit: Unit::Seconds,
            cols: cols.clone(),
            targets: if has_buildah { vec![Target::Times { col: "buildah", x: 0.5, strict: false }] } else { vec![] },
            samples: cold,
        },
        Row {
            label: "rebuild, all steps cached".into(),
            unit: Unit::Seconds,
            cols: cols.clone(),
            targets: vec![Target::Below(0.5)],
            samples: cached,
        },
    ];
    let text = section(args, &shape, reps, started.elapsed().as_secs(), &rows);
    print!("{text}");
    if let Some(md) = &args.markdown {
        let old = fs::read_to_string(md).unwrap_or_default();
        let mut f = fs::File::create(md)?;
        f.write_all(splice(&old, &text).as_bytes())?;
    }
    drop(cx);
    Ok(())
}

/// The markdown section: how the run was made, the table, every sample.
fn section(args: &Args, shape: &Shape, reps: usize, secs: u64, rows: &[Row]) -> String {
    let mut out = String::from("## Build: `strata build` vs buildah and docker\n\n");
    out += &format!(
        "Made by `cargo bench --bench build --{} --markdown benches/RESULTS.md` ({} run, {reps} repetitions per tool in a rotating order, medians, {secs} s, {}).\n\n",
        if args.quick { " --quick" } else { "" },
        if args.quick { "quick" } else { "full" },
        version("date -u +%Y-%m-%dT%H:%MZ"),
    );
    out += &format!(
        "- Dockerfile: `FROM` the busybox fixture, `COPY` of {} small files (0–1.6 KB, 100 dirs), `ADD` of a {} MB `.tar.gz` (random data), five `RUN` steps that change a few files each\n",
        shape.files,
        shape.archive >> 20
    );
    out += &format!(
        "- tools: buildah inside {} (`podman build --layers`, overlay), dockerd {} classic builder (`DOCKER_BUILDKIT=0`, overlay2, private daemon), strata (FUSE union mount per RUN, layers gzip); all with `--network none`, machine: {} cores, kernel {}\n",
        version("podman --version | sed s/version.//"),
        version("dockerd --version | cut -d' ' -f3 | tr -d ,"),
        version("nproc"),
        version("uname -r"),
    );
    out += "- cold: an empty store (docker: the result and its step images removed) with the base image loaded, untimed; cached: the same build again at once\n\n";
    out += "Ratios are Strata's time ÷ the other's (below 1: Strata is faster).\n\n";
    out += &report::table(rows);
    out += "\nEvery sample, in the order taken:\n\n";
    for r in rows {
        out += &format!("- {}\n", r.spread());
    }
    out
}
