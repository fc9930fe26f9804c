//! The registry benchmark (`cargo bench --bench registry -- [--quick] [--markdown benches/RESULTS.md]`).
//!
//! A generated five-layer image (about 300 MB: one large layer of mixed random and text data,
//! one of 20k small files, three small ones) is served by a loopback `docker-registry`; a cold
//! pull of it into an empty store is timed with Strata, podman, a private dockerd and `skopeo
//! copy` + `umoci unpack`, and a push of it into an empty registry with Strata, skopeo and
//! podman — the tools in a rotating order, medians of the repetitions, Strata's ratio to each
//! and whether its targets are met. Strata's peak RSS is measured on both.
//!
//! Run as root (dropping caches, podman's and docker's overlay mounts). Under `cargo test` (no
//! `--bench` argument) it checks its report code and measures nothing.

#[path = "../common/dockerd.rs"]
mod dockerd;
#[path = "../common/stats.rs"]
mod stats;

mod image;
mod report;
mod servers;
mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

use image::Shape;
use report::{Row, Target, Unit};
use tools::{Cx, Sample};

/// Strata's pull and push against podman, docker and skopeo, on a loopback registry.
#[derive(Parser, Debug)]
struct Args {
    /// Given by `cargo bench`: a real run (without it, only the report code is checked).
    #[arg(long)]
    bench: bool,
    /// A 64 MiB image with 2k small files and 2 repetitions: a few minutes.
    #[arg(long)]
    quick: bool,
    /// Repetitions per tool [default: 5, 2 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Only these workloads (comma separated: pull, push).
    #[arg(long, value_delimiter = ',', default_value = "pull,push")]
    only: Vec<String>,
    /// Tools to compare with Strata (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "podman,docker,skopeo")]
    tools: Vec<String>,
    /// Where the image is generated (kept between runs) and the stores and registries go.
    #[arg(long, default_value = "/var/tmp/strata-bench-registry")]
    dir: PathBuf,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results into this bench's section of this file (benches/RESULTS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
}

static TRASH: OnceLock<PathBuf> = OnceLock::new();
static TRASHED: AtomicU32 = AtomicU32::new(0);

/// Makes `dir` empty: what is mounted below it unmounted, its content moved to the trash
/// (emptied at the end, so that deleting never overlaps a measurement).
pub fn reset_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mounts = std::fs::read_to_string("/proc/self/mounts")?;
        let prefix = format!("{}/", dir.display());
        let mut below: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&prefix)).collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let trash = TRASH.get().context("no trash")?;
        let n = TRASHED.fetch_add(1, Ordering::Relaxed);
        std::fs::rename(dir, trash.join(n.to_string()))
            .with_context(|| format!("moving {} to the trash", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn empty_trash(trash: &Path) -> Result<()> {
    if trash.exists() {
        let status = Command::new("rm").arg("-rf").arg(trash).status()?;
        if !status.success() {
            bail!("rm -rf {} failed", trash.display());
        }
    }
    std::fs::create_dir_all(trash)?;
    Ok(())
}

/// One workload: its label and the tools timed on it.
struct Workload {
    key: &'static str,
    label: String,
    cols: Vec<&'static str>,
    targets: Vec<Target>,
}

/// Takes `reps` samples of every column of `w`, in an order that rotates from one repetition
/// to the next; the time row and the peak-RSS row (docker's pull runs in dockerd: no RSS).
fn measure(w: &Workload, reps: usize, mut one: impl FnMut(&'static str) -> Result<Sample>) -> Result<(Row, Row)> {
    let started = Instant::now();
    let mut secs: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut rss: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for rep in 0..reps {
        for i in 0..w.cols.len() {
            let col = w.cols[(i + rep) % w.cols.len()];
            let s = one(col).with_context(|| format!("{} with {col}", w.key))?;
            // The load average shows when something else ran at the same time (2 cores).
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load = load.split(' ').next().unwrap_or("?");
            eprintln!(
                "bench: {} {col:<13} rep {}: {:6.2} s {:6.1} MiB  (load {load})",
                w.key,
                rep + 1,
                s.secs,
                s.rss / 1048576.0
            );
            secs.entry(col).or_default().push(s.secs);
            if col != "docker" {
                rss.entry(col).or_default().push(s.rss);
            }
        }
    }
    eprintln!("bench: {} done in {:.0} s", w.key, started.elapsed().as_secs_f64());
    let time = Row {
        label: w.label.clone(),
        unit: Unit::Seconds,
        cols: w.cols.clone(),
        targets: w.targets.clone(),
        samples: secs,
    };
    let mem = Row {
        label: format!("peak RSS, {}", w.key),
        unit: Unit::Bytes,
        cols: w.cols.iter().copied().filter(|c| *c != "docker").collect(),
        targets: vec![Target::Below(100.0 * 1048576.0)],
        samples: rss,
    };
    Ok((time, mem))
}

/// The first line of `cmd`'s output (its version), or empty.
fn version(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// The markdown section: how the run was made, the tables, every sample.
fn section(args: &Args, img: &image::Image, reps: usize, secs: u64, tables: &[Vec<Row>]) -> String {
    let mib = |b: u64| b as f64 / 1048576.0;
    let mut out = String::from("## Registry: pull and push\n\n");
    out += &format!(
        "Made by `cargo bench --bench registry --{} --markdown benches/RESULTS.md` ({} run, {reps} repetitions per tool in a rotating order, medians, {secs} s, {}).\n\n",
        if args.quick { " --quick" } else { "" },
        if args.quick { "quick" } else { "full" },
        version("date -u +%Y-%m-%dT%H:%MZ"),
    );
    out += &format!(
        "- image: 5 gzip layers, {:.0} MiB of tar ({:.0} MiB gzip): {} entries in the large layer (8 files, half random, half text), {} in the small-files layer (0–8 KiB each), {}, {} and {} in the small ones\n",
        mib(img.unpacked),
        mib(img.compressed),
        img.entries[0],
        img.entries[1],
        img.entries[2],
        img.entries[3],
        img.entries[4],
    );
    out += &format!(
        "- registry: {} on 127.0.0.1, plain HTTP, filesystem storage; machine: {} cores, kernel {}, ext4\n",
        version("docker-registry --version | cut -d' ' -f2-"),
        version("nproc"),
        version("uname -r"),
    );
    out += &format!(
        "- tools: {} (overlay), dockerd {} (overlay2, private daemon), {}, {}\n",
        version("podman --version | sed s/version.//"),
        version("dockerd --version | cut -d' ' -f3 | tr -d ,"),
        version("skopeo --version | sed s/version.//"),
        version("umoci --version | sed s/version.//"),
    );
    out += "- pull: into an empty store (strata, podman: a fresh `--root`; docker: `rmi` + `image prune -a` after each; skopeo: an empty OCI layout, then `umoci unpack`, the two timed together), after `sync` and dropping the page cache\n";
    out += "- push: from the tool's own store (skopeo: the generated OCI layout; strata: `strata load` of it; podman: `podman pull oci:`) into a fresh registry, caches dropped first\n";
    out += "- peak RSS: GNU time's maximum resident set of the command (skopeo+umoci: the larger); docker's work is done by dockerd, not counted\n\n";
    out += "Ratios are Strata's time ÷ the other's (below 1: Strata is faster).\n\n";
    let parts: Vec<String> = tables.iter().filter(|t| !t.is_empty()).map(|t| report::table(t)).collect();
    out += &parts.join("\n");
    out += "\nEvery sample, in the order taken:\n\n";
    for row in tables.iter().flatten() {
        out += &format!("- {}\n", row.spread());
    }
    out
}

fn real_main(args: Args) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the registry benchmark drops caches and mounts (podman, docker): run it as root");
    }
    let mut needed = vec!["docker-registry", "skopeo", "/usr/bin/time"];
    for (tool, bins) in
        [("podman", &["podman"][..]), ("docker", &["dockerd", "/usr/bin/docker"]), ("skopeo", &["umoci"])]
    {
        if args.tools.iter().any(|t| t == tool) {
            needed.extend(bins);
        }
    }
    let missing: Vec<&str> = needed.into_iter().filter(|b| version(&format!("command -v {b}")).is_empty()).collect();
    if !missing.is_empty() {
        bail!("missing {} (apt-get install skopeo umoci podman docker.io docker-registry time)", missing.join(", "));
    }
    let reps = args.reps.unwrap_or(if args.quick { 2 } else { 5 });
    let shape = if args.quick {
        Shape { big: 64 << 20, small_files: 2000 }
    } else {
        Shape { big: 200 << 20, small_files: 20_000 }
    };
    std::fs::create_dir_all(&args.dir)?;
    let trash = args.dir.join("trash");
    empty_trash(&trash)?;
    let _ = TRASH.set(trash.clone());
    let img = image::ensure(&args.dir, shape)?;
    let has = |t: &str| args.tools.iter().any(|x| x == t);
    let strata = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let started = Instant::now();
    let cx = Cx::new(strata, img.clone(), args.dir.join("run"), has("docker"), has("podman"))?;
    let size = format!("{:.0} MB", img.unpacked as f64 / 1e6);
    let pull = Workload {
        key: "pull",
        label: format!("pull of a 5-layer {size} image, cold"),
        cols: [("podman", "podman"), ("docker", "docker"), ("skopeo", "skopeo+umoci"), ("strata", "strata")]
            .into_iter()
            .filter(|(t, _)| *t == "strata" || has(t))
            .map(|(_, c)| c)
            .collect(),
        targets: vec![
            Target::Times { col: "podman", x: 0.5, strict: false },
            Target::Times { col: "docker", x: 1.0, strict: true },
        ],
    };
    let push = Workload {
        key: "push",
        label: format!("push of the {size} image to an empty registry"),
        cols: ["skopeo", "podman", "strata"].into_iter().filter(|t| *t == "strata" || has(t)).collect(),
        targets: vec![Target::Times { col: "skopeo", x: 1.0, strict: false }],
    };
    let (mut times, mut mems) = (Vec::new(), Vec::new());
    if args.only.iter().any(|o| o == "pull") {
        let (t, m) = measure(&pull, reps, |col| cx.pull(col))?;
        times.push(vec![t]);
        mems.push(m);
    }
    if args.only.iter().any(|o| o == "push") {
        let (t, m) = measure(&push, reps, |col| cx.push(col))?;
        times.push(vec![t]);
        mems.push(m);
    }
    drop(cx);
    let secs = started.elapsed().as_secs();
    reset_dir(&args.dir.join("run"))?;
    empty_trash(&trash)?;
    let mut tables = times;
    tables.push(mems);
    let text = section(&args, &img, reps, secs, &tables);
    println!("\n{text}");
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({ "reps": reps, "seconds": secs, "rows": tables }))?,
        )?;
    }
    if let Some(path) = &args.markdown {
        let old = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, report::splice(&old, &text)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.bench {
        real_main(args)
    } else {
        report::self_check().map(|()| eprintln!("bench: report code checked; `cargo bench --bench registry` measures"))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
