//! The systems compared: a plain directory (the limit), kernel overlayfs, Debian's
//! fuse-overlayfs and Strata on both FUSE transports (`/dev/fuse` and io_uring) — each mounted
//! over the same layers with a fresh upper dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::layers::LayerSet;

/// One system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sys {
    /// The merged view copied into a plain directory: no union filesystem at all.
    Plain,
    /// `mount -t overlay`.
    Kernel,
    /// Debian's fuse-overlayfs.
    FuseOverlayfs,
    /// `strata mount`.
    Strata,
    /// `strata mount -o volatile`: no fsync (what fuse-overlayfs does on copy-up).
    StrataVolatile,
    /// `strata mount -o io_uring=on`: FUSE over io_uring (`enable_uring` is turned on for the
    /// mount and restored right after; the connection keeps io_uring).
    StrataUring,
}

impl Sys {
    /// Every system, in table order.
    pub const ALL: [Sys; 6] =
        [Sys::Plain, Sys::Kernel, Sys::FuseOverlayfs, Sys::Strata, Sys::StrataVolatile, Sys::StrataUring];

    /// The name in tables, JSON and `--systems`.
    pub fn name(self) -> &'static str {
        match self {
            Sys::Plain => "plain",
            Sys::Kernel => "kernel",
            Sys::FuseOverlayfs => "fuse-overlayfs",
            Sys::Strata => "strata",
            Sys::StrataVolatile => "strata volatile",
            Sys::StrataUring => "strata-uring",
        }
    }

    /// The system called `name`.
    pub fn parse(name: &str) -> Result<Sys> {
        Sys::ALL.into_iter().find(|s| s.name() == name).with_context(|| format!("unknown system {name:?}"))
    }
}

/// A mounted view; unmounted (and its daemon waited for) on drop.
pub struct Mounted {
    /// Where the merged view is.
    pub dir: PathBuf,
    /// The upper dir (the plain dir itself for [`Sys::Plain`]).
    pub upper: PathBuf,
    /// The FUSE daemon, for the FUSE systems.
    pub daemon: Option<u32>,
    mounted: bool,
}

/// Where things are: the binaries and the scratch dir mounts are made in.
pub struct Env {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// Scratch space (same filesystem as the layers unless a workload says otherwise).
    pub scratch: PathBuf,
    /// Extra `-o` options for Strata (`--strata-opts`).
    pub strata_opts: String,
}

impl Env {
    /// Mounts `layers` with `sys` at `scratch/<sys>/merged`, with an empty upper dir in `scratch`
    /// (or `under` when given: copy-up on another filesystem). The plain system shows `plain`, the
    /// materialized merged view (shared, so only for reading), or else its empty upper dir.
    pub fn mount(&self, sys: Sys, layers: &LayerSet, plain: Option<&Path>, under: Option<&Path>) -> Result<Mounted> {
        let base = under.unwrap_or(&self.scratch).join(sys.name());
        reset_dir(&base)?;
        let (upper, work, dir) = (base.join("upper"), base.join("work"), base.join("merged"));
        for d in [&upper, &work, &dir] {
            fs::create_dir_all(d)?;
        }
        if sys == Sys::Plain {
            let dir = plain.unwrap_or(&upper).to_path_buf();
            return Ok(Mounted { dir, upper, daemon: None, mounted: false });
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", layers.lowerdir(), upper.display(), work.display());
        let mut cmd = match sys {
            Sys::Kernel => {
                let mut c = Command::new("mount");
                c.args(["-t", "overlay", "overlay", "-o", &opts]);
                c
            }
            Sys::FuseOverlayfs => {
                let mut c = Command::new("fuse-overlayfs");
                c.args(["-o", &opts]);
                c
            }
            Sys::Strata | Sys::StrataVolatile | Sys::StrataUring => {
                let mut c = Command::new(&self.strata);
                let mut opts = if self.strata_opts.is_empty() { opts } else { format!("{opts},{}", self.strata_opts) };
                opts.push_str(match sys {
                    Sys::StrataVolatile => ",volatile,io_uring=off",
                    Sys::StrataUring => ",io_uring=on",
                    _ => ",io_uring=off",
                });
                c.args(["mount", "-o", &opts]);
                c
            }
            Sys::Plain => unreachable!(),
        };
        // The kernel offers io_uring at INIT, over by the time `strata mount` returns.
        let uring = if sys == Sys::StrataUring { Some(UringOn::new()?) } else { None };
        let out = cmd.arg(&dir).output().with_context(|| format!("starting {}", sys.name()))?;
        drop(uring);
        if !out.status.success() {
            bail!("mounting {}: {}", sys.name(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let daemon = if sys == Sys::Kernel { None } else { Some(daemon_of(&dir)?) };
        Ok(Mounted { dir, upper, daemon, mounted: true })
    }
}

pub use strata::sys::mount::FUSE_URING_PARAM as ENABLE_URING;

/// `enable_uring` turned on until dropped, then set back to what it was.
struct UringOn(String);

impl UringOn {
    fn new() -> Result<UringOn> {
        let was = fs::read_to_string(ENABLE_URING).with_context(|| format!("{ENABLE_URING} (Linux 6.14+)"))?;
        fs::write(ENABLE_URING, "Y").with_context(|| format!("turning on {ENABLE_URING}"))?;
        Ok(UringOn(was.trim().to_string()))
    }
}

impl Drop for UringOn {
    fn drop(&mut self) {
        if let Err(e) = fs::write(ENABLE_URING, &self.0) {
            eprintln!("restoring {ENABLE_URING} to {}: {e}", self.0);
        }
    }
}

impl Mounted {
    /// The daemon's peak resident set (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let pid = self.daemon.context("no daemon")?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no VmHWM")?;
        Ok(kb * 1024)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let _ = Command::new("umount").arg(&self.dir).status();
        if let Some(pid) = self.daemon {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Whether process `pid` still runs (a zombie waiting for a reaper counts as gone).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// The pid of the FUSE daemon serving `mnt` (its command line names the mount point).
fn daemon_of(mnt: &Path) -> Result<u32> {
    let want = mnt.as_os_str().as_encoded_bytes();
    for _ in 0..200 {
        for e in fs::read_dir("/proc")?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(cmdline) = fs::read(e.path().join("cmdline")) else { continue };
            if cmdline.split(|&b| b == 0).any(|a| a == want) {
                return Ok(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("no daemon serves {}", mnt.display())
}

/// Where emptied scratch dirs go until the end of the run (see [`reset_dir`]).
static TRASH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static TRASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the trash dir (on the scratch filesystem) and empties what a previous run left there.
/// Right after many deletions ext4 creates files several times slower for a while (it skips
/// recently freed inodes, reading inode tables to find them), so the run waits that out.
pub fn init_trash(dir: &Path) -> Result<()> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        super::sh(&format!("rm -rf '{}'", dir.display()))?;
        rustix::fs::sync();
        std::thread::sleep(Duration::from_secs(40));
    }
    fs::create_dir_all(dir)?;
    let _ = TRASH.set(dir.to_path_buf());
    Ok(())
}

/// Below this much free space on the scratch filesystem the trash is emptied at once: a full run
/// moves some 20 GB of small files there (the commit and unpack rows most), and a run that
/// fills the disk dies at its last row with nothing written.
const TRASH_FLOOR: u64 = 16 << 30;

/// Empties the trash now if the scratch filesystem is running out of room (said on stderr: the
/// creates measured right after are slower for a while).
fn empty_trash_if_low(trash: &Path) -> Result<()> {
    let st = rustix::fs::statvfs(trash).with_context(|| format!("statfs of {}", trash.display()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < TRASH_FLOOR {
        eprintln!("bench: {} GiB left on the scratch filesystem: emptying the trash now", free >> 30);
        super::sh(&format!("rm -rf '{}'/*", trash.display()))?;
    }
    Ok(())
}

/// Empties the trash (at the end of a run).
pub fn empty_trash() -> Result<()> {
    match TRASH.get() {
        Some(t) if t.exists() => super::sh(&format!("rm -rf '{}'", t.display())),
        _ => Ok(()),
    }
}

/// Empties `dir` (creating it if needed); a leftover mount inside is unmounted first.
///
/// Its files of 1 MiB and more are deleted; the rest is moved into the trash, deleted at the end
/// of the run: many deletions during the run would slow down every file creation after them
/// (see [`init_trash`]) and make the systems measured next look slower than they are.
pub fn reset_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mounts = fs::read_to_string("/proc/self/mounts")?;
        let prefix = format!("{}/", dir.display());
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&prefix)) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        match TRASH.get() {
            Some(trash) => {
                super::sh(&format!("find '{}' -xdev -type f -size +1M -delete", dir.display()))?;
                empty_trash_if_low(trash)?;
                let n = TRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match fs::rename(dir, trash.join(n.to_string())) {
                    Ok(()) => {}
                    // Scratch on another filesystem (the XFS image): emptied there and then.
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        super::sh(&format!("rm -rf '{}'", dir.display()))?
                    }
                    Err(e) => return Err(e).with_context(|| format!("moving {} to the trash", dir.display())),
                }
            }
            None => super::sh(&format!("rm -rf '{}'", dir.display()))?,
        }
    }
    fs::create_dir_all(dir)?;
    Ok(())
}

/// The merged view of `layers` as a plain directory under `dir` (made once, with kernel
/// overlayfs and `cp -a`).
pub fn materialize(layers: &LayerSet, dir: &Path) -> Result<PathBuf> {
    let done = dir.join(".done");
    let view = dir.join("view");
    if done.exists() {
        return Ok(view);
    }
    reset_dir(dir)?;
    let mnt = dir.join("mnt");
    fs::create_dir_all(&mnt)?;
    let ro = if layers.lowers.len() == 1 {
        // overlayfs needs two lower dirs without an upper
        format!("lowerdir={}:{}", layers.lowerdir(), empty_dir(dir)?.display())
    } else {
        format!("lowerdir={}", layers.lowerdir())
    };
    super::run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &ro]).arg(&mnt))?;
    let copied = super::run(Command::new("cp").arg("-a").arg(&mnt).arg(&view));
    super::run(Command::new("umount").arg(&mnt))?;
    copied?;
    fs::write(done, "")?;
    Ok(view)
}

fn empty_dir(dir: &Path) -> Result<PathBuf> {
    let e = dir.join("empty");
    fs::create_dir_all(&e)?;
    Ok(e)
}
