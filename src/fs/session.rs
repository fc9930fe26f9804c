//! A Strata mount served by threads of the calling process: the checks before mounting (mount
//! point, `/dev/fuse`), the layers opened, the FUSE session made with Strata's options, and what
//! keeps a long-lived daemon's memory flat (the cache shrinker, the heap policy of
//! [`sys::heap`]). Used by `strata mount` (which serves it in a daemon of its own) and by a
//! container's monitor (its rootfs).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fuser::{MountOption, Session, SessionACL};

use super::fuse::StrataFuse;
use super::layers::Stack;
use super::options::MountSpec;
use super::{Config, Overlay};
use crate::sys;

/// Mounts `spec` on `mnt`, served by threads of the calling process (a container's monitor)
/// until the returned session is unmounted or the process ends.
pub fn spawn(spec: &MountSpec, mnt: &Path) -> anyhow::Result<fuser::BackgroundSession> {
    let session = prepare(spec, mnt, false)?;
    session.spawn().context("starting the mount threads")
}

/// Checks the setup, opens the layers and mounts (`trace`: one line per copy-up, whiteout and
/// opaque directory); the kernel is ready to send requests after it.
pub fn prepare(spec: &MountSpec, mnt: &Path, trace: bool) -> anyhow::Result<Session<StrataFuse>> {
    check_mountpoint(mnt)?;
    if spec.io_uring == Some(fuser::IoUringMode::Required) && !sys::mount::fuse_uring_enabled() {
        let why = if Path::new(sys::mount::FUSE_URING_PARAM).exists() {
            format!("enable_uring is off: echo Y > {}", sys::mount::FUSE_URING_PARAM)
        } else {
            "this kernel has no FUSE over io_uring: Linux 6.14+ with CONFIG_FUSE_IO_URING".to_string()
        };
        bail!("io_uring transport requested but the kernel does not offer it ({why})");
    }
    // The process serves the mount for long: its memory must come back after each burst.
    sys::heap::keep_trimmed();
    let stack = Stack::open(&spec.stack)?;
    for note in &stack.notes {
        log::warn!("{note}");
    }
    let config = Config { ttl: spec.timeout.unwrap_or(Config::default().ttl), trace };
    let ov = Overlay::new(stack, config).context("reading the layer roots")?;
    let root = rustix::process::geteuid().is_root();
    let mut fc = fuser::Config::default();
    fc.mount_options = vec![
        MountOption::FSName(spec.fsname.clone().unwrap_or_else(|| "strata".into())),
        MountOption::Subtype("strata".into()),
        MountOption::DefaultPermissions,
    ];
    fc.mount_options.extend(spec.flags.iter().cloned());
    if spec.stack.upper.is_none() {
        fc.mount_options.push(MountOption::RO);
    }
    fc.acl = if root || spec.allow_other == Some(true) { SessionACL::All } else { SessionACL::Owner };
    fc.n_threads = Some(spec.threads.unwrap_or_else(default_threads));
    fc.clone_fd = true;
    fc.io_uring = spec.io_uring.unwrap_or(fuser::IoUringMode::Auto);
    let ov = Arc::new(ov);
    let session = Session::new(StrataFuse::new(ov.clone()), mnt, &fc).map_err(|e| mount_error(e, mnt))?;
    ov.set_invalidator(Box::new(super::fuse::Notify(session.notifier())));
    for layer in ov.stack.layers.iter() {
        if let Some(fetcher) = &layer.lazy {
            let root = sys::fd::dup(layer.fd()).context("lazy layer root")?;
            super::lazy::spawn_background(root, fetcher.clone());
        }
    }
    start_shrinker(ov, spec.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES))?;
    Ok(session)
}

/// How many inodes the daemon keeps before asking the kernel to let the oldest go (~20 MB):
/// a walk of 50k files stays under it, and memory stays flat on bigger trees.
const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// Keeps the daemon's memory flat on huge trees: ten times a second, if the kernel holds more
/// nodes than `keep`, ask it to drop the least recently used entries, down to 7/8 of `keep` (so
/// that a long walk does not call for it at every turn); and every half minute, give the
/// allocator's free pages back (`malloc_trim`: the holes that nodes created and forgotten over
/// hours leave in the heap). Runs outside request handlers.
fn start_shrinker(ov: Arc<Overlay>, keep: usize) -> anyhow::Result<()> {
    let weak = Arc::downgrade(&ov);
    drop(ov);
    std::thread::Builder::new()
        .name("strata-shrink".into())
        .spawn(move || {
            let mut ticks: u64 = 0;
            while let Some(ov) = weak.upgrade() {
                let asked = if ov.inodes.len() > keep { ov.shrink_kernel_cache(keep - keep / 8) } else { 0 };
                drop(ov);
                if asked > 0 {
                    log::debug!("asked the kernel to drop {asked} cached entries");
                }
                ticks += 1;
                if ticks.is_multiple_of(TRIM_EVERY_TICKS) {
                    sys::heap::trim();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .context("starting the cache shrinker")?;
    Ok(())
}

/// Shrinker ticks (100 ms) between two trims of the heap.
const TRIM_EVERY_TICKS: u64 = 300;

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get().clamp(2, 8)).unwrap_or(4)
}

fn check_mountpoint(mnt: &Path) -> anyhow::Result<()> {
    let md = match std::fs::metadata(mnt) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("mount point {}: no such directory", mnt.display()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("mount point {}: permission denied", mnt.display())
        }
        Err(e) => return Err(e).with_context(|| format!("mount point {}", mnt.display())),
    };
    if !md.is_dir() {
        bail!("mount point {}: not a directory", mnt.display());
    }
    if sys::mount::is_mount_point(mnt) {
        bail!("mount point {} is busy: something is already mounted there", mnt.display());
    }
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("/dev/fuse not found: load the fuse module (modprobe fuse) or give the container the device")
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !rustix::process::geteuid().is_root() => {
            // fusermount3 (setuid) opens it for unprivileged users.
            Ok(())
        }
        Err(e) => Err(e).context("/dev/fuse"),
    }
}

fn mount_error(e: std::io::Error, mnt: &Path) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            anyhow::anyhow!("mounting on {}: permission denied", mnt.display())
        }
        Some(libc::EBUSY) => anyhow::anyhow!("mounting on {}: mount point is busy", mnt.display()),
        _ => anyhow::Error::new(e).context(format!("mounting on {}", mnt.display())),
    }
}
