//! The workloads: each measures one thing on one freshly mounted system and returns its cost
//! (seconds, or bytes for memory); the caller repeats, alternates systems and takes medians.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::layers::{Cache, Filler, LayerSet};
use super::systems::{Env, Mounted, Sys, materialize};

/// How big each workload is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// The big lower file (sequential read, random reads) and the file written.
    pub big: u64,
    /// Files in the 3-layer tree walked by find and ls -lR.
    pub tree: usize,
    /// Small files created then removed.
    pub create: usize,
    /// Lower files deleted (whiteouts).
    pub doomed: usize,
    /// Entries of the big directory, and whiteouts among them.
    pub bigdir: (usize, usize),
    /// Copy-up sizes.
    pub copy_up: Vec<u64>,
    /// Seconds fio runs.
    pub fio_secs: u32,
    /// Tree sizes walked for the daemon's peak memory.
    pub rss_trees: Vec<usize>,
    /// Files and bytes of the layer committed and unpacked.
    pub payload: (usize, u64),
}

/// Everything a workload needs.
pub struct Cx {
    /// Binaries and scratch space.
    pub env: Env,
    /// Sizes.
    pub sizes: Sizes,
    /// Generated layers.
    pub cache: Cache,
    /// The bench dir.
    pub dir: PathBuf,
    /// Whether "cold" really drops the caches (not in the smoke run: a sync can take long).
    pub cold: bool,
}

/// What a workload measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Wall-clock seconds.
    Seconds,
    /// Bytes of memory.
    Bytes,
}

impl Cx {
    /// Mounts `layers` with `sys`; the plain system gets `plain` or an empty dir.
    pub fn mount(&self, sys: Sys, layers: &LayerSet, plain: Option<&Path>) -> Result<Mounted> {
        self.env.mount(sys, layers, plain, None)
    }

    /// Mounts `layers` with `sys` (the plain system shows their merged copy) for a read-only
    /// workload on `rel`, and readies the caches: dropped when `cold`, else filled by one `warm`.
    pub fn viewed(
        &self,
        sys: Sys,
        layers: &LayerSet,
        rel: &str,
        cold: bool,
        warm: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<(Mounted, PathBuf)> {
        let plain = self.plain(layers)?;
        let m = self.mount(sys, layers, Some(&plain))?;
        let target = m.dir.join(rel);
        if cold {
            self.drop_caches()?;
        } else {
            warm(&target)?;
        }
        Ok((m, target))
    }

    /// Drops the caches before a cold measurement.
    pub fn drop_caches(&self) -> Result<()> {
        if self.cold { drop_caches() } else { Ok(()) }
    }

    /// The plain view of `layers` (materialized once, under the set's name).
    pub fn plain(&self, layers: &LayerSet) -> Result<PathBuf> {
        materialize(layers, &self.dir.join("plain").join(&layers.name))
    }
}

/// Writes dirty data and drops the page, dentry and inode caches.
pub fn drop_caches() -> Result<()> {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", "3").context("dropping caches (needs root)")
}

/// Times `f`.
pub fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Runs `argv`, output discarded; an error unless it succeeds.
pub fn quiet(argv: &[&str], dir: &Path) -> Result<()> {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]).arg(dir).stdout(Stdio::null());
    super::run(&mut c)
}

/// Reads `path` to its end through a 1 MiB buffer.
pub fn read_all(path: &Path) -> Result<u64> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Sequential read of the big lower file, with cold or warm caches.
pub fn seq_read(cx: &Cx, sys: Sys, cold: bool) -> Result<f64> {
    let layers = cx.cache.big(cx.sizes.big)?;
    let (_m, file) = cx.viewed(sys, &layers, "big", cold, |f| read_all(f).map(drop))?;
    timed(|| {
        let n = read_all(&file)?;
        if n != cx.sizes.big {
            bail!("read {n} bytes of {}", cx.sizes.big);
        }
        Ok(())
    })
}

/// Sequential write of a new file the size of the big file, then fsync.
pub fn seq_write(cx: &Cx, sys: Sys) -> Result<f64> {
    let layers = cx.cache.big(cx.sizes.big)?;
    let m = cx.mount(sys, &layers, None)?;
    let mut buf = vec![0u8; 1 << 20];
    Filler::new(5).random(&mut buf);
    cx.drop_caches()?;
    timed(|| {
        let mut f = File::create(m.dir.join("written"))?;
        let mut left = cx.sizes.big;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        Ok(())
    })
}

/// Copy-up of the lower file of `size` bytes: the first open for writing (after one copy-up of
/// a small file), on ext4 or, with `under`, on another filesystem (the XFS reflink image).
pub fn copy_up(cx: &Cx, sys: Sys, size: u64, under: Option<&Path>) -> Result<f64> {
    let layers = cx.cache.sized(&cx.sizes.copy_up, under)?;
    let m = cx.env.mount(sys, &layers, None, under)?;
    let file = m.dir.join(format!("f{size}"));
    read_all(&layers.lowers[1].join(format!("f{size}")))?; // the source is in the page cache
    // One copy-up first: what is measured is a copy-up, not a fresh daemon's first request.
    drop(OpenOptions::new().write(true).open(m.dir.join("warm-up")).context("copy-up of warm-up")?);
    rustix::fs::sync();
    let t = timed(|| {
        let f = OpenOptions::new().write(true).open(&file).with_context(|| format!("opening {}", file.display()))?;
        drop(f);
        Ok(())
    })?;
    let copied = fs::metadata(m.upper.join(format!("f{size}"))).context("no copy in the upper dir")?;
    if copied.len() != size {
        bail!("{}: copy-up made {} bytes of {size}", sys.name(), copied.len());
    }
    Ok(t)
}

/// `find` (names only) or `ls -lR` (every attribute) over the 3-layer tree, `jobs` at once.
pub fn walk(cx: &Cx, sys: Sys, argv: &[&str], cold: bool, jobs: usize) -> Result<f64> {
    let layers = cx.cache.tree(cx.sizes.tree)?;
    let (_m, dir) = cx.viewed(sys, &layers, "usr", cold, |d| quiet(argv, d))?;
    timed(|| {
        let children: Vec<_> = (0..jobs)
            .map(|_| Command::new(argv[0]).args(&argv[1..]).arg(&dir).stdout(Stdio::null()).spawn())
            .collect::<std::io::Result<_>>()?;
        for mut c in children {
            if !c.wait()?.success() {
                bail!("{argv:?} failed on {}", sys.name());
            }
        }
        Ok(())
    })
}

/// `count` small files in dirs of 1000, created in the merged view of the tree.
fn create_files(root: &Path, count: usize) -> Result<()> {
    let mut buf = vec![0u8; 1024];
    Filler::new(9).text(&mut buf);
    for i in 0..count {
        if i % 1000 == 0 {
            fs::create_dir_all(root.join(format!("d{:03}", i / 1000)))?;
        }
        let mut f = File::create(root.join(format!("d{:03}/f{i:06}", i / 1000)))?;
        f.write_all(&buf)?;
    }
    Ok(())
}

/// Creating many small files (1 KiB) in new dirs.
pub fn create(cx: &Cx, sys: Sys) -> Result<f64> {
    let layers = cx.cache.tree(cx.sizes.tree)?;
    let m = cx.mount(sys, &layers, None)?;
    let root = m.dir.join("new");
    timed(|| create_files(&root, cx.sizes.create))
}

/// `tar xf` of an archive of small files (the ones [`create`] makes, packed once beside the
/// generated layers) into a new dir of the mount: what unpacking a source tree or a layer does.
pub fn untar(cx: &Cx, sys: Sys) -> Result<f64> {
    let tar = cx.dir.join(format!("small-{}.tar", cx.sizes.create));
    if !tar.exists() {
        let src = cx.dir.join("small-src");
        if src.exists() {
            fs::remove_dir_all(&src)?;
        }
        create_files(&src, cx.sizes.create)?;
        let part = tar.with_extension("tar.part");
        super::run(Command::new("tar").arg("cf").arg(&part).arg("-C").arg(&src).arg("."))?;
        fs::rename(&part, &tar)?;
        fs::remove_dir_all(&src)?;
    }
    let layers = cx.cache.tree(cx.sizes.tree)?;
    let m = cx.mount(sys, &layers, None)?;
    let root = m.dir.join("unpacked");
    fs::create_dir_all(&root)?;
    timed(|| super::run(Command::new("tar").arg("xf").arg(&tar).arg("-C").arg(&root)))
}

/// `rm -rf` of the files [`create`] makes.
pub fn remove_new(cx: &Cx, sys: Sys) -> Result<f64> {
    let layers = cx.cache.tree(cx.sizes.tree)?;
    let m = cx.mount(sys, &layers, None)?;
    let root = m.dir.join("new");
    create_files(&root, cx.sizes.create)?;
    rustix::fs::sync();
    timed(|| quiet(&["rm", "-rf"], &root))
}

/// Deleting lower files one by one: each leaves a whiteout.
pub fn delete_lower(cx: &Cx, sys: Sys) -> Result<f64> {
    let layers = cx.cache.doomed(cx.sizes.doomed)?;
    let m = cx.mount(sys, &layers, None)?;
    if sys == Sys::Plain {
        let bottom = layers.lowers[1].display().to_string();
        super::run(Command::new("cp").args(["-a", "-T", &bottom]).arg(&m.dir))?;
    }
    let names: Vec<PathBuf> =
        (0..10).flat_map(|d| (0..cx.sizes.doomed / 10).map(move |i| PathBuf::from(format!("d{d}/f{i:05}")))).collect();
    let t = timed(|| {
        for n in &names {
            fs::remove_file(m.dir.join(n)).with_context(|| format!("removing {}", n.display()))?;
        }
        Ok(())
    })?;
    if fs::read_dir(m.dir.join("d0"))?.next().is_some() {
        bail!("{}: d0 is not empty after deleting every file", sys.name());
    }
    Ok(t)
}

/// `ls -f` (names only, unsorted) of the big merged directory.
pub fn list_bigdir(cx: &Cx, sys: Sys, cold: bool) -> Result<f64> {
    let (entries, whiteouts) = cx.sizes.bigdir;
    let layers = cx.cache.bigdir(entries, whiteouts)?;
    let (_m, dir) = cx.viewed(sys, &layers, "big", cold, |d| quiet(&["ls", "-f"], d))?;
    let t = timed(|| quiet(&["ls", "-f"], &dir))?;
    let listed = fs::read_dir(&dir)?.count();
    if listed != entries {
        bail!("{}: {listed} entries listed, {entries} expected", sys.name());
    }
    Ok(t)
}

/// fio 4 KiB random reads (psync, one job, page cache warm) of the big lower file: seconds
/// per read.
pub fn random_reads(cx: &Cx, sys: Sys) -> Result<f64> {
    let layers = cx.cache.big(cx.sizes.big)?;
    let (_m, file) = cx.viewed(sys, &layers, "big", false, |f| read_all(f).map(drop))?;
    let out = Command::new("fio")
        .args(["--name=randread", "--rw=randread", "--bs=4k", "--ioengine=psync", "--invalidate=0", "--time_based"])
        .arg(format!("--runtime={}", cx.sizes.fio_secs))
        .arg(format!("--filename={}", file.display()))
        .args(["--readonly", "--output-format=json"])
        .output()
        .context("running fio")?;
    if !out.status.success() {
        bail!("fio: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("fio's JSON")?;
    let iops = v["jobs"][0]["read"]["iops"].as_f64().context("no iops in fio's output")?;
    Ok(1.0 / iops)
}

/// The FUSE daemon's peak resident memory after `ls -lR` of a tree of `files` files.
pub fn peak_rss(cx: &Cx, sys: Sys, files: usize) -> Result<f64> {
    let layers = cx.cache.tree(files)?;
    let m = cx.mount(sys, &layers, None)?;
    cx.drop_caches()?;
    quiet(&["ls", "-lR"], &m.dir)?;
    Ok(m.peak_rss()? as f64)
}
