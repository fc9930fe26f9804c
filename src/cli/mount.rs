//! `strata mount`: mount a union of layers, in the background once it is ready.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fuser::{MountOption, Session, SessionACL};

use super::options::{MountSpec, split_layers, split_options};
use crate::fs::fuse::StrataFuse;
use crate::fs::layers::Stack;
use crate::fs::{Config, Overlay};
use crate::sys::daemon::{self, Forked};
use crate::sys::{self};

/// Arguments of `strata mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Lower dirs, top first, separated by ':' ('\:' escapes a colon).
    #[arg(long, value_name = "DIR[:DIR...]")]
    lower: Option<String>,
    /// The writable upper dir (none: a read-only mount).
    #[arg(long, value_name = "DIR")]
    upper: Option<PathBuf>,
    /// The work dir: on the same filesystem as the upper dir, not inside it.
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Mount options, comma-separated: lowerdir=,upperdir=,workdir=,userxattr,volatile,ro,suid,dev,timeout=,...
    #[arg(short = 'o', value_name = "OPTS", action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Debug logging (implies -f; also `-o debug`).
    #[arg(short = 'd', long)]
    debug: bool,
    /// Serve with one thread (as fuse-overlayfs' `-s`).
    #[arg(short = 's')]
    single_thread: bool,
    /// Print one line per copy-up, whiteout and opaque directory as they happen (implies -f).
    #[arg(long)]
    trace: bool,
    /// Worker threads serving the mount.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Where to mount.
    mountpoint: PathBuf,
}

impl MountArgs {
    fn spec(&self) -> anyhow::Result<MountSpec> {
        let mut spec = MountSpec::default();
        for o in &self.options {
            for opt in split_options(o) {
                spec.apply(&opt)?;
            }
        }
        if let Some(l) = &self.lower {
            spec.stack.lowers = split_layers(l);
        }
        if let Some(u) = &self.upper {
            spec.stack.upper = Some(u.clone());
        }
        if let Some(w) = &self.work {
            spec.stack.work = Some(w.clone());
        }
        if let Some(t) = self.threads {
            spec.threads = Some(t.max(1));
        }
        if self.single_thread {
            spec.threads = Some(1);
        }
        spec.debug |= self.debug;
        if spec.read_only {
            spec.stack.upper = None;
            spec.stack.work = None;
        }
        Ok(spec)
    }
}

/// Mounts; returns once the mount is ready (or, in the foreground, once it is unmounted).
pub fn run(a: MountArgs) -> anyhow::Result<ExitCode> {
    let spec = a.spec()?;
    let mode = if a.foreground || spec.debug || a.trace {
        RunMode::Foreground { debug: spec.debug, trace: a.trace }
    } else {
        RunMode::Background
    };
    mount_spec(&spec, &a.mountpoint, mode)
}

/// How a mount process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Fork; the command returns once the mount is ready, the daemon serves it.
    Background,
    /// Serve in this process, logging to stderr, until unmounted.
    Foreground {
        /// Debug logging.
        debug: bool,
        /// One line per copy-up, whiteout and opaque directory.
        trace: bool,
    },
}

/// Mounts `spec` on `mnt` (used by `strata mount` and by the image tool's `mount IMAGE`).
pub fn mount_spec(spec: &MountSpec, mnt: &Path, mode: RunMode) -> anyhow::Result<ExitCode> {
    match mode {
        RunMode::Foreground { debug, trace } => {
            super::init_logging(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
            let signals = catch_signals()?;
            let session = prepare(spec, mnt, trace)?;
            log::info!("mounted {}", mnt.display());
            serve(session, signals)?;
            Ok(ExitCode::SUCCESS)
        }
        RunMode::Background => {
            super::init_logging(log::LevelFilter::Warn);
            match daemon::fork_with_report().context("forking the mount daemon")? {
                Forked::Parent(report) => match daemon::wait_report(report) {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(msg) => Err(anyhow::anyhow!(msg)),
                },
                Forked::Child(ready) => match catch_signals().and_then(|sig| Ok((sig, prepare(spec, mnt, false)?))) {
                    Ok((signals, session)) => {
                        ready.ok();
                        let _ = serve(session, signals);
                        std::process::exit(0);
                    }
                    Err(e) => {
                        ready.fail(&super::one_line(&e));
                        std::process::exit(1);
                    }
                },
            }
        }
    }
}

/// Mounts `spec` on `mnt`, served by threads of the calling process (a container's monitor)
/// until the returned session is unmounted or the process ends.
pub fn spawn_mount(spec: &MountSpec, mnt: &Path) -> anyhow::Result<fuser::BackgroundSession> {
    let session = prepare(spec, mnt, false)?;
    session.spawn().context("starting the mount threads")
}

/// Checks the setup, opens the layers and mounts; the kernel is ready to send requests after it.
fn prepare(spec: &MountSpec, mnt: &Path, trace: bool) -> anyhow::Result<Session<StrataFuse>> {
    check_mountpoint(mnt)?;
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
    let ov = Arc::new(ov);
    let session = Session::new(StrataFuse::new(ov.clone()), mnt, &fc).map_err(|e| mount_error(e, mnt))?;
    ov.set_invalidator(Box::new(crate::fs::fuse::Notify(session.notifier())));
    start_shrinker(ov, spec.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES))?;
    Ok(session)
}

/// How many inodes the daemon keeps before asking the kernel to let the oldest go (~20 MB):
/// a walk of 50k files stays under it, and memory stays flat on bigger trees.
const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// Keeps the daemon's memory flat on huge trees: ten times a second, if the kernel holds more
/// nodes than `keep`, ask it to drop the least recently used entries, down to 7/8 of `keep` (so
/// that a long walk does not call for it at every turn). Runs outside request handlers.
fn start_shrinker(ov: Arc<Overlay>, keep: usize) -> anyhow::Result<()> {
    let weak = Arc::downgrade(&ov);
    drop(ov);
    std::thread::Builder::new()
        .name("strata-shrink".into())
        .spawn(move || {
            while let Some(ov) = weak.upgrade() {
                let asked = if ov.inodes.len() > keep { ov.shrink_kernel_cache(keep - keep / 8) } else { 0 };
                drop(ov);
                if asked > 0 {
                    log::debug!("asked the kernel to drop {asked} cached entries");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .context("starting the cache shrinker")?;
    Ok(())
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get().clamp(2, 8)).unwrap_or(4)
}

/// Serves requests until the mount goes (umount, or SIGTERM/SIGINT/SIGHUP, which unmount).
/// Catches SIGTERM, SIGINT and SIGHUP; taken before mounting, so that no signal can end the
/// daemon between the mount appearing and the handler being in place.
fn catch_signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .context("installing signal handlers")
}

fn serve(mut session: Session<StrataFuse>, mut signals: signal_hook::iterator::Signals) -> anyhow::Result<()> {
    let mut unmounter = session.unmount_callable();
    std::thread::Builder::new()
        .name("strata-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some()
                && let Err(e) = unmounter.unmount()
            {
                log::warn!("unmounting on signal: {e}");
            }
        })
        .context("starting the signal thread")?;
    session.run().context("serving the mount")
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
