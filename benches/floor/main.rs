//! The floor under any FUSE filesystem: `tar xf` of small files, and the calls `tar` makes for
//! each file timed one by one, through kernel overlayfs, through a filesystem that does no work
//! at all (`nullfs.rs`, every answer from memory) on each FUSE transport, and through Strata on
//! each transport. The no-work filesystem's time is what the kernel's requests cost by
//! themselves: no FUSE filesystem can be faster on this machine, so its ratio to the kernel is
//! the best any can reach.
//!
//! Each run gets a fresh ext4 (a loop device) for the upper dir, so no run inherits the
//! allocator state of the one before; the systems take turns in a rotating order.
//!
//! `cargo bench --bench floor [-- --files N --calls N --reps N --write-results]` (root; turns
//! `enable_uring` on for the io_uring systems and puts back what it found).

mod nullfs;

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fuser::{IoUringMode, MountOption, SessionACL};
use rustix::fs::{Mode, OFlags, Timespec};

#[path = "../common/cmd.rs"]
mod cmd;
#[path = "../common/results.rs"]
mod results;
#[path = "../common/stats.rs"]
mod stats;

use cmd::checked_output as run;

#[derive(Parser, Debug)]
struct Args {
    /// Scratch dir (the loop image, the archive, the mount points).
    #[arg(long, default_value = "/var/tmp/strata-bench-floor")]
    dir: PathBuf,
    /// Files in the archive (1 KiB each, 1000 to a directory).
    #[arg(long, default_value_t = 20_000)]
    files: usize,
    /// Files made by the timed call sequence.
    #[arg(long, default_value_t = 5_000)]
    calls: usize,
    /// Runs of each system.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Size of the loop ext4 made for each run, in MiB.
    #[arg(long, default_value_t = 4096)]
    img_mib: u64,
    /// Write the section into benches/RESULTS.md.
    #[arg(long)]
    write_results: bool,
    /// (internal) Make `--calls` files in this dir, timing each call, and print the times.
    #[arg(long, hide = true)]
    calls_into: Option<PathBuf>,
    /// Mount the no-work filesystem on this dir and serve it until it is unmounted (to try
    /// things by hand; io_uring when `enable_uring` is on).
    #[arg(long)]
    serve: Option<PathBuf>,
    #[arg(long, hide = true)]
    bench: bool,
}

const URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// The calls `tar xf` makes for each regular file, in its order.
const CALLS: [&str; 6] = ["openat(O_CREAT|O_EXCL)", "write 1 KiB", "futimens", "fchown", "fchmod", "close"];

#[derive(Clone, Copy, PartialEq)]
enum Sys {
    Kernel,
    Null { uring: bool },
    Strata { uring: bool },
}

const SYSTEMS: [Sys; 5] = [
    Sys::Kernel,
    Sys::Null { uring: false },
    Sys::Null { uring: true },
    Sys::Strata { uring: false },
    Sys::Strata { uring: true },
];

impl Sys {
    fn name(self) -> &'static str {
        match self {
            Sys::Kernel => "kernel overlayfs",
            Sys::Null { uring: false } => "no-work FUSE, /dev/fuse",
            Sys::Null { uring: true } => "no-work FUSE, io_uring",
            Sys::Strata { uring: false } => "Strata, /dev/fuse",
            Sys::Strata { uring: true } => "Strata, io_uring",
        }
    }

    fn uring(self) -> bool {
        matches!(self, Sys::Null { uring: true } | Sys::Strata { uring: true })
    }
}

/// Puts `enable_uring` back as it was found.
struct UringParam(String);

impl UringParam {
    fn save() -> Result<UringParam> {
        let v = fs::read_to_string(URING_PARAM)
            .with_context(|| format!("{URING_PARAM}: this kernel has no FUSE over io_uring"))?;
        Ok(UringParam(v.trim().to_string()))
    }

    fn set(on: bool) -> Result<()> {
        fs::write(URING_PARAM, if on { "Y" } else { "N" }).with_context(|| format!("writing {URING_PARAM}"))
    }
}

impl Drop for UringParam {
    fn drop(&mut self) {
        let _ = fs::write(URING_PARAM, &self.0);
    }
}

/// The archive: `files` files of 1 KiB of text, 1000 to a directory, as `tar cf` packs them.
fn archive(dir: &Path, files: usize) -> Result<PathBuf> {
    let tar = dir.join(format!("small-{files}.tar"));
    if tar.exists() {
        return Ok(tar);
    }
    let src = dir.join("src");
    let _ = fs::remove_dir_all(&src);
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    let body: Vec<u8> = line.iter().copied().cycle().take(1024).collect();
    for i in 0..files {
        let d = src.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            fs::create_dir_all(&d)?;
        }
        fs::write(d.join(format!("f{i:06}")), &body)?;
    }
    let part = tar.with_extension("part");
    run(Command::new("tar").arg("cf").arg(&part).arg("-C").arg(&src).arg("."))?;
    fs::rename(&part, &tar)?;
    fs::remove_dir_all(&src)?;
    Ok(tar)
}

/// A mounted system on `mnt`, over a fresh ext4 at `fs`.
struct Mounted {
    mnt: PathBuf,
    fs: PathBuf,
    null: Option<fuser::BackgroundSession>,
    fuse_daemon: bool,
}

impl Mounted {
    fn new(sys: Sys, dir: &Path, img_mib: u64, counts: &Arc<nullfs::Counts>) -> Result<Mounted> {
        let (img, fs, mnt) = (dir.join("ext4.img"), dir.join("fs"), dir.join("mnt"));
        let _ = Command::new("umount").arg(&mnt).output();
        let _ = Command::new("umount").arg(&fs).output();
        fs::create_dir_all(&fs)?;
        fs::create_dir_all(&mnt)?;
        if !img.exists() {
            fs::File::create(&img)?.set_len(img_mib << 20)?;
        }
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&fs))?;
        for d in ["lower", "upper", "work"] {
            fs::create_dir(fs.join(d))?;
        }
        let (lower, upper, work) = (fs.join("lower"), fs.join("upper"), fs.join("work"));
        UringParam::set(sys.uring())?;
        let mut m = Mounted { mnt: mnt.clone(), fs, null: None, fuse_daemon: false };
        match sys {
            Sys::Kernel => {
                let o = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
                run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &o]).arg(&mnt))?;
            }
            Sys::Strata { uring } => {
                run(Command::new(env!("CARGO_BIN_EXE_strata"))
                    .arg("mount")
                    .args(["-o", if uring { "io_uring=on" } else { "io_uring=off" }])
                    .arg("--lower")
                    .arg(&lower)
                    .arg("--upper")
                    .arg(&upper)
                    .arg("--work")
                    .arg(&work)
                    .arg(&mnt))?;
                m.fuse_daemon = true;
            }
            Sys::Null { uring } => m.null = Some(null_session(uring, &mnt, counts)?.spawn()?),
        }
        Ok(m)
    }

    /// A new, empty directory in the mount, with everything before it on disk.
    fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.mnt.join(name);
        fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
        run(&mut Command::new("sync"))?;
        Ok(d)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        match self.null.take() {
            Some(s) => {
                let _ = s.umount_and_join();
            }
            None => {
                let _ = Command::new("umount").arg(&self.mnt).output();
            }
        }
        // A daemon's unmount is asynchronous to its exit: wait until the ext4 under it is free.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Command::new("umount").arg(&self.fs).output().is_ok_and(|o| !o.status.success()) {
            if !self.fuse_daemon || Instant::now() > deadline {
                eprintln!("bench floor: {} stays mounted", self.fs.display());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The no-work filesystem mounted on `mnt`, with Strata's mount options and threads.
fn null_session(uring: bool, mnt: &Path, counts: &Arc<nullfs::Counts>) -> Result<fuser::Session<nullfs::NullFs>> {
    let mut c = fuser::Config::default();
    c.mount_options = vec![MountOption::FSName("nullfs".into()), MountOption::DefaultPermissions];
    c.acl = SessionACL::All;
    c.n_threads = Some(2);
    c.clone_fd = true;
    c.io_uring = if uring { IoUringMode::Required } else { IoUringMode::Off };
    let fs = nullfs::NullFs::new(counts.clone());
    fuser::Session::new(fs, mnt, &c).context("mounting the no-work filesystem")
}

/// The child side: `n` files made in `dir` with `tar`'s calls, µs per file for each call.
fn calls_into(dir: &Path, n: usize) -> Result<()> {
    let d = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    let body = [b'x'; 1024];
    let stamps = rustix::fs::Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: Timespec { tv_sec: 1_796_668_976, tv_nsec: 0 },
    };
    let mut total = [Duration::ZERO; CALLS.len()];
    for i in 0..n {
        let name = format!("f{i:06}");
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let t0 = Instant::now();
        let f = rustix::fs::openat(d.as_fd(), &name, flags, Mode::from_raw_mode(0o600))?;
        let t1 = Instant::now();
        rustix::io::write(&f, &body)?;
        let t2 = Instant::now();
        rustix::fs::futimens(&f, &stamps)?;
        let t3 = Instant::now();
        rustix::fs::fchown(&f, Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT))?;
        let t4 = Instant::now();
        rustix::fs::fchmod(&f, Mode::from_raw_mode(0o644))?;
        let t5 = Instant::now();
        drop(f);
        let t6 = Instant::now();
        for (k, (a, b)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)].into_iter().enumerate() {
            total[k] += b - a;
        }
    }
    let per: Vec<String> = total.iter().map(|t| format!("{:.2}", t.as_secs_f64() * 1e6 / n as f64)).collect();
    println!("{}", per.join(" "));
    Ok(())
}

/// What one run of a system measured.
#[derive(Default, Clone)]
struct Sample {
    untar: f64,
    calls: Vec<f64>,
    /// The no-work filesystem's requests during the untar, by kind ([`nullfs::OPS`]).
    requests: Vec<u64>,
}

fn one_run(sys: Sys, a: &Args, tar: &Path, counts: &Arc<nullfs::Counts>) -> Result<Sample> {
    let m = Mounted::new(sys, &a.dir, a.img_mib, counts)?;
    let into = m.fresh_dir("unpacked")?;
    let before = counts.snapshot();
    let t = Instant::now();
    run(Command::new("tar").arg("xf").arg(tar).arg("-C").arg(&into))?;
    let untar = t.elapsed().as_secs_f64();
    let after = counts.snapshot();
    let requests = match sys {
        Sys::Null { .. } => before.iter().zip(after).map(|(b, e)| e - b).collect(),
        _ => Vec::new(),
    };
    let into = m.fresh_dir("calls")?;
    let out = run(Command::new(std::env::current_exe()?)
        .arg("--calls")
        .arg(a.calls.to_string())
        .arg("--calls-into")
        .arg(&into))?;
    let calls: Vec<f64> = out.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN)).collect();
    if calls.len() != CALLS.len() {
        bail!("the call timer printed {out:?}");
    }
    Ok(Sample { untar, calls, requests })
}

fn fmt_time(s: f64) -> String {
    if s >= 1.0 { format!("{s:.2} s") } else { format!("{:.1} ms", s * 1e3) }
}

/// Runs the bench; returns the no-work filesystem's requests on io_uring in its last untar.
fn real_main(a: Args) -> Result<[u64; nullfs::OPS.len()]> {
    if let Some(dir) = &a.calls_into {
        calls_into(dir, a.calls)?;
        return Ok(Default::default());
    }
    if !rustix::process::geteuid().is_root() {
        bail!("the floor bench mounts filesystems: run it as root");
    }
    if let Some(mnt) = &a.serve {
        let uring = fs::read_to_string(URING_PARAM).is_ok_and(|v| v.trim() == "Y");
        null_session(uring, mnt, &Arc::new(nullfs::Counts::default()))?.run()?;
        return Ok(Default::default());
    }
    let _param = UringParam::save()?;
    fs::create_dir_all(&a.dir)?;
    let tar = archive(&a.dir, a.files)?;
    let counts = Arc::new(nullfs::Counts::default());
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); SYSTEMS.len()];
    for rep in 0..a.reps {
        for k in 0..SYSTEMS.len() {
            let i = (k + rep) % SYSTEMS.len();
            let s = one_run(SYSTEMS[i], &a, &tar, &counts).with_context(|| SYSTEMS[i].name())?;
            eprintln!("run {}/{}: {:<26} untar {:>9}", rep + 1, a.reps, SYSTEMS[i].name(), fmt_time(s.untar));
            samples[i].push(s);
        }
    }
    let med = |i: usize, f: &dyn Fn(&Sample) -> f64| {
        stats::median(&samples[i].iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let kernel = med(0, &|s| s.untar);
    let mut t = String::new();
    let head: Vec<&str> = SYSTEMS.iter().map(|s| s.name()).collect();
    t += &format!("| | {} |\n|---|{}\n", head.join(" | "), "---|".repeat(SYSTEMS.len()));
    let untar: Vec<f64> = (0..SYSTEMS.len()).map(|i| med(i, &|s| s.untar)).collect();
    t += &format!(
        "| `tar xf`, {} files of 1 KiB | {} |\n",
        a.files,
        untar.iter().map(|v| fmt_time(*v)).collect::<Vec<_>>().join(" | ")
    );
    t += &format!(
        "| ÷ kernel | {} |\n",
        untar.iter().map(|v| format!("{:.2}", v / kernel)).collect::<Vec<_>>().join(" | ")
    );
    t += &format!(
        "| µs per file | {} |\n",
        untar.iter().map(|v| format!("{:.1}", v * 1e6 / a.files as f64)).collect::<Vec<_>>().join(" | ")
    );
    for (c, name) in CALLS.iter().enumerate() {
        let v: Vec<String> = (0..SYSTEMS.len()).map(|i| format!("{:.1}", med(i, &|s| s.calls[c]))).collect();
        t += &format!("| `{name}`, µs | {} |\n", v.join(" | "));
    }
    let sum: Vec<String> =
        (0..SYSTEMS.len()).map(|i| format!("{:.1}", med(i, &|s| s.calls.iter().sum::<f64>()))).collect();
    t += &format!("| the six calls, µs per file | {} |\n", sum.join(" | "));
    let null = SYSTEMS.iter().position(|s| *s == Sys::Null { uring: true }).unwrap_or(2);
    let mut asked = Vec::new();
    for (k, op) in nullfs::OPS.iter().enumerate() {
        let per = med(null, &|s| s.requests[k] as f64 / a.files as f64);
        if per >= 0.01 {
            asked.push(format!("{op} {per:.2}"));
        }
    }
    let section = format!(
        "## The FUSE floor: what the kernel's requests cost by themselves\n\n\
`cargo bench --bench floor` ({} of each, medians, {}Z; a fresh ext4 on a loop device under \
each run; the systems take turns). The no-work filesystem (`benches/floor/nullfs.rs`) answers \
every request from memory — no disk, no system call — over the same FUSE session code as Strata \
and with the same kernel options (`default_permissions`, `HANDLE_KILLPRIV_V2`, POSIX ACLs, the \
same time to live); no FUSE filesystem can be faster on this machine. Requests it got per \
untarred file: {}.\n\n{t}",
        if a.reps == 1 { "1 run".to_string() } else { format!("{} runs", a.reps) },
        chrono_now(),
        asked.join(", "),
    );
    println!("{section}");
    if a.write_results {
        results::replace_section("## The FUSE floor", &section)?;
    }
    let last = samples[null].last().map(|s| s.requests.clone()).unwrap_or_default();
    Ok(std::array::from_fn(|k| last.get(k).copied().unwrap_or(0)))
}

/// The time now, as `2026-12-08T01:23` (UTC).
fn chrono_now() -> String {
    run(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M"])).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Under `cargo test` (no `--bench`): every system once at toy sizes in a temp dir, and the
/// no-work filesystem must have been asked what `tar` makes the kernel ask for each file.
fn smoke(a: Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-floor-smoke-{}", std::process::id()));
    let a = Args { dir: dir.clone(), files: 300, calls: 100, reps: 1, img_mib: 256, write_results: false, ..a };
    let files = a.files as f64;
    let r = real_main(a);
    let _ = fs::remove_dir_all(&dir);
    let counts = r?;
    for (op, want) in [("CREATE", 1.0), ("SETATTR", 3.0), ("LOOKUP", 1.0)] {
        let k = nullfs::OPS.iter().position(|o| *o == op).unwrap_or(0);
        let got = counts[k] as f64 / files;
        if (got - want).abs() > 0.05 {
            bail!("the no-work filesystem got {got:.2} {op} per untarred file, not {want}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    let r = if a.bench || a.calls_into.is_some() || a.serve.is_some() { real_main(a).map(|_| ()) } else { smoke(a) };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
