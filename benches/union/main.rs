//! The union-filesystem benchmark harness (`cargo bench --bench union -- [--quick]`).
//!
//! It mounts the same generated layers with a plain directory (the limit), kernel overlayfs,
//! Debian's fuse-overlayfs and Strata (on `/dev/fuse` and on io_uring), runs every workload on each — alternating the systems'
//! order from one repetition to the next — and prints the medians, the ratios Strata ÷ kernel
//! and Strata ÷ fuse-overlayfs, and whether each of Strata's targets is met; `--json` and
//! `--markdown` keep the results (`benches/RESULTS.md` holds the last ones). Commit and unpack
//! throughput are compared with `tar` and umoci the same way.
//!
//! Run as root (mounts, dropping caches). Under `cargo test` (no `--bench` argument) it does a
//! smoke run of every workload at toy sizes, so the harness cannot rot.

mod layers;
mod report;
mod systems;
mod tools;
mod work;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

use layers::Cache;
use report::{Goal, Row};
use systems::{Env, Sys};
use tools::Tools;
use work::{Cx, Sizes, Unit};

/// Strata against kernel overlayfs and fuse-overlayfs on the same layers.
#[derive(Parser, Debug)]
struct Args {
    /// Given by `cargo bench`: a real run (without it, a smoke run at toy sizes).
    #[arg(long)]
    bench: bool,
    /// Smaller sizes and fewer repetitions: about two minutes.
    #[arg(long)]
    quick: bool,
    /// Repetitions per workload and system [default: 5, 3 with --quick].
    #[arg(long)]
    reps: Option<usize>,
    /// Only the workloads whose key starts with one of these (comma separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Systems to compare (comma separated).
    /// (`strata-uring` is left out where the kernel has no FUSE over io_uring.)
    #[arg(long, value_delimiter = ',', default_value = "plain,kernel,fuse-overlayfs,strata,strata-uring")]
    systems: Vec<String>,
    /// Where layers are generated (kept between runs) and mounts are made; on ext4.
    #[arg(long, default_value = "/var/tmp/strata-bench")]
    dir: PathBuf,
    /// Skip the XFS reflink copy-up workloads (they make a loop image).
    #[arg(long)]
    no_xfs: bool,
    /// Run everything (this harness, the daemons it starts, the commands it times) on CPU 0:
    /// shows the cost of a FUSE request when no wake-up crosses CPUs.
    #[arg(long)]
    one_cpu: bool,
    /// Extra `-o` options for `strata mount`.
    #[arg(long, default_value = "")]
    strata_opts: String,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as markdown (benches/RESULTS.md) here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// What measures one sample of a workload on one column.
type Runner = Box<dyn Fn(&Cx, &'static str) -> Result<f64>>;

/// A workload: its row, and (for mount workloads) what measures a sample.
struct Spec {
    key: String,
    label: String,
    unit: Unit,
    goal: Goal,
    cols: Vec<&'static str>,
    run: Option<Runner>,
    /// At most this many repetitions (long, steady workloads: memory, big commits).
    max_reps: Option<usize>,
}

/// A workload measured on mounted systems.
fn on_mounts(
    key: &str,
    label: String,
    goal: Goal,
    systems: &[Sys],
    f: impl Fn(&Cx, Sys) -> Result<f64> + 'static,
) -> Spec {
    Spec {
        key: key.into(),
        label,
        unit: Unit::Seconds,
        goal,
        cols: systems.iter().map(|s| s.name()).collect(),
        run: Some(Box::new(move |cx, col| f(cx, Sys::parse(col)?))),
        max_reps: None,
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn count(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) { format!("{}k", n / 1000) } else { n.to_string() }
}

/// Every workload, at the sizes of this run.
fn plan(s: &Sizes, systems: &[Sys], xfs: Option<&Path>) -> Vec<Spec> {
    use Goal::*;
    let all = systems.to_vec();
    let unions: Vec<Sys> = all.iter().copied().filter(|s| *s != Sys::Plain).collect();
    let fuse: Vec<Sys> = all.iter().copied().filter(|s| matches!(s, Sys::FuseOverlayfs | Sys::Strata)).collect();
    let (big, tree, create, doomed) = (human(s.big), count(s.tree), count(s.create), count(s.doomed));
    let mut v = vec![
        on_mounts("read-cold", format!("sequential read {big}, cold"), Kernel(1.2), &all, |cx, y| {
            work::seq_read(cx, y, true)
        }),
        on_mounts("read-warm", format!("sequential read {big}, warm"), Kernel(1.2), &all, |cx, y| {
            work::seq_read(cx, y, false)
        }),
        on_mounts("write", format!("sequential write {big} + fsync"), Kernel(1.2), &all, work::seq_write),
        on_mounts("randread", "fio 4 KiB random reads (per read)".into(), Kernel(1.2), &all, work::random_reads),
    ];
    // fuse-overlayfs does not fsync a copy-up (the kernel and Strata do): the volatile Strata
    // column does the same work as fuse-overlayfs.
    let mut copiers = unions.clone();
    if copiers.contains(&Sys::Strata) && copiers.contains(&Sys::FuseOverlayfs) {
        copiers.push(Sys::StrataVolatile);
    }
    for &size in &s.copy_up {
        let goal = if size >= 1 << 30 { Kernel(1.2) } else { None };
        v.push(on_mounts(
            &format!("copyup-ext4-{size}"),
            format!("copy-up {}, ext4", human(size)),
            goal,
            &copiers,
            move |cx, y| work::copy_up(cx, y, size, Option::None),
        ));
    }
    if let Some(xfs) = xfs {
        for &size in &s.copy_up {
            let goal = if size >= 1 << 30 { Below(0.005) } else { None };
            let xfs = xfs.to_path_buf();
            v.push(on_mounts(
                &format!("copyup-xfs-{size}"),
                format!("copy-up {}, XFS reflink", human(size)),
                goal,
                &copiers,
                move |cx, y| work::copy_up(cx, y, size, Some(&xfs)),
            ));
        }
    }
    let walks: [(&str, &str, &[&str], bool, usize); 6] = [
        ("find-cold", "find", &["find"], true, 1),
        ("find-warm", "find", &["find"], false, 1),
        ("lslr-cold", "ls -lR", &["ls", "-lR"], true, 1),
        ("lslr-warm", "ls -lR", &["ls", "-lR"], false, 1),
        ("find-par4", "4 × find in parallel", &["find"], true, 4),
        ("lslr-par4", "4 × ls -lR in parallel", &["ls", "-lR"], true, 4),
    ];
    for (key, what, argv, cold, jobs) in walks {
        let state = if cold { "cold" } else { "warm" };
        v.push(on_mounts(
            key,
            format!("{what}, {tree} files in 3 layers, {state}"),
            Kernel(2.0),
            &all,
            move |cx, y| work::walk(cx, y, argv, cold, jobs),
        ));
    }
    let (entries, whiteouts) = s.bigdir;
    v.extend([
        on_mounts("create", format!("create {create} small files"), Kernel(2.0), &all, work::create),
        on_mounts("untar", format!("untar {create} small files"), Kernel(2.0), &all, work::untar),
        on_mounts("delete", format!("delete {doomed} lower files (whiteouts)"), Kernel(2.0), &all, work::delete_lower),
    ]);
    for (key, cold) in [("lsf-cold", true), ("lsf-warm", false)] {
        let state = if cold { "cold" } else { "warm" };
        let label = format!("ls -f, {} entries / 2 layers / {} whiteouts, {state}", count(entries), count(whiteouts));
        v.push(on_mounts(key, label, Kernel(2.0), &all, move |cx, y| work::list_bigdir(cx, y, cold)));
    }
    for &files in &s.rss_trees {
        let mut spec = on_mounts(
            &format!("rss-{files}"),
            format!("daemon peak RSS, ls -lR of {} files", count(files)),
            Below(64.0 * (1 << 20) as f64),
            &fuse,
            move |cx, y| work::peak_rss(cx, y, files),
        );
        spec.unit = Unit::Bytes;
        spec.max_reps = Some(if files >= 1_000_000 { 1 } else { 3 });
        v.push(spec);
    }
    // Last: it deletes many files, which slows down ext4's next file creations for a while.
    v.push(on_mounts("rm", format!("rm -rf of {create} new files"), Kernel(2.0), &all, work::remove_new));
    v
}

/// The commit and unpack rows (their columns are tools, not mounts).
fn tool_plan(s: &Sizes) -> Vec<Spec> {
    let what = format!("{} / {} files", human(s.payload.1), count(s.payload.0));
    let spec = |key: &str, label: String, goal, cols: Vec<&'static str>| Spec {
        key: key.into(),
        label,
        unit: Unit::Seconds,
        goal,
        cols,
        run: None,
        max_reps: Some(3),
    };
    vec![
        spec(
            "commit",
            format!("commit a {what} layer (gzip)"),
            Goal::Faster("tar czf"),
            vec!["tar czf", "umoci repack", "strata"],
        ),
        spec("unpack", format!("unpack a {what} layer (gzip)"), Goal::None, vec!["tar xzf", "umoci unpack", "strata"]),
    ]
}

/// The sizes: `--quick`, full, or toy sizes for the smoke run.
fn sizes(args: &Args) -> Sizes {
    const M: u64 = 1 << 20;
    if !args.bench {
        return Sizes {
            big: 8 * M,
            tree: 1000,
            create: 200,
            doomed: 100,
            bigdir: (1000, 10),
            copy_up: vec![4096, M],
            fio_secs: 1,
            rss_trees: vec![1000],
            payload: (200, 2 * M),
        };
    }
    if args.quick {
        return Sizes {
            big: 256 * M,
            tree: 10_000,
            create: 2000,
            doomed: 1000,
            bigdir: (20_000, 200),
            copy_up: vec![4096, M, 100 * M],
            fio_secs: 1,
            rss_trees: vec![10_000],
            payload: (5000, 64 * M),
        };
    }
    Sizes {
        big: 1 << 30,
        tree: 50_000,
        create: 20_000,
        doomed: 5000,
        bigdir: (100_000, 1000),
        copy_up: vec![4096, M, 100 * M, 1 << 30],
        fio_secs: 5,
        rss_trees: vec![50_000, 1_000_000],
        payload: (50_000, 1 << 30),
    }
}

/// Runs `c`; an error with its stderr unless it succeeds.
fn run(c: &mut Command) -> Result<()> {
    let out = c.output().with_context(|| format!("starting {:?}", c.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", c, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs a shell command line.
fn sh(line: &str) -> Result<()> {
    run(Command::new("sh").arg("-c").arg(line))
}

/// Measures every spec `reps` times, the columns in a rotating order, printing as it goes.
fn measure(specs: &[Spec], reps: usize, mut one: impl FnMut(&Spec, &'static str) -> Result<f64>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for spec in specs {
        let started = Instant::now();
        let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        for rep in 0..spec.max_reps.map_or(reps, |m| m.min(reps)) {
            let n = spec.cols.len();
            for i in 0..n {
                let col = spec.cols[(i + rep) % n];
                let v = one(spec, col).with_context(|| format!("{} on {col}", spec.key))?;
                samples.entry(col).or_default().push(v);
            }
        }
        let row = Row {
            key: spec.key.clone(),
            label: spec.label.clone(),
            unit: spec.unit,
            goal: spec.goal,
            cols: spec.cols.clone(),
            samples,
        };
        let line: Vec<String> = row
            .cols
            .iter()
            .map(|c| format!("{c} {}", report::fmt_value(row.unit, row.median(c).unwrap_or(0.0))))
            .collect();
        eprintln!("bench: {:<52} {}  [{:.0} s]", row.label, line.join("  "), started.elapsed().as_secs_f64());
        rows.push(row);
    }
    Ok(rows)
}

/// Mounts (making once) an XFS loop image with reflinks for the copy-up workloads.
fn xfs(dir: &Path, size_gib: u64) -> Result<PathBuf> {
    let img = dir.join("xfs.img");
    let mnt = dir.join("xfs");
    std::fs::create_dir_all(&mnt)?;
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    if mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*mnt.to_string_lossy())) {
        return Ok(mnt);
    }
    if !img.exists() {
        let f = std::fs::File::create(&img)?;
        f.set_len(size_gib << 30)?;
        run(Command::new("mkfs.xfs").args(["-q", "-m", "reflink=1"]).arg(&img))?;
    }
    run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt))?;
    Ok(mnt)
}

fn selected(args: &Args, key: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| key.starts_with(o.as_str()))
}

/// Facts about the machine for the results.
fn machine() -> BTreeMap<&'static str, String> {
    let out = |c: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(c)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    BTreeMap::from([
        ("kernel", out("uname -r")),
        ("cpu", out("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")),
        ("cores", out("nproc")),
        ("memory", out("free -g | awk '/Mem:/{print $2\" GiB\"}'")),
        ("filesystem", out("df -T /var/tmp | awk 'NR==2{print $2}'")),
        ("fuse-overlayfs", out("fuse-overlayfs --version 2>/dev/null | grep '^fuse-overlayfs'")),
        ("date", out("date -u +%Y-%m-%dT%H:%MZ")),
    ])
}

fn real_main(args: Args) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the benchmarks mount filesystems and drop caches: run them as root");
    }
    let mut systems: Vec<Sys> = args.systems.iter().map(|s| Sys::parse(s)).collect::<Result<_>>()?;
    // A smoke run (under `cargo test`) leaves the kernel's setting alone: only scripts/test
    // switches it, between test passes.
    let uring = std::fs::read_to_string(systems::ENABLE_URING).ok();
    if systems.contains(&Sys::StrataUring) && (uring.is_none() || !args.bench && uring.as_deref() != Some("Y\n")) {
        eprintln!("strata-uring left out: {} is missing or off", systems::ENABLE_URING);
        systems.retain(|s| *s != Sys::StrataUring);
    }
    if args.one_cpu {
        // Inherited by every thread and process started from here on.
        let mut only = rustix::thread::CpuSet::new();
        only.set(0);
        rustix::thread::sched_setaffinity(None, &only).context("pinning the harness to CPU 0")?;
    }
    let smoke = !args.bench;
    let reps = args.reps.unwrap_or(if smoke {
        1
    } else if args.quick {
        3
    } else {
        5
    });
    let dir = if smoke {
        std::env::temp_dir().join(format!("strata-bench-smoke-{}", std::process::id()))
    } else {
        args.dir.clone()
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let s = sizes(&args);
    let xfs_dir = if args.no_xfs || smoke { None } else { Some(xfs(&dir, if args.quick { 4 } else { 16 })?) };
    let cx = Cx {
        env: Env {
            strata: PathBuf::from(env!("CARGO_BIN_EXE_strata")),
            scratch: dir.join("mnt"),
            strata_opts: args.strata_opts.clone(),
        },
        sizes: s.clone(),
        cache: Cache::new(&dir),
        dir: dir.clone(),
        cold: !smoke,
    };
    systems::init_trash(&dir.join("trash"))?;
    let started = Instant::now();
    let specs: Vec<Spec> =
        plan(&s, &systems, xfs_dir.as_deref()).into_iter().filter(|p| selected(&args, &p.key)).collect();
    let rows = measure(&specs, reps, |spec, col| match &spec.run {
        Some(run) => run(&cx, col),
        None => bail!("{} has no runner", spec.key),
    })?;
    let tool_specs: Vec<Spec> = tool_plan(&s).into_iter().filter(|p| selected(&args, &p.key)).collect();
    let mut tool_rows = Vec::new();
    if !tool_specs.is_empty() {
        let tools = Tools::new(&cx)?;
        for spec in &tool_specs {
            if spec.key == "unpack" {
                tools.save()?;
            }
            tool_rows.extend(measure(std::slice::from_ref(spec), reps, |spec, col| match (spec.key.as_str(), col) {
                ("commit", "strata") => tools.strata_commit(),
                ("commit", "tar czf") => tools.tar_czf(),
                ("commit", _) => tools.umoci_repack(),
                (_, "strata") => tools.strata_load(),
                (_, "tar xzf") => tools.tar_xzf(),
                _ => tools.umoci_unpack(),
            })?);
        }
    }
    let elapsed = started.elapsed().as_secs();
    systems::empty_trash()?;
    let mode = match (smoke, args.quick, args.one_cpu) {
        (true, ..) => "smoke",
        (_, true, false) => "quick",
        (_, true, true) => "quick, on one CPU",
        (_, false, false) => "full",
        (_, false, true) => "full, on one CPU",
    };
    let machine = machine();
    let text = report::tables(&rows, &tool_rows);
    println!("\n{text}\n{mode} run, {reps} repetitions, medians; {elapsed} s");
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "machine": machine, "mode": mode, "reps": reps, "seconds": elapsed, "rows": rows, "tools": tool_rows });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    if let Some(path) = &args.markdown {
        // What people wrote below the marker (the analysis of the numbers) stays.
        let kept = std::fs::read_to_string(path)
            .ok()
            .and_then(|old| old.find(report::NOTES_MARKER).map(|i| old[i..].to_string()))
            .unwrap_or_default();
        let mut text = report::markdown(&machine, mode, reps, elapsed, &rows, &tool_rows);
        if !kept.is_empty() {
            text.push('\n');
            text.push_str(&kept);
        }
        std::fs::write(path, text)?;
    }
    if smoke {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Whether a smoke run can happen here; under `CI=true` it must.
fn smoke_possible() -> Result<bool> {
    let missing: Vec<&str> = ["fuse-overlayfs", "fio", "umoci", "tar"]
        .into_iter()
        .filter(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    let root = rustix::process::geteuid().is_root();
    if root && missing.is_empty() {
        return Ok(true);
    }
    let why = if root { format!("missing {}", missing.join(", ")) } else { "not root".into() };
    if std::env::var("CI").as_deref() == Ok("true") {
        bail!("the benchmark smoke run cannot run under CI: {why}");
    }
    eprintln!("bench: smoke run skipped: {why}");
    Ok(false)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bench {
        match smoke_possible() {
            Ok(true) => {}
            Ok(false) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
