//! `strata bench copy-up`: how long copy-up takes on a filesystem, per file size and per way
//! of copying the data — for people who compare filesystems (reflink on XFS or btrfs against
//! copy_file_range or a read/write loop on ext4).
//!
//! Each strategy row copies a file the way Strata's copy-up copies data (into a temp file in a
//! work dir, fsync unless `--no-fsync` or reflinked, renamed into an upper dir); the `strata
//! copy-up` row is
//! the real thing, through the union filesystem's core on a lower/upper/work trio in the same
//! directory: the first open for writing, with owner, mode, xattrs, times and the rename.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::fs::inode::ROOT;
use crate::fs::layers::{Stack, StackSpec};
use crate::fs::{Config, Overlay};
use crate::sys::copy::{Strategy, copy_data};

/// `strata bench ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Time copy-up per file size and data-copy strategy on the filesystem of a directory.
    CopyUp(CopyUpArgs),
}

/// Arguments of `strata bench copy-up`.
#[derive(clap::Args, Debug)]
pub struct CopyUpArgs {
    /// A directory on the filesystem to measure (a temp dir is made in it and removed).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// File sizes (K, M, G suffixes: powers of 1024).
    #[arg(long, value_delimiter = ',', default_value = "4K,1M,100M,1G", value_parser = parse_size)]
    sizes: Vec<u64>,
    /// Repetitions per size and strategy (the median is shown, with the fastest and slowest).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Skip the fsync every copy-up ends with (as `-o volatile` mounts do).
    #[arg(long)]
    no_fsync: bool,
    /// Drop the page cache before each copy (needs root): the source is read from disk.
    #[arg(long)]
    cold: bool,
}

/// Runs `strata bench ...`.
pub fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    match c {
        BenchCommand::CopyUp(a) => copy_up(a),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().map(|n| n * mult).map_err(|_| format!("{s:?} is not a size (like 4K, 100M, 1G)"))
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n.is_multiple_of(1 << 30) => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.0} ms") }
}

/// The lower/upper/work trio the copies run in, removed on drop.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// One way of copying: a strategy row, or Strata's whole copy-up.
#[derive(Clone, Copy)]
enum Way {
    Data(Strategy),
    CopyUp,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Data(s) => s.name(),
            Way::CopyUp => "strata copy-up",
        }
    }
}

fn copy_up(a: CopyUpArgs) -> anyhow::Result<ExitCode> {
    if a.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if a.cold && !rustix::process::geteuid().is_root() {
        bail!("--cold drops the page cache, which needs root");
    }
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-copyup-")
        .tempdir_in(&a.dir)
        .with_context(|| format!("making a temp dir in {}", a.dir.display()))?;
    let s = Scratch { dir };
    for d in ["lower", "upper", "work", "data-work", "data-upper"] {
        std::fs::create_dir(s.p(d))?;
    }
    println!(
        "Copy-up on {} ({}), {} repetitions: median (fastest – slowest){}{}",
        a.dir.display(),
        fs_name(&a.dir),
        a.reps,
        if a.no_fsync { ", no fsync" } else { ", each ending with fsync" },
        if a.cold { ", page cache dropped before each copy" } else { ", source in the page cache" },
    );
    println!("{:<9} {:<16} {:<28} {:>12}", "SIZE", "STRATEGY", "LATENCY", "THROUGHPUT");
    let ways =
        [Way::Data(Strategy::Reflink), Way::Data(Strategy::CopyFileRange), Way::Data(Strategy::ReadWrite), Way::CopyUp];
    for &size in &a.sizes {
        let name = format!("f{size}");
        make_file(&s.p("lower").join(&name), size)?;
        for way in ways {
            let mut times = Vec::new();
            let mut note = None;
            for _ in 0..a.reps {
                if a.cold {
                    drop_caches()?;
                } else {
                    warm(&s.p("lower").join(&name))?;
                }
                match once(&s, &name, way, !a.no_fsync)? {
                    Ok(t) => times.push(t),
                    Err(why) => {
                        note = Some(why);
                        break;
                    }
                }
            }
            print_row(size, way, &mut times, note);
        }
        std::fs::remove_file(s.p("lower").join(&name))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_row(size: u64, way: Way, times: &mut [Duration], note: Option<String>) {
    if let Some(why) = note {
        println!("{:<9} {:<16} {why}", human(size), way.name());
        return;
    }
    times.sort();
    let med = times[times.len() / 2];
    let range = format!("{} ({} – {})", ms(med), ms(times[0]), ms(times[times.len() - 1]));
    let mbps = size as f64 / med.as_secs_f64().max(1e-9) / 1e6;
    println!("{:<9} {:<16} {:<28} {:>9.0} MB/s", human(size), way.name(), range, mbps);
}

/// One timed copy; `Ok(Err(why))` when the strategy cannot work here.
fn once(s: &Scratch, name: &str, way: Way, fsync: bool) -> anyhow::Result<Result<Duration, String>> {
    match way {
        Way::Data(strategy) => data_copy(s, name, strategy, fsync),
        Way::CopyUp => strata_copy_up(s, name, fsync).map(Ok),
    }
}

fn data_copy(s: &Scratch, name: &str, strategy: Strategy, fsync: bool) -> anyhow::Result<Result<Duration, String>> {
    let src = File::open(s.p("lower").join(name))?;
    let len = src.metadata()?.len();
    let (tmp, dst_path) = (s.p("data-work").join(name), s.p("data-upper").join(name));
    let t = Instant::now();
    let dst = File::create_new(&tmp)?;
    let used = if strategy == Strategy::Reflink {
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => Strategy::Reflink,
            Err(e) => {
                std::fs::remove_file(&tmp)?;
                let why = if e == rustix::io::Errno::OPNOTSUPP {
                    "no reflinks on this filesystem".into()
                } else {
                    e.to_string()
                };
                return Ok(Err(format!("not supported here: {why}")));
            }
        }
    } else {
        copy_data(&src, &dst, len, strategy, true, &mut || Ok(())).context("copying")?
    };
    // As in Strata's copy-up: a reflink writes only metadata, which reflink filesystems
    // journal in order with the rename, so only copied data is fsynced.
    if fsync && used != Strategy::Reflink {
        dst.sync_all()?;
    }
    std::fs::rename(&tmp, &dst_path)?;
    let took = t.elapsed();
    std::fs::remove_file(&dst_path)?;
    if used != strategy {
        return Ok(Err(format!("not supported here (fell back to {})", used.name())));
    }
    Ok(Ok(took))
}

/// Strata's copy-up of `name`: a fresh overlay over lower/upper/work, the first open for writing.
fn strata_copy_up(s: &Scratch, name: &str, fsync: bool) -> anyhow::Result<Duration> {
    let spec = StackSpec {
        lowers: vec![s.p("lower")],
        upper: Some(s.p("upper")),
        work: Some(s.p("work")),
        userxattr: !rustix::process::geteuid().is_root(),
        volatile: !fsync,
    };
    let ov = Overlay::new(Stack::open(&spec)?, Config::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (node, _) = ov.lookup(ROOT, name.as_ref()).map_err(|e| anyhow::anyhow!("looking up {name}: {e}"))?;
    let t = Instant::now();
    let fh = ov.open(node.nodeid, libc::O_WRONLY, None).map_err(|e| anyhow::anyhow!("copy-up of {name}: {e}"))?;
    let took = t.elapsed();
    ov.release(fh);
    drop(ov);
    std::fs::remove_file(s.p("upper").join(name))?;
    Ok(took)
}

/// A file of `size` bytes of data that does not compress or deduplicate.
fn make_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

fn warm(path: &Path) -> anyhow::Result<()> {
    std::io::copy(&mut File::open(path)?, &mut std::io::sink())?;
    Ok(())
}

fn drop_caches() -> anyhow::Result<()> {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("dropping the page cache")
}

/// The filesystem type of `dir`, by its magic number.
fn fs_name(dir: &Path) -> String {
    let Ok(f) = File::open(dir) else { return "unknown filesystem".into() };
    match rustix::fs::fstatfs(f.as_fd()).map(|s| s.f_type as u64) {
        Ok(0xEF53) => "ext4".into(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683E) => "btrfs".into(),
        Ok(0x0102_1994) => "tmpfs".into(),
        Ok(0x6573_5546) => "fuse".into(),
        Ok(0x794C_7630) => "overlayfs".into(),
        Ok(m) => format!("filesystem {m:#x}"),
        Err(e) => format!("unknown filesystem ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("x1").is_err());
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(100 << 20), "100 MiB");
    }
}
